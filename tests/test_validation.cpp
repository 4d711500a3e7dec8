// test_validation.cpp — bad input gets flashattn::Error naming the argument, and nothing
// is written.
#include <gmock/gmock.h>

#include <cmath>
#include <functional>
#include <cstdint>
#include <limits>
#include <vector>

#include "test_support.hpp"

namespace flashattn::testing {
namespace {

using ::testing::HasSubstr;

// Valid tensors for q (2, 5, 4, 8), k/v (2, 7, 2, 8); each test breaks one thing.
struct Args {
  harness::Case c;
  harness::Inputs in;
  harness::ForwardOutputs fwd;
  harness::BackwardOutputs bwd;
  TensorView q, k, v, out, lse, dout, dq, dk, dv;
  AttentionOptions options;

  Args() {
    c.shape = {2, 5, 7, 4, 2, 8};
    in = harness::make_inputs(c);
    fwd = harness::make_forward_outputs(c);
    bwd = harness::make_backward_outputs(c);
    for (harness::HostTensor* t : {&fwd.out, &fwd.lse, &bwd.dq, &bwd.dk, &bwd.dv}) t->poison();
    q = in.q.view(), k = in.k.view(), v = in.v.view(), dout = in.dout.view();
    out = fwd.out.view(), lse = fwd.lse.view();
    dq = bwd.dq.view(), dk = bwd.dk.view(), dv = bwd.dv.view();
  }
  void call_forward(Algorithm a) const { forward(q, k, v, out, lse, options, a); }
  void call_backward(Algorithm a) const { backward(dout, q, k, v, out, lse, dq, dk, dv, options, a); }
  bool nothing_written() const {
    for (const harness::HostTensor* t : {&fwd.out, &fwd.lse, &bwd.dq, &bwd.dk, &bwd.dv}) {
      for (double x : t->to_double()) {
        if (!std::isnan(x)) return false;
      }
    }
    return true;
  }
};

struct BadInput {
  const char* name;
  std::function<void(Args&)> breaks;
  const char* message;  // must appear in the error
  bool forward_only = false;  // e.g. out is an output of the forward but an input of the backward
};

void PrintTo(const BadInput& b, std::ostream* os) { *os << b.name; }

class Validation : public ::testing::TestWithParam<BadInput> {};

TEST_P(Validation, ThrowsNamingTheArgumentAndWritesNothing) {
  for (Algorithm algorithm : {Algorithm::flash, Algorithm::standard}) {
    for (bool backward_pass : {false, true}) {
      if (backward_pass && GetParam().forward_only) continue;
      Args args;
      GetParam().breaks(args);
      try {
        backward_pass ? args.call_backward(algorithm) : args.call_forward(algorithm);
        ADD_FAILURE() << "no error for " << GetParam().name;
      } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr(GetParam().message));
        EXPECT_THAT(e.what(), HasSubstr(backward_pass ? "flashattn::backward" : "flashattn::forward"));
      }
      EXPECT_TRUE(args.nothing_written());
    }
  }
}

const BadInput kBadInputs[] = {
    {"k_batch", [](Args& a) { a.k.shape[0] = 3; }, "k: expected shape (batch, seqlen_k, heads_k, headdim) = (2, 7, 2, 8)"},
    {"k_headdim", [](Args& a) { a.k.shape[3] = 4; }, "k: expected shape"},
    {"v_seqlen", [](Args& a) { a.v.shape[1] = 6; }, "v: expected shape"},
    {"out_shape", [](Args& a) { a.out.shape[2] = 2; }, "out: expected shape"},
    {"lse_shape", [](Args& a) { a.lse.shape[2] = 4; }, "lse: expected shape (batch, heads, seqlen_q) = (2, 4, 5)"},
    {"lse_rank", [](Args& a) { a.lse.rank = 4; }, "lse: expected a tensor of rank 3"},
    {"q_rank", [](Args& a) { a.q.rank = 3; }, "q: expected a tensor of rank 4"},
    {"q_last_dim_strided", [](Args& a) { a.q.stride[3] = 2; }, "q: the last dimension (headdim) must be contiguous"},
    {"v_last_dim_strided", [](Args& a) { a.v.stride[3] = 0; }, "v: the last dimension (headdim) must be contiguous"},
    {"heads_not_multiple", [](Args& a) { a.q.shape[2] = 3; a.out.shape[2] = 3; a.lse.shape[1] = 3; a.dout.shape[2] = 3; a.dq.shape[2] = 3; }, "heads (3) must be a multiple of heads_k (2)"},
    {"headdim_too_large", [](Args& a) { for (TensorView* t : {&a.q, &a.k, &a.v, &a.out, &a.dout, &a.dq, &a.dk, &a.dv}) t->shape[3] = 257; }, "q: unsupported headdim 257 (supported: 1 .. 256)"},
    {"headdim_zero", [](Args& a) { for (TensorView* t : {&a.q, &a.k, &a.v, &a.out, &a.dout, &a.dq, &a.dk, &a.dv}) t->shape[3] = 0; }, "q: unsupported headdim 0"},
    {"dropout_one", [](Args& a) { a.options.dropout_p = 1.0f; }, "options.dropout_p: must be in [0, 1)"},
    {"dropout_negative", [](Args& a) { a.options.dropout_p = -0.1f; }, "options.dropout_p"},
    {"dropout_nan", [](Args& a) { a.options.dropout_p = std::numeric_limits<float>::quiet_NaN(); }, "options.dropout_p"},
    {"scale_inf", [](Args& a) { a.options.softmax_scale = std::numeric_limits<float>::infinity(); }, "options.softmax_scale: must be finite"},
    {"negative_size", [](Args& a) { a.q.shape[1] = -5; }, "q: negative size"},
    {"negative_stride", [](Args& a) { a.k.stride[1] = -8; }, "k: negative stride"},
    {"null_q", [](Args& a) { a.q.data = nullptr; }, "q: data is null"},
    {"null_lse", [](Args& a) { a.lse.data = nullptr; }, "lse: data is null"},
    {"dtype", [](Args& a) { a.v.dtype = DType::bf16; }, "v: expected dtype f32, got bf16 (q, k, v, out, dout, dq, dk and dv share q's dtype)"},
    {"dtype_lse", [](Args& a) { a.lse.dtype = DType::bf16; }, "lse: expected dtype f32, got bf16 (the log-sum-exp is f32 in every dtype)"},
    {"dtype_q_u8", [](Args& a) { a.q.dtype = DType::u8; }, "q: expected dtype f32, bf16 or f16, got u8"},
    {"out_overlaps", [](Args& a) { a.out.stride[1] = 0; }, "out: output elements overlap", true},
    {"threads_negative", [](Args& a) { a.options.num_threads = -1; }, "options.num_threads"},
    {"dropout_offset_q_negative", [](Args& a) { a.options.dropout_offset_q = -1; }, "options.dropout_offset_q"},
    {"dropout_offset_k_negative", [](Args& a) { a.options.dropout_offset_k = -4; }, "options.dropout_offset_k"},
    // Sizes and offsets near the 64-bit limit.
    {"batch_count_overflows", [](Args& a) { a.q.shape[0] = std::int64_t{1} << 62; }, "q: the element count of shape"},
    {"seqlen_count_overflows", [](Args& a) { a.q.shape[1] = std::int64_t{1} << 62; }, "q: the element count of shape"},
    {"q_batch_stride_wraps", [](Args& a) { a.q.stride[0] = std::int64_t{1} << 62; }, "q: its last element lies beyond the 64-bit address space"},
    {"k_seq_stride_overflows", [](Args& a) { a.k.stride[1] = std::int64_t{1} << 61; }, "k: the largest element offset"},
    {"out_batch_stride_wraps", [](Args& a) { a.out.stride[0] = std::int64_t{1} << 62; }, "out: its last element lies beyond"},
    {"lse_batch_stride_wraps", [](Args& a) { a.lse.stride[0] = std::int64_t{1} << 62; }, "lse: its last element lies beyond"},
    // Outputs that alias inputs or each other (in the backward, out and lse are inputs).
    {"out_is_q", [](Args& a) { a.out.data = a.q.data; }, "out: shares elements with q", true},
    {"lse_inside_out", [](Args& a) { a.lse.data = static_cast<float*>(a.out.data) + 3; }, "out: overlaps the memory of lse", true},
    {"block_negative", [](Args& a) { a.options.block_k = -16; }, "options.block_q/block_k"},
};

INSTANTIATE_TEST_SUITE_P(BadInputs, Validation, ::testing::ValuesIn(kBadInputs),
                         [](const auto& info) { return std::string(info.param.name); });

// Arguments only the backward takes.
TEST(ValidationBackward, GradientArgumentsAreChecked) {
  const struct {
    std::function<void(Args&)> breaks;
    const char* message;
  } cases[] = {
      {[](Args& a) { a.dq.shape[1] = 4; }, "dq: expected shape"},
      {[](Args& a) { a.dk.shape[2] = 4; }, "dk: expected shape"},
      {[](Args& a) { a.dv.stride[3] = 3; }, "dv: the last dimension"},
      {[](Args& a) { a.dout.data = nullptr; }, "dout: data is null"},
      {[](Args& a) { a.dk.stride[1] = 1; a.dk.stride[2] = 1; }, "dk: output elements overlap"},
      {[](Args& a) { a.dq.stride[0] = std::int64_t{1} << 62; }, "dq: its last element lies beyond"},
      {[](Args& a) { a.dq.data = a.dout.data; }, "dq: shares elements with dout"},
      {[](Args& a) { a.dq.data = a.dk.data; }, "dq: overlaps the memory of dk"},
      {[](Args& a) { a.dv.data = a.v.data; }, "dv: shares elements with v"},  // (an offset would reach past v, into whatever the heap put next)
      {[](Args& a) { a.dk.data = a.out.data; }, "dk: overlaps the memory of out"},
  };
  for (const auto& c : cases) {
    Args args;
    c.breaks(args);
    EXPECT_THROW(
        {
          try {
            args.call_backward(Algorithm::flash);
          } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr(c.message));
            throw;
          }
        },
        Error);
    EXPECT_TRUE(args.nothing_written());
  }
}

// Standard attention's seqlen_q × seqlen_k scores must have a representable size. The
// tensors are views of no memory (stride 0 over the sequence for the inputs, addresses far
// apart for the outputs): the call must refuse before touching any.
TEST(ValidationStandard, ScoresBeyond64BitsAreAnError) {
  const std::int64_t n = std::int64_t{1} << 32;
  auto at = [](int slot) { return reinterpret_cast<float*>(std::uintptr_t{1} << 40 << slot); };
  const TensorView q = TensorView::strided(at(0), {1, n, 1, 8}, {0, 0, 8, 1});
  const TensorView out = TensorView::strided(at(1), {1, n, 1, 8}, {8 * n, 8, 8, 1});
  const TensorView lse = TensorView::strided(at(2), {1, 1, n}, {n, n, 1});
  const TensorView dq = TensorView::strided(at(3), {1, n, 1, 8}, {8 * n, 8, 8, 1});
  const TensorView dk = TensorView::strided(at(4), {1, n, 1, 8}, {8 * n, 8, 8, 1});
  const TensorView dv = TensorView::strided(at(5), {1, n, 1, 8}, {8 * n, 8, 8, 1});
  try {
    forward(q, q, q, out, lse, {}, Algorithm::standard);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("standard attention materializes seqlen_q x seqlen_k"));
  }
  try {
    backward(q, q, q, q, q, lse, dq, dk, dv, {}, Algorithm::standard);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("standard attention materializes seqlen_q x seqlen_k"));
  }
}

// q, k, v as slices of one packed (batch, seqlen, 3, heads, headdim) tensor, and dq, dk, dv
// of a packed gradient: interleaved, not overlapping, so accepted — and computed as with
// separate buffers.
TEST(ValidationAliasing, PackedQkvAndItsGradientAreAccepted) {
  const std::int64_t B = 2, N = 9, H = 2, D = 8, row = 3 * H * D;
  harness::Case c;
  c.shape = {B, N, N, H, H, D};
  const harness::Inputs in = harness::make_inputs(c);
  std::vector<float> qkv(static_cast<std::size_t>(B * N * row)), dqkv(qkv.size(), std::nanf(""));
  auto packed = [&](std::vector<float>& buf, int which) {
    return TensorView::strided(buf.data() + which * H * D, {B, N, H, D}, {N * row, row, D, 1});
  };
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t h = 0; h < H; ++h) {
        for (std::int64_t d = 0; d < D; ++d) {
          const std::int64_t at = b * N * row + n * row + h * D + d;
          qkv[at] = in.q.at(b, n, h, d);
          qkv[at + H * D] = in.k.at(b, n, h, d);
          qkv[at + 2 * H * D] = in.v.at(b, n, h, d);
        }
      }
    }
  }
  harness::ForwardOutputs separate = harness::make_forward_outputs(c), together = harness::make_forward_outputs(c);
  harness::BackwardOutputs grads = harness::make_backward_outputs(c);
  harness::run_forward(c, in, separate, Algorithm::flash);
  harness::run_backward(c, in, separate, grads, Algorithm::flash);
  forward(packed(qkv, 0), packed(qkv, 1), packed(qkv, 2), together.out.view(), together.lse.view());
  backward(in.dout.view(), packed(qkv, 0), packed(qkv, 1), packed(qkv, 2), together.out.view(), together.lse.view(),
           packed(dqkv, 0), packed(dqkv, 1), packed(dqkv, 2));
  EXPECT_EQ(together.out.to_double(), separate.out.to_double());
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t h = 0; h < H; ++h) {
        for (std::int64_t d = 0; d < D; ++d) {
          const std::int64_t at = b * N * row + n * row + h * D + d;
          ASSERT_EQ(dqkv[at], grads.dq.at(b, n, h, d));
          ASSERT_EQ(dqkv[at + H * D], grads.dk.at(b, n, h, d));
          ASSERT_EQ(dqkv[at + 2 * H * D], grads.dv.at(b, n, h, d));
        }
      }
    }
  }
}

TEST(ValidationIsa, UnsupportedIsaIsAnErrorNotACrash) {
  const std::vector<Isa> supported = supported_isas();
  ASSERT_EQ(supported.front(), Isa::portable);
  for (Isa isa : {Isa::avx2, Isa::avx512, Isa::avx512_bf16, Isa::amx}) {
    if (std::find(supported.begin(), supported.end(), isa) != supported.end()) continue;
    Args args;
    args.options.isa = isa;
    EXPECT_THROW(args.call_forward(Algorithm::flash), Error);
  }
  EXPECT_EQ(parse_isa("avx2"), Isa::avx2);
  EXPECT_EQ(parse_isa("sse9"), std::nullopt);
}

}  // namespace
}  // namespace flashattn::testing
