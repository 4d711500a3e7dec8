// philox.hpp — counter-based random numbers for dropout (Philox4x32-10, Salmon et al. 2011).
//
// The mask is a pure function of (seed, batch, head, row, column): the forward,
// the backward, the reference and the tests all evaluate it independently and agree.
// Counter = (column / 4, row, head, batch), key = seed; word column % 4 of the
// output decides column `column`. Kept iff the word >= threshold = floor(p · 2^32).
//
// Everything here has internal linkage so that each ISA translation unit gets its
// own copy compiled with its own flags.
#pragma once

#include <cstdint>

namespace flashattn {
namespace {

struct Philox4x32 {
  std::uint32_t v[4];
};

inline Philox4x32 philox4x32_10(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2,
                                std::uint32_t c3, std::uint64_t seed) {
  constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  std::uint32_t k0 = static_cast<std::uint32_t>(seed);
  std::uint32_t k1 = static_cast<std::uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kMul0) * c0;
    const std::uint64_t p1 = static_cast<std::uint64_t>(kMul1) * c2;
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

inline std::uint32_t dropout_threshold(float p) {
  const double t = static_cast<double>(p) * 4294967296.0;
  return t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(t);
}

// Keep flags of the four columns 4·(j/4) .. 4·(j/4)+3 of row i.
inline Philox4x32 dropout_bits(std::uint64_t seed, std::int64_t b, std::int64_t h,
                               std::int64_t i, std::int64_t j) {
  return philox4x32_10(static_cast<std::uint32_t>(j >> 2), static_cast<std::uint32_t>(i),
                       static_cast<std::uint32_t>(h), static_cast<std::uint32_t>(b), seed);
}

}  // namespace
}  // namespace flashattn
