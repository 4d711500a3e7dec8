// split_kv.hpp — the split-KV forward (flash-decoding): for calls with few queries.
#pragma once

#include <span>

#include "core/problem.hpp"

namespace flashattn {

// Whether the forward of p runs split-KV: asked for, a paged cache (only split-KV reads one),
// or automatic with seqlen_q <= kSplitKvMaxQueries, no block mask and no tile sizes forced.
bool uses_split_kv(const Problem& p);

// The key ranges a row block of `keys` keys is split into, among `blocks` row blocks in the
// call: p.num_splits when set (at most kMaxSplits, at most one per key), else enough ranges
// for kTargetTasks tasks over the call, each of at least kMinSplitKeys keys.
std::int64_t split_kv_splits(const Problem& p, std::int64_t keys, std::int64_t blocks);

// Writes out and lse of every problem (all with the same num_threads and isa) in one
// parallel region: a kv-cache call passes one problem per batch.
void split_kv_forward(std::span<const Problem> problems);

}  // namespace flashattn
