// bench.cpp — `flashattn bench`: the machine's SGEMM rate, then each implementation and
// pass, in one process, with the same thread count.
//
// Each case is validated against the reference on a small shape with the same headdim,
// head ratio, mask and dropout, then warmed up, run --repeat times with the caches
// flushed between runs, and reported by its median, as a ratio to SGEMM runs
// interleaved with its own. FLOPs are counted as
// FlashAttention's benchmark counts them: forward 4·B·H·Nq·Nk·d (halved under causal),
// backward 2.5× forward, forward+backward 3.5× forward.
#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "args.hpp"
#include "cli.hpp"
#include "core/memory.hpp"
#include "flashattn/block_sparse.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/flash.hpp"
#include "harness/harness.hpp"

namespace flashattn::cli {
namespace {

using i64 = std::int64_t;
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage = R"usage(usage: flashattn bench [flags]

Measures the machine's SGEMM rate (OpenBLAS, 2048^3, same thread count), then each
implementation and pass; validates each case against the reference first.

  --impl LIST        flash,standard,blocksparse (default: flash,standard); blocksparse is
                     flash with a block mask (--mask, --density, --mask-block)
  --pass LIST        fwd,bwd,fwdbwd (default: fwd,bwd)
  --batch B          default 1
  --heads H          default 8
  --heads-k HK       default: heads (a divisor of heads: grouped-query attention)
  --seqlen N[,N...]  query lengths, default 1024,2048
  --seqlen-k NK      key length, default: seqlen
  --headdim D[,D...] default 64
  --causal           causal mask (bottom-right aligned)
  --dropout P        dropout probability in [0, 1), default 0
  --threads T        default: all cores (OpenMP's default)
  --repeat R         timed runs per case (median reported), default 5
  --isa NAME         force the flash kernels: portable, avx2, avx512
  --block-q BQ       flash tile rows (default: from the cache sizes)
  --block-k BK       flash tile keys (default: from the cache sizes)
  --mask NAME        blocksparse pattern: random (default), local (window 1, 1 global
                     block), fixed (stride 4), butterfly, causal (the blocks a causal mask
                     touches; add --causal for the element mask on the diagonal)
  --density S        blocksparse: fraction of blocks on for --mask random, default 0.5
  --mask-block B     blocksparse: block size in queries and keys, default 128
  --no-check         skip the validation against the reference
  --mem-cap-mib M    skip (as "OOM (skipped)") any case whose tensors and the path's own
                     buffers would exceed M MiB; default: half the machine's memory
  --json FILE|-      also write one JSON object per line (- for stdout, then no table)

JSON fields: impl, pass, batch, heads, heads_k, seqlen_q, seqlen_k, headdim, causal,
dropout, threads, isa, ms (median), gflops, peak_bytes (bytes the call allocated at peak,
measured), max_err (null when not checked), block_q, block_k, density (fraction of the
block mask's blocks on; 1 without one), mask (none, or the pattern), skipped (present only on a
case skipped for the memory cap, with peak_bytes the estimate), sgemm_gflops (SGEMM runs
interleaved with this case's runs), sgemm_ratio (gflops / sgemm_gflops); the first
record has impl "sgemm", pass "gemm" and m, n, k.
)usage";

struct Config {
  std::vector<std::string> impls, passes;
  i64 batch, heads, heads_k, seqlen_k;
  std::vector<i64> seqlens, headdims;
  bool causal, check;
  i64 mem_cap_bytes;
  double density;            // blocksparse: fraction of blocks on (random pattern)
  std::string mask_pattern;  // blocksparse: random, local, fixed, butterfly
  i64 mask_block;            // blocksparse: block size (queries and keys)
  double dropout;
  int threads, repeat, block_q, block_k;
  std::optional<Isa> isa;
  std::string json;
};

// Writing a buffer larger than the last-level cache between runs evicts the operands.
class CacheFlusher {
 public:
  CacheFlusher() : bytes_(i64{64} << 20), buffer_(new char[bytes_]) {}
  void flush() { std::memset(buffer_.get(), static_cast<int>(++round_), bytes_); }

 private:
  i64 bytes_;
  std::unique_ptr<char[]> buffer_;
  unsigned round_ = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double milliseconds(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// SGEMM 2048³ on the benchmark's thread count: the practical ceiling of the machine.
class Sgemm {
 public:
  static constexpr i64 kN = 2048;
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
  double ms;        // median of the case
  double sgemm_ms;  // median of the SGEMM runs interleaved with it
};

// Warm-up, then `repeat` runs of the case, each followed by one SGEMM, caches flushed
// before every run: the machine's speed drifts (shared hosts), and a ratio of medians
// taken in the same seconds is steadier than one against an SGEMM timed minutes apart.
template <typename F>
Timing time_case(int repeat, CacheFlusher& flusher, Sgemm& sgemm, F&& run) {
  run();
  std::vector<double> ms, sgemm_ms;
  for (int r = 0; r < repeat; ++r) {
    flusher.flush();
    const auto t0 = Clock::now();
    run();
    ms.push_back(milliseconds(t0));
    flusher.flush();
    sgemm_ms.push_back(sgemm.run_ms());
  }
  return {median(ms), median(sgemm_ms)};
}

harness::Case make_case(const Config& cfg, i64 seqlen, i64 headdim) {
  harness::Case c;
  c.shape = {cfg.batch, seqlen, cfg.seqlen_k > 0 ? cfg.seqlen_k : seqlen, cfg.heads, cfg.heads_k, headdim};
  c.options.causal = cfg.causal;
  c.options.dropout_p = static_cast<float>(cfg.dropout);
  c.options.seed = 2024;
  c.options.num_threads = cfg.threads;
  c.options.isa = cfg.isa;
  c.options.block_q = cfg.block_q;
  c.options.block_k = cfg.block_k;
  return c;
}

// The block mask of --mask at the case's shape: random at --density, or a pattern.
void add_block_mask(const Config& cfg, harness::Case& c) {
  const i64 block = cfg.mask_block;
  const i64 rows = (c.shape.seqlen_q + block - 1) / block, cols = (c.shape.seqlen_k + block - 1) / block;
  // The blocks a bottom-right causal mask touches: key block kb holds a key that the last
  // query of block qb sees.
  const i64 offset = c.shape.seqlen_k - c.shape.seqlen_q;
  std::vector<std::uint8_t> lower(static_cast<std::size_t>(rows * cols));
  for (i64 qb = 0; qb < rows; ++qb) {
    for (i64 kb = 0; kb < cols; ++kb) lower[qb * cols + kb] = kb * block <= qb * block + block - 1 + offset;
  }
  std::vector<std::uint8_t> blocks = cfg.mask_pattern == "causal"      ? lower
                                     : cfg.mask_pattern == "local"     ? local_global_blocks(rows, cols, 1, 1)
                                     : cfg.mask_pattern == "fixed"     ? fixed_stride_blocks(rows, cols, 4)
                                     : cfg.mask_pattern == "butterfly" ? butterfly_blocks(rows, cols)
                                                                       : random_blocks(rows, cols, cfg.density, 7);
  c.set_block_mask(std::move(blocks), block, block);
}

// Fraction of the mask's blocks that are on (1 without a mask).
double mask_density(const harness::Case& c) {
  if (!c.mask || c.mask->empty()) return 1.0;
  double on = 0;
  for (std::uint8_t x : *c.mask) on += x != 0;
  return on / static_cast<double>(c.mask->size());
}

// Max error of one implementation's pass on a small version of the case.
double validate(const Config& cfg, const harness::Case& full, Algorithm algorithm, const std::string& pass) {
  harness::Case c = full;
  c.shape.batch = 1;
  c.shape.heads_k = 1;
  c.shape.heads = full.shape.heads / full.shape.heads_k;
  c.shape.seqlen_q = std::min<i64>(full.shape.seqlen_q, 160);
  c.shape.seqlen_k = std::min<i64>(full.shape.seqlen_k, 160 + (full.shape.seqlen_k - full.shape.seqlen_q));
  c.shape.seqlen_k = std::max<i64>(c.shape.seqlen_k, 1);
  if (full.options.block_mask) add_block_mask(cfg, c);
  const harness::Inputs in = harness::make_inputs(c);
  const harness::ReferenceOutputs ref = harness::run_reference(c, in, pass != "fwd");
  harness::ForwardOutputs fwd = harness::make_forward_outputs(c);
  harness::run_forward(c, in, fwd, algorithm);
  double err = harness::forward_errors(fwd, ref).max();
  if (pass != "fwd") {
    harness::BackwardOutputs bwd = harness::make_backward_outputs(c);
    harness::run_backward(c, in, fwd, bwd, algorithm);
    const double bwd_err = harness::backward_errors(bwd, ref).max();
    err = pass == "bwd" ? bwd_err : std::max(err, bwd_err);
  }
  return err;
}

// Bytes a case would hold: the benchmark's own tensors, plus what the path allocates
// (standard: one seqlen_q × seqlen_k matrix forward, two backward; flash: the forward's
// packed K and V, the backward's dQ copies, at most 32 MiB, and its row sums; tiles are
// small and left out).
i64 estimated_bytes(const harness::Case& c, const std::string& impl, const std::string& pass) {
  const harness::Shape& s = c.shape;
  const i64 q = s.batch * s.seqlen_q * s.heads * s.headdim, k = s.batch * s.seqlen_k * s.heads_k * s.headdim;
  const i64 rows = s.batch * s.heads * s.seqlen_q;
  const i64 tensors = 4 * (4 * q + 4 * k + rows);
  if (impl == "standard") return tensors + s.seqlen_q * s.seqlen_k * 4 * (pass == "fwd" ? 1 : 2);
  const i64 forward = 2 * k * 4;
  const i64 backward = std::min<i64>(i64{32} << 20, 15 * q * 4) + rows * 4;
  return tensors + (pass == "fwd" ? forward : pass == "bwd" ? backward : std::max(forward, backward));
}

std::string json_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

int bench_main(int argc, char** argv) {
  Config cfg;
  try {
    Args args(argc, argv);
    if (args.flag("help")) {
      std::cout << kUsage;
      return 0;
    }
    cfg.impls = args.words("impl", {"flash", "standard"}, {"flash", "standard", "blocksparse"});
    cfg.density = args.real("density", 0.5, 0.0, 1.0);
    cfg.mask_pattern = args.words("mask", {"random"}, {"random", "local", "fixed", "butterfly", "causal"}).front();
    cfg.mask_block = args.integer("mask-block", 128, 1, 4096);
    cfg.passes = args.words("pass", {"fwd", "bwd"}, {"fwd", "bwd", "fwdbwd"});
    cfg.batch = args.integer("batch", 1, 1, 1 << 20);
    cfg.heads = args.integer("heads", 8, 1, 1 << 16);
    cfg.heads_k = args.integer("heads-k", cfg.heads, 1, 1 << 16);
    if (cfg.heads % cfg.heads_k != 0) throw UsageError("--heads-k must divide --heads");
    cfg.seqlens = args.integers("seqlen", {1024, 2048}, 1, i64{1} << 24);
    cfg.seqlen_k = args.integer("seqlen-k", 0, 1, i64{1} << 24);
    cfg.headdims = args.integers("headdim", {64}, 1, kMaxHeadDim);
    cfg.causal = args.flag("causal");
    cfg.dropout = args.real("dropout", 0.0, 0.0, 0.999);
    cfg.threads = static_cast<int>(args.integer("threads", omp_get_max_threads(), 1, 1024));
    cfg.repeat = static_cast<int>(args.integer("repeat", 5, 1, 1000));
    cfg.block_q = static_cast<int>(args.integer("block-q", 0, 1, 4096));
    cfg.block_k = static_cast<int>(args.integer("block-k", 0, 1, 4096));
    cfg.check = !args.flag("no-check");
    const i64 ram = static_cast<i64>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
    cfg.mem_cap_bytes = args.integer("mem-cap-mib", ram / 2 >> 20, 1, i64{1} << 40) << 20;
    cfg.json = args.text("json", "");
    if (args.has("isa")) {
      const std::string name = args.text("isa", "");
      cfg.isa = parse_isa(name);
      if (!cfg.isa) throw UsageError("--isa: unknown '" + name + "' (portable, avx2, avx512)");
    }
    args.finish();
  } catch (const UsageError& e) {
    std::cerr << "flashattn bench: " << e.what() << "\n\n" << kUsage;
    return 2;
  }

  std::ofstream json_file;
  std::ostream* json = nullptr;
  if (cfg.json == "-") {
    json = &std::cout;
  } else if (!cfg.json.empty()) {
    json_file.open(cfg.json);
    if (!json_file) {
      std::cerr << "flashattn bench: cannot write " << cfg.json << "\n";
      return 1;
    }
    json = &json_file;
  }
  const bool table = cfg.json != "-";
  const std::string isa_name = to_string(cfg.isa.value_or(default_isa()));

  CacheFlusher flusher;
  Sgemm sgemm_runner;
  openblas_set_num_threads(cfg.threads);
  const double sgemm_ms = time_case(cfg.repeat, flusher, sgemm_runner, [&] { sgemm_runner.run_ms(); }).ms;
  const double sgemm = Sgemm::kFlops / (sgemm_ms * 1e6);
  if (json) {
    *json << "{\"impl\":\"sgemm\",\"pass\":\"gemm\",\"m\":2048,\"n\":2048,\"k\":2048,\"threads\":"
          << cfg.threads << ",\"isa\":\"openblas-" << openblas_get_corename() << "\",\"ms\":"
          << json_number(sgemm_ms) << ",\"gflops\":" << json_number(sgemm) << "}" << std::endl;
  }
  if (table) {
    std::printf("machine: %d threads, L1d %lld KiB, L2 %lld KiB; OpenBLAS core %s\n", cfg.threads,
                static_cast<long long>(cache_sizes().l1d_bytes >> 10),
                static_cast<long long>(cache_sizes().l2_bytes >> 10), openblas_get_corename());
    std::printf("sgemm 2048^3: %.2f ms, %.1f GFLOP/s (each row's /sgemm uses SGEMM runs interleaved with its own)\n\n",
                sgemm_ms, sgemm);
    std::printf("%-11s %-7s %7s %7s %5s %7s %10s %9s %7s %12s %10s\n", "impl", "pass", "seqlen",
                "seqlen_k", "d", "tiles", "ms", "GFLOP/s", "/sgemm", "peak_MiB", "max_err");
  }

  for (i64 headdim : cfg.headdims) {
    for (i64 seqlen : cfg.seqlens) {
      const harness::Case c = make_case(cfg, seqlen, headdim);
      harness::Case sparse = c;
      if (std::find(cfg.impls.begin(), cfg.impls.end(), "blocksparse") != cfg.impls.end()) add_block_mask(cfg, sparse);
      // The passes of each implementation that fit under the memory cap; the others are
      // reported as skipped, as the paper's tables print "—", and nothing is allocated for
      // a case none of whose passes fit.
      std::vector<std::vector<std::string>> fitting;
      bool any = false;
      for (const std::string& impl : cfg.impls) {
        fitting.emplace_back();
        for (const std::string& pass : cfg.passes) {
          const i64 need = estimated_bytes(c, impl, pass);
          if (need <= cfg.mem_cap_bytes) {
            fitting.back().push_back(pass);
            any = true;
            continue;
          }
          if (table) {
            std::printf("%-11s %-7s %7lld %7lld %5lld %7s %10s   OOM (skipped: needs %.0f MiB, cap %.0f MiB)\n",
                        impl.c_str(), pass.c_str(), static_cast<long long>(c.shape.seqlen_q),
                        static_cast<long long>(c.shape.seqlen_k), static_cast<long long>(headdim), "-", "-",
                        need / 1048576.0, cfg.mem_cap_bytes / 1048576.0);
          }
          if (json) {
            *json << "{\"impl\":\"" << impl << "\",\"pass\":\"" << pass << "\",\"batch\":" << c.shape.batch
                  << ",\"heads\":" << c.shape.heads << ",\"heads_k\":" << c.shape.heads_k
                  << ",\"seqlen_q\":" << c.shape.seqlen_q << ",\"seqlen_k\":" << c.shape.seqlen_k
                  << ",\"headdim\":" << headdim << ",\"causal\":" << (cfg.causal ? "true" : "false")
                  << ",\"dropout\":" << json_number(cfg.dropout) << ",\"threads\":" << cfg.threads
                  << ",\"peak_bytes\":" << need << ",\"skipped\":\"memory cap\"}" << std::endl;
          }
        }
      }
      if (!any) continue;

      const harness::Inputs in = harness::make_inputs(c);
      harness::ForwardOutputs fwd = harness::make_forward_outputs(c);
      harness::BackwardOutputs bwd = harness::make_backward_outputs(c);
      const double fwd_flops = 4.0 * c.shape.batch * c.shape.heads * c.shape.seqlen_q *
                               c.shape.seqlen_k * headdim * (cfg.causal ? 0.5 : 1.0);
      for (std::size_t impl_index = 0; impl_index < cfg.impls.size(); ++impl_index) {
        const std::string& impl = cfg.impls[impl_index];
        const bool is_flash = impl != "standard";
        const Algorithm algorithm = is_flash ? Algorithm::flash : Algorithm::standard;
        const harness::Case& ci = impl == "blocksparse" ? sparse : c;
        const double density = mask_density(ci);
        const TileConfig tiles = choose_tiles(harness::reference_problem(ci));
        const std::vector<std::string>& passes = fitting[impl_index];
        if (passes.empty()) continue;
        if (std::find(passes.begin(), passes.end(), "fwd") == passes.end()) {
          harness::run_forward(ci, in, fwd, algorithm);  // the backward's inputs
        }
        for (const std::string& pass : passes) {
          const double err = cfg.check ? validate(cfg, ci, algorithm, pass) : -1.0;
          auto run = [&] {
            if (pass != "bwd") {
              forward(in.q.view(), in.k.view(), in.v.view(), fwd.out.view(), fwd.lse.view(), ci.options, algorithm);
            }
            if (pass != "fwd") {
              backward(in.dout.view(), in.q.view(), in.k.view(), in.v.view(), fwd.out.view(), fwd.lse.view(),
                       bwd.dq.view(), bwd.dk.view(), bwd.dv.view(), ci.options, algorithm);
            }
          };
          if (pass == "bwd") harness::run_forward(ci, in, fwd, algorithm);
          const i64 before = allocated_bytes();
          reset_peak_allocated_bytes();
          run();
          const i64 peak = peak_allocated_bytes() - before;
          const Timing timing = time_case(cfg.repeat, flusher, sgemm_runner, run);
          const double ms = timing.ms;
          // Block-sparse counts the FLOPs of the blocks it computes.
          const double flops = fwd_flops * density * (pass == "fwd" ? 1.0 : pass == "bwd" ? 2.5 : 3.5);
          const double gflops = flops / (ms * 1e6);
          const double sgemm_now = Sgemm::kFlops / (timing.sgemm_ms * 1e6);
          if (table) {
            char tiles_text[32];
            std::snprintf(tiles_text, sizeof tiles_text, "%dx%d", tiles.block_q, tiles.block_k);
            std::printf("%-11s %-7s %7lld %7lld %5lld %7s %10.3f %9.1f %7.3f %12.2f %10s\n", impl.c_str(),
                        pass.c_str(), static_cast<long long>(c.shape.seqlen_q),
                        static_cast<long long>(c.shape.seqlen_k), static_cast<long long>(headdim),
                        is_flash ? tiles_text : "-", ms, gflops, gflops / sgemm_now,
                        peak / 1048576.0, err < 0 ? "-" : json_number(err).c_str());
            std::fflush(stdout);
          }
          if (json) {
            *json << "{\"impl\":\"" << impl << "\",\"pass\":\"" << pass << "\",\"batch\":" << c.shape.batch
                  << ",\"heads\":" << c.shape.heads << ",\"heads_k\":" << c.shape.heads_k
                  << ",\"seqlen_q\":" << c.shape.seqlen_q << ",\"seqlen_k\":" << c.shape.seqlen_k
                  << ",\"headdim\":" << headdim << ",\"causal\":" << (cfg.causal ? "true" : "false")
                  << ",\"dropout\":" << json_number(cfg.dropout) << ",\"threads\":" << cfg.threads
                  << ",\"isa\":\"" << (is_flash ? isa_name : std::string("openblas-") + openblas_get_corename())
                  << "\",\"ms\":" << json_number(ms) << ",\"gflops\":" << json_number(gflops)
                  << ",\"peak_bytes\":" << peak << ",\"max_err\":" << (err < 0 ? "null" : json_number(err))
                  << ",\"block_q\":" << (is_flash ? tiles.block_q : 0)
                  << ",\"block_k\":" << (is_flash ? tiles.block_k : 0)
                  << ",\"density\":" << json_number(density) << ",\"mask\":\""
                  << (ci.options.block_mask ? cfg.mask_pattern : std::string("none")) << "\""
                  << ",\"sgemm_gflops\":" << json_number(sgemm_now)
                  << ",\"sgemm_ratio\":" << json_number(gflops / sgemm_now) << "}" << std::endl;
          }
        }
      }
    }
  }
  return 0;
}

}  // namespace flashattn::cli
