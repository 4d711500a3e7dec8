// harness.hpp — one harness for every path: make inputs, run a path, run the reference,
// measure the error. The `flashattn check` command and the tests both use it.
//
// Tensors are owned host buffers, optionally with padding between rows and heads
// (non-contiguous strides). Outputs are poisoned with NaN before each call, so an
// element a path forgot to write shows as an error, and writes into the padding are
// caught by padding_untouched().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/problem.hpp"
#include "flashattn/attention.hpp"
#include "flashattn/mask_mod.hpp"
#include "reference/reference.hpp"

namespace flashattn::harness {

struct Shape {
  std::int64_t batch = 1, seqlen_q = 1, seqlen_k = 1, heads = 1, heads_k = 1, headdim = 16;
};

struct Case {
  Shape shape;
  AttentionOptions options;  // options.block_mask points into `mask` when set
  std::shared_ptr<const std::vector<std::uint8_t>> mask;
  std::shared_ptr<const std::vector<std::int32_t>> key_lengths;  // options.key_lengths points here
  std::shared_ptr<const std::vector<std::uint8_t>> keep;         // options.mask points here
  std::shared_ptr<const std::vector<std::int32_t>> documents_q, documents_k;
  std::shared_ptr<const std::vector<float>> bias_values;  // options.bias points here
  std::shared_ptr<const std::vector<std::int32_t>> cu_seqlens_q, cu_seqlens_k;  // options.varlen points here
  std::shared_ptr<const ModBlockMask> mod_mask;  // options.block_mask points here when set
  DType dtype = DType::f32;     // of q, k, v, out, dout, dq, dk, dv (lse and dbias stay f32)
  bool padded = false;          // non-contiguous strides for every tensor
  std::uint64_t data_seed = 1;  // random inputs
  std::string name() const;     // e.g. "b2_q97_k65_h4_hk2_d59_causal_drop10pct_padded"

  // Makes the case block-sparse with these blocks (row-major, ⌈Nq/bq⌉ × ⌈Nk/bk⌉).
  void set_block_mask(std::vector<std::uint8_t> blocks, std::int64_t block_q, std::int64_t block_k);
  // An explicit u8 mask of shape (batches, heads, seqlen_q, seqlen_k), batches and heads
  // being 1 (broadcast) or the case's.
  void set_mask(std::vector<std::uint8_t> keep_bytes, std::int64_t batches, std::int64_t heads);
  // An additive bias of shape (batches, heads, seqlen_q, seqlen_k), batches and heads 1 or
  // the case's.
  void set_bias(std::vector<float> values, std::int64_t batches, std::int64_t heads);
  // Document ids of every query and key position, (batch, seqlen) row-major.
  void set_documents(std::vector<std::int32_t> ids_q, std::vector<std::int32_t> ids_k);
  // Key padding: keys j >= lengths[b] of batch b are masked.
  void set_key_lengths(std::vector<std::int32_t> lengths);
  // A block mask built from a mask_mod (flashattn/mask_mod.hpp).
  void set_mod_mask(std::shared_ptr<const ModBlockMask> m);
  // Variable-length batch: sequences of these lengths packed into a batch of one (the
  // shape's batch and seqlens become 1 and the totals).
  void set_varlen(const std::vector<std::int32_t>& lengths_q, const std::vector<std::int32_t>& lengths_k);
};

class HostTensor {
 public:
  HostTensor() = default;
  // (batch, seq, heads, dim), or (batch, heads, seq) for lse when dim == 0; elements of
  // `dtype` (f32, bf16 or f16; a 16-bit tensor's values are read and written as f32).
  HostTensor(std::int64_t n0, std::int64_t n1, std::int64_t n2, std::int64_t n3, bool padded,
             DType dtype = DType::f32);
  // A copy owns its own storage and views it (the implicit copy viewed the source's).
  HostTensor(const HostTensor& other) : storage_(other.storage_), view_(other.view_) { view_.data = storage_.data(); }
  HostTensor& operator=(const HostTensor& other) {
    storage_ = other.storage_;
    view_ = other.view_;
    view_.data = storage_.data();
    return *this;
  }
  HostTensor(HostTensor&&) noexcept = default;  // the moved vector keeps its buffer
  HostTensor& operator=(HostTensor&&) noexcept = default;

  const TensorView& view() const { return view_; }
  float& at(std::int64_t i0, std::int64_t i1, std::int64_t i2, std::int64_t i3 = 0);  // f32 tensors only
  float at(std::int64_t i0, std::int64_t i1, std::int64_t i2, std::int64_t i3 = 0) const;
  // Stores x rounded to the tensor's dtype.
  void set(std::int64_t i0, std::int64_t i1, std::int64_t i2, std::int64_t i3, float x);

  void fill_uniform(std::uint64_t seed, float lo, float hi);  // values rounded to the dtype
  void poison();                          // every storage element, padding included, = NaN
  bool padding_untouched() const;         // padding still NaN
  std::vector<double> to_double() const;  // contiguous, in the view's logical order

 private:
  std::int64_t offset(std::int64_t i0, std::int64_t i1, std::int64_t i2, std::int64_t i3) const;
  float get(std::int64_t n) const;  // element n of the storage, as f32
  std::int64_t elements() const;    // of the storage, padding included
  std::vector<float> storage_;      // f32 elements, or two 16-bit ones per float
  TensorView view_;
};

struct Inputs {
  HostTensor q, k, v, dout;
};
struct ForwardOutputs {
  HostTensor out, lse;
};
struct BackwardOutputs {
  HostTensor dq, dk, dv;
  HostTensor dbias;  // (batch, heads, seqlen_q, seqlen_k) when the case has a bias, else empty
};
struct ReferenceOutputs {
  std::vector<double> out, lse, dq, dk, dv, dbias;
};

// Uniform [-1, 1) inputs (the tests scale them where they need large logits).
Inputs make_inputs(const Case& c);
ForwardOutputs make_forward_outputs(const Case& c);
BackwardOutputs make_backward_outputs(const Case& c);

void run_forward(const Case& c, const Inputs& in, ForwardOutputs& out, Algorithm algorithm);
void run_backward(const Case& c, const Inputs& in, const ForwardOutputs& fwd, BackwardOutputs& grads,
                  Algorithm algorithm);

// The case as the Problem the paths see, without tensors (its tiles, its resolved window).
Problem problem_of(const Case& c);
// The case's sizes as the reference takes them.
reference::Dims dims_of(const Case& c);
// The reference (src/reference, sharing nothing with the paths) on the case's inputs.
ReferenceOutputs run_reference(const Case& c, const Inputs& in, bool with_backward);

// Max |got − want| over all elements; equal infinities count 0, a NaN on one side only
// counts +∞.
double max_abs_error(const HostTensor& got, const std::vector<double>& want);
double max_abs(const std::vector<double>& values);  // over finite values

// Max error of each output against the reference (0 for outputs not compared).
struct Errors {
  double out = 0, lse = 0, dq = 0, dk = 0, dv = 0, dbias = 0;
  double max() const;
  Errors forward_part() const { return {out, lse, 0, 0, 0, 0}; }
  Errors backward_part() const { return {0, 0, dq, dk, dv, dbias}; }
};
Errors forward_errors(const ForwardOutputs& got, const ReferenceOutputs& ref);
Errors backward_errors(const BackwardOutputs& got, const ReferenceOutputs& ref);

// One path's forward and backward on a case, and every output's error.
struct PathRun {
  ForwardOutputs fwd;
  BackwardOutputs bwd;
  Errors errors;  // out and lse from the forward, dq, dk and dv from the backward
};
PathRun run_path(const Case& c, const Inputs& in, const ReferenceOutputs& ref, Algorithm algorithm);

// FlashAttention's rule: a fast path may be at most twice as far from the reference as
// standard attention in the same dtype is, plus an absolute floor relative to the values'
// size: 2e-6 in f32; in bf16 and f16 the dtype's unit roundoff (2^−9, 2^−12), the rounding
// of the output itself. Standard attention in bf16 or f16 computes as PyTorch does in that
// dtype (standard.cpp), and the reference gets the same rounded inputs.
double allowed_error(double standard_error, double reference_magnitude, DType dtype = DType::f32);

// Standard attention itself must be within 1e-4 of the values' size of the reference in
// f32, within 64 units of roundoff in bf16 and f16.
double standard_error_limit(const ReferenceOutputs& ref, DType dtype = DType::f32);

// The rule applied to every output: max over outputs of error / allowed_error.
// A fast path passes when this is at most 1.
double worst_fraction_of_allowed(const Errors& fast, const Errors& standard,
                                 const ReferenceOutputs& ref, DType dtype = DType::f32);

}  // namespace flashattn::harness
