// flashattn/isa.hpp — which instruction-set build of the CPU kernels runs.
//
// Every build of the library carries every kernel build; the one used is chosen at
// run time from the CPU's features. FLASHATTN_ISA=portable|avx2|avx512|avx512_bf16|amx in
// the environment, or AttentionOptions::isa per call, forces one (it must be supported).
// avx512_bf16 is the avx512 build whose bf16 calls multiply with the CPU's bf16 dot
// product (vdpbf16ps) instead of widening to f32 first; amx is the avx512_bf16 build whose
// bf16 forward multiplies on AMX tiles (tdpbf16ps).
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "flashattn/export.hpp"

namespace flashattn {

enum class Isa { portable, avx2, avx512, avx512_bf16, amx };

FLASHATTN_API const char* to_string(Isa isa);
FLASHATTN_API std::optional<Isa> parse_isa(std::string_view name);
// Every name parse_isa accepts, for messages: "portable, avx2, avx512, avx512_bf16, amx".
FLASHATTN_API const char* isa_names();

// The kernel builds this CPU can run, portable first.
FLASHATTN_API std::vector<Isa> supported_isas();
// The build used when a call does not ask for one: FLASHATTN_ISA if set, else the best supported.
FLASHATTN_API Isa default_isa();

}  // namespace flashattn
