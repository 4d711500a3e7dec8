// scores.hpp — what a tile of scores goes through between the two products: the score
// modifiers (score_mod, soft-capping, ALiBi, bias) and the mask of its pair (core/tiles.hpp's
// TileMask: the window's edges and the element rules), in the forward's layout (Sᵀ: keys
// are rows, queries columns) and the backward's and split-KV's (one row per query).
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#include "core/problem.hpp"
#include "core/tiles.hpp"
#include "cpu/kernels/micro_gemm.hpp"

namespace flashattn {
namespace {

// The score modifiers on a run of n scores (n a multiple of kLanes) whose distances
// i + key_offset − j are dist0, dist0 + step, …: softcap · tanh(s / softcap), then
// − slope · |distance|. With `derivative`, also writes d(modified) / d(raw) there. The
// forward (along queries, step 1) and backward (along keys, step −1) apply the very same
// operations to each element, so the backward's scores are the forward's to the bit.
void modify_scores(const Problem& p, float slope, float* s, i64 n, i64 dist0, i64 step, float* derivative) {
  const bool softcap = p.softcap > 0.0f, alibi = p.alibi_slopes != nullptr;
  const Vec cap = simd::set1(p.softcap), inv_cap = simd::set1(softcap ? 1.0f / p.softcap : 0.0f);
  const Vec neg_slope = simd::set1(-slope), steps = simd::mul(simd::iota(), simd::set1(static_cast<float>(step)));
  for (i64 c = 0; c < n; c += kLanes) {
    Vec x = simd::load(s + c);
    if (softcap) {
      const Vec t = simd::tanh(simd::mul(x, inv_cap));
      x = simd::mul(cap, t);
      if (derivative) simd::store(derivative + c, simd::fma(simd::sub(simd::zero(), t), t, simd::set1(1.0f)));
    }
    if (alibi) {
      const Vec dist = simd::add(simd::set1(static_cast<float>(dist0 + c * step)), steps);
      x = simd::fma(neg_slope, simd::abs(dist), x);
    }
    simd::store(s + c, x);
  }
}

// The forward's modifiers on Sᵀ (keys j0 .. j0 + bc as rows, ld apart; queries q0 .. q0 + br
// as columns, cols of them with the padding): score_mod, then soft-cap and ALiBi, then the
// bias.
void modify_tile_transposed(const Problem& p, i64 b, i64 h, i64 q0, i64 br, i64 j0, i64 bc, float* st, i64 ld,
                            i64 cols) {
  p.apply_score_mod(st, nullptr, 1, ld, b, h, q0, j0, br, bc);
  const float slope = p.alibi_slope(b, h);
  for (i64 c = 0; c < bc; ++c) {
    float* row = st + c * ld;
    modify_scores(p, slope, row, cols, q0 + p.key_offset() - j0 - c, 1, nullptr);
    if (p.bias != nullptr) {
      for (i64 i = 0; i < br; ++i) row[i] += p.bias_at(b, h, q0 + i, j0 + c);
    }
  }
}

// The pair's mask on Sᵀ: −∞ where an element rule hides a score, and outside the window's
// edges — key j0 + c is hidden from the queries before q0 + c − diag (right edge) and after
// q0 + c + left_diag (left edge); keys of the prefix are hidden by no right edge.
void mask_tile_transposed(const Problem& p, const TilePair& pair, i64 b, float* st, i64 ld, i64 cols) {
  const TileMask& m = pair.mask;
  const i64 q0 = pair.q0, br = pair.q1 - pair.q0, j0 = pair.j0, bc = pair.j1 - pair.j0;
  if (m.elements) {
    for (i64 c = 0; c < bc; ++c) {
      float* row = st + c * ld;
      for (i64 i = 0; i < br; ++i) {
        if (!m.keeps(p, b, pair.h, q0 + i, j0 + c)) row[i] = kNegInf;
      }
    }
  }
  if (m.right_edge || m.left_edge) {
    for (i64 c = 0; c < bc; ++c) {
      float* row = st + c * ld;
      const i64 first = m.right_edge && j0 + c >= p.prefix_length ? clamp_to(c - m.diag, cols) : 0;
      const i64 last = m.left_edge ? clamp_to(c + m.left_diag + 1, cols) : cols;
      for (i64 i = 0; i < first; ++i) row[i] = kNegInf;
      for (i64 i = first > last ? first : last; i < cols; ++i) row[i] = kNegInf;
    }
  }
}

// One query row's element rules over keys j0 + begin .. j0 + end: `hidden` where they hide.
void mask_row_elements(const Problem& p, const TileMask& m, i64 b, i64 h, i64 i, i64 j0, float* row, i64 begin,
                       i64 end, float hidden) {
  for (i64 c = begin; c < end; ++c) {
    if (!m.keeps(p, b, h, i, j0 + c)) row[c] = hidden;
  }
}

}  // namespace
}  // namespace flashattn
