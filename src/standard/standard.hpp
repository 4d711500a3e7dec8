// standard.hpp — standard attention, the paper's baseline: S and P materialized
// (seqlen_q × seqlen_k per head) with BLAS GEMMs around a row softmax.
#pragma once

#include "core/problem.hpp"

namespace flashattn {

void standard_forward(const Problem& p);
void standard_backward(const Problem& p);

}  // namespace flashattn
