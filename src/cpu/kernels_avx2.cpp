// kernels_avx2.cpp — the flash kernels compiled for avx2 (-mavx2 -mfma -mf16c; flags set in CMakeLists.txt).
#define FLASHATTN_KERNEL_SET kAvx2Kernels
#define FLASHATTN_KERNEL_ISA Isa::avx2
#include "cpu/kernels/kernel_set.hpp"
