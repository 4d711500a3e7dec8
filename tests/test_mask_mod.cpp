// test_mask_mod.cpp — masks written as callables (flashattn/mask_mod.hpp): the block
// classification against closed forms, and every path with the classified mask against the
// reference of the same mask written out element by element as an explicit u8 tensor (so
// the bits, the full/partial/empty states and the kernels' use of them are checked against
// the callable itself), forward and backward, on shapes that are not multiples of the block.
#include <gmock/gmock.h>

#include <functional>
#include <memory>

#include "test_support.hpp"

namespace flashattn::testing {
namespace {

using harness::Case;
using i64 = std::int64_t;
using MaskFn = std::function<bool(i64, i64, i64, i64)>;

TEST(ModBlockMask, ClassifiesCausalBlocks) {
  const ModBlockMask m([](i64, i64, i64 i, i64 j) { return j <= i; }, 1, 1, 256, 256, 64, 64);
  EXPECT_EQ(m.empty_blocks(), 6);    // above the diagonal
  EXPECT_EQ(m.full_blocks(), 6);     // below it
  EXPECT_EQ(m.partial_blocks(), 4);  // on it
  const BlockMask v = m.view();
  EXPECT_EQ(v.rows, 4);
  EXPECT_EQ(v.blocks[0 * 4 + 1], 0);
  EXPECT_EQ(v.blocks[1 * 4 + 0], 1);
  EXPECT_EQ(v.blocks[2 * 4 + 2], 2);
  // Bit (i, j) of a diagonal block is j <= i: row 3 keeps columns 0..3.
  const std::uint64_t* bits = v.partial_bits + v.partial_offset[2 * 4 + 2];
  const std::uint64_t row3 = (bits[(3 * 64) >> 6] >> ((3 * 64) & 63)) & 0xFF;
  EXPECT_EQ(row3, 0x0Fu);
}

TEST(ModBlockMask, PerHeadMasksAndRaggedEdges) {
  // Head h sees keys j <= i − h; 100 × 70 in blocks of 32 × 48: 4 × 2 blocks per head.
  const ModBlockMask m([](i64, i64 h, i64 i, i64 j) { return j <= i - 40 * h; }, 1, 2, 100, 70, 32, 48);
  EXPECT_EQ(m.empty_blocks() + m.full_blocks() + m.partial_blocks(), 16);
  const BlockMask v = m.view();
  EXPECT_EQ(v.head_stride, 8);
  EXPECT_EQ(v.batch_stride, 0);
  EXPECT_EQ(v.blocks[0], 2);              // head 0, block (0, 0): the diagonal
  EXPECT_EQ(v.blocks[8 + 0 * 2 + 0], 0);  // head 1, block (0, 0): rows 0..31 see nothing
}

struct ModCase {
  PathCase path;  // the mask as a ModBlockMask
  Case oracle;    // the same mask as an explicit u8 tensor
};

void PrintTo(const ModCase& m, std::ostream* os) { PrintTo(m.path, os); }

std::vector<ModCase> mod_cases() {
  std::vector<ModCase> out;
  std::uint64_t seed = 1300;
  auto add = [&](harness::Shape shape, i64 bq, i64 bk, bool per_head, MaskFn fn, float dropout) {
    Case c;
    c.shape = shape;
    c.options.dropout_p = dropout;
    c.options.seed = seed;
    c.padded = seed % 2 == 0;
    c.data_seed = seed++;
    const i64 batches = per_head ? shape.batch : 1, heads = per_head ? shape.heads : 1;
    Case oracle = c;
    std::vector<std::uint8_t> keep;
    for (i64 b = 0; b < batches; ++b) {
      for (i64 h = 0; h < heads; ++h) {
        for (i64 i = 0; i < shape.seqlen_q; ++i) {
          for (i64 j = 0; j < shape.seqlen_k; ++j) keep.push_back(fn(b, h, i, j) ? 1 : 0);
        }
      }
    }
    oracle.set_mask(std::move(keep), batches, heads);
    c.set_mod_mask(std::make_shared<const ModBlockMask>(fn, batches, heads, shape.seqlen_q, shape.seqlen_k, bq, bk));
    for (Isa isa : isas_to_test()) out.push_back({{c, isa}, oracle});
  };
  const i64 offset = 30;  // bottom-right causal with 30 more keys than queries
  add({2, 150, 180, 2, 1, 40}, 64, 64, false, [=](i64, i64, i64 i, i64 j) { return j <= i + offset; }, 0.0f);
  add({1, 170, 170, 4, 2, 59}, 32, 48, false, [](i64, i64, i64 i, i64 j) { return j <= i && i - j <= 20; }, 0.1f);
  add({1, 200, 200, 2, 2, 32}, 64, 64, false, [](i64, i64, i64 i, i64 j) { return i / 50 == j / 40; }, 0.0f);
  add({2, 97, 130, 2, 1, 16}, 32, 32, true,
      [](i64 b, i64 h, i64 i, i64 j) { return (i * 31 + j * 17 + b * 7 + h * 3) % 5 != 0; }, 0.0f);  // scattered
  add({1, 120, 120, 2, 2, 24}, 48, 48, true, [](i64, i64 h, i64 i, i64 j) { return j <= i - 50 * h; }, 0.0f);
  add({1, 64, 64, 1, 1, 16}, 32, 32, false, [](i64, i64, i64, i64) { return false; }, 0.0f);  // all empty
  add({1, 90, 70, 2, 2, 16}, 32, 32, false, [](i64, i64, i64, i64) { return true; }, 0.0f);   // all full
  return out;
}

std::string mod_case_name(const ::testing::TestParamInfo<ModCase>& info) {
  return path_case_name(::testing::TestParamInfo<PathCase>(info.param.path, info.index));
}

class MaskMod : public ::testing::TestWithParam<ModCase> {};

TEST_P(MaskMod, MatchesTheReferenceOfTheExplicitMask) { expect_matches_reference(GetParam().path, &GetParam().oracle); }

INSTANTIATE_TEST_SUITE_P(Callables, MaskMod, ::testing::ValuesIn(mod_cases()), mod_case_name);

TEST(ModBlockMaskValidation, BitsAndOffsetsGoTogether) {
  const ModBlockMask m([](i64, i64, i64 i, i64 j) { return j <= i; }, 1, 1, 64, 64, 32, 32);
  Case c;
  c.shape = {1, 64, 64, 1, 1, 16};
  c.set_mod_mask(std::make_shared<const ModBlockMask>(m));
  c.options.block_mask->partial_offset = nullptr;
  expect_forward_error(c, "options.block_mask: partial_bits and partial_offset go together");
}

}  // namespace
}  // namespace flashattn::testing
