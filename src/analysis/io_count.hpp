// io_count.hpp — slow-memory traffic of each algorithm in the paper's two-level model.
//
// A slow memory holds the tensors; a fast memory of M elements holds the tiles one step
// works on. The counters walk the same loops as the kernels (flash.cpp and
// flash_kernels.inc: the same tasks, tile ranges, block-mask skips and tile rule) and
// the standard path's GEMM → softmax → GEMM passes, adding every element moved between
// the two memories. A GEMM counts as reading its operands and writing its result once:
// its internal blocking is the BLAS's, and the paper's Θ(Nd + N²) counts it so too.
#pragma once

#include <cstdint>

#include "core/problem.hpp"
#include "cpu/kernels.hpp"

namespace flashattn {

struct Traffic {
  std::int64_t reads = 0, writes = 0;  // elements
  double flops = 0;                    // multiply-adds count 2, as the benchmark counts
  std::int64_t total() const { return reads + writes; }
};

// p needs its shape and options set (apply_options); no tensor is read.
Traffic standard_forward_traffic(const Problem& p);
Traffic standard_backward_traffic(const Problem& p);
Traffic flash_forward_traffic(const Problem& p, TileConfig tiles);
Traffic flash_backward_traffic(const Problem& p, TileConfig tiles);

}  // namespace flashattn
