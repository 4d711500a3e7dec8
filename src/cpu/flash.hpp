// flash.hpp — FlashAttention on the CPU: tiling, threading and scratch around the
// per-ISA tile kernels.
#pragma once

#include "core/problem.hpp"
#include "cpu/kernels.hpp"

namespace flashattn {

// Tile sizes for a problem: the override if given, else the paper's rule with the
// per-core L2 as the fast memory (see flash.cpp).
TileConfig choose_tiles(const Problem& p);

void flash_forward(const Problem& p);
void flash_backward(const Problem& p);

}  // namespace flashattn
