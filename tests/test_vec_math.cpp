// test_vec_math.cpp — exp2_approx against std::exp2 over the whole float range.
#include <gtest/gtest.h>

#include <bit>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cpu/dispatch.hpp"
#include "cpu/vec_math.hpp"
#include "flashattn/isa.hpp"

namespace flashattn {
namespace {

TEST(Exp2Approx, WithinFourUlpOverItsRange) {
  // Walk the float bit patterns of [-125, 127.5) with a prime stride (about 10^7 samples).
  double worst = 0.0;
  float worst_x = 0.0f;
  auto check = [&](float x) {
    const double want = std::exp2(static_cast<double>(x));
    const double rel = std::abs(exp2_approx(x) - want) / want;
    if (rel > worst) {
      worst = rel;
      worst_x = x;
    }
  };
  for (std::uint32_t bits = 0; bits < std::bit_cast<std::uint32_t>(125.0f); bits += 211) {
    check(-std::bit_cast<float>(bits));
  }
  for (std::uint32_t bits = 0; bits < std::bit_cast<std::uint32_t>(127.5f); bits += 211) {
    check(std::bit_cast<float>(bits));
  }
  for (float x : {-125.0f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 127.49f}) check(x);
  EXPECT_LE(worst, 4 * std::numeric_limits<float>::epsilon()) << "worst at x = " << worst_x;
}

TEST(Exp2Approx, EdgesAreExact) {
  constexpr float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(exp2_approx(-inf), 0.0f);
  EXPECT_EQ(exp2_approx(-126.6f), 0.0f);
  EXPECT_EQ(exp2_approx(-127.0f), 0.0f);
  EXPECT_GT(exp2_approx(-126.0f), 0.0f);  // 2^-126 = FLT_MIN, still representable
  EXPECT_EQ(exp2_approx(-1e30f), 0.0f);
  EXPECT_EQ(exp2_approx(0.0f), 1.0f);
  EXPECT_EQ(exp2_approx(1.0f), 2.0f);
  EXPECT_EQ(exp2_approx(-3.0f), 0.125f);
  EXPECT_EQ(exp2_approx(127.5f), inf);
  EXPECT_EQ(exp2_approx(inf), inf);
  EXPECT_TRUE(std::isnan(exp2_approx(std::numeric_limits<float>::quiet_NaN())));
}

// The vector exp2 each ISA build of the kernels uses (simd::exp2), against the same
// contract, on the same samples and the edges, in arrays long enough for whole vectors.
class VectorExp2 : public ::testing::TestWithParam<Isa> {};

TEST_P(VectorExp2, KeepsTheContractOfExp2Approx) {
  std::vector<float> x;
  for (std::uint32_t bits = 0; bits < std::bit_cast<std::uint32_t>(125.0f); bits += 997) {
    x.push_back(-std::bit_cast<float>(bits));
  }
  for (std::uint32_t bits = 0; bits < std::bit_cast<std::uint32_t>(127.5f); bits += 997) {
    x.push_back(std::bit_cast<float>(bits));
  }
  const std::size_t in_range = x.size();
  constexpr float inf = std::numeric_limits<float>::infinity();
  const float edges[] = {-inf, -126.75f, -1e30f, 127.5f, 1e30f, inf, std::numeric_limits<float>::quiet_NaN()};
  for (int copy = 0; copy < 40; ++copy) x.insert(x.end(), std::begin(edges), std::end(edges));
  std::vector<float> y(x.size());
  kernels_for(GetParam()).exp2_array(x.data(), y.data(), static_cast<std::int64_t>(x.size()));

  double worst = 0.0;
  for (std::size_t i = 0; i < in_range; ++i) {
    const double want = std::exp2(static_cast<double>(x[i]));
    worst = std::max(worst, std::abs(y[i] - want) / want);
  }
  EXPECT_LE(worst, 4 * std::numeric_limits<float>::epsilon());
  for (std::size_t i = in_range; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(y[i]));
    } else if (x[i] < -126.5f) {
      EXPECT_EQ(y[i], 0.0f) << x[i];
    } else {
      EXPECT_EQ(y[i], inf) << x[i];
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, VectorExp2, ::testing::ValuesIn(supported_isas()),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace flashattn
