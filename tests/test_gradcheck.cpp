// test_gradcheck.cpp — the reference backward against central finite differences of
// the reference forward, in double, on tiny shapes. This is what makes the reference
// backward an oracle rather than a second implementation.
#include <cmath>
#include <random>
#include <vector>

#include "reference/reference.hpp"
#include "test_support.hpp"

namespace flashattn::testing {
namespace {

struct GradCase {
  std::int64_t nq, nk, heads, heads_k, d;
  bool causal;
  float dropout;
  float softcap = 0.0f;
  bool alibi = false;
};

void PrintTo(const GradCase& g, std::ostream* os) {
  *os << g.nq << "x" << g.nk << " heads " << g.heads << "/" << g.heads_k << " d " << g.d;
}

class GradCheck : public ::testing::TestWithParam<GradCase> {};

TEST_P(GradCheck, ReferenceBackwardMatchesFiniteDifferences) {
  const GradCase g = GetParam();
  harness::Case c;
  c.shape = {2, g.nq, g.nk, g.heads, g.heads_k, g.d};
  c.options.causal = g.causal;
  c.options.dropout_p = g.dropout;
  c.options.seed = 77;
  c.options.softcap = g.softcap;
  const float slopes[] = {0.5f, 0.25f, 0.125f, 0.0625f};
  if (g.alibi) c.options.alibi_slopes = slopes;
  const reference::Dims p = harness::dims_of(c);

  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  auto random = [&](std::int64_t n) {
    std::vector<double> x(static_cast<std::size_t>(n));
    for (double& e : x) e = dist(rng);
    return x;
  };
  const std::int64_t nq_elems = p.batch * p.seqlen_q * p.heads * p.headdim;
  const std::int64_t nk_elems = p.batch * p.seqlen_k * p.heads_k * p.headdim;
  std::vector<double> q = random(nq_elems), k = random(nk_elems), v = random(nk_elems);
  const std::vector<double> dout = random(nq_elems);

  // loss = Σ out ∘ dout, whose gradient the backward computes.
  auto loss = [&]() {
    std::vector<double> out(nq_elems), lse(p.batch * p.heads * p.seqlen_q);
    reference::forward(p, c.options, q.data(), k.data(), v.data(), out.data(), lse.data());
    double l = 0.0;
    for (std::int64_t n = 0; n < nq_elems; ++n) l += out[n] * dout[n];
    return l;
  };
  std::vector<double> dq(nq_elems), dk(nk_elems), dv(nk_elems);
  reference::backward(p, c.options, q.data(), k.data(), v.data(), dout.data(), dq.data(), dk.data(), dv.data());

  expect_finite_differences(loss, {{&q, &dq, "dq"}, {&k, &dk, "dk"}, {&v, &dv, "dv"}}, 1e-6, 1e-7, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(
    Tiny, GradCheck,
    ::testing::Values(GradCase{3, 4, 1, 1, 3, false, 0.0f}, GradCase{4, 3, 2, 1, 2, true, 0.0f},
                      GradCase{3, 5, 2, 2, 3, true, 0.0f}, GradCase{5, 3, 4, 2, 2, false, 0.3f},
                      GradCase{4, 4, 2, 1, 3, true, 0.5f}, GradCase{3, 5, 2, 1, 3, false, 0.0f, 1.5f},
                      GradCase{4, 3, 4, 2, 2, true, 0.2f, 0.0f, true}, GradCase{5, 5, 2, 2, 3, false, 0.0f, 0.7f, true}),
    [](const ::testing::TestParamInfo<GradCase>& info) {
      const GradCase& g = info.param;
      return "q" + std::to_string(g.nq) + "_k" + std::to_string(g.nk) + "_h" +
             std::to_string(g.heads) + "_hk" + std::to_string(g.heads_k) + "_d" +
             std::to_string(g.d) + (g.causal ? "_causal" : "") +
             (g.dropout > 0 ? "_drop" + std::to_string(int(g.dropout * 100)) + "pct" : "") +
             (g.softcap > 0 ? "_softcap" + std::to_string(int(g.softcap * 10)) : "") + (g.alibi ? "_alibi" : "");
    });

}  // namespace
}  // namespace flashattn::testing

namespace flashattn::testing {
namespace {

// The reference's dBias against central differences of its forward with respect to the bias
// (the bias is f32, so the step is 1e-3 and the tolerance follows).
TEST(GradCheckBias, ReferenceDbiasMatchesFiniteDifferences) {
  harness::Case c;
  c.shape = {2, 4, 5, 2, 1, 3};
  c.options.causal = true;
  c.options.softcap = 2.0f;
  std::mt19937_64 rng(8);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> bias(2 * 2 * 4 * 5);
  for (float& x : bias) x = dist(rng);
  c.set_bias(bias, 2, 2);
  float* b = const_cast<float*>(c.bias_values->data());
  const harness::Inputs in = harness::make_inputs(c);
  const std::vector<double> q = in.q.to_double(), k = in.k.to_double(), v = in.v.to_double();
  const std::vector<double> dout = in.dout.to_double();
  auto loss = [&]() {
    const reference::Dims p = harness::dims_of(c);
    std::vector<double> out(q.size()), lse(2 * 2 * 4);
    reference::forward(p, c.options, q.data(), k.data(), v.data(), out.data(), lse.data());
    double l = 0.0;
    for (std::size_t n = 0; n < out.size(); ++n) l += out[n] * dout[n];
    return l;
  };
  std::vector<double> dq(q.size()), dk(k.size()), dv(v.size()), dbias(bias.size());
  reference::backward(harness::dims_of(c), c.options, q.data(), k.data(), v.data(), dout.data(), dq.data(),
                      dk.data(), dv.data(), dbias.data());
  constexpr float kStep = 1e-3f;
  for (std::size_t n = 0; n < bias.size(); ++n) {
    const float saved = b[n];
    b[n] = saved + kStep;
    const double up = loss();
    b[n] = saved - kStep;
    const double down = loss();
    b[n] = saved;
    const double numeric = (up - down) / (double(saved + kStep) - double(saved - kStep));
    EXPECT_NEAR(dbias[n], numeric, 1e-6 + 1e-4 * std::abs(numeric)) << "dbias[" << n << "]";
  }
}

TEST(GradCheckBias, DbiasHasTheBiasShape) {
  harness::Case c;
  c.shape = {2, 4, 5, 2, 2, 8};
  c.set_bias(std::vector<float>(4 * 5, 0.5f), 1, 1);
  const harness::Inputs in = harness::make_inputs(c);
  harness::ForwardOutputs fwd = harness::make_forward_outputs(c);
  harness::run_forward(c, in, fwd, Algorithm::flash);
  std::vector<float> dbias(2 * 2 * 4 * 5);
  harness::BackwardOutputs bwd = harness::make_backward_outputs(c);
  AttentionOptions o = c.options;
  o.dbias = TensorView::contiguous(dbias.data(), {2, 2, 4, 5});  // the bias is (1, 1, 4, 5)
  try {
    backward(in.dout.view(), in.q.view(), in.k.view(), in.v.view(), fwd.out.view(), fwd.lse.view(), bwd.dq.view(),
             bwd.dk.view(), bwd.dv.view(), o);
    ADD_FAILURE() << "a dbias of another shape than the bias's was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("options.dbias: expected the bias's shape (1, 1, seqlen_q, seqlen_k)"));
  }
}

}  // namespace
}  // namespace flashattn::testing
