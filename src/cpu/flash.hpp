// flash.hpp — FlashAttention on the CPU: tiling, threading and scratch around the
// per-ISA tile kernels.
#pragma once

#include "core/problem.hpp"
#include "cpu/kernels.hpp"

namespace flashattn {

// Square tiles that fill a fast memory of `fast_floats` elements (the paper's rule, see
// flash.cpp), in multiples of `unit` where one fits.
TileConfig tiles_for_fast_memory(std::int64_t fast_floats, std::int64_t headdim, std::int64_t unit);
// Rows and columns of a whole number of register tiles of the isa's micro-kernel.
std::int64_t tile_unit(Isa isa);
// Tile sizes for a problem: the block mask's blocks, else the overrides, else
// tiles_for_fast_memory with half the per-core L2 as the fast memory.
TileConfig choose_tiles(const Problem& p);

// How many chunks of key tiles the backward splits each (batch, kv-head) into; each
// chunk past the first adds into its own dQ copy.
std::int64_t flash_backward_chunks(const Problem& p, std::int64_t key_tiles);

void flash_forward(const Problem& p);
void flash_backward(const Problem& p);

}  // namespace flashattn
