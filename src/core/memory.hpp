// memory.hpp — the library's own allocations: 64-byte aligned and counted.
//
// Every buffer a path allocates goes through Buffer, so that the benchmark can report
// the peak bytes a call allocated (measured, not estimated).
#pragma once

#include <cstddef>
#include <cstdint>

#include "flashattn/export.hpp"

namespace flashattn {

// Exported for flashattn::ring, whose buffers count with the library's.
class FLASHATTN_API Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t floats);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  float* data() const { return data_; }
  std::size_t size() const { return floats_; }

 private:
  float* data_ = nullptr;
  std::size_t floats_ = 0;
};

// Bytes currently held by Buffers, and the peak since the last reset. Exported so that
// `flashattn bench --baseline-lib` reads another build's counters, which count its Buffers.
FLASHATTN_API std::int64_t allocated_bytes();
FLASHATTN_API std::int64_t peak_allocated_bytes();
FLASHATTN_API void reset_peak_allocated_bytes();

}  // namespace flashattn
