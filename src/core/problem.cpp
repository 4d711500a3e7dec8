// problem.cpp — see problem.hpp.
#include "core/problem.hpp"

namespace flashattn {

Problem Problem::sequence(std::int64_t s) const {
  Problem one = *this;
  const std::int64_t q0 = cu_q[s], k0 = cu_k[s];
  one.batch = 1;
  one.seqlen_q = cu_q[s + 1] - q0;
  one.seqlen_k = cu_k[s + 1] - k0;
  one.cu_q = one.cu_k = nullptr;
  one.sequences = 0;
  one.batch_base = batch_base + s;
  if (alibi_slopes != nullptr) one.alibi_slopes = alibi_slopes + s * alibi_batch_stride;
  for (Bshd* t : {&one.q, &one.dout}) {
    if (t->data != nullptr) t->data = advance(t->data, q0 * t->stride_s, q_dtype);
  }
  if (one.out.data != nullptr) one.out.data = advance(one.out.data, q0 * one.out.stride_s, out_dtype);
  if (one.dq.data != nullptr) one.dq.data += q0 * one.dq.stride_s;
  for (Bshd* t : {&one.k, &one.v, &one.dk, &one.dv}) {  // dk and dv hold kv_dtype too (the flash backward)
    if (t->data != nullptr) t->data = advance(t->data, k0 * t->stride_s, kv_dtype);
  }
  one.lse.data += q0 * lse.stride_s;
  return one;
}
}  // namespace flashattn
