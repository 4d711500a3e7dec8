// flash_forward.hpp — the tiled forward: one query tile of one head against the key tiles
// it sees (the paper's Algorithm 1 with FlashAttention-2's single normalization at the end).
//
// Per query tile of block_q rows: stream over key tiles of block_k keys (core/tiles.hpp's
// walk), keeping the running row max m and row sum l, rescaling the partial output by
// exp(m_old − m_new) (online_softmax.hpp). Scores stay in natural units; exponentials are
// exp2 of fma(s, log2 e, −max · log2 e).
//
// What a tile carries is fixed at compile time: kGeneral (score modifiers, element rules,
// dropout — the problem has some) and kPartial (the pair's mask cuts it: window edges or
// element rules). A plain problem's full tile runs two products and the softmax, with no
// test for any of them.
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#include <cmath>
#include <cstring>

#include "core/tiles.hpp"
#include "cpu/kernels.hpp"
#include "cpu/kernels/dropout.hpp"
#include "cpu/kernels/micro_gemm.hpp"
#include "cpu/kernels/online_softmax.hpp"
#include "cpu/kernels/scores.hpp"
#include "cpu/kernels/tile_io.hpp"

namespace flashattn {
namespace {

// The forward works on Sᵀ (keys × queries): K rows are the broadcast operand, so no key
// tile is transposed, and each query's running max and sum are updated by vertical
// vector operations over the key rows.
struct ForwardScratch {
  float* qt;     // (d, cols_q)          (softmax_scale · Q)ᵀ
  float* st;     // (rows_k, cols_q)     scores transposed, then probabilities
  float* acc;    // (cols_q, d_pad)      unnormalized output
  float* m;      // (cols_q)             running max per query
  float* mb;     // (cols_q)             the same times log2 e, rounded once
  float* l;      // (cols_q)             running sum per query
  float* alpha;  // (cols_q)             this tile's rescale factor
  float* neg_ref;  // (cols_q)           minus the exponent subtracted in this tile
  float* drop;   // (rows_k)             one query's dropout factors over the tile's keys
};

// Forward extents: queries are columns of Sᵀ and rows of O, keys rows of Sᵀ.
struct ForwardExtents {
  i64 cols_q;  // block_q rounded up to whole register tiles both ways
  i64 rows_k;  // block_k rounded up to whole register rows
  i64 d_pad;
};

ForwardExtents forward_extents(const TileConfig& t, i64 d) {
  return {round_up(round_up(t.block_q, kRows), kCols), round_up(t.block_k, kRows), round_up(d, kCols)};
}

ForwardScratch carve_forward(float* base, const TileConfig& t, i64 d, i64* floats) {
  const ForwardExtents e = forward_extents(t, d);
  Carver c{base};
  ForwardScratch w{c.take(d * e.cols_q), c.take(e.rows_k * e.cols_q), c.take(e.cols_q * e.d_pad),
                   c.take(e.cols_q),     c.take(e.cols_q),            c.take(e.cols_q),
                   c.take(e.cols_q),     c.take(e.cols_q),            c.take(e.rows_k)};
  if (floats) *floats = c.used;
  return w;
}

i64 forward_workspace_floats(const TileConfig& t, i64 d) { return scratch_floats(carve_forward, t, d); }

// One query tile's state through its key tiles.
struct ForwardTile {
  const Problem& p;
  const PackedKv& kv;
  ForwardExtents e;
  ForwardScratch w;
  i64 b, h, q0, br;
  i64 cols;  // queries as columns of Sᵀ (whole register tiles)
  i64 rows;  // queries as rows of O
};

// Sᵀ = K (scale · Q)ᵀ for keys j0 .. j1 of the pair, its modifiers and mask, the online
// softmax, dropout, O += P V.
template <bool kGeneral, bool kPartial>
void forward_pair(const ForwardTile& f, const TilePair& pair) {
  const Problem& p = f.p;
  const ForwardScratch& w = f.w;
  const i64 d = p.headdim, ld = f.e.cols_q, j0 = pair.j0, bc = pair.j1 - pair.j0;
  const TileMask& mask = pair.mask;
  const i64 key_rows = round_up(bc, kRows);
  const float* k = f.kv.k + j0 * d;
  const float* v = f.kv.v + j0 * f.e.d_pad;
  // The products skip what a whole register tile of queries cannot see past the diagonal;
  // the mask covers the rest.
  if (kPartial && mask.skip_hidden) {
    gemm<false>(key_rows, f.cols, d, k, d, 1, w.qt, ld, w.st, ld, CausalScores{mask.diag});
  } else {
    gemm<false>(key_rows, f.cols, d, k, d, 1, w.qt, ld, w.st, ld);
  }
  if (kGeneral && p.modifies_scores()) modify_tile_transposed(p, f.b, f.h, f.q0, f.br, j0, bc, w.st, ld, f.cols);
  if constexpr (kPartial) mask_tile_transposed(p, pair, f.b, w.st, ld, f.cols);

  online_softmax_columns(w.st, ld, f.cols, bc, w.m, w.mb, w.l, w.alpha, w.neg_ref);
  const std::uint32_t threshold = p.dropout_threshold;
  for (i64 i = 0; i < f.br; ++i) {
    if (kGeneral && threshold != 0) {
      dropout_factors(w.drop, bc, p.seed, p.batch_base + f.b, f.h, p.dropout_offset_q + f.q0 + i,
                      p.dropout_offset_k + j0, threshold, p.keep_scale);
      for (i64 c = 0; c < bc; ++c) w.st[c * ld + i] *= w.drop[c];
    }
    const float alpha = w.alpha[i];
    float* __restrict acc = w.acc + i * f.e.d_pad;
    for (i64 x = 0; x < d; ++x) acc[x] *= alpha;
  }
  if (kPartial && mask.skip_hidden) {
    gemm<true>(f.rows, f.e.d_pad, bc, w.st, 1, ld, v, f.e.d_pad, w.acc, f.e.d_pad, CausalOutput{mask.diag});
  } else {
    gemm<true>(f.rows, f.e.d_pad, bc, w.st, 1, ld, v, f.e.d_pad, w.acc, f.e.d_pad);  // O += P V
  }
}

template <bool kGeneral>
void forward_tiles(const Problem& p, const TileConfig& t, i64 b, i64 h, i64 q0, i64 q1, const PackedKv& kv,
                   float* scratch) {
  const i64 d = p.headdim, br = q1 - q0;
  const ForwardTile f{p, kv, forward_extents(t, d), carve_forward(scratch, t, d, nullptr), b, h, q0, br,
                      round_up(br, kCols), round_up(br, kRows)};
  const ForwardScratch& w = f.w;

  // Setup: (scale · Q)ᵀ with zero padding columns; empty statistics.
  load_rows_transposed(p.q, p.q_dtype, b, h, q0, br, d, p.scale, w.qt, f.e.cols_q, f.cols);
  std::memset(w.acc, 0, sizeof(float) * f.rows * f.e.d_pad);
  for (i64 i = 0; i < f.cols; ++i) {
    w.m[i] = w.mb[i] = kNegInf;
    w.l[i] = 0.0f;
  }

  // Main loop over the key tiles some row of this tile sees.
  walk_key_tiles(p, t, b, h, q0, q1, [&](const TilePair& pair) {
    if (pair.mask.partial()) {
      forward_pair<kGeneral, true>(f, pair);
    } else {
      forward_pair<kGeneral, false>(f, pair);
    }
  });

  // Epilogue: one normalization per row.
  for (i64 i = 0; i < br; ++i) {
    const float l = w.l[i];
    const float inv = l == 0.0f ? 0.0f : 1.0f / l;
    float* dst = p.out.row(b, q0 + i, h);
    for (i64 x = 0; x < d; ++x) dst[x] = w.acc[i * f.e.d_pad + x] * inv;
    // LSE = mb · ln 2 + ln l, written as m + (ln l − r · ln 2) with r = m · log2 e − mb the
    // rounding of mb (exact through the fma): for a row dominated by one score this gives
    // LSE = m to the last bit, as standard attention does, so P = 1 there in the backward.
    const float r = std::fma(w.m[i], kLog2e, -w.mb[i]);
    p.lse.at(b, h, q0 + i) = l == 0.0f ? kNegInf : w.m[i] + (std::log(l) - r * kLn2);
  }
}

void forward_block(const Problem& p, const TileConfig& t, i64 b, i64 h, i64 q0, i64 q1, const PackedKv& kv,
                   float* scratch) {
  if (plain_scores(p)) return forward_tiles<false>(p, t, b, h, q0, q1, kv, scratch);
  forward_tiles<true>(p, t, b, h, q0, q1, kv, scratch);
}

}  // namespace
}  // namespace flashattn
