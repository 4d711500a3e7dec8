// stats.hpp — the statistics behind the benchmark's figures: a sample's median and
// spread, the rule that calls a run disturbed from the machine's pulse, the consistency of
// fwd + bwd against fwdbwd, and the confidence interval of a ratio between two builds.
//
// Pure functions on vectors of milliseconds: no clock, no I/O, so that the tests can feed
// them scripted samples.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace flashattn::cli {

// A sample of run times summarized. Quartiles interpolate linearly between order
// statistics (the "type 7" rule of R and numpy); the median of an even count is the mean of
// the middle two.
struct Summary {
  std::size_t n = 0;
  double median = 0, q1 = 0, q3 = 0, min = 0, max = 0;
  double spread() const { return min > 0 ? max / min : 0; }  // max / min: 1 is perfectly steady
};
Summary summarize(std::vector<double> values);
double quantile(std::vector<double> values, double p);  // p in [0, 1]; values non-empty
double median(std::vector<double> values);

// A row is marked noisy when its quiet runs' max / min exceeds this.
inline constexpr double kNoisySpread = 1.15;

// The machine's pulse: SGEMM runs interleaved with the cases' runs. A run is disturbed
// when a pulse next to it took more than 1 / (1 − tolerance) times the session's reference
// pulse, i.e. the machine ran more than `tolerance` below its reference speed then. The
// reference is the session's first quartile of pulse times, not its median: a shared VM
// measured here spent whole stretches 50% slower (pulses of 161 ms against 101), and a
// session that starts in such a stretch has its median there.
// The default tolerance, 7%: a KVM guest on a Xeon alternated, for seconds at a time, between
// two speeds 10–14% apart, its SGEMM pulses 45–48.5 ms and 50–54 ms with the cases' runs
// slow together with them (flash bwd N = 8192: 126–129 ms next to pulses of 46–47, 139–146
// next to 51–54); no pulse of two default runs was 15% slow, so a 15% tolerance discarded
// nothing, and which speed a case's median fell on decided rows 5–10% apart between runs.
inline constexpr double kPulseTolerance = 0.07;

class PulseMonitor {
 public:
  explicit PulseMonitor(double tolerance = kPulseTolerance) : tolerance_(tolerance) {}
  void add(double pulse_ms) { pulses_.push_back(pulse_ms); }
  double median_ms() const;     // 0 before any pulse
  double reference_ms() const;  // the first quartile; 0 before any pulse
  bool slow(double pulse_ms) const;
  double tolerance() const { return tolerance_; }
  std::size_t count() const { return pulses_.size(); }

 private:
  double tolerance_;
  std::vector<double> pulses_;
};

// Other processes on the machine: a run is also disturbed when, over it and the pulse after
// it, anything but this process (the hypervisor's steal included) took more than this share
// of the machine's CPU time. A compute pulse can miss such a competitor: a compile at idle
// priority beside the default benchmark left the SGEMM pulse 8% slow (inside the tolerance)
// while standard attention's decode, memory-bound and synchronizing often, ran 40–50% slower.
inline constexpr double kMaxOtherCpuShare = 0.15;

// How many runs a case gets: at least `min_runs` quiet ones (a disturbed run is repeated
// while fewer than `max_retries` were, or while its runs and pulses add up to less than
// five budgets, so that a cheap case outwaits a slow stretch of a few seconds), then more
// while they add up to less than `budget_ms`, at most `max_runs` quiet ones.
struct TimingPolicy {
  int min_runs = 3;
  int max_runs = 25;
  int max_retries = 6;
  double budget_ms = 1000;
};

// What one case's runs came to. Quiet runs are the figures; disturbed ones are counted and
// dropped. `unstable` when fewer than min_runs quiet runs were had: the summary is then of
// every run (quiet or not), so the row still has a figure, flagged.
struct CaseTiming {
  std::vector<double> quiet_ms, quiet_pulse_ms;  // quiet runs and the pulse that followed each
  std::vector<int> quiet_round;                  // the round each quiet run ran in (for pairing)
  std::vector<double> all_ms, all_pulse_ms;      // every timed run, in order
  int discarded = 0;
  bool unstable = false;
  double spent_ms = 0;  // runs and pulses, for the budget
  Summary summary;      // of quiet_ms, or of all_ms when unstable
  double pulse_median_ms = 0;  // of the pulses after the summarized runs
  bool noisy() const { return summary.spread() > kNoisySpread; }
};

// Two measurements of one case (sweeps of a session) as one: runs, pulses and counts
// joined; unstable when the joined quiet runs are fewer than `min_runs`.
CaseTiming combine(const CaseTiming& a, const CaseTiming& b, int min_runs);

// The bookkeeping of one case under a policy: record each run, say whether it needs more.
class CaseTimer {
 public:
  explicit CaseTimer(const TimingPolicy& policy) : policy_(policy) {}
  void record(double run_ms, double pulse_ms, bool quiet, int round = 0);
  bool needs_more() const;
  CaseTiming finish() const;

 private:
  TimingPolicy policy_;
  CaseTiming t_;
};

// fwd + bwd against fwdbwd. fwdbwd runs both in one call, so it must take at least as long
// as the longer of the two, and about their sum. Returns "" when consistent, else what is
// wrong, with the figures. Intervals are the runs' [min, max]: fwdbwd's whole interval
// below the longer pass's is a violation; against the sum, the intervals must lie apart by
// more than `slack` (relative), since fwdbwd's backward starts with warm caches.
std::string pass_consistency(const Summary& fwd, const Summary& bwd, const Summary& fwdbwd, double slack = 0.10);

// Student's t quantile (two-sided `confidence`, e.g. 0.95) at `df` degrees of freedom
// (df may be fractional, as Welch's is; df ≥ 1). Numerical integration of the density:
// accurate to about 1e-6 in the quantile for df in [1, 1e6].
double t_quantile(double confidence, double df);

// The ratio B / A of two samples of times (typical B over typical A), with a confidence
// interval from Welch's t on the logarithms (times are positive and multiplicative noise is
// the usual kind). `significant` when the interval excludes 1. With fewer than two values
// on a side there is no interval (lo = hi = ratio, has_interval false).
struct RatioEstimate {
  double ratio = 0, lo = 0, hi = 0;
  bool has_interval = false, significant = false;
  std::size_t n_a = 0, n_b = 0;
};
RatioEstimate compare_samples(const std::vector<double>& a, const std::vector<double>& b, double confidence = 0.95);

// The same for paired runs (B's run i was taken next to A's run i, in one round): the
// interval of the mean log ratio by Student's t, which drift shared by a pair cannot widen.
RatioEstimate compare_paired(const std::vector<double>& a, const std::vector<double>& b, double confidence = 0.95);

// Whether two runs of the bench agree: each row's printed spread is its runs' [min, max], and
// two rows agree when those ranges overlap. Two samples of one stationary distribution
// (independent runs, no ties) lie apart — all of one below all of the other — with chance
// 2 / C(n_a + n_b, n_a): every interleaving of the pooled ranks is equally likely and two
// of them separate the samples. 0.1 with 3 runs a side, 0.008 with 5, 0.0006 with 7; so on
// a perfectly steady machine a suite of many 3-run rows still has some rows apart. (Each
// median inside the other's range, a stricter rule, holds with chance 0.4 at 3 runs a side
// and 0.71 at 5: not a test a steady machine passes.)
double chance_ranges_apart(std::size_t n_a, std::size_t n_b);

// The chance of at least k events among independent events of the given chances (the
// Poisson-binomial tail): how surprising k rows apart are when each had its chance.
double chance_at_least(const std::vector<double>& chances, std::size_t k);

// The quiet runs of two cases timed in the same rounds, paired by round: (a's, b's).
std::pair<std::vector<double>, std::vector<double>> paired_runs(const CaseTiming& a, const CaseTiming& b);

// B / A for two cases timed in the same rounds (a build and its --baseline-lib twin): over
// their paired runs, or over all their quiet runs unpaired when fewer than three rounds were
// quiet for both (a disturbed stretch).
RatioEstimate compare_timings(const CaseTiming& a, const CaseTiming& b);

}  // namespace flashattn::cli
