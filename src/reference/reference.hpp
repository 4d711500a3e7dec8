// reference.hpp — THE REFERENCE: plain loops, double accumulation, never optimised.
//
// It defines the library's semantics and is the oracle every fast path is tested against.
// It reads the call's sizes and its AttentionOptions and writes every rule out itself (what
// a query sees, how scores are modified, dropout, packed sequences), sharing no code with
// the library's Problem, kernels or validation: a wrong rule there cannot pass as right here.
// The options must be valid (the API's validation is not repeated). Tensors are contiguous
// double arrays in the API's layouts:
//   q, out, dout, dq (batch, seqlen_q, heads, headdim); k, v, dk, dv (batch, seqlen_k,
//   heads_k, headdim); lse (batch, heads, seqlen_q); with options.varlen, batch 1 and the
//   packed totals, as the API takes them.
#pragma once

#include <cstdint>

#include "flashattn/attention.hpp"

namespace flashattn::reference {

struct Dims {
  std::int64_t batch = 0, seqlen_q = 0, seqlen_k = 0, heads = 0, heads_k = 0, headdim = 0;
};

void forward(const Dims& dims, const AttentionOptions& options, const double* q, const double* k, const double* v,
             double* out, double* lse);

// Recomputes everything from q, k, v (it needs neither out nor lse). dbias, when not null,
// is (batch, heads, seqlen_q, seqlen_k): the gradient of the score after its modifiers.
void backward(const Dims& dims, const AttentionOptions& options, const double* q, const double* k, const double* v,
              const double* dout, double* dq, double* dk, double* dv, double* dbias = nullptr);

}  // namespace flashattn::reference
