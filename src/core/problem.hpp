// problem.hpp — the one parameter struct every path (reference, standard, flash) reads.
//
// Built and validated once at the API boundary (api/validate.cpp); kernels trust it.
// All sizes, strides and indices are 64-bit.
#pragma once

#include <cstdint>

#include "core/dtype.hpp"
#include "flashattn/attention.hpp"
#include "flashattn/kvcache.hpp"

namespace flashattn {

struct TileCounts;  // core/tiles.hpp

// `data` moved by `elements` elements of `dtype`: a tensor of 16-bit elements travels in the
// same float* as an f32 one, its offsets counted in its own elements.
inline float* advance(float* data, std::int64_t elements, DType dtype) {
  return reinterpret_cast<float*>(reinterpret_cast<char*>(data) + elements * element_bytes(dtype));
}

// A (batch, seq, head, dim) f32 tensor with a contiguous last dimension (16-bit where the
// Problem says so: kv_dtype).
struct Bshd {
  float* data = nullptr;
  std::int64_t stride_b = 0, stride_s = 0, stride_h = 0;
  float* row(std::int64_t b, std::int64_t s, std::int64_t h) const {
    return data + b * stride_b + s * stride_s + h * stride_h;
  }
  // The row of a tensor of `dtype` elements (a 16-bit one's is not a float row).
  void* row(std::int64_t b, std::int64_t s, std::int64_t h, DType dtype) const {
    return advance(data, b * stride_b + s * stride_s + h * stride_h, dtype);
  }
  // The row as f32 (d elements): itself, or widened by `widen` (the caller's kernel build's
  // conversion) into `room` when the tensor holds 16-bit elements.
  template <class Widen>
  const float* f32_row(std::int64_t b, std::int64_t s, std::int64_t h, DType dtype, std::int64_t d, float* room,
                       Widen widen) const {
    if (dtype == DType::f32) return row(b, s, h);
    widen(dtype, row(b, s, h, dtype), room, d);
    return room;
  }
  // The other way: where to write a row's d floats (the row itself, or `room` when the
  // tensor holds 16-bit elements), and, once written, their rounding into the tensor by
  // `narrow` (the kernel build's conversion).
  float* f32_out_row(std::int64_t b, std::int64_t s, std::int64_t h, DType dtype, float* room) const {
    return dtype == DType::f32 ? row(b, s, h) : room;
  }
  template <class Narrow>
  void store_row(std::int64_t b, std::int64_t s, std::int64_t h, DType dtype, std::int64_t d, const float* written,
                 Narrow narrow) const {
    if (dtype != DType::f32) narrow(dtype, written, row(b, s, h, dtype), d);
  }
};

// The (batch, head, seq) f32 log-sum-exp tensor.
struct Bhs {
  float* data = nullptr;
  std::int64_t stride_b = 0, stride_h = 0, stride_s = 0;
  float& at(std::int64_t b, std::int64_t h, std::int64_t s) const {
    return data[b * stride_b + h * stride_h + s * stride_s];
  }
};

struct Problem {
  std::int64_t batch = 0, seqlen_q = 0, seqlen_k = 0, heads = 0, heads_k = 0, headdim = 0;
  float scale = 0.0f;
  bool causal = false;
  // Sliding window, resolved (causal is (−1, 0)): query i sees keys j with
  // i + key_offset() − window_left <= j <= i + key_offset() + window_right; −1: unbounded.
  std::int64_t window_left = -1, window_right = -1;
  bool top_left = false;  // anchor the window at the top-left corner instead
  std::int64_t prefix_length = 0;            // keys below it visible to all (prefix-LM)
  const std::int32_t* key_lengths = nullptr;  // per batch; null: every key exists
  float dropout_p = 0.0f;
  std::uint64_t seed = 0;
  std::uint32_t dropout_threshold = 0;  // a score is kept iff its Philox word >= this
  float keep_scale = 1.0f;              // 1 / (1 - dropout_p)
  std::int64_t dropout_offset_q = 0, dropout_offset_k = 0;  // added to (i, j) for dropout only
  int num_threads = 1;                  // resolved: >= 1
  Isa isa = Isa::portable;
  // The dtype of q, k, v, out, dout, dq, dk, dv. The paths compute on f32 tensors: with bf16 or
  // f16 the API converts into f32 copies and back (api/attention.cpp), and only the standard path reads
  // this, to round its intermediates as a framework computing in that dtype would.
  DType dtype = DType::f32;
  // The element type k and v point at: f32, or the call's 16-bit dtype where the flash paths
  // convert K and V as they read them (the tiled forward's packing, split-KV's chunks of
  // tokens, the backward's key tiles), so that they are never copied whole.
  DType kv_dtype = DType::f32;
  // The same for q and dout, and for out where it is an input (the backward's), which the
  // flash paths widen as they read them. Outputs are f32: with 16-bit tensors the API hands
  // the paths f32 copies.
  DType q_dtype = DType::f32, out_dtype = DType::f32;
  int block_q = 0, block_k = 0;  // 0: derive from the caches
  // Score modifiers (see AttentionOptions): softcap 0 is off, alibi_slopes null is off.
  float softcap = 0.0f;
  const float* alibi_slopes = nullptr;
  std::int64_t alibi_batch_stride = 0;
  const float* bias = nullptr;       // additive bias (null: none); strides 0 on broadcast dims
  std::int64_t bias_stride[4] = {};  // batch, head, query, key
  float bias_at(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) const {
    return bias[b * bias_stride[0] + h * bias_stride[1] + i * bias_stride[2] + j * bias_stride[3]];
  }
  float* dbias = nullptr;             // backward: the bias's gradient (null: not wanted)
  std::int64_t dbias_stride[4] = {};  // 0 on the dimensions the bias broadcasts
  std::int64_t dbias_batches = 0, dbias_heads = 0;  // its shape's first two dimensions
  // A broadcast bias's gradient sums over batches or heads: several (b, h) add into one element.
  bool dbias_sums() const {
    return dbias != nullptr && ((dbias_batches == 1 && batch > 1) || (dbias_heads == 1 && heads > 1));
  }
  float& dbias_at(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) const {
    return dbias[b * dbias_stride[0] + h * dbias_stride[1] + i * dbias_stride[2] + j * dbias_stride[3]];
  }
  ScoreMod score_mod;  // apply null: none
  bool modifies_scores() const {
    return softcap > 0.0f || alibi_slopes != nullptr || bias != nullptr || score_mod.apply != nullptr;
  }
  // Applies score_mod to a tile (derivative: null in the forward); no-op without one.
  void apply_score_mod(float* scores, float* derivative, std::int64_t stride_q, std::int64_t stride_k,
                       std::int64_t b, std::int64_t h, std::int64_t q0, std::int64_t kv0, std::int64_t rows,
                       std::int64_t cols) const {
    if (score_mod.apply == nullptr || rows <= 0 || cols <= 0) return;
    score_mod.apply(score_mod.context,
                    ScoreTile{scores, derivative, stride_q, stride_k, batch_base + b, h, q0, kv0, rows, cols});
  }
  float alibi_slope(std::int64_t b, std::int64_t h) const {
    return alibi_slopes == nullptr ? 0.0f : alibi_slopes[b * alibi_batch_stride + h];
  }
  // Document ids (null: none), (batch, seqlen_q) and (batch, seqlen_k) row-major.
  const std::int32_t* doc_q = nullptr;
  const std::int32_t* doc_k = nullptr;
  bool same_document(std::int64_t b, std::int64_t i, std::int64_t j) const {
    return doc_q == nullptr || doc_q[b * seqlen_q + i] == doc_k[b * seqlen_k + j];
  }
  // Explicit u8 mask (null: none); strides 0 on broadcast dimensions.
  const std::uint8_t* elem_mask = nullptr;
  std::int64_t elem_mask_stride[4] = {};  // batch, head, query, key
  bool mask_keeps(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) const {
    return elem_mask == nullptr || elem_mask[b * elem_mask_stride[0] + h * elem_mask_stride[1] +
                                             i * elem_mask_stride[2] + j * elem_mask_stride[3]] != 0;
  }
  // Block-sparse mask (null: dense), shared by every batch and head.
  const std::uint8_t* mask_blocks = nullptr;
  std::int64_t mask_block_q = 0, mask_block_k = 0, mask_cols = 0;
  std::int64_t mask_batch_stride = 0, mask_head_stride = 0;
  const std::uint64_t* mask_bits = nullptr;         // partial blocks' keep bits (null: none)
  const std::int64_t* mask_bit_offset = nullptr;
  // The keep bits of block (qb, kb) when it is partial, else null.
  const std::uint64_t* block_bits(std::int64_t b, std::int64_t h, std::int64_t qb, std::int64_t kb) const {
    if (mask_bit_offset == nullptr) return nullptr;
    const std::int64_t n = b * mask_batch_stride + h * mask_head_stride + qb * mask_cols + kb;
    return mask_blocks[n] == 2 ? mask_bits + mask_bit_offset[n] : nullptr;
  }
  // Whether a partial block keeps score (i, j); bits of block (i / mask_block_q, j / mask_block_k).
  bool bit_keeps(const std::uint64_t* bits, std::int64_t i, std::int64_t j) const {
    const std::int64_t n = (i % mask_block_q) * mask_block_k + j % mask_block_k;
    return (bits[n >> 6] >> (n & 63)) & 1;
  }
  bool block_keeps(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) const {
    const std::uint64_t* bits = block_bits(b, h, i / mask_block_q, j / mask_block_k);
    return bits == nullptr || bit_keeps(bits, i, j);
  }

  // Variable-length batches (null: none): the tensors hold `sequences` packed sequences;
  // the paths run sequence(s) for each. batch_base is the batch index dropout sees for
  // batch 0 (a sequence's own index).
  const std::int32_t* cu_q = nullptr;
  const std::int32_t* cu_k = nullptr;
  std::int64_t sequences = 0;
  std::int64_t batch_base = 0;
  // Sequence s of a variable-length problem as a batch of one: its lengths, its rows of
  // every tensor, its ALiBi slopes, its dropout batch index.
  Problem sequence(std::int64_t s) const;

  // The forward kernel (AttentionOptions::forward_kernel) and split-KV's key ranges (0: chosen).
  AttentionOptions::ForwardKernel forward_kernel = AttentionOptions::ForwardKernel::automatic;
  int num_splits = 0;

  // A paged K/V cache (forward_with_kvcache's block_table; null: k and v are plain tensors).
  // A paged problem has batch 1 (one per sequence): key j lies in row j % page_size of page
  // block_table[j / page_size], whose rows start stride_b apart. Only split-KV reads it.
  const std::int32_t* block_table = nullptr;
  std::int64_t page_size = 0;
  // Where key j of batch b starts in k or v (head 0), in elements from t.data, paged or not.
  std::int64_t kv_offset(const Bshd& t, std::int64_t b, std::int64_t j) const {
    if (block_table == nullptr) return b * t.stride_b + j * t.stride_s;
    return block_table[j / page_size] * t.stride_b + (j % page_size) * t.stride_s;
  }
  const float* kv_row(const Bshd& t, std::int64_t b, std::int64_t j, std::int64_t h) const {
    return t.data + kv_offset(t, b, j) + h * t.stride_h;
  }
  // The same row when k and v hold 16-bit elements (kv_dtype bf16 or f16).
  const std::uint16_t* kv_row16(const Bshd& t, std::int64_t b, std::int64_t j, std::int64_t h) const {
    return reinterpret_cast<const std::uint16_t*>(t.data) + kv_offset(t, b, j) + h * t.stride_h;
  }
  // kv_offset of keys j0 .. j0 + n − 1 into at[0 .. n), walking the pages (one division).
  void kv_offsets(const Bshd& t, std::int64_t b, std::int64_t j0, std::int64_t n, std::int64_t* at) const {
    if (block_table == nullptr) {
      for (std::int64_t c = 0; c < n; ++c) at[c] = b * t.stride_b + (j0 + c) * t.stride_s;
      return;
    }
    std::int64_t page = j0 / page_size, slot = j0 % page_size;
    for (std::int64_t c = 0; c < n; ++c) {
      at[c] = block_table[page] * t.stride_b + slot * t.stride_s;
      if (++slot == page_size) slot = 0, ++page;
    }
  }

  // Forward inputs and outputs (backward reads q, k, v, out, lse).
  Bshd q, k, v, out;
  Bhs lse;
  // Backward only.
  Bshd dout, dq, dk, dv;

  // Tests only: what the flash kernels visit is counted here (null: not counted).
  TileCounts* tile_counts = nullptr;

  std::int64_t group() const { return heads / heads_k; }
  // Whether scores of query block qb (mask_block_q rows) and key block kb of batch b,
  // head h may be nonzero.
  bool block_active(std::int64_t b, std::int64_t h, std::int64_t qb, std::int64_t kb) const {
    return mask_blocks == nullptr ||
           mask_blocks[b * mask_batch_stride + h * mask_head_stride + qb * mask_cols + kb] != 0;
  }
  std::int64_t kv_head(std::int64_t h) const { return h / group(); }

  // The keys query i of batch b may see are key_begin(i) .. key_end(b, i) − 1: the window
  // (causal is the window (−1, 0)), aligned to the bottom-right corner by key_offset().
  std::int64_t key_offset() const { return top_left ? 0 : seqlen_k - seqlen_q; }
  std::int64_t key_begin(std::int64_t i) const {
    return window_left < 0 ? 0 : clamp_keys(i + key_offset() - window_left);
  }
  // The window's end, widened to the prefix (prefix-LM).
  std::int64_t window_end(std::int64_t i) const {
    const std::int64_t end = window_right < 0 ? seqlen_k : clamp_keys(i + key_offset() + window_right + 1);
    const std::int64_t prefix = clamp_keys(prefix_length);
    return end > prefix ? end : prefix;
  }
  // Keys batch b has (key padding).
  std::int64_t key_limit(std::int64_t b) const { return key_lengths == nullptr ? seqlen_k : key_lengths[b]; }
  std::int64_t key_end(std::int64_t b, std::int64_t i) const {
    const std::int64_t end = window_end(i), limit = key_limit(b);
    return end < limit ? end : limit;
  }
  // Whether score (i, j) of batch b, head h is visible: in the window, present, in an
  // active block, kept by the explicit mask, in one document.
  bool visible(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) const {
    return key_begin(i) <= j && j < key_end(b, i) &&
           (mask_blocks == nullptr || (block_active(b, h, i / mask_block_q, j / mask_block_k) && block_keeps(b, h, i, j))) &&
           mask_keeps(b, h, i, j) &&
           same_document(b, i, j);
  }

  // The tiles the flash kernels visit (and `flashattn io` counts). Ranges start on tile
  // boundaries, so that tiles are the blocks of a block mask.
  struct Span {
    std::int64_t begin, end;
  };
  // Keys that some query q0 .. q1 − 1 of batch b sees: from the window's start for the
  // top row to its end for the bottom row.
  Span keys_of_query_tile(std::int64_t b, std::int64_t q0, std::int64_t q1, std::int64_t block_k) const {
    return {key_begin(q0) / block_k * block_k, key_end(b, q1 - 1)};
  }
  // Queries whose window reaches keys kv0 .. kv1 − 1 of batch b: from the first that sees
  // key kv0 under the right edge to the last that sees key kv1 − 1 under the left edge;
  // none for padding keys.
  Span queries_of_key_tile(std::int64_t b, std::int64_t kv0, std::int64_t kv1, std::int64_t block_q) const {
    auto clamp_rows = [&](std::int64_t i) { return i < 0 ? 0 : (i > seqlen_q ? seqlen_q : i); };
    std::int64_t first = 0;
    Span s{0, seqlen_q};
    if (window_right >= 0 && kv0 >= prefix_length) first = clamp_rows(kv0 - key_offset() - window_right);
    if (window_left >= 0) s.end = clamp_rows(kv1 - key_offset() + window_left);
    s.begin = first / block_q * block_q;
    if (first >= s.end || kv0 >= key_limit(b)) s.end = s.begin;  // no query reaches these keys
    return s;
  }
  std::int64_t clamp_keys(std::int64_t j) const { return j < 0 ? 0 : (j > seqlen_k ? seqlen_k : j); }
};

}  // namespace flashattn
