// bf16_amx_instructions.hpp — AVX512-BF16 and AMX-BF16 written as AVX-512F/BW code, for a test
// build only (CMake option FLASHATTN_EMULATED_BF16_AMX). CMakeLists.txt force-includes this file
// (-include) into the avx512_bf16 and amx kernel builds and compiles them without -mavx512bf16
// and -mamx-*: their intrinsics below become the functions here, so the two builds run on any
// CPU with AVX-512 — and under Bochs 2.7, which emulates AVX-512 but neither extension
// (scripts/emulated_avx512_tests.sh) — and the test suite checks how the kernels use the
// instructions: operand layouts, pairs, padding, tile shapes, the tile configuration.
// Correctness only: emulated tiles are slow.
//
// Semantics as the Intel SDM's pseudo-code states them, on bf16 inputs and f32 accumulators:
// - vdpbf16ps: acc += a.hi · b.hi, then acc += a.lo · b.lo, each step one rounding (the
//   product of two bf16 is exact in f32, so one fused multiply-add);
// - tdpbf16ps: for each row m, depth pair k and column n: c += a.even · b.even, then
//   c += a.odd · b.odd (hardware may order its sums differently; the tests' tolerances do
//   not depend on the order);
// - both: inputs subnormal read as zero, subnormal results flushed to zero, to nearest even;
// - vcvtne2ps2bf16: to nearest even, subnormal inputs to zero, NaN quieted;
// - tile instructions fault (here: a message and abort) where the hardware's #UD or #GP
//   would: unconfigured or empty tiles, shapes that do not chain, a palette other than 0 or 1,
//   reserved configuration bytes set, a tile used twice in one product.
// A library built with this must never be shipped: dispatch then reports both extensions on
// every CPU with AVX-512 (src/cpu/dispatch.cpp).
#pragma once

#include <immintrin.h>  // first, so that the intrinsics are declared under their own names

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__AVX512BF16__) || defined(__AMX_TILE__) || defined(__AMX_BF16__)
#error "bf16_amx_instructions.hpp replaces instructions this build already has: compile without -mavx512bf16 -mamx-*"
#endif
#if !defined(__AVX512F__) || !defined(__AVX512BW__)
#error "bf16_amx_instructions.hpp is written with AVX-512F/BW: compile with -mavx512f -mavx512bw"
#endif

namespace flashattn_emulated {
namespace {

[[noreturn]] inline void fault(const char* instruction, const char* why) {
  std::fprintf(stderr, "emulated %s: %s (the hardware would fault)\n", instruction, why);
  std::abort();
}

// Subnormals (exponent bits zero) as zeros of their sign: the instructions' DAZ and FTZ.
inline __m512 flush_subnormal(__m512 x) {
  const __m512i bits = _mm512_castps_si512(x);
  const __mmask16 subnormal = _mm512_testn_epi32_mask(bits, _mm512_set1_epi32(0x7f800000));
  return _mm512_castsi512_ps(
      _mm512_mask_and_epi32(bits, subnormal, bits, _mm512_set1_epi32(static_cast<int>(0x80000000u))));
}

// The bf16 in each 32-bit word's low (high) half, as f32, subnormal read as zero.
inline __m512 low_bf16(__m512i words) { return flush_subnormal(_mm512_castsi512_ps(_mm512_slli_epi32(words, 16))); }
inline __m512 high_bf16(__m512i words) {
  const __m512i high_half = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  return flush_subnormal(_mm512_castsi512_ps(_mm512_and_si512(words, high_half)));
}

// acc + x · y rounded once, subnormal accumulator read as zero and subnormal result flushed.
inline __m512 fused_step(__m512 acc, __m512 x, __m512 y) {
  return flush_subnormal(_mm512_fmadd_ps(x, y, flush_subnormal(acc)));
}

inline __m512 dpbf16_ps(__m512 acc, __m512bh a, __m512bh b) {
  const __m512i aw = reinterpret_cast<__m512i>(a), bw = reinterpret_cast<__m512i>(b);
  acc = fused_step(acc, high_bf16(aw), high_bf16(bw));
  return fused_step(acc, low_bf16(aw), low_bf16(bw));
}

// Sixteen f32 to bf16 (in the low halves of 32-bit lanes, then narrowed).
inline __m256i to_bf16(__m512 x) {
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i upper = _mm512_srli_epi32(bits, 16);
  const __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(upper, _mm512_set1_epi32(1)));
  __m512i out = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
  const __m512i magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7f800000));
  const __mmask16 subnormal = _mm512_testn_epi32_mask(bits, _mm512_set1_epi32(0x7f800000));
  out = _mm512_mask_or_epi32(out, nan, upper, _mm512_set1_epi32(0x40));
  out = _mm512_mask_and_epi32(out, subnormal, upper, _mm512_set1_epi32(0x8000));
  return _mm512_cvtepi32_epi16(out);
}

// Words 0–15 from b, 16–31 from a, as the instruction orders them.
inline __m512bh cvtne2ps_pbh(__m512 a, __m512 b) {
  return reinterpret_cast<__m512bh>(_mm512_inserti64x4(_mm512_castsi256_si512(to_bf16(b)), to_bf16(a), 1));
}

// The calling thread's eight tile registers (palette 1: up to 16 rows of 64 bytes).
struct TileRegisters {
  bool configured = false;
  std::uint8_t rows[8] = {};
  std::uint16_t bytes_per_row[8] = {};
  alignas(64) std::uint8_t data[8][16][64] = {};
};
thread_local TileRegisters tiles;

inline void tile_release() { tiles = TileRegisters{}; }

inline void tile_loadconfig(const void* config) {
  const auto* c = static_cast<const std::uint8_t*>(config);
  if (c[0] == 0) return tile_release();
  if (c[0] != 1) fault("ldtilecfg", "palette other than 0 or 1");
  for (int i = 2; i < 64; ++i) {
    const bool reserved = i < 16 || (i >= 32 && i < 48) || i >= 56;
    if (reserved && c[i] != 0) fault("ldtilecfg", "a reserved byte is set");
  }
  if (c[1] != 0) fault("ldtilecfg", "start_row is not 0 (restarts are not emulated)");
  TileRegisters fresh;
  for (int t = 0; t < 8; ++t) {
    fresh.bytes_per_row[t] = static_cast<std::uint16_t>(c[16 + 2 * t] | c[17 + 2 * t] << 8);
    fresh.rows[t] = c[48 + t];
    if (fresh.bytes_per_row[t] > 64 || fresh.rows[t] > 16) fault("ldtilecfg", "a tile larger than 16 × 64 bytes");
    if ((fresh.rows[t] == 0) != (fresh.bytes_per_row[t] == 0)) fault("ldtilecfg", "a tile with rows xor columns");
  }
  fresh.configured = true;
  tiles = fresh;
}

inline void check_tile(const char* instruction, int t) {
  if (!tiles.configured) fault(instruction, "tiles are not configured");
  if (t < 0 || t >= 8 || tiles.rows[t] == 0) fault(instruction, "the tile is not configured");
  if (tiles.bytes_per_row[t] % 4 != 0) fault(instruction, "bytes per row not a multiple of 4");
}

inline void tile_zero(int t) {
  check_tile("tilezero", t);
  std::memset(tiles.data[t], 0, sizeof tiles.data[t]);
}

inline void tile_loadd(int t, const void* base, long stride) {
  check_tile("tileloadd", t);
  std::memset(tiles.data[t], 0, sizeof tiles.data[t]);
  for (int r = 0; r < tiles.rows[t]; ++r) {
    std::memcpy(tiles.data[t][r], static_cast<const std::uint8_t*>(base) + r * stride, tiles.bytes_per_row[t]);
  }
}

inline void tile_stored(int t, void* base, long stride) {
  check_tile("tilestored", t);
  for (int r = 0; r < tiles.rows[t]; ++r) {
    std::memcpy(static_cast<std::uint8_t*>(base) + r * stride, tiles.data[t][r], tiles.bytes_per_row[t]);
  }
}

// c (m × n f32) += a (m × k bf16 pairs) · b (k × n bf16 pairs).
inline void tile_dpbf16ps(int c, int a, int b) {
  check_tile("tdpbf16ps", c), check_tile("tdpbf16ps", a), check_tile("tdpbf16ps", b);
  if (c == a || c == b || a == b) fault("tdpbf16ps", "a tile named twice");
  const int m = tiles.rows[c], n = tiles.bytes_per_row[c] / 4, k = tiles.bytes_per_row[a] / 4;
  if (tiles.rows[a] != m || tiles.bytes_per_row[b] / 4 != n || tiles.rows[b] != k) {
    fault("tdpbf16ps", "the tiles' shapes do not chain (c: m × n, a: m × k, b: k × n)");
  }
  const __mmask16 columns = static_cast<__mmask16>((1u << n) - 1);
  for (int i = 0; i < m; ++i) {
    __m512 acc = _mm512_maskz_loadu_ps(columns, tiles.data[c][i]);
    for (int p = 0; p < k; ++p) {
      std::uint32_t a_word;
      std::memcpy(&a_word, tiles.data[a][i] + 4 * p, 4);
      const __m512i aw = _mm512_set1_epi32(static_cast<int>(a_word));
      const __m512i bw = _mm512_maskz_loadu_epi32(columns, tiles.data[b][p]);
      acc = fused_step(acc, low_bf16(aw), low_bf16(bw));
      acc = fused_step(acc, high_bf16(aw), high_bf16(bw));
    }
    _mm512_storeu_ps(tiles.data[c][i], _mm512_maskz_mov_ps(columns, acc));
  }
  for (int i = m; i < 16; ++i) std::memset(tiles.data[c][i], 0, 64);
}

}  // namespace
}  // namespace flashattn_emulated

// From here on the kernels' code calls the functions above.
#define __AVX512BF16__ 1
#define __AMX_TILE__ 1
#define __AMX_BF16__ 1
#define _mm512_dpbf16_ps ::flashattn_emulated::dpbf16_ps
#define _mm512_cvtne2ps_pbh ::flashattn_emulated::cvtne2ps_pbh
#define _tile_loadconfig ::flashattn_emulated::tile_loadconfig
#define _tile_release ::flashattn_emulated::tile_release
#undef _tile_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbf16ps
#define _tile_loadd(t, base, stride) ::flashattn_emulated::tile_loadd(t, base, stride)
#define _tile_stored(t, base, stride) ::flashattn_emulated::tile_stored(t, base, stride)
#define _tile_zero(t) ::flashattn_emulated::tile_zero(t)
#define _tile_dpbf16ps(c, a, b) ::flashattn_emulated::tile_dpbf16ps(c, a, b)
