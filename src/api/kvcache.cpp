// kvcache.cpp — forward_with_kvcache: validate, append the new tokens (rotated), attend.
// A bf16 or f16 cache is read in place at 2 bytes per element (split-KV widens each chunk of
// tokens as it reads it; the tiled forward, in its packed copy); q and out, a few rows per
// call, are widened and rounded here.
#include "flashattn/kvcache.hpp"

#include <omp.h>

#include <cstring>
#include <vector>

#include "api/validate.hpp"
#include "core/memory.hpp"
#include "core/problem.hpp"
#include "cpu/dispatch.hpp"
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
  const KernelSet& kernels = kernels_for(first.isa);  // its conversions widen and round rows
  auto cos_at = [&call](i64 pos) { return call.cos + pos * call.cos_stride; };
  auto sin_at = [&call](i64 pos) { return call.sin + pos * call.sin_stride; };

  // q: widened (16-bit) and rotated (rotary) into a buffer the problems read instead (the
  // caller's q is an input). 16-bit outputs are computed into f32 rows, rounded at the end.
  const DType dtype = first.dtype;
  Buffer q32, out32;
  if (call.rotary_dim > 0 || dtype != DType::f32) {
    q32 = Buffer(static_cast<std::size_t>(batch * seqlen_q * heads * d));
    const Bshd rq{q32.data(), seqlen_q * heads * d, heads * d, d};
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (i64 b = 0; b < batch; ++b) {
      for (i64 i = 0; i < seqlen_q; ++i) {
        const i64 pos = call.filled[b] + (call.rotate_q_per_position ? i : 0);
        for (i64 h = 0; h < heads; ++h) {
          float* dst = rq.row(b, i, h);
          kernels.convert_to_f32(dtype, batches[b].q.row(0, i, h, dtype), dst, d);
          if (call.rotary_dim > 0) rotate(dst, cos_at(pos), sin_at(pos), call.rotary_dim, call.interleaved);
        }
      }
    }
    for (i64 b = 0; b < batch; ++b) batches[b].q = Bshd{rq.row(b, 0, 0), rq.stride_b, rq.stride_s, rq.stride_h};
  }
  std::vector<Bshd> user_out;
  if (dtype != DType::f32) {
    out32 = Buffer(static_cast<std::size_t>(batch * seqlen_q * heads * d));
    for (i64 b = 0; b < batch; ++b) {
      user_out.push_back(batches[b].out);
      batches[b].out = Bshd{out32.data() + b * seqlen_q * heads * d, seqlen_q * heads * d, heads * d, d};
    }
  }

  // Append: new token i of batch b goes to position filled[b] + i (its page when paged),
  // rotated in f32 and rounded once into a 16-bit cache.
  if (call.k_new.data != nullptr) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (i64 b = 0; b < batch; ++b) {
      for (i64 i = 0; i < call.seqlen_new; ++i) {
        const Problem& p = batches[b];
        const i64 pos = call.filled[b] + i;
        const i64 bytes = d * element_bytes(dtype);
        for (i64 h = 0; h < heads_k; ++h) {
          void* k = advance(p.k.data, p.kv_offset(p.k, 0, pos) + h * p.k.stride_h, dtype);
          void* v = advance(p.v.data, p.kv_offset(p.v, 0, pos) + h * p.v.stride_h, dtype);
          std::memcpy(v, call.v_new.row(b, i, h, dtype), static_cast<std::size_t>(bytes));
          if (call.rotary_dim == 0) {
            std::memcpy(k, call.k_new.row(b, i, h, dtype), static_cast<std::size_t>(bytes));
          } else {
            float row[kMaxHeadDim];
            kernels.convert_to_f32(dtype, call.k_new.row(b, i, h, dtype), row, d);
            rotate(row, cos_at(pos), sin_at(pos), call.rotary_dim, call.interleaved);
            kernels.convert_from_f32(dtype, row, k, d);
          }
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

  if (dtype != DType::f32) {  // each output row rounded once
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (i64 b = 0; b < batch; ++b) {
      for (i64 i = 0; i < seqlen_q; ++i) {
        for (i64 h = 0; h < heads; ++h) kernels.convert_from_f32(dtype, batches[b].out.row(0, i, h), user_out[b].row(0, i, h, dtype), d);
      }
    }
  }
}

}  // namespace flashattn
