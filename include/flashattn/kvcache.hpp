// flashattn/kvcache.hpp — attention against a KV cache, for decoding: FlashAttention-2's
// flash_attn_with_kvcache.
//
// Layout (BSHD, last dimension contiguous, f32):
//   q                 (batch, seqlen_q, heads, headdim)
//   k_cache, v_cache  contiguous: (batch_cache, capacity, heads_k, headdim)
//                     paged:      (num_pages, page_size, heads_k, headdim), with block_table
//   k_new, v_new      (batch, seqlen_new, heads_k, headdim), optional
//   out               (batch, seqlen_q, heads, headdim)
//   lse               (batch, heads, seqlen_q), natural-log log-sum-exp of each score row
//
// A call first writes k_new and v_new into each batch's cache at positions
// cache_seqlens[b] .. cache_seqlens[b] + seqlen_new − 1 (rotated first when rotary_cos is
// given), then attends q to that batch's keys P_b .. L_b − 1, L_b = cache_seqlens[b] + seqlen_new,
// P_b = cache_leftpad[b] (0 without it).
// causal and windows are aligned to the end of each batch's keys: query i sits at key
// position L_b − seqlen_q + i, so the last query sees every key. Nothing else in the caches
// is read or written, and a call that throws has written nothing (caches included).
//
// The caches are read in place (no copy) by the split-KV kernel (AttentionOptions::
// ForwardKernel): each K and V byte once per call for all the query heads that share it.
// From AttentionOptions the call takes softmax_scale, causal, window_left/right, softcap,
// alibi_slopes (alibi_batch_stride), num_threads, isa, forward_kernel and num_splits; any
// other option set is refused (they describe seqlen_k-shaped masks a cache does not have).
#pragma once

#include <cstdint>
#include <optional>

#include "flashattn/attention.hpp"
#include "flashattn/export.hpp"
#include "flashattn/tensor.hpp"

namespace flashattn {

struct KvCache {
  // Tokens already in each batch's cache, one int32 per batch (required).
  const std::int32_t* cache_seqlens = nullptr;
  // Contiguous caches only: which batch row of k_cache and v_cache batch b uses, one int32
  // per batch (null: b). Distinct entries when k_new is given (two batches would write one row).
  const std::int32_t* cache_batch_idx = nullptr;
  // Paged caches (vLLM's and FlashAttention's layout): key j of batch b is row j % page_size
  // of page block_table[b · block_table_stride + j / page_size]. int32, max_pages entries per
  // batch; block_table_stride 0 means max_pages. The pages a batch uses (those holding keys
  // 0 .. L_b − 1) must exist and be distinct within the batch; batches may share pages
  // (a common prefix), but no two may append into one row.
  const std::int32_t* block_table = nullptr;
  std::int64_t max_pages = 0;
  std::int64_t block_table_stride = 0;
  // New keys and values to append (both or neither).
  std::optional<TensorView> k_new, v_new;
  // Rotary embedding (needs k_new): rotary_cos and rotary_sin are (seqlen_ro, rotary_dim / 2),
  // f32, applied to the first rotary_dim features of q and k_new. Key i of k_new sits at
  // position cache_seqlens[b] + i; query i at cache_seqlens[b] + i when causal or windowed,
  // else every query at cache_seqlens[b] (FlashAttention-2's rule). rotary_interleaved pairs
  // features (2t, 2t + 1) (GPT-J); otherwise t and t + rotary_dim / 2 (GPT-NeoX):
  //   x'_a = x_a cos − x_b sin,   x'_b = x_a sin + x_b cos.
  std::optional<TensorView> rotary_cos, rotary_sin;
  bool rotary_interleaved = false;
  // Left padding (FlashAttention-2's cache_leftpad), contiguous caches only: batch b's tokens
  // start at row cache_leftpad[b] (0 .. cache_seqlens[b]), one int32 per batch (null: 0).
  // The rows before it are neither read nor written, and positions count from it: the
  // rotary positions above are cache_seqlens[b] − cache_leftpad[b] + i.
  const std::int32_t* cache_leftpad = nullptr;
};

// Appends k_new / v_new into the caches (when given) and writes out and lse. Throws
// flashattn::Error naming the argument, before writing anything, on a bad call: a cache too
// small for cache_seqlens + seqlen_new, a block_table entry out of range or repeated within a
// batch, shapes that disagree, outputs overlapping inputs, an option the call does not take.
FLASHATTN_API void forward_with_kvcache(const TensorView& q, const TensorView& k_cache, const TensorView& v_cache,
                          const TensorView& out, const TensorView& lse, const KvCache& cache,
                          const AttentionOptions& options = {});

}  // namespace flashattn

// KvCache's layout as flashattn_abi_fingerprint (attention.hpp) hashes the other structs': two
// builds with the same value can share a KvCache in one process.
extern "C" FLASHATTN_API std::uint64_t flashattn_kvcache_abi_fingerprint();
