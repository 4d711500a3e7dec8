// kvcache.cpp — forward_with_kvcache: validate, append the new tokens (rotated), attend.
#include "flashattn/kvcache.hpp"

#include <omp.h>

#include <cstring>
#include <vector>

#include "core/memory.hpp"
#include "core/problem.hpp"
#include "cpu/flash.hpp"
#include "cpu/split_kv.hpp"

namespace flashattn {
namespace {

using i64 = std::int64_t;

// Rotary embedding of one head's row in place: features a and b of each pair turn by the
// angle whose cosine and sine are cos[t], sin[t]. Pairs (2t, 2t + 1) when interleaved (GPT-J),
// else (t, t + rotary_dim / 2) (GPT-NeoX).
void rotate(float* x, const float* cos, const float* sin, i64 rotary_dim, bool interleaved) {
  const i64 half = rotary_dim / 2;
  for (i64 t = 0; t < half; ++t) {
    float& a = x[interleaved ? 2 * t : t];
    float& b = x[interleaved ? 2 * t + 1 : t + half];
    const float xa = a, xb = b;
    a = xa * cos[t] - xb * sin[t];
    b = xa * sin[t] + xb * cos[t];
  }
}

}  // namespace

void forward_with_kvcache(const TensorView& q, const TensorView& k_cache, const TensorView& v_cache,
                          const TensorView& out, const TensorView& lse, const KvCache& cache,
                          const AttentionOptions& options) {
  KvCacheCall call = make_kvcache_call("flashattn::forward_with_kvcache", q, k_cache, v_cache, out, lse, cache,
                                       options);
  std::vector<Problem>& batches = call.batches;
  if (batches.empty()) return;
  const Problem& first = batches.front();
  const i64 batch = static_cast<i64>(batches.size()), seqlen_q = first.seqlen_q, heads = first.heads,
            heads_k = first.heads_k, d = first.headdim;
  const int threads = first.num_threads;
  auto cos_at = [&call](i64 pos) { return call.cos + pos * call.cos_stride; };
  auto sin_at = [&call](i64 pos) { return call.sin + pos * call.sin_stride; };

  // Rotary: q is rotated into a buffer the problems read instead (the caller's q is an input).
  Buffer rotated_q;
  if (call.rotary_dim > 0) {
    rotated_q = Buffer(static_cast<std::size_t>(batch * seqlen_q * heads * d));
    const Bshd rq{rotated_q.data(), seqlen_q * heads * d, heads * d, d};
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (i64 b = 0; b < batch; ++b) {
      for (i64 i = 0; i < seqlen_q; ++i) {
        const i64 pos = call.cache_seqlens[b] + (call.rotate_q_per_position ? i : 0);
        for (i64 h = 0; h < heads; ++h) {
          float* dst = rq.row(b, i, h);
          std::memcpy(dst, batches[b].q.row(0, i, h), sizeof(float) * d);
          rotate(dst, cos_at(pos), sin_at(pos), call.rotary_dim, call.interleaved);
        }
      }
    }
    for (i64 b = 0; b < batch; ++b) batches[b].q = Bshd{rq.row(b, 0, 0), rq.stride_b, rq.stride_s, rq.stride_h};
  }

  // Append: new token i of batch b goes to position cache_seqlens[b] + i (its page when paged).
  if (call.k_new.data != nullptr) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (i64 b = 0; b < batch; ++b) {
      for (i64 i = 0; i < call.seqlen_new; ++i) {
        const Problem& p = batches[b];
        const i64 pos = call.cache_seqlens[b] + i;
        for (i64 h = 0; h < heads_k; ++h) {
          float* k = const_cast<float*>(p.kv_row(p.k, 0, pos, h));
          float* v = const_cast<float*>(p.kv_row(p.v, 0, pos, h));
          std::memcpy(k, call.k_new.row(b, i, h), sizeof(float) * d);
          std::memcpy(v, call.v_new.row(b, i, h), sizeof(float) * d);
          if (call.rotary_dim > 0) rotate(k, cos_at(pos), sin_at(pos), call.rotary_dim, call.interleaved);
        }
      }
    }
  }

  // Attend: split-KV batches in one parallel region, the others (many queries, a contiguous
  // cache) tiled, each on its own.
  std::vector<Problem> split;
  for (const Problem& p : batches) {
    if (uses_split_kv(p)) {
      split.push_back(p);
    } else {
      flash_forward(p);
    }
  }
  split_kv_forward(split);
}

}  // namespace flashattn
