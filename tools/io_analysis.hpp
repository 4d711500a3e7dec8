// io_analysis.hpp — the IO model's tables as `flashattn io` and `flashattn bench`'s report
// print them (the model itself: analysis/io_model.hpp).
#pragma once

#include <string>

#include "internal.hpp"

namespace flashattn::cli {

// The fitted exponents of a sweep, one row per (impl, tile rule, pass, d).
std::string fits_table(const SweepSummary& s);

}  // namespace flashattn::cli
