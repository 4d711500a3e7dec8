// vec_math.hpp — the one exp the kernels use: exp2 written so compilers vectorize it.
//
// exp2_approx(x): round x to n, 2^f for f = x − n in [−0.5, 0.5] by its degree-6
// Taylor polynomial (truncation ≤ 1.7e-7 relative, 1.4 ulp; degree 7 would cost one more
// FMA per score for accuracy the fp32 result cannot keep), times 2^n built in the
// exponent bits. Contract (tested over the whole float range in tests/test_vec_math.cpp,
// for this scalar form and for every ISA's vector form in simd.hpp):
//   x in [−125, 127.5): relative error ≤ 4 ulp (2.4e-7);
//   x in [−126.5, −125): a normal or subnormal value within 2^−149 + 4 ulp;
//   x < −126.5, −∞ included: exactly 0 (the true value is below 2^−126.5 ≈ 1e−38);
//   x ≥ 127.5, +∞ included: +∞;   NaN → NaN.
// No branches, no calls, no tables: a loop over it vectorizes for any ISA's flags.
// Internal linkage so each ISA translation unit keeps its own copy.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>

namespace flashattn {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

constexpr int kExp2Degree = 6;
constexpr float kRoundMagic = 12582912.0f;  // 1.5 · 2^23: adding it rounds to a whole number
constexpr std::int32_t kRoundMagicBits = std::bit_cast<std::int32_t>(kRoundMagic);

// ln2^k / k!, the Taylor coefficients of 2^f = e^(f ln2).
constexpr float exp2_coefficient(int k) {
  double c = 1.0;
  for (int i = 1; i <= k; ++i) c *= 0.6931471805599453 / i;
  return static_cast<float>(c);
}

inline float exp2_approx(float x) {
  constexpr float kHigh = 127.5f;
  float xc = x < -127.0f ? -127.0f : x;  // NaN passes both clamps unchanged
  xc = xc > kHigh ? kHigh : xc;
  const float t = xc + kRoundMagic;
  const float f = xc - (t - kRoundMagic);
  float poly = exp2_coefficient(kExp2Degree);
  for (int k = kExp2Degree - 1; k >= 0; --k) poly = poly * f + exp2_coefficient(k);
  // n = −127 builds +0, which is how everything below −126.5 becomes exactly 0.
  const float two_n = std::bit_cast<float>((std::bit_cast<std::int32_t>(t) - (kRoundMagicBits - 127)) << 23);
  const float r = poly * two_n;
  return x >= kHigh ? std::numeric_limits<float>::infinity() : r;
}

}  // namespace
}  // namespace flashattn
