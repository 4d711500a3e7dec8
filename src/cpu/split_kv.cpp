// split_kv.cpp — the split-KV forward (flash-decoding): row blocks, key ranges, threads and
// the merge. The per-tile arithmetic is kernels/split_kv.hpp's.
//
// A row block is queries i0 .. i1 − 1 of all the query heads of kv-heads hk0 .. hk1 − 1 in
// one batch (at most kSplitRows rows where one kv-head's group allows), so that K and V are
// read once for all of them, token by token across the kv-heads. Its keys are cut
// into ranges of equal length; each (row block, range) is one task. A block of one range
// writes out and lse itself; the others write partials (O and LSE per row), which the
// epilogue merges in range order:
//   LSE = log Σ_s exp(LSE_s),   O = Σ_s exp(LSE_s − LSE) · O_s.
// The ranges depend on the problem only, never on the thread count, so every thread count
// gives the same bits. Extra memory: scratch per thread and partials bounded by kTargetTasks
// ranges of one block's rows (or num_splits' worth): O(threads · tile), not O(keys).
#include "cpu/split_kv.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/memory.hpp"
#include "cpu/dispatch.hpp"

namespace flashattn {
namespace {

using i64 = std::int64_t;

// Rows per block: the block's Q, scores and accumulator (rows × headdim each) stay in the L2.
constexpr i64 kSplitRows = 64;
// A range's fixed cost (loading Q, its epilogue, its share of the merge) stays small against
// reading its keys.
constexpr i64 kMinSplitKeys = 128;
// Tasks a call aims for, enough for large machines; fixed, so results do not depend on threads.
constexpr i64 kTargetTasks = 64;
constexpr i64 kMaxSplits = 128;  // FlashAttention-2's bound on num_splits

struct RowBlock {
  const Problem* p;
  i64 b, hk0, hk1, i0, i1;
  i64 key_begin, key_end;
  i64 splits;
  i64 partial;  // offset of its partials (splits × rows × (headdim + 1) floats); −1: none
  i64 rows() const { return (hk1 - hk0) * p->group() * (i1 - i0); }
};

// Merges a block's partials in range order into out and lse. A row that sees no key in any
// range keeps O = 0 and LSE = −∞.
void merge_partials(const RowBlock& blk, const float* partials, const KernelSet& kernels) {
  const Problem& p = *blk.p;
  const i64 d = p.headdim, rows = blk.rows(), nq = blk.i1 - blk.i0;
  const i64 range_floats = rows * (d + 1);
  for (i64 r = 0; r < rows; ++r) {
    const i64 h = blk.hk0 * p.group() + r / nq, i = blk.i0 + r % nq;
    float room[kMaxHeadDim];  // a 16-bit output's row, rounded into it once written
    float* out = p.out.f32_out_row(blk.b, i, h, p.out_dtype, room);
    float top = -std::numeric_limits<float>::infinity();
    bool nan = false;
    for (i64 s = 0; s < blk.splits; ++s) {
      const float lse = partials[s * range_floats + rows * d + r];
      nan = nan || std::isnan(lse);
      top = std::max(top, lse);
    }
    if (nan || top == -std::numeric_limits<float>::infinity()) {
      const float fill = nan ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
      for (i64 x = 0; x < d; ++x) out[x] = fill;
      p.out.store_row(blk.b, i, h, p.out_dtype, d, out, kernels.convert_from_f32);
      p.lse.at(blk.b, h, i) = nan ? fill : top;
      continue;
    }
    float total = 0.0f;
    for (i64 x = 0; x < d; ++x) out[x] = 0.0f;
    for (i64 s = 0; s < blk.splits; ++s) {
      const float* o = partials + s * range_floats;
      const float weight = std::exp(o[rows * d + r] - top);  // 0 for a range that saw nothing
      total += weight;
      for (i64 x = 0; x < d; ++x) out[x] += weight * o[r * d + x];
    }
    const float inv = 1.0f / total;
    for (i64 x = 0; x < d; ++x) out[x] *= inv;
    p.out.store_row(blk.b, i, h, p.out_dtype, d, out, kernels.convert_from_f32);
    p.lse.at(blk.b, h, i) = top + std::log(total);
  }
}

// The key ranges a row block of `keys` keys is split into, among `blocks` row blocks in the
// call: p.num_splits when set (at most kMaxSplits, at most one per key), else enough ranges
// for kTargetTasks tasks over the call, each of at least kMinSplitKeys keys.
i64 split_kv_splits(const Problem& p, i64 keys, i64 blocks) {
  if (keys <= 1) return 1;
  if (p.num_splits > 0) return std::min<i64>({p.num_splits, kMaxSplits, keys});
  const i64 wanted = ceil_div(kTargetTasks, std::max<i64>(blocks, 1));
  return std::clamp<i64>(std::min(ceil_div(keys, kMinSplitKeys), wanted), 1, kMaxSplits);
}

}  // namespace

bool uses_split_kv(const Problem& p) {
  using Kernel = AttentionOptions::ForwardKernel;
  if (p.forward_kernel == Kernel::split_kv || p.block_table != nullptr) return true;
  return p.forward_kernel == Kernel::automatic && p.mask_blocks == nullptr && p.block_q == 0 && p.block_k == 0 &&
         p.seqlen_q <= kSplitKvMaxQueries;
}


void split_kv_forward(std::span<const Problem> problems) {
  if (problems.empty()) return;
  const int threads = problems.front().num_threads;
  const KernelSet& kernels = kernels_for(problems.front().isa);

  // Setup: the row blocks of every problem and the keys each must see (its first row's
  // window start to its last row's end), then their ranges and partials.
  std::vector<RowBlock> blocks;
  for (const Problem& p : problems) {
    if (p.heads == 0 || p.seqlen_q == 0) continue;
    const i64 nq = std::clamp<i64>(kSplitRows / p.group(), 1, p.seqlen_q);
    const i64 kv_heads = std::clamp<i64>(kSplitRows / (p.group() * nq), 1, p.heads_k);
    for (i64 b = 0; b < p.batch; ++b) {
      for (i64 hk0 = 0; hk0 < p.heads_k; hk0 += kv_heads) {
        for (i64 i0 = 0; i0 < p.seqlen_q; i0 += nq) {
          const i64 i1 = std::min(i0 + nq, p.seqlen_q);
          const Problem::Span keys = p.keys_of_query_tile(b, i0, i1, 1);
          blocks.push_back({&p, b, hk0, std::min(hk0 + kv_heads, p.heads_k), i0, i1, keys.begin,
                            std::max(keys.begin, keys.end), 1, -1});
        }
      }
    }
  }
  if (blocks.empty()) return;
  i64 partial_floats = 0, tasks = 0, max_rows = 0, max_d = 0;
  std::vector<i64> first_task;  // tasks of block n: first_task[n] .. first_task[n + 1] − 1
  for (RowBlock& blk : blocks) {
    blk.splits = split_kv_splits(*blk.p, blk.key_end - blk.key_begin, static_cast<i64>(blocks.size()));
    if (blk.splits > 1) {
      blk.partial = partial_floats;
      partial_floats += blk.splits * blk.rows() * (blk.p->headdim + 1);
    }
    first_task.push_back(tasks);
    tasks += blk.splits;
    max_rows = std::max(max_rows, blk.rows());
    max_d = std::max(max_d, blk.p->headdim);
  }
  first_task.push_back(tasks);
  Buffer partials(static_cast<std::size_t>(partial_floats));
  const i64 ws_floats = kernels.split_kv_workspace_floats(max_rows, max_d);
  Buffer scratch(static_cast<std::size_t>(ws_floats * threads));

  // Main loop: every (block, range); a task's range is fixed by its index alone.
#pragma omp parallel num_threads(threads)
  {
    float* ws = scratch.data() + ws_floats * omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
    for (i64 task = 0; task < tasks; ++task) {
      const i64 n = std::upper_bound(first_task.begin(), first_task.end(), task) - first_task.begin() - 1;
      const RowBlock& blk = blocks[n];
      const i64 s = task - first_task[n], keys = blk.key_end - blk.key_begin;
      const i64 j0 = blk.key_begin + keys * s / blk.splits, j1 = blk.key_begin + keys * (s + 1) / blk.splits;
      float* o = nullptr;
      float* lse = nullptr;
      if (blk.splits > 1) {
        o = partials.data() + blk.partial + s * blk.rows() * (blk.p->headdim + 1);
        lse = o + blk.rows() * blk.p->headdim;
      }
      kernels.split_kv_block(*blk.p, blk.b, blk.hk0, blk.hk1, blk.i0, blk.i1, j0, j1, o, lse, ws);
    }

    // Epilogue: merge the split blocks, each in range order.
#pragma omp for schedule(dynamic, 1)
    for (std::size_t n = 0; n < blocks.size(); ++n) {
      if (blocks[n].splits > 1) merge_partials(blocks[n], partials.data() + blocks[n].partial, kernels);
    }
  }
}

}  // namespace flashattn
