// api.cpp — the public entry points: validate, then hand the Problem to a path.
//
// bf16 and f16 tensors are computed in f32 (every feature as in f32, every product and
// statistic in f32), and each output is rounded once into the caller's tensor. The flash
// paths widen their inputs as they read them; every output goes through an f32 copy, as
// does everything in the standard path. The inputs' values are exact in f32, so the only rounding is the output's.
#include <omp.h>

#include <algorithm>
#include <iterator>
#include <vector>

#include "core/memory.hpp"
#include "core/philox.hpp"
#include "core/problem.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/flash.hpp"
#include "flashattn/error.hpp"
#include "standard/standard.hpp"

namespace flashattn {

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::u8: return "u8";
  }
  return "?";
}

}  // namespace flashattn

extern "C" std::uint64_t flashattn_abi_fingerprint() {
  using namespace flashattn;
  std::uint64_t hash = 14695981039346656037ull;  // FNV-1a over (size, offsets...) of each struct
  auto mix = [&hash](std::uint64_t v) {
    for (int byte = 0; byte < 8; ++byte) hash = (hash ^ ((v >> (8 * byte)) & 0xff)) * 1099511628211ull;
  };
  auto at = [](const auto& object, const auto& member) {
    return static_cast<std::uint64_t>(reinterpret_cast<const char*>(&member) - reinterpret_cast<const char*>(&object));
  };
  const TensorView t;
  for (std::uint64_t v : {sizeof t, at(t, t.data), at(t, t.dtype), at(t, t.rank), at(t, t.shape), at(t, t.stride)}) mix(v);
  const BlockMask m;
  for (std::uint64_t v : {sizeof m, at(m, m.blocks), at(m, m.block_q), at(m, m.rows), at(m, m.batch_stride),
                          at(m, m.partial_bits), at(m, m.partial_offset)}) {
    mix(v);
  }
  const ScoreTile st;
  for (std::uint64_t v : {sizeof st, at(st, st.scores), at(st, st.derivative), at(st, st.stride_q), at(st, st.b),
                          at(st, st.rows), at(st, st.cols)}) {
    mix(v);
  }
  const VarLen vl;
  for (std::uint64_t v : {sizeof vl, at(vl, vl.cu_seqlens_q), at(vl, vl.batch), at(vl, vl.max_seqlen_k)}) mix(v);
  const AttentionOptions o;
  for (std::uint64_t v :
       {sizeof o, at(o, o.softmax_scale), at(o, o.causal), at(o, o.window_left), at(o, o.window_right),
        at(o, o.alignment), at(o, o.prefix_length), at(o, o.key_lengths), at(o, o.dropout_p), at(o, o.seed),
        at(o, o.num_threads), at(o, o.isa), at(o, o.block_q), at(o, o.block_k), at(o, o.block_mask),
        at(o, o.document_ids_q), at(o, o.document_ids_k), at(o, o.mask), at(o, o.softcap), at(o, o.alibi_slopes),
        at(o, o.alibi_batch_stride), at(o, o.bias), at(o, o.dbias), at(o, o.varlen), at(o, o.score_mod),
        at(o, o.forward_kernel), at(o, o.num_splits), at(o, o.dropout_offset_q), at(o, o.dropout_offset_k)}) {
    mix(v);
  }
  mix(sizeof(Algorithm));
  return hash;
}

namespace flashattn {

const char* to_string(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::flash: return "flash";
    case Algorithm::standard: return "standard";
  }
  return "?";
}

TensorView TensorView::contiguous(const float* data, std::initializer_list<std::int64_t> shape) {
  if (shape.size() > kMaxRank) throw Error("TensorView::contiguous: rank above 4");
  TensorView t;
  t.data = const_cast<float*>(data);  // inputs are never written; one view type serves both
  t.rank = static_cast<int>(shape.size());
  std::copy(shape.begin(), shape.end(), t.shape);
  std::int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.stride[d] = stride;
    stride *= t.shape[d];
  }
  return t;
}

TensorView TensorView::contiguous(const std::uint8_t* data, std::initializer_list<std::int64_t> shape) {
  TensorView t = contiguous(static_cast<const float*>(nullptr), shape);
  t.data = const_cast<std::uint8_t*>(data);
  t.dtype = DType::u8;
  return t;
}

TensorView TensorView::strided(const float* data, std::initializer_list<std::int64_t> shape,
                               std::initializer_list<std::int64_t> stride) {
  if (shape.size() > kMaxRank || shape.size() != stride.size()) {
    throw Error("TensorView::strided: shape and stride must have the same rank, at most 4");
  }
  TensorView t;
  t.data = const_cast<float*>(data);
  t.rank = static_cast<int>(shape.size());
  std::copy(shape.begin(), shape.end(), t.shape);
  std::copy(stride.begin(), stride.end(), t.stride);
  return t;
}

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= shape[d];
  return n;
}

Problem Problem::sequence(std::int64_t s) const {
  Problem one = *this;
  const std::int64_t q0 = cu_q[s], k0 = cu_k[s];
  one.batch = 1;
  one.seqlen_q = cu_q[s + 1] - q0;
  one.seqlen_k = cu_k[s + 1] - k0;
  one.cu_q = one.cu_k = nullptr;
  one.sequences = 0;
  one.batch_base = batch_base + s;
  if (alibi_slopes != nullptr) one.alibi_slopes = alibi_slopes + s * alibi_batch_stride;
  for (Bshd* t : {&one.q, &one.dout}) {
    if (t->data != nullptr) t->data = advance(t->data, q0 * t->stride_s, q_dtype);
  }
  if (one.out.data != nullptr) one.out.data = advance(one.out.data, q0 * one.out.stride_s, out_dtype);
  if (one.dq.data != nullptr) one.dq.data += q0 * one.dq.stride_s;
  for (Bshd* t : {&one.k, &one.v}) {
    if (t->data != nullptr) t->data = advance(t->data, k0 * t->stride_s, kv_dtype);
  }
  for (Bshd* t : {&one.dk, &one.dv}) {
    if (t->data != nullptr) t->data += k0 * t->stride_s;
  }
  one.lse.data += q0 * lse.stride_s;
  return one;
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
  F32Copies copies(p);
  Problem f = p;
  if (algorithm == Algorithm::flash) {
    f.kv_dtype = f.q_dtype = p.dtype;  // q, k, v widened as the forward reads them, never copied whole
  } else {
    f.q = copies.input(p.q, p.seqlen_q, p.heads);
    f.k = copies.input(p.k, p.seqlen_k, p.heads_k);
    f.v = copies.input(p.v, p.seqlen_k, p.heads_k);
  }
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
  if (algorithm == Algorithm::flash) {
    f.kv_dtype = f.q_dtype = f.out_dtype = p.dtype;  // the inputs widened as the kernels read them
  } else {
    f.dout = copies.input(p.dout, p.seqlen_q, p.heads);
    f.q = copies.input(p.q, p.seqlen_q, p.heads);
    f.k = copies.input(p.k, p.seqlen_k, p.heads_k);
    f.v = copies.input(p.v, p.seqlen_k, p.heads_k);
    f.out = copies.input(p.out, p.seqlen_q, p.heads);
  }
  f.dq = copies.output(p.seqlen_q, p.heads);
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
