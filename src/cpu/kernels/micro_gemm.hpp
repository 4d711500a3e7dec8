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

#include "cpu/kernels/convert.hpp"
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
// any rows by address (a paged cache's tokens). Elements are floats, or bf16 pairs (below).
template <typename T = float>
struct StridedRows {
  const T* b;
  i64 ldb;
  const T* row(i64 p) const { return b + p * ldb; }
};
template <typename T = float>
struct GatheredRows {
  const T* const* rows;
  const T* row(i64 p) const { return rows[p]; }
};

// What one step of a product multiplies: f32 elements (one depth step each, vfmadd), or,
// where the build has AVX512-BF16, bf16 pairs (vdpbf16ps: two depth steps per 32-bit word).
struct F32Products {
  using Elem = float;
  static i64 steps(i64 depth) { return depth; }
  static Vec broadcast(const float* a) { return simd::set1(*a); }
  static Vec load(const float* b) { return simd::load(b); }
  static Vec madd(Vec acc, Vec a, Vec b) { return simd::fma(a, b, acc); }
  Vec finish(Vec acc) const { return acc; }
  // For the forward (flash_forward.hpp): its output accumulates as (queries, d), and the
  // products need no per-thread state.
  static constexpr bool kOutputTransposed = false;
  static constexpr bool kScoresUnscaled = false;
  static void prepare() {}
  static void finish_block() {}
};

// The same f32 products with b's rows stored as kDType (a 16-bit KV cache read in place),
// widened as they are loaded.
template <DType kDType>
struct WideningProducts : F32Products {
  static Vec load(const StoredAs<kDType>* b) { return load_widened<kDType>(b); }
};

#if defined(__AVX512BF16__)
// Operands of bf16 products hold pairs of depth steps (2p, 2p + 1) as one 32-bit word, the
// lower step in the low half: a's element (i, p) is row i's pair p; b's row p holds
// column c's pair p at c ([pairs][n][2] bf16). vdpbf16ps multiplies exactly and adds the
// two products to the f32 accumulator (subnormal inputs and results flushed to zero, as
// the instruction does). The sum is scaled once as it leaves the registers (softmax_scale
// for scores, so that Q is multiplied unrounded).
struct Bf16Products {
  using Elem = std::uint32_t;
  static i64 steps(i64 depth) { return (depth + 1) / 2; }
  static Vec broadcast(const std::uint32_t* a) { return {_mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(*a)))}; }
  static Vec load(const std::uint32_t* b) { return {_mm512_castsi512_ps(_mm512_loadu_si512(b))}; }
  static Vec madd(Vec acc, Vec a, Vec b) {
    return {_mm512_dpbf16_ps(acc.v, (__m512bh)_mm512_castps_si512(a.v), (__m512bh)_mm512_castps_si512(b.v))};
  }
  float scale = 1.0f;
  Vec finish(Vec acc) const { return simd::mul(acc, simd::set1(scale)); }
  static constexpr bool kOutputTransposed = false;
  static constexpr bool kScoresUnscaled = false;
  static void prepare() {}
  static void finish_block() {}
};
#endif

// One register tile: rows × (2 vectors) of c = a · b (or +=) over `steps` depth steps,
// columns col .. col + kCols − 1 of b's rows; the k-sum of each element is finished in
// registers before it touches c. Forced inline, as the loop was when gemm held it: measured
// against that build (flashattn bench --baseline-lib, 53 paired runs, causal N = 1024,
// d = 64, 8 heads): forward 1.002 [0.975, 1.029], backward 1.008 [0.984, 1.032].
template <i64 kTileRows, bool kAccumulate, typename Ops, typename Rows>
[[gnu::always_inline]] inline void micro_tile(const Ops& ops, i64 steps, const typename Ops::Elem* ap, i64 a_row,
                                              i64 a_col, const Rows& b, i64 col, float* c, i64 ldc) {
  Vec acc0[kTileRows], acc1[kTileRows];
#pragma GCC unroll 16
  for (i64 r = 0; r < kTileRows; ++r) acc0[r] = acc1[r] = simd::zero();
  for (i64 p = 0; p < steps; ++p) {
    const auto* bp = b.row(p) + col;
    const Vec b0 = Ops::load(bp), b1 = Ops::load(bp + kLanes);
#pragma GCC unroll 16
    for (i64 r = 0; r < kTileRows; ++r) {
      const Vec ar = Ops::broadcast(ap + r * a_row);
      acc0[r] = Ops::madd(acc0[r], ar, b0);
      acc1[r] = Ops::madd(acc1[r], ar, b1);
    }
    ap += a_col;
  }
#pragma GCC unroll 16
  for (i64 r = 0; r < kTileRows; ++r) {
    float* cp = c + r * ldc;
    acc0[r] = ops.finish(acc0[r]);
    acc1[r] = ops.finish(acc1[r]);
    if (kAccumulate) {
      acc0[r] = simd::add(acc0[r], simd::load(cp));
      acc1[r] = simd::add(acc1[r], simd::load(cp + kLanes));
    }
    simd::store(cp, acc0[r]);
    simd::store(cp + kLanes, acc1[r]);
  }
}

// The last rows (fewer than kRows) of a product, as their own register tile.
template <bool kAccumulate, typename Ops, typename Rows, i64 kTileRows = kRows - 1>
inline void micro_tile_rows(const Ops& ops, i64 rows, i64 steps, const typename Ops::Elem* ap, i64 a_row, i64 a_col,
                            const Rows& b, i64 col, float* c, i64 ldc) {
  if constexpr (kTileRows > 0) {
    if (rows == kTileRows) return micro_tile<kTileRows, kAccumulate>(ops, steps, ap, a_row, a_col, b, col, c, ldc);
    micro_tile_rows<kAccumulate, Ops, Rows, kTileRows - 1>(ops, rows, steps, ap, a_row, a_col, b, col, c, ldc);
  }
}

// c (m × n, ldc) = a · b, or c += a · b when kAccumulate, over depth k (elements, not
// steps); n must be a multiple of kCols (m need not be of kRows: the last rows get a
// register tile of their own). a(i, p) = a[i · a_row + p · a_col] in Ops's elements, so a
// can be read transposed; b's rows are `b` (StridedRows or GatheredRows). Elements outside
// `part` are left as they were.
template <bool kAccumulate, typename Rows, typename Part = WholeTile, typename Ops = F32Products>
void gemm_rows(i64 m, i64 n, i64 k, const typename Ops::Elem* a, i64 a_row, i64 a_col, const Rows& b, float* c,
               i64 ldc, Part part = {}, const Ops& ops = {}) {
  for (i64 j = 0; j < n; j += kCols) {
    const i64 m_part = part.rows(j, m);
    for (i64 i = 0; i < m_part; i += kRows) {
      const i64 steps = Ops::steps(part.depth(i, k));
      if (m_part - i >= kRows) {
        micro_tile<kRows, kAccumulate>(ops, steps, a + i * a_row, a_row, a_col, b, j, c + i * ldc + j, ldc);
      } else {
        micro_tile_rows<kAccumulate>(ops, m_part - i, steps, a + i * a_row, a_row, a_col, b, j, c + i * ldc + j, ldc);
      }
    }
  }
}

// The same with b (k × n, ldb) in one block of memory (k / 2 rows of pairs for bf16).
template <bool kAccumulate, typename Part = WholeTile, typename Ops = F32Products>
void gemm(i64 m, i64 n, i64 k, const typename Ops::Elem* a, i64 a_row, i64 a_col, const typename Ops::Elem* b,
          i64 ldb, float* c, i64 ldc, Part part = {}, const Ops& ops = {}) {
  gemm_rows<kAccumulate>(m, n, k, a, a_row, a_col, StridedRows<typename Ops::Elem>{b, ldb}, c, ldc, part, ops);
}

}  // namespace
}  // namespace flashattn
