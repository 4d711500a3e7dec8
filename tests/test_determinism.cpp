// test_determinism.cpp — bitwise identical results between runs and thread counts.
//
// The training case has few (batch, kv-head) pairs and many key tiles, so the backward splits
// the keys into chunks with separate dQ copies, and a bias broadcast over batches and heads
// whose gradient sums across them: the parts that could go wrong. The decoding case splits
// its keys into ranges merged by LSE.
#include <cstring>

#include "test_support.hpp"

namespace flashattn::testing {
namespace {

class Determinism : public ::testing::TestWithParam<Isa> {};

bool bitwise_equal(const harness::HostTensor& a, const harness::HostTensor& b) {
  const std::vector<double> x = a.to_double(), y = b.to_double();
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0;
}

// Forward and backward of the case with 1 thread, again with 1, then 2, 3 and 7: the same bits.
void expect_same_bits_for_any_thread_count(const harness::Case& c) {
  const harness::Inputs in = harness::make_inputs(c);
  auto run = [&](int threads) {
    harness::Case t = c;
    t.options.num_threads = threads;
    std::pair<harness::ForwardOutputs, harness::BackwardOutputs> r{harness::make_forward_outputs(t),
                                                                   harness::make_backward_outputs(t)};
    harness::run_forward(t, in, r.first, Algorithm::flash);
    harness::run_backward(t, in, r.first, r.second, Algorithm::flash);
    return r;
  };
  const auto first = run(1);
  for (int threads : {1, 2, 3, 7}) {
    const auto again = run(threads);
    EXPECT_TRUE(bitwise_equal(first.first.out, again.first.out)) << threads << " threads";
    EXPECT_TRUE(bitwise_equal(first.first.lse, again.first.lse)) << threads << " threads";
    EXPECT_TRUE(bitwise_equal(first.second.dq, again.second.dq)) << threads << " threads";
    EXPECT_TRUE(bitwise_equal(first.second.dk, again.second.dk)) << threads << " threads";
    EXPECT_TRUE(bitwise_equal(first.second.dv, again.second.dv)) << threads << " threads";
    EXPECT_TRUE(bitwise_equal(first.second.dbias, again.second.dbias)) << threads << " threads";
  }
}

TEST_P(Determinism, SameBitsForAnyThreadCountAndRepeat) {
  harness::Case c;
  c.shape = {2, 300, 333, 2, 1, 40};
  c.options.causal = true;
  std::vector<float> bias(300 * 333);
  for (std::size_t n = 0; n < bias.size(); ++n) bias[n] = 0.001f * static_cast<float>(n % 97);
  c.set_bias(std::move(bias), 1, 1);
  c.options.dropout_p = 0.1f;
  c.options.seed = 99;
  c.options.block_q = 16;
  c.options.block_k = 16;
  c.options.isa = GetParam();
  expect_same_bits_for_any_thread_count(c);
}

// Decoding (the split-KV forward): its key ranges and their merge order come from the
// problem alone.
TEST_P(Determinism, SplitKvSameBitsForAnyThreadCount) {
  harness::Case c;
  c.shape = {2, 2, 3001, 8, 2, 64};
  c.options.causal = true;
  c.options.isa = GetParam();
  expect_same_bits_for_any_thread_count(c);
}

INSTANTIATE_TEST_SUITE_P(Isas, Determinism, ::testing::ValuesIn(isas_to_test()), isa_param_name);

}  // namespace
}  // namespace flashattn::testing
