// flash_backward.hpp — the tiled backward: one key tile of one kv-head against the query
// tiles that see it, over every query head of its group (the paper's Algorithm 4).
//
// Per key tile: stream over query tiles (core/tiles.hpp's walk), recompute
// P = exp(S − LSE) with the forward's very operations (so rounding in S cancels against the
// saved LSE), and accumulate dV, dK in scratch and dQ into the target. Exponentials are exp2
// of (s − LSE) · log2 e, subtraction first.
//
// As in the forward, kGeneral (modifiers, element rules, dropout) and kPartial (the pair's
// mask cuts it) are compile-time: a plain problem's full tile carries no test for them.
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#include <cstring>

#include "core/tiles.hpp"
#include "cpu/kernels.hpp"
#include "cpu/kernels/dropout.hpp"
#include "cpu/kernels/micro_gemm.hpp"
#include "cpu/kernels/scores.hpp"
#include "cpu/kernels/tile_io.hpp"
#include "cpu/vec_math.hpp"

namespace flashattn {
namespace {

// Padded tile extents of the backward.
struct Extents {
  i64 rows_q;  // block_q rounded up to whole register tiles
  i64 cols_k;  // block_k rounded up to whole register tiles (and to kRows for transposed use)
  i64 d_pad;   // headdim rounded up to whole register tiles
};

Extents extents(const TileConfig& t, i64 d) {
  return {round_up(t.block_q, kRows), round_up(round_up(t.block_k, kRows), kCols), round_up(d, kCols)};
}

struct BackwardScratch {
  float* q;      // (rows_q, d_pad)      softmax_scale · Q
  float* dout;   // (rows_q, d_pad)
  float* kt;     // (d, cols_k)          K tile transposed
  float* vt;     // (d, cols_k)          V tile transposed
  float* k;      // (cols_k, d_pad)      K tile
  float* s;      // (rows_q, cols_k)     P, then P with dropout
  float* dp;     // (rows_q, cols_k)     dO Vᵀ, then dS
  float* dk;     // (cols_k, d_pad)
  float* dv;     // (cols_k, d_pad)
  float* dq;     // (rows_q, d_pad)      one tile's dS K
  float* dsoft;  // (rows_q, cols_k)     d(soft-capped score) / d(raw score)
  float* dmod;   // (rows_q, cols_k)     d(score_mod) / d(raw score)
  float* drop;   // (cols_k)             one query's dropout factors over the tile's keys
  float* lse;    // (rows_q)
  float* delta;  // (rows_q)
};

BackwardScratch carve_backward(float* base, const TileConfig& t, i64 d, i64* floats) {
  const Extents e = extents(t, d);
  Carver c{base};
  BackwardScratch w{c.take(e.rows_q * e.d_pad), c.take(e.rows_q * e.d_pad), c.take(d * e.cols_k),
                    c.take(d * e.cols_k),       c.take(e.cols_k * e.d_pad), c.take(e.rows_q * e.cols_k),
                    c.take(e.rows_q * e.cols_k), c.take(e.cols_k * e.d_pad), c.take(e.cols_k * e.d_pad),
                    c.take(e.rows_q * e.d_pad), c.take(e.rows_q * e.cols_k), c.take(e.rows_q * e.cols_k),
                    c.take(e.cols_k),           c.take(e.rows_q),            c.take(e.rows_q)};
  if (floats) *floats = c.used;
  return w;
}

i64 backward_workspace_floats(const TileConfig& t, i64 d) { return scratch_floats(carve_backward, t, d); }

// One key tile's state through its query tiles.
struct BackwardTile {
  const Problem& p;
  Extents e;
  BackwardScratch w;
  i64 b, j0, bc;
  i64 cols;      // n of the score products
  i64 key_rows;  // m of the dK, dV products
  const float* delta;
  const Bshd& dq_target;
};

// P and dS of queries q0 .. q1 of head h against the key tile; dV, dK and dQ from them.
// Forced inline into the walk, where it was one loop body before the tile walk existed:
// without it the backward ran 4.8% and 6.9% slower than that build at d = 128 (flashattn
// bench --baseline-lib, bwd, 8 heads, N = 4096, 15 and 25 paired runs), with it 1.0007
// [0.955, 1.049] (12 pairs; N = 2048: 1.025 [0.955, 1.099]).
template <bool kGeneral, bool kPartial>
[[gnu::always_inline]] inline void backward_pair(const BackwardTile& f, const TilePair& pair) {
  const Problem& p = f.p;
  const BackwardScratch& w = f.w;
  const i64 d = p.headdim, ld = f.e.cols_k, b = f.b, h = pair.h, i0 = pair.q0, br = pair.q1 - pair.q0;
  const i64 j0 = f.j0, bc = f.bc, rows = round_up(br, kRows);
  const float* delta_h = f.delta + (b * p.heads + h) * p.seqlen_q;
  load_rows(p.q, p.q_dtype, b, h, i0, br, d, p.scale, w.q, rows, f.e.d_pad);  // as the forward did
  load_rows(p.dout, p.q_dtype, b, h, i0, br, d, 1.0f, w.dout, rows, f.e.d_pad);
  for (i64 r = 0; r < br; ++r) {
    w.lse[r] = p.lse.at(b, h, i0 + r);
    w.delta[r] = delta_h[i0 + r];
  }
  gemm<false>(rows, f.cols, d, w.q, f.e.d_pad, 1, w.kt, ld, w.s, ld);      // S
  gemm<false>(rows, f.cols, d, w.dout, f.e.d_pad, 1, w.vt, ld, w.dp, ld);  // dO Vᵀ
  if (kGeneral && p.modifies_scores()) {
    p.apply_score_mod(w.s, w.dmod, ld, 1, b, h, i0, j0, br, bc);
    const float slope = p.alibi_slope(b, h);
    for (i64 r = 0; r < br; ++r) {
      float* row = w.s + r * ld;
      modify_scores(p, slope, row, f.cols, i0 + r + p.key_offset() - j0, -1, p.softcap > 0.0f ? w.dsoft + r * ld : nullptr);
      if (p.bias != nullptr) {
        for (i64 c = 0; c < bc; ++c) row[c] += p.bias_at(b, h, i0 + r, j0 + c);
      }
    }
  }

  const std::uint32_t threshold = p.dropout_threshold;
  const Vec log2e = simd::set1(kLog2e);
  for (i64 r = 0; r < br; ++r) {
    float* __restrict s = w.s + r * ld;
    float* __restrict dp = w.dp + r * ld;
    const TileRange seen = w.lse[r] == kNegInf ? TileRange{0, 0}
                           : kPartial          ? TileMask::window_of_row(p, b, i0 + r, j0, bc)
                                               : TileRange{0, bc};
    const Vec vlse = simd::set1(w.lse[r]);
    for (i64 c = 0; c < seen.end; c += kLanes) {
      simd::store(s + c, simd::exp2_below_128(simd::mul(simd::sub(simd::load(s + c), vlse), log2e)));
    }
    for (i64 c = 0; c < (seen.begin < seen.end ? seen.begin : seen.end); ++c) s[c] = 0.0f;
    for (i64 c = seen.end; c < f.key_rows; ++c) s[c] = 0.0f;
    if (kPartial && pair.mask.elements) mask_row_elements(p, pair.mask, b, h, i0 + r, j0, s, seen.begin, seen.end, 0.0f);
    if (kGeneral && threshold != 0) {  // dP ∘ Z now, P ∘ Z for dV once dS is made
      dropout_factors(w.drop, bc, p.seed, p.batch_base + b, h, p.dropout_offset_q + i0 + r, p.dropout_offset_k + j0,
                      threshold, p.keep_scale);
      for (i64 c = 0; c < bc; ++c) dp[c] *= w.drop[c];
    }
    const Vec vdelta = simd::set1(w.delta[r]);
    for (i64 c = 0; c < f.key_rows; c += kLanes) {  // dS = P ∘ (dP − D)
      simd::store(dp + c, simd::mul(simd::load(s + c), simd::sub(simd::load(dp + c), vdelta)));
    }
    if constexpr (kGeneral) {
      if (p.dbias != nullptr) {  // the gradient of the modified score, before the soft-cap's
        for (i64 c = 0; c < bc; ++c) p.dbias_at(b, h, i0 + r, j0 + c) += dp[c];  // sums a broadcast bias's
      }
      if (p.softcap > 0.0f) {  // through the soft-cap: dS_raw = dS · (1 − tanh²)
        const float* dsoft = w.dsoft + r * ld;
        for (i64 c = 0; c < round_up(bc, kLanes); c += kLanes) {
          simd::store(dp + c, simd::mul(simd::load(dp + c), simd::load(dsoft + c)));
        }
      }
      if (p.score_mod.apply != nullptr) {  // through the user's modifier
        const float* dmod = w.dmod + r * ld;
        for (i64 c = 0; c < bc; ++c) dp[c] = dp[c] == 0.0f ? 0.0f : dp[c] * dmod[c];  // masked: 0, whatever dmod
      }
      if (threshold != 0) {
        for (i64 c = 0; c < bc; ++c) s[c] *= w.drop[c];
      }
    }
  }
  gemm<true>(f.key_rows, f.e.d_pad, br, w.s, 1, ld, w.dout, f.e.d_pad, w.dv, f.e.d_pad);  // dV += Pᵀ dO
  gemm<true>(f.key_rows, f.e.d_pad, br, w.dp, 1, ld, w.q, f.e.d_pad, w.dk, f.e.d_pad);    // dK += dSᵀ (scale Q)
  gemm<false>(rows, f.e.d_pad, bc, w.dp, ld, 1, w.k, f.e.d_pad, w.dq, f.e.d_pad);          // dS K
  add_rows(br, d, w.dq, f.e.d_pad, p.scale, f.dq_target.row(b, i0, h), f.dq_target.stride_s);  // dQ += scale dS K
}

template <bool kGeneral>
void backward_tiles(const Problem& p, const TileConfig& t, i64 b, i64 hk, i64 kv0, i64 kv1, const float* delta,
                    const Bshd& dq_target, float* scratch) {
  const i64 d = p.headdim, bc = kv1 - kv0;
  const BackwardTile f{p, extents(t, d), carve_backward(scratch, t, d, nullptr), b, kv0, bc, round_up(bc, kCols),
                       round_up(bc, kRows), delta, dq_target};
  const BackwardScratch& w = f.w;

  // Setup: this key tile as rows and transposed; zero gradients.
  load_rows_transposed(p.k, p.kv_dtype, b, hk, kv0, bc, d, 1.0f, w.kt, f.e.cols_k, f.cols);
  load_rows_transposed(p.v, p.kv_dtype, b, hk, kv0, bc, d, 1.0f, w.vt, f.e.cols_k, f.cols);
  load_rows(p.k, p.kv_dtype, b, hk, kv0, bc, d, 1.0f, w.k, bc, f.e.d_pad);
  std::memset(w.dk, 0, sizeof(float) * f.key_rows * f.e.d_pad);
  std::memset(w.dv, 0, sizeof(float) * f.key_rows * f.e.d_pad);

  // Main loop: every query head of the group, every query tile that sees these keys.
  walk_query_tiles(p, t, b, hk, kv0, kv1, [&](const TilePair& pair) {
    if (pair.mask.partial()) {
      backward_pair<kGeneral, true>(f, pair);
    } else {
      backward_pair<kGeneral, false>(f, pair);
    }
  });

  // Epilogue: this block alone owns these rows of dk and dv.
  for (i64 c = 0; c < bc; ++c) {
    float* dk = p.dk.row(b, kv0 + c, hk);
    float* dv = p.dv.row(b, kv0 + c, hk);
    for (i64 x = 0; x < d; ++x) {
      dk[x] = w.dk[c * f.e.d_pad + x];
      dv[x] = w.dv[c * f.e.d_pad + x];
    }
  }
}

void backward_block(const Problem& p, const TileConfig& t, i64 b, i64 hk, i64 kv0, i64 kv1, const float* delta,
                    const Bshd& dq_target, float* scratch) {
  if (plain_scores(p)) return backward_tiles<false>(p, t, b, hk, kv0, kv1, delta, dq_target, scratch);
  backward_tiles<true>(p, t, b, hk, kv0, kv1, delta, dq_target, scratch);
}

}  // namespace
}  // namespace flashattn
