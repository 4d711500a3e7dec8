// simd.hpp — the one SIMD wrapper: a float vector, its integer view and its masks, with
// free functions named after the operations. Which implementation a translation unit
// gets follows the flags it is compiled with:
//   __AVX512F__  → 16 lanes (__m512), masks are __mmask16;
//   __AVX2__     → 8 lanes (__m256, FMA required);
//   otherwise    → 8 lanes of plain C++ (the portable build; the compiler vectorizes it).
// Everything has internal linkage so each ISA's translation unit keeps its own copy.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu/vec_math.hpp"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace flashattn {
namespace {
namespace simd {

#if defined(__AVX512F__)

constexpr int kLanes = 16;
struct Vec { __m512 v; };
struct Mask { __mmask16 m; };

inline Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void store(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
inline Vec set1(float x) { return {_mm512_set1_ps(x)}; }
inline Vec zero() { return {_mm512_setzero_ps()}; }
inline Vec add(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec sub(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vec mul(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline Vec div(Vec a, Vec b) { return {_mm512_div_ps(a.v, b.v)}; }
inline Vec fma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
// NaN in `a` propagates: (a > b) ? a : b and (a < b) ? a : b would not, so b goes first.
inline Vec max_keep_nan(Vec a, Vec bound) { return {_mm512_max_ps(bound.v, a.v)}; }
inline Vec min_keep_nan(Vec a, Vec bound) { return {_mm512_min_ps(bound.v, a.v)}; }
inline Vec max(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
inline Mask less(Vec a, Vec b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
inline Mask greater_equal(Vec a, Vec b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ)}; }
inline Vec select(Mask m, Vec if_true, Vec if_false) {
  return {_mm512_mask_blend_ps(m.m, if_false.v, if_true.v)};
}
// 2^n for whole numbers n in [-127, 127] held as floats t = n + kRoundMagic (n = -127
// gives +0): the biased exponent n + 127 is t's low bits minus a constant.
inline Vec pow2_from_rounded(Vec t) {
  const __m512i biased = _mm512_sub_epi32(_mm512_castps_si512(t.v), _mm512_set1_epi32(kRoundMagicBits - 127));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(biased, 23))};
}
inline float reduce_add(Vec a) { return _mm512_reduce_add_ps(a.v); }
// out[n] = the sum of the lanes of the n-th vector, four at once (dot products of four keys).
inline void reduce_add4(Vec a, Vec b, Vec c, Vec d, float* out) {
  auto halves = [](Vec x) { return _mm256_add_ps(_mm512_castps512_ps256(x.v), _mm512_extractf32x8_ps(x.v, 1)); };
  const __m256 ab = _mm256_hadd_ps(halves(a), halves(b)), cd = _mm256_hadd_ps(halves(c), halves(d));
  const __m256 abcd = _mm256_hadd_ps(ab, cd);  // lanes n and n + 4 hold halves of sum n
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
}
inline float reduce_max(Vec a) { return _mm512_reduce_max_ps(a.v); }

#elif defined(__AVX2__)

constexpr int kLanes = 8;
struct Vec { __m256 v; };
struct Mask { __m256 m; };

inline Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline void store(float* p, Vec a) { _mm256_storeu_ps(p, a.v); }
inline Vec set1(float x) { return {_mm256_set1_ps(x)}; }
inline Vec zero() { return {_mm256_setzero_ps()}; }
inline Vec add(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
inline Vec sub(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline Vec mul(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline Vec div(Vec a, Vec b) { return {_mm256_div_ps(a.v, b.v)}; }
inline Vec fma(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec max_keep_nan(Vec a, Vec bound) { return {_mm256_max_ps(bound.v, a.v)}; }
inline Vec min_keep_nan(Vec a, Vec bound) { return {_mm256_min_ps(bound.v, a.v)}; }
inline Vec max(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
inline Mask less(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
inline Mask greater_equal(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
inline Vec select(Mask m, Vec if_true, Vec if_false) {
  return {_mm256_blendv_ps(if_false.v, if_true.v, m.m)};
}
inline Vec pow2_from_rounded(Vec t) {
  const __m256i biased = _mm256_sub_epi32(_mm256_castps_si256(t.v), _mm256_set1_epi32(kRoundMagicBits - 127));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(biased, 23))};
}
inline float reduce_add(Vec a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline void reduce_add4(Vec a, Vec b, Vec c, Vec d, float* out) {
  const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a.v, b.v), _mm256_hadd_ps(c.v, d.v));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
}
inline float reduce_max(Vec a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#else

constexpr int kLanes = 8;
struct Vec { float v[kLanes]; };
struct Mask { bool m[kLanes]; };

#define FLASHATTN_LANEWISE(expr) \
  Vec r;                         \
  for (int i = 0; i < kLanes; ++i) r.v[i] = (expr);          \
  return r

inline Vec load(const float* p) { Vec r; std::memcpy(r.v, p, sizeof r.v); return r; }
inline void store(float* p, Vec a) { std::memcpy(p, a.v, sizeof a.v); }
inline Vec set1(float x) { FLASHATTN_LANEWISE(x); }
inline Vec zero() { return set1(0.0f); }
inline Vec add(Vec a, Vec b) { FLASHATTN_LANEWISE(a.v[i] + b.v[i]); }
inline Vec sub(Vec a, Vec b) { FLASHATTN_LANEWISE(a.v[i] - b.v[i]); }
inline Vec mul(Vec a, Vec b) { FLASHATTN_LANEWISE(a.v[i] * b.v[i]); }
inline Vec div(Vec a, Vec b) { FLASHATTN_LANEWISE(a.v[i] / b.v[i]); }
// Fused like the hardware's: the product is exact in double, so only the sum rounds
// (twice, to double then float, which differs from one rounding only in rare ties). The
// kernels rely on it for exponents s · log2 e − m whose product alone would round by an
// ulp of a large logit.
inline Vec fma(Vec a, Vec b, Vec c) {
  FLASHATTN_LANEWISE(static_cast<float>(static_cast<double>(a.v[i]) * b.v[i] + c.v[i]));
}
inline Vec max_keep_nan(Vec a, Vec bound) { FLASHATTN_LANEWISE(bound.v[i] > a.v[i] ? bound.v[i] : a.v[i]); }
inline Vec min_keep_nan(Vec a, Vec bound) { FLASHATTN_LANEWISE(bound.v[i] < a.v[i] ? bound.v[i] : a.v[i]); }
inline Vec max(Vec a, Vec b) { FLASHATTN_LANEWISE(a.v[i] > b.v[i] ? a.v[i] : b.v[i]); }
inline Mask less(Vec a, Vec b) {
  Mask m;
  for (int i = 0; i < kLanes; ++i) m.m[i] = a.v[i] < b.v[i];
  return m;
}
inline Mask greater_equal(Vec a, Vec b) {
  Mask m;
  for (int i = 0; i < kLanes; ++i) m.m[i] = a.v[i] >= b.v[i];
  return m;
}
inline Vec select(Mask m, Vec if_true, Vec if_false) { FLASHATTN_LANEWISE(m.m[i] ? if_true.v[i] : if_false.v[i]); }
inline Vec pow2_from_rounded(Vec t) {
  FLASHATTN_LANEWISE(std::bit_cast<float>((std::bit_cast<std::int32_t>(t.v[i]) - (kRoundMagicBits - 127)) << 23));
}
inline float reduce_add(Vec a) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += a.v[i];
  return s;
}
inline void reduce_add4(Vec a, Vec b, Vec c, Vec d, float* out) {
  out[0] = reduce_add(a);
  out[1] = reduce_add(b);
  out[2] = reduce_add(c);
  out[3] = reduce_add(d);
}
inline float reduce_max(Vec a) {
  float m = a.v[0];
  for (int i = 1; i < kLanes; ++i) m = a.v[i] > m ? a.v[i] : m;
  return m;
}

#undef FLASHATTN_LANEWISE

#endif

// exp2 of every lane for x < 127.5: what the kernels need, since their arguments are
// differences from a running maximum. Clamping at −127 makes 2^n exactly +0 there, so
// every x ≤ −126.5 (−∞ included) gives exactly 0 with no compare; NaN stays NaN.
inline Vec exp2_below_128(Vec x) {
  const Vec magic = set1(kRoundMagic);
  const Vec xc = max_keep_nan(x, set1(-127.0f));
  const Vec t = add(xc, magic);
  const Vec f = sub(xc, sub(t, magic));
  Vec poly = set1(exp2_coefficient(kExp2Degree));
  for (int k = kExp2Degree - 1; k >= 0; --k) poly = fma(poly, f, set1(exp2_coefficient(k)));
  return mul(poly, pow2_from_rounded(t));
}

// 0, 1, …, kLanes − 1.
inline Vec iota() {
  static constexpr float kIota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  return load(kIota);
}

inline Vec abs(Vec x) { return max(x, sub(zero(), x)); }
// exp2 of every lane: the vector form of exp2_approx (vec_math.hpp), with its contract.
inline Vec exp2(Vec x) {
  const Vec high = set1(127.5f);
  const Vec r = exp2_below_128(min_keep_nan(x, high));
  return select(greater_equal(x, high), set1(std::numeric_limits<float>::infinity()), r);
}

// tanh of every lane, within 3 ulp + 1e-7 absolute (tested against std::tanh): an odd
// Taylor polynomial below |x| = 0.25 (through x^9: truncation < 1e-8 relative), else
// (e^{2x} − 1) / (e^{2x} + 1) with x clamped to ±9, where tanh is 1 to within float.
inline Vec tanh(Vec x) {
  const Vec xc = min_keep_nan(max_keep_nan(x, set1(-9.0f)), set1(9.0f));
  const Vec e = exp2_below_128(mul(xc, set1(2.0f * kLog2e)));
  const Vec big = div(sub(e, set1(1.0f)), add(e, set1(1.0f)));
  const Vec x2 = mul(x, x);
  Vec poly = set1(62.0f / 2835.0f);
  poly = fma(poly, x2, set1(-17.0f / 315.0f));
  poly = fma(poly, x2, set1(2.0f / 15.0f));
  poly = fma(poly, x2, set1(-1.0f / 3.0f));
  const Vec small = fma(mul(poly, x2), x, x);
  return select(less(abs(x), set1(0.25f)), small, big);
}

}  // namespace simd
}  // namespace
}  // namespace flashattn
