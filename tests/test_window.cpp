// test_window.cpp — sliding-window attention (FlashAttention-2's window_size): every path
// against the reference, the convention itself, and bad windows rejected.
#include <gmock/gmock.h>

#include <limits>
#include <random>
#include <tuple>

#include "test_support.hpp"

namespace flashattn::testing {
namespace {

using harness::Case;

std::vector<harness::Case> window_cases() {
  std::vector<Case> cases;
  std::uint64_t seed = 900;
  auto add = [&](harness::Shape shape, std::int64_t left, std::int64_t right, bool causal, float dropout,
                 int tile = 0) {
    Case c;
    c.shape = shape;
    c.options.window_left = left;
    c.options.window_right = right;
    c.options.causal = causal;
    c.options.dropout_p = dropout;
    c.options.seed = seed;
    c.options.block_q = tile;
    c.options.block_k = tile;
    c.padded = seed % 2 == 1;
    c.data_seed = seed++;
    cases.push_back(c);
  };
  for (auto [left, right] : {std::pair{0, 0}, std::pair{3, 5}, std::pair{-1, 10}, std::pair{20, -1},
                             std::pair{100, 0}, std::pair{1000, 1000}}) {
    add({2, 150, 150, 2, 1, 32}, left, right, false, 0.0f);
    add({1, 130, 200, 4, 2, 64}, left, right, false, 0.1f);  // seqlen_q < seqlen_k
    add({1, 200, 97, 2, 2, 40}, left, right, false, 0.0f);   // seqlen_q > seqlen_k: rows see nothing
    add({1, 90, 110, 2, 1, 59}, left, right, false, 0.0f, 16);  // small tiles cross both edges
  }
  add({1, 300, 300, 2, 1, 64}, 37, -1, true, 0.0f);   // sliding causal window
  add({1, 100, 100, 8, 1, 32}, 12, 4, false, 0.0f, 16);  // grouped-query ratio 8
  // Top-left alignment (PyTorch's is_causal), both ways of unequal lengths.
  for (harness::Shape shape : {harness::Shape{1, 150, 90, 2, 1, 32}, harness::Shape{2, 70, 160, 2, 2, 48}}) {
    for (auto [left, right, causal] : {std::tuple{-1, -1, true}, std::tuple{6, 9, false}}) {
      add(shape, left, right, causal, 0.0f, 16);
      cases.back().options.alignment = AttentionOptions::Alignment::top_left;
    }
  }
  add({2, 97, 129, 2, 2, 32}, 10, 3, true, 0.0f, 8);  // causal narrows the right edge to 0
  // Prefix-LM: a causal (or right-bounded) window widened to the first keys.
  add({1, 120, 120, 2, 1, 32}, -1, -1, true, 0.0f, 16);
  cases.back().options.prefix_length = 40;
  add({2, 90, 150, 4, 2, 48}, -1, 5, false, 0.1f);
  cases.back().options.prefix_length = 77;
  add({1, 60, 50, 2, 2, 32}, -1, -1, true, 0.0f);
  cases.back().options.prefix_length = 500;  // longer than the keys: everything visible
  // Key padding, a batch with no keys at all included, alone and under causal / prefix.
  add({2, 100, 130, 2, 1, 64}, -1, -1, false, 0.0f);
  cases.back().set_key_lengths({97, 0});
  add({2, 100, 130, 4, 2, 32}, -1, -1, true, 0.1f, 16);
  cases.back().set_key_lengths({50, 130});
  add({2, 80, 80, 2, 2, 40}, 10, 10, false, 0.0f);
  cases.back().set_key_lengths({33, 79});
  add({2, 80, 80, 2, 2, 40}, -1, -1, true, 0.0f);
  cases.back().options.prefix_length = 20;
  cases.back().set_key_lengths({15, 60});
  // Documents of packed sequences: sorted ids (an empty and a one-token document among
  // them), under causal; unequal lengths; unsorted ids; a query whose document has no keys.
  auto packed = [](std::int64_t batch, std::vector<int> lengths) {
    std::vector<std::int32_t> ids;
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::size_t doc = 0; doc < lengths.size(); ++doc) ids.insert(ids.end(), lengths[doc], static_cast<std::int32_t>(doc));
    }
    return ids;
  };
  add({2, 100, 100, 4, 2, 32}, -1, -1, true, 0.0f, 16);
  cases.back().set_documents(packed(2, {30, 0, 1, 45, 24}), packed(2, {30, 0, 1, 45, 24}));
  add({1, 100, 100, 2, 1, 64}, -1, -1, false, 0.1f);
  cases.back().set_documents(packed(1, {7, 60, 33}), packed(1, {7, 60, 33}));
  add({1, 80, 120, 2, 2, 40}, -1, -1, false, 0.0f, 16);
  cases.back().set_documents(packed(1, {20, 40, 20}), packed(1, {50, 50, 20}));
  {
    add({1, 90, 70, 2, 1, 32}, -1, -1, false, 0.0f);
    std::mt19937 rng(5);
    std::vector<std::int32_t> q(90), k(70);
    for (auto& id : q) id = static_cast<std::int32_t>(rng() % 4);
    for (auto& id : k) id = static_cast<std::int32_t>(rng() % 3);  // document 3 has no keys
    cases.back().set_documents(q, k);
  }
  // Explicit masks: random, with some fully masked rows, each broadcast shape.
  for (auto [batches, heads] : {std::pair{1, 1}, std::pair{2, 1}, std::pair{1, 4}, std::pair{2, 4}}) {
    add({2, 70, 90, 4, 2, 32}, -1, -1, batches == 2 && heads == 4, 0.0f, heads == 4 ? 16 : 0);
    std::mt19937 rng(static_cast<unsigned>(seed));
    std::vector<std::uint8_t> keep(static_cast<std::size_t>(batches * heads * 70 * 90));
    for (std::uint8_t& k : keep) k = rng() % 10 < 7;
    for (std::int64_t j = 0; j < 90; ++j) keep[5 * 90 + j] = 0;  // query 5 of the first (b, h) sees nothing
    cases.back().set_mask(std::move(keep), batches, heads);
  }
  return cases;
}

class Window : public ::testing::TestWithParam<PathCase> {};

TEST_P(Window, MatchesTheReference) { expect_matches_reference(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Windows, Window, ::testing::ValuesIn(for_every_isa(window_cases())), path_case_name);

// The convention: a window (left, right) admits left + right + 1 keys, aligned to the
// bottom-right corner; causal is (−1, 0).
TEST(WindowConvention, AdmitsLeftPlusRightPlusOneKeysBottomRightAligned) {
  Case c;
  c.shape = {1, 100, 140, 1, 1, 16};
  c.options.window_left = 5;
  c.options.window_right = 2;
  const Problem p = harness::problem_of(c);
  for (std::int64_t i = 10; i < 90; ++i) {
    EXPECT_EQ(p.key_end(0, i) - p.key_begin(i), 5 + 2 + 1);
    EXPECT_EQ(p.key_begin(i), i + 40 - 5);  // 40 = seqlen_k − seqlen_q
  }
  c.options.window_left = -1;
  c.options.window_right = 7;
  c.options.causal = true;
  const Problem causal = harness::problem_of(c);
  EXPECT_EQ(causal.window_right, 0);
  EXPECT_EQ(causal.key_begin(50), 0);
  EXPECT_EQ(causal.key_end(0, 50), 50 + 40 + 1);
}

TEST(WindowConvention, TopLeftAlignmentAnchorsAtQueryZero) {
  Case c;
  c.shape = {1, 100, 140, 1, 1, 16};
  c.options.causal = true;
  c.options.alignment = AttentionOptions::Alignment::top_left;
  const Problem p = harness::problem_of(c);
  for (std::int64_t i = 0; i < 100; ++i) EXPECT_EQ(p.key_end(0, i), i + 1);
}

TEST(WindowValidation, ExplicitMasksAreChecked) {
  Case c;
  c.shape = {2, 10, 12, 2, 1, 16};
  const std::vector<std::uint8_t> keep(2 * 2 * 10 * 12, 1);
  const std::vector<float> floats(2 * 2 * 10 * 12, 1.0f);
  auto expect_error = [&](TensorView m, const char* message) {
    c.options.mask = m;
    expect_forward_error(c, message);
  };
  expect_error(TensorView::contiguous(keep.data(), {2, 2, 10, 11}),
               "options.mask: expected shape (batch or 1, heads or 1, seqlen_q, seqlen_k) = (2, 2, 10, 12)");
  expect_error(TensorView::contiguous(keep.data(), {2, 3, 10, 12}), "(dimension heads)");
  expect_error(TensorView::contiguous(floats.data(), {2, 2, 10, 12}), "options.mask: expected dtype u8, got f32");
  expect_error(TensorView::contiguous(keep.data(), {2, 10, 12}), "options.mask: expected a tensor of rank 4");
}

TEST(WindowValidation, DocumentIdsComeInPairs) {
  Case c;
  c.shape = {1, 10, 10, 1, 1, 16};
  const std::vector<std::int32_t> ids(10, 0);
  c.options.document_ids_q = ids.data();
  expect_forward_error(c, "options.document_ids_k: is null while the other is set");
}

TEST(WindowValidation, PrefixAndKeyLengthsAreChecked) {
  Case c;
  c.shape = {2, 10, 10, 1, 1, 16};
  c.options.prefix_length = 3;
  c.options.window_left = 2;
  expect_forward_error(c, "options.prefix_length: cannot be combined with window_left");
  c.options = {};
  c.set_key_lengths({4, 11});
  expect_forward_error(c, "options.key_lengths: entry 1 is 11, expected 0 .. seqlen_k (10)");
  c.set_key_lengths({-1, 3});
  expect_forward_error(c, "options.key_lengths: entry 0 is -1");
}

// A window (or prefix) beyond both sequences admits every key: INT64_MAX must give the
// unbounded result exactly (it once masked every key, and window_left alone broke the
// flash backward), on every path, forward and backward, in both alignments.
TEST(WindowLimits, WindowsNearTheInt64LimitAreUnbounded) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  for (auto alignment : {AttentionOptions::Alignment::bottom_right, AttentionOptions::Alignment::top_left}) {
    for (auto [left, right, prefix] : {std::tuple{kMax, std::int64_t{-1}, std::int64_t{0}},
                                       std::tuple{std::int64_t{-1}, kMax, std::int64_t{0}},
                                       std::tuple{kMax, kMax, std::int64_t{0}},
                                       std::tuple{std::int64_t{-1}, std::int64_t{-1}, kMax}}) {
      Case unbounded;
      unbounded.shape = {2, 70, 45, 2, 1, 16};
      unbounded.options.alignment = alignment;
      Case limit = unbounded;
      limit.options.window_left = left;
      limit.options.window_right = right;
      limit.options.prefix_length = prefix;
      if (prefix > 0) unbounded.options.prefix_length = unbounded.shape.seqlen_k;
      const harness::Inputs in = harness::make_inputs(unbounded);
      const harness::ReferenceOutputs ref = harness::run_reference(unbounded, in, true);
      for (Algorithm algorithm : {Algorithm::flash, Algorithm::standard}) {
        const harness::PathRun want = harness::run_path(unbounded, in, ref, algorithm);
        const harness::PathRun got = harness::run_path(limit, in, ref, algorithm);
        SCOPED_TRACE(::testing::Message() << to_string(algorithm) << " left " << left << " right " << right
                                          << " prefix " << prefix << " top_left "
                                          << (alignment == AttentionOptions::Alignment::top_left));
        EXPECT_EQ(got.fwd.out.to_double(), want.fwd.out.to_double());
        EXPECT_EQ(got.fwd.lse.to_double(), want.fwd.lse.to_double());
        EXPECT_EQ(got.bwd.dq.to_double(), want.bwd.dq.to_double());
        EXPECT_EQ(got.bwd.dk.to_double(), want.bwd.dk.to_double());
        EXPECT_EQ(got.bwd.dv.to_double(), want.bwd.dv.to_double());
      }
    }
  }
}

TEST(WindowValidation, NegativeSizesOtherThanUnboundedAreRejected) {
  Case c;
  c.shape = {1, 10, 10, 1, 1, 16};
  for (auto [left, right, name] : {std::tuple{-2, 0, "options.window_left"}, std::tuple{0, -5, "options.window_right"}}) {
    c.options.window_left = left;
    c.options.window_right = right;
    expect_forward_error(c, std::string(name) + ": must be >= 0, or -1 for unbounded");
  }
}

}  // namespace
}  // namespace flashattn::testing
