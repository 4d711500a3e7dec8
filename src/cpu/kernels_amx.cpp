// kernels_amx.cpp — the flash kernels compiled for avx512_bf16 with AMX (those flags and -mamx-tile -mamx-bf16; set in CMakeLists.txt): the bf16 forward multiplies on AMX tiles.
#define FLASHATTN_KERNEL_SET kAmxKernels
#define FLASHATTN_KERNEL_ISA Isa::amx
#include "cpu/kernels/kernel_set.hpp"
