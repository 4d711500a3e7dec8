// validate.hpp — argument checks at the API boundary, and the Problem they produce.
//
// The API layer's: a Problem's run-time choices (the ISA build, the thread count) are
// resolved here, from the options and the machine, so that core/ below reads neither.
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.hpp"
#include "flashattn/attention.hpp"
#include "flashattn/export.hpp"
#include "flashattn/kvcache.hpp"

namespace flashattn {

// A validated forward_with_kvcache call: what to append, then one Problem per batch
// (batch 1, seqlen_k = L_b, k and v that batch's cache rows or pages, q, out and lse that
// batch's rows). kvcache.cpp appends and rotates; the forward kernels attend.
struct KvCacheCall {
  std::vector<Problem> batches;
  // Tokens already in each batch's cache, counted from its first row (cache_leftpad): the
  // batches' k and v start there, so positions (appends, rotary) are filled[b] + i.
  std::vector<std::int64_t> filled;
  std::int64_t seqlen_new = 0;
  Bshd k_new, v_new;  // data null: nothing to append; new key i of batch b goes to
                      // batches[b].kv_row(batches[b].k, 0, filled[b] + i, h)
  // Rotary embedding (rotary_dim 0: none): cos and sin rows of rotary_dim / 2 values.
  const float* cos = nullptr;
  const float* sin = nullptr;
  std::int64_t cos_stride = 0, sin_stride = 0, rotary_dim = 0;
  bool interleaved = false;
  bool rotate_q_per_position = false;  // causal or windowed: query i at filled + i
};

// Checks `options` against a problem whose shape fields are set and stores them in p;
// throws flashattn::Error naming the option. The API boundary and the test harness both
// turn options into a Problem through it.
void apply_options(const char* fn, Problem& p, const AttentionOptions& options);

// Validation at the API boundary; throw flashattn::Error naming the argument.
// `algorithm` adds its own limits (standard's seqlen_q × seqlen_k matrices). Exported for
// flashattn::ring, which validates each rank's tensors as the single-node call does.
FLASHATTN_API Problem make_forward_problem(const char* fn, const TensorView& q, const TensorView& k,
                             const TensorView& v, const TensorView& out, const TensorView& lse,
                             const AttentionOptions& options, Algorithm algorithm);
FLASHATTN_API Problem make_backward_problem(const char* fn, const TensorView& dout, const TensorView& q,
                              const TensorView& k, const TensorView& v, const TensorView& out,
                              const TensorView& lse, const TensorView& dq, const TensorView& dk,
                              const TensorView& dv, const AttentionOptions& options, Algorithm algorithm);
KvCacheCall make_kvcache_call(const char* fn, const TensorView& q, const TensorView& k_cache,
                              const TensorView& v_cache, const TensorView& out, const TensorView& lse,
                              const KvCache& cache, const AttentionOptions& options);

}  // namespace flashattn
