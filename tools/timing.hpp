// timing.hpp — how the subcommands time a case: caches flushed before each run, the
// median reported, SGEMM runs interleaved so that speed is a ratio taken in the same
// seconds.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace flashattn::cli {

using Clock = std::chrono::steady_clock;

// Writing a buffer larger than the last-level cache between runs evicts the operands.
class CacheFlusher {
 public:
  CacheFlusher() : bytes_(std::int64_t{64} << 20), buffer_(new char[bytes_]) {}
  void flush() { std::memset(buffer_.get(), static_cast<int>(++round_), bytes_); }

 private:
  std::int64_t bytes_;
  std::unique_ptr<char[]> buffer_;
  unsigned round_ = 0;
};

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

inline double milliseconds(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// SGEMM 2048³ on the benchmark's thread count: the practical ceiling of the machine.
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

 private:
  std::vector<float> a_, b_, c_;
};

struct Timing {
  double ms;        // median of the case's runs
  double sgemm_ms;  // median of the SGEMM runs interleaved with them
};

// The case was just run once to warm up, taking `warm_ms`. A case that long is timed by
// that run alone (its caches were cold, as every timed run's are); otherwise it runs up
// to `repeat` more times, caches flushed before each, fewer once the runs add up to
// `budget_ms`. Each run is followed by one SGEMM: the machine's speed drifts (shared
// hosts), and a ratio of medians taken in the same seconds is steadier than one against
// an SGEMM timed minutes apart.
template <typename F>
Timing time_case(int repeat, double budget_ms, double warm_ms, CacheFlusher& flusher, Sgemm& sgemm, F&& run) {
  std::vector<double> ms, sgemm_ms;
  if (warm_ms >= budget_ms / 2) {
    ms.push_back(warm_ms);
    flusher.flush();
    sgemm_ms.push_back(sgemm.run_ms());
    return {ms[0], sgemm_ms[0]};
  }
  double spent = 0;
  for (int r = 0; r < repeat && (r == 0 || spent < budget_ms); ++r) {
    flusher.flush();
    const auto t0 = Clock::now();
    run();
    ms.push_back(milliseconds(t0));
    spent += ms.back();
    flusher.flush();
    sgemm_ms.push_back(sgemm.run_ms());
  }
  return {median(ms), median(sgemm_ms)};
}

}  // namespace flashattn::cli
