// test_dtype.cpp — bf16 and f16: the conversions bit for bit, attention in both dtypes
// against the reference on the rounded inputs, and the errors for mixed dtypes.
//
// Accuracy rule for the 16-bit dtypes (harness::allowed_error): max |flash − reference| ≤
// 2 · max |standard − reference| + the dtype's unit roundoff · max(1, max |reference|), with
// standard attention computed as PyTorch computes it in that dtype (S, P, dP, dS stored in
// the dtype, products accumulated in f32) and the reference in float64 on the same rounded
// inputs.
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>

#include "api/validate.hpp"
#include "core/dtype.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/flash.hpp"
#include "test_support.hpp"

namespace flashattn::testing {
namespace {

using harness::Case;
using harness::Shape;

float from_bits(std::uint32_t u) { return std::bit_cast<float>(u); }
std::uint32_t bits_of(float x) { return std::bit_cast<std::uint32_t>(x); }

TEST(ScalarConversion, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);               // tie, even below
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);           // tie, odd below: up
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);    // above the tie
  EXPECT_EQ(f32_to_bf16(-1.0f - 0x1p-8f + 0x1p-20f), 0xbf80);   // below the tie
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // beyond bf16's largest: inf
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7f7fffu)), 0x7f7f);            // just below the tie: largest finite
  EXPECT_EQ(f32_to_bf16(from_bits(0x7fa00001u)), 0x7fe0);            // a signaling NaN is quieted
  EXPECT_EQ(f32_to_bf16(from_bits(0xffc12345u)), 0xffc1);            // sign and top payload kept
  EXPECT_EQ(f32_to_bf16(from_bits(0x00008000u)), 0x0000);            // subnormal tie, even below
  EXPECT_EQ(f32_to_bf16(from_bits(0x00018000u)), 0x0002);            // subnormal tie, odd below
  EXPECT_EQ(f32_to_bf16(from_bits(0x00018001u)), 0x0002);
  EXPECT_EQ(bits_of(bf16_to_f32(0x0001)), 0x00010000u);  // subnormals kept
  EXPECT_EQ(bf16_to_f32(0xc040), -3.0f);
}

TEST(ScalarConversion, F16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);      // tie, even below
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);  // tie, odd below: up
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.996f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);             // the tie above the largest: inf
  EXPECT_EQ(f32_to_f16(-1e9f), 0xfc00);
  EXPECT_EQ(f32_to_f16(0x1p-14f), 0x0400);             // smallest normal
  EXPECT_EQ(f32_to_f16(0x1p-24f), 0x0001);             // smallest subnormal
  EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000);             // half of it: tie, even
  EXPECT_EQ(f32_to_f16(0x1p-25f * 1.0000001f), 0x0001);
  EXPECT_EQ(f32_to_f16(3 * 0x1p-25f), 0x0002);         // tie between 1 and 2: even
  EXPECT_EQ(f32_to_f16(-5 * 0x1p-25f), 0x8002);        // tie between 2 and 3: even
  EXPECT_EQ(f32_to_f16(0x1p-14f - 0x1p-26f), 0x0400);  // rounds up into the normals
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(f32_to_f16(from_bits(0x7f800001u)), 0x7e00);  // signaling NaN, payload below f16's: quiet NaN
  EXPECT_EQ(f32_to_f16(from_bits(0xffc02000u)), 0xfe01);
  EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x83ff), -1023 * 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_EQ(bits_of(f16_to_f32(0xfc01)), 0xffc02000u);  // a signaling NaN is quieted, payload kept
}

// Every 16-bit value survives the round trip, and every f32 rounds to a nearest neighbour.
TEST(ScalarConversion, RoundTripsAndNearest) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    if (!std::isnan(bf16_to_f32(bits))) {
      EXPECT_EQ(f32_to_bf16(bf16_to_f32(bits)), bits) << std::hex << h;
    }
    if (!std::isnan(f16_to_f32(bits))) {
      EXPECT_EQ(f32_to_f16(f16_to_f32(bits)), bits) << std::hex << h;
    }
  }
  std::mt19937 rng(7);
  for (int n = 0; n < 200000; ++n) {
    const float x = from_bits(rng() & 0x7fffffffu);
    if (std::isnan(x) || std::isinf(x)) continue;
    struct {
      DType dtype;
      double largest;
    } kinds[] = {{DType::bf16, bf16_to_f32(0x7f7f)}, {DType::f16, 65504.0}};
    for (const auto& kind : kinds) {
      if (x > kind.largest) continue;
      const std::uint16_t r = kind.dtype == DType::bf16 ? f32_to_bf16(x) : f32_to_f16(x);
      auto value = [&](std::uint16_t h) {
        return static_cast<double>(kind.dtype == DType::bf16 ? bf16_to_f32(h) : f16_to_f32(h));
      };
      const double err = std::abs(value(r) - x);
      if (r > 0) {
        EXPECT_LE(err, std::abs(value(static_cast<std::uint16_t>(r - 1)) - x)) << x;
      }
      if (value(static_cast<std::uint16_t>(r + 1)) <= kind.largest) {
        EXPECT_LE(err, std::abs(value(static_cast<std::uint16_t>(r + 1)) - x)) << x;
      }
    }
  }
}

class VectorConversion : public ::testing::TestWithParam<Isa> {};

// Each build's vector conversion equals the scalar rule bit for bit on special values and a
// sweep over every f32 exponent and sign (every 251st bit pattern), in odd lengths.
TEST_P(VectorConversion, EqualsScalarBitForBit) {
  const KernelSet& kernels = kernels_for(GetParam());
  std::vector<float> x;
  for (std::uint64_t u = 0; u < (std::uint64_t{1} << 32); u += 251) x.push_back(from_bits(static_cast<std::uint32_t>(u)));
  for (std::uint32_t u : {0x7f800000u, 0xff800000u, 0x7f800001u, 0x7fc00000u, 0xffffffffu, 0x7f7fffffu, 0x477ff000u,
                          0x477fefffu, 0x33000000u, 0x33000001u, 0x00008000u, 0x00018000u, 0x3f808000u, 0x3f818000u}) {
    x.push_back(from_bits(u));
  }
  x.push_back(1.0f);  // an odd length, so the scalar tail runs too
  const auto n = static_cast<std::int64_t>(x.size());
  for (DType dtype : {DType::bf16, DType::f16}) {
    std::vector<std::uint16_t> got(x.size());
    kernels.convert_from_f32(dtype, x.data(), got.data(), n);
    std::int64_t mismatches = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::uint16_t want = dtype == DType::bf16 ? f32_to_bf16(x[i]) : f32_to_f16(x[i]);
      if (got[i] != want && mismatches++ < 5) {
        ADD_FAILURE() << to_string(dtype) << ": f32 bits " << std::hex << bits_of(x[i]) << " gave " << got[i]
                      << ", expected " << want;
      }
    }
    EXPECT_EQ(mismatches, 0) << to_string(dtype) << " from f32";
    std::vector<std::uint16_t> all(0x10001);
    for (std::uint32_t h = 0; h < all.size(); ++h) all[h] = static_cast<std::uint16_t>(h);
    std::vector<float> back(all.size());
    kernels.convert_to_f32(dtype, all.data(), back.data(), static_cast<std::int64_t>(all.size()));
    mismatches = 0;
    for (std::size_t h = 0; h < all.size(); ++h) {
      const float want = dtype == DType::bf16 ? bf16_to_f32(all[h]) : f16_to_f32(all[h]);
      if (bits_of(back[h]) != bits_of(want) && mismatches++ < 5) {
        ADD_FAILURE() << to_string(dtype) << ": " << std::hex << all[h] << " gave f32 bits " << bits_of(back[h])
                      << ", expected " << bits_of(want);
      }
    }
    EXPECT_EQ(mismatches, 0) << to_string(dtype) << " to f32";
  }
}

INSTANTIATE_TEST_SUITE_P(EveryIsa, VectorConversion, ::testing::ValuesIn(isas_to_test()), isa_param_name);

// The awkward shapes of the f32 sweep, and every feature, in each 16-bit dtype.
std::vector<Case> dtype_cases() {
  std::vector<Case> cases;
  std::uint64_t seed = 500;
  auto add = [&](Shape shape, auto&& configure, std::vector<DType> dtypes = {DType::bf16, DType::f16}) {
    for (DType dtype : dtypes) {
      Case c;
      c.shape = shape;
      c.dtype = dtype;
      c.data_seed = seed;
      c.options.seed = seed * 31;
      configure(c);
      cases.push_back(c);
    }
    ++seed;
  };
  using Options = AttentionOptions;
  add({2, 65, 97, 4, 2, 59}, [](Case& c) { c.padded = true; });
  add({1, 97, 64, 8, 2, 64}, [](Case& c) { c.options.causal = true; });
  add({1, 63, 255, 2, 1, 128}, [](Case& c) { c.options.causal = true, c.options.dropout_p = 0.15f; });
  add({2, 17, 17, 2, 2, 40}, [](Case& c) { c.options.dropout_p = 0.3f, c.padded = true; });
  add({1, 128, 200, 2, 2, 32}, [](Case& c) { c.options.window_left = 20, c.options.window_right = 5; });
  add({1, 96, 96, 2, 1, 48}, [](Case& c) { c.options.causal = true, c.options.prefix_length = 30; });
  add({2, 40, 70, 2, 1, 32}, [](Case& c) { c.set_key_lengths({0, 51}); });
  add({1, 80, 80, 2, 2, 16}, [](Case& c) {
    std::vector<std::int32_t> ids(80);
    for (int i = 0; i < 80; ++i) ids[i] = i / 23;
    c.set_documents(ids, ids);
  });
  add({1, 33, 45, 2, 2, 24}, [](Case& c) {
    std::vector<std::uint8_t> keep(33 * 45);
    for (std::size_t i = 0; i < keep.size(); ++i) keep[i] = (i * 7) % 5 != 0;
    c.set_mask(keep, 1, 1);
  });
  add({2, 50, 60, 2, 2, 32}, [](Case& c) {
    std::vector<float> bias(2 * 50 * 60);
    for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = std::sin(0.37f * static_cast<float>(i));
    c.set_bias(bias, 1, 2);
  });
  add({1, 70, 70, 2, 2, 64}, [](Case& c) { c.options.softcap = 3.0f, c.options.causal = true; });
  static const float slopes[] = {0.25f, 0.0625f};
  add({1, 70, 90, 2, 2, 32}, [](Case& c) { c.options.alibi_slopes = slopes; });
  add({1, 1, 1, 2, 2, 32}, [](Case& c) { c.set_varlen({5, 40, 0, 17}, {9, 33, 12, 17}); c.options.causal = true; });
  add({1, 96, 96, 2, 2, 32}, [](Case& c) {
    std::vector<std::uint8_t> blocks(6 * 6);
    for (std::size_t i = 0; i < blocks.size(); ++i) blocks[i] = (i % 3) != 1;
    c.set_block_mask(blocks, 16, 16);
  });
  add({2, 3, 300, 8, 2, 64}, [](Case& c) { c.options.forward_kernel = Options::ForwardKernel::split_kv; });
  // Split-KV widens 16-bit K and V in registers: headdim past the last vector and register tile.
  add({1, 2, 150, 6, 2, 59}, [](Case& c) {
    c.options.forward_kernel = Options::ForwardKernel::split_kv, c.options.causal = true;
  });
  add({1, 1025, 97, 2, 1, 80}, [](Case& c) { c.options.causal = true; });
  // Long enough that bf16 products pack Q and dO in two waves (flash.cpp: 2.1 MB a head, seven
  // heads to a 16 MiB wave); f16 packs nothing.
  add({1, 4096, 40, 8, 8, 64}, [](Case&) {}, {DType::bf16});
  // Empty sequences: no keys (every row sees none: 0 and −∞), no queries.
  add({2, 9, 0, 2, 1, 16}, [](Case&) {});
  add({1, 0, 7, 2, 2, 16}, [](Case& c) { c.padded = true; });
  return cases;
}

class DtypeAccuracy : public ::testing::TestWithParam<PathCase> {};

std::vector<std::pair<DType, Isa>> dtype_isa_pairs() {
  std::vector<std::pair<DType, Isa>> pairs;
  for (DType dtype : {DType::bf16, DType::f16}) {
    for (Isa isa : isas_to_test()) pairs.emplace_back(dtype, isa);
  }
  return pairs;
}

TEST_P(DtypeAccuracy, ForwardAndBackwardMatchReference) { expect_matches_reference(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Sweep, DtypeAccuracy, ::testing::ValuesIn(for_every_isa(dtype_cases())), path_case_name);

// Every output of the flash forward (and backward) of `c` at `threads` threads, as doubles.
std::vector<double> flash_results(const Case& c, const harness::Inputs& in, int threads, bool backward) {
  Case t = c;
  t.options.num_threads = threads;
  harness::ForwardOutputs fwd = harness::make_forward_outputs(t);
  harness::run_forward(t, in, fwd, Algorithm::flash);
  std::vector<const harness::HostTensor*> outputs{&fwd.out, &fwd.lse};
  std::optional<harness::BackwardOutputs> grads;
  if (backward) {
    grads = harness::make_backward_outputs(t);
    harness::run_backward(t, in, fwd, *grads, Algorithm::flash);
    outputs.insert(outputs.end(), {&grads->dq, &grads->dk, &grads->dv});
  }
  std::vector<double> all;
  for (const harness::HostTensor* x : outputs) {
    const std::vector<double> v = x->to_double();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

// Same bits on every run and for every thread count, on every kernel build.
TEST(Dtype, DeterministicAcrossRunsAndThreads) {
  for (const auto& [dtype, isa] : dtype_isa_pairs()) {
    Case c;
    c.shape = {2, 77, 130, 4, 2, 64};
    c.dtype = dtype;
    c.options.isa = isa;
    c.options.causal = true;
    c.options.dropout_p = 0.1f;
    c.options.seed = 3;
    const harness::Inputs in = harness::make_inputs(c);
    const std::vector<double> first = flash_results(c, in, 1, true);
    EXPECT_TRUE(same_bits(flash_results(c, in, 2, true), first)) << to_string(dtype) << " on " << to_string(isa);
    EXPECT_TRUE(same_bits(flash_results(c, in, 1, true), first)) << to_string(dtype) << " on " << to_string(isa);
  }
}

// The kernels' packed copies are made a wave at a time (flash.cpp). With one thread these
// cases take two waves — the forward's K and V (20 MB a pair; 10 in bf16 where the build
// multiplies bf16) on every build, the backward's Q and dO (4.2 MB a group of two heads) on
// the builds that pack them — and with two threads one. Waves change no sum: the same bits.
TEST(Dtype, WavesChangeNoBits) {
  using Kernel = AttentionOptions::ForwardKernel;
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    Case forward_case, backward_case;
    forward_case.shape = {1, 9, 10000, 2, 2, 256};
    forward_case.options.forward_kernel = Kernel::tiled;
    forward_case.options.causal = true;
    forward_case.options.window_left = 300;  // every key packed, a few hundred attended: quick to emulate
    backward_case.shape = {1, 4096, 40, 8, 4, 64};
    forward_case.dtype = backward_case.dtype = dtype;
    const harness::Inputs forward_in = harness::make_inputs(forward_case);
    const harness::Inputs backward_in = harness::make_inputs(backward_case);
    for (Isa isa : isas_to_test()) {
      forward_case.options.isa = backward_case.options.isa = isa;
      const bool backward_packs = dtype == DType::bf16 && (isa == Isa::avx512_bf16 || isa == Isa::amx);
      const std::string where = std::string(to_string(dtype)) + " on " + to_string(isa);

      auto waves = [&](const Case& c, int threads) {
        Case t = c;
        t.options.num_threads = threads;
        Problem p = harness::problem_of(t);
        p.q_dtype = p.kv_dtype = p.out_dtype = dtype;
        const TileConfig tiles = choose_tiles(p);
        const ForwardPlan fwd = flash_forward_plan(p, tiles);
        const BackwardPlan bwd = flash_backward_plan(p, tiles);
        EXPECT_EQ(bwd.packed_q_floats > 0, backward_packs) << where;
        return std::pair{ceil_div(fwd.pairs, fwd.pairs_per_wave), ceil_div(bwd.groups, bwd.groups_per_wave)};
      };
      EXPECT_GT(waves(forward_case, 1).first, 1) << where;
      EXPECT_EQ(waves(forward_case, 2).first, 1) << where;
      EXPECT_EQ(waves(backward_case, 1).second > 1, backward_packs) << where;
      EXPECT_EQ(waves(backward_case, 2).second, 1) << where;

      EXPECT_TRUE(same_bits(flash_results(forward_case, forward_in, 1, false),
                            flash_results(forward_case, forward_in, 2, false)))
          << "forward, " << where;
      if (dtype != DType::bf16) continue;  // the backward's waves are bf16's
      EXPECT_TRUE(same_bits(flash_results(backward_case, backward_in, 1, true),
                            flash_results(backward_case, backward_in, 2, true)))
          << "backward, " << where;
    }
  }
}

// Mixed dtypes and a 16-bit lse are refused before anything is written.
TEST(Dtype, MixedDtypesAreErrorsBeforeWriting) {
  Case c;
  c.shape = {1, 8, 8, 2, 2, 16};
  c.dtype = DType::bf16;
  const harness::Inputs in = harness::make_inputs(c);
  harness::ForwardOutputs fwd = harness::make_forward_outputs(c);
  Case f32 = c;
  f32.dtype = DType::f32;
  const harness::Inputs in32 = harness::make_inputs(f32);
  Case f16 = c;
  f16.dtype = DType::f16;
  const harness::ForwardOutputs fwd16 = harness::make_forward_outputs(f16);
  fwd.out.poison();
  fwd.lse.poison();
  auto expect_error = [&](const TensorView& q, const TensorView& k, const TensorView& out, const TensorView& lse,
                          const std::string& message) {
    try {
      forward(q, k, in.v.view(), out, lse);
      ADD_FAILURE() << "no error; expected: " << message;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr(message));
    }
  };
  expect_error(in.q.view(), in32.k.view(), fwd.out.view(), fwd.lse.view(), "k: expected dtype bf16, got f32");
  expect_error(in.q.view(), in.k.view(), fwd16.out.view(), fwd.lse.view(), "out: expected dtype bf16, got f16");
  expect_error(in.q.view(), in.k.view(), fwd.out.view(), fwd16.out.view(), "lse: expected a tensor of rank 3");
  TensorView lse16 = fwd.lse.view();
  lse16.dtype = DType::bf16;
  expect_error(in.q.view(), in.k.view(), fwd.out.view(), lse16, "lse: expected dtype f32, got bf16");
  TensorView q8 = in.q.view();
  q8.dtype = DType::u8;
  expect_error(q8, in.k.view(), fwd.out.view(), fwd.lse.view(), "q: expected dtype f32, bf16 or f16, got u8");
  const harness::ForwardOutputs& untouched = fwd;
  for (const std::vector<double>& values : {untouched.out.to_double(), untouched.lse.to_double()}) {
    for (double x : values) ASSERT_TRUE(std::isnan(x)) << "an output was written before the error";
  }
}

}  // namespace
}  // namespace flashattn::testing
