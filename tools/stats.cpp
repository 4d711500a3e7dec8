// stats.cpp — see stats.hpp.
#include "stats.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>

namespace flashattn::cli {

double quantile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  const double pos = p * static_cast<double>(values.size() - 1);
  const std::size_t lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (pos - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

double median(std::vector<double> values) { return quantile(std::move(values), 0.5); }

Summary summarize(std::vector<double> values) {
  Summary s;
  s.n = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.min = values.front();
  s.max = values.back();
  s.median = quantile(values, 0.5);
  s.q1 = quantile(values, 0.25);
  s.q3 = quantile(values, 0.75);
  return s;
}

double PulseMonitor::median_ms() const { return pulses_.empty() ? 0.0 : median(pulses_); }
double PulseMonitor::reference_ms() const { return pulses_.empty() ? 0.0 : quantile(pulses_, 0.25); }

bool PulseMonitor::slow(double pulse_ms) const {
  const double reference = reference_ms();
  return reference > 0 && pulse_ms * (1.0 - tolerance_) > reference;
}

void CaseTimer::record(double run_ms, double pulse_ms, bool quiet, int round) {
  t_.all_ms.push_back(run_ms);
  t_.all_pulse_ms.push_back(pulse_ms);
  t_.spent_ms += run_ms + pulse_ms;
  if (quiet) {
    t_.quiet_ms.push_back(run_ms);
    t_.quiet_pulse_ms.push_back(pulse_ms);
    t_.quiet_round.push_back(round);
  } else {
    ++t_.discarded;
  }
}

bool CaseTimer::needs_more() const {
  const int quiet = static_cast<int>(t_.quiet_ms.size());
  if (quiet < policy_.min_runs) return t_.discarded < policy_.max_retries || t_.spent_ms < 5 * policy_.budget_ms;
  return quiet < policy_.max_runs && t_.spent_ms < policy_.budget_ms;
}

namespace {

// The figures of a timing from its runs: of the quiet ones, or of every run when fewer than
// min_runs were quiet (unstable).
CaseTiming& settle(CaseTiming& t, int min_runs) {
  t.unstable = static_cast<int>(t.quiet_ms.size()) < min_runs;
  const std::vector<double>& runs = t.unstable ? t.all_ms : t.quiet_ms;
  const std::vector<double>& pulses = t.unstable ? t.all_pulse_ms : t.quiet_pulse_ms;
  t.summary = summarize(runs);
  t.pulse_median_ms = pulses.empty() ? 0.0 : median(pulses);
  return t;
}

}  // namespace

CaseTiming CaseTimer::finish() const {
  CaseTiming t = t_;
  return settle(t, policy_.min_runs);
}

CaseTiming combine(const CaseTiming& a, const CaseTiming& b, int min_runs) {
  CaseTiming t = a;
  auto join = [](auto& into, const auto& more) { into.insert(into.end(), more.begin(), more.end()); };
  join(t.quiet_ms, b.quiet_ms);
  join(t.quiet_pulse_ms, b.quiet_pulse_ms);
  join(t.quiet_round, b.quiet_round);
  join(t.all_ms, b.all_ms);
  join(t.all_pulse_ms, b.all_pulse_ms);
  t.discarded += b.discarded;
  t.spent_ms += b.spent_ms;
  return settle(t, min_runs);
}

std::string pass_consistency(const Summary& fwd, const Summary& bwd, const Summary& fwdbwd, double slack) {
  char buf[256];
  // fwdbwd does the backward's work and more: its slowest run cannot beat bwd's fastest
  // (no slack: no cache effect makes more work take less time).
  const double longer_min = std::max(fwd.min, bwd.min);
  if (fwdbwd.max < longer_min) {
    std::snprintf(buf, sizeof buf, "fwdbwd (%.4g ms, at most %.4g) faster than %s alone (at least %.4g ms)",
                  fwdbwd.median, fwdbwd.max, bwd.min >= fwd.min ? "bwd" : "fwd", longer_min);
    return buf;
  }
  // fwdbwd ≈ fwd + bwd: the sum's interval [min + min, max + max] against fwdbwd's.
  const double sum_lo = fwd.min + bwd.min, sum_hi = fwd.max + bwd.max;
  if (fwdbwd.max * (1.0 + slack) < sum_lo || fwdbwd.min > sum_hi * (1.0 + slack)) {
    std::snprintf(buf, sizeof buf, "fwdbwd %.4g ms [%.4g, %.4g] against fwd + bwd %.4g ms [%.4g, %.4g]",
                  fwdbwd.median, fwdbwd.min, fwdbwd.max, fwd.median + bwd.median, sum_lo, sum_hi);
    return buf;
  }
  return "";
}

namespace {

// ∫₀^θ cos^(df−1)(φ) dφ by Simpson's rule: with t = √df · tan φ, Student's t density
// becomes proportional to cos^(df−1) φ, smooth on [0, π/2) for every df ≥ 1.
double cos_power_integral(double theta, double df) {
  constexpr int kIntervals = 4000;  // even
  const double h = theta / kIntervals;
  auto f = [df](double phi) { return std::pow(std::cos(phi), df - 1.0); };
  double sum = f(0.0) + f(theta);
  for (int i = 1; i < kIntervals; ++i) sum += f(i * h) * (i % 2 ? 4.0 : 2.0);
  return sum * h / 3.0;
}

}  // namespace

double t_quantile(double confidence, double df) {
  df = std::max(df, 1.0);
  // Beyond 40/√df the integrand is below exp(−800): the mass lies in [0, cap].
  const double cap = std::min(std::numbers::pi / 2, 40.0 / std::sqrt(df));
  const double total = cos_power_integral(cap, df);
  double lo = 0, hi = cap;
  for (int i = 0; i < 60; ++i) {  // P(|T| ≤ t) = F(θ) / F(π/2), increasing in θ
    const double mid = 0.5 * (lo + hi);
    (cos_power_integral(mid, df) / total < confidence ? lo : hi) = mid;
  }
  return std::sqrt(df) * std::tan(0.5 * (lo + hi));
}

namespace {

// Mean and sample variance of log(x): times are positive and their noise multiplicative.
std::pair<double, double> log_moments(const std::vector<double>& x) {
  double mean = 0;
  for (double v : x) mean += std::log(v);
  mean /= static_cast<double>(x.size());
  double var = 0;
  for (double v : x) var += (std::log(v) - mean) * (std::log(v) - mean);
  return {mean, x.size() > 1 ? var / static_cast<double>(x.size() - 1) : 0.0};
}

// exp(log_ratio ± t · se) at `df` degrees of freedom, and whether it excludes 1.
void set_interval(RatioEstimate& r, double log_ratio, double se, double df, double confidence) {
  const double half = se > 0 ? t_quantile(confidence, df) * se : 0.0;  // identical runs: the point
  r.has_interval = true;
  r.lo = std::exp(log_ratio - half);
  r.hi = std::exp(log_ratio + half);
  r.significant = r.lo > 1.0 || r.hi < 1.0;
}

}  // namespace

RatioEstimate compare_samples(const std::vector<double>& a, const std::vector<double>& b, double confidence) {
  RatioEstimate r;
  r.n_a = a.size();
  r.n_b = b.size();
  if (a.empty() || b.empty()) return r;
  const auto [mean_a, var_a] = log_moments(a);
  const auto [mean_b, var_b] = log_moments(b);
  const double diff = mean_b - mean_a;
  r.ratio = r.lo = r.hi = std::exp(diff);
  if (a.size() < 2 || b.size() < 2) return r;
  const double se_a = var_a / static_cast<double>(a.size()), se_b = var_b / static_cast<double>(b.size());
  const double se = std::sqrt(se_a + se_b);
  // Welch–Satterthwaite degrees of freedom.
  const double df = se > 0 ? (se_a + se_b) * (se_a + se_b) / (se_a * se_a / static_cast<double>(a.size() - 1) +
                                                               se_b * se_b / static_cast<double>(b.size() - 1))
                           : 1.0;
  set_interval(r, diff, se, df, confidence);
  return r;
}

RatioEstimate compare_paired(const std::vector<double>& a, const std::vector<double>& b, double confidence) {
  RatioEstimate r;
  r.n_a = a.size();
  r.n_b = b.size();
  const std::size_t n = std::min(a.size(), b.size());
  if (n == 0) return r;
  std::vector<double> ratios;
  for (std::size_t i = 0; i < n; ++i) ratios.push_back(b[i] / a[i]);
  const auto [mean, var] = log_moments(ratios);
  r.ratio = r.lo = r.hi = std::exp(mean);
  if (n < 2) return r;
  set_interval(r, mean, std::sqrt(var / static_cast<double>(n)), static_cast<double>(n - 1), confidence);
  return r;
}

double chance_ranges_apart(std::size_t n_a, std::size_t n_b) {
  if (n_a == 0 || n_b == 0) return 0;  // no range on a side: nothing to lie apart
  double ways = 1;                     // C(n_a + n_b, n_a), built up exactly while it fits
  const std::size_t k = std::min(n_a, n_b), n = n_a + n_b;
  for (std::size_t i = 1; i <= k; ++i) ways = ways * static_cast<double>(n - k + i) / static_cast<double>(i);
  return std::min(1.0, 2 / ways);
}

double chance_at_least(const std::vector<double>& chances, std::size_t k) {
  // exactly[j]: the chance of exactly j events among those seen so far, for j < k.
  std::vector<double> exactly(k + 1, 0.0);
  exactly[0] = 1;
  for (double c : chances) {
    for (std::size_t j = k; j > 0; --j) exactly[j] = exactly[j] * (1 - c) + exactly[j - 1] * c;
    exactly[0] *= 1 - c;
  }
  double below = 0;
  for (std::size_t j = 0; j < k; ++j) below += exactly[j];
  return std::clamp(1 - below, 0.0, 1.0);
}

std::pair<std::vector<double>, std::vector<double>> paired_runs(const CaseTiming& a, const CaseTiming& b) {
  std::pair<std::vector<double>, std::vector<double>> pairs;
  for (std::size_t i = 0; i < a.quiet_ms.size(); ++i) {
    for (std::size_t j = 0; j < b.quiet_ms.size(); ++j) {
      if (a.quiet_round[i] != b.quiet_round[j]) continue;
      pairs.first.push_back(a.quiet_ms[i]);
      pairs.second.push_back(b.quiet_ms[j]);
    }
  }
  return pairs;
}

RatioEstimate compare_timings(const CaseTiming& a, const CaseTiming& b) {
  const auto [a_ms, b_ms] = paired_runs(a, b);
  return a_ms.size() >= 3 ? compare_paired(a_ms, b_ms) : compare_samples(a.quiet_ms, b.quiet_ms);
}

}  // namespace flashattn::cli
