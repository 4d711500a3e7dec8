// dispatch.hpp — the CPU facts the kernels depend on, read in one place (dispatch.cpp).
#pragma once

#include <cstdint>

#include "cpu/kernels.hpp"

namespace flashattn {

struct CacheSizes {
  std::int64_t l1d_bytes = 0;  // per core
  std::int64_t l2_bytes = 0;   // per core
  std::int64_t last_level_bytes = 0;  // the machine's: each distinct last-level cache once; 0 when unknown
};

// Detected once; falls back to 32 KiB / 512 KiB where the OS does not say.
const CacheSizes& cache_sizes();

// The kernel build for an ISA this CPU supports (checked at the API boundary).
const KernelSet& kernels_for(Isa isa);

}  // namespace flashattn
