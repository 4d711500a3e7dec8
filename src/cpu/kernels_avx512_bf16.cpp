// kernels_avx512_bf16.cpp — the flash kernels compiled for avx512 with AVX512-BF16 (the avx512 flags and -mavx512bf16; set in CMakeLists.txt): bf16 calls multiply with vdpbf16ps.
#define FLASHATTN_KERNEL_SET kAvx512Bf16Kernels
#define FLASHATTN_KERNEL_ISA Isa::avx512_bf16
#include "cpu/kernels/kernel_set.hpp"
