// flashattn/mask_mod.hpp — masks written as C++ callables (FlexAttention's mask_mod).
//
//   auto causal = [](std::int64_t b, std::int64_t h, std::int64_t q, std::int64_t kv) { return kv <= q; };
//   flashattn::ModBlockMask mask(causal, 1, 1, seqlen_q, seqlen_k, 128, 128);
//   options.block_mask = mask.view();   // keep `mask` alive while calls use it
//
// The callable is a template argument, evaluated here — inlined, in the caller's
// translation unit — once for every (b, h, q_idx, kv_idx) when the mask is built; no call
// through a pointer is made per score. Each block_q × block_k block is classified: empty
// (never loaded or computed), full (no per-element test) or partial (its keep bits are
// stored, block_q · block_k bits, and tested per score). Build it once and reuse it: for
// causal the bits cost about N · block bits, and the kernels' tiles are its blocks.
// batch or heads of 1 build one mask every batch or head shares.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "flashattn/attention.hpp"

namespace flashattn {

class ModBlockMask {
 public:
  template <class MaskMod>
  ModBlockMask(MaskMod&& mask_mod, std::int64_t batch, std::int64_t heads, std::int64_t seqlen_q,
               std::int64_t seqlen_k, std::int64_t block_q = 128, std::int64_t block_k = 128)
      : batch_(batch), heads_(heads), block_q_(block_q), block_k_(block_k) {
    rows_ = block_q > 0 ? (seqlen_q + block_q - 1) / block_q : 0;
    cols_ = block_k > 0 ? (seqlen_k + block_k - 1) / block_k : 0;
    if (batch < 0 || heads < 0 || rows_ * cols_ == 0) return;
    states_.assign(static_cast<std::size_t>(batch * heads * rows_ * cols_), 0);
    offsets_.assign(states_.size(), 0);
    const std::int64_t words = (block_q * block_k + 63) / 64;
    std::vector<std::uint64_t> bits(static_cast<std::size_t>(words));
    std::size_t n = 0;
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t h = 0; h < heads; ++h) {
        for (std::int64_t qb = 0; qb < rows_; ++qb) {
          for (std::int64_t kb = 0; kb < cols_; ++kb, ++n) {
            std::fill(bits.begin(), bits.end(), 0);
            std::int64_t kept = 0, seen = 0;
            const std::int64_t i1 = std::min(seqlen_q, (qb + 1) * block_q), j1 = std::min(seqlen_k, (kb + 1) * block_k);
            for (std::int64_t i = qb * block_q; i < i1; ++i) {
              for (std::int64_t j = kb * block_k; j < j1; ++j, ++seen) {
                if (!mask_mod(b, h, i, j)) continue;
                const std::int64_t bit = (i - qb * block_q) * block_k + (j - kb * block_k);
                bits[static_cast<std::size_t>(bit >> 6)] |= std::uint64_t{1} << (bit & 63);
                ++kept;
              }
            }
            if (kept == 0) {
              ++empty_blocks_;
            } else if (kept == seen) {
              states_[n] = 1;
              ++full_blocks_;
            } else {
              states_[n] = 2;
              offsets_[n] = static_cast<std::int64_t>(bits_.size());
              bits_.insert(bits_.end(), bits.begin(), bits.end());
              ++partial_blocks_;
            }
          }
        }
      }
    }
  }

  // For AttentionOptions::block_mask (valid while this object lives and is not moved from).
  BlockMask view() const {
    BlockMask m;
    m.blocks = states_.data();
    m.block_q = block_q_;
    m.block_k = block_k_;
    m.rows = rows_;
    m.cols = cols_;
    m.head_stride = heads_ > 1 ? rows_ * cols_ : 0;
    m.batch_stride = batch_ > 1 ? heads_ * rows_ * cols_ : 0;
    if (partial_blocks_ > 0) {
      m.partial_bits = bits_.data();
      m.partial_offset = offsets_.data();
    }
    return m;
  }
  std::int64_t empty_blocks() const { return empty_blocks_; }
  std::int64_t full_blocks() const { return full_blocks_; }
  std::int64_t partial_blocks() const { return partial_blocks_; }

 private:
  std::int64_t batch_, heads_, block_q_, block_k_, rows_ = 0, cols_ = 0;
  std::int64_t empty_blocks_ = 0, full_blocks_ = 0, partial_blocks_ = 0;
  std::vector<std::uint8_t> states_;     // 0 empty, 1 full, 2 partial
  std::vector<std::int64_t> offsets_;    // partial blocks: first word of their bits
  std::vector<std::uint64_t> bits_;
};

}  // namespace flashattn
