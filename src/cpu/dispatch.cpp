// dispatch.cpp — the one place CPU features are detected and kernel builds chosen.
//
// Order of preference: amx > avx512_bf16 > avx512 > avx2 > portable. FLASHATTN_ISA in the environment
// overrides the default (and a name the CPU cannot run is an error at the first call,
// not a crash); AttentionOptions::isa overrides it per call.
#include "cpu/dispatch.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>

#include "flashattn/error.hpp"

namespace flashattn {
namespace {

#if defined(FLASHATTN_X86_KERNELS)
// F16C (the f16 conversions) comes with every AVX2 CPU; it is checked all the same.
bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

// libgcc's check includes the OS's XSAVE state (XCR0), so a kernel that disabled
// AVX-512 state is seen as lacking it.
bool cpu_has_avx512() {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq");
}

#if defined(FLASHATTN_EMULATED_BF16_AMX)
// A test build (CMake option FLASHATTN_EMULATED_BF16_AMX): both extensions are AVX-512 code
// (tests/emulated/bf16_amx_instructions.hpp), and no OS permission is needed for tiles in memory.
bool cpu_has_avx512_bf16() { return cpu_has_avx512(); }
bool cpu_has_amx() { return cpu_has_avx512(); }
#else
bool cpu_has_avx512_bf16() { return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16"); }

// AMX tiles need the OS's permission for their state, asked once per process
// (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA); a kernel that refuses it has no AMX.
bool cpu_has_amx() {
  static const bool granted = [] {
    if (!cpu_has_avx512_bf16() || !__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-bf16")) {
      return false;
    }
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return granted;
}
#endif
#else
bool cpu_has_avx2() { return false; }  // not built for this processor
bool cpu_has_avx512() { return false; }
bool cpu_has_avx512_bf16() { return false; }
bool cpu_has_amx() { return false; }
#endif

// "32K", "1024K", "1M" as written in /sys/devices/system/cpu/cpu0/cache/index*/size.
std::int64_t parse_cache_size(const std::string& text) {
  std::size_t pos = 0;
  std::int64_t value = 0;
  try {
    value = std::stoll(text, &pos);
  } catch (...) {
    return 0;
  }
  const char unit = pos < text.size() ? text[pos] : ' ';
  if (unit == 'K') return value << 10;
  if (unit == 'M') return value << 20;
  return value;
}

std::int64_t sysfs_cache_size(int level, bool want_data) {
  for (int index = 0; index < 8; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
    std::ifstream level_file(dir + "level"), type_file(dir + "type"), size_file(dir + "size");
    int l = 0;
    std::string type, size;
    if (!(level_file >> l) || !(type_file >> type) || !(size_file >> size)) continue;
    if (l != level) continue;
    if (want_data && type == "Instruction") continue;
    return parse_cache_size(size);
  }
  return 0;
}

// The highest cache level cpu0 has, summed over every CPU's instance of it, each distinct
// (shared_cpu_list) counted once.
std::int64_t sysfs_last_level_bytes() {
  const std::string root = "/sys/devices/system/cpu/cpu";
  int top_index = -1, top_level = 0;
  for (int index = 0; index < 16; ++index) {
    std::ifstream level_file(root + "0/cache/index" + std::to_string(index) + "/level");
    int level = 0;
    if ((level_file >> level) && level > top_level) top_level = level, top_index = index;
  }
  if (top_index < 0) return 0;
  std::set<std::string> seen;
  std::int64_t total = 0;
  for (long cpu = 0; cpu < std::max(1L, sysconf(_SC_NPROCESSORS_CONF)); ++cpu) {
    const std::string dir = root + std::to_string(cpu) + "/cache/index" + std::to_string(top_index) + "/";
    std::ifstream shared_file(dir + "shared_cpu_list"), size_file(dir + "size");
    std::string shared, size;
    shared_file >> shared;
    if (!(size_file >> size) || !seen.insert(shared.empty() ? std::to_string(cpu) : shared).second) continue;
    total += parse_cache_size(size);
  }
  return total;
}

CacheSizes detect_caches() {
  CacheSizes c;
  c.l1d_bytes = sysconf(_SC_LEVEL1_DCACHE_SIZE);
  c.l2_bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (c.l1d_bytes <= 0) c.l1d_bytes = sysfs_cache_size(1, true);
  if (c.l2_bytes <= 0) c.l2_bytes = sysfs_cache_size(2, true);
  if (c.l1d_bytes <= 0) c.l1d_bytes = 32 << 10;
  if (c.l2_bytes <= 0) c.l2_bytes = 512 << 10;
  c.last_level_bytes = sysfs_last_level_bytes();
  return c;
}

}  // namespace

const char* to_string(Isa isa) {
  switch (isa) {
    case Isa::portable: return "portable";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512_bf16: return "avx512_bf16";
    case Isa::amx: return "amx";
  }
  return "?";
}

const char* isa_names() { return "portable, avx2, avx512, avx512_bf16, amx"; }

std::optional<Isa> parse_isa(std::string_view name) {
  for (Isa isa : {Isa::portable, Isa::avx2, Isa::avx512, Isa::avx512_bf16, Isa::amx}) {
    if (name == to_string(isa)) return isa;
  }
  return std::nullopt;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> isas{Isa::portable};
  if (cpu_has_avx2()) isas.push_back(Isa::avx2);
  if (cpu_has_avx512()) isas.push_back(Isa::avx512);
  if (cpu_has_avx512_bf16()) isas.push_back(Isa::avx512_bf16);
  if (cpu_has_amx()) isas.push_back(Isa::amx);
  return isas;
}

Isa default_isa() {
  static const Isa chosen = [] {
    if (const char* env = std::getenv("FLASHATTN_ISA"); env != nullptr && *env != '\0') {
      const std::optional<Isa> forced = parse_isa(env);
      if (!forced) {
        throw Error(std::string("FLASHATTN_ISA: unknown value '") + env + "' (expected one of " + isa_names() + ")");
      }
      return *forced;  // whether the CPU supports it is checked at each call
    }
    return supported_isas().back();
  }();
  return chosen;
}

const CacheSizes& cache_sizes() {
  static const CacheSizes sizes = detect_caches();
  return sizes;
}

const KernelSet& kernels_for(Isa isa) {
#if defined(FLASHATTN_X86_KERNELS)
  switch (isa) {
    case Isa::amx: return kAmxKernels;
    case Isa::avx512_bf16: return kAvx512Bf16Kernels;
    case Isa::avx512: return kAvx512Kernels;
    case Isa::avx2: return kAvx2Kernels;
    case Isa::portable: break;
  }
#else
  (void)isa;  // validation admits only supported builds
#endif
  return kPortableKernels;
}

}  // namespace flashattn
