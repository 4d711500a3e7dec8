// peak.hpp — the machine's own yardsticks: the FMA throughput of this build's vectors, and
// of its bf16 products, which the benchmark measures in its own process and reports every
// figure against (f32 calls against the first, 16-bit calls against the second).
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#include "cpu/kernels/amx_products.hpp"
#include "cpu/kernels/micro_gemm.hpp"

namespace flashattn {
namespace {

// Independent FMA chains, enough of them to cover the FMA latency on every port (4 cycles
// × 2 ports on current x86 cores); all live in registers. One iteration is
// kPeakChains · kLanes FMAs, 2 FLOPs each.
constexpr i64 kPeakChains = 12;
constexpr i64 kPeakFlopsPerIteration = 2 * kPeakChains * kLanes;

// A value that depends on every chain, so that nothing is left out.
float sum_of_chains(const Vec* acc) {
  Vec sum = simd::zero();
  for (i64 c = 0; c < kPeakChains; ++c) sum = simd::add(sum, acc[c]);
  float lanes[kLanes];
  simd::store(lanes, sum);
  float total = 0.0f;
  for (i64 l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

// Runs `iterations` rounds of the chains.
float fma_chains(i64 iterations) {
  Vec acc[kPeakChains];
  for (i64 c = 0; c < kPeakChains; ++c) acc[c] = simd::set1(1e-3f * static_cast<float>(c));
  const Vec a = simd::set1(0.9999999f), b = simd::set1(1e-7f);
  for (i64 i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (i64 c = 0; c < kPeakChains; ++c) acc[c] = simd::fma(acc[c], a, b);
  }
  return sum_of_chains(acc);
}

// The same chains through the build's bf16 products: AMX tiles where the build has them
// (four accumulator tiles, 16 × 16 × 32 products of 2 FLOPs per tdpbf16ps), vdpbf16ps where
// it has that (kLanes lanes × 2 products × 2 FLOPs per instruction), else the FMA chains
// themselves — the build computes bf16 in f32.
#if defined(__AMX_BF16__)
constexpr i64 kPeakBf16FlopsPerIteration = 4 * 2 * 16 * 16 * 32;
float bf16_chains(i64 iterations) {
  alignas(64) std::uint16_t operand[16 * 32];
  for (std::uint16_t& x : operand) x = 0x33d6;  // 1e-7 in bf16: the sums stay small
  alignas(64) float sums[16 * 16];
  amx_configure();
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  compiler_barrier();
  _tile_loadd(4, operand, 64);
  _tile_loadd(5, operand, 64);
  _tile_loadd(6, operand, 64);
  _tile_loadd(7, operand, 64);
  for (i64 i = 0; i < iterations; ++i) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  float total = 0.0f;
  for (int t = 0; t < 4; ++t) {
    switch (t) {  // tile numbers are immediates
      case 0: _tile_stored(0, sums, 64); break;
      case 1: _tile_stored(1, sums, 64); break;
      case 2: _tile_stored(2, sums, 64); break;
      default: _tile_stored(3, sums, 64); break;
    }
    for (float s : sums) total += s;
  }
  _tile_release();
  return total;
}
#elif defined(__AVX512BF16__)
constexpr i64 kPeakBf16FlopsPerIteration = 4 * kPeakChains * kLanes;
float bf16_chains(i64 iterations) {
  Vec acc[kPeakChains];
  for (i64 c = 0; c < kPeakChains; ++c) acc[c] = simd::set1(1e-3f * static_cast<float>(c));
  const std::uint32_t one_pair = 0x3f803f80u, tiny_pair = 0x33d633d6u;  // (1, 1) and (1e-7, 1e-7) in bf16
  const Vec a = Bf16Products::broadcast(&one_pair), b = Bf16Products::broadcast(&tiny_pair);
  for (i64 i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (i64 c = 0; c < kPeakChains; ++c) acc[c] = Bf16Products::madd(acc[c], a, b);
  }
  return sum_of_chains(acc);
}
#else
constexpr i64 kPeakBf16FlopsPerIteration = kPeakFlopsPerIteration;
float bf16_chains(i64 iterations) { return fma_chains(iterations); }
#endif

}  // namespace
}  // namespace flashattn
