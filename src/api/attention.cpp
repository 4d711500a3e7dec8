// attention.cpp — the public entry points forward and backward: validate (core), then hand
// the Problem to a path (flash or standard).
//
// bf16 and f16 tensors are computed in f32 (every feature as in f32, every product and
// statistic in f32), and each output is rounded once into the caller's tensor — except bf16
// on the builds with bf16 products (avx512_bf16, amx), whose flash kernels multiply bf16 and
// round P and dS to it (cpu/kernels/). The flash paths read their inputs and write their
// outputs in place, row by row, but for dQ, which sums over key tiles in an f32 copy; the
// standard path goes through f32 copies of everything.
#include <omp.h>

#include <algorithm>
#include <iterator>
#include <vector>

#include "core/memory.hpp"
#include "core/philox.hpp"
#include "api/validate.hpp"
#include "core/problem.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/flash.hpp"
#include "flashattn/error.hpp"
#include "standard/standard.hpp"

namespace flashattn {

const char* to_string(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::flash: return "flash";
    case Algorithm::standard: return "standard";
  }
  return "?";
}

namespace {

// Runs `path` on the problem, or on each sequence of a variable-length one.
template <typename Path>
void run(const Problem& p, Path path) {
  if (p.cu_q == nullptr) return path(p);
  for (std::int64_t s = 0; s < p.sequences; ++s) path(p.sequence(s));
}

// f32 copies of a call's 16-bit BSHD tensors, (batch, seqlen, heads, headdim) contiguous.
// Problem's Bshd of a 16-bit tensor holds its element strides (rows: Bshd::row with the dtype).
class F32Copies {
 public:
  explicit F32Copies(const Problem& p) : p_(p), convert_(kernels_for(p.isa)) {}

  // An f32 copy of `t` (an input), or uninitialised room for an output.
  Bshd input(const Bshd& t, std::int64_t seqlen, std::int64_t heads) { return copy(t, seqlen, heads, true); }
  Bshd output(std::int64_t seqlen, std::int64_t heads) { return copy(Bshd{}, seqlen, heads, false); }

  // Rounds the f32 copy `from` into the caller's 16-bit tensor `to`.
  void write_back(const Bshd& from, const Bshd& to, std::int64_t seqlen, std::int64_t heads) const {
    for_each_row(seqlen, heads, [&](std::int64_t b, std::int64_t s, std::int64_t h) {
      convert_.convert_from_f32(p_.dtype, from.row(b, s, h), to.row(b, s, h, p_.dtype), p_.headdim);
    });
  }

 private:
  template <typename F>
  void for_each_row(std::int64_t seqlen, std::int64_t heads, F&& f) const {
#pragma omp parallel for collapse(2) num_threads(p_.num_threads) schedule(static)
    for (std::int64_t b = 0; b < p_.batch; ++b) {
      for (std::int64_t s = 0; s < seqlen; ++s) {
        for (std::int64_t h = 0; h < heads; ++h) f(b, s, h);
      }
    }
  }

  Bshd copy(const Bshd& t, std::int64_t seqlen, std::int64_t heads, bool convert) {
    const std::int64_t d = p_.headdim;
    buffers_.emplace_back(static_cast<std::size_t>(p_.batch * seqlen * heads * d));
    const Bshd f32{buffers_.back().data(), seqlen * heads * d, heads * d, d};
    if (convert) {
      for_each_row(seqlen, heads, [&](std::int64_t b, std::int64_t s, std::int64_t h) {
        convert_.convert_to_f32(p_.dtype, t.row(b, s, h, p_.dtype), f32.row(b, s, h), d);
      });
    }
    return f32;
  }

  const Problem& p_;
  const KernelSet& convert_;
  std::vector<Buffer> buffers_;
};

}  // namespace

void forward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
             const TensorView& lse, const AttentionOptions& options, Algorithm algorithm) {
  const Problem p = make_forward_problem("flashattn::forward", q, k, v, out, lse, options, algorithm);
  const auto path = algorithm == Algorithm::standard ? standard_forward : flash_forward;
  if (p.dtype == DType::f32) return run(p, path);
  Problem f = p;
  if (algorithm == Algorithm::flash) {  // read and written in place, widened and rounded row by row
    f.kv_dtype = f.q_dtype = f.out_dtype = p.dtype;
    return run(f, path);
  }
  F32Copies copies(p);
  f.q = copies.input(p.q, p.seqlen_q, p.heads);
  f.k = copies.input(p.k, p.seqlen_k, p.heads_k);
  f.v = copies.input(p.v, p.seqlen_k, p.heads_k);
  f.out = copies.output(p.seqlen_q, p.heads);
  run(f, path);
  copies.write_back(f.out, p.out, p.seqlen_q, p.heads);
}

void backward(const TensorView& dout, const TensorView& q, const TensorView& k,
              const TensorView& v, const TensorView& out, const TensorView& lse,
              const TensorView& dq, const TensorView& dk, const TensorView& dv,
              const AttentionOptions& options, Algorithm algorithm) {
  const Problem p = make_backward_problem("flashattn::backward", dout, q, k, v, out, lse, dq, dk,
                                          dv, options, algorithm);
  const auto path = algorithm == Algorithm::standard ? standard_backward : flash_backward;
  if (p.dtype == DType::f32) return run(p, path);
  F32Copies copies(p);
  Problem f = p;
  f.dq = copies.output(p.seqlen_q, p.heads);  // dQ sums over key tiles in f32
  if (algorithm == Algorithm::flash) {
    // The inputs widened as the kernels read them; dK and dV written once per row, rounded.
    f.kv_dtype = f.q_dtype = f.out_dtype = p.dtype;
    run(f, path);
    return copies.write_back(f.dq, p.dq, p.seqlen_q, p.heads);
  }
  f.dout = copies.input(p.dout, p.seqlen_q, p.heads);
  f.q = copies.input(p.q, p.seqlen_q, p.heads);
  f.k = copies.input(p.k, p.seqlen_k, p.heads_k);
  f.v = copies.input(p.v, p.seqlen_k, p.heads_k);
  f.out = copies.input(p.out, p.seqlen_q, p.heads);
  f.dk = copies.output(p.seqlen_k, p.heads_k);
  f.dv = copies.output(p.seqlen_k, p.heads_k);
  run(f, path);
  copies.write_back(f.dq, p.dq, p.seqlen_q, p.heads);
  copies.write_back(f.dk, p.dk, p.seqlen_k, p.heads_k);
  copies.write_back(f.dv, p.dv, p.seqlen_k, p.heads_k);
}

bool dropout_keep(std::uint64_t seed, float dropout_p, std::int64_t b, std::int64_t h,
                  std::int64_t i, std::int64_t j) {
  return dropout_bits(seed, b, h, i, j).v[j & 3] >= dropout_threshold(dropout_p);
}

}  // namespace flashattn
