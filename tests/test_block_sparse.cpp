// test_block_sparse.cpp — block-sparse attention: every path against the reference with
// the mask applied element by element, empty blocks never read, the mask generators, and
// bad masks rejected.
#include <gmock/gmock.h>

#include <cmath>
#include <limits>

#include "test_support.hpp"

namespace flashattn::testing {
namespace {

using harness::Case;

std::vector<harness::Case> sparse_cases() {
  std::vector<Case> cases;
  std::uint64_t seed = 500;
  auto add = [&](harness::Shape shape, std::int64_t bq, std::int64_t bk, const char* pattern, bool causal,
                 float dropout) {
    Case c;
    c.shape = shape;
    c.options.causal = causal;
    c.options.dropout_p = dropout;
    c.options.seed = seed;
    c.padded = seed % 2 == 0;
    c.data_seed = seed++;
    const std::int64_t rows = (shape.seqlen_q + bq - 1) / bq, cols = (shape.seqlen_k + bk - 1) / bk;
    const std::string p = pattern;
    std::vector<std::uint8_t> blocks =
        p == "empty"       ? std::vector<std::uint8_t>(rows * cols, 0)
        : p == "full"      ? std::vector<std::uint8_t>(rows * cols, 1)
        : p == "local"     ? local_global_blocks(rows, cols, 1, 1)
        : p == "fixed"     ? fixed_stride_blocks(rows, cols, 2)
        : p == "butterfly" ? butterfly_blocks(rows, cols)
                           : random_blocks(rows, cols, 0.4, seed);
    c.set_block_mask(std::move(blocks), bq, bk);
    cases.push_back(c);
  };
  for (const char* pattern : {"empty", "full", "local", "fixed", "butterfly", "random"}) {
    add({2, 200, 170, 4, 2, 64}, 64, 32, pattern, false, 0.0f);
    add({1, 130, 250, 2, 1, 40}, 48, 96, pattern, true, 0.0f);
  }
  add({1, 97, 61, 2, 2, 59}, 7, 13, "random", false, 0.1f);  // blocks of awkward sizes
  add({2, 61, 97, 4, 1, 32}, 16, 16, "random", true, 0.0f);   // causal with seqlen_q < seqlen_k
  add({1, 150, 90, 2, 2, 96}, 32, 64, "local", true, 0.2f);   // causal with fully masked rows
  add({1, 1, 1, 1, 1, 16}, 64, 64, "full", false, 0.0f);
  add({1, 100, 120, 8, 1, 32}, 32, 32, "butterfly", true, 0.0f);  // grouped-query ratio 8
  // One mask per batch and head.
  for (bool causal : {false, true}) {
    add({2, 130, 110, 4, 2, 32}, 32, 32, "full", causal, 0.0f);
    Case& c = cases.back();
    const std::int64_t rows = 5, cols = 4;
    std::vector<std::uint8_t> blocks;
    for (int m = 0; m < 2 * 4; ++m) {
      const std::vector<std::uint8_t> one = random_blocks(rows, cols, 0.2 + 0.1 * m, 40 + m);
      blocks.insert(blocks.end(), one.begin(), one.end());
    }
    c.mask = std::make_shared<const std::vector<std::uint8_t>>(std::move(blocks));
    c.options.block_mask = BlockMask{c.mask->data(), 32, 32, rows, cols, 4 * rows * cols, rows * cols};
  }
  return cases;
}

class BlockSparse : public ::testing::TestWithParam<PathCase> {};

TEST_P(BlockSparse, MatchesTheElementwiseReference) { expect_matches_reference(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Patterns, BlockSparse, ::testing::ValuesIn(for_every_isa(sparse_cases())), path_case_name);

// Keys and values in blocks no query uses are never read: NaN there leaves every output
// and gradient finite, and the gradients of those keys are exactly zero.
class BlockSparseSkips : public ::testing::TestWithParam<Isa> {};

TEST_P(BlockSparseSkips, EmptyBlocksAreNeverRead) {
  Case c;
  c.shape = {1, 128, 160, 2, 1, 32};
  c.options.isa = GetParam();
  // Key block 1 (keys 32 .. 63) is off for every query block.
  std::vector<std::uint8_t> blocks = random_blocks(4, 5, 0.7, 3);
  for (int r = 0; r < 4; ++r) blocks[r * 5 + 1] = 0;
  for (int r = 0; r < 4; ++r) blocks[r * 5 + 0] = 1;  // and no row is empty
  c.set_block_mask(blocks, 32, 32);
  harness::Inputs in = harness::make_inputs(c);
  for (std::int64_t j = 32; j < 64; ++j) {
    for (std::int64_t e = 0; e < 32; ++e) {
      in.k.at(0, j, 0, e) = std::numeric_limits<float>::quiet_NaN();
      in.v.at(0, j, 0, e) = std::numeric_limits<float>::quiet_NaN();
    }
  }
  harness::ForwardOutputs fwd = harness::make_forward_outputs(c);
  harness::BackwardOutputs bwd = harness::make_backward_outputs(c);
  harness::run_forward(c, in, fwd, Algorithm::flash);
  harness::run_backward(c, in, fwd, bwd, Algorithm::flash);
  for (const harness::HostTensor* t : {&fwd.out, &fwd.lse, &bwd.dq}) {
    for (double x : t->to_double()) ASSERT_TRUE(std::isfinite(x));
  }
  for (std::int64_t j = 0; j < 160; ++j) {
    for (std::int64_t e = 0; e < 32; ++e) {
      if (j >= 32 && j < 64) {
        ASSERT_EQ(bwd.dk.at(0, j, 0, e), 0.0f);
        ASSERT_EQ(bwd.dv.at(0, j, 0, e), 0.0f);
      } else {
        ASSERT_TRUE(std::isfinite(bwd.dk.at(0, j, 0, e)) && std::isfinite(bwd.dv.at(0, j, 0, e)));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, BlockSparseSkips, ::testing::ValuesIn(isas_to_test()), isa_param_name);

TEST(BlockMaskGenerators, HaveTheirShapes) {
  const auto local = local_global_blocks(6, 6, 1, 1);
  for (int r = 0; r < 6; ++r) {
    for (int c = 0; c < 6; ++c) {
      EXPECT_EQ(local[r * 6 + c], (std::abs(r - c) <= 1 || r == 0 || c == 0) ? 1 : 0) << r << "," << c;
    }
  }
  const auto butterfly = butterfly_blocks(8, 8);
  int on = 0;
  for (int r = 0; r < 8; ++r) {
    EXPECT_EQ(butterfly[r * 8 + r], 1);
    for (int c = 0; c < 8; ++c) on += butterfly[r * 8 + c];
  }
  EXPECT_EQ(on, 8 * 4);  // the diagonal and log2(8) = 3 partners per row
  const auto fixed = fixed_stride_blocks(4, 4, 2);
  EXPECT_EQ(fixed, (std::vector<std::uint8_t>{1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 1}));
  const auto random = random_blocks(10, 10, 0.25, 9);
  int count = 0;
  for (std::uint8_t x : random) count += x;
  EXPECT_EQ(count, 25);
  EXPECT_NE(random, random_blocks(10, 10, 0.25, 10));
  EXPECT_THROW(random_blocks(2, 2, 1.5, 0), Error);
  EXPECT_THROW(make_block_mask(random, 100, 100, 10, 20), Error);  // 10 x 10 blocks expected 10 x 5
}

TEST(BlockMaskValidation, BadMasksAreRejectedNamingTheArgument) {
  Case c;
  c.shape = {1, 100, 80, 2, 2, 16};
  const std::vector<std::uint8_t> blocks(4 * 3, 1);
  auto expect_error = [&](BlockMask m, const char* message) {
    c.options.block_mask = m;
    expect_forward_error(c, message);
  };
  expect_error(BlockMask{blocks.data(), 32, 32, 3, 3}, "options.block_mask: expected shape");
  expect_error(BlockMask{blocks.data(), 0, 32, 4, 3}, "options.block_mask: block sizes must be in [1, 4096]");
  expect_error(BlockMask{nullptr, 25, 32, 4, 3}, "options.block_mask: blocks is null");
}

}  // namespace
}  // namespace flashattn::testing
