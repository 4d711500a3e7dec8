// test_dropout.cpp — the dropout mask: Philox known answers, purity, the kept fraction,
// and that every path applies exactly the mask dropout_keep() describes.
#include <cmath>

#include "core/philox.hpp"
#include "cpu/dispatch.hpp"
#include "test_support.hpp"

namespace flashattn::testing {
namespace {

// Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors).
TEST(Philox, MatchesKnownAnswers) {
  const Philox4x32 zero = philox4x32_10(0, 0, 0, 0, 0);
  EXPECT_EQ(zero.v[0], 0x6627e8d5u);
  EXPECT_EQ(zero.v[1], 0xe169c58du);
  EXPECT_EQ(zero.v[2], 0xbc57ac4cu);
  EXPECT_EQ(zero.v[3], 0x9b00dbd8u);
  const Philox4x32 ones = philox4x32_10(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu,
                                        0xffffffffffffffffull);
  EXPECT_EQ(ones.v[0], 0x408f276du);
  EXPECT_EQ(ones.v[1], 0x41c83b0eu);
  EXPECT_EQ(ones.v[2], 0xa20bc7c6u);
  EXPECT_EQ(ones.v[3], 0x6d5451fdu);
  const Philox4x32 pi = philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u,
                                      (std::uint64_t{0x299f31d0u} << 32) | 0xa4093822u);
  EXPECT_EQ(pi.v[0], 0xd16cfe09u);
  EXPECT_EQ(pi.v[1], 0x94fdccebu);
  EXPECT_EQ(pi.v[2], 0x5001e420u);
  EXPECT_EQ(pi.v[3], 0x24126ea1u);
}

TEST(Dropout, IsAPureFunctionOfItsArguments) {
  int differs_by_seed = 0, differs_by_head = 0;
  for (std::int64_t j = 0; j < 1000; ++j) {
    EXPECT_EQ(dropout_keep(5, 0.5f, 1, 2, 3, j), dropout_keep(5, 0.5f, 1, 2, 3, j));
    differs_by_seed += dropout_keep(5, 0.5f, 1, 2, 3, j) != dropout_keep(6, 0.5f, 1, 2, 3, j);
    differs_by_head += dropout_keep(5, 0.5f, 1, 2, 3, j) != dropout_keep(5, 0.5f, 1, 3, 3, j);
  }
  // Independent masks at p = 0.5 differ in about half the places.
  EXPECT_GT(differs_by_seed, 400);
  EXPECT_GT(differs_by_head, 400);
  EXPECT_TRUE(dropout_keep(5, 0.0f, 0, 0, 0, 0));
}

// With V = identity (seqlen_k = headdim), out[i][j] = P_ij · Z_ij / (1 − p): zero exactly
// where the mask drops (P > 0 everywhere without causal masking).
class DropoutPattern : public ::testing::TestWithParam<std::tuple<Algorithm, Isa, float>> {};

TEST_P(DropoutPattern, PathsApplyExactlyTheMaskOfDropoutKeep) {
  const auto [algorithm, isa, p] = GetParam();
  harness::Case c;
  c.shape = {1, 1024, 256, 2, 1, 256};
  c.options.dropout_p = p;
  c.options.seed = 0xfeedbeefcafeull;
  c.options.isa = isa;
  // At p = 0.5 the call is a slice of a longer sequence: its mask is drawn at the offsets
  // (not multiples of 4, so words straddle Philox counters).
  const std::int64_t offset_q = p == 0.5f ? 1029 : 0, offset_k = p == 0.5f ? 6 : 0;
  c.options.dropout_offset_q = offset_q;
  c.options.dropout_offset_k = offset_k;
  harness::Inputs in = harness::make_inputs(c);
  for (std::int64_t j = 0; j < 256; ++j) {
    for (std::int64_t e = 0; e < 256; ++e) in.v.at(0, j, 0, e) = j == e ? 1.0f : 0.0f;
  }
  harness::ForwardOutputs fwd = harness::make_forward_outputs(c);
  harness::run_forward(c, in, fwd, algorithm);
  std::int64_t kept = 0, mismatches = 0, total = 0;
  for (std::int64_t h = 0; h < 2; ++h) {
    for (std::int64_t i = 0; i < 1024; ++i) {
      for (std::int64_t j = 0; j < 256; ++j) {
        const bool keep = dropout_keep(c.options.seed, p, 0, h, offset_q + i, offset_k + j);
        mismatches += keep != (fwd.out.at(0, i, h, j) != 0.0f);
        kept += keep;
        ++total;
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_NEAR(static_cast<double>(kept) / total, 1.0 - p, 0.01);
}

std::vector<std::tuple<Algorithm, Isa, float>> pattern_cases() {
  std::vector<std::tuple<Algorithm, Isa, float>> cases;
  for (float p : {0.1f, 0.5f}) {
    cases.emplace_back(Algorithm::standard, Isa::portable, p);
    for (Isa isa : isas_to_test()) cases.emplace_back(Algorithm::flash, isa, p);
  }
  return cases;
}

std::string pattern_name(const ::testing::TestParamInfo<std::tuple<Algorithm, Isa, float>>& info) {
  return std::string(to_string(std::get<0>(info.param))) + "_" + to_string(std::get<1>(info.param)) +
         "_p" + std::to_string(static_cast<int>(std::get<2>(info.param) * 100));
}

INSTANTIATE_TEST_SUITE_P(Paths, DropoutPattern, ::testing::ValuesIn(pattern_cases()), pattern_name);

// Every build's dropout factors (vector Philox where there is one) against dropout_keep,
// for rows starting anywhere (not only on a multiple of 4) and longer than one chunk.
TEST(Dropout, KernelFactorsAreTheMaskOfDropoutKeep) {
  const float p = 0.3f, keep = 1.0f / (1.0f - p);
  const std::uint32_t threshold = static_cast<std::uint32_t>(static_cast<double>(p) * 4294967296.0);
  for (Isa isa : isas_to_test()) {
    for (std::int64_t j0 : {0, 1, 3, 5, 42, 1000}) {
      for (std::int64_t n : {1, 7, 33, 257, 600}) {
        std::vector<float> z(static_cast<std::size_t>(n), -1.0f);
        kernels_for(isa).dropout_factors(z.data(), n, 1234, 3, 5, 77, j0, threshold, keep);
        for (std::int64_t c = 0; c < n; ++c) {
          const float want = dropout_keep(1234, p, 3, 5, 77, j0 + c) ? keep : 0.0f;
          ASSERT_EQ(z[c], want) << to_string(isa) << " j0 " << j0 << " n " << n << " c " << c;
        }
      }
    }
  }
}

}  // namespace
}  // namespace flashattn::testing
