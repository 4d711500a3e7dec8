// baseline.cpp — see baseline.hpp.
#include "baseline.hpp"

#include <dlfcn.h>

#include <cstdint>
#include <stdexcept>

#include "core/memory.hpp"

namespace flashattn::cli {

namespace {

// The mangled name of one of this build's functions, from its address.
std::string symbol_name(const void* address) {
  Dl_info info{};
  if (!dladdr(address, &info) || !info.dli_sname) throw std::runtime_error("cannot name this build's own symbol");
  return info.dli_sname;
}

}  // namespace

BaselineLibrary::BaselineLibrary(const std::string& library_path) : path(library_path) {
#if defined(__SANITIZE_ADDRESS__)
  // ASan's runtime refuses RTLD_DEEPBIND; a library linked with -Bsymbolic-functions (this
  // project's, since the option was added) binds its own calls inside itself anyway.
  constexpr int kFlags = RTLD_NOW | RTLD_LOCAL;
#else
  constexpr int kFlags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#endif
  handle_ = dlopen(path.c_str(), kFlags);
  if (!handle_) throw std::runtime_error("--baseline-lib: cannot load '" + path + "': " + dlerror());
  auto find = [&](const void* own) {
    const std::string name = symbol_name(own);
    void* sym = dlsym(handle_, name.c_str());
    if (!sym) throw std::runtime_error("--baseline-lib: '" + path + "' has no " + name);
    if (sym == own) throw std::runtime_error("--baseline-lib: '" + path + "' is this build's own library");
    return sym;
  };
  forward = reinterpret_cast<Forward>(find(reinterpret_cast<const void*>(
      static_cast<void (*)(const TensorView&, const TensorView&, const TensorView&, const TensorView&,
                           const TensorView&, const AttentionOptions&, Algorithm)>(&flashattn::forward))));
  backward = reinterpret_cast<Backward>(find(reinterpret_cast<const void*>(&flashattn::backward)));
  using Fingerprint = std::uint64_t (*)();
  if (auto theirs = reinterpret_cast<Fingerprint>(dlsym(handle_, "flashattn_abi_fingerprint"))) {
    if (theirs() != flashattn_abi_fingerprint()) {
      throw std::runtime_error("--baseline-lib: '" + path +
                               "' lays out the public structs differently from this build (ABI fingerprint); "
                               "compare the two with `flashattn bench --compare` instead");
    }
    abi_checked = true;
    abi_note = "same public struct layout (ABI fingerprint checked)";
  } else {
    abi_note = "an older build without an ABI fingerprint: layout not checked, its accuracy check is the guard";
  }
  // The allocation counters: builds from before they were exported lack them.
  auto find_optional = [&](auto own) {
    return reinterpret_cast<decltype(own)>(dlsym(handle_, symbol_name(reinterpret_cast<const void*>(own)).c_str()));
  };
  allocated_bytes = find_optional(&flashattn::allocated_bytes);
  peak_allocated_bytes = find_optional(&flashattn::peak_allocated_bytes);
  reset_peak_allocated_bytes = find_optional(&flashattn::reset_peak_allocated_bytes);
  if (!allocated_bytes || !peak_allocated_bytes || !reset_peak_allocated_bytes) {
    allocated_bytes = peak_allocated_bytes = nullptr;
    reset_peak_allocated_bytes = nullptr;
    abi_note += "; its allocations are not counted (a build without exported counters: peak_bytes 0)";
  }
  const std::string kvcache_name = symbol_name(reinterpret_cast<const void*>(&flashattn::forward_with_kvcache));
  void* kvcache_entry = dlsym(handle_, kvcache_name.c_str());
  auto theirs_kv = reinterpret_cast<Fingerprint>(dlsym(handle_, "flashattn_kvcache_abi_fingerprint"));
  if (kvcache_entry == nullptr) {
    kvcache_missing = "it has no forward_with_kvcache";
  } else if (theirs_kv != nullptr && theirs_kv() != flashattn_kvcache_abi_fingerprint()) {
    kvcache_missing = "it lays out KvCache differently from this build (its ABI fingerprint)";
  } else {
    forward_with_kvcache = reinterpret_cast<ForwardWithKvCache>(kvcache_entry);
    if (theirs_kv == nullptr) abi_note += "; KvCache's layout not checked (a build without its fingerprint)";
  }
}

BaselineLibrary::~BaselineLibrary() {
  if (handle_) dlclose(handle_);
}

std::int64_t peak_bytes_of(const BaselineLibrary* other, const std::function<void()>& run) {
  auto allocated = other ? other->allocated_bytes : &flashattn::allocated_bytes;
  auto peak = other ? other->peak_allocated_bytes : &flashattn::peak_allocated_bytes;
  auto reset = other ? other->reset_peak_allocated_bytes : &flashattn::reset_peak_allocated_bytes;
  if (!allocated) {
    run();
    return 0;
  }
  const std::int64_t before = allocated();
  reset();
  run();
  return peak() - before;
}

}  // namespace flashattn::cli
