// test_ring.cpp — ring attention over MPI against the plain reference on the whole
// sequence. Run by ctest through mpirun with 1, 2, 3 and 4 ranks on this machine only.
//
// Every rank makes the same whole-sequence inputs, runs the reference and standard
// attention itself (the tolerance rule's baseline), then passes its own rows to the ring;
// the ranks' outputs are summed into whole-sequence tensors (each row owned by one rank,
// zeros elsewhere), so every rank checks the complete result with the harness's rule.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "flashattn/error.hpp"
#include "flashattn/ring.hpp"
#include "harness/harness.hpp"

namespace flashattn::ring {
namespace {

using harness::HostTensor;
using i64 = std::int64_t;

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// The global rows rank holds: the layout's split, or explicit contiguous lengths per rank.
std::vector<Chunk> rows_of(Layout layout, i64 seqlen, const std::vector<i64>& lengths, int rank) {
  if (lengths.empty()) return chunks(layout, seqlen, world_size(), rank);
  const i64 begin = std::accumulate(lengths.begin(), lengths.begin() + rank, i64{0});
  return {{begin, lengths[rank]}};
}

// Copies rows between a whole tensor and a local one (seq_dim 1: BSHD, 2: lse), either way.
void copy_rows(HostTensor& whole, HostTensor& local, const std::vector<Chunk>& chunks, bool to_local) {
  const TensorView& w = whole.view();
  const bool lse = w.rank == 3;
  i64 row = 0;
  for (const Chunk& c : chunks) {
    for (i64 a = 0; a < w.shape[0]; ++a) {
      for (i64 s = 0; s < c.length; ++s) {
        const i64 n2 = lse ? 1 : w.shape[2], n3 = lse ? 1 : w.shape[3];
        for (i64 x = 0; x < (lse ? w.shape[1] : n2); ++x) {
          for (i64 e = 0; e < n3; ++e) {
            float& g = lse ? whole.at(a, x, c.begin + s) : whole.at(a, c.begin + s, x, e);
            float& l = lse ? local.at(a, x, row + s) : local.at(a, row + s, x, e);
            if (to_local)
              l = g;
            else
              g = l;
          }
        }
      }
    }
    row += c.length;
  }
}

// A local tensor shaped like `whole` but for `rows` sequence rows (padded strides).
HostTensor local_like(const HostTensor& whole, i64 rows) {
  const TensorView& w = whole.view();
  if (w.rank == 3) return HostTensor(w.shape[0], w.shape[1], rows, 0, true);
  return HostTensor(w.shape[0], rows, w.shape[2], w.shape[3], true);
}

HostTensor shard_of(const HostTensor& whole, const std::vector<Chunk>& chunks) {
  i64 rows = 0;
  for (const Chunk& c : chunks) rows += c.length;
  HostTensor local = local_like(whole, rows);
  copy_rows(const_cast<HostTensor&>(whole), local, chunks, true);
  return local;
}

// The whole tensor every rank sees: each rank's rows placed, zeros elsewhere, summed.
HostTensor assemble(const HostTensor& like_whole, HostTensor& local, const std::vector<Chunk>& chunks) {
  const TensorView& w = like_whole.view();
  HostTensor whole = w.rank == 3 ? HostTensor(w.shape[0], w.shape[1], w.shape[2], 0, false)
                                 : HostTensor(w.shape[0], w.shape[1], w.shape[2], w.shape[3], false);
  copy_rows(whole, local, chunks, false);
  float* data = static_cast<float*>(whole.view().data);
  MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(whole.view().numel()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  return whole;
}

struct RingCase {
  harness::Case c;
  Layout layout = Layout::contiguous;
  std::vector<i64> lengths;  // contiguous: rows per rank (empty: the balanced split)
};

// Contiguous lengths that differ per rank: 11 + 9r rows, rank 1 none when there are several.
std::vector<i64> unequal_lengths(bool with_empty) {
  std::vector<i64> n(static_cast<std::size_t>(world_size()));
  for (int r = 0; r < world_size(); ++r) n[r] = (with_empty && r == 1) ? 0 : 11 + 9 * r;
  return n;
}

harness::Case make_case(i64 batch, i64 seqlen, i64 heads, i64 heads_k, i64 d, bool causal, float dropout) {
  harness::Case c;
  c.shape = {batch, seqlen, seqlen, heads, heads_k, d};
  c.options.causal = causal;
  c.options.dropout_p = dropout;
  c.options.seed = 0x5eed0000ull + static_cast<std::uint64_t>(seqlen);
  c.options.num_threads = 1;
  c.data_seed = static_cast<std::uint64_t>(seqlen * 7 + d);
  return c;
}

struct RingRun {
  HostTensor out, lse, dq, dk, dv;  // local
};

RingRun run_ring(const RingCase& rc, const harness::Inputs& in, const std::vector<Chunk>& mine) {
  const harness::Case& c = rc.c;
  RingRun run;
  HostTensor q = shard_of(in.q, mine), k = shard_of(in.k, mine), v = shard_of(in.v, mine);
  HostTensor dout = shard_of(in.dout, mine);
  harness::ForwardOutputs whole_shape = harness::make_forward_outputs(c);
  harness::BackwardOutputs grad_shape = harness::make_backward_outputs(c);
  run.out = shard_of(whole_shape.out, mine);
  run.lse = shard_of(whole_shape.lse, mine);
  run.dq = shard_of(grad_shape.dq, mine);
  run.dk = shard_of(grad_shape.dk, mine);
  run.dv = shard_of(grad_shape.dv, mine);
  for (HostTensor* t : {&run.out, &run.lse, &run.dq, &run.dk, &run.dv}) t->poison();
  forward(MPI_COMM_WORLD, q.view(), k.view(), v.view(), run.out.view(), run.lse.view(), c.options, rc.layout);
  backward(MPI_COMM_WORLD, dout.view(), q.view(), k.view(), v.view(), run.out.view(), run.lse.view(), run.dq.view(),
           run.dk.view(), run.dv.view(), c.options, rc.layout);
  for (HostTensor* t : {&run.out, &run.lse, &run.dq, &run.dk, &run.dv}) EXPECT_TRUE(t->padding_untouched());
  return run;
}

bool same_bits(const HostTensor& a, const HostTensor& b) {
  const std::vector<double> x = a.to_double(), y = b.to_double();
  return x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0);
}

void PrintTo(const RingCase& rc, std::ostream* os) {
  *os << to_string(rc.layout) << "/" << rc.c.name();
}

class RingAccuracy : public ::testing::TestWithParam<RingCase> {};

TEST_P(RingAccuracy, MatchesTheWholeSequenceReferenceForwardAndBackward) {
  const RingCase& rc = GetParam();
  const harness::Case& c = rc.c;
  const harness::Inputs in = harness::make_inputs(c);
  const harness::ReferenceOutputs ref = harness::run_reference(c, in, true);
  const harness::PathRun standard = harness::run_path(c, in, ref, Algorithm::standard);
  const std::vector<Chunk> mine = rows_of(rc.layout, c.shape.seqlen_q, rc.lengths, world_rank());

  RingRun run = run_ring(rc, in, mine);
  harness::ForwardOutputs fwd{assemble(standard.fwd.out, run.out, mine), assemble(standard.fwd.lse, run.lse, mine)};
  harness::BackwardOutputs bwd{assemble(standard.bwd.dq, run.dq, mine), assemble(standard.bwd.dk, run.dk, mine),
                               assemble(standard.bwd.dv, run.dv, mine), HostTensor()};
  harness::Errors errors = harness::forward_errors(fwd, ref);
  const harness::Errors grads = harness::backward_errors(bwd, ref);
  errors.dq = grads.dq, errors.dk = grads.dk, errors.dv = grads.dv;
  const double fraction = harness::worst_fraction_of_allowed(errors, standard.errors, ref);
  EXPECT_LE(fraction, 1.0) << "ranks " << world_size() << ": out " << errors.out << " lse " << errors.lse << " dq "
                           << errors.dq << " dk " << errors.dk << " dv " << errors.dv;

  // The same bits on a second run.
  RingRun again = run_ring(rc, in, mine);
  EXPECT_TRUE(same_bits(run.out, again.out) && same_bits(run.lse, again.lse) && same_bits(run.dq, again.dq) &&
              same_bits(run.dk, again.dk) && same_bits(run.dv, again.dv))
      << "a second run gave different bits";
}

std::vector<RingCase> accuracy_cases() {
  std::vector<RingCase> cases;
  // Contiguous slices of unequal lengths (one rank empty in the second), GQA, headdim 40.
  cases.push_back({make_case(2, 0, 4, 2, 40, false, 0.0f), Layout::contiguous, unequal_lengths(false)});
  cases.push_back({make_case(2, 0, 4, 2, 40, true, 0.0f), Layout::contiguous, unequal_lengths(true)});
  // Zigzag, lengths that 2P does not divide; causal and not; a longer one that tiles.
  cases.push_back({make_case(1, 103, 3, 1, 64, true, 0.0f), Layout::zigzag, {}});
  cases.push_back({make_case(2, 61, 2, 2, 32, false, 0.0f), Layout::zigzag, {}});
  cases.push_back({make_case(1, 333, 2, 1, 64, true, 0.0f), Layout::zigzag, {}});
  cases.push_back({make_case(1, 333, 2, 1, 64, true, 0.0f), Layout::contiguous, {}});
  // Dropout draws the whole sequence's mask: both layouts, causal.
  cases.push_back({make_case(1, 97, 4, 2, 48, true, 0.2f), Layout::zigzag, {}});
  cases.push_back({make_case(2, 0, 2, 1, 24, true, 0.3f), Layout::contiguous, unequal_lengths(true)});
  // Soft-capping acts on each score alone, the same on a slice as on the whole.
  RingCase capped{make_case(1, 77, 2, 1, 32, true, 0.0f), Layout::zigzag, {}};
  capped.c.options.softcap = 2.0f;
  cases.push_back(capped);
  // Key padding counts the whole sequence's keys; one batch sees only the first 5 keys,
  // another none.
  RingCase padded{make_case(3, 90, 2, 1, 32, true, 0.0f), Layout::zigzag, {}};
  padded.c.set_key_lengths({83, 5, 0});
  cases.push_back(padded);
  RingCase padded_dropout{make_case(2, 0, 2, 2, 16, false, 0.1f), Layout::contiguous, unequal_lengths(false)};
  cases.push_back(padded_dropout);
  // Contiguous cases take their total length from the per-rank lengths.
  for (RingCase& rc : cases) {
    if (rc.lengths.empty()) continue;
    const i64 n = std::accumulate(rc.lengths.begin(), rc.lengths.end(), i64{0});
    rc.c.shape.seqlen_q = rc.c.shape.seqlen_k = n;
  }
  const std::int32_t n = static_cast<std::int32_t>(cases.back().c.shape.seqlen_k);
  cases.back().c.set_key_lengths({n - 3, n / 2});
  return cases;
}

std::string case_name(const ::testing::TestParamInfo<RingCase>& info) {
  std::string name = std::string(to_string(info.param.layout)) + "_" + info.param.c.name() +
                     (info.param.c.key_lengths ? "_keylengths" : "");
  for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Ranks, RingAccuracy, ::testing::ValuesIn(accuracy_cases()), case_name);

// The zigzag layout gives every rank the same causal work: 2P + 1 kernel calls each (its
// two diagonal chunks, the late chunk against its own early one, two per other slice).
TEST(RingBalance, ZigzagRanksMakeTheSameCausalPairs) {
  const int P = world_size();
  harness::Case c = make_case(1, 64 * P, 2, 2, 16, true, 0.0f);
  const harness::Inputs in = harness::make_inputs(c);
  const std::vector<Chunk> mine = chunks(Layout::zigzag, c.shape.seqlen_q, P, world_rank());
  HostTensor q = shard_of(in.q, mine), k = shard_of(in.k, mine), v = shard_of(in.v, mine);
  harness::ForwardOutputs whole = harness::make_forward_outputs(c);
  HostTensor out = shard_of(whole.out, mine), lse = shard_of(whole.lse, mine);
  Stats stats;
  forward(MPI_COMM_WORLD, q.view(), k.view(), v.view(), out.view(), lse.view(), c.options, Layout::zigzag, &stats);
  EXPECT_EQ(stats.pairs, 2 * P + 1);
  EXPECT_EQ(stats.steps, P);
  EXPECT_EQ(stats.bytes_sent, (P - 1) * 2 * i64{64} * 2 * 16 * 4);  // P − 1 sends of K and V, 64 rows
  // Contiguous: rank r makes r + 1 calls (the keys of ranks 0 .. r).
  const std::vector<Chunk> run = chunks(Layout::contiguous, c.shape.seqlen_q, P, world_rank());
  HostTensor q2 = shard_of(in.q, run), k2 = shard_of(in.k, run), v2 = shard_of(in.v, run);
  HostTensor out2 = shard_of(whole.out, run), lse2 = shard_of(whole.lse, run);
  forward(MPI_COMM_WORLD, q2.view(), k2.view(), v2.view(), out2.view(), lse2.view(), c.options, Layout::contiguous,
          &stats);
  EXPECT_EQ(stats.pairs, world_rank() + 1);
}

// shard and unshard: the rows the chunks name, and back.
TEST(RingLayout, ShardTakesTheChunksRowsAndUnshardPutsThemBack) {
  const int P = world_size();
  for (Layout layout : {Layout::contiguous, Layout::zigzag}) {
    for (i64 n : {i64{0}, i64{1}, i64{7}, i64{50}}) {
      i64 covered = 0;
      for (int r = 0; r < P; ++r) {
        const std::vector<Chunk> cs = chunks(layout, n, P, r);
        EXPECT_EQ(cs.size(), layout == Layout::zigzag ? 2u : 1u);
        for (const Chunk& ch : cs) covered += ch.length;
        EXPECT_EQ(local_length(layout, n, P, r),
                  std::accumulate(cs.begin(), cs.end(), i64{0}, [](i64 s, const Chunk& ch) { return s + ch.length; }));
      }
      EXPECT_EQ(covered, n);
      HostTensor whole(2, n, 3, 5, false), lse_whole(2, 3, n, 0, false);
      whole.fill_uniform(11, -1, 1);
      lse_whole.fill_uniform(12, -1, 1);
      HostTensor back(2, n, 3, 5, false), lse_back(2, 3, n, 0, false);
      for (int r = 0; r < P; ++r) {
        const std::vector<Chunk> cs = chunks(layout, n, P, r);
        HostTensor local = local_like(whole, local_length(layout, n, P, r));
        HostTensor lse_local = local_like(lse_whole, local_length(layout, n, P, r));
        shard(whole.view(), local.view(), 1, layout, P, r);
        shard(lse_whole.view(), lse_local.view(), 2, layout, P, r);
        EXPECT_TRUE(same_bits(local, shard_of(whole, cs)));
        EXPECT_TRUE(same_bits(lse_local, shard_of(lse_whole, cs)));
        unshard(local.view(), back.view(), 1, layout, P, r);
        unshard(lse_local.view(), lse_back.view(), 2, layout, P, r);
      }
      EXPECT_TRUE(same_bits(back, whole));
      EXPECT_TRUE(same_bits(lse_back, lse_whole));
    }
  }
  HostTensor whole(1, 10, 1, 4, false), wrong(1, 3, 1, 4, false);
  EXPECT_THROW(shard(whole.view(), wrong.view(), 1, Layout::zigzag, 1, 0), Error);
  EXPECT_THROW(shard(whole.view(), wrong.view(), 4, Layout::zigzag, 1, 0), Error);
}

// Bad arguments: every rank throws (none is left waiting), naming the argument, and
// nothing is written.
TEST(RingErrors, EveryRankThrowsBeforeWriting) {
  using ::testing::HasSubstr;
  const int P = world_size(), rank = world_rank();
  harness::Case c = make_case(1, 12 * P, 2, 1, 16, true, 0.0f);
  const harness::Inputs in = harness::make_inputs(c);
  const std::vector<Chunk> mine = chunks(Layout::contiguous, c.shape.seqlen_q, P, rank);
  HostTensor q = shard_of(in.q, mine), k = shard_of(in.k, mine), v = shard_of(in.v, mine);
  harness::ForwardOutputs whole = harness::make_forward_outputs(c);
  HostTensor out = shard_of(whole.out, mine), lse = shard_of(whole.lse, mine);
  auto expect_error = [&](const AttentionOptions& o, Layout layout, const TensorView& out_view,
                          const std::string& message) {
    out.poison();
    lse.poison();
    try {
      forward(MPI_COMM_WORLD, q.view(), k.view(), v.view(), out_view, lse.view(), o, layout);
      ADD_FAILURE() << "no error, expected one with '" << message << "'";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(message));
    }
    const std::vector<double> values = out.to_double();
    for (double x : values) ASSERT_TRUE(std::isnan(x)) << "out was written";
  };
  AttentionOptions window = c.options;
  window.window_left = 4;
  expect_error(window, Layout::contiguous, out.view(), "options.window_left");
  AttentionOptions alibi = c.options;
  const std::vector<float> slopes(2, 0.5f);
  alibi.alibi_slopes = slopes.data();
  expect_error(alibi, Layout::contiguous, out.view(), "options.alibi_slopes");
  // The contiguous split is not the zigzag one (for P > 1 with these lengths: 12 per rank
  // against chunks of 6 and 6 — equal, so break it on the last rank instead).
  HostTensor short_out = local_like(whole.out, q.view().shape[1] + 1);
  const TensorView bad_out = rank == P - 1 ? short_out.view() : out.view();
  expect_error(c.options, Layout::contiguous, bad_out,
               rank == P - 1 ? "out" : "rank " + std::to_string(P - 1) + " refused its arguments");
  AttentionOptions keys = c.options;
  const std::vector<std::int32_t> too_long = {static_cast<std::int32_t>(12 * P + 1)};
  keys.key_lengths = too_long.data();
  expect_error(keys, Layout::contiguous, out.view(), "options.key_lengths");
  if (P > 1) {  // ranks that pad different keys
    AttentionOptions mixed = c.options;
    const std::vector<std::int32_t> lengths = {rank == 0 ? 5 : 6};
    mixed.key_lengths = lengths.data();
    expect_error(mixed, Layout::contiguous, out.view(), "options.key_lengths differs from rank 0's");
  }
}

// Zigzag with lengths that are not the zigzag split: a clear error naming the layout.
TEST(RingErrors, ZigzagNeedsTheZigzagSplit) {
  const int P = world_size();
  harness::Case c = make_case(1, 0, 1, 1, 8, true, 0.0f);
  const i64 rows = 5 + 3 * world_rank();  // for P > 1 not the split of their sum into 2P
  HostTensor q(1, rows, 1, 8, false), k = q, v = q, out = q, lse(1, 1, rows, 0, false);
  q.fill_uniform(1, -1, 1);
  if (P == 1) {  // one rank: any length is chunks 0 and 1 of itself
    EXPECT_NO_THROW(
        forward(MPI_COMM_WORLD, q.view(), k.view(), v.view(), out.view(), lse.view(), c.options, Layout::zigzag));
    return;
  }
  EXPECT_THROW(
      {
        try {
          forward(MPI_COMM_WORLD, q.view(), k.view(), v.view(), out.view(), lse.view(), c.options, Layout::zigzag);
        } catch (const Error& e) {
          EXPECT_THAT(e.what(), ::testing::HasSubstr("zigzag"));
          throw;
        }
      },
      Error);
}

}  // namespace
}  // namespace flashattn::ring

// MPI around gtest: every rank runs every test; failures anywhere fail the run. Only rank
// 0 prints the progress; a failure on another rank prints its own message.
int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (failed != 0 && rank != 0) std::fprintf(stderr, "rank %d: tests failed (run alone with --gtest_* to see)\n", rank);
  MPI_Finalize();
  return any;
}
