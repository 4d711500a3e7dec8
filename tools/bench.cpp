// bench.cpp — `flashattn bench`: the cases (the paper's suite by default) and the runner:
// the machine's SGEMM pulse, then each implementation, pass and variant against N, in one
// process, with the same thread count. What is written of the results (JSON lines, CSV,
// tables, report.md) is bench_report.cpp's; the A/B comparison is bench_compare.cpp's.
//
// Each case is validated against the reference on a small shape with the same headdim,
// head ratio, mask and dropout, warmed up, then timed with the other cases of its
// (N, d, variant) in interleaved rounds (timing.hpp), and reported by the median of its
// quiet runs. FLOPs are counted as FlashAttention's benchmark counts them: forward
// 4·B·H·Nq·Nk·d (halved under causal), backward 2.5× forward, forward+backward 3.5× forward.
#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "args.hpp"
#include "baseline.hpp"
#include "bench.hpp"
#include "cli.hpp"
#include "internal.hpp"
#include "flashattn/block_sparse.hpp"
#include "flashattn/score_mod.hpp"
#include "io_analysis.hpp"
#include "report.hpp"
#include "timing.hpp"

namespace flashattn::cli {
namespace {

using i64 = std::int64_t;

constexpr const char* kUsage = R"usage(usage: flashattn bench [flags]

With no flags: the paper's runtime and memory benchmark (Section 4.3, Appendix E) scaled to
this machine — N = 128 … 16384, d = 64, batch × N = 8192 tokens, 1 head; standard, flash and
block-sparse flash; forward, backward and forward + backward, and forward + backward again
with dropout 0.1 and with key padding (lengths N − 20 … N); and decoding (--pass decode:
one new query per head against KV caches of 1K … 128K keys; each of its sweeps follows the
paper suite's, so that both sample the whole session). A progress bar on stderr, each
case's row on stdout, then the tables; CSV, JSON lines, PNG plots and report.md under --out.
Each case is validated against the reference on a small shape first (a case whose error
exceeds FlashAttention's allowed error is marked FAIL and the command exits 1), warmed up,
then timed: the cases of one (N, d, variant) run interleaved, one run each per round, caches
flushed before each run and each run followed by an SGEMM (OpenBLAS 2048^3, same thread
count: the machine's pulse; decode runs are followed by a streaming read of memory, both
pulses calibrated at the start). A run next to a pulse more than 7% (--pulse-tolerance) below
the session's reference (the first quartile of its pulses) is discarded and repeated; a case
that cannot get --repeat quiet runs is marked unstable. At the end every group is judged
again against the final reference, and one that falls short is measured once more.

`flashattn bench --compare A.jsonl[,A2.jsonl...] B.jsonl[,B2.jsonl...]` compares two runs'
JSON lines instead (`flashattn bench --compare --help`).

  --impl LIST        flash,standard,blocksparse,maskmod,scoremod,kvcache (default:
                     flash,standard,blocksparse; decode: standard,flash,kvcache);
                     blocksparse is flash with a block mask (--mask, --density,
                     --mask-block); maskmod is flash with causal written as a mask_mod
                     callable, classified into blocks of --mask-block; scoremod is flash
                     with a relative-position score_mod callable (s − 0.01 (q − kv));
                     kvcache (decode only) is forward_with_kvcache appending the call's
                     new tokens into the cache, then attending it
                     ring runs alone: ring attention over MPI (mpirun -np P flashattn
                     bench --impl ring --help)
  --pass LIST        fwd,bwd,fwdbwd,decode (default: all four). decode is its own suite:
                     one call per generated token, --seqlen new queries per head (default
                     1) against a KV cache of --seqlen-k keys (default 1K,8K,32K,128K) for
                     each --batch (default 1,8; batch x seqlen_k at most 256K unless
                     --long), --heads 32, --heads-k 8, --headdim 128 unless given; each row
                     reports the K+V bytes the call reads per second against a streaming
                     read of memory measured beside its runs. With other passes the decode
                     suite keeps its defaults and the flags describe the paper's suite
  --page-size LIST   decode, kvcache: 0 (contiguous cache) or keys per page of a paged
                     cache (block table shuffled), default 0,16,256
  --variant LIST     plain,dropout,padding,dropout_padding,varlen (default: plain,dropout,
                     padding): dropout 0.1, key padding with random lengths in [N − 20, N],
                     both, or the batch packed as variable-length sequences (cu_seqlens)
  --variant-pass LIST  passes run for the variants other than plain (those also in
                     --pass), default fwdbwd
  --batch B          default: max(1, --tokens / N) (decode alone: a list)
  --tokens T         batch × N when --batch is not given, default 8192
  --heads H          default 1
  --heads-k HK       default: heads (a divisor of heads: grouped-query attention)
  --seqlen N[,N...]  query lengths, default 128,256,...,16384
  --long             extend the default lengths to 65536
  --seqlen-k NK      key length, default: seqlen (decode alone: the cache lengths, a list)
  --headdim D[,D...] default 64
  --causal           causal mask (bottom-right aligned)
  --dropout P        dropout probability of the plain variant in [0, 1), default 0
  --threads T        default: all cores (OpenMP's default)
  --repeat R         quiet timed runs per case at least (median reported), default 5
  --case-seconds S   more runs while a case's runs and pulses add up to under S seconds,
                     default 1
  --max-runs M       quiet runs per case at most, default 25
  --retries K        disturbed runs a case may repeat in a sweep (more while its runs add up
                     to under five budgets) before it is marked unstable, default 6
  --sweeps S         sweeps over the whole session (the paper's suite, then decode), each
                     taking its share of every case's runs (at most --repeat sweeps),
                     default 3
  --pulse-tolerance F  a run next to a pulse more than F below the session's reference
                     speed is disturbed, default 0.07
  --dtype T[,T...]   f32 (default), bf16, f16: the dtype of q, k, v and the outputs (the
                     standard baseline computes in it too, as PyTorch does)
  --isa NAME         force the flash kernels: portable, avx2, avx512, avx512_bf16, amx
  --block-q BQ       flash tile rows (default: from the cache sizes)
  --block-k BK       flash tile keys (default: from the cache sizes)
  --forward-kernel K automatic (default), tiled or split_kv: the flash forward's kernel
                     (AttentionOptions::forward_kernel); split_kv refuses block masks
  --mask NAME        blocksparse pattern: random (default), local (window 1, 1 global
                     block), fixed (stride 4), butterfly, causal (the blocks a causal mask
                     touches; add --causal for the element mask on the diagonal)
  --density S        blocksparse: fraction of blocks on for --mask random, default 0.25
                     (a query block left with none gets its diagonal block)
  --mask-block B     blocksparse: block size in queries and keys, default 128
  --no-check         skip the validation against the reference
  --err-limit F      a case fails (FAIL, "ok": false, exit status 1) when its error exceeds
                     F times FlashAttention's allowed error (twice standard attention's
                     error on the same case, plus a floor); default 1
  --mem-cap-mib M    skip (as "OOM (skipped)") any case whose tensors and the path's own
                     buffers would exceed M MiB; default: half the machine's memory
  --json FILE|-      also write one JSON object per line (- for stdout, then no table)
  --out DIR          results.csv, results.jsonl, plots and report.md; default bench-report;
                     "none" writes nothing
  --baseline-lib SO  another build's libflashattn.so (e.g. main's), loaded into this process:
                     every case also runs through it (impl "<impl>@baseline"), interleaved
                     run by run on the same buffers, and each row of this build gets the
                     time ratio this / baseline with a 95% interval from the paired runs
                     (the decode suite's cases too, kvcache through its forward_with_kvcache)

JSON fields: impl, pass, batch, heads, heads_k, seqlen_q, seqlen_k, headdim, causal,
dropout, threads, forward_kernel (--forward-kernel), isa, ms (median), gflops, flops (counted for one call), peak_bytes (bytes
the call allocated at peak, measured by the build that ran it; 0 on a --baseline-lib build
that does not export its counters), max_err (null when not checked), block_q, block_k,
density (fraction of the block mask's blocks on; 1 without one), mask (none, or the
pattern), skipped (present only on a case skipped for the memory cap, with peak_bytes the
estimate), sgemm_gflops (the pulses after this case's runs), sgemm_ratio (gflops /
sgemm_gflops), peak_gflops (the peak of the dispatched kernel build for the record's dtype on
the same threads, measured at the start: f32 FMA for f32 and f16, bf16 products for bf16), peak_ratio (gflops /
peak_gflops: the headline), dtype, variant, key_padding (true when keys are padded); ms_min, ms_max, ms_q1,
ms_q3 (of the quiet runs), runs (how many), run_ms and run_sgemm_ms (each quiet run and the
pulse after it; on decode rows run_read_ms, the suite's pulse being a streaming read), discarded (disturbed runs dropped), spread (ms_max / ms_min), noisy
(spread > 1.15), unstable (fewer than --repeat quiet runs: the figures are then of every
run), remeasured (measured again at the end), err_fraction (max_err / allowed error, null
when not checked), ok (false when the check failed); on fwdbwd rows consistent (false when
fwd + bwd disagree with it beyond their spread); with --baseline-lib, baseline_ratio,
baseline_ratio_lo, baseline_ratio_hi, baseline_significant, baseline_pairs; on decode rows
(pass "decode", variant contiguous or pagedP) page_size, bytes_read (the K and V bytes the
call must read), gbps (bytes_read per second), bandwidth_gbps (the streaming read after the
case's runs, same threads: the decode suite's pulse; sgemm_gflops is one SGEMM after them) and bandwidth_ratio (gbps / bandwidth_gbps). The first
record has impl "sgemm", pass "gemm", m, n, k, and ms, ms_min, ms_max, runs of the
session's five reference pulses.
)usage";

// A progress bar on stderr: redrawn in place on a terminal, one line per group of cases otherwise.
class Progress {
 public:
  Progress() : tty_(isatty(STDERR_FILENO)), start_(Clock::now()) {}
  void expect(double total_weight) { total_ = total_weight; }
  void clear() const {
    if (tty_) std::fprintf(stderr, "\r\033[K");
  }
  // `cases` more cases done, which cost `weight` of the total.
  void step(double weight, int cases, const std::string& what) {
    done_ += weight;
    cases_ += cases;
    const double elapsed = milliseconds(start_) / 1000;
    const double left = done_ > 0 ? elapsed * (total_ - done_) / done_ : 0;
    const int width = 30, filled = static_cast<int>(width * std::min(1.0, done_ / total_));
    std::fprintf(stderr, "%s[%s%s] %3.0f%%  case %d  elapsed %d:%02d  remaining ~%d:%02d  %s%s", tty_ ? "\r\033[K" : "",
                 std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                 100 * std::min(1.0, done_ / total_), cases_, int(elapsed) / 60, int(elapsed) % 60, int(left) / 60,
                 int(left) % 60, what.c_str(), tty_ ? "" : "\n");
    std::fflush(stderr);
  }
  void finish() const {
    if (tty_) std::fprintf(stderr, "\n");
  }
  double seconds() const { return milliseconds(start_) / 1000; }

 private:
  double total_ = 0, done_ = 0;
  int cases_ = 0;
  bool tty_;
  Clock::time_point start_;
};

// A case group's records need one more sweep: a case unstable, or short of `min_runs` runs
// quiet by `monitor`'s final reference (which settles as the session goes on, so that runs
// judged quiet early may not be by its end).
bool short_of_quiet_runs(const std::vector<Record>& group, const PulseMonitor& monitor, int min_runs) {
  return std::any_of(group.begin(), group.end(), [&](const Record& r) {
    if (r.skipped) return false;
    const auto quiet = std::count_if(r.timing.quiet_pulse_ms.begin(), r.timing.quiet_pulse_ms.end(),
                                     [&](double p) { return !monitor.slow(p); });
    return r.timing.unstable || quiet < min_runs;
  });
}

}  // namespace

void add_sweep(Record& r, const CaseTiming& timing, int round_base, const Record* earlier, int min_runs) {
  r.timing = timing;
  for (int& round : r.timing.quiet_round) round += round_base;
  if (earlier) {  // this sweep's runs join the earlier sweeps'
    r.err = earlier->err, r.err_fraction = earlier->err_fraction, r.ok = earlier->ok;
    r.peak_bytes = earlier->peak_bytes;
    r.timing = combine(earlier->timing, r.timing, min_runs);
  }
}

int bench_main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "--compare") return compare_main(argc - 1, argv + 1);
  Config cfg;
  try {
    Args args(argc, argv);
    const std::vector<std::string> impls =
        args.words("impl", {"flash", "standard", "blocksparse"},
                   {"flash", "standard", "blocksparse", "maskmod", "scoremod", "kvcache", "ring"});
    if (std::find(impls.begin(), impls.end(), "ring") != impls.end()) {
      if (impls.size() > 1) throw UsageError("--impl ring runs alone (under mpirun: see --impl ring --help)");
      return ring_bench_main(argc, argv);
    }
    if (args.flag("help")) {
      std::cout << kUsage;
      return 0;
    }
    for (int i = 0; i < argc; ++i) cfg.command_line += (i ? " " : "flashattn ") + std::string(argv[i]);
    for (const std::string& impl : impls) {
      if (impl != "kvcache") cfg.impls.push_back(impl);
    }
    cfg.density = args.real("density", 0.25, 0.0, 1.0);
    cfg.mask_pattern = args.words("mask", {"random"}, {"random", "local", "fixed", "butterfly", "causal"}).front();
    cfg.mask_block = args.integer("mask-block", 128, 1, 4096);
    const std::vector<std::string> passes =
        args.words("pass", {"fwd", "bwd", "fwdbwd", "decode"}, {"fwd", "bwd", "fwdbwd", "decode"});
    for (const std::string& pass : passes) {
      if (pass == "decode") {
        cfg.decode.enabled = true;
      } else {
        cfg.passes.push_back(pass);
      }
    }
    cfg.training = !cfg.passes.empty();
    const bool decode_only = !cfg.training;
    cfg.variants = args.words("variant", {"plain", "dropout", "padding"},
                              {"plain", "dropout", "padding", "dropout_padding", "varlen"});
    cfg.variant_passes = args.words("variant-pass", {"fwdbwd"}, {"fwd", "bwd", "fwdbwd"});
    cfg.dtypes.clear();
    for (const std::string& name : args.words("dtype", {"f32"}, {"f32", "bf16", "f16"})) {
      cfg.dtypes.push_back(name == "bf16" ? DType::bf16 : name == "f16" ? DType::f16 : DType::f32);
    }
    const bool long_suite = args.flag("long");
    // Lists where the decode suite sweeps them; the paper's suite takes one value.
    auto one = [&](const char* name, const std::vector<i64>& values) {
      if (cfg.training && values.size() > 1) {
        throw UsageError(std::string("--") + name + " takes one value unless --pass is decode");
      }
      return values.empty() ? i64{0} : values.front();
    };
    const std::vector<i64> batches = args.integers("batch", {}, 1, 1 << 20);
    cfg.batch = one("batch", batches);
    cfg.tokens = args.integer("tokens", 8192, 1, i64{1} << 30);
    cfg.heads = args.integer("heads", decode_only ? 32 : 1, 1, 1 << 16);
    cfg.heads_k = args.integer("heads-k", decode_only ? std::min<i64>(8, cfg.heads) : cfg.heads, 1, 1 << 16);
    if (cfg.heads % cfg.heads_k != 0) throw UsageError("--heads-k must divide --heads");
    std::vector<i64> lengths;
    for (i64 n = 128; n <= (long_suite ? 65536 : 16384); n *= 2) lengths.push_back(n);
    cfg.seqlens = args.integers("seqlen", decode_only ? std::vector<i64>{1} : lengths, 1, i64{1} << 24);
    const std::vector<i64> seqlen_ks = args.integers("seqlen-k", {}, 1, i64{1} << 24);
    cfg.seqlen_k = one("seqlen-k", seqlen_ks);
    cfg.headdims = args.integers("headdim", {decode_only ? 128 : 64}, 1, kMaxHeadDim);
    // The decode suite: its own shape unless it runs alone (then the flags above are its).
    DecodeConfig& dc = cfg.decode;
    dc.page_sizes = args.integers("page-size", {0, 16, 256}, 0, 1 << 20);
    for (const std::string& impl : impls) {
      if (impl == "flash" || impl == "standard" || impl == "kvcache") dc.impls.push_back(impl);
    }
    if (!args.has("impl")) dc.impls = {"standard", "flash", "kvcache"};
    if (decode_only) {
      if (cfg.seqlens.size() > 1 || cfg.headdims.size() > 1) {
        throw UsageError("--pass decode takes one --seqlen (new queries) and one --headdim");
      }
      dc.heads = cfg.heads, dc.heads_k = cfg.heads_k, dc.headdim = cfg.headdims.front(), dc.seqlen_q = cfg.seqlens.front();
    }
    const std::vector<i64> decode_batches = decode_only && !batches.empty() ? batches : std::vector<i64>{1, 8};
    const std::vector<i64> decode_lengths =
        decode_only && !seqlen_ks.empty() ? seqlen_ks : std::vector<i64>{1024, 8192, 32768, 131072};
    for (i64 b : decode_batches) {
      for (i64 n : decode_lengths) {
        // The default suite keeps batch × seqlen_k to 256K tokens (2 GiB of K and V) unless --long.
        const bool explicit_shape = decode_only && (!batches.empty() || !seqlen_ks.empty());
        if (explicit_shape || long_suite || b * n <= 262144) dc.shapes.push_back({b, n});
      }
    }
    if (dc.enabled && dc.impls.empty()) throw UsageError("--pass decode times flash, standard or kvcache");
    const bool paged = std::any_of(dc.page_sizes.begin(), dc.page_sizes.end(), [](i64 p) { return p > 0; });
    if (dc.enabled && paged && cfg.forward_kernel == AttentionOptions::ForwardKernel::tiled &&
        std::find(dc.impls.begin(), dc.impls.end(), "kvcache") != dc.impls.end()) {
      throw UsageError("--forward-kernel tiled cannot read a paged cache: give --page-size 0 or leave kvcache out");
    }
    for (const auto& [b, n] : dc.shapes) {
      for (i64 page : dc.page_sizes) {
        if (page > 0 && n % page != 0) {
          throw UsageError("--page-size " + std::to_string(page) + " must divide every --seqlen-k (" + std::to_string(n) + ")");
        }
      }
    }
    if (decode_only && cfg.seqlens.front() > 1 << 16) throw UsageError("--pass decode: --seqlen is the new queries per call");
    cfg.causal = args.flag("causal");
    cfg.dropout = args.real("dropout", 0.0, 0.0, 0.999);
    cfg.threads = static_cast<int>(args.integer("threads", omp_get_max_threads(), 1, 1024));
    cfg.policy.min_runs = static_cast<int>(args.integer("repeat", 5, 1, 1000));
    cfg.policy.budget_ms = 1000 * args.real("case-seconds", 1.0, 0.0, 1e6);
    cfg.policy.max_runs = static_cast<int>(args.integer("max-runs", std::max(25, cfg.policy.min_runs), 1, 100000));
    if (cfg.policy.max_runs < cfg.policy.min_runs) throw UsageError("--max-runs must be at least --repeat");
    cfg.policy.max_retries = static_cast<int>(args.integer("retries", 6, 0, 1000));
    cfg.sweeps = static_cast<int>(args.integer("sweeps", 3, 1, 1000));
    cfg.pulse_tolerance = args.real("pulse-tolerance", kPulseTolerance, 0.001, 0.9);
    cfg.block_q = static_cast<int>(args.integer("block-q", 0, 1, 4096));
    cfg.block_k = static_cast<int>(args.integer("block-k", 0, 1, 4096));
    const std::string kernel = args.words("forward-kernel", {"automatic"}, {"automatic", "tiled", "split_kv"}).front();
    cfg.forward_kernel = kernel == "tiled"      ? AttentionOptions::ForwardKernel::tiled
                         : kernel == "split_kv" ? AttentionOptions::ForwardKernel::split_kv
                                                : AttentionOptions::ForwardKernel::automatic;
    cfg.check = !args.flag("no-check");
    cfg.err_limit = args.real("err-limit", 1.0, 0.0, 1e6);
    const i64 ram = static_cast<i64>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
    cfg.mem_cap_bytes = args.integer("mem-cap-mib", ram / 2 >> 20, 1, i64{1} << 40) << 20;
    cfg.json = args.text("json", "");
    cfg.out = args.text("out", "bench-report");
    cfg.baseline_lib = args.text("baseline-lib", "");
    if (args.has("isa")) {
      const std::string name = args.text("isa", "");
      cfg.isa = parse_isa(name);
      if (!cfg.isa) throw UsageError("--isa: unknown '" + name + "' (" + isa_names() + ")");
    }
    args.finish();
  } catch (const UsageError& e) {
    std::cerr << "flashattn bench: " << e.what() << "\n\n" << kUsage;
    return 2;
  }

  std::ofstream json_file;
  std::ostream* json = open_json(cfg.json, json_file);
  const bool out_files = cfg.out != "none";
  if (out_files) make_directory(cfg.out);
  const bool table = cfg.json != "-";
  const std::string isa_name = to_string(cfg.isa.value_or(default_isa()));
  const std::string blas_name = std::string("openblas-") + openblas_get_corename();

  // The cases, in the order they run.
  struct Planned {
    i64 headdim, seqlen;
    std::string variant, impl, pass;
    DType dtype;
  };
  std::vector<Planned> plan;
  for (i64 headdim : cfg.training ? cfg.headdims : std::vector<i64>{}) {
    for (i64 seqlen : cfg.seqlens) {
     for (DType dtype : cfg.dtypes) {
      for (const std::string& variant : cfg.variants) {
        for (const std::string& impl : cfg.impls) {
          for (const std::string& pass : cfg.passes) {
            if (variant == "varlen" && (impl == "blocksparse" || impl == "maskmod")) continue;  // not combinable yet
            if (variant != "plain" &&
                std::find(cfg.variant_passes.begin(), cfg.variant_passes.end(), pass) == cfg.variant_passes.end()) {
              continue;
            }
            plan.push_back({headdim, seqlen, variant, impl, pass, dtype});
          }
        }
      }
     }
    }
  }

  std::optional<BaselineLibrary> baseline;
  if (!cfg.baseline_lib.empty()) baseline.emplace(cfg.baseline_lib);
  openblas_set_num_threads(cfg.threads);
  Stopwatch stopwatch(PulseKind::sgemm, 1, cfg.pulse_tolerance);
  cfg.flush_bytes = stopwatch.flusher.bytes();
  PulseRecord pulse{cfg.threads, blas_name, summarize(stopwatch.calibrate(5)), cfg.pulse_tolerance};
  cfg.peak_gflops = peak_gflops(cfg.isa.value_or(default_isa()), DType::f32, cfg.threads);
  cfg.peak_bf16_gflops = peak_gflops(cfg.isa.value_or(default_isa()), DType::bf16, cfg.threads);
  if (json) *json << json_pulse(pulse) << std::endl;
  const std::string blas_warning = blas_core_warning();
  if (table) {
    std::printf("machine: %d threads, L1d %lld KiB, L2 %lld KiB, last-level caches %lld MiB (flushed with %lld MiB); "
                "OpenBLAS core %s\n",
                cfg.threads, static_cast<long long>(cache_sizes().l1d_bytes >> 10),
                static_cast<long long>(cache_sizes().l2_bytes >> 10),
                static_cast<long long>(cache_sizes().last_level_bytes >> 20), static_cast<long long>(cfg.flush_bytes >> 20),
                openblas_get_corename());
    if (!blas_warning.empty()) std::printf("warning: %s\n", blas_warning.c_str());
    if (baseline) std::printf("baseline: %s (%s)\n", baseline->path.c_str(), baseline->abi_note.c_str());
    std::printf("sgemm 2048^3 (the pulse): %.2f ms median of %zu, %.1f GFLOP/s; a run next to a pulse %.0f%% below "
                "the session's reference (first quartile of its pulses) is discarded and repeated\n",
                pulse.ms.median, pulse.ms.n, pulse.gflops(), 100 * stopwatch.monitor.tolerance());
    std::printf("peak: %.1f GFLOP/s f32 FMA, %.1f GFLOP/s bf16 products, of the %s kernel build on %d thread(s) "
                "(/peak: the headline ratio, against the peak of the call's dtype; f16 computes in f32)\n",
                cfg.peak_gflops, cfg.peak_bf16_gflops, isa_name.c_str(), cfg.threads);
    if (cfg.training) {
      std::printf("%zu cases; batch %s, %lld head(s); each case at least %d quiet runs, interleaved per (N, d, variant)\n",
                  plan.size(),
                  cfg.batch > 0 ? std::to_string(cfg.batch).c_str() : ("max(1, " + std::to_string(cfg.tokens) + "/N)").c_str(),
                  static_cast<long long>(cfg.heads), cfg.policy.min_runs);
    }
    if (cfg.decode.enabled) {
      std::printf("and decode, each sweep after the paper suite's: %zu (batch, seqlen_k), %lld heads, %lld kv-heads, d = %lld, %lld new quer%s per call; "
                  "each row's GB/s against a streaming read measured beside it\n",
                  cfg.decode.shapes.size(), static_cast<long long>(cfg.decode.heads),
                  static_cast<long long>(cfg.decode.heads_k), static_cast<long long>(cfg.decode.headdim),
                  static_cast<long long>(cfg.decode.seqlen_q), cfg.decode.seqlen_q == 1 ? "y" : "ies");
    }
    std::printf("\n");
    std::printf("%-11s %-7s %-14s %7s %7s %5s %7s %10s %7s %9s %6s %7s %10s %9s %6s %s\n", "impl", "pass", "variant",
                "seqlen", "seqlen_k", "d", "tiles", "ms(med)", "spread", "GFLOP/s", "/peak", "/sgemm", "peak_MiB", "max_err",
                "runs", "flags");
  }

  // The decode suite's pulse is calibrated here, beside the SGEMM's, so that its reference
  // spans the session.
  std::optional<DecodeSuite> decode;
  if (cfg.decode.enabled) decode.emplace(cfg, baseline ? &*baseline : nullptr);

  // What a sweep of a case costs, roughly, in the SGEMM pulse's milliseconds: its runs (at
  // the pulse's rate; standard attention's at half of it), the pulse after each, the check.
  const double pulse_gflops = pulse.gflops();
  auto weight = [&](const Planned& c, int runs) {
    const double n = static_cast<double>(c.seqlen);
    const double flops = 4.0 * batch_for(cfg, c.seqlen) * cfg.heads * n * n * c.headdim * pass_factor(c.pass) *
                         (c.impl == "standard" ? 2.0 : c.impl == "blocksparse" ? 0.5 : 1.0);
    return runs * (flops / (pulse_gflops * 1e6) + pulse.ms.median) + 20.0;
  };
  Progress progress;
  auto print_row = [&](const Record& r) {
    if (!table) return;
    progress.clear();
    if (r.skipped) {
      std::printf("%-11s %-7s %-14s %7lld %7lld %5lld %7s %10s   OOM (skipped: needs %.0f MiB, cap %.0f MiB)\n",
                  r.impl.c_str(), r.pass.c_str(), variant_key(r).c_str(), (long long)r.shape.seqlen_q,
                  (long long)r.shape.seqlen_k, (long long)r.shape.headdim, "-", "-", r.peak_bytes / 1048576.0,
                  cfg.mem_cap_bytes / 1048576.0);
    } else {
      const std::string tiles = r.tiles.block_q == 0 ? "-" : format("%dx%d", r.tiles.block_q, r.tiles.block_k);
      const std::string runs = format("%zu", r.timing.summary.n) +
                               (r.timing.discarded ? format("+%d", r.timing.discarded) : std::string());
      std::printf("%-11s %-7s %-14s %7lld %7lld %5lld %7s %10.3f %6.1f%% %9.1f %6.3f %7.3f %10.2f %9s %6s %s\n",
                  r.impl.c_str(), r.pass.c_str(), variant_key(r).c_str(), (long long)r.shape.seqlen_q,
                  (long long)r.shape.seqlen_k, (long long)r.shape.headdim, tiles.c_str(), r.ms(),
                  100 * (r.timing.summary.spread() - 1), r.gflops, r.gflops / cfg.peak_for(r.dtype), r.gflops / r.sgemm_gflops,
                  r.peak_bytes / 1048576.0, r.err < 0 ? "-" : json_number(r.err).c_str(), runs.c_str(),
                  row_flags(r).c_str());
    }
    std::fflush(stdout);
  };

  // The cases plan[first, last) — one (headdim, seqlen, variant) — share their inputs and
  // are timed interleaved: checked, warmed up, timed; their records, in plan order, each of
  // this build's followed by its baseline twin.
  // `earlier`: the group's records from the sweeps before, whose checks, peak memory and
  // runs this sweep keeps (no check, no warm-up) and adds its runs to.
  auto measure_group = [&](std::size_t first, std::size_t last, const TimingPolicy& policy, int round_base,
                           const std::vector<Record>* earlier) {
    const Planned& head = plan[first];
    const harness::Case c = make_case(cfg, head.seqlen, head.headdim, head.variant, head.dtype);
    // The batch as a dense case: what the sizes, FLOPs and records describe (varlen packs it).
    const harness::Case dense = make_case(cfg, head.seqlen, head.headdim, "plain", head.dtype);
    harness::Case sparse = c;
    if (std::find(cfg.impls.begin(), cfg.impls.end(), "blocksparse") != cfg.impls.end()) add_block_mask(cfg, sparse);
    harness::Case modded = c, scored = c;
    if (std::find(cfg.impls.begin(), cfg.impls.end(), "maskmod") != cfg.impls.end()) add_mod_mask(cfg, modded);
    add_score_mod(scored);
    bool any = false;
    for (std::size_t i = first; i < last; ++i) any = any || estimated_bytes(dense, plan[i].impl, plan[i].pass) <= cfg.mem_cap_bytes;
    std::optional<harness::Inputs> in;
    std::map<std::string, harness::ForwardOutputs> fwd;  // each impl's forward outputs: its backward's inputs
    std::optional<harness::BackwardOutputs> bwd;
    if (any) {  // nothing is allocated for a group none of whose cases fit
      in.emplace(harness::make_inputs(c));
      bwd.emplace(harness::make_backward_outputs(c));
    }
    const harness::Shape& ds = dense.shape;
    const double fwd_flops = 4.0 * ds.batch * ds.heads * ds.seqlen_q * ds.seqlen_k * ds.headdim * (cfg.causal ? 0.5 : 1.0);

    // Setup: check, warm up and measure the memory of each case that fits.
    std::vector<Record> group;
    std::vector<std::function<void()>> runs;
    std::vector<std::size_t> timed;  // index in `group` of each entry of `runs`
    for (std::size_t i = first; i < last; ++i) {
      const Planned& pc = plan[i];
      const harness::Case& ci =
          pc.impl == "blocksparse" ? sparse : pc.impl == "maskmod" ? modded : pc.impl == "scoremod" ? scored : c;
      Record r;
      r.impl = pc.impl;
      r.pass = pc.pass;
      r.variant = pc.variant;
      r.dtype = pc.dtype;
      r.shape = dense.shape;
      r.dropout = ci.options.dropout_p;
      r.padding = static_cast<bool>(ci.key_lengths);
      const i64 need = estimated_bytes(dense, pc.impl, pc.pass);
      if (need > cfg.mem_cap_bytes) {
        r.skipped = true;
        r.peak_bytes = need;
        group.push_back(r);
        continue;
      }
      const bool is_flash = pc.impl != "standard";
      const Algorithm algorithm = is_flash ? Algorithm::flash : Algorithm::standard;
      r.density = mask_density(ci);
      r.tiles = is_flash ? choose_tiles(harness::problem_of(ci)) : TileConfig{0, 0};
      r.isa = is_flash ? isa_name : blas_name;
      r.mask = ci.mod_mask                ? "mask_mod causal"
               : ci.options.score_mod   ? "score_mod relative"
               : ci.options.block_mask ? cfg.mask_pattern
                                        : "none";
      // Block-sparse counts the FLOPs of the scores it computes; maskmod's mask is causal
      // whether or not --causal halved fwd_flops.
      const double work = pc.impl == "blocksparse" ? computed_fraction(cfg, ci)
                          : pc.impl == "maskmod" && !cfg.causal ? 0.5
                                                                : 1.0;
      r.flops = fwd_flops * work * pass_factor(pc.pass);
      // The case through one build's entry points (this one's, or --baseline-lib's, whose
      // twin of every case has its own forward outputs and runs next to it in every round):
      // checked, its backward's inputs made, warmed up (its peak memory, by the counter of the
      // build that runs it), and queued for timing.
      auto add = [&](Record rec, const BaselineLibrary* other) {
        const BaselineLibrary::Forward fwd_fn = other ? other->forward : &flashattn::forward;
        const BaselineLibrary::Backward bwd_fn = other ? other->backward : &flashattn::backward;
        if (cfg.check && !earlier) {
          const Check check = validate(cfg, ci, algorithm, pc.pass, other);
          rec.err = check.max_err;
          rec.err_fraction = check.fraction;
          rec.ok = check.fraction <= cfg.err_limit;
        }
        const bool fresh = !fwd.count(rec.impl);
        if (fresh) fwd.emplace(rec.impl, harness::make_forward_outputs(c));
        harness::ForwardOutputs& fo = fwd.at(rec.impl);
        auto run_forward = [&ci, &in, &fo, fwd_fn, algorithm] {
          fwd_fn(in->q.view(), in->k.view(), in->v.view(), fo.out.view(), fo.lse.view(), ci.options, algorithm);
        };
        if (pc.pass == "bwd" && fresh) run_forward();
        auto run = [&ci, &in, &fo, &bwd, run_forward, bwd_fn, algorithm, pass = pc.pass] {
          if (pass != "bwd") run_forward();
          if (pass != "fwd") {
            bwd_fn(in->dout.view(), in->q.view(), in->k.view(), in->v.view(), fo.out.view(), fo.lse.view(),
                   bwd->dq.view(), bwd->dk.view(), bwd->dv.view(), ci.options, algorithm);
          }
        };
        if (!earlier) rec.peak_bytes = peak_bytes_of(other, run);  // the warm-up
        timed.push_back(group.size());
        group.push_back(rec);
        runs.push_back(run);
      };
      add(r, nullptr);
      if (baseline) {
        Record twin = r;
        twin.impl = pc.impl + "@baseline";
        add(twin, &*baseline);
      }
    }

    // Main loop: the group's cases in interleaved rounds.
    std::vector<int> partner;  // a case and its baseline twin run in the same rounds
    for (std::size_t t = 0; t < runs.size(); ++t) partner.push_back(static_cast<int>(baseline ? t / 2 : t));
    const std::vector<CaseTiming> timings = stopwatch.time(policy, runs, partner);
    for (std::size_t t = 0; t < timed.size(); ++t) {
      Record& r = group[timed[t]];
      add_sweep(r, timings[t], round_base, earlier ? &(*earlier)[timed[t]] : nullptr, cfg.policy.min_runs);
      r.gflops = r.flops / (r.ms() * 1e6);
      r.sgemm_gflops = Sgemm::gflops(r.timing.pulse_median_ms);
    }
    if (baseline) {  // each of this build's rows is followed by its twin
      for (std::size_t t = 0; t + 1 < timed.size(); t += 2) {
        Record& mine = group[timed[t]];
        mine.vs_baseline = compare_timings(group[timed[t + 1]].timing, mine.timing);
      }
    }
    check_consistency(group);
    return group;
  };

  // Every group a sweep visits: the paper suite's, one per (headdim, seqlen, variant, dtype),
  // then the decode suite's; each with the pulse whose reference judges its runs.
  struct SweptGroup {
    std::string name;
    int cases;
    const PulseMonitor* monitor;
    std::function<std::vector<Record>(const TimingPolicy&, int round_base, const std::vector<Record>* earlier)> measure;
    std::function<double(int runs)> weight;
    std::vector<Record> records;
  };
  std::vector<SweptGroup> groups;
  for (std::size_t first = 0; first < plan.size();) {
    std::size_t last = first;
    while (last < plan.size() && plan[last].headdim == plan[first].headdim && plan[last].seqlen == plan[first].seqlen &&
           plan[last].variant == plan[first].variant && plan[last].dtype == plan[first].dtype) {
      ++last;
    }
    const Planned& head = plan[first];
    groups.push_back({format("N=%lld d=%lld %s%s", static_cast<long long>(head.seqlen), static_cast<long long>(head.headdim),
                             head.variant.c_str(), head.dtype == DType::f32 ? "" : (std::string(" ") + to_string(head.dtype)).c_str()),
                      static_cast<int>(last - first), &stopwatch.monitor,
                      [&, first, last](const TimingPolicy& policy, int round_base, const std::vector<Record>* earlier) {
                        return measure_group(first, last, policy, round_base, earlier);
                      },
                      [&, first, last](int runs) {
                        double w = 0;
                        for (std::size_t i = first; i < last; ++i) w += weight(plan[i], runs);
                        return w;
                      },
                      {}});
    first = last;
  }
  if (decode) {
    for (const DecodeSuite::Group& g : decode->groups()) {
      groups.push_back({decode->name(g), decode->cases(), &decode->monitor(),
                        [&, g](const TimingPolicy& policy, int round_base, const std::vector<Record>* earlier) {
                          return decode->measure(g, policy, round_base, earlier, stopwatch);
                        },
                        [&, g](int runs) { return decode->weight(g, runs, pulse.ms.median); }, {}});
    }
  }
  // Sweeps over the whole session, each taking its share of every case's runs, so that a
  // case's runs sample the machine across the session: this VM's speed moves in stretches
  // of seconds to minutes that runs taken back to back would all fall into.
  const int sweeps = cfg.sweep_count();
  double total_weight = 0;
  for (int sweep = 0; sweep < sweeps; ++sweep) {
    for (const SweptGroup& g : groups) total_weight += g.weight(cfg.sweep_policy(sweep).min_runs);
  }
  progress.expect(total_weight);
  for (int sweep = 0; sweep < sweeps; ++sweep) {
    for (SweptGroup& g : groups) {
      const TimingPolicy policy = cfg.sweep_policy(sweep);
      g.records = g.measure(policy, 100000 * sweep, sweep ? &g.records : nullptr);
      if (sweep == sweeps - 1) {
        for (const Record& r : g.records) print_row(r);
      }
      progress.step(g.weight(policy.min_runs), g.cases, g.name + format(" (sweep %d of %d)", sweep + 1, sweeps));
    }
  }
  // The reference pulses settle as the session goes on (a machine slow at the start made
  // its first pulses look normal): each group is judged again against its final reference,
  // and one with a case short of its quiet runs (or unstable) gets one more sweep.
  int remeasured = 0;
  for (SweptGroup& g : groups) {
    if (!short_of_quiet_runs(g.records, *g.monitor, cfg.policy.min_runs)) continue;
    ++remeasured;
    if (table) {
      progress.clear();
      std::printf("one more sweep for %s: unstable, or its runs ran next to pulses slower than the session's final "
                  "reference (%.1f ms)\n",
                  g.name.c_str(), g.monitor->reference_ms());
    }
    g.records = g.measure(cfg.sweep_policy(0), 100000 * sweeps, &g.records);
    for (Record& r : g.records) {
      r.remeasured = true;
      print_row(r);
    }
  }
  progress.finish();
  std::vector<Record> records;
  for (const SweptGroup& g : groups) records.insert(records.end(), g.records.begin(), g.records.end());
  const double seconds = progress.seconds();
  if (json) {
    for (const Record& r : records) *json << json_record(cfg, r) << std::endl;
  }
  if (table && remeasured) std::printf("%d group(s) given one more sweep at the end\n", remeasured);

  const std::string flagged = flagged_rows(cfg, records, false);
  const int failed = static_cast<int>(std::count_if(records.begin(), records.end(), [](const Record& r) { return !r.skipped && !r.ok; }));
  if (table) {
    std::printf("\n%s%s%s%s", runtime_tables(cfg, records, false).c_str(), decode_table(records, false).c_str(),
                baseline_table(cfg, records, false).c_str(),
                flagged.c_str());
  }
  if (out_files) {
    std::ofstream jsonl(cfg.out + "/results.jsonl"), csv(cfg.out + "/results.csv");
    jsonl << json_pulse(pulse) << "\n";
    csv << csv_header() << "\n";
    for (const Record& r : records) {
      jsonl << json_record(cfg, r) << "\n";
      csv << csv_record(cfg, r) << "\n";
    }
    write_report(cfg, records, pulse, seconds);
    if (table) std::printf("wrote %s/report.md, results.csv, results.jsonl and the plots (%.0f s of benchmark)\n",
                           cfg.out.c_str(), seconds);
  }
  if (failed) {
    std::fprintf(stderr, "flashattn bench: %d case(s) FAILED their accuracy check (error above the allowed error)\n",
                 failed);
    return 1;
  }
  return 0;
}

#if !defined(FLASHATTN_HAS_RING)
int ring_bench_main(int, char**) {
  throw UsageError("--impl ring: this build has no flashattn::ring (MPI was not found when it was configured)");
}
#endif

}  // namespace flashattn::cli
