// test_split_kv.cpp — the split-KV forward (flash-decoding) through the ordinary API: against
// the reference on decoding shapes (few queries, awkward cache lengths, grouped heads, every
// mask and modifier), memory that does not grow with the keys, and the tiled kernel on the same
// shapes (the same bits for every thread count: test_determinism.cpp).
#include <random>

#include "core/memory.hpp"
#include "test_support.hpp"

namespace flashattn::testing {
namespace {

using harness::Case;
using Kernel = AttentionOptions::ForwardKernel;

const float kSlopes[] = {0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.015625f, 0.0078125f, 0.00390625f};

std::vector<Case> split_kv_cases() {
  std::vector<Case> cases;
  std::uint64_t seed = 4100;
  auto add = [&](harness::Shape shape, Kernel kernel, int splits, auto&& configure) {
    Case c;
    c.shape = shape;
    c.options.forward_kernel = kernel;
    c.options.num_splits = splits;
    c.padded = seed % 2 == 1;
    c.data_seed = seed;
    c.options.seed = seed++ * 31;
    configure(c);
    cases.push_back(c);
  };
  auto plain = [](Case&) {};
  // Queries 1 .. 8 against caches of awkward lengths; grouped ratios 1, 4, 8 and MQA; head
  // dimensions that are not whole vectors; automatic (split-KV for these) and forced.
  const std::int64_t lengths[] = {1, 17, 1000, 4097};
  const std::int64_t queries[] = {1, 2, 3, 8};
  const std::pair<std::int64_t, std::int64_t> heads[] = {{4, 4}, {8, 2}, {8, 1}, {16, 2}};
  const std::int64_t dims[] = {64, 59, 128, 16};
  for (int n = 0; n < 4; ++n) {
    for (int m = 0; m < 4; ++m) {
      const auto [h, hk] = heads[(n + m) % 4];
      const std::int64_t batch = lengths[n] > 1000 ? 1 : 2;
      add({batch, queries[m], lengths[n], h, hk, dims[(n + 2 * m) % 4]}, m % 2 ? Kernel::split_kv : Kernel::automatic,
          m == 3 ? 3 : 0, [&](Case& c) { c.options.causal = m % 2 == 0; });
    }
  }
  // Ranges forced: one, several, more than the keys; row blocks of many queries (forced).
  for (int splits : {1, 2, 7, 40}) add({2, 4, 33, 8, 2, 40}, Kernel::split_kv, splits, [](Case& c) { c.options.causal = true; });
  add({1, 70, 300, 2, 2, 32}, Kernel::split_kv, 0, [](Case& c) { c.options.causal = true; });
  add({1, 40, 129, 8, 1, 24}, Kernel::split_kv, 5, plain);
  // Windows, prefix, top-left alignment, key padding, dropout.
  add({2, 5, 600, 4, 2, 64}, Kernel::automatic, 0, [](Case& c) { c.options.window_left = 100, c.options.window_right = 0; });
  add({1, 6, 500, 4, 1, 32}, Kernel::automatic, 4, [](Case& c) { c.options.window_left = 7, c.options.window_right = 3; });
  add({2, 3, 300, 4, 4, 32}, Kernel::automatic, 0, [](Case& c) { c.options.causal = true, c.options.prefix_length = 40; });
  add({1, 8, 200, 2, 1, 32}, Kernel::split_kv, 0, [](Case& c) {
    c.options.causal = true, c.options.alignment = AttentionOptions::Alignment::top_left;
  });
  add({3, 2, 700, 4, 2, 48}, Kernel::automatic, 0, [](Case& c) { c.set_key_lengths({700, 0, 355}); });
  add({2, 4, 400, 4, 2, 64}, Kernel::automatic, 0, [](Case& c) { c.options.dropout_p = 0.2f, c.options.causal = true; });
  // Modifiers: softcap, ALiBi, bias, explicit mask, documents.
  add({2, 3, 513, 8, 2, 64}, Kernel::automatic, 0, [](Case& c) {
    c.options.softcap = 8.0f, c.options.alibi_slopes = kSlopes, c.options.causal = true;
  });
  add({2, 2, 150, 4, 2, 32}, Kernel::automatic, 0, [](Case& c) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    std::vector<float> bias(2 * 4 * 2 * 150);
    for (float& x : bias) x = u(rng);
    c.set_bias(std::move(bias), 2, 4);
  });
  add({2, 3, 130, 4, 1, 32}, Kernel::automatic, 2, [](Case& c) {
    std::vector<std::uint8_t> keep(3 * 130);
    for (std::size_t n = 0; n < keep.size(); ++n) keep[n] = (n * 7919) % 5 != 0;
    for (std::size_t j = 0; j < 130; ++j) keep[130 + j] = 0;  // query 1 sees nothing
    c.set_mask(std::move(keep), 1, 1);
  });
  add({1, 4, 260, 4, 2, 32}, Kernel::automatic, 0, [](Case& c) {
    std::vector<std::int32_t> q{0, 1, 1, 2}, k(260);
    for (std::size_t j = 0; j < k.size(); ++j) k[j] = static_cast<std::int32_t>(j / 100);
    c.set_documents(std::move(q), std::move(k));
  });
  // The tiled kernel on decoding shapes (automatic would not pick it).
  add({2, 1, 1000, 8, 2, 64}, Kernel::tiled, 0, [](Case& c) { c.options.causal = true; });
  add({1, 3, 4097, 4, 1, 59}, Kernel::tiled, 0, plain);
  return cases;
}

class SplitKv : public ::testing::TestWithParam<PathCase> {};

TEST_P(SplitKv, MatchesTheReference) { expect_matches_reference(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Decode, SplitKv, ::testing::ValuesIn(for_every_isa(split_kv_cases())), path_case_name);

// A decode call's extra memory is scratch per thread and the partial outputs, bounded
// whatever the cache's length: the same at 32K and 128K keys, and far below the cache.
TEST(SplitKvMemory, DoesNotGrowWithTheKeys) {
  const std::int64_t heads = 8, heads_k = 2, d = 64;
  std::int64_t peak[2] = {};
  const std::int64_t lengths[2] = {32768, 131072};
  for (int n = 0; n < 2; ++n) {
    const std::int64_t keys = lengths[n];
    std::vector<float> q(heads * d, 0.5f), k(keys * heads_k * d, 0.25f), v(k.size(), 1.0f), out(q.size()), lse(heads);
    AttentionOptions o;
    o.num_threads = 2;
    reset_peak_allocated_bytes();
    const std::int64_t before = allocated_bytes();
    forward(TensorView::contiguous(q.data(), {1, 1, heads, d}), TensorView::contiguous(k.data(), {1, keys, heads_k, d}),
            TensorView::contiguous(v.data(), {1, keys, heads_k, d}), TensorView::contiguous(out.data(), {1, 1, heads, d}),
            TensorView::contiguous(lse.data(), {1, heads, 1}), o);
    peak[n] = peak_allocated_bytes() - before;
    EXPECT_NEAR(out[0], 1.0f, 1e-5f);
    EXPECT_LT(peak[n], static_cast<std::int64_t>(k.size() * sizeof(float)) / 64) << keys << " keys";
  }
  EXPECT_EQ(peak[0], peak[1]);
}

TEST(SplitKvErrors, RefusesWhatItCannotDo) {
  Case c;
  c.shape = {1, 2, 64, 2, 1, 16};
  c.set_block_mask({1, 1}, 2, 32);
  c.options.forward_kernel = Kernel::split_kv;
  expect_forward_error(c, "options.forward_kernel: split_kv does not take a block_mask");
  Case d;
  d.shape = {1, 1, 8, 2, 1, 16};
  d.options.num_splits = -1;
  expect_forward_error(d, "options.num_splits: must be >= 0");
}

}  // namespace
}  // namespace flashattn::testing
