// test_tiles.cpp — the tile rule (src/core/tiles.hpp) against the element rule it
// summarizes (Problem::visible): a pair the walks skip has no visible score, a pair they
// call full has every score visible, and the forward's and backward's walks visit the same
// pairs — on random windows, causal masks in both alignments, prefixes, key padding,
// documents and block masks, with tiles that divide nothing.
#include <gmock/gmock.h>

#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "core/tiles.hpp"
#include "flashattn/block_sparse.hpp"
#include "harness/harness.hpp"

namespace flashattn::testing {
namespace {

using i64 = std::int64_t;

TEST(TileRule, SkipsOnlyHiddenPairsAndCallsFullOnlyWhollyVisibleOnes) {
  std::mt19937 rng(17);
  auto pick = [&](i64 lo, i64 hi) { return std::uniform_int_distribution<i64>(lo, hi)(rng); };
  int partial = 0, full = 0, skipped = 0;
  for (int trial = 0; trial < 60; ++trial) {
    harness::Case c;
    const i64 nq = pick(1, 90), nk = pick(1, 90), batch = 2, heads = 2;
    c.shape = {batch, nq, nk, heads, 1, 8};
    TileConfig t{static_cast<int>(pick(3, 20)), static_cast<int>(pick(3, 20))};
    switch (trial % 6) {
      case 0: c.options.causal = true; break;
      case 1:
        c.options.causal = true;
        c.options.alignment = AttentionOptions::Alignment::top_left;
        break;
      case 2:
        c.options.window_left = pick(0, 30);
        c.options.window_right = pick(0, 10);
        break;
      case 3: {
        std::vector<std::int32_t> ids_q(static_cast<std::size_t>(batch * nq)), ids_k(static_cast<std::size_t>(batch * nk));
        for (auto& x : ids_q) x = static_cast<std::int32_t>(pick(0, 2));
        std::sort(ids_q.begin(), ids_q.end());
        for (auto& x : ids_k) x = static_cast<std::int32_t>(pick(0, 2));
        std::sort(ids_k.begin(), ids_k.end());
        c.set_documents(ids_q, ids_k);
        break;
      }
      case 4: {
        const i64 rows = (nq + t.block_q - 1) / t.block_q, cols = (nk + t.block_k - 1) / t.block_k;
        c.set_block_mask(random_blocks(rows, cols, 0.5, static_cast<std::uint64_t>(trial)), t.block_q, t.block_k);
        break;
      }
      default:
        c.options.causal = true;
        c.options.prefix_length = pick(0, 20);
        c.set_key_lengths({static_cast<std::int32_t>(pick(0, nk)), static_cast<std::int32_t>(nk)});
    }
    const Problem p = harness::problem_of(c);
    std::set<std::tuple<i64, i64, i64, i64>> forward_pairs, backward_pairs;  // (b, h, q0, j0)
    for (i64 b = 0; b < batch; ++b) {
      for (i64 h = 0; h < heads; ++h) {
        for (i64 q0 = 0; q0 < nq; q0 += t.block_q) {
          const i64 q1 = std::min(nq, q0 + t.block_q);
          std::set<i64> visited;
          walk_key_tiles(p, t, b, h, q0, q1, [&](const TilePair& pair) {
            visited.insert(pair.j0);
            forward_pairs.insert({b, h, q0, pair.j0});
            bool all = true;
            for (i64 i = q0; i < q1; ++i) {
              for (i64 j = pair.j0; j < pair.j1; ++j) all = all && p.visible(b, h, i, j);
            }
            if (!pair.mask.partial()) {
              EXPECT_TRUE(all) << "full pair with a hidden score: trial " << trial << " q0 " << q0 << " j0 " << pair.j0;
              ++full;
            } else {
              ++partial;
            }
          });
          for (i64 j0 = 0; j0 < nk; j0 += t.block_k) {
            if (visited.count(j0)) continue;
            ++skipped;
            for (i64 i = q0; i < q1; ++i) {
              for (i64 j = j0; j < std::min(nk, j0 + t.block_k); ++j) {
                EXPECT_FALSE(p.visible(b, h, i, j)) << "skipped pair with a visible score: trial " << trial << " ("
                                                    << i << ", " << j << ")";
              }
            }
          }
        }
      }
      for (i64 j0 = 0; j0 < nk; j0 += t.block_k) {
        walk_query_tiles(p, t, b, 0, j0, std::min(nk, j0 + t.block_k), [&](const TilePair& pair) {
          backward_pairs.insert({b, pair.h, pair.q0, j0});
          if (!pair.mask.partial()) {
            for (i64 i = pair.q0; i < pair.q1; ++i) {
              for (i64 j = pair.j0; j < pair.j1; ++j) EXPECT_TRUE(p.visible(b, pair.h, i, j)) << "trial " << trial;
            }
          }
        });
      }
    }
    EXPECT_EQ(forward_pairs, backward_pairs) << "trial " << trial;
  }
  EXPECT_GT(full, 0);
  EXPECT_GT(partial, 0);
  EXPECT_GT(skipped, 0);
}

// Which problems run the kernels' plain instantiation: none of the per-score features.
TEST(TileRule, PlainScoresMeansNoPerScoreWork) {
  harness::Case c;
  c.shape = {1, 40, 40, 2, 2, 8};
  c.options.causal = true;
  EXPECT_TRUE(plain_scores(harness::problem_of(c)));
  harness::Case d = c;
  d.options.dropout_p = 0.1f;
  EXPECT_FALSE(plain_scores(harness::problem_of(d)));
  harness::Case s = c;
  s.options.softcap = 30.0f;
  EXPECT_FALSE(plain_scores(harness::problem_of(s)));
  harness::Case m = c;
  m.set_mask(std::vector<std::uint8_t>(40 * 40, 1), 1, 1);
  EXPECT_FALSE(plain_scores(harness::problem_of(m)));
  harness::Case docs = c;
  docs.set_documents(std::vector<std::int32_t>(40, 0), std::vector<std::int32_t>(40, 0));
  EXPECT_FALSE(plain_scores(harness::problem_of(docs)));
}

}  // namespace
}  // namespace flashattn::testing
