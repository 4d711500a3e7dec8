// memory.cpp — counted, aligned buffers (see memory.hpp).
#include "core/memory.hpp"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>

namespace flashattn {
namespace {

constexpr std::size_t kAlignment = 64;  // one cache line; also a full AVX-512 register
std::atomic<std::int64_t> g_current{0};
std::atomic<std::int64_t> g_peak{0};

void count(std::int64_t delta) {
  const std::int64_t now = g_current.fetch_add(delta) + delta;
  std::int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}

}  // namespace

Buffer::Buffer(std::size_t floats) : floats_(floats) {
  if (floats == 0) return;
  if (floats > (SIZE_MAX - kAlignment) / sizeof(float)) throw std::bad_alloc();  // the size would wrap
  const std::size_t bytes = (floats * sizeof(float) + kAlignment - 1) / kAlignment * kAlignment;
  data_ = static_cast<float*>(std::aligned_alloc(kAlignment, bytes));
  if (data_ == nullptr) throw std::bad_alloc();
  count(static_cast<std::int64_t>(floats_ * sizeof(float)));
}

Buffer::~Buffer() {
  if (data_ != nullptr) {
    count(-static_cast<std::int64_t>(floats_ * sizeof(float)));
    std::free(data_);
  }
}

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), floats_(std::exchange(other.floats_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    Buffer old(std::move(*this));
    data_ = std::exchange(other.data_, nullptr);
    floats_ = std::exchange(other.floats_, 0);
  }
  return *this;
}

std::int64_t allocated_bytes() { return g_current.load(); }
std::int64_t peak_allocated_bytes() { return g_peak.load(); }
void reset_peak_allocated_bytes() { g_peak.store(g_current.load()); }

}  // namespace flashattn
