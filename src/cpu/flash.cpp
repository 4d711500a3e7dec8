// flash.cpp — scheduling and scratch for the flash kernels (kernels run per tile).
//
// Forward: one task per (batch, head, query tile), dynamically scheduled, heaviest
// first under a causal mask (late query tiles see more keys). Tasks share nothing,
// so the result does not depend on the thread count.
//
// Backward: one task per (batch, kv-head, chunk of key tiles). A task owns its rows of
// dK and dV outright. dQ gets contributions from every chunk, so each chunk adds into
// its own dQ copy (chunk 0 into dq itself) and the copies are summed in chunk order at
// the end. The chunk count depends on the problem only, never on the thread count, so
// results are bitwise identical for any number of threads.
#include "cpu/flash.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <cstring>

#include "core/memory.hpp"
#include "cpu/dispatch.hpp"

namespace flashattn {
namespace {

using i64 = std::int64_t;

i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }

void zero_rows(const Bshd& t, i64 batch, i64 seqlen, i64 heads, i64 d, int threads) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (i64 b = 0; b < batch; ++b) {
    for (i64 s = 0; s < seqlen; ++s) {
      for (i64 h = 0; h < heads; ++h) std::memset(t.row(b, s, h), 0, sizeof(float) * d);
    }
  }
}

// Enough tasks to keep a machine busy whatever its thread count, bounded by the
// memory the extra dQ copies take (which grows linearly with seqlen_q).
constexpr i64 kBackwardTargetTasks = 16;
constexpr i64 kMaxPartialDqBytes = i64{32} << 20;

i64 backward_chunks(const Problem& p, i64 key_tiles) {
  const i64 copy_bytes = p.batch * p.seqlen_q * p.heads * p.headdim * i64{sizeof(float)};
  i64 chunks = ceil_div(kBackwardTargetTasks, p.batch * p.heads_k);
  if (copy_bytes > 0) chunks = std::min(chunks, 1 + kMaxPartialDqBytes / copy_bytes);
  return std::clamp<i64>(chunks, 1, std::max<i64>(key_tiles, 1));
}

}  // namespace

// The paper sizes tiles so that they fill the fast memory: Bc = ⌈M / 4d⌉, Br = min(Bc, d).
// On the CPU the hot working set is the score tile, which the online softmax sweeps
// twice and the P·V product reads once, so the tile is square and sized to L1:
// side ≈ √(L1d / 4 bytes), rounded to whole register tiles both ways (the forward's
// queries are columns, the backward's rows). Measured with `flashattn bench --seqlen 2048
// --block-q BQ --block-k BK` (AVX2, 2 threads, L1d 32 KiB, ratios to SGEMM interleaved):
// 96×96 gave fwd 0.84 / bwd 0.79 at d = 64 and 0.85 / 0.75 at d = 128; 48×96 0.79 / 0.80
// and 0.75 / 0.78; 96×144 0.80 / 0.77 and 0.77 / 0.80; 192×96 and 144×96 were no better.
// The L2 (the paper's rule) bounds nothing here: K and V tiles stream from it.
TileConfig choose_tiles(const Problem& p) {
  const KernelSet& kernels = kernels_for(p.isa);
  const i64 unit = std::lcm<i64>(kernels.micro_rows, kernels.micro_cols);
  const double side = std::sqrt(static_cast<double>(cache_sizes().l1d_bytes) / sizeof(float));
  const i64 block = std::clamp<i64>(std::llround(side / unit) * unit, unit, std::max<i64>(unit, 256));
  TileConfig t{static_cast<int>(block), static_cast<int>(block)};
  if (p.block_q > 0) t.block_q = p.block_q;
  if (p.block_k > 0) t.block_k = p.block_k;
  if (p.mask_blocks != nullptr) {  // a tile is a block of the mask, so it is skipped whole
    t.block_q = static_cast<int>(p.mask_block_q);
    t.block_k = static_cast<int>(p.mask_block_k);
  }
  return t;
}

void flash_forward(const Problem& p) {
  if (p.batch == 0 || p.heads == 0 || p.seqlen_q == 0) return;
  const KernelSet& kernels = kernels_for(p.isa);
  const TileConfig tiles = choose_tiles(p);
  const int threads = p.num_threads;
  const i64 d = p.headdim;
  const i64 ws_floats = kernels.forward_workspace_floats(tiles, d);
  Buffer scratch(static_cast<std::size_t>(ws_floats * threads));

  // Setup: K and V of every (batch, kv-head) into contiguous, padded rows (PackedKv).
  const i64 d_pad = ceil_div(d, kernels.micro_cols) * kernels.micro_cols;
  const i64 k_floats = (p.seqlen_k + kernels.micro_rows) * d, v_floats = p.seqlen_k * d_pad;
  Buffer packed(static_cast<std::size_t>(p.batch * p.heads_k * (k_floats + v_floats)));
  auto packed_kv = [&](i64 b, i64 hk) {
    float* base = packed.data() + (b * p.heads_k + hk) * (k_floats + v_floats);
    return PackedKv{base, base + k_floats};
  };
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 hk = 0; hk < p.heads_k; ++hk) {
      const PackedKv kv = packed_kv(b, hk);
      float* k = const_cast<float*>(kv.k);
      float* v = const_cast<float*>(kv.v);
      for (i64 j = 0; j < p.seqlen_k; ++j) {
        std::memcpy(k + j * d, p.k.row(b, j, hk), sizeof(float) * d);
        std::memcpy(v + j * d_pad, p.v.row(b, j, hk), sizeof(float) * d);
        std::memset(v + j * d_pad + d, 0, sizeof(float) * (d_pad - d));
      }
      std::memset(k + p.seqlen_k * d, 0, sizeof(float) * kernels.micro_rows * d);
    }
  }

  // Main loop.
  const i64 q_tiles = ceil_div(p.seqlen_q, tiles.block_q);
  const i64 tasks = p.batch * p.heads * q_tiles;
#pragma omp parallel num_threads(threads)
  {
    float* ws = scratch.data() + ws_floats * omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
    for (i64 task = 0; task < tasks; ++task) {
      const i64 bh = task / q_tiles;
      const i64 b = bh / p.heads, h = bh % p.heads;
      const i64 qt = q_tiles - 1 - task % q_tiles;  // heaviest first under causal
      const i64 q0 = qt * tiles.block_q;
      const i64 q1 = std::min(q0 + tiles.block_q, p.seqlen_q);
      kernels.forward_block(p, tiles, b, h, q0, q1, packed_kv(b, p.kv_head(h)), ws);
    }
  }
}

void flash_backward(const Problem& p) {
  const int threads = p.num_threads;
  const i64 d = p.headdim;
  zero_rows(p.dq, p.batch, p.seqlen_q, p.heads, d, threads);
  if (p.dbias != nullptr) {  // blocks the kernels skip keep a zero gradient
#pragma omp parallel for collapse(3) num_threads(threads) schedule(static)
    for (i64 b = 0; b < p.batch; ++b) {
      for (i64 h = 0; h < p.heads; ++h) {
        for (i64 i = 0; i < p.seqlen_q; ++i) {
          for (i64 j = 0; j < p.seqlen_k; ++j) p.dbias_at(b, h, i, j) = 0.0f;
        }
      }
    }
  }
  if (p.batch == 0 || p.seqlen_k == 0) return;
  if (p.heads == 0) {
    zero_rows(p.dk, p.batch, p.seqlen_k, p.heads_k, d, threads);
    zero_rows(p.dv, p.batch, p.seqlen_k, p.heads_k, d, threads);
    return;
  }
  const KernelSet& kernels = kernels_for(p.isa);
  const TileConfig tiles = choose_tiles(p);

  // Setup: delta = rowsum(dO ∘ O), (batch, heads, seqlen_q) contiguous.
  Buffer delta(static_cast<std::size_t>(p.batch * p.heads * p.seqlen_q));
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (i64 b = 0; b < p.batch; ++b) {
    for (i64 h = 0; h < p.heads; ++h) {
      for (i64 i = 0; i < p.seqlen_q; ++i) {
        const float* o = p.out.row(b, i, h);
        const float* dout = p.dout.row(b, i, h);
        float sum = 0.0f;
        for (i64 e = 0; e < d; ++e) sum += o[e] * dout[e];
        delta.data()[(b * p.heads + h) * p.seqlen_q + i] = sum;
      }
    }
  }

  const i64 key_tiles = ceil_div(p.seqlen_k, tiles.block_k);
  const i64 chunks = backward_chunks(p, key_tiles);
  const i64 copy_floats = p.batch * p.seqlen_q * p.heads * d;
  Buffer dq_copies(static_cast<std::size_t>(copy_floats * (chunks - 1)));
  if (dq_copies.size() > 0) std::memset(dq_copies.data(), 0, dq_copies.size() * sizeof(float));
  auto dq_target = [&](i64 chunk) {
    if (chunk == 0) return p.dq;
    // Contiguous (batch, seqlen_q, heads, headdim).
    return Bshd{dq_copies.data() + (chunk - 1) * copy_floats, p.seqlen_q * p.heads * d, p.heads * d, d};
  };

  const i64 ws_floats = kernels.backward_workspace_floats(tiles, d);
  Buffer scratch(static_cast<std::size_t>(ws_floats * threads));
  const i64 tasks = p.batch * p.heads_k * chunks;

  // Main loop.
#pragma omp parallel num_threads(threads)
  {
    float* ws = scratch.data() + ws_floats * omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
    for (i64 task = 0; task < tasks; ++task) {
      const i64 chunk = task % chunks;
      const i64 bhk = task / chunks;
      const Bshd target = dq_target(chunk);
      for (i64 kt = key_tiles * chunk / chunks; kt < key_tiles * (chunk + 1) / chunks; ++kt) {
        const i64 kv0 = kt * tiles.block_k;
        const i64 kv1 = std::min(kv0 + tiles.block_k, p.seqlen_k);
        kernels.backward_block(p, tiles, bhk / p.heads_k, bhk % p.heads_k, kv0, kv1, delta.data(),
                               target, ws);
      }
    }
  }

  // Epilogue: add the dQ copies in chunk order.
  if (chunks > 1) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (i64 b = 0; b < p.batch; ++b) {
      for (i64 i = 0; i < p.seqlen_q; ++i) {
        for (i64 h = 0; h < p.heads; ++h) {
          float* dst = p.dq.row(b, i, h);
          for (i64 c = 1; c < chunks; ++c) {
            const float* src = dq_target(c).row(b, i, h);
            for (i64 e = 0; e < d; ++e) dst[e] += src[e];
          }
        }
      }
    }
  }
}

}  // namespace flashattn
