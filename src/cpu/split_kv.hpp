// split_kv.hpp — the split-KV forward (flash-decoding): for calls with few queries.
#pragma once

#include <span>

#include "core/problem.hpp"

namespace flashattn {

// Whether the forward of p runs split-KV: asked for, a paged cache (only split-KV reads one),
// or automatic with seqlen_q <= kSplitKvMaxQueries, no block mask and no tile sizes forced.
bool uses_split_kv(const Problem& p);

// Writes out and lse of every problem (all with the same num_threads and isa) in one
// parallel region: a kv-cache call passes one problem per batch.
void split_kv_forward(std::span<const Problem> problems);

}  // namespace flashattn
