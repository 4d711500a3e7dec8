// test_score_mod.cpp — score modifiers written as callables (flashattn/score_mod.hpp):
// every path against the reference (which applies the callable score by score, so the
// kernels' tile strides are checked), ALiBi written as a score_mod against the built-in,
// and the reference's gradient through the modifier against finite differences.
#include <gmock/gmock.h>

#include <cmath>
#include <random>

#include "reference/reference.hpp"
#include "test_support.hpp"

namespace flashattn::testing {
namespace {

using harness::Case;
using i64 = std::int64_t;

// Relative position: s − 0.02 (q − kv).
const auto kRelative = [](float s, i64, i64, i64 q, i64 kv) { return s - 0.02f * static_cast<float>(q - kv); };
const auto kOne = [](float, i64, i64, i64, i64) { return 1.0f; };
const ScoreModifier<decltype(kRelative), decltype(kOne)> relative(kRelative, kOne);
// A nonlinear one: s − 0.05 s², derivative 1 − 0.1 s.
const auto kQuadratic = [](float s, i64, i64, i64, i64) { return s - 0.05f * s * s; };
const auto kQuadraticGrad = [](float s, i64, i64, i64, i64) { return 1.0f - 0.1f * s; };
const ScoreModifier<decltype(kQuadratic), decltype(kQuadraticGrad)> quadratic(kQuadratic, kQuadraticGrad);
// Per batch and head: s · (1 + 0.1 h + 0.05 b).
const auto kScale = [](float s, i64 b, i64 h, i64, i64) { return s * (1.0f + 0.1f * h + 0.05f * b); };
const auto kScaleGrad = [](float, i64 b, i64 h, i64, i64) { return 1.0f + 0.1f * h + 0.05f * b; };
const ScoreModifier<decltype(kScale), decltype(kScaleGrad)> scaled(kScale, kScaleGrad);

const float kSlopes[] = {0.5f, 0.25f, 0.125f, 0.0625f};

std::vector<Case> score_mod_cases() {
  std::vector<Case> cases;
  std::uint64_t seed = 1500;
  auto add = [&](harness::Shape shape, ScoreMod mod, auto&& configure) {
    Case c;
    c.shape = shape;
    c.options.score_mod = mod;
    c.options.seed = seed;
    c.padded = seed % 2 == 0;
    c.data_seed = seed++;
    configure(c);
    cases.push_back(c);
  };
  add({2, 130, 150, 2, 1, 40}, relative.handle(), [](Case& c) { c.options.causal = true; });
  add({1, 97, 97, 4, 2, 59}, quadratic.handle(), [](Case& c) { c.options.dropout_p = 0.2f; });
  add({2, 70, 90, 4, 4, 16}, scaled.handle(), [](Case& c) { c.options.softcap = 4.0f; });
  add({1, 100, 120, 2, 2, 24}, quadratic.handle(), [](Case& c) {
    c.options.block_q = c.options.block_k = 32;  // scores cross tiles both ways
    c.options.alibi_slopes = kSlopes;
    c.options.window_left = 40;
  });
  add({1, 1, 1, 2, 2, 16}, scaled.handle(), [](Case& c) { c.set_varlen({0, 33, 1, 60}, {7, 50, 1, 80}); });
  return cases;
}

class ScoreModPaths : public ::testing::TestWithParam<PathCase> {};

TEST_P(ScoreModPaths, MatchTheReference) { expect_matches_reference(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Callables, ScoreModPaths, ::testing::ValuesIn(for_every_isa(score_mod_cases())), path_case_name);

// ALiBi written as a score_mod gives what the built-in gives, forward and backward.
const auto kAlibi = [](float s, i64, i64 h, i64 q, i64 kv) {
  return s - kSlopes[h] * static_cast<float>(std::abs(q + 20 - kv));  // 20 = seqlen_k − seqlen_q
};
const ScoreModifier<decltype(kAlibi), decltype(kOne)> alibi(kAlibi, kOne);

TEST(ScoreModAlibi, MatchesTheBuiltIn) {
  for (Isa isa : isas_to_test()) {
    Case builtin;
    builtin.shape = {2, 80, 100, 4, 2, 32};
    builtin.options.causal = true;
    builtin.options.alibi_slopes = kSlopes;
    Case callable = builtin;
    callable.options.alibi_slopes = nullptr;
    callable.options.score_mod = alibi.handle();
    expect_matches_reference({callable, isa}, &builtin);
  }
}

TEST(ScoreModGradient, ReferenceBackwardThroughTheModifierMatchesFiniteDifferences) {
  Case c;
  c.shape = {1, 4, 5, 2, 1, 3};
  c.options.causal = true;
  c.options.score_mod = quadratic.handle();
  c.options.softcap = 2.0f;
  const reference::Dims p = harness::dims_of(c);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  auto random = [&](i64 n) {
    std::vector<double> x(static_cast<std::size_t>(n));
    for (double& e : x) e = dist(rng);
    return x;
  };
  const i64 nq = p.seqlen_q * p.heads * p.headdim, nk = p.seqlen_k * p.heads_k * p.headdim;
  std::vector<double> q = random(nq), k = random(nk), v = random(nk);
  const std::vector<double> dout = random(nq);
  auto loss = [&]() {
    std::vector<double> out(nq), lse(p.heads * p.seqlen_q);
    reference::forward(p, c.options, q.data(), k.data(), v.data(), out.data(), lse.data());
    double l = 0.0;
    for (i64 n = 0; n < nq; ++n) l += out[n] * dout[n];
    return l;
  };
  std::vector<double> dq(nq), dk(nk), dv(nk);
  reference::backward(p, c.options, q.data(), k.data(), v.data(), dout.data(), dq.data(), dk.data(), dv.data());
  // The callable works in float, so the step is large enough for float's rounding.
  expect_finite_differences(loss, {{&q, &dq, "dq"}, {&k, &dk, "dk"}}, 1e-3, 2e-4, 1e-3);
}

TEST(ScoreModValidation, NeedsAFunction) {
  Case c;
  c.shape = {1, 8, 8, 1, 1, 8};
  c.options.score_mod = ScoreMod{};
  expect_forward_error(c, "options.score_mod: apply is null");
}

}  // namespace
}  // namespace flashattn::testing
