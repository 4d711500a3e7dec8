// flash.hpp — FlashAttention on the CPU: tiling, threading and scratch around the
// per-ISA tile kernels.
#pragma once

#include "core/problem.hpp"
#include "core/tiles.hpp"
#include "cpu/kernels.hpp"

namespace flashattn {

// Square tiles that fill a fast memory of `fast_floats` elements (the paper's rule, see
// flash.cpp), in multiples of `unit` where one fits, at most `max_side`.
TileConfig tiles_for_fast_memory(std::int64_t fast_floats, std::int64_t headdim, std::int64_t unit,
                                 std::int64_t max_side);
// Rows and columns of a whole number of register tiles of the isa's micro-kernel.
std::int64_t tile_unit(Isa isa);
// The largest tile side whose score tile stays in the L1.
std::int64_t tile_side_cap(Isa isa);
// The fast memory the kernels size their tiles for: half the per-core L2, in floats.
std::int64_t kernel_fast_memory();
// Tile sizes for a problem: the block mask's blocks, else the overrides, else
// tiles_for_fast_memory(kernel_fast_memory(), headdim, tile_unit, tile_side_cap).
TileConfig choose_tiles(const Problem& p);

// The forward's tasks (core/tiles.hpp), in waves of (batch, kv-head) pairs whose packed K
// and V take at most 16 MiB, or one pair a thread.
ForwardPlan flash_forward_plan(const Problem& p, const TileConfig& t);
// The backward's tasks (core/tiles.hpp): chunks of key tiles, enough of them to keep a
// machine busy whatever its thread count, bounded by the memory their dQ copies take; where
// the build packs Q and dO, in waves of groups (at most 16 MiB of copies, or two tasks a thread).
BackwardPlan flash_backward_plan(const Problem& p, const TileConfig& t);

void flash_forward(const Problem& p);
void flash_backward(const Problem& p);

}  // namespace flashattn
