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
#include "cpu/kernels/amx_products.hpp"
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
  float* qt;     // (d, cols_q)          (softmax_scale · Q)ᵀ; on AMX O's rows at the end
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
  return {round_up(round_up(t.block_q, kRows), kCols), round_up(round_up(t.block_k, kRows), kKeyRowsPad),
          round_up(d, kCols)};
}

ForwardScratch carve_forward(float* base, const TileConfig& t, i64 d, i64* floats) {
  const ForwardExtents e = forward_extents(t, d);
  Carver c{base};
  ForwardScratch w{c.take(d * e.cols_q), c.take(e.rows_k * e.cols_q), c.take(e.cols_q * e.d_pad),
                   c.take(e.cols_q),     c.take(e.cols_q),            c.take(e.cols_q),
                   c.take(e.cols_q),     c.take(e.cols_q),            c.take(e.rows_k),
                   c.take_words(round_up(d, kDepthAlign) / 2 * e.cols_q), c.take_words(e.rows_k / 2 * e.cols_q)};
  if (floats) *floats = c.used;
  return w;
}

i64 forward_workspace_floats(const TileConfig& t, i64 d) { return scratch_floats(carve_forward, t, d); }

// Whether a call multiplies in bf16: the build has vdpbf16ps, Q, K and V are bf16, and
// tiles start on even keys and queries, so that a pair of rows never straddles two tiles.
bool bf16_products(const Problem& p, const TileConfig& t) {
#if defined(__AVX512BF16__)
  return p.q_dtype == DType::bf16 && p.kv_dtype == DType::bf16 && t.block_k % 2 == 0 && t.block_q % 2 == 0;
#else
  (void)p, (void)t;
  return false;
#endif
}

// PackedKv's layouts (cpu/kernels.hpp): f32 rows; or K in bf16 rows of `k_row` elements
// (kKeyRowsPad zero rows after the last) and V as pairs of rows (vdpbf16ps) or transposed,
// `vt_row` keys per row of Vᵀ (AMX).
struct Bf16KvLayout {
  i64 k_row, k_floats, vt_row;
  explicit Bf16KvLayout(const Problem& p)
      : k_row(round_up(p.headdim, kDepthAlign)),
        k_floats(round_up((p.seqlen_k + kKeyRowsPad) * k_row / 2, 16)),
        vt_row(round_up(p.seqlen_k, 2) + 32) {}  // a tile from the last even key reads 32
};

i64 packed_kv_floats(const Problem& p, const TileConfig& t) {
  const i64 d = p.headdim, d_pad = round_up(d, kCols), n = p.seqlen_k;
  if (!bf16_products(p, t)) return (n + kRows) * d + n * d_pad;
  const Bf16KvLayout l(p);
  return l.k_floats + (kDepthAlign == 32 ? d_pad * l.vt_row / 2 : (n + 1) / 2 * d_pad);
}

PackedKv pack_kv(const Problem& p, const TileConfig& t, i64 b, i64 hk, float* base) {
  const i64 d = p.headdim, d_pad = round_up(d, kCols), n = p.seqlen_k;
#if defined(__AVX512BF16__)
  if (bf16_products(p, t)) {
    const Bf16KvLayout l(p);
    auto k_row = [&](i64 j) { return p.kv_row16(p.k, b, j, hk); };
    auto v_row = [&](i64 j) { return p.kv_row16(p.v, b, j, hk); };
    auto* k = reinterpret_cast<std::uint16_t*>(base);  // (n + kKeyRowsPad, k_row)
    rows_padded(k_row, n, d, k, l.k_row, n + kKeyRowsPad);
    PackedKv kv;
    kv.k_pairs = reinterpret_cast<const std::uint32_t*>(k);
    if constexpr (kDepthAlign == 32) {
      auto* vt = reinterpret_cast<std::uint16_t*>(base + l.k_floats);  // (d_pad, vt_row)
      rows_transposed(v_row, n, d, vt, l.vt_row, l.vt_row, d_pad);
      kv.v_t = vt;
    } else {
      auto* v = reinterpret_cast<std::uint32_t*>(base + l.k_floats);  // (⌈n / 2⌉, d_pad)
      rows_as_pairs(v_row, n, d, v, d_pad, d_pad, n);
      kv.v_pairs = v;
    }
    return kv;
  }
#else
  (void)t;
#endif
  float* k = base;                    // (n + kRows, d)
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
  PackedKv kv;
  kv.k = k;
  kv.v = v;
  return kv;
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

// The products of a pair, by kind (micro_gemm.hpp, amx_products.hpp): the query tile as the
// score product reads it; Sᵀ = K (scale · Q)ᵀ of keys j0 .. j0 + rows (`part` of it); and
// O += P V over bc keys. The output accumulates as (queries, d_pad), or transposed for AMX.
void load_queries(const F32Products&, const ForwardTile& f) {  // (scale · Q)ᵀ, zero padding columns
  load_rows_transposed(f.p.q, f.p.q_dtype, f.b, f.h, f.q0, f.br, f.p.headdim, f.p.scale, f.w.qt, f.e.cols_q, f.cols);
}
template <typename Part>
void score_product(const F32Products& ops, const ForwardTile& f, i64 j0, i64 rows, Part part) {
  const i64 d = f.p.headdim, ld = f.e.cols_q;
  gemm<false>(rows, f.cols, d, f.kv.k + j0 * d, d, 1, f.w.qt, ld, f.w.st, ld, part, ops);
}
template <typename Part>
void output_product(const F32Products& ops, const ForwardTile& f, i64 j0, i64 bc, Part part, bool /*p_in_pairs*/) {
  const i64 d_pad = f.e.d_pad;
  gemm<true>(f.rows, d_pad, bc, f.w.st, 1, f.e.cols_q, f.kv.v + j0 * d_pad, d_pad, f.w.acc, d_pad, part, ops);
}
#if defined(__AVX512BF16__)
// Qᵀ in pairs (zero up to the padded depth and columns), scaled as the score product
// finishes: dimensions 2p, 2p + 1 of a bf16 query row already are pair p, so this is a
// transpose of words.
void load_queries(const Bf16Products&, const ForwardTile& f) {
  auto q_row = [&](i64 i) { return static_cast<const std::uint16_t*>(f.p.q.row(f.b, f.q0 + i, f.h, DType::bf16)); };
  const i64 d = f.p.headdim;
  rows_as_word_columns(q_row, f.br, d, f.w.qt_pairs, f.e.cols_q, f.cols, round_up(d, kDepthAlign) / 2);
}
template <typename Part>
void score_product(const Bf16Products& ops, const ForwardTile& f, i64 j0, i64 rows, Part part) {
  const i64 k_words = round_up(f.p.headdim, kDepthAlign) / 2, ld = f.e.cols_q;
  gemm<false>(rows, f.cols, f.p.headdim, f.kv.k_pairs + j0 * k_words, k_words, 1, f.w.qt_pairs, ld, f.w.st, ld, part,
              ops);
}
template <typename Part>
void output_product(const Bf16Products&, const ForwardTile& f, i64 j0, i64 bc, Part part, bool /*p_in_pairs*/) {
  const i64 d_pad = f.e.d_pad, ld = f.e.cols_q;
  pack_row_pairs(bc, bc, f.cols, f.w.st, ld, f.w.p_pairs, ld);  // P rounded to bf16
  gemm<true>(f.rows, d_pad, bc, f.w.p_pairs, 1, ld, f.kv.v_pairs + j0 / 2 * d_pad, d_pad, f.w.acc, d_pad, part,
             Bf16Products{});  // unscaled
}
#endif
#if defined(__AMX_BF16__)
// Whole 32 × 32 blocks: the causal diagonal's hidden part is computed and masked. The
// scores are left unscaled (kScoresUnscaled).
template <typename Part>
void score_product(const AmxProducts&, const ForwardTile& f, i64 j0, i64 rows, Part) {
  const i64 k_row = round_up(f.p.headdim, kDepthAlign), ld = f.e.cols_q;
  amx_gemm<false>(round_up(rows, 32), f.cols, k_row, reinterpret_cast<const std::uint16_t*>(f.kv.k_pairs) + j0 * k_row,
                  k_row, f.w.qt_pairs, ld, f.w.st, ld);
}
// P as bf16 pairs, straight from the softmax (the AMX output product's operand).
struct StorePairs {
  std::uint32_t* pairs;
  i64 ld, bc;
  __m512 held{};  // an even row's P, until the odd row that shares its words
  void operator()(float*, i64 row, i64 col, Vec pc) {
    if (row % 2 == 0) {
      held = pc.v;
      if (row + 1 == bc) _mm512_storeu_si512(pairs + row / 2 * ld + col, bf16_pairs(held, _mm512_setzero_ps()));
    } else {
      _mm512_storeu_si512(pairs + row / 2 * ld + col, bf16_pairs(held, pc.v));
    }
  }
};

template <typename Part>
void output_product(const AmxProducts&, const ForwardTile& f, i64 j0, i64 bc, Part, bool p_in_pairs) {  // Oᵀ += Vᵀ P
  const i64 ld = f.e.cols_q, keys = round_up(bc, 32);
  if (p_in_pairs) {  // zero past the tile's keys
    zero_word_rows(f.w.p_pairs, (bc + 1) / 2, keys / 2, f.cols, ld);
  } else {  // P rounded to bf16
    pack_row_pairs(bc, keys, f.cols, f.w.st, ld, f.w.p_pairs, ld);
  }
  const Bf16KvLayout l(f.p);
  amx_gemm<true>(f.e.d_pad, f.cols, keys, f.kv.v_t + j0, l.vt_row, f.w.p_pairs, ld, f.w.acc, ld);
}
#endif

// acc · alpha per query, as the output is laid out.
template <typename Ops>
void rescale_output(const ForwardTile& f) {
  if constexpr (Ops::kOutputTransposed) {
    // Once each query's max has settled alpha is 1 throughout: the pass is skipped.
    bool settled = true;
    for (i64 i = 0; i < f.cols; ++i) settled &= f.w.alpha[i] == 1.0f;
    if (settled) return;
    for (i64 x = 0; x < f.p.headdim; ++x) {
      float* row = f.w.acc + x * f.e.cols_q;
      for (i64 i = 0; i < f.cols; i += kLanes) simd::store(row + i, simd::mul(simd::load(row + i), simd::load(f.w.alpha + i)));
    }
  } else {
    for (i64 i = 0; i < f.br; ++i) {
      const float alpha = f.w.alpha[i];
      float* __restrict acc = f.w.acc + i * f.e.d_pad;
      for (i64 x = 0; x < f.p.headdim; ++x) acc[x] *= alpha;
    }
  }
}

// Sᵀ = K (scale · Q)ᵀ for keys j0 .. j1 of the pair, its modifiers and mask, the online
// softmax, dropout, O += P V.
template <bool kGeneral, bool kPartial, typename Ops>
void forward_pair(const Ops& ops, const ForwardTile& f, const TilePair& pair) {
  const Problem& p = f.p;
  const ForwardScratch& w = f.w;
  const i64 ld = f.e.cols_q, j0 = pair.j0, bc = pair.j1 - pair.j0;
  const TileMask& mask = pair.mask;
  const i64 key_rows = round_up(bc, kRows);
  // The products skip what a whole register tile of queries cannot see past the diagonal;
  // the mask covers the rest.
  if (kPartial && mask.skip_hidden) {
    score_product(ops, f, j0, key_rows, CausalScores{mask.diag});
  } else {
    score_product(ops, f, j0, key_rows, WholeTile{});
  }
  // Products that leave the softmax scale (Ops::kScoresUnscaled) have it applied here for
  // the modifiers, or else by the softmax.
  float softmax_scale = 1.0f;
  if constexpr (Ops::kScoresUnscaled) {
    if (kGeneral && p.modifies_scores()) {
      scale_rows(key_rows, f.cols, w.st, ld, p.scale);
    } else {
      softmax_scale = p.scale;
    }
  }
  if (kGeneral && p.modifies_scores()) modify_tile_transposed(p, f.b, f.h, f.q0, f.br, j0, bc, w.st, ld, f.cols);
  if constexpr (kPartial) mask_tile_transposed(p, pair, f.b, w.st, ld, f.cols);

  // P in place, with dropout; or, with nothing between the softmax and the AMX output
  // product, straight into the bf16 pairs it reads.
  constexpr bool kPairsFromSoftmax = Ops::kOutputTransposed && !kGeneral;
  if constexpr (kPairsFromSoftmax) {
#if defined(__AMX_BF16__)
    online_softmax_columns(w.st, ld, f.cols, bc, softmax_scale, w.m, w.mb, w.l, w.alpha, w.neg_ref,
                           StorePairs{w.p_pairs, ld, bc});
#endif
  } else {
    online_softmax_columns(w.st, ld, f.cols, bc, softmax_scale, w.m, w.mb, w.l, w.alpha, w.neg_ref);
    const std::uint32_t threshold = p.dropout_threshold;
    if (kGeneral && threshold != 0) {
      for (i64 i = 0; i < f.br; ++i) {
        dropout_factors(w.drop, bc, p.seed, p.batch_base + f.b, f.h, p.dropout_offset_q + f.q0 + i,
                        p.dropout_offset_k + j0, threshold, p.keep_scale);
        for (i64 c = 0; c < bc; ++c) w.st[c * ld + i] *= w.drop[c];
      }
    }
  }
  rescale_output<Ops>(f);
  if (kPartial && mask.skip_hidden) {
    output_product(ops, f, j0, bc, CausalOutput{mask.diag}, kPairsFromSoftmax);
  } else {
    output_product(ops, f, j0, bc, WholeTile{}, kPairsFromSoftmax);  // O += P V
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
  ops.prepare();
  load_queries(ops, f);
  std::memset(w.acc, 0, sizeof(float) * f.e.cols_q * f.e.d_pad);
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
  const float* o_rows = w.acc;  // (queries, o_ld) unnormalized
  i64 o_ld = f.e.d_pad;
  if constexpr (Ops::kOutputTransposed) {
#if defined(__AMX_BF16__)
    transpose_rows(w.acc, f.e.cols_q, d, br, w.qt, d);  // into qt, which bf16 products never use
    o_rows = w.qt, o_ld = d;
#endif
  }
  for (i64 i = 0; i < br; ++i) {
    const float l = w.l[i];
    const float inv = l == 0.0f ? 0.0f : 1.0f / l;
    float room[kMaxHeadDim];  // a 16-bit output's row, rounded into it once written
    float* dst = p.out.f32_out_row(b, q0 + i, h, p.out_dtype, room);
    for (i64 x = 0; x < d; ++x) dst[x] = o_rows[i * o_ld + x] * inv;
    p.out.store_row(b, q0 + i, h, p.out_dtype, d, dst, convert_from_f32);
    // LSE = mb · ln 2 + ln l, written as m + (ln l − r · ln 2) with r = m · log2 e − mb the
    // rounding of mb (exact through the fma): for a row dominated by one score this gives
    // LSE = m to the last bit, as standard attention does, so P = 1 there in the backward.
    const float r = std::fma(w.m[i], kLog2e, -w.mb[i]);
    p.lse.at(b, h, q0 + i) = l == 0.0f ? kNegInf : w.m[i] + (std::log(l) - r * kLn2);
  }
  ops.finish_block();
}

template <typename Ops>
void forward_block_with(const Ops& ops, const Problem& p, const TileConfig& t, i64 b, i64 h, i64 q0, i64 q1,
                        const PackedKv& kv, float* scratch) {
  if (plain_scores(p)) return forward_tiles<false>(ops, p, t, b, h, q0, q1, kv, scratch);
  forward_tiles<true>(ops, p, t, b, h, q0, q1, kv, scratch);
}

void forward_block(const Problem& p, const TileConfig& t, i64 b, i64 h, i64 q0, i64 q1, const PackedKv& kv,
                   float* scratch) {
#if defined(__AMX_BF16__)
  if (bf16_products(p, t)) return forward_block_with(AmxProducts{p.scale}, p, t, b, h, q0, q1, kv, scratch);
#elif defined(__AVX512BF16__)
  if (bf16_products(p, t)) return forward_block_with(Bf16Products{p.scale}, p, t, b, h, q0, q1, kv, scratch);
#endif
  forward_block_with(F32Products{}, p, t, b, h, q0, q1, kv, scratch);
}

}  // namespace
}  // namespace flashattn
