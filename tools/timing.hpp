// timing.hpp — how the subcommands time cases: caches flushed before each run, SGEMM runs
// (the machine's pulse) after each, runs next to a slow pulse discarded and repeated, the
// cases of a group interleaved run by run so that their ratios are taken in the same
// seconds. The rules themselves (what is slow, how many runs) are in stats.hpp.
#pragma once

#include <cblas.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "stats.hpp"

namespace flashattn::cli {

using Clock = std::chrono::steady_clock;

inline double milliseconds(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Bytes of last-level cache on the machine: each distinct LLC counted once (sysfs), 0 when
// the OS does not say.
std::int64_t last_level_cache_bytes();

// Writing a buffer larger than the last-level caches between runs evicts the operands:
// twice their total, at least 64 MiB.
class CacheFlusher {
 public:
  CacheFlusher();
  void flush() { std::memset(buffer_.get(), static_cast<int>(++round_), bytes_); }
  std::int64_t bytes() const { return bytes_; }

 private:
  std::int64_t bytes_;
  std::unique_ptr<char[]> buffer_;
  unsigned round_ = 0;
};

// SGEMM 2048³ on the benchmark's thread count: the practical ceiling of the machine, and
// its pulse.
class Sgemm {
 public:
  static constexpr std::int64_t kN = 2048;
  static constexpr double kFlops = 2.0 * kN * kN * kN;
  Sgemm() : a_(kN * kN, 0.5f), b_(kN * kN, 0.25f), c_(kN * kN) {}
  double run_ms() {
    const auto t0 = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kN, kN, kN, 1.0f, a_.data(), kN, b_.data(), kN,
                0.0f, c_.data(), kN);
    return milliseconds(t0);
  }
  static double gflops(double ms) { return ms > 0 ? kFlops / (ms * 1e6) : 0.0; }

 private:
  std::vector<float> a_, b_, c_;
};

// Times a group of cases in rounds: each round runs every case that still needs runs once,
// each run followed by a pulse. A run is quiet when neither the pulse before it nor the one
// after it is slow for `monitor` (every pulse joins the monitor). `run_case[i]()` runs case
// i once and returns its milliseconds (flushing first is its business); `pulse()` likewise
// returns one pulse's milliseconds. Scripted functions make this testable without a clock.
inline std::vector<CaseTiming> time_interleaved(const TimingPolicy& policy, PulseMonitor& monitor,
                                                const std::vector<std::function<double()>>& run_case,
                                                const std::function<double()>& pulse) {
  std::vector<CaseTimer> timers(run_case.size(), CaseTimer(policy));
  double before = pulse();
  monitor.add(before);
  for (bool any = true; any;) {
    any = false;
    for (std::size_t i = 0; i < run_case.size(); ++i) {
      if (!timers[i].needs_more()) continue;
      any = true;
      const double ms = run_case[i]();
      const double after = pulse();
      const bool quiet = !monitor.slow(before) && !monitor.slow(after);
      monitor.add(after);
      timers[i].record(ms, after, quiet);
      before = after;
    }
  }
  std::vector<CaseTiming> out;
  for (const CaseTimer& t : timers) out.push_back(t.finish());
  return out;
}

// The real clock and machine behind time_interleaved: `runs[i]` is case i's work; caches
// are flushed before every run and every pulse.
struct Stopwatch {
  CacheFlusher flusher;
  Sgemm sgemm;
  PulseMonitor monitor;

  // The session's reference pulse: one warm-up SGEMM, then `count` pulses; returns them.
  std::vector<double> calibrate(int count) {
    sgemm.run_ms();
    std::vector<double> pulses;
    for (int i = 0; i < count; ++i) pulses.push_back(pulse());
    for (double p : pulses) monitor.add(p);
    return pulses;
  }
  double pulse() {
    flusher.flush();
    return sgemm.run_ms();
  }
  std::vector<CaseTiming> time(const TimingPolicy& policy, const std::vector<std::function<void()>>& runs) {
    std::vector<std::function<double()>> timed;
    for (const auto& run : runs) {
      timed.push_back([this, &run] {
        flusher.flush();
        const auto t0 = Clock::now();
        run();
        return milliseconds(t0);
      });
    }
    return time_interleaved(policy, monitor, timed, [this] { return pulse(); });
  }
};

}  // namespace flashattn::cli
