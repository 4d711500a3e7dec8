// bench_ring.cpp — `mpirun -np P flashattn bench --impl ring`: ring attention against the
// single-node call at the same total length, how much communication the compute hides,
// the causal balance of each layout, per-rank memory, and the scaling model fed by the
// rates measured here.
//
// Each rank makes its own slice's random inputs (no rank ever holds the whole sequence).
// The single-node call runs on rank 0 with every rank's threads while the others wait
// without spinning. Transfers alone (the same K/V messages round the ring, no compute) give
// the communication time that overlap is measured against:
//   exposed = call time (slowest rank) − the busiest rank's local work,
//   overlap = 1 − exposed / transfers alone   (1: fully hidden).
// (A rank's own wait time also counts waiting for a slower neighbour, so it is reported
// beside, as wait_ms, not used for overlap.)
#include <mpi.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <new>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "args.hpp"
#include "bench.hpp"
#include "internal.hpp"
#include "flashattn/ring.hpp"

namespace flashattn::cli {
namespace {

using i64 = std::int64_t;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr const char* kRingUsage = R"(usage: mpirun -np P flashattn bench --impl ring [options]

Ring attention (flashattn::ring) over P ranks against one process's flash call on the
whole sequence; JSON lines carry the bench's fields plus ranks, layout, bytes_sent,
comm_ms, comm_alone_ms, overlap, compute_imbalance, peak_rss_mb.

  --seqlen LIST       total sequence lengths (default 4096,8192)
  --batch B           default 1
  --heads H           default 8
  --heads-k HK        default: heads
  --headdim D         default 64
  --causal            causal attention
  --layout LIST       contiguous,zigzag (default both)
  --pass LIST         fwd,bwd (default both; bwd times the backward alone)
  --runs R            timed runs per case, median reported (default 3)
  --threads T         threads per rank (default: OpenMP's default)
  --memory-cap-mb M   cap every process's data memory (RLIMIT_DATA) at M MiB more than it
                      holds after start-up: a single-node call that does not fit is reported
                      as such (single_fits false) while the ring may still run
  --no-single         skip the single-node comparison
  --model             print the scaling model (predicted step time and efficiency for 8 to
                      1024 nodes, 100-400 Gb/s links, N up to 10M) for a node as fast as a
                      rank measured here (JSON lines impl "ring_model")
  --model-gflops LIST  the model also for nodes of these rates (GFLOP/s), e.g. a GPU's
  --json FILE|-       also write one JSON object per line (- for stdout, then no table)
)";

struct RingConfig {
  std::vector<i64> seqlens;
  i64 batch = 1, heads = 8, heads_k = 8, headdim = 64;
  bool causal = false, single = true, model = false;
  std::vector<double> model_gflops;  // node rates for the model beside the measured one
  std::vector<ring::Layout> layouts;
  std::vector<std::string> passes;
  int runs = 3, threads = 0;
  i64 memory_cap_mb = 0;
  std::string json;
};

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// The process's data segment now (VmData: what RLIMIT_DATA counts), in MiB.
i64 data_segment_mb() {
  std::ifstream status("/proc/self/status");
  std::string key;
  i64 kib = 0;
  while (status >> key) {
    if (key == "VmData:") {
      status >> kib;
      break;
    }
  }
  return kib / 1024;
}

// Waits at a barrier without spinning a core (the single-node call needs them all).
void quiet_barrier(MPI_Comm comm) {
  MPI_Request request;
  MPI_Ibarrier(comm, &request);
  int done = 0;
  while (!done) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (!done) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// One process's tensors for `rows` rows of the sequence: q, k, v (uniform in [−1, 1)), out,
// lse, and for the backward dout (random), dq, dk, dv.
struct Tensors {
  harness::HostTensor q, k, v, out, lse, dout, dq, dk, dv;
  Tensors(const RingConfig& c, i64 rows, bool backward, std::uint64_t seed)
      : q(c.batch, rows, c.heads, c.headdim, false),
        k(c.batch, rows, c.heads_k, c.headdim, false),
        v(c.batch, rows, c.heads_k, c.headdim, false),
        out(c.batch, rows, c.heads, c.headdim, false),
        lse(c.batch, c.heads, rows, 0, false) {
    if (backward) {
      dout = harness::HostTensor(c.batch, rows, c.heads, c.headdim, false);
      dq = harness::HostTensor(c.batch, rows, c.heads, c.headdim, false);
      dk = harness::HostTensor(c.batch, rows, c.heads_k, c.headdim, false);
      dv = harness::HostTensor(c.batch, rows, c.heads_k, c.headdim, false);
      dout.fill_uniform(seed + 3, -1.0f, 1.0f);
    }
    q.fill_uniform(seed, -1.0f, 1.0f);
    k.fill_uniform(seed + 1, -1.0f, 1.0f);
    v.fill_uniform(seed + 2, -1.0f, 1.0f);
  }
  i64 bytes() const {
    i64 total = 0;
    for (const harness::HostTensor* t : {&q, &k, &v, &out, &lse, &dout, &dq, &dk, &dv}) {
      if (t->view().rank > 0) total += t->view().numel() * static_cast<i64>(sizeof(float));
    }
    return total;
  }
};

// FlashAttention's count: forward 4·B·H·N²·d, halved for causal; backward 2.5× forward.
double gflop(const RingConfig& c, i64 n, const std::string& pass) {
  const double fwd = 4.0 * c.batch * c.heads * double(n) * n * c.headdim * (c.causal ? 0.5 : 1.0);
  return fwd * pass_factor(pass) / 1e9;
}

struct Measured {
  double ms = 0, ms_min = 0, ms_max = 0;  // ring call, slowest rank, over runs
  double compute_ms = 0, wait_ms = 0;     // max over ranks (median run)
  double exposed_ms = 0;                  // call time beyond the busiest rank's local work
  double compute_imbalance = 0;           // max / mean of the ranks' compute
  i64 bytes_sent = 0;                     // all ranks
  double comm_alone_ms = 0;               // the same transfers, no compute
  double single_ms = -1;                  // −1: not run; −2: did not fit
  double single_memory_mb = 0;            // its tensors and buffers
  double peak_rss_mb = 0;                 // max over ranks
  double memory_mb = 0;                   // max over ranks: the slice's tensors + the ring's and kernels' buffers
  double rank_gflops = 0;                 // the ranks' kernel rate (work / compute time)
};

// The same messages round the ring as a forward (or a backward, with the dK/dV ones), alone.
double transfers_alone_ms(MPI_Comm comm, i64 floats_per_step, bool with_grads) {
  int size = 0, rank = 0;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  if (size == 1) return 0.0;
  std::vector<float> a(static_cast<std::size_t>(floats_per_step)), b(a.size());
  const int right = (rank + 1) % size, left = (rank + size - 1) % size;
  MPI_Barrier(comm);
  const auto t0 = Clock::now();
  // P − 1 K/V hops; the backward's dK/dV accumulators make P more (the last one home).
  for (int s = 0; s < (size - 1) + (with_grads ? size : 0); ++s) {
    MPI_Sendrecv(a.data(), static_cast<int>(floats_per_step), MPI_FLOAT, right, 7, b.data(),
                 static_cast<int>(floats_per_step), MPI_FLOAT, left, 7, comm, MPI_STATUS_IGNORE);
    std::swap(a, b);
  }
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  double slowest = 0;
  MPI_Allreduce(&ms, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
  return slowest;
}

Measured measure(const RingConfig& c, i64 n, ring::Layout layout, const std::string& pass, MPI_Comm comm) {
  int P = 0, rank = 0;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  Measured m;
  AttentionOptions o;
  o.causal = c.causal;
  o.num_threads = c.threads;
  // Setup: this rank's slice, random, its own seed; every rank must have it before any
  // enters the ring (a rank short of memory would leave the others waiting).
  const i64 rows = ring::local_length(layout, n, P, rank);
  std::optional<Tensors> t;
  int allocated = 1;
  try {
    t.emplace(c, rows, pass == "bwd", static_cast<std::uint64_t>(1000 + 10 * rank));
  } catch (const std::bad_alloc&) {
    allocated = 0;
  }
  MPI_Allreduce(MPI_IN_PLACE, &allocated, 1, MPI_INT, MPI_MIN, comm);
  if (!allocated) throw std::bad_alloc();
  const i64 tensor_bytes = t->bytes();
  if (pass == "bwd")
    ring::forward(comm, t->q.view(), t->k.view(), t->v.view(), t->out.view(), t->lse.view(), o, layout);
  auto call = [&](ring::Stats* s) {
    if (pass == "fwd") {
      ring::forward(comm, t->q.view(), t->k.view(), t->v.view(), t->out.view(), t->lse.view(), o, layout, s);
    } else {
      ring::backward(comm, t->dout.view(), t->q.view(), t->k.view(), t->v.view(), t->out.view(), t->lse.view(),
                     t->dq.view(), t->dk.view(), t->dv.view(), o, layout, s);
    }
  };
  // Main loop: a warm-up (measuring the ring's own buffers at their peak), then the runs;
  // each run's time is its slowest rank's.
  reset_peak_allocated_bytes();
  call(nullptr);
  const double memory_mb = static_cast<double>(tensor_bytes + peak_allocated_bytes()) / (1 << 20);
  MPI_Allreduce(&memory_mb, &m.memory_mb, 1, MPI_DOUBLE, MPI_MAX, comm);
  std::vector<double> ms, compute, wait;
  std::vector<ring::Stats> all;
  for (int run = 0; run < c.runs; ++run) {
    MPI_Barrier(comm);
    ring::Stats s;
    call(&s);
    double slowest = 0, max_compute = 0, max_wait = 0;
    MPI_Allreduce(&s.total_ms, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
    MPI_Allreduce(&s.compute_ms, &max_compute, 1, MPI_DOUBLE, MPI_MAX, comm);
    MPI_Allreduce(&s.wait_ms, &max_wait, 1, MPI_DOUBLE, MPI_MAX, comm);
    ms.push_back(slowest);
    compute.push_back(max_compute);
    wait.push_back(max_wait);
    all.push_back(s);
  }
  m.ms = median(ms);
  m.ms_min = *std::min_element(ms.begin(), ms.end());
  m.ms_max = *std::max_element(ms.begin(), ms.end());
  m.compute_ms = median(compute);
  m.wait_ms = median(wait);
  std::vector<double> exposed;
  for (std::size_t x = 0; x < ms.size(); ++x) exposed.push_back(std::max(0.0, ms[x] - compute[x]));
  m.exposed_ms = median(exposed);
  const ring::Stats& last = all.back();
  double mine_compute = median([&] {
    std::vector<double> x;
    for (const ring::Stats& s : all) x.push_back(s.compute_ms);
    return x;
  }());
  double sum_compute = 0;
  MPI_Allreduce(&mine_compute, &sum_compute, 1, MPI_DOUBLE, MPI_SUM, comm);
  m.compute_imbalance = sum_compute > 0 ? m.compute_ms / (sum_compute / P) : 1.0;
  m.rank_gflops = sum_compute > 0 ? gflop(c, n, pass) / (sum_compute / 1e3) : 0.0;
  i64 sent = last.bytes_sent;
  MPI_Allreduce(&sent, &m.bytes_sent, 1, MPI_INT64_T, MPI_SUM, comm);
  // Transfers alone: the largest slice's K and V (and dK, dV in the backward), P − 1 steps.
  const i64 max_rows = ring::local_length(layout, n, P, 0);
  m.comm_alone_ms = transfers_alone_ms(comm, 2 * c.batch * max_rows * c.heads_k * c.headdim, pass == "bwd");
  double rss = peak_rss_mb();
  MPI_Allreduce(&rss, &m.peak_rss_mb, 1, MPI_DOUBLE, MPI_MAX, comm);

  // The single-node call on the whole sequence, rank 0, every rank's threads.
  if (c.single) {
    if (rank == 0) {
      int threads = c.threads > 0 ? c.threads : 1;
      if (c.threads <= 0)
        threads = std::max(1u, std::thread::hardware_concurrency());
      else
        threads *= P;
      AttentionOptions so = o;
      so.num_threads = threads;
      try {
        Tensors w(c, n, pass == "bwd", 7);
        if (pass == "bwd") flashattn::forward(w.q.view(), w.k.view(), w.v.view(), w.out.view(), w.lse.view(), so);
        auto single = [&] {
          if (pass == "fwd") {
            flashattn::forward(w.q.view(), w.k.view(), w.v.view(), w.out.view(), w.lse.view(), so);
          } else {
            flashattn::backward(w.dout.view(), w.q.view(), w.k.view(), w.v.view(), w.out.view(), w.lse.view(),
                                w.dq.view(), w.dk.view(), w.dv.view(), so);
          }
        };
        reset_peak_allocated_bytes();
        single();
        m.single_memory_mb = static_cast<double>(w.bytes() + peak_allocated_bytes()) / (1 << 20);
        std::vector<double> t;
        for (int run = 0; run < c.runs; ++run) {
          const auto t0 = Clock::now();
          single();
          t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        }
        m.single_ms = median(t);
      } catch (const std::bad_alloc&) {
        m.single_ms = -2;
      }
    }
    quiet_barrier(comm);
    MPI_Bcast(&m.single_ms, 1, MPI_DOUBLE, 0, comm);
    MPI_Bcast(&m.single_memory_mb, 1, MPI_DOUBLE, 0, comm);
  }
  return m;
}

json record(const RingConfig& c, i64 n, ring::Layout layout, const std::string& pass, int P, const Measured& m) {
  json j;
  j["impl"] = "ring";
  j["pass"] = pass;
  j["variant"] = "plain";
  j["batch"] = c.batch;
  j["seqlen"] = n;
  j["seqlen_k"] = n;
  j["heads"] = c.heads;
  j["heads_k"] = c.heads_k;
  j["headdim"] = c.headdim;
  j["causal"] = c.causal;
  j["ranks"] = P;
  j["layout"] = ring::to_string(layout);
  j["threads_per_rank"] = c.threads;
  j["ms"] = m.ms;
  j["ms_min"] = m.ms_min;
  j["ms_max"] = m.ms_max;
  j["runs"] = c.runs;
  j["gflops"] = gflop(c, n, pass) / (m.ms / 1e3);
  j["bytes_sent"] = m.bytes_sent;
  j["comm_ms"] = m.exposed_ms;
  j["wait_ms"] = m.wait_ms;
  j["comm_alone_ms"] = m.comm_alone_ms;
  j["overlap"] = m.comm_alone_ms > 0 ? std::clamp(1.0 - m.exposed_ms / m.comm_alone_ms, 0.0, 1.0) : 1.0;
  j["compute_ms"] = m.compute_ms;
  j["compute_imbalance"] = m.compute_imbalance;
  j["rank_gflops"] = m.rank_gflops;
  // The model on this run's own rates, perfect overlap and balance: max(a rank's share of
  // the work at the measured rate, the transfers alone).
  const double compute_ms = m.rank_gflops > 0 ? gflop(c, n, pass) / (P * m.rank_gflops) * 1e3 : 0.0;
  j["model_ms"] = std::max(compute_ms, m.comm_alone_ms);
  j["peak_rss_mb"] = m.peak_rss_mb;
  j["memory_mb"] = m.memory_mb;
  if (m.single_memory_mb > 0) j["single_memory_mb"] = m.single_memory_mb;
  if (m.single_ms > 0) {
    j["single_ms"] = m.single_ms;
    j["speedup_vs_single"] = m.single_ms / m.ms;
  } else if (m.single_ms == -2) {
    j["single_ms"] = nullptr;
    j["single_fits"] = false;
  }
  if (c.memory_cap_mb > 0) j["memory_cap_mb"] = c.memory_cap_mb;
  return j;
}

// The scaling model. Per ring step a node computes its (N/P)² block and moves one K/V
// slice: t_compute = f · 4·B·H·(N/P)²·d / F (f = 1/2 causal, balanced by zigzag),
// t_transfer = 2·B·Hk·(N/P)·d·bytes / W. With the transfer posted before the compute the
// step takes max of the two; a forward takes P steps. Hidden when t_compute >= t_transfer,
// i.e. N/P >= 2·Hk·bytes·F / (4·f·H·W). F: a node's attention rate (FLOP/s), W: its
// link's rate (bytes/s).
struct ModelStep {
  double compute_s = 0, transfer_s = 0;
  double step_s() const { return std::max(compute_s, transfer_s); }
  double efficiency() const { return step_s() > 0 ? compute_s / step_s() : 1.0; }
};

ModelStep model_step(const RingConfig& c, double seqlen, int nodes, double F, double W) {
  const double bytes = 4.0;  // f32 today; bf16 would halve the transfer
  const double f = c.causal ? 0.5 : 1.0, slice = seqlen / nodes;
  return {f * 4.0 * c.batch * c.heads * slice * slice * c.headdim / F,
          nodes > 1 ? 2.0 * c.batch * c.heads_k * slice * c.headdim * bytes / W : 0.0};
}

void print_model(const RingConfig& c, const std::vector<double>& node_gflops, std::ostream* table,
                 std::ostream* json_out) {
  if (table) {
    *table << "\nScaling model, forward (B=" << c.batch << " H=" << c.heads << " Hk=" << c.heads_k << " d=" << c.headdim
           << (c.causal ? ", causal" : "") << ", f32): step = max(compute, transfer), forward = P steps\n";
  }
  for (double gflops : node_gflops) {
    const double F = gflops * 1e9;
    if (table) {
      *table << "node rate F = " << gflops << " GFLOP/s; communication hidden when N/P >= ";
      for (double gbit : {100.0, 200.0, 400.0}) {
        const double W = gbit * 1e9 / 8, f = c.causal ? 0.5 : 1.0;
        *table << std::ceil(2.0 * c.heads_k * 4.0 * F / (4.0 * f * c.heads * W)) << " tokens (" << gbit << " Gb/s) ";
      }
      *table << "\n  N          nodes  Gb/s    step ms    forward s  efficiency\n";
    }
    for (double n : {131072.0, 1048576.0, 10485760.0}) {
      for (int nodes : {8, 64, 1024}) {
        for (double gbit : {100.0, 200.0, 400.0}) {
          const ModelStep m = model_step(c, n, nodes, F, gbit * 1e9 / 8);
          if (table) {
            char line[160];
            std::snprintf(line, sizeof line, "  %-10.0f %5d  %4.0f  %9.3f  %11.3f  %6.1f%%\n", n, nodes, gbit,
                          m.step_s() * 1e3, m.step_s() * nodes, 100.0 * m.efficiency());
            *table << line;
          }
          if (json_out) {
            json j;
            j["impl"] = "ring_model";
            j["node_gflops"] = gflops;
            j["link_gbps"] = gbit;
            j["nodes"] = nodes;
            j["seqlen"] = static_cast<i64>(n);
            j["heads"] = c.heads;
            j["heads_k"] = c.heads_k;
            j["headdim"] = c.headdim;
            j["causal"] = c.causal;
            j["step_ms"] = m.step_s() * 1e3;
            j["forward_s"] = m.step_s() * nodes;
            j["efficiency"] = m.efficiency();
            *json_out << j.dump() << std::endl;
          }
        }
      }
    }
  }
}

}  // namespace

int ring_bench_main(int argc, char** argv) {
  RingConfig c;
  {
    Args args(argc, argv);
    if (args.flag("help")) {
      std::cout << kRingUsage;
      return 0;
    }
    args.words("impl", {"ring"}, {"ring"});
    c.seqlens = args.integers("seqlen", {4096, 8192}, 1, i64{1} << 32);
    c.batch = args.integer("batch", 1, 1, 1 << 20);
    c.heads = args.integer("heads", 8, 1, 1 << 16);
    c.heads_k = args.integer("heads-k", c.heads, 1, 1 << 16);
    if (c.heads % c.heads_k != 0) throw UsageError("--heads-k must divide --heads");
    c.headdim = args.integer("headdim", 64, 1, kMaxHeadDim);
    c.causal = args.flag("causal");
    for (const std::string& l : args.words("layout", {"contiguous", "zigzag"}, {"contiguous", "zigzag"})) {
      c.layouts.push_back(l == "zigzag" ? ring::Layout::zigzag : ring::Layout::contiguous);
    }
    c.passes = args.words("pass", {"fwd", "bwd"}, {"fwd", "bwd"});
    c.runs = static_cast<int>(args.integer("runs", 3, 1, 1000));
    c.threads = static_cast<int>(args.integer("threads", 0, 0, 1 << 12));
    c.memory_cap_mb = args.integer("memory-cap-mb", 0, 0, i64{1} << 40);
    c.single = !args.flag("no-single");
    c.model = args.flag("model");
    for (i64 g : args.integers("model-gflops", {}, 1, i64{1} << 40)) c.model_gflops.push_back(static_cast<double>(g));
    if (!c.model_gflops.empty()) c.model = true;
    c.json = args.text("json", "");
    args.finish();
  }
  int provided = 0, initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  int P = 0, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (c.memory_cap_mb > 0) {  // on top of what the process holds already (MPI, OpenBLAS, OpenMP)
    const rlim_t cap = static_cast<rlim_t>(data_segment_mb() + c.memory_cap_mb) << 20;
    const rlimit limit{cap, cap};
    setrlimit(RLIMIT_DATA, &limit);
  }
  std::ofstream file;
  std::ostream* json_out = nullptr;
  if (rank == 0 && !c.json.empty()) {
    if (c.json == "-") {
      json_out = &std::cout;
    } else {
      file.open(c.json, std::ios::app);
      if (!file) throw std::runtime_error("cannot open --json file " + c.json);
      json_out = &file;
    }
  }
  const bool table = rank == 0 && c.json != "-";
  if (table) {
    std::printf("ring attention: %d ranks, batch %lld, heads %lld/%lld, headdim %lld%s\n", P,
                static_cast<long long>(c.batch), static_cast<long long>(c.heads), static_cast<long long>(c.heads_k),
                static_cast<long long>(c.headdim), c.causal ? ", causal" : "");
    std::printf("%-5s %-10s %8s %10s %10s %8s %9s %9s %8s %9s %9s\n", "pass", "layout", "N", "ring ms", "single ms",
                "speedup", "comm ms", "alone ms", "overlap", "imbalance", "mem MiB");
  }
  double best_rank_gflops = 0;
  int status = 0;
  for (i64 n : c.seqlens) {
    for (const std::string& pass : c.passes) {
      for (ring::Layout layout : c.layouts) {
        Measured m;
        try {
          m = measure(c, n, layout, pass, MPI_COMM_WORLD);
        } catch (const std::bad_alloc&) {
          if (rank == 0)
            std::fprintf(stderr, "ring: N=%lld does not fit the memory cap per rank\n", static_cast<long long>(n));
          status = 1;
          continue;
        }
        if (pass == "fwd") best_rank_gflops = std::max(best_rank_gflops, m.rank_gflops);
        const json j = record(c, n, layout, pass, P, m);
        if (json_out) *json_out << j.dump() << std::endl;
        if (table) {
          char single[32];
          if (m.single_ms > 0)
            std::snprintf(single, sizeof single, "%.1f", m.single_ms);
          else
            std::snprintf(single, sizeof single, "%s", m.single_ms == -2 ? "over cap" : "-");
          std::printf("%-5s %-10s %8lld %10.1f %10s %8s %9.1f %9.1f %7.0f%% %9.2f %9.0f\n", pass.c_str(),
                      ring::to_string(layout), static_cast<long long>(n), m.ms, single,
                      m.single_ms > 0 ? (std::to_string(m.single_ms / m.ms).substr(0, 4) + "x").c_str() : "-",
                      m.exposed_ms, m.comm_alone_ms, 100.0 * j["overlap"].get<double>(), m.compute_imbalance,
                      m.memory_mb);
        }
      }
    }
  }
  if (c.model && rank == 0) {
    std::vector<double> rates{best_rank_gflops};
    rates.insert(rates.end(), c.model_gflops.begin(), c.model_gflops.end());
    print_model(c, rates, table ? &std::cout : nullptr, json_out);
  }
  MPI_Finalize();
  return status;
}

}  // namespace flashattn::cli
