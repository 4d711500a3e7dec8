// dtype.hpp — the scalar conversions between f32 and the 16-bit dtypes, which define them.
//
// f32 → bf16 and f32 → f16 round to nearest, ties to even; infinities are kept, NaN stays
// NaN with its sign and its top payload bits and the quiet bit set (f16 → f32 quiets too;
// bf16 → f32 is exact, a signaling NaN stays one); subnormals of either
// side are converted exactly (never flushed), as F16C's vcvtps2ph / vcvtph2ps do without
// DAZ/FTZ. A finite f32 beyond a dtype's range rounds to infinity (f16: |x| >= 65520).
// The vector conversions in kernels/convert.hpp are tested bit for bit against these.
#pragma once

#include <bit>
#include <cstdint>

#include "flashattn/tensor.hpp"

namespace flashattn {

// Bytes of one element.
constexpr std::int64_t element_bytes(DType dtype) {
  return dtype == DType::f32 ? 4 : (dtype == DType::u8 ? 1 : 2);
}

inline float bf16_to_f32(std::uint16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

inline std::uint16_t f32_to_bf16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // NaN, quieted
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0x1f) {  // inf; NaN quieted, as vcvtph2ps does
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13) | (mantissa != 0 ? 0x400000u : 0u));
  }
  if (exponent == 0) {  // zero and subnormals: mantissa · 2^−24, exact in f32
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline std::uint16_t f32_to_f16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN, quieted
  if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520 (a tie to even) and inf
  if (a < 0x38800000u) {  // below 2^−14: a subnormal f16 (or zero), in units of 2^−24
    if (a <= 0x33000000u) return sign;  // at most 2^−25, half the smallest subnormal: ties to 0
    const std::uint32_t exponent = a >> 23, mantissa = (a & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126 - exponent;  // 14 .. 24
    std::uint32_t value = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (value & 1u))) ++value;
    return static_cast<std::uint16_t>(sign | value);
  }
  const std::uint32_t rebiased = a - (112u << 23);  // exponent bias 127 → 15
  return static_cast<std::uint16_t>(sign | ((rebiased + 0xfffu + ((rebiased >> 13) & 1u)) >> 13));
}

// Round-trips: the f32 value nearest to x that the dtype can hold (x itself for f32).
inline float round_to(DType dtype, float x) {
  if (dtype == DType::bf16) return bf16_to_f32(f32_to_bf16(x));
  if (dtype == DType::f16) return f16_to_f32(f32_to_f16(x));
  return x;
}

}  // namespace flashattn
