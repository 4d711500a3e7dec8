// timing.hpp — how the subcommands time cases: caches flushed before each run, SGEMM runs
// or streaming reads (the machine's pulse) after each, runs next to a slow pulse or beside other processes'
// CPU use discarded and repeated, the
// cases of a group interleaved run by run so that their ratios are taken in the same
// seconds. The rules themselves (what is slow, how many runs) are in stats.hpp.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "internal.hpp"
#include "stats.hpp"

namespace flashattn::cli {

using Clock = std::chrono::steady_clock;

inline double milliseconds(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Writing a buffer larger than the last-level caches between runs evicts the operands:
// twice their total (cache_sizes()), at least 64 MiB.
class CacheFlusher {
 public:
  CacheFlusher()
      : bytes_(std::max<std::int64_t>(std::int64_t{64} << 20, 2 * cache_sizes().last_level_bytes)),
        buffer_(new char[bytes_]) {}
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

// The peak of a kernel build on `threads` threads, GFLOP/s, for calls of `dtype`: the f32
// FMA chains (kernels/peak.hpp), or for bf16 the build's bf16 products (vdpbf16ps or AMX
// tiles where it has them), timed on every thread at once, best of five runs of 20 ms or
// more. The honest anchor: what this machine can do, whatever BLAS build is installed.
inline double peak_gflops(Isa isa, DType dtype, int threads) {
  const KernelSet& kernels = kernels_for(isa);
  const bool bf16 = dtype == DType::bf16;
  const auto chains = bf16 ? kernels.bf16_chains : kernels.fma_chains;
  const std::int64_t flops_per_iteration = bf16 ? kernels.peak_bf16_flops_per_iteration : kernels.peak_flops_per_iteration;
  // As many FLOPs as 2^21 rounds of the FMA chains, whichever chains run.
  const std::int64_t iterations = (std::int64_t{1} << 21) * kernels.peak_flops_per_iteration / flops_per_iteration;
  double best = 0;
  float sink = 0;
  for (int run = 0; run < 5; ++run) {
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += chains(iterations);
    const double ms = milliseconds(t0);
    best = std::max(best, threads * static_cast<double>(iterations * flops_per_iteration) / (ms * 1e6));
  }
  volatile float keep = sink;  // the chains' results are used
  (void)keep;
  return best;
}

// A streaming read of a buffer four times the last-level caches (at least 256 MiB) on the
// benchmark's threads: the bandwidth a call that reads its operands once from memory can
// reach, the decode suite's anchor. Sixteen independent sums per thread keep the adds off
// the critical path, so the loads are all that is measured.
class ReadBandwidth {
 public:
  explicit ReadBandwidth(int threads)
      : threads_(threads),
        buffer_(static_cast<std::size_t>(std::max<std::int64_t>(std::int64_t{256} << 20, 4 * cache_sizes().last_level_bytes) /
                                         sizeof(float)),
                1.0f) {}
  double gbps_of(double ms) const { return ms > 0 ? static_cast<double>(bytes()) / (ms * 1e6) : 0.0; }
  // One streaming read of the whole buffer, milliseconds.
  double run_ms() {
    constexpr std::int64_t kBlock = 4096;
    const std::int64_t blocks = static_cast<std::int64_t>(buffer_.size()) / kBlock;
    const float* data = buffer_.data();
    float total = 0.0f;
    const auto t0 = Clock::now();
#pragma omp parallel for num_threads(threads_) reduction(+ : total) schedule(static)
    for (std::int64_t block = 0; block < blocks; ++block) {
      float acc[16] = {};
      const float* p = data + block * kBlock;
      for (std::int64_t i = 0; i < kBlock; i += 16) {
        for (int lane = 0; lane < 16; ++lane) acc[lane] += p[i + lane];
      }
      for (float a : acc) total += a;
    }
    const double ms = milliseconds(t0);
    sink_ = total;
    return ms;
  }
  // Whole blocks of 4096 floats, what run_ms reads.
  std::int64_t bytes() const { return static_cast<std::int64_t>(buffer_.size() / 4096 * 4096 * sizeof(float)); }

 private:
  int threads_;
  std::vector<float> buffer_;
  volatile float sink_ = 0.0f;
};

// The share of the machine's CPU time since the previous call that other processes took:
// /proc/stat's busy time over every CPU (steal included: the hypervisor ran someone else)
// less this process's own (/proc/self/stat), both in clock ticks; 0 where /proc cannot be read.
class OtherCpuShare {
 public:
  OtherCpuShare() { sample(&last_); }
  double operator()() {
    Ticks now;
    if (!sample(&now)) return 0.0;
    const double total = static_cast<double>(now.total - last_.total);
    const double other = static_cast<double>((now.busy - last_.busy) - (now.own - last_.own));
    last_ = now;
    return total > 0 ? std::clamp(other / total, 0.0, 1.0) : 0.0;
  }

 private:
  struct Ticks {
    long long busy = 0, total = 0, own = 0;
  };
  static bool sample(Ticks* t) {
    std::ifstream stat("/proc/stat");
    std::string cpu;
    long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    if (!(stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) || cpu != "cpu") return false;
    std::ifstream self("/proc/self/stat");
    std::string line;
    if (!std::getline(self, line)) return false;
    const auto close = line.rfind(')');  // the command name may hold spaces
    if (close == std::string::npos) return false;
    std::istringstream fields(line.substr(close + 2));
    std::string field;
    long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {  // utime and stime are fields 14 and 15
      if (i == 14) utime = std::stoll(field);
      if (i == 15) stime = std::stoll(field);
    }
    t->busy = user + nice + system + irq + softirq + steal;
    t->total = t->busy + idle + iowait;
    t->own = utime + stime;
    return true;
  }
  Ticks last_;
};

// Times a group of cases in rounds: each round runs every case that still needs runs once,
// each run followed by a pulse. A run is quiet when neither the pulse before it nor the one
// after it is slow for `monitor` (every pulse joins the monitor), and other processes took
// at most kMaxOtherCpuShare of the machine over it and its pulse (`other_share()`, called
// after every pulse, says how much they took since its previous call; none: not checked).
// `run_case[i]()` runs case i once and returns its milliseconds (flushing first is its
// business); `pulse()` likewise returns one pulse's milliseconds. Scripted functions make
// this testable without a clock.
// Cases with the same `partner` id (default: each its own) run back to back in every round
// while any of them needs more runs, and are quiet or disturbed together (any slow pulse
// from before the first to after the last), so that their runs pair up round by round. They
// take turns going first (index order in even rounds, reversed in odd ones), so that what a
// position brings (the pulse and flush before it, the cache state) falls on each alike.
inline std::vector<CaseTiming> time_interleaved(const TimingPolicy& policy, PulseMonitor& monitor,
                                                const std::vector<std::function<double()>>& run_case,
                                                const std::function<double()>& pulse,
                                                std::vector<int> partner = {},
                                                const std::function<double()>& other_share = {}) {
  const std::size_t n = run_case.size();
  if (partner.empty()) {
    for (std::size_t i = 0; i < n; ++i) partner.push_back(static_cast<int>(i));
  }
  // The partner groups, each in index order, in the order of their first case.
  std::vector<std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < n; ++i) {
    auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& x) { return partner[x[0]] == partner[i]; });
    if (g == groups.end()) groups.push_back({i});
    else g->push_back(i);
  }
  std::vector<CaseTimer> timers(n, CaseTimer(policy));
  double before = pulse();
  monitor.add(before);
  auto crowded = [&] { return other_share && other_share() > kMaxOtherCpuShare; };
  crowded();  // the window starts here
  bool any = true;
  for (int round = 0; any; ++round) {
    any = false;
    for (const std::vector<std::size_t>& group : groups) {
      if (std::none_of(group.begin(), group.end(), [&](std::size_t i) { return timers[i].needs_more(); })) continue;
      any = true;
      bool slow = monitor.slow(before);
      std::vector<std::size_t> turn = group;
      if (round % 2 == 1) std::reverse(turn.begin(), turn.end());
      std::vector<std::pair<double, double>> runs;  // (ms, pulse after) of each member, in turn order
      for (std::size_t i : turn) {
        const double ms = run_case[i]();
        const double after = pulse();
        slow = crowded() || slow || monitor.slow(after);
        monitor.add(after);
        runs.push_back({ms, after});
        before = after;
      }
      for (std::size_t k = 0; k < turn.size(); ++k) timers[turn[k]].record(runs[k].first, runs[k].second, !slow, round);
    }
  }
  std::vector<CaseTiming> out;
  for (const CaseTimer& t : timers) out.push_back(t.finish());
  return out;
}

// What a Stopwatch's pulse measures. Compute-bound cases follow the machine's FMA
// throughput (SGEMM); the decode suite's calls, which stream K and V from memory, follow its
// read bandwidth instead: on a shared host the two move apart (back-to-back default runs:
// decode rows tracked the streaming read, 19.5–21.5 against 16.2–18.6 GB/s, while the
// SGEMM pulse stayed within its tolerance).
enum class PulseKind { sgemm, read_bandwidth };

// The real clock and machine behind time_interleaved: `runs[i]` is case i's work; caches
// are flushed before every run and every SGEMM pulse (a streaming read of four times the
// last-level caches evicts them itself).
struct Stopwatch {
  explicit Stopwatch(PulseKind kind = PulseKind::sgemm, int threads = 1, double tolerance = kPulseTolerance)
      : monitor(tolerance) {
    if (kind == PulseKind::read_bandwidth) {
      read = std::make_unique<ReadBandwidth>(threads);
    } else {
      sgemm = std::make_unique<Sgemm>();
    }
  }
  CacheFlusher flusher;
  std::unique_ptr<Sgemm> sgemm;         // the pulse: one of the two
  std::unique_ptr<ReadBandwidth> read;
  PulseMonitor monitor;
  OtherCpuShare other_cpu;

  // The session's reference pulse: one warm-up pulse, then `count` pulses; returns them.
  std::vector<double> calibrate(int count) {
    pulse();
    std::vector<double> pulses;
    for (int i = 0; i < count; ++i) pulses.push_back(pulse());
    for (double p : pulses) monitor.add(p);
    return pulses;
  }
  double pulse() {
    if (read) return read->run_ms();
    flusher.flush();
    return sgemm->run_ms();
  }
  std::vector<CaseTiming> time(const TimingPolicy& policy, const std::vector<std::function<void()>>& runs,
                               std::vector<int> partner = {}) {
    std::vector<std::function<double()>> timed;
    for (const auto& run : runs) {
      timed.push_back([this, &run] {
        flusher.flush();
        const auto t0 = Clock::now();
        run();
        return milliseconds(t0);
      });
    }
    return time_interleaved(policy, monitor, timed, [this] { return pulse(); }, std::move(partner),
                            [this] { return other_cpu(); });
  }
};

}  // namespace flashattn::cli
