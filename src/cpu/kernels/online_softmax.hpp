// online_softmax.hpp — the forward's online softmax over one tile of scores, and the
// build's vector exp2 for tests of its contract.
//
// Part of the per-ISA kernel build: included (through kernels/kernel_set.hpp) only by
// kernels_<isa>.cpp, each compiled with its own flags. Everything here has internal linkage,
// so builds with different flags never share a function.
#pragma once

#include <limits>

#include "cpu/kernels/micro_gemm.hpp"
#include "cpu/vec_math.hpp"

namespace flashattn {
namespace {

// Sᵀ (bc key rows × cols query columns, ld apart) to P in place against each query's
// running statistics, vertically: one vector holds kLanes queries. The running max is kept
// in log2 units as mb = m · log2 e, rounded once; every exponent of a tile is
// fma(s, log2 e, −mb) against the same mb, and the rescale alpha = 2^(mb_old − mb_new) uses
// the same rounded values, so that rounding cancels in O = acc / l. Updates m, mb and
// l = l · alpha + Σ P; leaves alpha for the caller's rescale of O and −mb in neg_ref.
// The scores are st · score_scale (score_scale > 0: products that leave the softmax scale
// to it, saving a pass; exactly st when it is 1). P goes where `store_p` puts it: in place
// (StoreInPlace), or wherever the product that reads it wants it.
struct StoreInPlace {
  void operator()(float* sp, i64 /*row*/, i64 /*col*/, Vec pc) const { simd::store(sp, pc); }
};

template <typename StoreP = StoreInPlace>
void online_softmax_columns(float* st, i64 ld, i64 cols, i64 bc, float score_scale, float* m, float* mb, float* l,
                            float* alpha, float* neg_ref, StoreP&& store_p = {}) {
  const Vec log2e = simd::set1(kLog2e), neg_inf = simd::set1(kNegInf), scale = simd::set1(score_scale);
  const Vec scaled_log2e = simd::set1(score_scale * kLog2e);
  for (i64 i = 0; i < cols; i += kLanes) {
    Vec tile_max = neg_inf;
    for (i64 c = 0; c < bc; ++c) tile_max = simd::max(tile_max, simd::load(st + c * ld + i));
    const Vec m_new = simd::max(simd::mul(tile_max, scale), simd::load(m + i));
    simd::store(m + i, m_new);
    const Vec mb_old = simd::load(mb + i);
    const Vec mb_new = simd::mul(m_new, log2e);
    // A query with nothing visible yet keeps mb = −∞; its exponents subtract 0 instead,
    // so that exp(−∞ − m) = 0 rather than NaN.
    const Vec ref = simd::select(simd::less(mb_new, simd::set1(std::numeric_limits<float>::lowest())),
                                 simd::zero(), mb_new);
    simd::store(mb + i, mb_new);
    simd::store(neg_ref + i, simd::sub(simd::zero(), ref));
    simd::store(alpha + i, simd::exp2_below_128(simd::sub(mb_old, ref)));
  }
  for (i64 i = 0; i < cols; i += kLanes) {
    const Vec nref = simd::load(neg_ref + i);
    Vec sum = simd::zero();
    for (i64 c = 0; c < bc; ++c) {
      float* sp = st + c * ld + i;
      const Vec pc = simd::exp2_below_128(simd::fma(simd::load(sp), scaled_log2e, nref));
      store_p(sp, c, i, pc);
      sum = simd::add(sum, pc);
    }
    simd::store(l + i, simd::fma(simd::load(l + i), simd::load(alpha + i), sum));
  }
}

void exp2_array(const float* x, float* y, i64 n) {
  i64 i = 0;
  for (; i + kLanes <= n; i += kLanes) simd::store(y + i, simd::exp2(simd::load(x + i)));
  for (; i < n; ++i) y[i] = exp2_approx(x[i]);
}

}  // namespace
}  // namespace flashattn
