// kernels_avx512.cpp — the flash kernels compiled for avx512 (-mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma -mf16c; flags set in CMakeLists.txt).
#define FLASHATTN_KERNEL_SET kAvx512Kernels
#define FLASHATTN_KERNEL_ISA Isa::avx512
#include "cpu/kernels/kernel_set.hpp"
