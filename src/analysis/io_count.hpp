// io_count.hpp — slow-memory traffic of each algorithm in the paper's two-level model.
//
// A slow memory holds the tensors; a fast memory of M elements holds the tiles one step
// works on. The flash counters walk the kernels' very loops — the tasks of flash.cpp's
// plans and core/tiles.hpp's walks over tile pairs, with every skip (windows, block masks,
// documents) — and add what the kernels load per task, tile and pair; the standard
// counters follow its GEMM → softmax → GEMM passes. Every element moved between the two
// memories is counted (bias, dbias and masks too, where the problem has them). A GEMM counts as reading its operands and writing its result once:
// its internal blocking is the BLAS's, and the paper's Θ(Nd + N²) counts it so too.
#pragma once

#include <cstdint>

#include "core/problem.hpp"
#include "cpu/kernels.hpp"

namespace flashattn {

struct Traffic {
  std::int64_t reads = 0, writes = 0;  // elements
  double flops = 0;                    // multiply-adds count 2, as the benchmark counts
  // The tile pairs the flash loops visit and their query and key rows (what
  // Problem::tile_counts sees in a real run); 0 for standard.
  std::int64_t pairs = 0, query_rows = 0, key_rows = 0;
  std::int64_t total() const { return reads + writes; }
};

// p needs its shape and options set (apply_options); no tensor is read.
Traffic standard_forward_traffic(const Problem& p);
Traffic standard_backward_traffic(const Problem& p);
Traffic flash_forward_traffic(const Problem& p, TileConfig tiles);
Traffic flash_backward_traffic(const Problem& p, TileConfig tiles);

// The paper's own algorithms, for Theorem 2 as stated: Algorithm 1 (forward) and the
// backward of its appendix (Algorithm 4), each (batch, head) on its own, key/value blocks
// in the outer loop and Q, O, ℓ, m (backward: Q, O, dO, dQ, ℓ, m) re-read and the
// accumulators re-written for every key block. Blocks no query of a row block sees (causal,
// windows, block masks) are skipped, as block-sparse FlashAttention (Algorithm 5) does.
// paper_tiles is the paper's shape for a fast memory of M elements: B_c = ⌈M / 4d⌉,
// B_r = min(B_c, d) (block_q = B_r, block_k = B_c).
TileConfig paper_tiles(std::int64_t fast_floats, std::int64_t headdim);
Traffic paper_forward_traffic(const Problem& p, TileConfig tiles);
Traffic paper_backward_traffic(const Problem& p, TileConfig tiles);

}  // namespace flashattn
