// kernel_set.hpp — the KernelSet object of one ISA build, and the kernels it points to.
// kernels_<isa>.cpp defines FLASHATTN_KERNEL_SET (its name) and FLASHATTN_KERNEL_ISA and
// includes this once, compiled with that ISA's flags. By role:
//   micro_gemm.hpp      the register-blocked micro-kernel every tile product goes through
//   tile_io.hpp         rows into tiles and back (widened, scaled, transposed, padded)
//   scores.hpp          score modifiers and the pair's mask (core/tiles.hpp's TileMask)
//   online_softmax.hpp  the forward's running max and sum
//   dropout.hpp         Philox keep masks
//   flash_forward.hpp   the tiled forward's driver (one query tile)
//   flash_backward.hpp  the tiled backward's driver (one key tile)
//   split_kv.hpp        the split-KV (decoding) driver
//   convert.hpp         16-bit dtypes to f32 and back
//   peak.hpp            the FMA and bf16 yardsticks of the benchmark
// Everything but the KernelSet object has internal linkage.
#pragma once

#include "cpu/kernels.hpp"
#include "cpu/kernels/convert.hpp"
#include "cpu/kernels/flash_backward.hpp"
#include "cpu/kernels/flash_forward.hpp"
#include "cpu/kernels/online_softmax.hpp"
#include "cpu/kernels/peak.hpp"
#include "cpu/kernels/split_kv.hpp"

namespace flashattn {

extern const KernelSet FLASHATTN_KERNEL_SET{FLASHATTN_KERNEL_ISA,
                                            static_cast<int>(kRows),
                                            static_cast<int>(kCols),
                                            forward_workspace_floats,
                                            backward_workspace_floats,
                                            split_kv_workspace_floats,
                                            packed_kv_floats,
                                            pack_kv,
                                            forward_block,
                                            packed_q_floats,
                                            pack_q,
                                            backward_block,
                                            split_kv_block,
                                            exp2_array,
                                            dropout_factors,
                                            convert_to_f32,
                                            convert_from_f32,
                                            fma_chains,
                                            kPeakFlopsPerIteration,
                                            bf16_chains,
                                            kPeakBf16FlopsPerIteration};

}  // namespace flashattn
