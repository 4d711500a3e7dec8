// split_kv.hpp — the split-KV (flash-decoding) tile kernel for calls with few queries. It
// shares the tiled kernels' parts (micro_gemm.hpp's products, scores.hpp's modifiers and
// masks, dropout.hpp, tile_io.hpp's Carver): scores are modified and masked by the same code
// as the tiled forward's; and convert.hpp's loads, which widen a bf16 or f16 cache's K and V
// (Problem::kv_dtype) into registers as they are read: 2 bytes per element, and no copy.
//
// One call computes a row block — queries i0 .. i1 − 1 of every query head of kv-heads
// hk0 .. hk1 − 1 in batch b — against keys j0 .. j1 − 1, reading K and V in place (strided,
// or paged through Problem::kv_offsets): each K and V row comes from memory once per call and
// is reused from the L1 by every row. Rows are head-major: row r is head hk0 · group + r / nq,
// query i0 + r % nq (nq = i1 − i0). Per tile of keys:
//   S = (scale · Q) Kᵀ by dot products along headdim, four keys and two rows at a time
//       (a query is one row, not a column padded to a register tile), kTokenChunk tokens at
//       a time across the kv-heads;
//   the modifiers and masks; the online softmax along each row, in the tiled forward's
//   arithmetic (running max in log2 units, rounded once);
//   O += P V through the micro-kernel, with V's rows in place as its streamed operand.
// Each row ends as O = acc / l and its LSE, written to out and lse, or to a partial that
// split_kv.cpp merges with the other key ranges' by their LSE.
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#include <vector>

#include "core/tiles.hpp"
#include "cpu/kernels/convert.hpp"
#include "cpu/kernels/dropout.hpp"
#include "cpu/kernels/micro_gemm.hpp"
#include "cpu/kernels/scores.hpp"
#include "cpu/kernels/tile_io.hpp"
#include "cpu/vec_math.hpp"

namespace flashattn {
namespace {

// Keys per tile: a tile's softmax bookkeeping (max, rescale) is amortized over 64 keys.
// Tokens per chunk: S and P V read K and V chunk by chunk across the kv-heads, each chunk's
// rows from as many pages at once. Measured on a 2-core Zen 3 VM (32 heads, 8 kv-heads,
// d = 128): tiles of 32 / 64 / 128 keys ran 0.65 / 0.49 / 0.47 ms for 1024 cached keys on
// one core, L3-resident; chunks of 4 / 8 / 16 tokens 0.59 / 0.43 / 0.49 ms, and from memory
// 0.60 / 0.67 / 0.64 of the read bandwidth at 8192 keys.
constexpr i64 kSplitTile = 64;
constexpr i64 kTokenChunk = 8;
static_assert(kSplitTile % kLanes == 0 && kSplitTile % 4 == 0, "a tile's score rows are whole vectors");

struct SplitScratch {
  float* q;     // (rows, d_pad)        scale · Q, zero padded
  float* s;     // (rows, kSplitTile)   scores, then probabilities
  float* acc;   // (rows, d_pad)        unnormalized output
  float* m;     // (rows)               running max per row
  float* mb;    // (rows)               the same times log2 e, rounded once
  float* l;     // (rows)               running sum per row
  float* drop;  // (kSplitTile)         one row's dropout factors over the tile's keys
};

SplitScratch carve_split(float* base, i64 rows, i64 d, i64* floats) {
  const i64 d_pad = round_up(d, kCols);
  Carver c{base};
  SplitScratch w{c.take(rows * d_pad), c.take(rows * kSplitTile), c.take(rows * d_pad), c.take(rows),
                 c.take(rows),         c.take(rows),              c.take(kSplitTile)};
  if (floats) *floats = c.used;
  return w;
}

i64 split_kv_workspace_floats(i64 rows, i64 d) {
  i64 floats = 0;
  carve_split(nullptr, rows, d, &floats);
  return floats;
}

// s[r · lds + t] = q_r · k_t for kQueries (1 or 2) rows of q (d_pad apart) and the four keys
// k[0..3], stored as kDType: each key load serves every row, and the four sums leave the
// registers together. Every loop over the accumulators is unrolled whole: otherwise GCC 12
// stored all eight to the stack on every step of the main loop (seen in `perf annotate`).
template <int kQueries, DType kDType>
inline void dot_four_keys(const float* q, i64 d_pad, const StoredAs<kDType>* const* k, i64 d, float* s, i64 lds) {
  const i64 d_main = d / kLanes * kLanes;
  Vec acc[kQueries][4];
#pragma GCC unroll 2
  for (int r = 0; r < kQueries; ++r) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = simd::zero();
  for (i64 x = 0; x < d_main; x += kLanes) {
    Vec qv[kQueries];
#pragma GCC unroll 2
    for (int r = 0; r < kQueries; ++r) qv[r] = simd::load(q + r * d_pad + x);
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) {
      const Vec kv = load_widened<kDType>(k[t] + x);
#pragma GCC unroll 2
      for (int r = 0; r < kQueries; ++r) acc[r][t] = simd::fma(qv[r], kv, acc[r][t]);
    }
  }
#pragma GCC unroll 2
  for (int r = 0; r < kQueries; ++r) {
    float sum[4];
    simd::reduce_add4(acc[r][0], acc[r][1], acc[r][2], acc[r][3], sum);
    for (i64 x = d_main; x < d; ++x) {  // headdim past the last whole vector
      for (int t = 0; t < 4; ++t) sum[t] += q[r * d_pad + x] * widen<kDType>(k[t][x]);
    }
    for (int t = 0; t < 4; ++t) s[r * lds + t] = sum[t];
  }
}

// s[r · lds] = q_r · k for `rows` rows of q and one key.
template <DType kDType>
void dot_one_key(const float* q, i64 d_pad, i64 rows, const StoredAs<kDType>* k, i64 d, float* s, i64 lds) {
  const i64 d_main = d / kLanes * kLanes;
  for (i64 r = 0; r < rows; ++r) {
    const float* qr = q + r * d_pad;
    Vec a = simd::zero();
    for (i64 x = 0; x < d_main; x += kLanes) a = simd::fma(simd::load(qr + x), load_widened<kDType>(k + x), a);
    float sum = simd::reduce_add(a);
    for (i64 x = d_main; x < d; ++x) sum += qr[x] * widen<kDType>(k[x]);
    s[r * lds] = sum;
  }
}

// The rows of n tokens (element offsets at[]) of kv-heads hk0 .. hk1 of t, stored as kDType:
// rows[(hk − hk0) · kTokenChunk + c] is token c's row of head hk, in place. The products widen
// a 16-bit row in registers as they load it (convert.hpp's load_widened). Measured against
// widening each chunk into scratch first (32 heads, 8 kv-heads, d = 128, 2 threads, Zen 3 VM,
// three alternated runs a side, `flashattn bench --pass decode --impl flash,kvcache
// --page-size 0,16 --batch 1,8 --seqlen-k 1024,32768 --dtype f32,bf16,f16`, medians): bf16
// and f16 caches take 0.63–0.71 of the time they took, now 0.74–0.92 of the f32 cache's time,
// which the same change (accumulators kept in registers, dot_four_keys) cut to 0.84–0.89.
template <DType kDType>
void chunk_rows(const Bshd& t, i64 hk0, i64 hk1, const i64* at, i64 n, const StoredAs<kDType>** rows) {
  const auto* base = reinterpret_cast<const StoredAs<kDType>*>(t.data);
  for (i64 hk = hk0; hk < hk1; ++hk) {
    for (i64 c = 0; c < n; ++c) rows[(hk - hk0) * kTokenChunk + c] = base + hk * t.stride_h + at[c];
  }
}

// The block with K and V stored as kDType (Problem::kv_dtype).
template <DType kDType>
void split_kv_block_as(const Problem& p, i64 b, i64 hk0, i64 hk1, i64 i0, i64 i1, i64 j0, i64 j1, float* partial_o,
                       float* partial_lse, float* scratch) {
  using Stored = StoredAs<kDType>;
  const i64 d = p.headdim, nq = i1 - i0, group = p.group();
  const i64 per_head = group * nq, rows = (hk1 - hk0) * per_head, h0 = hk0 * group;
  const i64 d_pad = round_up(d, kCols), d_cols = d / kCols * kCols;
  const SplitScratch w = carve_split(scratch, rows, d, nullptr);
  const std::uint32_t threshold = p.dropout_threshold;
  const Vec log2e = simd::set1(kLog2e), neg_inf = simd::set1(kNegInf);
  auto head_of = [&](i64 r) { return h0 + r / nq; };
  std::vector<const Stored*> chunk_storage(static_cast<std::size_t>((hk1 - hk0) * kTokenChunk));
  const Stored** chunk = chunk_storage.data();  // a chunk of tokens' rows, per kv-head
  auto query_of = [&](i64 r) { return i0 + r % nq; };
  // Split-KV takes no block mask (uses_split_kv): its element rules are the element mask
  // and the documents.
  TileMask rules;
  rules.documents = p.doc_q != nullptr;
  rules.elements = p.elem_mask != nullptr || rules.documents;

  // Setup: scale · Q with zero padding; empty statistics.
  for (i64 r = 0; r < rows; ++r) {
    float* dst = w.q + r * d_pad;
    const float* src = p.q.f32_row(b, query_of(r), head_of(r), p.q_dtype, d, dst, convert_to_f32);  // widened in place
    for (i64 x = 0; x < d; ++x) dst[x] = src[x] * p.scale;
    for (i64 x = d; x < d_pad; ++x) dst[x] = 0.0f;
    w.m[r] = w.mb[r] = kNegInf;
    w.l[r] = 0.0f;
  }
  std::memset(w.acc, 0, sizeof(float) * rows * d_pad);

  // Main loop over tiles of keys. Tiles and chunks start at the same keys whether the cache
  // is paged or not (tokens are addressed one by one), so both give the same bits.
  for (i64 t0 = j0; t0 < j1;) {
    const i64 t1 = std::min(t0 + kSplitTile, j1);
    const i64 bc = t1 - t0, bc_pad = round_up(bc, kLanes);
    i64 k_at[kSplitTile], v_at[kSplitTile];  // where each token's rows start in k and v
    p.kv_offsets(p.k, b, t0, bc, k_at);
    p.kv_offsets(p.v, b, t0, bc, v_at);

    // S = (scale · Q) Kᵀ, kTokenChunk tokens at a time across the kv-heads, so that the cache
    // is read nearly in address order (in BSHD a token's heads are adjacent) and the hardware's
    // prefetchers follow; a whole tile per head would read 512 bytes from each page and wait.
    for (i64 c0 = 0; c0 < bc; c0 += kTokenChunk) {
      const i64 n = std::min(kTokenChunk, bc - c0);
      chunk_rows<kDType>(p.k, hk0, hk1, k_at + c0, n, chunk);
      for (i64 hk = hk0; hk < hk1; ++hk) {
        const Stored* const* k = chunk + (hk - hk0) * kTokenChunk;
        const float* q = w.q + (hk - hk0) * per_head * d_pad;
        float* s = w.s + (hk - hk0) * per_head * kSplitTile + c0;
        i64 c = 0;
        for (; c + 4 <= n; c += 4) {
          i64 r = 0;
          for (; r + 2 <= per_head; r += 2) {
            dot_four_keys<2, kDType>(q + r * d_pad, d_pad, k + c, d, s + r * kSplitTile + c, kSplitTile);
          }
          if (r < per_head) dot_four_keys<1, kDType>(q + r * d_pad, d_pad, k + c, d, s + r * kSplitTile + c, kSplitTile);
        }
        for (; c < n; ++c) dot_one_key<kDType>(q, d_pad, per_head, k[c], d, s + c, kSplitTile);
      }
    }

    // Modifiers, then masks, as the tiled forward applies them.
    if (p.modifies_scores()) {
      for (i64 g = 0; g < rows / nq; ++g) {
        p.apply_score_mod(w.s + g * nq * kSplitTile, nullptr, kSplitTile, 1, b, h0 + g, i0, t0, nq, bc);
      }
      for (i64 r = 0; r < rows; ++r) {
        float* row = w.s + r * kSplitTile;
        const i64 h = head_of(r), i = query_of(r);
        modify_scores(p, p.alibi_slope(b, h), row, bc_pad, i + p.key_offset() - t0, -1, nullptr);
        if (p.bias != nullptr) {
          for (i64 x = 0; x < bc; ++x) row[x] += p.bias_at(b, h, i, t0 + x);
        }
      }
    }
    for (i64 r = 0; r < rows; ++r) {
      float* row = w.s + r * kSplitTile;
      const i64 h = head_of(r), i = query_of(r);
      const TileRange seen = TileMask::window_of_row(p, b, i, t0, bc);
      const i64 end = seen.end > seen.begin ? seen.end : seen.begin;
      for (i64 x = 0; x < seen.begin; ++x) row[x] = kNegInf;
      for (i64 x = end; x < bc_pad; ++x) row[x] = kNegInf;
      if (rules.elements) mask_row_elements(p, rules, b, h, i, t0, row, seen.begin, end, kNegInf);
    }

    // Online softmax along each row.
    for (i64 r = 0; r < rows; ++r) {
      float* row = w.s + r * kSplitTile;
      Vec vmax = neg_inf;
      for (i64 x = 0; x < bc_pad; x += kLanes) vmax = simd::max(vmax, simd::load(row + x));
      const float tile_max = simd::reduce_max(vmax);
      const float m_new = tile_max > w.m[r] ? tile_max : w.m[r];
      const float mb_old = w.mb[r], mb_new = m_new * kLog2e;
      // A row with nothing visible yet keeps mb = −∞; its exponents subtract 0 instead, so
      // that exp(−∞ − m) = 0 rather than NaN.
      const float ref = mb_new < std::numeric_limits<float>::lowest() ? 0.0f : mb_new;
      w.m[r] = m_new;
      w.mb[r] = mb_new;
      const float alpha = exp2_approx(mb_old - ref);
      const Vec neg_ref = simd::set1(-ref);
      Vec sum = simd::zero();
      for (i64 x = 0; x < bc_pad; x += kLanes) {
        const Vec pc = simd::exp2_below_128(simd::fma(simd::load(row + x), log2e, neg_ref));
        simd::store(row + x, pc);
        sum = simd::add(sum, pc);
      }
      w.l[r] = w.l[r] * alpha + simd::reduce_add(sum);
      if (threshold != 0) {
        dropout_factors(w.drop, bc, p.seed, p.batch_base + b, head_of(r), p.dropout_offset_q + query_of(r),
                        p.dropout_offset_k + t0, threshold, p.keep_scale);
        for (i64 x = 0; x < bc; ++x) row[x] *= w.drop[x];
      }
      if (alpha != 1.0f) {  // 1 once the row's max settles: most tiles skip the rescale
        float* acc = w.acc + r * d_pad;
        const Vec va = simd::set1(alpha);
        for (i64 x = 0; x < d_pad; x += kLanes) simd::store(acc + x, simd::mul(simd::load(acc + x), va));
      }
    }

    // O += P V, V's rows read in place, kTokenChunk tokens at a time across the kv-heads (as
    // S read K): a whole tile per head would walk a column of pages, 64 bytes from each.
    for (i64 c0 = 0; c0 < bc; c0 += kTokenChunk) {
      const i64 n = std::min(kTokenChunk, bc - c0);
      chunk_rows<kDType>(p.v, hk0, hk1, v_at + c0, n, chunk);
      for (i64 hk = hk0; hk < hk1; ++hk) {
        const i64 r0 = (hk - hk0) * per_head;
        const Stored* const* v = chunk + (hk - hk0) * kTokenChunk;
        const float* pr = w.s + r0 * kSplitTile + c0;
        float* acc = w.acc + r0 * d_pad;
        if (d_cols > 0) {
          gemm_rows<true>(per_head, d_cols, n, pr, kSplitTile, 1, GatheredRows<Stored>{v}, acc, d_pad, WholeTile{},
                          WideningProducts<kDType>{});
        }
        for (i64 x = d_cols; x < d; ++x) {  // headdim past the last register column
          for (i64 r = 0; r < per_head; ++r) {
            float sum = 0.0f;
            for (i64 t = 0; t < n; ++t) sum += pr[r * kSplitTile + t] * widen<kDType>(v[t][x]);
            acc[r * d_pad + x] += sum;
          }
        }
      }
    }
    t0 = t1;
  }

  // Epilogue: one normalization per row, and its LSE as the tiled forward writes it.
  for (i64 r = 0; r < rows; ++r) {
    const float l = w.l[r];
    const float inv = l == 0.0f ? 0.0f : 1.0f / l;
    const float rounding = std::fma(w.m[r], kLog2e, -w.mb[r]);
    const float lse = l == 0.0f ? kNegInf : w.m[r] + (std::log(l) - rounding * kLn2);
    const i64 h = head_of(r), i = query_of(r);
    float room[kMaxHeadDim];  // a 16-bit output's row, rounded into it once written
    float* dst = partial_o != nullptr ? partial_o + r * d : p.out.f32_out_row(b, i, h, p.out_dtype, room);
    const float* acc = w.acc + r * d_pad;
    for (i64 x = 0; x < d; ++x) dst[x] = acc[x] * inv;
    if (partial_o == nullptr) p.out.store_row(b, i, h, p.out_dtype, d, dst, convert_from_f32);
    if (partial_lse != nullptr) {
      partial_lse[r] = lse;
    } else {
      p.lse.at(b, h, i) = lse;
    }
  }
}

void split_kv_block(const Problem& p, i64 b, i64 hk0, i64 hk1, i64 i0, i64 i1, i64 j0, i64 j1, float* partial_o,
                    float* partial_lse, float* scratch) {
  switch (p.kv_dtype) {
    case DType::f32: return split_kv_block_as<DType::f32>(p, b, hk0, hk1, i0, i1, j0, j1, partial_o, partial_lse, scratch);
    case DType::bf16: return split_kv_block_as<DType::bf16>(p, b, hk0, hk1, i0, i1, j0, j1, partial_o, partial_lse, scratch);
    case DType::f16: return split_kv_block_as<DType::f16>(p, b, hk0, hk1, i0, i1, j0, j1, partial_o, partial_lse, scratch);
    case DType::u8: break;  // never a cache's dtype (validate.cpp)
  }
}

}  // namespace
}  // namespace flashattn
