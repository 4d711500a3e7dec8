// test_varlen.cpp — variable-length batches (cu_seqlens): every path against the reference
// run sequence by sequence, sequences of length 0 and 1 among them; the same numbers as a
// dense batch when the lengths agree (so offsets, dropout's batch index and per-sequence
// ALiBi come out right independently of the split); bad offsets rejected.
#include <gmock/gmock.h>

#include <cmath>

#include "test_support.hpp"

namespace flashattn::testing {
namespace {

using harness::Case;

const std::vector<float>& slopes() {  // 4 sequences × 4 heads
  static const std::vector<float> s = {0.5f, 0.25f, 0.125f, 0.0625f, 0.3f, 0.2f, 0.1f, 0.05f,
                                       0.7f, 0.35f, 0.17f, 0.08f, 0.9f, 0.45f, 0.22f, 0.11f};
  return s;
}

std::vector<Case> varlen_cases() {
  std::vector<Case> cases;
  std::uint64_t seed = 900;
  auto add = [&](std::int64_t heads, std::int64_t heads_k, std::int64_t d, std::vector<std::int32_t> lq,
                 std::vector<std::int32_t> lk, auto&& configure) {
    Case c;
    c.shape = {1, 1, 1, heads, heads_k, d};
    c.set_varlen(lq, lk);
    c.options.seed = seed;
    c.padded = seed % 2 == 1;
    c.data_seed = seed++;
    configure(c);
    cases.push_back(c);
  };
  const std::vector<std::int32_t> lq = {0, 1, 37, 130}, lk = {5, 0, 64, 97};
  add(2, 2, 32, lq, lk, [](Case&) {});
  add(4, 2, 59, lq, lq, [](Case& c) { c.options.causal = true; });
  add(4, 1, 16, lk, lq, [](Case& c) { c.options.causal = true; });  // more keys than queries and fewer
  add(2, 1, 24, {150, 3, 70}, {150, 9, 200}, [](Case& c) { c.options.window_left = 16, c.options.window_right = 0; });
  add(2, 2, 40, lq, lk, [](Case& c) { c.options.dropout_p = 0.2f; });
  add(4, 4, 16, {33, 1, 64, 100}, {33, 40, 1, 100}, [](Case& c) {
    c.options.alibi_slopes = slopes().data();
    c.options.alibi_batch_stride = 4;
    c.options.softcap = 5.0f;
  });
  add(2, 2, 16, {100, 90}, {100, 90}, [](Case& c) { c.options.block_q = c.options.block_k = 32; });  // small tiles
  add(1, 1, 8, {}, {}, [](Case&) {});  // no sequences
  return cases;
}

class Varlen : public ::testing::TestWithParam<PathCase> {};

TEST_P(Varlen, MatchesTheReference) { expect_matches_reference(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Sequences, Varlen, ::testing::ValuesIn(for_every_isa(varlen_cases())), path_case_name);

// Sequences of one length packed with varlen give the numbers of the dense batch, which
// indexes dropout and ALiBi by batch: the split cannot hide a wrong offset or index.
TEST(VarlenEquivalence, SameAsDenseBatchWhenLengthsAgree) {
  for (Algorithm algorithm : {Algorithm::flash, Algorithm::standard}) {
    Case dense;
    dense.shape = {3, 70, 90, 4, 2, 24};
    dense.options.causal = true;
    dense.options.dropout_p = 0.25f;
    dense.options.seed = 77;
    dense.options.alibi_slopes = slopes().data();
    dense.options.alibi_batch_stride = 4;
    Case packed = dense;
    packed.set_varlen({70, 70, 70}, {90, 90, 90});
    // The same data: dense (b, s, h, d) is packed (1, b·s, h, d) row for row.
    const harness::Inputs in = harness::make_inputs(dense);
    harness::Inputs pin = harness::make_inputs(packed);
    for (auto [from, to] : {std::pair{&in.q, &pin.q}, {&in.k, &pin.k}, {&in.v, &pin.v}, {&in.dout, &pin.dout}}) {
      const std::int64_t rows = from->view().shape[1], heads = from->view().shape[2], d = from->view().shape[3];
      for (std::int64_t b = 0; b < 3; ++b) {
        for (std::int64_t s = 0; s < rows; ++s) {
          for (std::int64_t h = 0; h < heads; ++h) {
            for (std::int64_t e = 0; e < d; ++e) to->at(0, b * rows + s, h, e) = from->at(b, s, h, e);
          }
        }
      }
    }
    harness::ForwardOutputs fd = harness::make_forward_outputs(dense), fp = harness::make_forward_outputs(packed);
    harness::BackwardOutputs bd = harness::make_backward_outputs(dense), bp = harness::make_backward_outputs(packed);
    harness::run_forward(dense, in, fd, algorithm);
    harness::run_forward(packed, pin, fp, algorithm);
    harness::run_backward(dense, in, fd, bd, algorithm);
    harness::run_backward(packed, pin, fp, bp, algorithm);
    double worst = 0;
    auto compare = [&](const harness::HostTensor& a, const harness::HostTensor& p, std::int64_t rows) {
      const std::int64_t heads = a.view().shape[2], d = a.view().shape[3];
      for (std::int64_t b = 0; b < 3; ++b) {
        for (std::int64_t s = 0; s < rows; ++s) {
          for (std::int64_t h = 0; h < heads; ++h) {
            for (std::int64_t e = 0; e < d; ++e) worst = std::max(worst, double(std::abs(a.at(b, s, h, e) - p.at(0, b * rows + s, h, e))));
          }
        }
      }
    };
    compare(fd.out, fp.out, 70);
    compare(bd.dq, bp.dq, 70);
    compare(bd.dk, bp.dk, 90);
    compare(bd.dv, bp.dv, 90);
    for (std::int64_t b = 0; b < 3; ++b) {
      for (std::int64_t h = 0; h < 4; ++h) {
        for (std::int64_t i = 0; i < 70; ++i) worst = std::max(worst, double(std::abs(fd.lse.at(b, h, i) - fp.lse.at(0, h, b * 70 + i))));
      }
    }
    EXPECT_LE(worst, 1e-5) << to_string(algorithm);
  }
}

Case bad_offsets(std::vector<std::int32_t> cu_q, std::vector<std::int32_t> cu_k, std::int64_t max_q = 0) {
  Case c;
  c.shape = {1, 10, 10, 1, 1, 8};
  c.cu_seqlens_q = std::make_shared<const std::vector<std::int32_t>>(std::move(cu_q));
  c.cu_seqlens_k = std::make_shared<const std::vector<std::int32_t>>(std::move(cu_k));
  c.options.varlen = VarLen{c.cu_seqlens_q->data(), c.cu_seqlens_k->data(),
                            static_cast<std::int64_t>(c.cu_seqlens_q->size()) - 1, max_q, 0};
  return c;
}

TEST(VarlenValidation, RejectsBadOffsetsAndCombinations) {
  expect_forward_error(bad_offsets({0, 6, 4, 10}, {0, 3, 6, 10}), "options.varlen.cu_seqlens_q: must not decrease: entry 2 is 4 after 6");
  expect_forward_error(bad_offsets({1, 6, 10}, {0, 3, 10}), "options.varlen.cu_seqlens_q: must start at 0");
  expect_forward_error(bad_offsets({0, 6, 10}, {0, 3, 9}), "options.varlen.cu_seqlens_k: must end at the packed length 10");
  expect_forward_error(bad_offsets({0, 6, 10}, {0, 3, 10}, 5), "sequence 0 has length 6 > max_seqlen 5");
  Case batched = bad_offsets({0, 6, 10}, {0, 3, 10});
  batched.shape.batch = 2;
  expect_forward_error(batched, "q: with options.varlen the sequences are packed along dimension 1");
  Case padded_keys = bad_offsets({0, 6, 10}, {0, 3, 10});
  padded_keys.set_key_lengths({5});
  expect_forward_error(padded_keys, "options.key_lengths: cannot be combined with varlen");
  Case null_offsets = bad_offsets({0, 10}, {0, 10});
  null_offsets.options.varlen->cu_seqlens_k = nullptr;
  expect_forward_error(null_offsets, "options.varlen.cu_seqlens_k: is null");
}

}  // namespace
}  // namespace flashattn::testing
