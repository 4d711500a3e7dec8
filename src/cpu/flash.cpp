// flash.cpp — scheduling and scratch for the flash kernels (kernels run per tile).
//
// Forward (tiled): one task per (batch, head, query tile), dynamically scheduled, heaviest
// first under a causal mask (late query tiles see more keys). Tasks share nothing,
// so the result does not depend on the thread count. They run in waves of (batch, kv-head)
// pairs, each wave's K and V packed before it, so that the copies' memory is bounded.
// Calls with few queries (decoding) take the split-KV forward instead (split_kv.cpp), which
// reads K and V in place.
//
// Backward: one task per (batch, kv-head, chunk of key tiles). A task owns its rows of
// dK and dV outright. dQ gets contributions from every chunk, so each chunk adds into
// its own dQ copy (chunk 0 into dq itself) and the copies are summed in chunk order at
// the end. The chunk count depends on the problem only, never on the thread count, so
// results are bitwise identical for any number of threads. Where the build packs Q and dO
// (bf16 products), the tasks run in waves of groups, each wave's query heads packed before
// it, so that the copies' memory is bounded (waves change no sum).
#include "cpu/flash.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <cstring>
#include <vector>

#include "core/memory.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/split_kv.hpp"

namespace flashattn {
namespace {

using i64 = std::int64_t;

// Rows of d elements of `dtype` set to zero (all-zero bits in every dtype).
void zero_rows(const Bshd& t, DType dtype, i64 batch, i64 seqlen, i64 heads, i64 d, int threads) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (i64 b = 0; b < batch; ++b) {
    for (i64 s = 0; s < seqlen; ++s) {
      for (i64 h = 0; h < heads; ++h) std::memset(t.row(b, s, h, dtype), 0, static_cast<std::size_t>(element_bytes(dtype) * d));
    }
  }
}

// Copies the kernels read, `floats` each (none when 0): views[b · heads + h] for the pairs
// first .. last of the call's (batch, head) pairs in that order, made in parallel into
// `storage` from its start.
template <typename View, typename Pack>
void pack_copies(std::vector<View>& views, i64 heads, i64 first, i64 last, i64 floats, float* storage, int threads,
                 Pack pack) {
  if (floats == 0) return;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (i64 at = first; at < last; ++at) {
    views[static_cast<std::size_t>(at)] = pack(at / heads, at % heads, storage + (at - first) * floats);
  }
}

constexpr i64 kMaxTile = 256;

// Enough tasks to keep a machine busy whatever its thread count, bounded by the
// memory the extra dQ copies take (which grows linearly with seqlen_q).
constexpr i64 kBackwardTargetTasks = 16;
constexpr i64 kMaxPartialDqBytes = i64{32} << 20;

// The copies the kernels read (the forward's K and V; where the products multiply bf16,
// the backward's Q and dO, four bf16 copies, twice their own size) are packed a wave at a
// time: units (pairs, or groups of them) of at most this many bytes of copies in all, but
// at least `busy` of them (fewer would leave threads idle), and at most every unit.
constexpr i64 kMaxPackedBytes = i64{16} << 20;

i64 units_per_wave(i64 unit_bytes, i64 units, i64 busy) {
  if (unit_bytes <= 0 || units <= 0) return units;
  return std::clamp<i64>(std::max(kMaxPackedBytes / unit_bytes, busy), 1, units);
}

}  // namespace

ForwardPlan flash_forward_plan(const Problem& p, const TileConfig& t) {
  ForwardPlan plan;
  plan.q_tiles = ceil_div(p.seqlen_q, t.block_q);
  plan.tasks = p.batch * p.heads * plan.q_tiles;
  plan.pairs = p.batch * p.heads_k;
  plan.packed_floats = kernels_for(p.isa).packed_kv_floats(p, t);
  // At least a pair a thread, so that every thread has a pair to pack and its tasks to run.
  plan.pairs_per_wave = units_per_wave(plan.packed_floats * i64{sizeof(float)}, plan.pairs, p.num_threads);
  return plan;
}

BackwardPlan flash_backward_plan(const Problem& p, const TileConfig& t) {
  BackwardPlan plan;
  plan.pairs_per_task = p.dbias_sums() ? p.batch * p.heads_k : 1;
  plan.groups = p.batch * p.heads_k / std::max<i64>(plan.pairs_per_task, 1);
  plan.key_tiles = ceil_div(p.seqlen_k, t.block_k);
  const i64 copy_bytes = p.batch * p.seqlen_q * p.heads * p.headdim * i64{sizeof(float)};
  i64 chunks = ceil_div(kBackwardTargetTasks, std::max<i64>(plan.groups, 1));
  if (copy_bytes > 0) chunks = std::min(chunks, 1 + kMaxPartialDqBytes / copy_bytes);
  plan.chunks = std::clamp<i64>(chunks, 1, std::max<i64>(plan.key_tiles, 1));
  plan.tasks = plan.groups * plan.chunks;
  plan.packed_q_floats = kernels_for(p.isa).packed_q_floats(p, t);
  const i64 group_q_bytes = plan.packed_q_floats * i64{sizeof(float)} * plan.pairs_per_task * p.group();
  plan.groups_per_wave = units_per_wave(group_q_bytes, plan.groups, ceil_div(2 * i64{p.num_threads}, plan.chunks));
  return plan;
}

i64 tile_unit(Isa isa) {
  const KernelSet& kernels = kernels_for(isa);
  return std::lcm<i64>(kernels.micro_rows, kernels.micro_cols);
}

// The score tile is what the online softmax sweeps twice and P·V reads once, so it is
// kept to the L1: side ≈ √(L1d / 4 bytes) in whole register tiles (96 with a 32 KiB L1d).
i64 tile_side_cap(Isa isa) {
  const i64 unit = tile_unit(isa);
  const double side = std::sqrt(static_cast<double>(cache_sizes().l1d_bytes) / sizeof(float));
  return std::clamp<i64>(std::llround(side / unit) * unit, unit, std::max<i64>(unit, kMaxTile));
}

// The paper's rule (Bc = ⌈M/4d⌉, Br = min(Bc, d)) fills a fast memory of M elements
// with the tiles one step touches. Here that step holds Q, K, V and the output
// accumulator (4·B·d) and the score tile (B²), so the tile is the largest square with
// 4·B·d + B² ≤ M, in whole register tiles both ways (the forward's queries are columns,
// the backward's rows) where one fits, and at most `max_side`. While B ≪ d the traffic
// N²d/B falls as d²/M (Theorem 2); once B² dominates, as 1/√M; past the cap, not at all.
// `flashattn io` counts with this rule.
TileConfig tiles_for_fast_memory(i64 fast_floats, i64 headdim, i64 unit, i64 max_side) {
  const double d = static_cast<double>(headdim);
  i64 side = std::max<i64>(1, static_cast<i64>(std::floor(std::sqrt(4 * d * d + fast_floats) - 2 * d)));
  side = std::min(side, max_side);
  const i64 block = side >= unit ? side / unit * unit : side;
  return {static_cast<int>(block), static_cast<int>(block)};
}

i64 kernel_fast_memory() { return cache_sizes().l2_bytes / 2 / i64{sizeof(float)}; }

// The kernels' fast memory is half the per-core L2 (the other half holds the packed K/V
// stream and the next tiles), and the cap is tile_side_cap. With L1d 32 KiB, L2 512 KiB,
// AVX2: 96×96 at d = 64 and 128 (the rule alone would give 144 at d = 64), 48×48 at d = 256.
// Measured with `flashattn bench --batch 1 --heads 8 --variant plain --impl flash --pass
// fwd,bwd --seqlen 1024,2048 --headdim 64,128 --block-q B --block-k B --repeat 5` (AVX2, 2
// threads, /sgemm, two runs each): d = 64, N = 1024 forward 0.83 with 96 against 0.71 with
// 144; elsewhere the two were within noise (0.72–0.91). At N = 4096: 48 gave fwd 0.85 /
// bwd 0.61 (d = 64) and 0.72 / 0.63 (d = 128): tiles below 96 starve the backward.
TileConfig choose_tiles(const Problem& p) {
  TileConfig t = tiles_for_fast_memory(kernel_fast_memory(), p.headdim, tile_unit(p.isa), tile_side_cap(p.isa));
  if (p.block_q > 0) t.block_q = p.block_q;
  if (p.block_k > 0) t.block_k = p.block_k;
  if (p.mask_blocks != nullptr) {  // a tile is a block of the mask, so it is skipped whole
    t.block_q = static_cast<int>(p.mask_block_q);
    t.block_k = static_cast<int>(p.mask_block_k);
  }
  return t;
}

void flash_forward(const Problem& p) {
  if (uses_split_kv(p)) return split_kv_forward({&p, 1});  // decoding: K and V read in place
  if (p.batch == 0 || p.heads == 0 || p.seqlen_q == 0) return;
  const KernelSet& kernels = kernels_for(p.isa);
  const TileConfig tiles = choose_tiles(p);
  const int threads = p.num_threads;
  const i64 ws_floats = kernels.forward_workspace_floats(tiles, p.headdim);
  Buffer scratch(static_cast<std::size_t>(ws_floats * threads));

  const ForwardPlan plan = flash_forward_plan(p, tiles);
  Buffer kv_storage(static_cast<std::size_t>(plan.pairs_per_wave * plan.packed_floats));
  std::vector<PackedKv> kv(static_cast<std::size_t>(plan.pairs));
  for (i64 w0 = 0; w0 < plan.pairs; w0 += plan.pairs_per_wave) {
    const i64 w1 = std::min(plan.pairs, w0 + plan.pairs_per_wave);
    // Setup: K and V of the wave's (batch, kv-head) pairs into contiguous, padded rows (PackedKv).
    pack_copies(kv, p.heads_k, w0, w1, plan.packed_floats, kv_storage.data(), threads,
                [&](i64 b, i64 hk, float* base) { return kernels.pack_kv(p, tiles, b, hk, base); });

    // Main loop: the wave's tasks.
#pragma omp parallel num_threads(threads)
    {
      float* ws = scratch.data() + ws_floats * omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
      for (i64 n = w0 * plan.tasks_per_pair(); n < w1 * plan.tasks_per_pair(); ++n) {
        const ForwardTask task = plan.task(p, tiles, n);
        const PackedKv& group_kv = kv[static_cast<std::size_t>(task.b * p.heads_k + p.kv_head(task.h))];
        kernels.forward_block(p, tiles, task.b, task.h, task.q0, task.q1, group_kv, ws);
      }
    }
  }
}

void flash_backward(const Problem& p) {
  const int threads = p.num_threads;
  const i64 d = p.headdim;
  zero_rows(p.dq, DType::f32, p.batch, p.seqlen_q, p.heads, d, threads);
  if (p.dbias != nullptr) {  // the kernels add into it; blocks they skip keep a zero gradient
#pragma omp parallel for collapse(3) num_threads(threads) schedule(static)
    for (i64 b = 0; b < p.dbias_batches; ++b) {
      for (i64 h = 0; h < p.dbias_heads; ++h) {
        for (i64 i = 0; i < p.seqlen_q; ++i) {
          for (i64 j = 0; j < p.seqlen_k; ++j) p.dbias_at(b, h, i, j) = 0.0f;
        }
      }
    }
  }
  if (p.batch == 0 || p.seqlen_k == 0) return;
  if (p.heads == 0) {
    zero_rows(p.dk, p.kv_dtype, p.batch, p.seqlen_k, p.heads_k, d, threads);
    zero_rows(p.dv, p.kv_dtype, p.batch, p.seqlen_k, p.heads_k, d, threads);
    return;
  }
  const KernelSet& kernels = kernels_for(p.isa);
  const TileConfig tiles = choose_tiles(p);

  // Setup: delta = rowsum(dO ∘ O), (batch, heads, seqlen_q) contiguous.
  Buffer delta(static_cast<std::size_t>(p.batch * p.heads * p.seqlen_q));
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 h = 0; h < p.heads; ++h) {
      float o_room[kMaxHeadDim], dout_room[kMaxHeadDim];  // 16-bit rows, widened
      for (i64 i = 0; i < p.seqlen_q; ++i) {
        const float* o = p.out.f32_row(b, i, h, p.out_dtype, d, o_room, kernels.convert_to_f32);
        const float* dout = p.dout.f32_row(b, i, h, p.q_dtype, d, dout_room, kernels.convert_to_f32);
        float sum = 0.0f;
        for (i64 e = 0; e < d; ++e) sum += o[e] * dout[e];
        delta.data()[(b * p.heads + h) * p.seqlen_q + i] = sum;
      }
    }
  }

  // A broadcast bias's gradient sums over batches or heads, which tasks of their own
  // would add into one element in any order: then a task walks every (batch, kv-head) of
  // its chunk, in order, and the sums are fixed whatever the thread count (BackwardPlan).
  const BackwardPlan plan = flash_backward_plan(p, tiles);
  const i64 chunks = plan.chunks;
  const i64 copy_floats = p.batch * p.seqlen_q * p.heads * d;
  Buffer dq_copies(static_cast<std::size_t>(copy_floats * (chunks - 1)));
  if (dq_copies.size() > 0) std::memset(dq_copies.data(), 0, dq_copies.size() * sizeof(float));
  auto dq_target = [&](i64 chunk) {
    if (chunk == 0) return p.dq;
    // Contiguous (batch, seqlen_q, heads, headdim).
    return Bshd{dq_copies.data() + (chunk - 1) * copy_floats, p.seqlen_q * p.heads * d, p.heads * d, d};
  };

  const i64 ws_floats = kernels.backward_workspace_floats(tiles, d);
  Buffer scratch(static_cast<std::size_t>(ws_floats * threads));

  // Q and dO packed for the kernels where the build asks (PackedQ), a wave of groups at a
  // time: pack the wave's query heads, run its tasks (BackwardPlan::groups_per_wave).
  const i64 q_floats = plan.packed_q_floats, heads_per_group = plan.pairs_per_task * p.group();
  Buffer q_storage(static_cast<std::size_t>(plan.groups_per_wave * heads_per_group * q_floats));
  std::vector<PackedQ> packed_q(q_floats > 0 ? static_cast<std::size_t>(p.batch * p.heads) : 0);
  for (i64 g0 = 0; g0 < plan.groups; g0 += plan.groups_per_wave) {
    const i64 g1 = std::min(plan.groups, g0 + plan.groups_per_wave);
    // A group's pairs are consecutive (batch, kv-head) pairs, and so its query heads
    // consecutive (batch, head) pairs.
    pack_copies(packed_q, p.heads, g0 * heads_per_group, g1 * heads_per_group, q_floats, q_storage.data(), threads,
                [&](i64 b, i64 h, float* base) { return kernels.pack_q(p, tiles, b, h, base); });

    // Main loop.
#pragma omp parallel num_threads(threads)
    {
      float* ws = scratch.data() + ws_floats * omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
      for (i64 task = g0 * chunks; task < g1 * chunks; ++task) {
        const Bshd target = dq_target(plan.chunk_of(task));
        plan.walk_task(p, tiles, task, [&](i64 b, i64 hk, i64 kv0, i64 kv1) {
          kernels.backward_block(p, tiles, b, hk, kv0, kv1, delta.data(), packed_q.empty() ? nullptr : packed_q.data(),
                                 target, ws);
        });
      }
    }
  }

  // Epilogue: add the dQ copies in chunk order.
  if (chunks > 1) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (i64 b = 0; b < p.batch; ++b) {
      for (i64 i = 0; i < p.seqlen_q; ++i) {
        for (i64 h = 0; h < p.heads; ++h) {
          float* dst = p.dq.row(b, i, h);
          for (i64 c = 1; c < chunks; ++c) {
            const float* src = dq_target(c).row(b, i, h);
            for (i64 e = 0; e < d; ++e) dst[e] += src[e];
          }
        }
      }
    }
  }
}

}  // namespace flashattn
