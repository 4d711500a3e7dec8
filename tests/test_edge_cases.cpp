// test_edge_cases.cpp — defined behaviour at the edges, for every path:
// rows that see no key, empty sequences, huge logits, NaN inputs.
#include <cmath>
#include <limits>

#include "test_support.hpp"

namespace flashattn::testing {
namespace {

struct Path {
  Algorithm algorithm;
  Isa isa;
};

std::vector<Path> all_paths() {
  std::vector<Path> paths{{Algorithm::standard, Isa::portable}};
  for (Isa isa : isas_to_test()) paths.push_back({Algorithm::flash, isa});
  return paths;
}

void PrintTo(const Path& p, std::ostream* os) { *os << to_string(p.algorithm) << "/" << to_string(p.isa); }

std::string path_name(const ::testing::TestParamInfo<Path>& info) {
  return std::string(to_string(info.param.algorithm)) + "_" + to_string(info.param.isa);
}

class EdgeCases : public ::testing::TestWithParam<Path> {
 protected:
  harness::Case make_case(harness::Shape shape, bool causal) const {
    harness::Case c;
    c.shape = shape;
    c.options.causal = causal;
    c.options.isa = GetParam().isa;
    c.padded = true;
    return c;
  }
};

// Causal with seqlen_q > seqlen_k: the first seqlen_q − seqlen_k rows see nothing.
TEST_P(EdgeCases, FullyMaskedRowsGiveZeroOutputMinusInfLseAndZeroGradients) {
  const harness::Case c = make_case({2, 20, 8, 2, 1, 32}, true);
  const harness::Inputs in = harness::make_inputs(c);
  harness::ForwardOutputs fwd = harness::make_forward_outputs(c);
  harness::BackwardOutputs bwd = harness::make_backward_outputs(c);
  harness::run_forward(c, in, fwd, GetParam().algorithm);
  harness::run_backward(c, in, fwd, bwd, GetParam().algorithm);
  for (std::int64_t b = 0; b < 2; ++b) {
    for (std::int64_t h = 0; h < 2; ++h) {
      for (std::int64_t i = 0; i < 20; ++i) {
        const bool masked = i < 12;
        if (masked) {
          EXPECT_EQ(fwd.lse.at(b, h, i), -std::numeric_limits<float>::infinity());
        } else {
          EXPECT_TRUE(std::isfinite(fwd.lse.at(b, h, i)));
        }
        for (std::int64_t e = 0; e < 32; ++e) {
          if (masked) {
            EXPECT_EQ(fwd.out.at(b, i, h, e), 0.0f);
            EXPECT_EQ(bwd.dq.at(b, i, h, e), 0.0f);
          }
          EXPECT_TRUE(std::isfinite(fwd.out.at(b, i, h, e)));
          EXPECT_TRUE(std::isfinite(bwd.dq.at(b, i, h, e)));
        }
      }
    }
  }
  const harness::ReferenceOutputs ref = harness::run_reference(c, in, true);
  EXPECT_LE(harness::forward_errors(fwd, ref).max(), 1e-5);
  EXPECT_LE(harness::backward_errors(bwd, ref).max(), 1e-5);
}

TEST_P(EdgeCases, EmptySequences) {
  for (auto [nq, nk] : {std::pair{0, 5}, std::pair{5, 0}, std::pair{0, 0}}) {
    for (bool causal : {false, true}) {
      const harness::Case c = make_case({2, nq, nk, 2, 1, 16}, causal);
      const harness::Inputs in = harness::make_inputs(c);
      harness::ForwardOutputs fwd = harness::make_forward_outputs(c);
      harness::BackwardOutputs bwd = harness::make_backward_outputs(c);
      harness::run_forward(c, in, fwd, GetParam().algorithm);
      harness::run_backward(c, in, fwd, bwd, GetParam().algorithm);
      const harness::ReferenceOutputs ref = harness::run_reference(c, in, true);
      // Rows with no keys: out 0, lse −∞; keys with no queries: dk = dv = 0.
      EXPECT_EQ(harness::forward_errors(fwd, ref).max(), 0.0) << nq << "x" << nk;
      EXPECT_EQ(harness::backward_errors(bwd, ref).max(), 0.0) << nq << "x" << nk;
      EXPECT_TRUE(fwd.out.padding_untouched() && bwd.dk.padding_untouched());
    }
  }
}

// Logits of magnitude about 1e4: no overflow, no NaN, and the accuracy rule holds. An ulp
// of such a logit is 4e-3, so this checks that no path rounds a logit-sized number more
// often than standard attention does (measured: flash's dq error is 1.06x standard's).
TEST_P(EdgeCases, HugeLogitsStayFiniteAndAccurate) {
  harness::Case c = make_case({1, 70, 90, 2, 2, 64}, false);
  c.options.softmax_scale = 1.0f;
  harness::Inputs in = harness::make_inputs(c);
  for (harness::HostTensor* t : {&in.q, &in.k}) {
    for (std::int64_t j = 0; j < t->view().shape[1]; ++j) {
      for (std::int64_t h = 0; h < 2; ++h) {
        for (std::int64_t e = 0; e < 64; ++e) t->at(0, j, h, e) *= 25.0f;  // q·k up to ~4e4
      }
    }
  }
  const harness::ReferenceOutputs ref = harness::run_reference(c, in, true);
  EXPECT_GT(harness::max_abs(ref.lse), 1e3);
  const harness::PathRun std_run = harness::run_path(c, in, ref, Algorithm::standard);
  const harness::PathRun run = harness::run_path(c, in, ref, GetParam().algorithm);
  for (const harness::HostTensor* t : {&run.fwd.out, &run.fwd.lse, &run.bwd.dq, &run.bwd.dk, &run.bwd.dv}) {
    for (double x : t->to_double()) ASSERT_TRUE(std::isfinite(x));
  }
  const harness::Errors& fast = run.errors;
  const harness::Errors& standard = std_run.errors;
  EXPECT_LE(harness::worst_fraction_of_allowed(fast, standard, ref), 1.0)
      << "flash out " << fast.out << " lse " << fast.lse << " dq " << fast.dq << " dk " << fast.dk
      << " dv " << fast.dv << "; standard out " << standard.out << " lse " << standard.lse << " dq "
      << standard.dq << " dk " << standard.dk << " dv " << standard.dv;
}

// Documented: a NaN in query row i makes row i's output and LSE NaN and leaves other rows
// alone; a NaN in key row j makes every row that sees j NaN. NaN is never dropped silently.
TEST_P(EdgeCases, NaNPropagatesToExactlyTheRowsThatSeeIt) {
  const harness::Case c = make_case({1, 40, 40, 4, 2, 32}, false);
  harness::Inputs in = harness::make_inputs(c);
  in.q.at(0, 7, 1, 5) = std::numeric_limits<float>::quiet_NaN();  // query row 7 of head 1
  in.k.at(0, 11, 1, 3) = std::numeric_limits<float>::quiet_NaN(); // key 11 of kv-head 1 (heads 2, 3)
  harness::ForwardOutputs fwd = harness::make_forward_outputs(c);
  harness::run_forward(c, in, fwd, GetParam().algorithm);
  for (std::int64_t h = 0; h < 4; ++h) {
    for (std::int64_t i = 0; i < 40; ++i) {
      const bool expect_nan = h >= 2 || (h == 1 && i == 7);
      EXPECT_EQ(std::isnan(fwd.lse.at(0, h, i)), expect_nan) << "head " << h << " row " << i;
      for (std::int64_t e = 0; e < 32; ++e) {
        ASSERT_EQ(std::isnan(fwd.out.at(0, i, h, e)), expect_nan) << "head " << h << " row " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, EdgeCases, ::testing::ValuesIn(all_paths()), path_name);

// The harness's tensors: a copy owns its storage (the implicit copy kept viewing the source).
TEST(HarnessTensor, ACopyViewsItsOwnStorage) {
  harness::HostTensor a(1, 3, 2, 4, true);
  a.fill_uniform(5, -1.0f, 1.0f);
  harness::HostTensor b = a;
  EXPECT_NE(b.view().data, a.view().data);
  EXPECT_EQ(b.to_double(), a.to_double());
  b.at(0, 1, 1, 2) = 42.0f;
  EXPECT_NE(a.at(0, 1, 1, 2), 42.0f);
  harness::HostTensor c;
  c = b;
  EXPECT_NE(c.view().data, b.view().data);
  EXPECT_EQ(c.at(0, 1, 1, 2), 42.0f);
}

}  // namespace
}  // namespace flashattn::testing
