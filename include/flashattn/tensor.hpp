// flashattn/tensor.hpp — the strided tensor view the API takes.
//
// A view never owns memory: it describes the caller's buffer. Shapes and strides
// are in elements and 64-bit, so no index arithmetic overflows on long sequences.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "flashattn/export.hpp"

namespace flashattn {

// Element types. f32 is the only type computed today (f16 and bf16 exist so that the
// view, the parameter struct and the error messages need no change when they arrive);
// u8 is for masks: nonzero means "keep".
enum class DType : std::uint8_t { f32, f16, bf16, u8 };

FLASHATTN_API const char* to_string(DType dtype);

struct FLASHATTN_API TensorView {
  static constexpr int kMaxRank = 4;

  void* data = nullptr;
  DType dtype = DType::f32;
  int rank = 0;
  std::int64_t shape[kMaxRank] = {};
  std::int64_t stride[kMaxRank] = {};

  // Row-major contiguous view: the last dimension has stride 1.
  static TensorView contiguous(const float* data, std::initializer_list<std::int64_t> shape);
  // A u8 mask, row-major contiguous.
  static TensorView contiguous(const std::uint8_t* data, std::initializer_list<std::int64_t> shape);
  // Explicit strides (elements), one per dimension.
  static TensorView strided(const float* data, std::initializer_list<std::int64_t> shape,
                            std::initializer_list<std::int64_t> stride);

  std::int64_t numel() const;
};

}  // namespace flashattn
