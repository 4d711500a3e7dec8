// test_accuracy.cpp — every path against the reference on a sweep of awkward shapes.
//
// Rule (FlashAttention's): max |flash − reference| ≤ 2 · max |standard − reference| + a
// floor of 2e-6 · max(1, max |reference|), per output (out, lse, dq, dk, dv).
// Standard attention itself must be within 1e-4 · max(1, max |reference|).
// Outputs are poisoned with NaN before each call (unwritten elements fail) and padded
// layouts check that nothing outside the view was written.
#include <algorithm>
#include <cmath>

#include "test_support.hpp"

namespace flashattn::testing {
namespace {

using harness::Case;

std::vector<harness::Case> accuracy_cases() {
  std::vector<Case> cases;
  const std::int64_t seqlens[] = {1, 17, 63, 64, 65, 97, 128, 255, 1025};
  const std::int64_t headdims[] = {16, 32, 40, 59, 64, 80, 96, 111, 128, 256};
  const std::int64_t head_ratios[] = {1, 2, 4, 8};
  std::uint64_t seed = 100;
  auto add = [&](std::int64_t b, std::int64_t nq, std::int64_t nk, std::int64_t hk,
                 std::int64_t ratio, std::int64_t d, bool causal, float dropout, bool padded,
                 int block_q = 0, int block_k = 0) {
    Case c;
    c.shape = {b, nq, nk, hk * ratio, hk, d};
    c.options.causal = causal;
    c.options.dropout_p = dropout;
    c.options.seed = seed * 7919;
    c.options.block_q = block_q;
    c.options.block_k = block_k;
    c.padded = padded;
    c.data_seed = seed++;
    cases.push_back(c);
  };
  // Every sequence length, square and unequal both ways, causal on and off.
  int n = 0;
  for (std::int64_t len : seqlens) {
    const std::int64_t d = headdims[n % 10];
    const std::int64_t ratio = head_ratios[n % 4];
    const std::int64_t other = len == 1025 ? 97 : seqlens[(n + 3) % 9];
    const std::int64_t batch = len >= 255 ? 1 : 2;
    add(batch, len, len, 1, ratio, d, n % 2 == 0, 0.0f, n % 2 == 1);
    add(batch, len, other, 1, ratio, d, true, 0.0f, n % 2 == 0);
    add(1, other, len, 2, 2, d, n % 2 == 1, n % 3 == 0 ? 0.1f : 0.0f, true);
    ++n;
  }
  // Every head dimension, with grouped heads and non-contiguous strides.
  n = 0;
  for (std::int64_t d : headdims) {
    add(2, 65, 97, 2, head_ratios[n % 4], d, false, 0.0f, true);
    add(1, 97, 64, 1, head_ratios[(n + 1) % 4], d, true, n % 2 ? 0.2f : 0.0f, false);
    ++n;
  }
  // Tiles forced small, so short sequences cross many tile edges (size ± 1 included).
  for (auto [bq, bk] : {std::pair{4, 16}, std::pair{8, 32}, std::pair{12, 48}}) {
    add(2, bq * 5 + 1, bk * 3 - 1, 2, 2, 40, true, 0.0f, true, bq, bk);
    add(1, bk * 3 + 1, bq * 5 - 1, 1, 4, 64, true, 0.1f, false, bq, bk);
    add(1, bk * 2, bk * 2, 1, 1, 33, false, 0.0f, true, bq, bk);
  }
  return cases;
}

class Accuracy : public ::testing::TestWithParam<PathCase> {};

TEST_P(Accuracy, ForwardAndBackwardMatchReference) { expect_matches_reference(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Sweep, Accuracy, ::testing::ValuesIn(for_every_isa(accuracy_cases())), path_case_name);

}  // namespace
}  // namespace flashattn::testing
