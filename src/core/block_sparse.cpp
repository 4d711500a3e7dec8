// block_sparse.cpp — the block-mask generators (see flashattn/block_sparse.hpp).
#include "flashattn/block_sparse.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "flashattn/error.hpp"

namespace flashattn {
namespace {

using i64 = std::int64_t;

void check_shape(const char* fn, i64 rows, i64 cols) {
  if (rows < 0 || cols < 0) throw Error(std::string(fn) + ": rows and cols must be >= 0");
}

template <typename On>
std::vector<std::uint8_t> generate(i64 rows, i64 cols, On on) {
  std::vector<std::uint8_t> blocks(static_cast<std::size_t>(rows * cols));
  for (i64 r = 0; r < rows; ++r) {
    for (i64 c = 0; c < cols; ++c) blocks[r * cols + c] = on(r, c) ? 1 : 0;
  }
  return blocks;
}

}  // namespace

BlockMask make_block_mask(const std::vector<std::uint8_t>& blocks, i64 seqlen_q, i64 seqlen_k,
                          i64 block_q, i64 block_k) {
  if (block_q < 1 || block_k < 1) throw Error("make_block_mask: block sizes must be positive");
  BlockMask m;
  m.blocks = blocks.data();
  m.block_q = block_q;
  m.block_k = block_k;
  m.rows = (seqlen_q + block_q - 1) / block_q;
  m.cols = (seqlen_k + block_k - 1) / block_k;
  if (static_cast<i64>(blocks.size()) != m.rows * m.cols) {
    throw Error("make_block_mask: blocks has " + std::to_string(blocks.size()) + " entries, expected " +
                std::to_string(m.rows) + " x " + std::to_string(m.cols));
  }
  return m;
}

std::vector<std::uint8_t> local_global_blocks(i64 rows, i64 cols, i64 window, i64 global) {
  check_shape("local_global_blocks", rows, cols);
  return generate(rows, cols, [&](i64 r, i64 c) { return std::abs(r - c) <= window || r < global || c < global; });
}

std::vector<std::uint8_t> fixed_stride_blocks(i64 rows, i64 cols, i64 stride) {
  check_shape("fixed_stride_blocks", rows, cols);
  if (stride < 1) throw Error("fixed_stride_blocks: stride must be positive");
  return generate(rows, cols, [&](i64 r, i64 c) { return r / stride == c / stride || c % stride == stride - 1; });
}

std::vector<std::uint8_t> butterfly_blocks(i64 rows, i64 cols) {
  check_shape("butterfly_blocks", rows, cols);
  return generate(rows, cols, [](i64 r, i64 c) {
    const i64 x = r ^ c;
    return (x & (x - 1)) == 0;  // 0 (the diagonal) or a power of two
  });
}

std::vector<std::uint8_t> random_blocks(i64 rows, i64 cols, double density, std::uint64_t seed) {
  check_shape("random_blocks", rows, cols);
  if (!(density >= 0.0 && density <= 1.0)) throw Error("random_blocks: density must be in [0, 1]");
  std::vector<i64> order(static_cast<std::size_t>(rows * cols));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  std::vector<std::uint8_t> blocks(order.size(), 0);
  const auto on = static_cast<std::size_t>(std::llround(density * static_cast<double>(order.size())));
  for (std::size_t n = 0; n < on; ++n) blocks[order[n]] = 1;
  return blocks;
}

}  // namespace flashattn
