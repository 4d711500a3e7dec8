// convert.hpp — f32 from and to the 16-bit dtypes (the tile loaders widen 16-bit rows as
// they read them). Bit for bit the scalar rules of core/dtype.hpp:
// f16 by F16C (vcvtph2ps / vcvtps2ph, round to nearest even; the AVX2 build requires F16C),
// bf16 by integer rounding (vcvtneps2bf16 would flush subnormals, so it is not used).
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/dtype.hpp"
#include "cpu/simd.hpp"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace flashattn {
namespace {

using i64 = std::int64_t;

#if defined(__AVX512F__)
inline __m512i bf16_bits_rounded(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), rounded, quiet);
}
#elif defined(__AVX2__)
inline __m256i bf16_bits_rounded(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  return _mm256_blendv_epi8(rounded, quiet, _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
}
#endif

// How an element of kDType is stored, and how it is widened to f32: one element (widen), or a
// vector's worth straight into registers (load_widened: the split-KV kernel reads a 16-bit
// cache so, with no copy). f16 by F16C, bf16 by moving its bits to the top half.
template <DType kDType>
using StoredAs = std::conditional_t<kDType == DType::f32, float, std::uint16_t>;

template <DType kDType>
inline float widen(StoredAs<kDType> x) {
  if constexpr (kDType == DType::f32) return x;
  if constexpr (kDType == DType::bf16) return bf16_to_f32(x);
  if constexpr (kDType == DType::f16) return f16_to_f32(x);
}

#if !defined(__AVX512F__) && !defined(__AVX2__)
// The portable build widens lane by lane, out of line: inlined into split-KV's loops, GCC 12's
// -O3 vectorizer changed a 16-bit cache's results from the f32 call's in the last bit (f16
// only; KvCache16Bit caught it; -fno-tree-vectorize or this function kept out of line cures it).
template <DType kDType>
[[gnu::noinline]] simd::Vec widen_lanes(const StoredAs<kDType>* p) {
  simd::Vec r;
  for (int i = 0; i < simd::kLanes; ++i) r.v[i] = widen<kDType>(p[i]);
  return r;
}
#endif

template <DType kDType>
inline simd::Vec load_widened(const StoredAs<kDType>* p) {
  if constexpr (kDType == DType::f32) {
    return simd::load(p);
  } else {
#if defined(__AVX512F__)
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (kDType == DType::f16) return {_mm512_cvtph_ps(h)};
    return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))};
#elif defined(__AVX2__)
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (kDType == DType::f16) return {_mm256_cvtph_ps(h)};
    return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))};
#else
    return widen_lanes<kDType>(p);
#endif
  }
}

template <DType kDType>
void widen_row(const StoredAs<kDType>* src, float* dst, i64 n) {
  i64 i = 0;
  for (; i + simd::kLanes <= n; i += simd::kLanes) simd::store(dst + i, load_widened<kDType>(src + i));
  for (; i < n; ++i) dst[i] = widen<kDType>(src[i]);
}

// dst[i] = src[i] as f32, src holding n elements of `dtype` (f32: a copy).
void convert_to_f32(DType dtype, const void* src, float* dst, i64 n) {
  if (dtype == DType::f32) return static_cast<void>(std::memcpy(dst, src, sizeof(float) * static_cast<std::size_t>(n)));
  const auto* s = static_cast<const std::uint16_t*>(src);
  if (dtype == DType::f16) return widen_row<DType::f16>(s, dst, n);
  widen_row<DType::bf16>(s, dst, n);
}

// dst[i] = src[i] rounded to `dtype` (f32: a copy), n elements.
void convert_from_f32(DType dtype, const float* src, void* dst, i64 n) {
  if (dtype == DType::f32) return static_cast<void>(std::memcpy(dst, src, sizeof(float) * static_cast<std::size_t>(n)));
  auto* d = static_cast<std::uint16_t*>(dst);
  i64 i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    const __m512 x = _mm512_loadu_ps(src + i);
    const __m256i h = dtype == DType::f16 ? _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
                                          : _mm512_cvtepi32_epi16(bf16_bits_rounded(x));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), h);
  }
#elif defined(__AVX2__)
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(src + i);
    __m128i h;
    if (dtype == DType::f16) {
      h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    } else {
      const __m256i w = bf16_bits_rounded(x);  // 0 .. 0xffff per lane: packus is exact
      h = _mm_packus_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), h);
  }
#endif
  if (dtype == DType::f16) {
    for (; i < n; ++i) d[i] = f32_to_f16(src[i]);
  } else {
    for (; i < n; ++i) d[i] = f32_to_bf16(src[i]);
  }
}

}  // namespace
}  // namespace flashattn
