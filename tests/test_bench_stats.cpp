// The benchmark's statistics and timing rules (tools/stats.hpp, tools/timing.hpp): summaries,
// the disturbance rule driven by a scripted pulse, interleaving, the consistency check of
// the passes, Student's t and the A/B ratio's interval, and the OpenBLAS core warning.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <string>
#include <vector>

#include "bench.hpp"
#include "report.hpp"
#include "stats.hpp"
#include "timing.hpp"

namespace flashattn::cli {
namespace {

TEST(BenchStats, SummaryUsesInterpolatedQuartiles) {
  const Summary s = summarize({4, 1, 3, 2});
  EXPECT_EQ(s.n, 4u);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 4);
  EXPECT_DOUBLE_EQ(s.median, 2.5);
  EXPECT_DOUBLE_EQ(s.q1, 1.75);
  EXPECT_DOUBLE_EQ(s.q3, 3.25);
  EXPECT_DOUBLE_EQ(s.spread(), 4.0);
  EXPECT_DOUBLE_EQ(summarize({7}).median, 7);
  EXPECT_DOUBLE_EQ(median({5, 1, 9}), 5);
  EXPECT_EQ(summarize({}).n, 0u);
}

TEST(BenchStats, PulseIsSlowOnlyBeyondTheTolerance) {
  PulseMonitor monitor(0.15);
  EXPECT_FALSE(monitor.slow(1e9)) << "no reference yet: nothing is slow";
  for (double p : {100.0, 101.0, 99.0}) monitor.add(p);
  EXPECT_DOUBLE_EQ(monitor.median_ms(), 100.0);
  // Speed 15% below the median means a pulse of 100 / 0.85 = 117.6 ms.
  EXPECT_FALSE(monitor.slow(117.0));
  EXPECT_TRUE(monitor.slow(118.0));
  EXPECT_FALSE(monitor.slow(50.0)) << "a fast pulse is not a disturbance";
}

// The default tolerance separates the two speeds of the Xeon VM that kPulseTolerance
// describes: its fast pulses (45–48.5 ms) are quiet, its slow ones (50–54 ms) disturbed.
TEST(BenchStats, DefaultToleranceCatchesATenPercentSlowStretch) {
  PulseMonitor monitor;
  for (double p : {45.3, 46.2, 46.5, 46.8, 47.1, 47.3, 50.9, 51.8, 53.6}) monitor.add(p);
  EXPECT_DOUBLE_EQ(monitor.reference_ms(), 46.5);
  for (double fast : {45.1, 47.3, 48.5}) EXPECT_FALSE(monitor.slow(fast)) << fast;
  for (double slow : {50.4, 51.8, 54.2}) EXPECT_TRUE(monitor.slow(slow)) << slow;
}

TEST(BenchStats, AStretchOfSlowPulsesDoesNotBecomeTheReference) {
  PulseMonitor monitor(0.15);
  for (int i = 0; i < 5; ++i) monitor.add(160);  // the session starts in a slow stretch
  EXPECT_FALSE(monitor.slow(160));
  for (int i = 0; i < 20; ++i) monitor.add(100);  // then the machine runs at its speed
  EXPECT_DOUBLE_EQ(monitor.reference_ms(), 100);
  EXPECT_TRUE(monitor.slow(160)) << "the first runs, judged again at the end, were disturbed";
  for (int i = 0; i < 20; ++i) monitor.add(160);  // even when slow pulses are the majority
  EXPECT_DOUBLE_EQ(monitor.median_ms(), 160);
  EXPECT_TRUE(monitor.slow(160));
}

// A scripted machine: case runs return fixed times, pulses follow a script (one value per
// call, in order); the order of the calls is logged.
struct ScriptedMachine {
  std::vector<double> pulses;
  std::size_t next_pulse = 0;
  std::vector<std::string> log;
  double pulse() {
    log.push_back("p");
    return next_pulse < pulses.size() ? pulses[next_pulse++] : 100.0;
  }
};

// A competitor the pulse does not see: other processes took half the machine during run 2
// (and its pulse), while every pulse stayed at the reference.
TEST(BenchTiming, RunsBesideOtherProcessesAreDiscardedAndRepeated) {
  ScriptedMachine m;
  PulseMonitor monitor;
  for (int i = 0; i < 5; ++i) monitor.add(100);
  const TimingPolicy policy{3, 3, 6, 0.0};
  int run = 0, window = 0;
  std::vector<double> times = {10, 50, 11, 12};
  // The first call opens the window; then one per run (run and its pulse).
  std::vector<double> shares = {0.9, 0.02, 0.5, kMaxOtherCpuShare, 0.0};
  const auto t = time_interleaved(policy, monitor, {[&] { return times[run++]; }}, [&] { return m.pulse(); }, {},
                                  [&] { return shares[window++]; });
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].discarded, 1);
  EXPECT_FALSE(t[0].unstable);
  EXPECT_EQ(t[0].quiet_ms, (std::vector<double>{10, 11, 12}));
  EXPECT_EQ(window, 5);
}

// The share is read from /proc: a fraction, and a busy competitor shows in it.
TEST(BenchTiming, OtherCpuShareIsAFraction) {
  OtherCpuShare share;
  const double idle = share();
  EXPECT_GE(idle, 0.0);
  EXPECT_LE(idle, 1.0);
}

TEST(BenchTiming, RunsNextToASlowPulseAreDiscardedAndRepeated) {
  ScriptedMachine m;
  // Pulses: the one before the first run, then one after each run. The 3rd pulse (after
  // run 2) is slow, so runs 2 and 3 (it lies between them) are disturbed.
  m.pulses = {100, 100, 160, 100, 100, 100, 100};
  PulseMonitor monitor;
  for (int i = 0; i < 5; ++i) monitor.add(100);
  const TimingPolicy policy{3, 3, 6, 0.0};
  int run = 0;
  std::vector<double> times = {10, 50, 60, 11, 12, 13};
  const auto t = time_interleaved(policy, monitor, {[&] { return times[run++]; }}, [&] { return m.pulse(); });
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].discarded, 2);
  EXPECT_FALSE(t[0].unstable);
  EXPECT_EQ(t[0].quiet_ms, (std::vector<double>{10, 11, 12}));
  EXPECT_EQ(t[0].all_ms.size(), 5u);
  EXPECT_DOUBLE_EQ(t[0].summary.median, 11);
  EXPECT_DOUBLE_EQ(t[0].pulse_median_ms, 100);
}

TEST(BenchTiming, ACaseThatNeverGetsAQuietRunIsUnstableAfterItsRetries) {
  ScriptedMachine m;
  m.pulses = {100};
  for (int i = 0; i < 50; ++i) m.pulses.push_back(200);  // a competing process from the first run on
  PulseMonitor monitor;
  for (int i = 0; i < 101; ++i) monitor.add(100);  // a long quiet session so far
  const TimingPolicy policy{3, 10, 4, 0.0};  // no budget: the retries are counted alone
  int runs = 0;
  const auto t = time_interleaved(policy, monitor, {[&] { return 20.0 + runs++; }}, [&] { return m.pulse(); });
  EXPECT_TRUE(t[0].unstable);
  EXPECT_EQ(t[0].discarded, 4) << "bounded retries";
  EXPECT_EQ(runs, 4);
  EXPECT_TRUE(t[0].quiet_ms.empty());
  EXPECT_EQ(t[0].summary.n, 4u) << "an unstable case still has a figure: every run's";
  EXPECT_DOUBLE_EQ(t[0].pulse_median_ms, 200);
}

TEST(BenchTiming, ACheapCaseOutwaitsASlowStretchWithinFiveBudgets) {
  ScriptedMachine m;
  m.pulses = {100};
  for (int i = 0; i < 12; ++i) m.pulses.push_back(200);  // 12 slow pulses: 2.4 s of a slow stretch
  PulseMonitor monitor;
  for (int i = 0; i < 101; ++i) monitor.add(100);
  const TimingPolicy policy{3, 3, 2, 1000.0};  // 2 retries by count, but 5 s of budget
  const auto t = time_interleaved(policy, monitor, {[] { return 1.0; }}, [&] { return m.pulse(); });
  EXPECT_FALSE(t[0].unstable);
  EXPECT_EQ(t[0].quiet_ms.size(), 3u);
  EXPECT_EQ(t[0].discarded, 13) << "12 runs after a slow pulse, and the one before the stretch ended";
}

TEST(BenchTiming, CasesRunInterleavedAndTheBudgetAddsRuns) {
  ScriptedMachine m;
  PulseMonitor monitor;
  monitor.add(100);
  // Budget 1000 ms: case 0 (1 ms runs + 100 ms pulses) gets 10 runs, case 1 (900 ms runs)
  // its minimum of 3.
  const TimingPolicy policy{3, 25, 6, 1000.0};
  std::vector<std::string> order;
  const auto t = time_interleaved(
      policy, monitor,
      {[&] {
         order.push_back("a");
         return 1.0;
       },
       [&] {
         order.push_back("b");
         return 900.0;
       }},
      [&] { return m.pulse(); });
  EXPECT_EQ(t[0].quiet_ms.size(), 10u);
  EXPECT_EQ(t[1].quiet_ms.size(), 3u);
  ASSERT_GE(order.size(), 6u);
  EXPECT_EQ(std::vector<std::string>(order.begin(), order.begin() + 6),
            (std::vector<std::string>{"a", "b", "a", "b", "a", "b"}));
  EXPECT_EQ(m.log.size(), order.size() + 1) << "one pulse before the first run and one after each";
}

TEST(BenchTiming, PartnersRunInTheSameRoundsAndPairUp) {
  ScriptedMachine m;
  // Pulses: before, then after each run. The pulse after case 1's second run is slow: the
  // pair's second round is disturbed (both runs), and so is the third, which it precedes.
  m.pulses = {100, 100, 100, 100, 160, 100};
  PulseMonitor monitor;
  for (int i = 0; i < 9; ++i) monitor.add(100);
  const TimingPolicy policy{3, 3, 6, 0.0};
  const auto t = time_interleaved(policy, monitor, {[] { return 10.0; }, [] { return 11.0; }},
                                  [&] { return m.pulse(); }, {0, 0});
  EXPECT_EQ(t[0].all_ms.size(), t[1].all_ms.size()) << "partners run in the same rounds";
  EXPECT_EQ(t[0].quiet_round, t[1].quiet_round);
  EXPECT_EQ(t[0].quiet_round, (std::vector<int>{0, 3, 4}));
  EXPECT_EQ(t[0].discarded, 2);
  const auto [a, b] = paired_runs(t[0], t[1]);
  EXPECT_EQ(a.size(), 3u);
  const RatioEstimate r = compare_paired(a, b);
  EXPECT_NEAR(r.ratio, 1.1, 1e-12);
  EXPECT_TRUE(r.has_interval);
  EXPECT_TRUE(r.significant) << "identical log ratios: a zero-width interval away from 1";
}

TEST(BenchTiming, PartnersTakeTurnsGoingFirst) {
  ScriptedMachine m;
  PulseMonitor monitor;
  for (int i = 0; i < 9; ++i) monitor.add(100);
  const TimingPolicy policy{4, 4, 6, 0.0};
  std::string order;
  const auto t = time_interleaved(
      policy, monitor,
      {[&] {
         order += 'a';
         return 10.0;
       },
       [&] {
         order += 'b';
         return 11.0;
       },
       [&] {
         order += 'c';
         return 12.0;
       }},
      [&] { return m.pulse(); }, {0, 0, 1});
  EXPECT_EQ(order, "abcbacabcbac") << "a and b alternate first; c is its own group";
  for (const CaseTiming& c : t) EXPECT_EQ(c.quiet_round, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(t[0].quiet_ms, std::vector<double>(4, 10.0)) << "each run recorded for its own case";
  EXPECT_EQ(t[1].quiet_ms, std::vector<double>(4, 11.0));
}

TEST(BenchCompare, PairedIntervalIsTighterThanUnpairedUnderSharedDrift) {
  // The machine drifts ±10% from round to round; B is 3% slower in every round.
  std::vector<double> a, b;
  for (int i = 0; i < 10; ++i) {
    const double drift = 1.0 + 0.1 * std::sin(i * 1.7);
    a.push_back(100 * drift);
    b.push_back(103 * drift * (1 + 0.002 * std::cos(i * 2.3)));
  }
  const RatioEstimate paired = compare_paired(a, b), unpaired = compare_samples(a, b);
  EXPECT_TRUE(paired.significant);
  EXPECT_FALSE(unpaired.significant);
  EXPECT_LT(paired.hi - paired.lo, 0.01);
}

// The session's minimum of runs is met exactly by its sweeps: 5 over 3 sweeps is 2, 2, 1
// (not 2 a sweep, 6 in all), and the budget is shared equally.
TEST(BenchTiming, SweepsShareTheRunsAndTheBudget) {
  Config cfg{};
  cfg.sweeps = 3;
  cfg.policy.budget_ms = 900;
  for (int min_runs : {1, 2, 3, 4, 5, 7, 9}) {
    cfg.policy.min_runs = min_runs;
    cfg.policy.max_runs = 25;
    int runs = 0, max_runs = 0;
    double budget = 0;
    for (int s = 0; s < cfg.sweep_count(); ++s) {
      const TimingPolicy p = cfg.sweep_policy(s);
      EXPECT_GE(p.min_runs, 1);
      EXPECT_GE(p.max_runs, p.min_runs);
      runs += p.min_runs;
      max_runs += p.max_runs;
      budget += p.budget_ms;
    }
    EXPECT_EQ(runs, min_runs);
    EXPECT_EQ(max_runs, 25);
    EXPECT_DOUBLE_EQ(budget, 900);
    EXPECT_EQ(cfg.sweep_count(), std::min(3, min_runs));
  }
  cfg.policy.min_runs = 5;
  EXPECT_EQ(cfg.sweep_policy(0).min_runs, 2);
  EXPECT_EQ(cfg.sweep_policy(1).min_runs, 2);
  EXPECT_EQ(cfg.sweep_policy(2).min_runs, 1);
}

TEST(BenchTiming, MaxRunsCapsACheapCase) {
  ScriptedMachine m;
  PulseMonitor monitor;
  monitor.add(100);
  const TimingPolicy policy{3, 5, 6, 1e12};
  const auto t = time_interleaved(policy, monitor, {[] { return 1.0; }}, [&] { return m.pulse(); });
  EXPECT_EQ(t[0].quiet_ms.size(), 5u);
}

TEST(BenchStats, NoisyMarksAWideSpread) {
  CaseTimer steady(TimingPolicy{3, 3, 6, 0});
  for (double ms : {10.0, 10.5, 11.0}) steady.record(ms, 100, true);
  EXPECT_FALSE(steady.finish().noisy());
  CaseTimer wide(TimingPolicy{3, 3, 6, 0});
  for (double ms : {10.0, 10.5, 12.0}) wide.record(ms, 100, true);
  EXPECT_TRUE(wide.finish().noisy());
}

TEST(BenchStats, PassesCombineIntoOneTiming) {
  CaseTimer first(TimingPolicy{1, 1, 6, 0});
  first.record(10, 100, true, 0);
  first.record(30, 160, false, 1);
  CaseTimer second(TimingPolicy{1, 1, 6, 0});
  second.record(12, 101, true, 100000);
  const CaseTiming both = combine(first.finish(), second.finish(), 3);
  EXPECT_EQ(both.quiet_ms, (std::vector<double>{10, 12}));
  EXPECT_EQ(both.quiet_round, (std::vector<int>{0, 100000}));
  EXPECT_EQ(both.discarded, 1);
  EXPECT_TRUE(both.unstable) << "two quiet runs of the three the session needs";
  EXPECT_EQ(both.summary.n, 3u) << "an unstable timing is summarized over every run";
  const CaseTiming enough = combine(both, second.finish(), 3);
  EXPECT_FALSE(enough.unstable);
  EXPECT_DOUBLE_EQ(enough.summary.median, 12);
}

TEST(BenchStats, PassConsistency) {
  const Summary fwd = summarize({10, 10.5, 11}), bwd = summarize({25, 26, 27});
  EXPECT_EQ(pass_consistency(fwd, bwd, summarize({35, 36, 37})), "");
  EXPECT_EQ(pass_consistency(fwd, bwd, summarize({31, 33, 34})), "") << "within the spread and slack";
  // The case: fwdbwd faster than bwd alone.
  const std::string faster = pass_consistency(fwd, summarize({2605, 2610, 2620}), summarize({2470, 2480, 2490}));
  EXPECT_NE(faster.find("faster than bwd alone"), std::string::npos) << faster;
  const std::string slow = pass_consistency(fwd, bwd, summarize({60, 61, 62}));
  EXPECT_NE(slow.find("against fwd + bwd"), std::string::npos) << slow;
}

TEST(BenchStats, StudentTQuantilesMatchTables) {
  // Two-sided 95% and 99% quantiles from standard tables.
  EXPECT_NEAR(t_quantile(0.95, 1), 12.7062, 1e-3);
  EXPECT_NEAR(t_quantile(0.95, 2), 4.3027, 1e-3);
  EXPECT_NEAR(t_quantile(0.95, 5), 2.5706, 1e-3);
  EXPECT_NEAR(t_quantile(0.95, 10), 2.2281, 1e-3);
  EXPECT_NEAR(t_quantile(0.95, 30), 2.0423, 1e-3);
  EXPECT_NEAR(t_quantile(0.95, 1e6), 1.95996, 1e-3);
  EXPECT_NEAR(t_quantile(0.99, 5), 4.0321, 1e-3);
  EXPECT_NEAR(t_quantile(0.90, 3), 2.3534, 1e-3);
  // Fractional df (Welch) lies between its neighbours.
  EXPECT_LT(t_quantile(0.95, 4.5), t_quantile(0.95, 4));
  EXPECT_GT(t_quantile(0.95, 4.5), t_quantile(0.95, 5));
}

// Deterministic multiplicative noise in [−amplitude, amplitude].
std::vector<double> noisy_sample(double center, double amplitude, int n, unsigned seed) {
  std::vector<double> v;
  unsigned x = seed;
  for (int i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    const double u = (x >> 8) / double(1u << 24);  // [0, 1)
    v.push_back(center * (1 + amplitude * (2 * u - 1)));
  }
  return v;
}

TEST(BenchCompare, ResolvesAThreePercentDifferenceFromQuietRuns) {
  const auto a = noisy_sample(100, 0.01, 10, 1), b = noisy_sample(103, 0.01, 10, 2);
  const RatioEstimate r = compare_samples(a, b);
  EXPECT_TRUE(r.has_interval);
  EXPECT_TRUE(r.significant);
  EXPECT_GT(r.lo, 1.0);
  EXPECT_LT(r.lo, 1.03);
  EXPECT_GT(r.hi, 1.03);
  EXPECT_NEAR(r.ratio, 1.03, 0.01);
}

TEST(BenchCompare, NoDifferenceIsNotSignificant) {
  const RatioEstimate same = compare_samples(noisy_sample(100, 0.02, 8, 3), noisy_sample(100, 0.02, 8, 4));
  EXPECT_FALSE(same.significant);
  EXPECT_LT(same.lo, 1.0);
  EXPECT_GT(same.hi, 1.0);
  // 3% hidden in ±10% noise with three runs each: the interval says it cannot tell.
  const RatioEstimate hidden = compare_samples(noisy_sample(100, 0.10, 3, 5), noisy_sample(103, 0.10, 3, 6));
  EXPECT_FALSE(hidden.significant);
  EXPECT_GT(hidden.hi / hidden.lo, 1.06);
}

// The closed form against counting: every way to split ranks 0 .. n_a + n_b − 1 between the
// two samples is equally likely on a steady machine; count the splits whose ranges lie apart.
TEST(BenchCompare, ChanceOfRangesApartMatchesCountingTheRankSplits) {
  for (std::size_t n_a = 1; n_a <= 7; ++n_a) {
    for (std::size_t n_b = 1; n_b <= 7; ++n_b) {
      const std::size_t n = n_a + n_b;
      std::size_t splits = 0, apart = 0;
      for (unsigned mask = 0; mask < (1u << n); ++mask) {
        if (static_cast<std::size_t>(std::popcount(mask)) != n_a) continue;
        ++splits;
        const unsigned low_a = (1u << n_a) - 1;  // A holds the n_a lowest ranks, or the n_a highest
        apart += mask == low_a || mask == low_a << n_b;
      }
      EXPECT_NEAR(chance_ranges_apart(n_a, n_b), double(apart) / double(splits), 1e-12) << n_a << " " << n_b;
    }
  }
  EXPECT_NEAR(chance_ranges_apart(3, 3), 0.1, 1e-12);
  EXPECT_NEAR(chance_ranges_apart(25, 25), 2 / 126410606437752.0, 1e-24);
  EXPECT_EQ(chance_ranges_apart(0, 5), 0.0);
}

TEST(BenchCompare, ChanceOfAtLeastKEventsMatchesEnumeration) {
  const std::vector<double> c = {0.1, 0.1, 0.008, 0.5, 0.0006};
  for (std::size_t k = 0; k <= c.size() + 1; ++k) {
    double expected = 0;
    for (unsigned mask = 0; mask < (1u << c.size()); ++mask) {
      if (static_cast<std::size_t>(std::popcount(mask)) < k) continue;
      double chance = 1;
      for (std::size_t i = 0; i < c.size(); ++i) chance *= (mask >> i & 1) ? c[i] : 1 - c[i];
      expected += chance;
    }
    EXPECT_NEAR(chance_at_least(c, k), expected, 1e-12) << k;
  }
  EXPECT_EQ(chance_at_least({}, 0), 1.0);
  EXPECT_EQ(chance_at_least({}, 1), 0.0);
}

TEST(BenchCompare, OneRunGivesNoInterval) {
  const RatioEstimate r = compare_samples({100}, {110, 111});
  EXPECT_FALSE(r.has_interval);
  EXPECT_FALSE(r.significant);
  EXPECT_NEAR(r.ratio, std::sqrt(110.0 * 111.0) / 100, 1e-12);
}

TEST(BenchReport, WarnsWhenOpenBlasRunsNarrowerVectorsThanTheCpu) {
  const std::string forced = blas_core_warning("Haswell", "fma avx avx2 avx512f avx512bw", "Haswell");
  EXPECT_NE(forced.find("Haswell kernel (256-bit"), std::string::npos) << forced;
  EXPECT_NE(forced.find("512-bit"), std::string::npos) << forced;
  EXPECT_NE(forced.find("OPENBLAS_CORETYPE=Haswell"), std::string::npos) << forced;
  EXPECT_EQ(blas_core_warning("SkylakeX", "avx2 avx512f", nullptr), "");
  EXPECT_EQ(blas_core_warning("Zen", "fma avx avx2", nullptr), "");
  EXPECT_NE(blas_core_warning("Prescott", "avx avx2", nullptr), "");
}

TEST(BenchTiming, CacheFlushCoversTheLastLevelCaches) {
  const CacheFlusher flusher;
  EXPECT_GE(flusher.bytes(), std::int64_t{64} << 20);
  EXPECT_GE(flusher.bytes(), 2 * cache_sizes().last_level_bytes);
}

}  // namespace
}  // namespace flashattn::cli
