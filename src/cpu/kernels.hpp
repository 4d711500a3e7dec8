// kernels.hpp — what each ISA build of the flash kernels provides, and its workspace.
//
// The kernels are written once (flash_kernels.inc) and compiled once per ISA, each in
// its own translation unit with its own flags (kernels_<isa>.cpp). dispatch.cpp picks
// the build; flash.cpp owns threading, scheduling and allocation, so that the ISA
// units only compute on one tile at a time.
#pragma once

#include <cstdint>

#include "core/problem.hpp"

namespace flashattn {

// Tile sizes: block_q query rows (the paper's Br) by block_k keys (Bc).
struct TileConfig {
  int block_q = 0;
  int block_k = 0;
};

// Per-thread scratch of the forward: every tile the inner loop touches.
struct ForwardWorkspace {
  float* q;    // (block_q, headdim)  softmax_scale · Q
  float* acc;  // (block_q, headdim)  unnormalized output
  float* pv;   // (block_q, headdim)  this key tile's P·V
  float* s;    // (block_q, block_k)  scores, then probabilities
  float* kt;   // (headdim, block_k)  K tile transposed
  float* m;    // (block_q)           running row max
  float* l;    // (block_q)           running row sum
  float* alpha;  // (block_q)         this tile's rescale factor exp2(m_old − m_new)
};

// Per-thread scratch of the backward.
struct BackwardWorkspace {
  float* q;     // (block_q, headdim)  softmax_scale · Q
  float* dout;  // (block_q, headdim)
  float* s;     // (block_q, block_k)  P, then P with dropout applied
  float* dp;    // (block_q, block_k)  dP, then dS
  float* kt;    // (headdim, block_k)
  float* vt;    // (headdim, block_k)
  float* k;     // (block_k, headdim)
  float* dk;    // (block_k, headdim)
  float* dv;    // (block_k, headdim)
  float* grad;  // (max(block_q, block_k), headdim)  one tile's dK, dV or dQ
  float* lse;   // (block_q)
  float* delta; // (block_q)           rowsum(dO ∘ O)
};

namespace workspace_detail {
// Hands out 64-byte aligned pieces of one buffer; with base == nullptr it only counts.
struct Carver {
  float* base;
  std::int64_t used = 0;
  float* take(std::int64_t floats) {
    float* p = base ? base + used : nullptr;
    used += (floats + 15) / 16 * 16;
    return p;
  }
};
}  // namespace workspace_detail

inline ForwardWorkspace carve_forward(float* base, const TileConfig& t, std::int64_t d,
                                      std::int64_t* floats = nullptr) {
  workspace_detail::Carver c{base};
  const std::int64_t bq = t.block_q, bk = t.block_k;
  ForwardWorkspace w{c.take(bq * d), c.take(bq * d), c.take(bq * d), c.take(bq * bk),
                     c.take(d * bk), c.take(bq),     c.take(bq),    c.take(bq)};
  if (floats) *floats = c.used;
  return w;
}

inline BackwardWorkspace carve_backward(float* base, const TileConfig& t, std::int64_t d,
                                        std::int64_t* floats = nullptr) {
  workspace_detail::Carver c{base};
  const std::int64_t bq = t.block_q, bk = t.block_k;
  BackwardWorkspace w{c.take(bq * d), c.take(bq * d), c.take(bq * bk), c.take(bq * bk),
                      c.take(d * bk), c.take(d * bk), c.take(bk * d),  c.take(bk * d),
                      c.take(bk * d), c.take((bq > bk ? bq : bk) * d), c.take(bq), c.take(bq)};
  if (floats) *floats = c.used;
  return w;
}

struct KernelSet {
  Isa isa;
  // Output rows q0 .. q1 (q1 - q0 <= block_q) of head h in batch b: writes out and lse.
  void (*forward_block)(const Problem& p, const TileConfig& t, std::int64_t b, std::int64_t h,
                        std::int64_t q0, std::int64_t q1, const ForwardWorkspace& w);
  // Keys kv0 .. kv1 (kv1 - kv0 <= block_k) of kv-head hk in batch b, over every query
  // head of its group: writes those rows of dk and dv, and adds to the rows of dq_target.
  // delta is (batch, heads, seqlen_q) contiguous.
  void (*backward_block)(const Problem& p, const TileConfig& t, std::int64_t b, std::int64_t hk,
                         std::int64_t kv0, std::int64_t kv1, const float* delta,
                         const Bshd& dq_target, const BackwardWorkspace& w);
};

extern const KernelSet kPortableKernels;
extern const KernelSet kAvx2Kernels;
extern const KernelSet kAvx512Kernels;

}  // namespace flashattn
