// micro_gemm.hpp — the register-blocked micro-kernel every tile product goes through
// (gemm below). Tiles are padded with zeros to whole register tiles, so the micro-kernel has
// no edge cases.
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#include <cstdint>
#include <limits>

#include "cpu/simd.hpp"

namespace flashattn {
namespace {

using i64 = std::int64_t;
using simd::Vec;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr i64 kLanes = simd::kLanes;

// Register tile: kRows × (2 vectors). Accumulators + two B vectors + one broadcast must
// fit in the register file: AVX-512 8×2 + 3 of 32, AVX2 6×2 + 3 of 16.
#if defined(__AVX512F__)
constexpr i64 kRows = 8;
#elif defined(__AVX2__)
constexpr i64 kRows = 6;
#else
constexpr i64 kRows = 4;
#endif
constexpr i64 kCols = 2 * kLanes;

constexpr i64 round_up(i64 x, i64 m) { return (x + m - 1) / m * m; }

// Which part of a tile product to compute. A whole tile computes everything; on the
// diagonal of a causal mask, the score rows (keys) hidden from a whole column block of
// queries, and the keys hidden from a whole row block of queries in P·V, are skipped.
struct WholeTile {
  i64 rows(i64 /*col*/, i64 m) const { return m; }
  i64 depth(i64 /*row*/, i64 k) const { return k; }
};

// Tiles that a causal mask or a window's right edge cuts: key r (row of Sᵀ) is visible
// to query c only if r <= c + diag, with diag = q0 + key_offset + window_right − j0.
i64 clamp_to(i64 x, i64 hi) { return x < 0 ? 0 : (x > hi ? hi : x); }

// Sᵀ = K Qᵀ: only the keys some query of columns col .. col + kCols − 1 sees.
struct CausalScores {
  i64 diag;
  i64 rows(i64 col, i64 m) const { return clamp_to(round_up(col + kCols + diag, kRows), m); }
  i64 depth(i64 /*row*/, i64 k) const { return k; }
};

// O += P V: only the keys some query of rows row .. row + kRows − 1 sees.
struct CausalOutput {
  i64 diag;
  i64 rows(i64 /*col*/, i64 m) const { return m; }
  i64 depth(i64 row, i64 k) const { return clamp_to(row + kRows + diag, k); }
};

// The rows of a product's b operand: b + p · ldb (a tile in scratch, or rows in place), or
// any rows by address (a paged cache's tokens).
struct StridedRows {
  const float* b;
  i64 ldb;
  const float* row(i64 p) const { return b + p * ldb; }
};
struct GatheredRows {
  const float* const* rows;
  const float* row(i64 p) const { return rows[p]; }
};

// One register tile: rows × (2 vectors) of c = a · b (or +=) over depth k, columns col ..
// col + kCols − 1 of b's rows; the k-sum of each element is finished in registers before
// it touches c. Forced inline, as the loop was when gemm held it: measured against that
// build (flashattn bench --baseline-lib, 53 paired runs, causal N = 1024, d = 64, 8 heads):
// forward 1.002 [0.975, 1.029], backward 1.008 [0.984, 1.032].
template <i64 kTileRows, bool kAccumulate, typename Rows>
[[gnu::always_inline]] inline void micro_tile(i64 k, const float* ap, i64 a_row, i64 a_col, const Rows& b, i64 col, float* c, i64 ldc) {
  Vec acc0[kTileRows], acc1[kTileRows];
#pragma GCC unroll 16
  for (i64 r = 0; r < kTileRows; ++r) acc0[r] = acc1[r] = simd::zero();
  for (i64 p = 0; p < k; ++p) {
    const float* bp = b.row(p) + col;
    const Vec b0 = simd::load(bp), b1 = simd::load(bp + kLanes);
#pragma GCC unroll 16
    for (i64 r = 0; r < kTileRows; ++r) {
      const Vec ar = simd::set1(ap[r * a_row]);
      acc0[r] = simd::fma(ar, b0, acc0[r]);
      acc1[r] = simd::fma(ar, b1, acc1[r]);
    }
    ap += a_col;
  }
#pragma GCC unroll 16
  for (i64 r = 0; r < kTileRows; ++r) {
    float* cp = c + r * ldc;
    if (kAccumulate) {
      acc0[r] = simd::add(acc0[r], simd::load(cp));
      acc1[r] = simd::add(acc1[r], simd::load(cp + kLanes));
    }
    simd::store(cp, acc0[r]);
    simd::store(cp + kLanes, acc1[r]);
  }
}

// The last rows (fewer than kRows) of a product, as their own register tile.
template <bool kAccumulate, typename Rows, i64 kTileRows = kRows - 1>
inline void micro_tile_rows(i64 rows, i64 k, const float* ap, i64 a_row, i64 a_col, const Rows& b, i64 col,
                            float* c, i64 ldc) {
  if constexpr (kTileRows > 0) {
    if (rows == kTileRows) return micro_tile<kTileRows, kAccumulate>(k, ap, a_row, a_col, b, col, c, ldc);
    micro_tile_rows<kAccumulate, Rows, kTileRows - 1>(rows, k, ap, a_row, a_col, b, col, c, ldc);
  }
}

// c (m × n, ldc) = a · b, or c += a · b when kAccumulate; n must be a multiple of kCols (m
// need not be of kRows: the last rows get a register tile of their own).
// a(i, p) = a[i · a_row + p · a_col], so a can be read transposed; b's rows are `b`
// (StridedRows or GatheredRows). Elements outside `part` are left as they were.
template <bool kAccumulate, typename Rows, typename Part = WholeTile>
void gemm_rows(i64 m, i64 n, i64 k, const float* a, i64 a_row, i64 a_col, const Rows& b, float* c, i64 ldc,
               Part part = {}) {
  for (i64 j = 0; j < n; j += kCols) {
    const i64 m_part = part.rows(j, m);
    for (i64 i = 0; i < m_part; i += kRows) {
      const i64 k_part = part.depth(i, k);
      if (m_part - i >= kRows) {
        micro_tile<kRows, kAccumulate>(k_part, a + i * a_row, a_row, a_col, b, j, c + i * ldc + j, ldc);
      } else {
        micro_tile_rows<kAccumulate>(m_part - i, k_part, a + i * a_row, a_row, a_col, b, j, c + i * ldc + j, ldc);
      }
    }
  }
}

// The same with b (k × n, ldb) in one block of memory.
template <bool kAccumulate, typename Part = WholeTile>
void gemm(i64 m, i64 n, i64 k, const float* a, i64 a_row, i64 a_col, const float* b, i64 ldb, float* c, i64 ldc,
          Part part = {}) {
  gemm_rows<kAccumulate>(m, n, k, a, a_row, a_col, StridedRows{b, ldb}, c, ldc, part);
}

}  // namespace
}  // namespace flashattn
