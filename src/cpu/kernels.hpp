// kernels.hpp — what each ISA build of the flash kernels provides.
//
// The kernels are written once (cpu/kernels/, index in kernel_set.hpp) and compiled once per ISA, each in
// its own translation unit with its own flags (kernels_<isa>.cpp). dispatch.cpp picks
// the build; flash.cpp owns threading, scheduling and allocation, so that the ISA
// units only compute on one tile at a time, in scratch memory they are handed.
#pragma once

#include <cstdint>

#include "core/problem.hpp"
#include "core/tiles.hpp"

namespace flashattn {

inline constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }


// K and V of one (batch, kv-head), copied once per forward call (in waves of pairs:
// flash.cpp) into contiguous rows (KernelSet::pack_kv): k is (seqlen_k + micro_rows,
// headdim), v is (seqlen_k, headdim rounded up to micro_cols) with zero padding, f32; or,
// where the build multiplies bf16, half the bytes: k_pairs is K in bf16 rows (headdim padded
// to a pair, or to 32 for AMX) and V is v_pairs, pairs of rows (vdpbf16ps), or v_t, Vᵀ in
// bf16 (AMX) — layouts in kernels/flash_forward.hpp (Bf16KvLayout). In place, rows lie a
// whole token apart (heads · headdim floats) and a tile's rows span more pages than the TLB
// holds; every query tile re-reads them.
// Measured (8 heads, d = 64, 2 threads): reading K and V in place instead, copying only
// the last tile, was slower even where the copy is a pass nothing overlaps: N = 1024
// 21.8 vs 18.6 ms, N = 2048 82 vs 71 ms. Copying each group lazily in the first task that
// needs it, and the next group ahead, was slower too (causal N = 1024: 0.58 vs 0.67 of
// SGEMM), as was one task per group with a per-thread copy (N = 4096: 0.81 vs 0.87).
struct PackedKv {
  const float* k = nullptr;
  const float* v = nullptr;
  const std::uint32_t* k_pairs = nullptr;
  const std::uint32_t* v_pairs = nullptr;
  const std::uint16_t* v_t = nullptr;
};

// Q and dO of one (batch, head), packed once per backward call (in waves of groups: flash.cpp)
// where the build multiplies bf16 (kernels/flash_backward.hpp): bf16 rows (seqlen_q + 32
// rounded to 32, of headdim rounded to 32), zero padded, and the same transposed (AMX) or as
// pairs of rows (vdpbf16ps). The f32 products read Q and dO in place.
struct PackedQ {
  const std::uint16_t* q = nullptr;
  const std::uint16_t* dout = nullptr;
  const std::uint16_t* q_t = nullptr;
  const std::uint16_t* dout_t = nullptr;
  const std::uint32_t* q_pairs = nullptr;
  const std::uint32_t* dout_pairs = nullptr;
};

struct KernelSet {
  Isa isa;
  int micro_rows;  // register tile of the micro-kernel: rows of the output ...
  int micro_cols;  // ... by columns (two vectors)
  // Scratch floats one thread needs for a forward or backward block.
  std::int64_t (*forward_workspace_floats)(const TileConfig& t, std::int64_t headdim);
  std::int64_t (*backward_workspace_floats)(const TileConfig& t, std::int64_t headdim);
  // Scratch floats one thread needs for a split-KV block of `rows` rows.
  std::int64_t (*split_kv_workspace_floats)(std::int64_t rows, std::int64_t headdim);
  // Floats of packed K and V one (batch, kv-head) takes, and the packing of one into `base`.
  std::int64_t (*packed_kv_floats)(const Problem& p, const TileConfig& t);
  PackedKv (*pack_kv)(const Problem& p, const TileConfig& t, std::int64_t b, std::int64_t hk, float* base);
  // Output rows q0 .. q1 (q1 - q0 <= block_q) of head h in batch b: writes out and lse.
  void (*forward_block)(const Problem& p, const TileConfig& t, std::int64_t b, std::int64_t h,
                        std::int64_t q0, std::int64_t q1, const PackedKv& kv, float* workspace);
  // Floats of packed Q and dO one (batch, head) takes (0: the backward reads them in place),
  // and the packing of one into `base`.
  std::int64_t (*packed_q_floats)(const Problem& p, const TileConfig& t);
  PackedQ (*pack_q)(const Problem& p, const TileConfig& t, std::int64_t b, std::int64_t h, float* base);
  // Keys kv0 .. kv1 (kv1 - kv0 <= block_k) of kv-head hk in batch b, over every query
  // head of its group: writes those rows of dk and dv, and adds to the rows of dq_target.
  // delta is rowsum(dO ∘ O), (batch, heads, seqlen_q) contiguous; packed_q is indexed by
  // b · heads + h, the heads of the running wave filled (null where packed_q_floats is 0).
  void (*backward_block)(const Problem& p, const TileConfig& t, std::int64_t b, std::int64_t hk,
                         std::int64_t kv0, std::int64_t kv1, const float* delta, const PackedQ* packed_q,
                         const Bshd& dq_target, float* workspace);
  // Split-KV (kernels/split_kv.hpp): queries i0 .. i1 of every query head of kv-heads
  // hk0 .. hk1 in batch b (rows head-major, (hk1 − hk0) · group · (i1 − i0) of them) against
  // keys j0 .. j1, K and V read in place through Problem::kv_row. Writes each row's O and LSE
  // to out and lse, or, when partial_o is not null, to partial_o (rows × headdim) and
  // partial_lse (rows).
  void (*split_kv_block)(const Problem& p, std::int64_t b, std::int64_t hk0, std::int64_t hk1, std::int64_t i0,
                         std::int64_t i1, std::int64_t j0, std::int64_t j1, float* partial_o, float* partial_lse,
                         float* workspace);
  // y[i] = 2^x[i] with this build's vector exp2, for tests of its contract.
  void (*exp2_array)(const float* x, float* y, std::int64_t n);
  // z[c] = keep_scale where dropout keeps column j0 + c of row i (batch b, head h), else 0,
  // c < n: philox.hpp's mask, eight counters at a time where the build has AVX2.
  void (*dropout_factors)(float* z, std::int64_t n, std::uint64_t seed, std::int64_t b, std::int64_t h,
                          std::int64_t i, std::int64_t j0, std::uint32_t threshold, float keep_scale);
  // n elements of a 16-bit dtype (f16 or bf16) to f32 and back (kernels/convert.hpp): bit for
  // bit core/dtype.hpp's scalar rules, vectorized where the build can; f32 is copied.
  void (*convert_to_f32)(DType dtype, const void* src, float* dst, std::int64_t n);
  void (*convert_from_f32)(DType dtype, const float* src, void* dst, std::int64_t n);
  // The peak yardsticks (kernels/peak.hpp): `iterations` rounds of register-resident FMA
  // chains, peak_flops_per_iteration FLOPs each; and of the build's bf16 products (vdpbf16ps
  // chains where it has them, else the FMA chains), peak_bf16_flops_per_iteration each.
  float (*fma_chains)(std::int64_t iterations);
  std::int64_t peak_flops_per_iteration;
  float (*bf16_chains)(std::int64_t iterations);
  std::int64_t peak_bf16_flops_per_iteration;
};

extern const KernelSet kPortableKernels;
extern const KernelSet kAvx2Kernels;
extern const KernelSet kAvx512Kernels;
extern const KernelSet kAvx512Bf16Kernels;
extern const KernelSet kAmxKernels;

}  // namespace flashattn
