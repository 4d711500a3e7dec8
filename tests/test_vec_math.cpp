// test_vec_math.cpp — exp2_approx against std::exp2 over the whole float range.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu/vec_math.hpp"

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
  EXPECT_EQ(exp2_approx(-125.5f), 0.0f);
  EXPECT_EQ(exp2_approx(-1e30f), 0.0f);
  EXPECT_EQ(exp2_approx(0.0f), 1.0f);
  EXPECT_EQ(exp2_approx(1.0f), 2.0f);
  EXPECT_EQ(exp2_approx(-3.0f), 0.125f);
  EXPECT_EQ(exp2_approx(127.5f), inf);
  EXPECT_EQ(exp2_approx(inf), inf);
  EXPECT_TRUE(std::isnan(exp2_approx(std::numeric_limits<float>::quiet_NaN())));
}

}  // namespace
}  // namespace flashattn
