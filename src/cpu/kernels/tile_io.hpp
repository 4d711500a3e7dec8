// tile_io.hpp — moving rows of the caller's tensors into tiles in scratch and back:
// widened from 16 bits as they are read, scaled, transposed, zero padded; and the carving of
// one thread's scratch.
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#include <cstring>

#include "core/problem.hpp"
#include "core/tiles.hpp"
#include "cpu/kernels/convert.hpp"
#include "cpu/kernels/micro_gemm.hpp"

namespace flashattn {
namespace {

// dst (n_pad × d_pad) = factor · rows r0 .. r0+n of head h, zero padded.
void load_rows(const Bshd& t, DType dtype, i64 b, i64 h, i64 r0, i64 n, i64 d, float factor, float* dst, i64 n_pad,
               i64 d_pad) {
  for (i64 r = 0; r < n_pad; ++r) {
    float* out = dst + r * d_pad;
    i64 e = 0;
    if (r < n) {
      const float* src = t.f32_row(b, r0 + r, h, dtype, d, out, convert_to_f32);  // widened in place
      for (; e < d; ++e) out[e] = src[e] * factor;
    }
    for (; e < d_pad; ++e) out[e] = 0.0f;
  }
}

// dst (d × ld) = factor · rows r0 .. r0+n of head h, transposed; columns n .. n_pad zero.
void load_rows_transposed(const Bshd& t, DType dtype, i64 b, i64 h, i64 r0, i64 n, i64 d, float factor, float* dst,
                          i64 ld, i64 n_pad) {
  float room[kMaxHeadDim];
  for (i64 c = 0; c < n; ++c) {
    const float* src = t.f32_row(b, r0 + c, h, dtype, d, room, convert_to_f32);
    for (i64 e = 0; e < d; ++e) dst[e * ld + c] = src[e] * factor;
  }
  for (i64 e = 0; e < d; ++e) {
    for (i64 c = n; c < n_pad; ++c) dst[e * ld + c] = 0.0f;
  }
}

// dst rows (m × n, ldd) += factor · src (m × n, lds).
void add_rows(i64 m, i64 n, const float* src, i64 lds, float factor, float* dst, i64 ldd) {
  for (i64 i = 0; i < m; ++i) {
    const float* __restrict s = src + i * lds;
    float* __restrict t = dst + i * ldd;
    for (i64 j = 0; j < n; ++j) t[j] += factor * s[j];
  }
}

// bf16 operands are padded along their depth (headdim for K, keys for V) to what one step
// reads: a pair for vdpbf16ps, 32 elements for an AMX tile; and K by whole steps of rows.
#if defined(__AMX_BF16__)
constexpr i64 kDepthAlign = 32;
constexpr i64 kKeyRowsPad = 32;
#else
constexpr i64 kDepthAlign = 2;
constexpr i64 kKeyRowsPad = kRows;
#endif

// rows (m × n, ld) *= factor; n a multiple of kLanes.
void scale_rows(i64 m, i64 n, float* rows, i64 ld, float factor) {
  const Vec f = simd::set1(factor);
  for (i64 r = 0; r < m; ++r) {
    float* row = rows + r * ld;
    for (i64 c = 0; c < n; c += kLanes) simd::store(row + c, simd::mul(simd::load(row + c), f));
  }
}

#if defined(__AVX512BF16__)
// Sixteen f32 pairs (lo[c], hi[c]) rounded to bf16, as the words Bf16Products multiplies:
// lo in the low half. vcvtne2ps2bf16 rounds to nearest even and flushes subnormals to zero,
// as the products that read the pairs do anyway (one instruction and a permute, against
// fourteen for core/dtype.hpp's integer rule: P packed so took 14% of the AMX forward).
inline __m512i bf16_pairs(__m512 lo, __m512 hi) {
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                              23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

// Elements x .. x + 15 of two bf16 rows as pairs (lo[x], hi[x]); a null hi reads as zeros.
inline __m512i row_pair_words(const std::uint16_t* lo, const std::uint16_t* hi, i64 x) {
  const __m256i lo16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo + x));
  const __m256i hi16 =
      hi != nullptr ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi + x)) : _mm256_setzero_si256();
  return _mm512_or_si512(_mm512_cvtepu16_epi32(lo16), _mm512_slli_epi32(_mm512_cvtepu16_epi32(hi16), 16));
}

// Rows r0 .. r1 of dst (n words each, ldd apart) = 0.
void zero_word_rows(std::uint32_t* dst, i64 r0, i64 r1, i64 n, i64 ldd) {
  for (i64 r = r0; r < r1; ++r) std::memset(dst + r * ldd, 0, sizeof(std::uint32_t) * n);
}

// dst (⌈m_pad / 2⌉ × n words, ldd) = rows 2p and 2p + 1 of src (m × n, lds) as bf16 pairs,
// rows m .. m_pad zero; n a multiple of kLanes.
void pack_row_pairs(i64 m, i64 m_pad, i64 n, const float* src, i64 lds, std::uint32_t* dst, i64 ldd) {
  for (i64 r = 0; r < m; r += 2) {
    const float* lo = src + r * lds;
    const float* hi = r + 1 < m ? lo + lds : nullptr;
    std::uint32_t* out = dst + r / 2 * ldd;
    for (i64 c = 0; c < n; c += kLanes) {
      const __m512 h = hi != nullptr ? _mm512_loadu_ps(hi + c) : _mm512_setzero_ps();
      _mm512_storeu_si512(out + c, bf16_pairs(_mm512_loadu_ps(lo + c), h));
    }
  }
  zero_word_rows(dst, (m + 1) / 2, (m_pad + 1) / 2, n, ldd);
}

// The bf16 operands, rearranged from n rows of d elements — row(c) points at row c, in a
// tensor or a KV cache — for the products that read them; each zero pads to the extents it
// is given, so that padded steps multiply zeros.

// Padded rows: dst[c · ld + x] = element x of row c; elements d .. ld and rows n .. n_pad
// zero.
template <typename Row>
void rows_padded(Row row, i64 n, i64 d, std::uint16_t* dst, i64 ld, i64 n_pad) {
  for (i64 c = 0; c < n; ++c) {
    std::memcpy(dst + c * ld, row(c), sizeof(std::uint16_t) * d);
    std::memset(dst + c * ld + d, 0, sizeof(std::uint16_t) * (ld - d));
  }
  std::memset(dst + n * ld, 0, sizeof(std::uint16_t) * (n_pad - n) * ld);
}

// r[k] = column k of the 16 × 16 words that r[0 .. 16) held as rows.
inline void transpose_words_16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // Now r[4i + k] holds, in its 128-bit lane L, column 4L + k of rows 4i .. 4i + 3.
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // Column 4L + k gathers lane L of r[k], r[4 + k], r[8 + k], r[12 + k].
  for (int k = 0; k < 4; ++k) {
    const __m512i s0 = _mm512_shuffle_i32x4(r[k], r[4 + k], 0x88), s1 = _mm512_shuffle_i32x4(r[k], r[4 + k], 0xdd);
    const __m512i s2 = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0x88);
    const __m512i s3 = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0xdd);
    t[k] = _mm512_shuffle_i32x4(s0, s2, 0x88);
    t[4 + k] = _mm512_shuffle_i32x4(s1, s3, 0x88);
    t[8 + k] = _mm512_shuffle_i32x4(s0, s2, 0xdd);
    t[12 + k] = _mm512_shuffle_i32x4(s1, s3, 0xdd);
  }
  for (int k = 0; k < 16; ++k) r[k] = t[k];
}

// dst (n × m, ldd) = src (m × n, lds) transposed, by 16 × 16 blocks.
inline void transpose_rows(const float* src, i64 lds, i64 m, i64 n, float* dst, i64 ldd) {
  const i64 block_m = m / 16 * 16, block_n = n / 16 * 16;
  for (i64 r = 0; r < block_m; r += 16) {
    for (i64 c = 0; c < block_n; c += 16) {
      __m512i block[16];
      for (int k = 0; k < 16; ++k) block[k] = _mm512_loadu_si512(src + (r + k) * lds + c);
      transpose_words_16x16(block);
      for (int k = 0; k < 16; ++k) _mm512_storeu_si512(dst + (c + k) * ldd + r, block[k]);
    }
  }
  for (i64 r = 0; r < m; ++r) {  // the rest, an element at a time
    for (i64 c = r < block_m ? block_n : 0; c < n; ++c) dst[c * ldd + r] = src[r * lds + c];
  }
}

// Words as columns: dst[w · ld + c] = elements 2w, 2w + 1 of row c as one word, the low
// half first (a word transpose); columns n .. n_pad and word rows ⌈d / 2⌉ .. words_pad zero.
template <typename Row>
void rows_as_word_columns(Row row, i64 n, i64 d, std::uint32_t* dst, i64 ld, i64 n_pad, i64 words_pad) {
  const i64 words = (d + 1) / 2;
  const i64 block_rows = n / 16 * 16, block_words = d / 2 / 16 * 16;  // in whole 16 × 16 blocks
  for (i64 c = 0; c < block_rows; c += 16) {
    for (i64 w = 0; w < block_words; w += 16) {
      __m512i block[16];
      for (int k = 0; k < 16; ++k) block[k] = _mm512_loadu_si512(row(c + k) + 2 * w);
      transpose_words_16x16(block);
      for (int k = 0; k < 16; ++k) _mm512_storeu_si512(dst + (w + k) * ld + c, block[k]);
    }
  }
  for (i64 c = 0; c < n; ++c) {  // the rest, a word at a time
    const std::uint16_t* r = row(c);
    for (i64 w = c < block_rows ? block_words : 0; w < d / 2; ++w) {
      dst[w * ld + c] = r[2 * w] | std::uint32_t{r[2 * w + 1]} << 16;
    }
    if (d % 2 != 0) dst[(words - 1) * ld + c] = r[d - 1];
  }
  for (i64 w = 0; w < words; ++w) std::memset(dst + w * ld + n, 0, sizeof(std::uint32_t) * (n_pad - n));
  zero_word_rows(dst, words, words_pad, n_pad, ld);
}

// Pairs of rows: dst[c / 2 · ld + x] = element x of rows c and c + 1 as one word, row c in
// the low half; elements d .. d_pad and pair rows ⌈n / 2⌉ .. ⌈n_pad / 2⌉ zero.
template <typename Row>
void rows_as_pairs(Row row, i64 n, i64 d, std::uint32_t* dst, i64 ld, i64 d_pad, i64 n_pad) {
  for (i64 c = 0; c < n; c += 2) {
    const std::uint16_t* lo = row(c);
    const std::uint16_t* hi = c + 1 < n ? row(c + 1) : nullptr;
    std::uint32_t* out = dst + c / 2 * ld;
    i64 x = 0;
    for (; x + kLanes <= d; x += kLanes) _mm512_storeu_si512(out + x, row_pair_words(lo, hi, x));
    for (; x < d_pad; ++x) out[x] = x < d ? lo[x] | (hi != nullptr ? std::uint32_t{hi[x]} << 16 : 0u) : 0u;
  }
  zero_word_rows(dst, (n + 1) / 2, (n_pad + 1) / 2, d_pad, ld);
}

// Transposed: dst[x · ld + c] = element x of row c; columns n .. n_pad and rows d .. d_pad
// zero (ld even). Elements x .. x + 15 of rows c and c + 1 are one word in each of sixteen
// rows of dst: sixteen such pairs (32 rows) at a time, their words transposed by 16 × 16
// blocks.
template <typename Row>
void rows_transposed(Row row, i64 n, i64 d, std::uint16_t* dst, i64 ld, i64 n_pad, i64 d_pad) {
  for (i64 x = 0; x < d_pad; ++x) {  // the padding only: the rest is written below
    const i64 from = x < d ? n : 0;
    std::memset(dst + x * ld + from, 0, sizeof(std::uint16_t) * (n_pad - from));
  }
  auto* words = reinterpret_cast<std::uint32_t*>(dst);
  const i64 row_words = ld / 2;
  const i64 block_rows = n / 32 * 32, block_d = d / 16 * 16;
  for (i64 c = 0; c < block_rows; c += 32) {
    for (i64 x = 0; x < block_d; x += 16) {
      __m512i block[16];
      for (int k = 0; k < 16; ++k) block[k] = row_pair_words(row(c + 2 * k), row(c + 2 * k + 1), x);
      transpose_words_16x16(block);
      for (int k = 0; k < 16; ++k) _mm512_storeu_si512(words + (x + k) * row_words + c / 2, block[k]);
    }
  }
  for (i64 c = 0; c < n; ++c) {  // the rest, an element at a time
    const std::uint16_t* r = row(c);
    for (i64 x = c < block_rows ? block_d : 0; x < d; ++x) dst[x * ld + c] = r[x];
  }
}

// dst (m × n bf16, ldd) = src (m × n, lds) rounded; n a multiple of kLanes.
void round_rows_to_bf16(i64 m, i64 n, const float* src, i64 lds, std::uint16_t* dst, i64 ldd) {
  for (i64 r = 0; r < m; ++r) {
    for (i64 c = 0; c < n; c += kLanes) {
      const __m256i h = _mm512_cvtepi32_epi16(bf16_bits_rounded(_mm512_loadu_ps(src + r * lds + c)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + r * ldd + c), h);
    }
  }
}
#endif

// Scratch layout: every piece 64-byte aligned; with base == nullptr only counts.
struct Carver {
  float* base;
  i64 used = 0;
  float* take(i64 floats) {
    float* p = base ? base + used : nullptr;
    used += round_up(floats, 16);
    return p;
  }
  std::uint32_t* take_words(i64 words) { return reinterpret_cast<std::uint32_t*>(take(words)); }
};

// Scratch floats one thread needs for the layout `carve` makes (carved with no base).
template <typename Carve>
i64 scratch_floats(Carve carve, const TileConfig& t, i64 d) {
  i64 floats = 0;
  carve(nullptr, t, d, &floats);
  return floats;
}

}  // namespace
}  // namespace flashattn
