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
// test for any of them. The products are f32 (F32Products), or, for bf16 calls on a build
// with AVX512-BF16, bf16 (Bf16Products): Q, K and V multiplied as given, P rounded to bf16
// before P·V as FlashAttention does on GPUs; scores, softmax and O stay f32.
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
  std::uint32_t* qt_pairs;  // (⌈d / 2⌉, cols_q)  Qᵀ as bf16 pairs of dimensions (bf16 products)
  std::uint32_t* p_pairs;   // (rows_k / 2, cols_q) P as bf16 pairs of keys (bf16 products)
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
                   c.take(e.cols_q),     c.take(e.cols_q),            c.take(e.rows_k),
                   c.take_words((d + 1) / 2 * e.cols_q), c.take_words(e.rows_k / 2 * e.cols_q)};
  if (floats) *floats = c.used;
  return w;
}

i64 forward_workspace_floats(const TileConfig& t, i64 d) { return scratch_floats(carve_forward, t, d); }

// Whether a call multiplies in bf16: the build has vdpbf16ps, Q, K and V are bf16, and key
// tiles start on even keys, so that a pair of V rows never straddles two tiles.
bool bf16_products(const Problem& p, const TileConfig& t) {
#if defined(__AVX512BF16__)
  return p.q_dtype == DType::bf16 && p.kv_dtype == DType::bf16 && t.block_k % 2 == 0;
#else
  (void)p, (void)t;
  return false;
#endif
}

// PackedKv's layouts (cpu/kernels.hpp): f32 rows, or bf16 K rows and pairs of V rows.
i64 packed_kv_floats(const Problem& p, const TileConfig& t) {
  const i64 d = p.headdim, d_pad = round_up(d, kCols), n = p.seqlen_k;
  if (bf16_products(p, t)) return round_up((n + kRows) * ((d + 1) / 2), 16) + (n + 1) / 2 * d_pad;
  return (n + kRows) * d + n * d_pad;
}

PackedKv pack_kv(const Problem& p, const TileConfig& t, i64 b, i64 hk, float* base) {
  const i64 d = p.headdim, d_pad = round_up(d, kCols), n = p.seqlen_k;
#if defined(__AVX512BF16__)
  if (bf16_products(p, t)) {
    const i64 dw = (d + 1) / 2;  // words per K row
    auto* k = reinterpret_cast<std::uint16_t*>(base);                                   // (n + kRows, 2 dw)
    auto* v = reinterpret_cast<std::uint32_t*>(base + round_up((n + kRows) * dw, 16));  // (⌈n / 2⌉, d_pad)
    for (i64 j = 0; j < n; ++j) {
      std::memcpy(k + j * 2 * dw, p.kv_row16(p.k, b, j, hk), sizeof(std::uint16_t) * d);
      if (d % 2 != 0) k[j * 2 * dw + d] = 0;
    }
    std::memset(k + n * 2 * dw, 0, sizeof(std::uint16_t) * kRows * 2 * dw);
    for (i64 j = 0; j < n; j += 2) {
      const std::uint16_t* lo = p.kv_row16(p.v, b, j, hk);
      const std::uint16_t* hi = j + 1 < n ? p.kv_row16(p.v, b, j + 1, hk) : nullptr;
      std::uint32_t* out = v + j / 2 * d_pad;
      i64 x = 0;
      for (; x + kLanes <= d; x += kLanes) {
        const __m256i l = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo + x));
        const __m256i h = hi != nullptr ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi + x)) : _mm256_setzero_si256();
        _mm512_storeu_si512(out + x, _mm512_or_si512(_mm512_cvtepu16_epi32(l), _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
      }
      for (; x < d_pad; ++x) out[x] = x < d ? lo[x] | (hi != nullptr ? std::uint32_t{hi[x]} << 16 : 0u) : 0u;
    }
    return {nullptr, nullptr, reinterpret_cast<const std::uint32_t*>(k), v};
  }
#else
  (void)t;
#endif
  float* k = base;                  // (n + kRows, d)
  float* v = base + (n + kRows) * d;  // (n, d_pad)
  for (i64 j = 0; j < n; ++j) {
    if (p.kv_dtype == DType::f32) {
      std::memcpy(k + j * d, p.k.row(b, j, hk), sizeof(float) * d);
      std::memcpy(v + j * d_pad, p.v.row(b, j, hk), sizeof(float) * d);
    } else {  // 16-bit K and V are widened here, in the copy the kernels read anyway
      convert_to_f32(p.kv_dtype, p.kv_row16(p.k, b, j, hk), k + j * d, d);
      convert_to_f32(p.kv_dtype, p.kv_row16(p.v, b, j, hk), v + j * d_pad, d);
    }
    std::memset(v + j * d_pad + d, 0, sizeof(float) * (d_pad - d));
  }
  std::memset(k + n * d, 0, sizeof(float) * kRows * d);
  return {k, v};
}

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

// The two products of a pair, in f32 or bf16: Sᵀ = K (scale · Q)ᵀ of keys j0 .. j0 + rows
// (`part` of it), and O += P V over bc keys.
void load_queries(const F32Products&, const ForwardTile& f) {  // (scale · Q)ᵀ, zero padding columns
  load_rows_transposed(f.p.q, f.p.q_dtype, f.b, f.h, f.q0, f.br, f.p.headdim, f.p.scale, f.w.qt, f.e.cols_q, f.cols);
}
template <typename Part>
void score_product(const F32Products& ops, const ForwardTile& f, i64 j0, i64 rows, Part part) {
  const i64 d = f.p.headdim, ld = f.e.cols_q;
  gemm<false>(rows, f.cols, d, f.kv.k + j0 * d, d, 1, f.w.qt, ld, f.w.st, ld, part, ops);
}
template <typename Part>
void output_product(const F32Products& ops, const ForwardTile& f, i64 j0, i64 bc, Part part) {
  const i64 d_pad = f.e.d_pad;
  gemm<true>(f.rows, d_pad, bc, f.w.st, 1, f.e.cols_q, f.kv.v + j0 * d_pad, d_pad, f.w.acc, d_pad, part, ops);
}
#if defined(__AVX512BF16__)
void load_queries(const Bf16Products&, const ForwardTile& f) {  // Qᵀ in pairs, scaled as the products finish
  load_rows_transposed(f.p.q, f.p.q_dtype, f.b, f.h, f.q0, f.br, f.p.headdim, 1.0f, f.w.qt, f.e.cols_q, f.cols);
  pack_row_pairs(f.p.headdim, f.cols, f.w.qt, f.e.cols_q, f.w.qt_pairs, f.e.cols_q);
}
template <typename Part>
void score_product(const Bf16Products& ops, const ForwardTile& f, i64 j0, i64 rows, Part part) {
  const i64 d = f.p.headdim, dw = (d + 1) / 2, ld = f.e.cols_q;
  gemm<false>(rows, f.cols, d, f.kv.k_pairs + j0 * dw, dw, 1, f.w.qt_pairs, ld, f.w.st, ld, part, ops);
}
template <typename Part>
void output_product(const Bf16Products&, const ForwardTile& f, i64 j0, i64 bc, Part part) {
  const i64 d_pad = f.e.d_pad, ld = f.e.cols_q;
  pack_row_pairs(bc, f.cols, f.w.st, ld, f.w.p_pairs, ld);  // P rounded to bf16
  gemm<true>(f.rows, d_pad, bc, f.w.p_pairs, 1, ld, f.kv.v_pairs + j0 / 2 * d_pad, d_pad, f.w.acc, d_pad, part,
             Bf16Products{});  // unscaled
}
#endif

// Sᵀ = K (scale · Q)ᵀ for keys j0 .. j1 of the pair, its modifiers and mask, the online
// softmax, dropout, O += P V.
template <bool kGeneral, bool kPartial, typename Ops>
void forward_pair(const Ops& ops, const ForwardTile& f, const TilePair& pair) {
  const Problem& p = f.p;
  const ForwardScratch& w = f.w;
  const i64 d = p.headdim, ld = f.e.cols_q, j0 = pair.j0, bc = pair.j1 - pair.j0;
  const TileMask& mask = pair.mask;
  const i64 key_rows = round_up(bc, kRows);
  // The products skip what a whole register tile of queries cannot see past the diagonal;
  // the mask covers the rest.
  if (kPartial && mask.skip_hidden) {
    score_product(ops, f, j0, key_rows, CausalScores{mask.diag});
  } else {
    score_product(ops, f, j0, key_rows, WholeTile{});
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
    output_product(ops, f, j0, bc, CausalOutput{mask.diag});
  } else {
    output_product(ops, f, j0, bc, WholeTile{});  // O += P V
  }
}

template <bool kGeneral, typename Ops>
void forward_tiles(const Ops& ops, const Problem& p, const TileConfig& t, i64 b, i64 h, i64 q0, i64 q1,
                   const PackedKv& kv, float* scratch) {
  const i64 d = p.headdim, br = q1 - q0;
  const ForwardTile f{p, kv, forward_extents(t, d), carve_forward(scratch, t, d, nullptr), b, h, q0, br,
                      round_up(br, kCols), round_up(br, kRows)};
  const ForwardScratch& w = f.w;

  // Setup: the query tile as the score product reads it; empty statistics.
  load_queries(ops, f);
  std::memset(w.acc, 0, sizeof(float) * f.rows * f.e.d_pad);
  for (i64 i = 0; i < f.cols; ++i) {
    w.m[i] = w.mb[i] = kNegInf;
    w.l[i] = 0.0f;
  }

  // Main loop over the key tiles some row of this tile sees.
  walk_key_tiles(p, t, b, h, q0, q1, [&](const TilePair& pair) {
    if (pair.mask.partial()) {
      forward_pair<kGeneral, true>(ops, f, pair);
    } else {
      forward_pair<kGeneral, false>(ops, f, pair);
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

template <typename Ops>
void forward_block_with(const Ops& ops, const Problem& p, const TileConfig& t, i64 b, i64 h, i64 q0, i64 q1,
                        const PackedKv& kv, float* scratch) {
  if (plain_scores(p)) return forward_tiles<false>(ops, p, t, b, h, q0, q1, kv, scratch);
  forward_tiles<true>(ops, p, t, b, h, q0, q1, kv, scratch);
}

void forward_block(const Problem& p, const TileConfig& t, i64 b, i64 h, i64 q0, i64 q1, const PackedKv& kv,
                   float* scratch) {
#if defined(__AVX512BF16__)
  if (bf16_products(p, t)) return forward_block_with(Bf16Products{p.scale}, p, t, b, h, q0, q1, kv, scratch);
#endif
  forward_block_with(F32Products{}, p, t, b, h, q0, q1, kv, scratch);
}

}  // namespace
}  // namespace flashattn
