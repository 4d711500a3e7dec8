// test_support.hpp — helpers shared by the test files.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

#include "flashattn/flashattn.hpp"
#include "harness/harness.hpp"

namespace flashattn {
inline void PrintTo(Isa isa, std::ostream* os) { *os << to_string(isa); }
inline void PrintTo(Algorithm a, std::ostream* os) { *os << to_string(a); }
}  // namespace flashattn

namespace flashattn::testing {

// Every flash kernel build this CPU runs, so the suite covers each ISA on one machine.
inline std::vector<Isa> isas_to_test() { return supported_isas(); }

inline std::string isa_param_name(const ::testing::TestParamInfo<Isa>& info) {
  return to_string(info.param);
}

// A case to run through the flash kernels of one ISA (and standard attention).
struct PathCase {
  harness::Case c;
  Isa isa;
};

inline void PrintTo(const PathCase& p, std::ostream* os) { *os << p.c.name() << "/" << to_string(p.isa); }

inline std::vector<PathCase> for_every_isa(const std::vector<harness::Case>& cases) {
  std::vector<PathCase> out;
  for (const harness::Case& c : cases) {
    for (Isa isa : isas_to_test()) out.push_back({c, isa});
  }
  return out;
}

// The case's name with its data seed (names repeat across seeds) and ISA, as gtest wants it.
inline std::string path_case_name(const ::testing::TestParamInfo<PathCase>& info) {
  std::string name = info.param.c.name() + "_s" + std::to_string(info.param.c.data_seed) + "_" +
                     to_string(info.param.isa);
  for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return name;
}

// Central differences of `loss` in each element of each parameter against its gradient:
// |grad − numeric| <= abs_tol + rel_tol · |numeric|.
struct GradientOf {
  std::vector<double>* x;
  const std::vector<double>* grad;
  const char* name;
};
template <typename Loss>
void expect_finite_differences(Loss&& loss, std::initializer_list<GradientOf> params, double step, double abs_tol,
                               double rel_tol) {
  for (const GradientOf& p : params) {
    for (std::size_t n = 0; n < p.x->size(); ++n) {
      const double saved = (*p.x)[n];
      (*p.x)[n] = saved + step;
      const double up = loss();
      (*p.x)[n] = saved - step;
      const double down = loss();
      (*p.x)[n] = saved;
      const double numeric = (up - down) / (2 * step);
      EXPECT_NEAR((*p.grad)[n], numeric, abs_tol + rel_tol * std::abs(numeric)) << p.name << "[" << n << "]";
    }
  }
}

// Runs the case's flash forward, expecting flashattn::Error with `message` in its text.
inline void expect_forward_error(const harness::Case& c, const std::string& message) {
  const harness::Inputs in = harness::make_inputs(c);
  harness::ForwardOutputs fwd = harness::make_forward_outputs(c);
  try {
    harness::run_forward(c, in, fwd, Algorithm::flash);
    ADD_FAILURE() << "no error; expected one saying: " << message;
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr(message));
  }
}

// Forward and backward of standard attention and of the flash kernels on the case, against
// the reference: standard within harness::standard_error_limit, flash within FlashAttention's
// rule (harness::allowed_error) for each output, nothing written outside the outputs' views.
// `oracle`, when given, is the same problem expressed another way (same shape and data
// seed) whose reference the paths are held to.
inline void expect_matches_reference(const PathCase& pc, const harness::Case* oracle = nullptr) {
  const harness::Case& c = pc.c;
  const harness::Inputs in = harness::make_inputs(c);
  const harness::ReferenceOutputs ref = harness::run_reference(oracle != nullptr ? *oracle : c, in, true);
  const harness::PathRun standard = harness::run_path(c, in, ref, Algorithm::standard);
  EXPECT_LE(standard.errors.max(), harness::standard_error_limit(ref, c.dtype))
      << "standard attention is off the reference";
  harness::Case fc = c;
  fc.options.isa = pc.isa;
  const harness::PathRun flash = harness::run_path(fc, in, ref, Algorithm::flash);
  const harness::Errors& fast = flash.errors;
  const harness::Errors& slow = standard.errors;
  const struct {
    const char* name;
    double fast, standard;
    const std::vector<double>& ref;
  } outputs[] = {{"out", fast.out, slow.out, ref.out}, {"lse", fast.lse, slow.lse, ref.lse},
                 {"dq", fast.dq, slow.dq, ref.dq},     {"dk", fast.dk, slow.dk, ref.dk},
                 {"dv", fast.dv, slow.dv, ref.dv},     {"dbias", fast.dbias, slow.dbias, ref.dbias}};
  for (const auto& o : outputs) {
    EXPECT_LE(o.fast, harness::allowed_error(o.standard, harness::max_abs(o.ref), c.dtype))
        << o.name << ": flash error " << o.fast << " vs standard " << o.standard;
  }
  for (const harness::PathRun* run : {&standard, &flash}) {
    for (const harness::HostTensor* t : {&run->fwd.out, &run->fwd.lse, &run->bwd.dq, &run->bwd.dk, &run->bwd.dv}) {
      EXPECT_TRUE(t->padding_untouched()) << "a path wrote outside its output view";
    }
    if (!ref.dbias.empty()) {
      EXPECT_TRUE(run->bwd.dbias.padding_untouched()) << "dbias written outside its view";
    }
  }
}

}  // namespace flashattn::testing
