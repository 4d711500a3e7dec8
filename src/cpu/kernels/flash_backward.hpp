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
// The five products are f32 (F32Products), or for bf16 calls on a build with AVX512-BF16
// bf16 products — vdpbf16ps (Bf16Products), or AMX tiles (AmxProducts) on the amx build:
// Q and dO packed once per call (PackedQ, a wave of groups at a time), K and V once per key
// tile, P and dS rounded to bf16 before their products; on AMX dK and dV accumulate transposed.
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#include <cstring>
#include <type_traits>

#include "core/tiles.hpp"
#include "cpu/kernels.hpp"
#include "cpu/kernels/amx_products.hpp"
#include "cpu/kernels/dropout.hpp"
#include "cpu/kernels/flash_forward.hpp"
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

// Headdim rounded up to whole register tiles (and so to whole AMX depth steps): the row
// length of the backward's tiles and of PackedQ.
i64 padded_depth(i64 d) { return round_up(d, kCols); }

Extents extents(const TileConfig& t, i64 d) {
  return {round_up(round_up(t.block_q, kRows), kKeyRowsPad), round_up(round_up(t.block_k, kRows), kCols),
          padded_depth(d)};
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
  // bf16 products only:
  std::uint32_t* kt_pairs;  // (d_pad / 2, cols_k)   Kᵀ as pairs of dimensions
  std::uint32_t* vt_pairs;  // (d_pad / 2, cols_k)   Vᵀ likewise
  std::uint32_t* k_pairs;   // (cols_k / 2, d_pad)   K as pairs of keys
  std::uint32_t* p_pairs;   // (rows_q / 2, cols_k)  P (with dropout) as pairs of queries
  std::uint32_t* ds_pairs;  // (rows_q / 2, cols_k)  dS likewise
  std::uint16_t* ds;        // (rows_q, cols_k)      dS in bf16
};

BackwardScratch carve_backward(float* base, const TileConfig& t, i64 d, i64* floats) {
  const Extents e = extents(t, d);
  Carver c{base};
  BackwardScratch w{c.take(e.rows_q * e.d_pad), c.take(e.rows_q * e.d_pad), c.take(d * e.cols_k),
                    c.take(d * e.cols_k),       c.take(e.cols_k * e.d_pad), c.take(e.rows_q * e.cols_k),
                    c.take(e.rows_q * e.cols_k), c.take(e.cols_k * e.d_pad), c.take(e.cols_k * e.d_pad),
                    c.take(e.rows_q * e.d_pad), c.take(e.rows_q * e.cols_k), c.take(e.rows_q * e.cols_k),
                    c.take(e.cols_k),           c.take(e.rows_q),            c.take(e.rows_q),
                    c.take_words(e.d_pad / 2 * e.cols_k), c.take_words(e.d_pad / 2 * e.cols_k),
                    c.take_words(e.cols_k / 2 * e.d_pad), c.take_words(e.rows_q / 2 * e.cols_k),
                    c.take_words(e.rows_q / 2 * e.cols_k),
                    reinterpret_cast<std::uint16_t*>(c.take_words(e.rows_q / 2 * e.cols_k))};
  if (floats) *floats = c.used;
  return w;
}

i64 backward_workspace_floats(const TileConfig& t, i64 d) { return scratch_floats(carve_backward, t, d); }

// PackedQ's layout (cpu/kernels.hpp), where the call multiplies bf16 (bf16_products): rows
// (and, transposed, columns) for every query and 32 more, zero, so that a tile of 32 rows
// from any query start stays inside.
struct PackedQLayout {
  i64 rows, d_pad;
  explicit PackedQLayout(const Problem& p) : rows(round_up(p.seqlen_q + 32, 32)), d_pad(padded_depth(p.headdim)) {}
};

i64 packed_q_floats(const Problem& p, const TileConfig& t) {
  if (!bf16_products(p, t)) return 0;
  const PackedQLayout l(p);
  return 2 * l.rows * l.d_pad;  // four bf16 copies
}

PackedQ pack_q(const Problem& p, const TileConfig& t, i64 b, i64 h, float* base) {
#if defined(__AVX512BF16__)
  if (!bf16_products(p, t)) return {};
  const PackedQLayout l(p);
  const i64 d = p.headdim, n = p.seqlen_q, copy = l.rows * l.d_pad;
  auto q_row = [&](i64 i) { return static_cast<const std::uint16_t*>(p.q.row(b, i, h, DType::bf16)); };
  auto dout_row = [&](i64 i) { return static_cast<const std::uint16_t*>(p.dout.row(b, i, h, DType::bf16)); };
  auto* q = reinterpret_cast<std::uint16_t*>(base);
  std::uint16_t *dout = q + copy, *q_other = dout + copy, *dout_other = q_other + copy;
  rows_padded(q_row, n, d, q, l.d_pad, l.rows);
  rows_padded(dout_row, n, d, dout, l.d_pad, l.rows);
  PackedQ packed{q, dout};
  if constexpr (kDepthAlign == 32) {
    rows_transposed(q_row, n, d, q_other, l.rows, l.rows, l.d_pad);
    rows_transposed(dout_row, n, d, dout_other, l.rows, l.rows, l.d_pad);
    packed.q_t = q_other, packed.dout_t = dout_other;
  } else {
    auto* q_pairs = reinterpret_cast<std::uint32_t*>(q_other);
    auto* dout_pairs = reinterpret_cast<std::uint32_t*>(dout_other);
    rows_as_pairs(q_row, n, d, q_pairs, l.d_pad, l.d_pad, l.rows);
    rows_as_pairs(dout_row, n, d, dout_pairs, l.d_pad, l.d_pad, l.rows);
    packed.q_pairs = q_pairs, packed.dout_pairs = dout_pairs;
  }
  return packed;
#else
  (void)p, (void)t, (void)b, (void)h, (void)base;
  return {};
#endif
}

// One key tile's state through its query tiles.
struct BackwardTile {
  const Problem& p;
  Extents e;
  BackwardScratch w;
  i64 b, j0, bc;
  i64 cols;      // n of the score products
  i64 key_rows;  // m of the dK, dV products
  const float* delta;
  const PackedQ* packed_q;  // indexed by b · heads + h (bf16 products only)
  const Bshd& dq_target;
};

// dQ += scale · (dS K), from the tile's product in dq.
void add_dq(const BackwardTile& f, i64 h, i64 i0, i64 br) {
  add_rows(br, f.p.headdim, f.w.dq, f.e.d_pad, f.p.scale, f.dq_target.row(f.b, i0, h), f.dq_target.stride_s);
}

// The products of a pair, by kind: S = (scale · Q) Kᵀ and dP = dO Vᵀ of queries i0 .. i0 +
// br (rows of them computed) against the key tile; and, once P and dS are made, dV += Pᵀ dO,
// dK += dSᵀ (scale · Q) and dQ += scale · dS K.
void score_products(const F32Products&, const BackwardTile& f, i64 h, i64 i0, i64 br, i64 rows) {
  const Problem& p = f.p;
  const BackwardScratch& w = f.w;
  const i64 d = p.headdim, ld = f.e.cols_k;
  load_rows(p.q, p.q_dtype, f.b, h, i0, br, d, p.scale, w.q, rows, f.e.d_pad);  // as the forward did
  load_rows(p.dout, p.q_dtype, f.b, h, i0, br, d, 1.0f, w.dout, rows, f.e.d_pad);
  gemm<false>(rows, f.cols, d, w.q, f.e.d_pad, 1, w.kt, ld, w.s, ld);      // S
  gemm<false>(rows, f.cols, d, w.dout, f.e.d_pad, 1, w.vt, ld, w.dp, ld);  // dO Vᵀ
}
void gradient_products(const F32Products&, const BackwardTile& f, i64 h, i64 i0, i64 br, i64 rows) {
  const BackwardScratch& w = f.w;
  const i64 ld = f.e.cols_k, d_pad = f.e.d_pad;
  gemm<true>(f.key_rows, d_pad, br, w.s, 1, ld, w.dout, d_pad, w.dv, d_pad);  // dV += Pᵀ dO
  gemm<true>(f.key_rows, d_pad, br, w.dp, 1, ld, w.q, d_pad, w.dk, d_pad);    // dK += dSᵀ (scale Q)
  gemm<false>(rows, d_pad, f.bc, w.dp, ld, 1, w.k, d_pad, w.dq, d_pad);        // dS K
  add_dq(f, h, i0, br);
}

#if defined(__AVX512BF16__)
// P and dS as the bf16 products read them: pairs of queries (zero past the tile's), and dS's
// rows in bf16.
void round_p_and_ds(const BackwardTile& f, i64 br, i64 rows) {
  const BackwardScratch& w = f.w;
  const i64 ld = f.e.cols_k;
  pack_row_pairs(br, rows, f.cols, w.s, ld, w.p_pairs, ld);
  pack_row_pairs(br, rows, f.cols, w.dp, ld, w.ds_pairs, ld);
  round_rows_to_bf16(rows, f.cols, w.dp, ld, w.ds, ld);
}

#if !defined(__AMX_BF16__)  // (the amx build's own products follow)
// vdpbf16ps: S scaled as its product finishes, as the forward's was; Q unscaled in dK (the
// scale applied at the end). dK and dV accumulate as (keys, d_pad).
void score_products(const Bf16Products& ops, const BackwardTile& f, i64 h, i64 i0, i64, i64 rows) {
  const PackedQ& q = f.packed_q[f.b * f.p.heads + h];
  const BackwardScratch& w = f.w;
  const i64 ld = f.e.cols_k, d = f.p.headdim, row_words = f.e.d_pad / 2;
  const auto* q_rows = reinterpret_cast<const std::uint32_t*>(q.q) + i0 * row_words;
  const auto* dout_rows = reinterpret_cast<const std::uint32_t*>(q.dout) + i0 * row_words;
  gemm<false>(rows, f.cols, d, q_rows, row_words, 1, w.kt_pairs, ld, w.s, ld, WholeTile{}, ops);            // S
  gemm<false>(rows, f.cols, d, dout_rows, row_words, 1, w.vt_pairs, ld, w.dp, ld, WholeTile{}, Bf16Products{});  // dO Vᵀ
}
void gradient_products(const Bf16Products&, const BackwardTile& f, i64 h, i64 i0, i64 br, i64 rows) {
  const PackedQ& q = f.packed_q[f.b * f.p.heads + h];
  const BackwardScratch& w = f.w;
  const i64 ld = f.e.cols_k, d_pad = f.e.d_pad;
  const Bf16Products unscaled{};
  round_p_and_ds(f, br, rows);
  const std::uint32_t* dout_pairs = q.dout_pairs + i0 / 2 * d_pad;
  const std::uint32_t* q_pairs = q.q_pairs + i0 / 2 * d_pad;
  gemm<true>(f.key_rows, d_pad, rows, w.p_pairs, 1, ld, dout_pairs, d_pad, w.dv, d_pad, WholeTile{}, unscaled);  // dV += Pᵀ dO
  gemm<true>(f.key_rows, d_pad, rows, w.ds_pairs, 1, ld, q_pairs, d_pad, w.dk, d_pad, WholeTile{}, unscaled);    // dK += dSᵀ Q
  gemm<false>(rows, d_pad, f.bc, reinterpret_cast<const std::uint32_t*>(w.ds), ld / 2, 1, w.k_pairs, d_pad, w.dq, d_pad,
              WholeTile{}, unscaled);  // dS K
  add_dq(f, h, i0, br);
}
#endif
#endif
#if defined(__AMX_BF16__)
// Q unscaled (the scale applied to S as the forward did, and to dK at the end).
void score_products(const AmxProducts& ops, const BackwardTile& f, i64 h, i64 i0, i64, i64 rows) {
  const PackedQ& q = f.packed_q[f.b * f.p.heads + h];
  const BackwardScratch& w = f.w;
  const i64 ld = f.e.cols_k, d_pad = f.e.d_pad;
  amx_gemm<false>(rows, f.cols, d_pad, q.q + i0 * d_pad, d_pad, w.kt_pairs, ld, w.s, ld);       // S / scale
  amx_gemm<false>(rows, f.cols, d_pad, q.dout + i0 * d_pad, d_pad, w.vt_pairs, ld, w.dp, ld);   // dO Vᵀ
  scale_rows(rows, f.cols, w.s, ld, ops.scale);
}
void gradient_products(const AmxProducts&, const BackwardTile& f, i64 h, i64 i0, i64 br, i64 rows) {
  const PackedQ& q = f.packed_q[f.b * f.p.heads + h];
  const PackedQLayout l(f.p);
  const BackwardScratch& w = f.w;
  const i64 ld = f.e.cols_k, d_pad = f.e.d_pad;
  round_p_and_ds(f, br, rows);
  amx_gemm<true>(d_pad, f.cols, rows, q.dout_t + i0, l.rows, w.p_pairs, ld, w.dv, ld);  // dVᵀ += dOᵀ P
  amx_gemm<true>(d_pad, f.cols, rows, q.q_t + i0, l.rows, w.ds_pairs, ld, w.dk, ld);    // dKᵀ += Qᵀ dS
  amx_gemm<false>(rows, d_pad, f.cols, w.ds, ld, w.k_pairs, d_pad, w.dq, d_pad);        // dS K
  add_dq(f, h, i0, br);
}
#endif

// P and dS of queries q0 .. q1 of head h against the key tile; dV, dK and dQ from them.
// Forced inline into the walk, where it was one loop body before the tile walk existed:
// without it the backward ran 4.8% and 6.9% slower than that build at d = 128 (flashattn
// bench --baseline-lib, bwd, 8 heads, N = 4096, 15 and 25 paired runs), with it 1.0007
// [0.955, 1.049] (12 pairs; N = 2048: 1.025 [0.955, 1.099]).
template <bool kGeneral, bool kPartial, typename Ops>
[[gnu::always_inline]] inline void backward_pair(const Ops& ops, const BackwardTile& f, const TilePair& pair) {
  const Problem& p = f.p;
  const BackwardScratch& w = f.w;
  const i64 ld = f.e.cols_k, b = f.b, h = pair.h, i0 = pair.q0, br = pair.q1 - pair.q0;
  const i64 j0 = f.j0, bc = f.bc, rows = round_up(round_up(br, kRows), kKeyRowsPad);
  const float* delta_h = f.delta + (b * p.heads + h) * p.seqlen_q;
  for (i64 r = 0; r < br; ++r) {
    w.lse[r] = p.lse.at(b, h, i0 + r);
    w.delta[r] = delta_h[i0 + r];
  }
  score_products(ops, f, h, i0, br, rows);
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
  gradient_products(ops, f, h, i0, br, rows);
}

template <bool kGeneral, typename Ops>
void backward_tiles(const Ops& ops, const Problem& p, const TileConfig& t, i64 b, i64 hk, i64 kv0, i64 kv1,
                    const float* delta, const PackedQ* packed_q, const Bshd& dq_target, float* scratch) {
  const i64 d = p.headdim, bc = kv1 - kv0;
  const BackwardTile f{p,     extents(t, d), carve_backward(scratch, t, d, nullptr), b, kv0, bc, round_up(bc, kCols),
                       round_up(round_up(bc, kRows), kKeyRowsPad), delta, packed_q, dq_target};
  const BackwardScratch& w = f.w;
  constexpr bool kTransposed = Ops::kOutputTransposed;  // dK and dV as (d_pad, cols_k)
  constexpr bool kBf16 = !std::is_same_v<Ops, F32Products>;  // Q unscaled in dK; K and V as pairs

  // Setup: this key tile as the products read it (f32 rows and transposed, or bf16 pairs);
  // zero gradients.
  ops.prepare();
  if constexpr (kBf16) {
#if defined(__AVX512BF16__)
    auto k_row = [&](i64 c) { return static_cast<const std::uint16_t*>(p.k.row(b, kv0 + c, hk, DType::bf16)); };
    auto v_row = [&](i64 c) { return static_cast<const std::uint16_t*>(p.v.row(b, kv0 + c, hk, DType::bf16)); };
    rows_as_word_columns(k_row, bc, d, w.kt_pairs, f.e.cols_k, f.cols, f.e.d_pad / 2);
    rows_as_word_columns(v_row, bc, d, w.vt_pairs, f.e.cols_k, f.cols, f.e.d_pad / 2);
    rows_as_pairs(k_row, bc, d, w.k_pairs, f.e.d_pad, f.e.d_pad, f.cols);
#endif
  } else {
    load_rows_transposed(p.k, p.kv_dtype, b, hk, kv0, bc, d, 1.0f, w.kt, f.e.cols_k, f.cols);
    load_rows_transposed(p.v, p.kv_dtype, b, hk, kv0, bc, d, 1.0f, w.vt, f.e.cols_k, f.cols);
    load_rows(p.k, p.kv_dtype, b, hk, kv0, bc, d, 1.0f, w.k, bc, f.e.d_pad);
  }
  std::memset(w.dk, 0, sizeof(float) * f.e.cols_k * f.e.d_pad);
  std::memset(w.dv, 0, sizeof(float) * f.e.cols_k * f.e.d_pad);

  // Main loop: every query head of the group, every query tile that sees these keys.
  walk_query_tiles(p, t, b, hk, kv0, kv1, [&](const TilePair& pair) {
    if (pair.mask.partial()) {
      backward_pair<kGeneral, true>(ops, f, pair);
    } else {
      backward_pair<kGeneral, false>(ops, f, pair);
    }
  });

  // Epilogue: this block alone owns these rows of dk and dv.
  const i64 key_stride = kTransposed ? 1 : f.e.d_pad, dim_stride = kTransposed ? f.e.cols_k : 1;
  const float dk_scale = kBf16 ? p.scale : 1.0f;  // bf16 products leave Q unscaled
  for (i64 c = 0; c < bc; ++c) {
    float dk_room[kMaxHeadDim], dv_room[kMaxHeadDim];  // 16-bit gradients' rows, rounded once written
    float* dk = p.dk.f32_out_row(b, kv0 + c, hk, p.kv_dtype, dk_room);
    float* dv = p.dv.f32_out_row(b, kv0 + c, hk, p.kv_dtype, dv_room);
    for (i64 x = 0; x < d; ++x) {
      dk[x] = w.dk[c * key_stride + x * dim_stride] * dk_scale;
      dv[x] = w.dv[c * key_stride + x * dim_stride];
    }
    p.dk.store_row(b, kv0 + c, hk, p.kv_dtype, d, dk, convert_from_f32);
    p.dv.store_row(b, kv0 + c, hk, p.kv_dtype, d, dv, convert_from_f32);
  }
  ops.finish_block();
}

template <typename Ops>
void backward_block_with(const Ops& ops, const Problem& p, const TileConfig& t, i64 b, i64 hk, i64 kv0, i64 kv1,
                         const float* delta, const PackedQ* packed_q, const Bshd& dq_target, float* scratch) {
  if (plain_scores(p)) return backward_tiles<false>(ops, p, t, b, hk, kv0, kv1, delta, packed_q, dq_target, scratch);
  backward_tiles<true>(ops, p, t, b, hk, kv0, kv1, delta, packed_q, dq_target, scratch);
}

void backward_block(const Problem& p, const TileConfig& t, i64 b, i64 hk, i64 kv0, i64 kv1, const float* delta,
                    const PackedQ* packed_q, const Bshd& dq_target, float* scratch) {
#if defined(__AMX_BF16__)
  if (bf16_products(p, t)) {
    return backward_block_with(AmxProducts{{p.scale}}, p, t, b, hk, kv0, kv1, delta, packed_q, dq_target, scratch);
  }
#elif defined(__AVX512BF16__)
  if (bf16_products(p, t)) {
    return backward_block_with(Bf16Products{p.scale}, p, t, b, hk, kv0, kv1, delta, packed_q, dq_target, scratch);
  }
#endif
  backward_block_with(F32Products{}, p, t, b, hk, kv0, kv1, delta, packed_q, dq_target, scratch);
}

}  // namespace
}  // namespace flashattn
