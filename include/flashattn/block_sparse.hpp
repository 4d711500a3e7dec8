// flashattn/block_sparse.hpp — block masks for block-sparse attention.
//
// Each generator returns the mask's bytes, row-major, shape (rows, cols) in blocks; wrap
// them with make_block_mask(). Patterns are the ones the FlashAttention paper used (after
// Child et al. 2019 and Dao et al. 2022's butterfly).
#pragma once

#include <cstdint>
#include <vector>

#include "flashattn/attention.hpp"
#include "flashattn/export.hpp"

namespace flashattn {

// The mask's shape for a problem: ⌈seqlen_q / block_q⌉ × ⌈seqlen_k / block_k⌉ blocks.
FLASHATTN_API BlockMask make_block_mask(const std::vector<std::uint8_t>& blocks, std::int64_t seqlen_q,
                          std::int64_t seqlen_k, std::int64_t block_q, std::int64_t block_k);

// Local + global: block (r, c) is on when |r − c| <= window, or r < global, or c < global.
FLASHATTN_API std::vector<std::uint8_t> local_global_blocks(std::int64_t rows, std::int64_t cols,
                                              std::int64_t window, std::int64_t global);
// Fixed stride: on within each stride × stride diagonal group, and in the last column of
// every group (the "summary" blocks every query sees).
FLASHATTN_API std::vector<std::uint8_t> fixed_stride_blocks(std::int64_t rows, std::int64_t cols, std::int64_t stride);
// Butterfly: on where r == c or r XOR c is a power of two.
FLASHATTN_API std::vector<std::uint8_t> butterfly_blocks(std::int64_t rows, std::int64_t cols);
// Exactly round(density · rows · cols) blocks on, chosen by `seed`.
FLASHATTN_API std::vector<std::uint8_t> random_blocks(std::int64_t rows, std::int64_t cols, double density,
                                        std::uint64_t seed);

}  // namespace flashattn
