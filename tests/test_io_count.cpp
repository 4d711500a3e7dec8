// test_io_count.cpp — the IO counter (src/analysis/io_count.cpp) against closed forms of
// each algorithm's traffic on small shapes that are not multiples of the tile, the tile
// rule against its definition, and the scaling laws of Theorem 2.
#include <gmock/gmock.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "analysis/io_count.hpp"
#include "api/validate.hpp"
#include "cpu/flash.hpp"
#include "flashattn/block_sparse.hpp"
#include "harness/harness.hpp"

namespace flashattn::testing {
namespace {

using i64 = std::int64_t;

Problem shape(i64 batch, i64 heads, i64 heads_k, i64 n, i64 d, const AttentionOptions& options = {}) {
  Problem p;
  p.batch = batch;
  p.heads = heads;
  p.heads_k = heads_k;
  p.seqlen_q = p.seqlen_k = n;
  p.headdim = d;
  apply_options("test", p, options);
  return p;
}

i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }

TEST(IoCount, FlashForwardIsPackPlusQPlusKvPerQueryTilePlusO) {
  const i64 B = 2, H = 4, Hk = 2, N = 300, d = 32, Br = 64;
  const Problem p = shape(B, H, Hk, N, d);
  const Traffic t = flash_forward_traffic(p, {static_cast<int>(Br), static_cast<int>(Br)});
  const i64 tr = ceil_div(N, Br);
  EXPECT_EQ(t.reads, B * Hk * 2 * N * d + B * H * (N * d + tr * 2 * N * d));
  EXPECT_EQ(t.writes, B * Hk * 2 * N * d + B * H * (N * d + N));
  EXPECT_DOUBLE_EQ(t.flops, 4.0 * B * H * N * N * d);
}

TEST(IoCount, FlashBackwardIsQdOdQPerKeyTilePlusKvOnce) {
  const i64 N = 250, d = 16, Bc = 48;
  for (const auto& [B, H, Hk] : std::vector<std::array<i64, 3>>{{1, 16, 16}, {1, 2, 1}, {2, 4, 2}}) {
    const Problem p = shape(B, H, Hk, N, d);
    const Traffic t = flash_backward_traffic(p, {static_cast<int>(Bc), static_cast<int>(Bc)});
    const i64 tc = ceil_div(N, Bc), q = B * H * N * d;
    const i64 chunks = flash_backward_plan(p, {static_cast<int>(Bc), static_cast<int>(Bc)}).chunks;
    const i64 extra = chunks > 1 ? 1 : 0;
    // K twice (as rows and transposed) and V once per key tile.
    EXPECT_EQ(t.reads, 2 * q + B * Hk * 3 * N * d + B * H * tc * (3 * N * d + 2 * N) + extra * chunks * q)
        << B << " " << H << " " << Hk;
    EXPECT_EQ(t.writes, q + B * H * N + (chunks - 1) * q + B * H * tc * N * d + 2 * B * Hk * N * d + extra * q);
    EXPECT_DOUBLE_EQ(t.flops, 10.0 * B * H * N * N * d);
  }
}

TEST(IoCount, StandardIsLinearPlusQuadratic) {
  const i64 B = 1, H = 3, N = 200, d = 24;
  const Problem p = shape(B, H, H, N, d);
  const Traffic f = standard_forward_traffic(p);
  EXPECT_EQ(f.reads, B * H * (3 * N * d + 2 * N * N));   // Q, K, V once; S and P once each
  EXPECT_EQ(f.writes, B * H * (N * d + N + 2 * N * N));  // O, LSE; S and P
  const Traffic b = standard_backward_traffic(p);
  EXPECT_EQ(b.reads, B * H * (11 * N * d + N + 5 * N * N));  // six GEMM operands, two accumulators, O, dO
  EXPECT_EQ(b.writes, B * H * (3 * N * d + 4 * N * N) + B * 3 * H * N * d);
}

TEST(IoCount, CausalForwardReadsOnlyTheKeyTilesAQueryTileSees) {
  const i64 N = 333, d = 8, Br = 32;
  AttentionOptions causal;
  causal.causal = true;
  const Problem p = shape(1, 1, 1, N, d, causal);
  const Traffic t = flash_forward_traffic(p, {static_cast<int>(Br), static_cast<int>(Br)});
  i64 kv = 0;
  for (i64 q0 = 0; q0 < N; q0 += Br) kv += 2 * d * std::min(N, q0 + Br);  // keys 0 .. last row
  EXPECT_EQ(t.reads, 2 * N * d + N * d + kv);
  EXPECT_LT(kv, 0.6 * ceil_div(N, Br) * 2 * N * d);  // about half of the dense K/V traffic
}

TEST(IoCount, BlockSparseReadsOnlyActiveBlocks) {
  const i64 N = 512, d = 16, block = 64, rows = N / block;
  const std::vector<std::uint8_t> blocks = butterfly_blocks(rows, rows);
  i64 active = 0;
  for (std::uint8_t x : blocks) active += x != 0;
  AttentionOptions options;
  options.block_mask = BlockMask{blocks.data(), block, block, rows, rows, 0, 0};
  const Problem p = shape(1, 2, 2, N, d, options);
  const TileConfig tiles{static_cast<int>(block), static_cast<int>(block)};
  const Traffic t = flash_forward_traffic(p, tiles);
  EXPECT_EQ(t.reads, 2 * 2 * N * d + 2 * (N * d + active * 2 * block * d));
  EXPECT_DOUBLE_EQ(t.flops, 2 * 4.0 * active * block * block * d);
  const Traffic b = flash_backward_traffic(p, tiles);
  const Traffic dense_b = flash_backward_traffic(shape(1, 2, 2, N, d), tiles);
  EXPECT_DOUBLE_EQ(b.flops / dense_b.flops, static_cast<double>(active) / (rows * rows));
}

TEST(IoCount, TileRuleFillsTheFastMemory) {
  for (i64 d : {16, 64, 128, 256}) {
    for (i64 m : {256, 1000, 4096, 65536, 131072}) {
      for (const auto& [unit, cap] : std::vector<std::array<i64, 2>>{{1, 4096}, {16, 4096}, {48, 4096}, {48, 96}}) {
        const TileConfig t = tiles_for_fast_memory(m, d, unit, cap);
        const i64 b = t.block_q;
        EXPECT_LE(b, cap);
        EXPECT_EQ(t.block_k, b);
        EXPECT_GE(b, 1);
        if (4 * d + 1 <= m) {
          EXPECT_LE(4 * b * d + b * b, m) << d << " " << m << " " << unit;
        }
        const i64 step = b >= unit ? unit : 1;
        if (b + step <= cap) {
          EXPECT_GT(4 * (b + step) * d + (b + step) * (b + step), m) << d << " " << m << " " << unit;
        }
        if (b >= unit) {
          EXPECT_EQ(b % unit, 0);
        }
      }
    }
  }
}

// Theorem 2: flash traffic Θ(N²d²/M) where the tile is M/4d (B ≪ d); standard's is
// Θ(Nd + N²), independent of M.
TEST(IoCount, FollowsTheoremTwo) {
  const i64 d = 64;
  auto flash = [&](i64 n, i64 m) {
    const Problem p = shape(1, 1, 1, n, d);
    return static_cast<double>(flash_forward_traffic(p, tiles_for_fast_memory(m, d, 1, 4096)).total());
  };
  EXPECT_NEAR(flash(8192, 2048) / flash(8192, 8192), 4.0, 0.6);  // M^-1
  EXPECT_NEAR(flash(8192, 4096) / flash(4096, 4096), 4.0, 0.3);  // N^2
  const Problem small = shape(1, 1, 1, 4096, d), large = shape(1, 1, 1, 8192, d);
  const double s1 = static_cast<double>(standard_forward_traffic(small).total());
  const double s2 = static_cast<double>(standard_forward_traffic(large).total());
  EXPECT_NEAR(s2 / s1, 4.0, 0.1);
  // Flash beats standard's traffic once M ≫ d²/N... and is never below the lower bound.
  const double bound = 8192.0 * 8192 * d * d / 16384;
  EXPECT_GT(flash(8192, 16384), bound);
  EXPECT_LT(flash(8192, 16384), s2);
}

// The counter walks the kernels' own loops: real runs, counted by the kernels themselves
// (Problem::tile_counts, two threads), visit the pairs, query rows and key rows the model
// counts — with causal masks, documents (whole tiles skipped), a broadcast bias's gradient
// (the backward's tasks then walk every (batch, kv-head) of a chunk), windows with key
// padding, and block masks.
TEST(IoCount, CountsWhatTheKernelsVisit) {
  std::vector<std::pair<std::string, harness::Case>> cases;
  auto base = [](i64 batch, i64 heads, i64 heads_k, i64 n, i64 d) {
    harness::Case c;
    c.shape = {batch, n, n, heads, heads_k, d};
    c.options.num_threads = 2;
    c.options.block_q = 32;
    c.options.block_k = 48;
    c.options.forward_kernel = AttentionOptions::ForwardKernel::tiled;
    return c;
  };
  {
    harness::Case c = base(2, 4, 2, 333, 32);
    c.options.causal = true;
    cases.emplace_back("causal", c);
  }
  {
    harness::Case c = base(1, 2, 2, 400, 16);
    std::vector<std::int32_t> ids(400);
    for (i64 i = 0; i < 400; ++i) ids[i] = i < 150 ? 0 : (i < 250 ? 1 : 2);
    c.set_documents(ids, ids);
    cases.emplace_back("documents", c);
  }
  {
    harness::Case c = base(3, 2, 1, 150, 16);
    std::vector<float> bias(150 * 150);
    for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = 0.01f * static_cast<float>(i % 7);
    c.set_bias(bias, 1, 1);
    cases.emplace_back("broadcast bias", c);
  }
  {
    harness::Case c = base(2, 2, 2, 300, 16);
    c.options.window_left = 70;
    c.options.window_right = 20;
    c.set_key_lengths({300, 170});
    cases.emplace_back("window, key padding", c);
  }
  {
    harness::Case c = base(1, 2, 2, 256, 16);
    c.set_block_mask(butterfly_blocks(8, 8), 32, 32);
    cases.emplace_back("block mask", c);
  }
  for (const auto& [name, c] : cases) {
    const harness::Inputs in = harness::make_inputs(c);
    harness::ForwardOutputs fwd = harness::make_forward_outputs(c);
    harness::BackwardOutputs grads = harness::make_backward_outputs(c);
    AttentionOptions options = c.options;
    if (grads.dbias.view().rank == 4) options.dbias = grads.dbias.view();  // shaped as the (broadcast) bias
    Problem p = make_forward_problem("test", in.q.view(), in.k.view(), in.v.view(), fwd.out.view(), fwd.lse.view(),
                                     options, Algorithm::flash);
    const Traffic f = flash_forward_traffic(p, choose_tiles(p));  // before the instrument is attached
    TileCounts counts;
    p.tile_counts = &counts;
    flash_forward(p);
    EXPECT_GT(f.pairs, 0) << name;
    EXPECT_EQ(counts.pairs.load(), f.pairs) << name;
    EXPECT_EQ(counts.query_rows.load(), f.query_rows) << name;
    EXPECT_EQ(counts.key_rows.load(), f.key_rows) << name;

    Problem pb = make_backward_problem("test", in.dout.view(), in.q.view(), in.k.view(), in.v.view(), fwd.out.view(),
                                       fwd.lse.view(), grads.dq.view(), grads.dk.view(), grads.dv.view(), options,
                                       Algorithm::flash);
    const Traffic b = flash_backward_traffic(pb, choose_tiles(pb));
    TileCounts back;
    pb.tile_counts = &back;
    flash_backward(pb);
    EXPECT_EQ(back.pairs.load(), b.pairs) << name;
    EXPECT_EQ(back.query_rows.load(), b.query_rows) << name;
    EXPECT_EQ(back.key_rows.load(), b.key_rows) << name;
    EXPECT_EQ(b.pairs, f.pairs) << name;  // both passes see the same pairs
  }
}

// The paper's Algorithm 1 and its backward, written out by hand: per (batch, head) O, ℓ, m
// (backward: dQ) set once; per key block K_j, V_j read (backward: dK_j, dV_j written); per
// (key block, query block) Q_i, O_i, ℓ_i, m_i read and written back (backward: Q_i, O_i,
// dO_i, dQ_i, ℓ_i, m_i read and dQ_i written).
TEST(IoCount, PaperAlgorithmsReReadTheQueriesPerKeyBlock) {
  const i64 B = 2, H = 3, N = 301, d = 40;
  const TileConfig tiles = paper_tiles(4000, d);
  EXPECT_EQ(tiles.block_k, 25);  // ⌈4000 / 160⌉
  EXPECT_EQ(tiles.block_q, 25);  // min(B_c, d)
  EXPECT_EQ(paper_tiles(65536, d).block_q, d);
  EXPECT_EQ(paper_tiles(65536, d).block_k, 410);
  const i64 tc = ceil_div(N, 25), bh = B * H;
  const Problem p = shape(B, H, H, N, d);
  const Traffic f = paper_forward_traffic(p, tiles);
  EXPECT_EQ(f.reads, bh * (2 * N * d + tc * (2 * N * d + 2 * N)));
  EXPECT_EQ(f.writes, bh * ((N * d + 2 * N) + tc * (N * d + 2 * N)));
  EXPECT_DOUBLE_EQ(f.flops, 4.0 * bh * N * N * d);
  const Traffic b = paper_backward_traffic(p, tiles);
  EXPECT_EQ(b.reads, bh * (2 * N * d + tc * (4 * N * d + 2 * N)));
  EXPECT_EQ(b.writes, bh * (N * d + 2 * N * d + tc * N * d));
  EXPECT_DOUBLE_EQ(b.flops, 10.0 * bh * N * N * d);
}

TEST(IoCount, PaperCausalSkipsTheBlocksAboveTheDiagonal) {
  const i64 N = 200, d = 16;
  AttentionOptions causal;
  causal.causal = true;
  const TileConfig tiles{16, 24};
  const Traffic t = paper_forward_traffic(shape(1, 1, 1, N, d, causal), tiles);
  i64 reads = 0;
  for (i64 kv0 = 0; kv0 < N; kv0 += 24) {
    reads += 2 * std::min<i64>(24, N - kv0) * d;
    for (i64 i0 = kv0 / 16 * 16; i0 < N; i0 += 16) reads += 2 * std::min<i64>(16, N - i0) * (d + 1);  // rows ≥ kv0
  }
  EXPECT_EQ(t.reads, reads);
}

// With the paper's tiles the fitted M exponent is Theorem 2's −1 on any machine: the
// traffic is N²d/B_c plus terms linear in N.
TEST(IoCount, PaperTilesGiveTheTheoremsExponent) {
  for (i64 d : {64, 128}) {
    auto traffic = [&](i64 n, i64 m) {
      return static_cast<double>(paper_forward_traffic(shape(1, 1, 1, n, d), paper_tiles(m, d)).total());
    };
    EXPECT_NEAR(std::log(traffic(8192, 4096) / traffic(8192, 16384)) / std::log(4.0), 1.0, 0.03) << d;
    EXPECT_NEAR(std::log(traffic(16384, 8192) / traffic(4096, 8192)) / std::log(4.0), 2.0, 0.03) << d;
  }
}

}  // namespace
}  // namespace flashattn::testing
