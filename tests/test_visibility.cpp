// test_visibility.cpp — what a query sees, pinned by hand on tiny cases.
//
// With q = 0 every score is 0, so a row's probabilities are uniform over the keys it sees;
// with v_j the j-th unit vector, out_i is 1 / |seen(i)| on exactly those keys and 0
// elsewhere, and lse_i = log |seen(i)| (−∞ when it sees none). The expected sets below are
// written out by hand from the documented rules (include/flashattn/attention.hpp), and the
// reference, standard attention and the flash kernels of every ISA must all produce them.
#include <cmath>
#include <limits>
#include <functional>
#include <optional>
#include <set>

#include "reference/reference.hpp"
#include "test_support.hpp"

namespace flashattn::testing {
namespace {

using i64 = std::int64_t;
using Seen = std::vector<std::set<i64>>;  // per query row, the keys it sees

struct VisibilityCase {
  const char* name;
  i64 nq, nk;
  std::function<void(AttentionOptions&)> configure;
  Seen expected;
};

// Owns what the options point to.
struct Storage {
  std::vector<std::int32_t> key_lengths, docs_q, docs_k;
  std::vector<std::uint8_t> keep, blocks;
};
Storage storage;

std::vector<VisibilityCase> visibility_cases() {
  using Align = AttentionOptions::Alignment;
  return {
      {"causal_bottom_right", 3, 5, [](AttentionOptions& o) { o.causal = true; },
       {{0, 1, 2}, {0, 1, 2, 3}, {0, 1, 2, 3, 4}}},
      {"causal_top_left", 3, 5, [](AttentionOptions& o) { o.causal = true, o.alignment = Align::top_left; },
       {{0}, {0, 1}, {0, 1, 2}}},
      {"causal_more_queries_than_keys", 4, 2, [](AttentionOptions& o) { o.causal = true; },
       {{}, {}, {0}, {0, 1}}},
      {"window_left1_right0", 3, 5, [](AttentionOptions& o) { o.window_left = 1, o.window_right = 0; },
       {{1, 2}, {2, 3}, {3, 4}}},
      {"window_left0_right1", 3, 5, [](AttentionOptions& o) { o.window_left = 0, o.window_right = 1; },
       {{2, 3}, {3, 4}, {4}}},
      {"window_left1_top_left_causal", 3, 5,
       [](AttentionOptions& o) { o.causal = true, o.window_left = 1, o.alignment = Align::top_left; },
       {{0}, {0, 1}, {1, 2}}},
      {"window_huge", 3, 5,
       [](AttentionOptions& o) { o.window_left = std::numeric_limits<i64>::max(), o.window_right = std::numeric_limits<i64>::max(); },
       {{0, 1, 2, 3, 4}, {0, 1, 2, 3, 4}, {0, 1, 2, 3, 4}}},
      {"prefix4_causal", 3, 5, [](AttentionOptions& o) { o.causal = true, o.prefix_length = 4; },
       {{0, 1, 2, 3}, {0, 1, 2, 3}, {0, 1, 2, 3, 4}}},
      {"prefix2_causal_top_left", 3, 5,
       [](AttentionOptions& o) { o.causal = true, o.prefix_length = 2, o.alignment = Align::top_left; },
       {{0, 1}, {0, 1}, {0, 1, 2}}},
      {"key_lengths_3", 3, 5,
       [](AttentionOptions& o) {
         storage.key_lengths = {3};
         o.key_lengths = storage.key_lengths.data();
       },
       {{0, 1, 2}, {0, 1, 2}, {0, 1, 2}}},
      {"key_lengths_2_causal", 3, 5,  // causal stays aligned to the full seqlen_k
       [](AttentionOptions& o) {
         storage.key_lengths = {2};
         o.key_lengths = storage.key_lengths.data();
         o.causal = true;
       },
       {{0, 1}, {0, 1}, {0, 1}}},
      {"key_lengths_0", 3, 5,
       [](AttentionOptions& o) {
         storage.key_lengths = {0};
         o.key_lengths = storage.key_lengths.data();
       },
       {{}, {}, {}}},
      {"documents", 3, 5,
       [](AttentionOptions& o) {
         storage.docs_q = {0, 1, 1};
         storage.docs_k = {0, 0, 1, 1, 2};
         o.document_ids_q = storage.docs_q.data();
         o.document_ids_k = storage.docs_k.data();
       },
       {{0, 1}, {2, 3}, {2, 3}}},
      {"explicit_mask", 3, 5,
       [](AttentionOptions& o) {
         storage.keep = {1, 0, 0, 1, 0,  //
                         0, 0, 0, 0, 0,  //
                         1, 1, 1, 1, 1};
         o.mask = TensorView::contiguous(storage.keep.data(), {1, 1, 3, 5});
       },
       {{0, 3}, {}, {0, 1, 2, 3, 4}}},
      {"block_mask_2x2", 3, 5,
       [](AttentionOptions& o) {
         storage.blocks = {1, 0, 1,  //
                           0, 1, 0};
         BlockMask m;
         m.blocks = storage.blocks.data();
         m.block_q = 2, m.block_k = 2, m.rows = 2, m.cols = 3;
         o.block_mask = m;
       },
       {{0, 1, 4}, {0, 1, 4}, {2, 3}}},
  };
}

class Visibility : public ::testing::TestWithParam<VisibilityCase> {};

void expect_seen(const Seen& expected, const std::vector<double>& out, const std::vector<double>& lse, i64 nk,
                 const std::string& path) {
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double count = static_cast<double>(expected[i].size());
    for (i64 j = 0; j < nk; ++j) {
      const double want = expected[i].count(j) ? 1.0 / count : 0.0;
      EXPECT_NEAR(out[i * nk + j], want, 1e-6) << path << ": row " << i << ", key " << j;
    }
    if (count == 0) {
      EXPECT_EQ(lse[i], -std::numeric_limits<double>::infinity()) << path << ": row " << i;
    } else {
      EXPECT_NEAR(lse[i], std::log(count), 1e-6) << path << ": row " << i;
    }
  }
}

TEST_P(Visibility, EveryPathSeesTheKeysWrittenByHand) {
  const VisibilityCase& vc = GetParam();
  AttentionOptions o;
  vc.configure(o);
  const i64 nq = vc.nq, nk = vc.nk, d = nk;
  std::vector<double> q(nq * d, 0.0), k(nk * d), v(nk * d, 0.0), out(nq * d), lse(nq);
  for (i64 j = 0; j < nk; ++j) {
    v[j * d + j] = 1.0;
    for (i64 e = 0; e < d; ++e) k[j * d + e] = 0.25 * ((j + e) % 3);  // any keys: q = 0 zeroes every score
  }
  reference::forward({1, nq, nk, 1, 1, d}, o, q.data(), k.data(), v.data(), out.data(), lse.data());
  expect_seen(vc.expected, out, lse, nk, "reference");

  const std::vector<float> qf(q.begin(), q.end()), kf(k.begin(), k.end()), vf(v.begin(), v.end());
  using Kernel = AttentionOptions::ForwardKernel;
  auto run = [&](Algorithm algorithm, std::optional<Isa> isa, Kernel kernel, const std::string& path) {
    AttentionOptions po = o;
    po.isa = isa;
    po.forward_kernel = kernel;
    std::vector<float> of(nq * d, std::numeric_limits<float>::quiet_NaN()), lf(nq, std::numeric_limits<float>::quiet_NaN());
    forward(TensorView::contiguous(qf.data(), {1, nq, 1, d}), TensorView::contiguous(kf.data(), {1, nk, 1, d}),
            TensorView::contiguous(vf.data(), {1, nk, 1, d}), TensorView::contiguous(of.data(), {1, nq, 1, d}),
            TensorView::contiguous(lf.data(), {1, 1, nq}), po, algorithm);
    expect_seen(vc.expected, std::vector<double>(of.begin(), of.end()), std::vector<double>(lf.begin(), lf.end()), nk,
                path);
  };
  run(Algorithm::standard, std::nullopt, Kernel::automatic, "standard");
  for (Isa isa : isas_to_test()) {
    run(Algorithm::flash, isa, Kernel::tiled, std::string("flash tiled/") + to_string(isa));
    if (!o.block_mask) run(Algorithm::flash, isa, Kernel::split_kv, std::string("flash split-KV/") + to_string(isa));
  }
}

INSTANTIATE_TEST_SUITE_P(Rules, Visibility, ::testing::ValuesIn(visibility_cases()),
                         [](const ::testing::TestParamInfo<VisibilityCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace flashattn::testing
