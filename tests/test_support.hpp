// test_support.hpp — helpers shared by the test files.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "flashattn/flashattn.hpp"
#include "harness/harness.hpp"

namespace flashattn::testing {

// Every flash kernel build this CPU runs, so the suite covers each ISA on one machine.
inline std::vector<Isa> isas_to_test() { return supported_isas(); }

}  // namespace flashattn::testing

namespace flashattn {
inline void PrintTo(Isa isa, std::ostream* os) { *os << to_string(isa); }
inline void PrintTo(Algorithm a, std::ostream* os) { *os << to_string(a); }
}  // namespace flashattn

namespace flashattn::testing {

inline std::string isa_param_name(const ::testing::TestParamInfo<Isa>& info) {
  return to_string(info.param);
}

}  // namespace flashattn::testing
