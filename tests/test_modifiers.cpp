// test_modifiers.cpp — score modifiers (tanh soft-capping, ALiBi): every path against the
// reference, alone, together and with the masks, forward and backward; the vector tanh.
#include <gmock/gmock.h>

#include <cmath>
#include <limits>
#include <random>

#include "cpu/simd.hpp"
#include "test_support.hpp"

namespace flashattn::testing {
namespace {

using harness::Case;

// Slopes as ALiBi's paper sets them: 2^(−8h/H) for heads h = 1 .. H, one row per batch.
const std::vector<float>& alibi_slopes() {
  static const std::vector<float> slopes = [] {
    std::vector<float> s;
    for (int b = 0; b < 2; ++b) {
      for (int h = 1; h <= 4; ++h) s.push_back(std::pow(2.0f, -8.0f * h / 4) * (1 + b));
    }
    return s;
  }();
  return slopes;
}

std::vector<harness::Case> modifier_cases() {
  std::vector<Case> cases;
  std::uint64_t seed = 1300;
  auto add = [&](harness::Shape shape, float softcap, bool alibi, bool per_batch, bool causal) {
    Case c;
    c.shape = shape;
    c.options.softcap = softcap;
    if (alibi) {
      c.options.alibi_slopes = alibi_slopes().data();
      c.options.alibi_batch_stride = per_batch ? 4 : 0;
    }
    c.options.causal = causal;
    c.options.dropout_p = seed % 3 == 0 ? 0.1f : 0.0f;
    c.options.seed = seed;
    c.padded = seed % 2 == 0;
    c.data_seed = seed++;
    cases.push_back(c);
  };
  for (harness::Shape shape : {harness::Shape{2, 130, 97, 4, 2, 64}, harness::Shape{1, 70, 200, 4, 4, 40},
                               harness::Shape{2, 65, 65, 4, 1, 111}}) {
    add(shape, 5.0f, false, false, false);
    add(shape, 0.0f, true, false, true);
    add(shape, 30.0f, true, true, false);
    add(shape, 2.0f, true, true, true);
  }
  // Additive bias, every broadcast shape, alone and with the others; some −∞ entries mask
  // scores, and one row is masked whole by them.
  for (auto [batches, heads] : {std::pair{1, 1}, std::pair{2, 1}, std::pair{1, 4}, std::pair{2, 4}}) {
    add({2, 75, 90, 4, 2, 32}, batches == 2 ? 4.0f : 0.0f, heads == 4, false, batches == 1 && heads == 4);
    std::mt19937 rng(static_cast<unsigned>(seed));
    std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
    std::vector<float> bias(static_cast<std::size_t>(batches * heads * 75 * 90));
    for (float& x : bias) x = rng() % 17 == 0 ? -std::numeric_limits<float>::infinity() : dist(rng);
    for (std::int64_t j = 0; j < 90; ++j) bias[3 * 90 + j] = -std::numeric_limits<float>::infinity();
    cases.back().set_bias(std::move(bias), batches, heads);
  }
  // With a sliding window and with a block mask.
  add({1, 150, 150, 4, 2, 32}, 10.0f, true, false, false);
  cases.back().options.window_left = 20;
  cases.back().options.window_right = 5;
  add({1, 128, 160, 4, 2, 32}, 8.0f, true, true, true);
  cases.back().set_block_mask(random_blocks(4, 5, 0.6, 4), 32, 32);
  return cases;
}

class Modifiers : public ::testing::TestWithParam<PathCase> {};

TEST_P(Modifiers, MatchTheReference) { expect_matches_reference(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Modifiers, Modifiers, ::testing::ValuesIn(for_every_isa(modifier_cases())), path_case_name);

TEST(ModifierValidation, BadModifiersAreRejected) {
  Case c;
  c.shape = {1, 10, 10, 4, 4, 16};
  auto expect_error = [&](AttentionOptions o, const char* message) {
    c.options = o;
    expect_forward_error(c, message);
  };
  AttentionOptions o;
  o.softcap = -1.0f;
  expect_error(o, "options.softcap: must be finite and >= 0");
  o = {};
  o.softcap = std::numeric_limits<float>::infinity();
  expect_error(o, "options.softcap");
  o = {};
  o.alibi_slopes = alibi_slopes().data();
  o.alibi_batch_stride = 2;
  expect_error(o, "options.alibi_batch_stride: must be 0 or at least heads (4)");
  o = {};
  o.alibi_batch_stride = 4;
  expect_error(o, "options.alibi_slopes: is null but alibi_batch_stride is set");
}

// The vector tanh of the portable build (the kernels' others are covered through the
// accuracy tests above): 3 ulp + 1e-7 absolute over the range, exact signs and saturation.
TEST(VectorTanh, MatchesStdTanh) {
  double worst = 0.0;
  for (float x = -12.0f; x <= 12.0f; x += 0.000731f) {
    float in[simd::kLanes], out[simd::kLanes];
    for (int l = 0; l < simd::kLanes; ++l) in[l] = x * (l + 1) / simd::kLanes;
    simd::store(out, simd::tanh(simd::load(in)));
    for (int l = 0; l < simd::kLanes; ++l) {
      const double want = std::tanh(static_cast<double>(in[l]));
      const double err = std::abs(out[l] - want) - 3 * std::numeric_limits<float>::epsilon() * std::abs(want);
      worst = std::max(worst, err);
    }
  }
  EXPECT_LE(worst, 1e-7);
  float nan_in[simd::kLanes], nan_out[simd::kLanes];
  for (float& v : nan_in) v = std::numeric_limits<float>::quiet_NaN();
  simd::store(nan_out, simd::tanh(simd::load(nan_in)));
  EXPECT_TRUE(std::isnan(nan_out[0]));
}

}  // namespace
}  // namespace flashattn::testing
