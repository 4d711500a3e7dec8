// peak.hpp — the machine's own yardstick: the FMA throughput of this build's vectors,
// which the benchmark measures in its own process and reports every figure against.
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#include "cpu/kernels/micro_gemm.hpp"

namespace flashattn {
namespace {

// Independent FMA chains, enough of them to cover the FMA latency on every port (4 cycles
// × 2 ports on current x86 cores); all live in registers. One iteration is
// kPeakChains · kLanes FMAs, 2 FLOPs each.
constexpr i64 kPeakChains = 12;
constexpr i64 kPeakFlopsPerIteration = 2 * kPeakChains * kLanes;

// Runs `iterations` rounds of the chains; returns a value that depends on every chain, so
// that nothing is left out.
float fma_chains(i64 iterations) {
  Vec acc[kPeakChains];
  for (i64 c = 0; c < kPeakChains; ++c) acc[c] = simd::set1(1e-3f * static_cast<float>(c));
  const Vec a = simd::set1(0.9999999f), b = simd::set1(1e-7f);
  for (i64 i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (i64 c = 0; c < kPeakChains; ++c) acc[c] = simd::fma(acc[c], a, b);
  }
  Vec sum = simd::zero();
  for (i64 c = 0; c < kPeakChains; ++c) sum = simd::add(sum, acc[c]);
  float lanes[kLanes];
  simd::store(lanes, sum);
  float total = 0.0f;
  for (i64 l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

}  // namespace
}  // namespace flashattn
