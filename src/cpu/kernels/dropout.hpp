// dropout.hpp — dropout's keep mask, Philox4x32-10 (core/philox.hpp's mapping), eight
// counters at a time where the build has AVX2.
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/philox.hpp"
#include "cpu/kernels/micro_gemm.hpp"

namespace flashattn {
namespace {

#if defined(__AVX2__)
// High 32 bits of the 32 × 32 products of every lane of a with m (m the same in all lanes).
inline __m256i mulhi_epu32(__m256i a, __m256i m) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  return _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}
#endif

// Dropout's keep words (philox.hpp's mapping) of columns j0 .. j0 + n − 1 of row i:
// words[c] decides column j0 + c. Eight Philox4x32-10 counters at a time where AVX2 is
// there: the same bits as dropout_bits, which the tests compare against.
void dropout_words(std::uint64_t seed, i64 b, i64 h, i64 i, i64 j0, i64 n, std::uint32_t* words) {
  const i64 g0 = j0 >> 2, g1 = (j0 + n + 3) >> 2;  // counters covering the columns
  auto put = [&](i64 g, const std::uint32_t* v) {    // the four words of counter g
    for (i64 w = 0; w < 4; ++w) {
      const i64 c = 4 * g + w - j0;
      if (c >= 0 && c < n) words[c] = v[w];
    }
  };
  i64 g = g0;
#if defined(__AVX2__)
  const std::uint32_t key0 = static_cast<std::uint32_t>(seed), key1 = static_cast<std::uint32_t>(seed >> 32);
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u)), m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  for (; g + 8 <= g1; g += 8) {
    __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(g)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256i c1 = _mm256_set1_epi32(static_cast<int>(i)), c2 = _mm256_set1_epi32(static_cast<int>(h));
    __m256i c3 = _mm256_set1_epi32(static_cast<int>(b));
    std::uint32_t k0 = key0, k1 = key1;
    for (int round = 0; round < 10; ++round) {
      const __m256i hi0 = mulhi_epu32(c0, m0), lo0 = _mm256_mullo_epi32(c0, m0);
      const __m256i hi1 = mulhi_epu32(c2, m1), lo1 = _mm256_mullo_epi32(c2, m1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
      c1 = lo1;
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
      c3 = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    // Transpose to column order: counter l's four words are columns 4(g + l) .. 4(g + l) + 3.
    const __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
    const __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    alignas(32) std::uint32_t cols[32];  // counters 0, 1 | 2, 3 | 4, 5 | 6, 7
    _mm256_store_si256(reinterpret_cast<__m256i*>(cols + 0), _mm256_permute2x128_si256(u0, u1, 0x20));
    _mm256_store_si256(reinterpret_cast<__m256i*>(cols + 8), _mm256_permute2x128_si256(u2, u3, 0x20));
    _mm256_store_si256(reinterpret_cast<__m256i*>(cols + 16), _mm256_permute2x128_si256(u0, u1, 0x31));
    _mm256_store_si256(reinterpret_cast<__m256i*>(cols + 24), _mm256_permute2x128_si256(u2, u3, 0x31));
    const i64 first = 4 * g - j0;  // column of cols[0] relative to j0
    if (first >= 0 && first + 32 <= n) {
      std::memcpy(words + first, cols, sizeof cols);
    } else {
      for (int l = 0; l < 8; ++l) put(g + l, cols + 4 * l);
    }
  }
#endif
  for (; g < g1; ++g) put(g, dropout_bits(seed, b, h, i, 4 * g).v);
}

// z[c] = keep_scale where dropout keeps column j0 + c of row i, else 0, for c < n.
void dropout_factors(float* z, i64 n, std::uint64_t seed, i64 b, i64 h, i64 i, i64 j0, std::uint32_t threshold,
                     float keep_scale) {
  constexpr i64 kChunk = 256;
  std::uint32_t words[kChunk];
  for (i64 c0 = 0; c0 < n; c0 += kChunk) {
    const i64 m = n - c0 < kChunk ? n - c0 : kChunk;
    dropout_words(seed, b, h, i, j0 + c0, m, words);
    for (i64 c = 0; c < m; ++c) z[c0 + c] = words[c] >= threshold ? keep_scale : 0.0f;
  }
}

}  // namespace
}  // namespace flashattn
