// internal.hpp — the one header through which the command-line tools (tools/) reach the
// library's internals; the installed package carries none of it. What they may use:
//   the machine      cache_sizes, kernels_for (the FMA yardstick of a build), the ISAs
//   the tile rule    choose_tiles, tiles_for_fast_memory, tile_unit, tile_side_cap,
//                    kernel_fast_memory, paper_tiles
//   memory           allocated_bytes, peak_allocated_bytes, reset_peak_allocated_bytes
//   dtypes           element_bytes and the scalar conversions
//   the IO model     Traffic, the counters and the sweeps (analysis/io_count.hpp,
//                    io_model.hpp)
//   the harness      cases, inputs, runs, the reference and errors (harness/harness.hpp)
#pragma once

#include "analysis/io_count.hpp"
#include "analysis/io_model.hpp"
#include "core/dtype.hpp"
#include "core/memory.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/flash.hpp"
#include "harness/harness.hpp"
