// baseline.hpp — another build of the library loaded into this process, so that
// `flashattn bench --baseline-lib PATH` can time it interleaved with this build, run by run,
// on the same buffers: the only comparison of two builds that the machine's per-process
// state (memory placement, the host's load) cannot bias, since both share it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "flashattn/attention.hpp"
#include "flashattn/kvcache.hpp"

namespace flashattn::cli {

class BaselineLibrary {
 public:
  using Forward = void (*)(const TensorView&, const TensorView&, const TensorView&, const TensorView&,
                           const TensorView&, const AttentionOptions&, Algorithm);
  using Backward = void (*)(const TensorView&, const TensorView&, const TensorView&, const TensorView&,
                            const TensorView&, const TensorView&, const TensorView&, const TensorView&,
                            const TensorView&, const AttentionOptions&, Algorithm);
  using ForwardWithKvCache = void (*)(const TensorView&, const TensorView&, const TensorView&, const TensorView&,
                                      const TensorView&, const KvCache&, const AttentionOptions&);

  // Loads PATH (a libflashattn.so) with its own symbols (RTLD_LOCAL | RTLD_DEEPBIND) and finds
  // forward and backward under this build's mangled names. Throws std::runtime_error naming
  // the path and what failed. `abi_note` says whether the public structs' layout was checked
  // (flashattn_abi_fingerprint) or could not be (an older build without it).
  // forward_with_kvcache is found too where the build has it and shares KvCache's layout
  // (flashattn_kvcache_abi_fingerprint, unchecked on builds without it); otherwise it stays
  // null and `kvcache_missing` says why.
  // The allocation counters (core/memory.hpp) are found too where the build exports them;
  // otherwise they stay null and its records report peak_bytes 0.
  explicit BaselineLibrary(const std::string& path);
  ~BaselineLibrary();
  BaselineLibrary(const BaselineLibrary&) = delete;
  BaselineLibrary& operator=(const BaselineLibrary&) = delete;

  Forward forward = nullptr;
  Backward backward = nullptr;
  ForwardWithKvCache forward_with_kvcache = nullptr;
  std::int64_t (*allocated_bytes)() = nullptr;
  std::int64_t (*peak_allocated_bytes)() = nullptr;
  void (*reset_peak_allocated_bytes)() = nullptr;
  std::string path, abi_note, kvcache_missing;
  bool abi_checked = false;

 private:
  void* handle_ = nullptr;
};

// The peak bytes `run` allocates above what was held before it, counted by the build that
// runs it: this one (other null) or `other`, which counts its own; 0 where `other` does not
// export its counters (a build from before they were).
std::int64_t peak_bytes_of(const BaselineLibrary* other, const std::function<void()>& run);

}  // namespace flashattn::cli
