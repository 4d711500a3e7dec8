// reference.hpp — THE REFERENCE: plain loops, double accumulation, never optimised.
//
// It defines the library's semantics and is the oracle every fast path is tested
// against. It reads only the shape and options of the Problem; tensors are contiguous
// double arrays in the same layouts as the API:
//   q, out, dout, dq (batch, seqlen_q, heads, headdim); k, v, dk, dv (batch, seqlen_k,
//   heads_k, headdim); lse (batch, heads, seqlen_q).
#pragma once

#include "core/problem.hpp"

namespace flashattn::reference {

void forward(const Problem& p, const double* q, const double* k, const double* v, double* out,
             double* lse);

// Recomputes everything from q, k, v (it needs neither out nor lse). dbias, when not null,
// is (batch, heads, seqlen_q, seqlen_k): the gradient of the score after its modifiers.
void backward(const Problem& p, const double* q, const double* k, const double* v,
              const double* dout, double* dq, double* dk, double* dv, double* dbias = nullptr);

}  // namespace flashattn::reference
