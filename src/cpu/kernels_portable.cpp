// kernels_portable.cpp — the flash kernels compiled for portable (baseline x86-64 (SSE2); flags set in CMakeLists.txt).
#define FLASHATTN_KERNEL_SET kPortableKernels
#define FLASHATTN_KERNEL_ISA Isa::portable
#include "cpu/kernels/kernel_set.hpp"
