// amx_products.hpp — bf16 tile products on AMX (tdpbf16ps): C (16 × 16 f32) += A (16 × 32
// bf16) · B (16 pairs × 16 columns, bf16 pairs as Bf16Products holds them), one instruction
// per 16 × 16 × 32 block where vdpbf16ps would take sixty-four.
//
// Every operand is a whole number of 16-row, 64-byte tiles: callers pad to 32 rows,
// columns and depth (zeros where a product would read past its data). The eight tile
// registers hold a 2 × 2 block of C and the two A and two B tiles it needs.
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#if defined(__AMX_BF16__)

#include <cstdint>

#include "cpu/kernels/micro_gemm.hpp"

namespace flashattn {
namespace {

// Every tile register as 16 rows of 64 bytes (palette 1). The configuration is the calling
// thread's; a kernel loads it before its first tile instruction.
struct alignas(64) AmxTileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

inline void amx_configure() {
  static const AmxTileConfig config;
  _tile_loadconfig(&config);
}

// GCC's tile loads tell the compiler nothing of the memory they read: a barrier keeps the
// stores that made the operands before them.
inline void compiler_barrier() { asm volatile("" ::: "memory"); }

// c (m × n f32, ldc floats) = or += a · b over depth k: a is m rows of k bf16 (lda bf16
// apart), b is k / 2 rows of n pair words (ldb words apart). m, n, k multiples of 32.
template <bool kAccumulate>
void amx_gemm(i64 m, i64 n, i64 k, const std::uint16_t* a, i64 lda, const std::uint32_t* b, i64 ldb, float* c,
              i64 ldc) {
  compiler_barrier();
  const i64 sa = lda * 2, sb = ldb * 4, sc = ldc * 4;  // strides in bytes
  for (i64 i = 0; i < m; i += 32) {
    for (i64 j = 0; j < n; j += 32) {
      float* c00 = c + i * ldc + j;
      float* c10 = c00 + 16 * ldc;
      if (kAccumulate) {
        _tile_loadd(0, c00, sc);
        _tile_loadd(1, c00 + 16, sc);
        _tile_loadd(2, c10, sc);
        _tile_loadd(3, c10 + 16, sc);
      } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      }
      for (i64 p = 0; p < k; p += 32) {
        const std::uint16_t* a0 = a + i * lda + p;
        const std::uint32_t* b0 = b + p / 2 * ldb + j;
        _tile_loadd(4, a0, sa);
        _tile_loadd(5, a0 + 16 * lda, sa);
        _tile_loadd(6, b0, sb);
        _tile_loadd(7, b0 + 16, sb);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, c00, sc);
      _tile_stored(1, c00 + 16, sc);
      _tile_stored(2, c10, sc);
      _tile_stored(3, c10 + 16, sc);
    }
  }
}

// The forward's products on tiles (kernels/flash_forward.hpp): K in bf16 rows, Q and P as
// pairs, V transposed, the output accumulated transposed (Oᵀ = Vᵀ P) so that P's pairs of
// keys are B's rows.
struct AmxProducts : Bf16Products {
  static constexpr bool kOutputTransposed = true;
  static constexpr bool kScoresUnscaled = true;  // the caller scales S (or the softmax does)
  static void prepare() { amx_configure(); }
  static void finish_block() { _tile_release(); }  // the OS need not save tiles no one uses
};

}  // namespace
}  // namespace flashattn

#endif
