// bench.hpp — `flashattn bench`'s configuration and result rows, shared by the runner
// (bench.cpp), the records and report (bench_report.cpp) and the A/B comparison
// (bench_compare.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "internal.hpp"
#include "flashattn/isa.hpp"
#include "stats.hpp"
#include "timing.hpp"

namespace flashattn::cli {

// The decode suite (--pass decode): one call per generated token, seqlen_q new queries per
// head against a KV cache of seqlen_k keys, K and V read from memory.
struct DecodeConfig {
  bool enabled = false;
  std::vector<std::pair<std::int64_t, std::int64_t>> shapes;  // (batch, seqlen_k), in order
  std::vector<std::int64_t> page_sizes;                      // kvcache's; 0: contiguous
  std::int64_t heads = 32, heads_k = 8, headdim = 128, seqlen_q = 1;
  std::vector<std::string> impls;  // flash (forward, split-KV), standard, kvcache (forward_with_kvcache)
};

struct Config {
  std::vector<std::string> impls, passes, variants, variant_passes;
  std::int64_t batch, tokens, heads, heads_k, seqlen_k;
  std::vector<std::int64_t> seqlens, headdims;
  std::vector<DType> dtypes{DType::f32};  // --dtype: of q, k, v and the outputs
  bool causal, check;
  double err_limit;  // a case fails when its error exceeds this many times the allowed error
  std::int64_t mem_cap_bytes;
  double density;            // blocksparse: fraction of blocks on (random pattern)
  std::string mask_pattern;  // blocksparse: random, local, fixed, butterfly, causal
  std::int64_t mask_block;   // blocksparse: block size (queries and keys)
  double dropout;
  int threads, block_q, block_k;
  AttentionOptions::ForwardKernel forward_kernel = AttentionOptions::ForwardKernel::automatic;
  TimingPolicy policy;  // for the whole session; each sweep takes its share
  int sweeps = 3;
  double pulse_tolerance = kPulseTolerance;  // how far below the reference a pulse may run
  // The sweeps a session makes: --sweeps, but no more than the minimum of runs to share.
  int sweep_count() const { return sweeps < policy.min_runs ? (sweeps < 1 ? 1 : sweeps) : policy.min_runs; }
  // Sweep `sweep`'s share of the session's policy: the runs split as evenly as whole runs
  // allow, the earlier sweeps taking the remainder (5 over 3 sweeps: 2, 2, 1), and an equal
  // part of the budget each.
  TimingPolicy sweep_policy(int sweep) const {
    const int n = sweep_count();
    auto share = [&](int runs) { return runs / n + (sweep % n < runs % n ? 1 : 0); };
    TimingPolicy p = policy;
    p.min_runs = share(policy.min_runs);
    p.max_runs = std::max(p.min_runs, share(policy.max_runs));
    p.budget_ms = policy.budget_ms / n;
    return p;
  }
  std::int64_t flush_bytes = 0;  // written between runs to evict the caches
  std::optional<Isa> isa;
  std::string json, out;
  // The machine's peak for the dispatched path, measured in this process on every thread:
  // the f32 FMA throughput of the kernel build (f32 and f16 calls, which compute in f32),
  // and its bf16 products' (bf16 calls). peak_for picks a record's.
  double peak_gflops = 0;
  double peak_bf16_gflops = 0;
  double peak_for(DType dtype) const { return dtype == DType::bf16 ? peak_bf16_gflops : peak_gflops; }
  std::string baseline_lib;  // another build's libflashattn.so, timed beside this one
  std::string command_line;
  DecodeConfig decode;
  bool training = true;  // the paper's suite (fwd, bwd, fwdbwd passes)
};

// One row of the results: a timed case, or one skipped for the memory cap.
struct Record {
  std::string impl, pass, variant;
  DType dtype = DType::f32;
  harness::Shape shape;
  double dropout = 0;
  bool padding = false, skipped = false;
  double flops = 0;  // FLOPs counted for one call (FlashAttention's rule; see bench.cpp)
  double gflops = 0, sgemm_gflops = 0, density = 1;
  double err = -1;           // max error on the small check; < 0: not checked
  double err_fraction = -1;  // err / allowed error (FlashAttention's rule); < 0: not checked
  bool ok = true;            // err_fraction within --err-limit (true when not checked)
  std::int64_t peak_bytes = 0;  // measured; the estimate when skipped
  CaseTiming timing;
  std::string consistency;  // fwdbwd rows: "" when fwd + bwd agree with it, else what does not
  // With --baseline-lib: this build's time over the baseline's, paired by round (on this
  // build's rows); the baseline's own rows carry impl "<impl>@baseline".
  std::optional<RatioEstimate> vs_baseline;
  bool remeasured = false;  // given one more sweep at the end (unstable, or short of quiet runs)
  TileConfig tiles;
  std::string isa, mask;
  // Decode rows: the K and V bytes the call must read, the cache's page size (0: contiguous)
  // and the streaming-read bandwidth measured beside the case's runs.
  double bytes_read = 0, bandwidth_gbps = 0;
  std::int64_t page_size = 0;
  double gbps() const { return ms() > 0 ? bytes_read / (ms() * 1e6) : 0.0; }

  double ms() const { return timing.summary.median; }
};

// The session's pulse: the SGEMM runs that seeded the monitor.
struct PulseRecord {
  int threads = 0;
  std::string blas;
  Summary ms;
  double tolerance = 0;  // the disturbance rule's (PulseMonitor)
  double gflops() const { return Sgemm::gflops(ms.median); }
};

// The cases (bench_cases.cpp). The batch of a length (--batch, else --tokens / N).
std::int64_t batch_for(const Config& cfg, std::int64_t seqlen);
// The case of (N, d, variant, dtype) as the flags describe it.
harness::Case make_case(const Config& cfg, std::int64_t seqlen, std::int64_t headdim, const std::string& variant,
                        DType dtype);
// The block mask of --mask at the case's shape: random at --density, or a pattern.
void add_block_mask(const Config& cfg, harness::Case& c);
// maskmod: the mask as a callable (bottom-right causal) in blocks of --mask-block.
void add_mod_mask(const Config& cfg, harness::Case& c);
// scoremod: a relative-position score_mod callable (s − 0.01 (q − kv)).
void add_score_mod(harness::Case& c);
// Fraction of the mask's blocks that are on (1 without a mask).
double mask_density(const harness::Case& c);
// One implementation's pass on a small version of the case, against the reference: its
// max error, and that error as a fraction of FlashAttention's allowed error (twice standard
// attention's on the same case, plus a floor); standard itself is held to its own limit.
// With `baseline`, the other build's entry points are checked.
struct Check {
  double max_err, fraction;
};
class BaselineLibrary;
Check validate(const Config& cfg, const harness::Case& full, Algorithm algorithm, const std::string& pass,
               const BaselineLibrary* baseline = nullptr);
// Fraction of the scores a block-sparse case computes against the dense case's.
double computed_fraction(const Config& cfg, const harness::Case& c);
// Bytes a case would hold (its tensors and what the path allocates), for --mem-cap-mib.
std::int64_t estimated_bytes(const harness::Case& c, const std::string& impl, const std::string& pass);

// The variant as the tables group it: "plain", or "plain bf16" for another dtype than f32.
std::string variant_key(const Record& r);
// Every variant key the configuration times, dtype by dtype.
std::vector<std::string> variant_keys(const Config& cfg);

// A sweep's timing of a case into its record: rounds numbered from round_base; with `earlier`
// (the record from the sweeps before) its check and peak memory kept and its runs joined.
void add_sweep(Record& r, const CaseTiming& timing, int round_base, const Record* earlier, int min_runs);

// Forward FLOPs factor of a pass (FlashAttention's benchmark): bwd 2.5×, fwdbwd 3.5×.
double pass_factor(const std::string& pass);

std::string json_number(double v);
std::string json_record(const Config& cfg, const Record& r);
std::string json_pulse(const PulseRecord& p);
std::string csv_header();
std::string csv_record(const Config& cfg, const Record& r);

// fwd + bwd against fwdbwd for every (impl, variant, N, headdim) with all three passes
// timed; sets each fwdbwd record's `consistency`.
void check_consistency(std::vector<Record>& records);

// The flags a row carries in the tables: FAIL (accuracy), unstable, noisy, inconsistent.
std::string row_flags(const Record& r);

// The runtime tables of the paper's Appendix E: one per (variant, pass), impl × N.
std::string runtime_tables(const Config& cfg, const std::vector<Record>& records, bool markdown);

// What the tables' markers mean, and the rows that carry one (accuracy failures, unstable
// and noisy timings, inconsistent passes): "" when there is none.
std::string flagged_rows(const Config& cfg, const std::vector<Record>& records, bool markdown);

// This build against the --baseline-lib build, case by case: "" without a baseline.
std::string baseline_table(const Config& cfg, const std::vector<Record>& records, bool markdown);

// report.md under cfg.out: the machine, the tables, the plots, the paper's A100 figures
// beside ours, the flags, and the IO model.
void write_report(const Config& cfg, const std::vector<Record>& records, const PulseRecord& pulse,
                  double seconds);

// `flashattn bench --compare A B`: per case, the ratio B / A with its confidence interval.
int compare_main(int argc, char** argv);

// The decode suite (bench_decode.cpp): a group per (batch, seqlen_k) of cfg.decode and dtype,
// its cases interleaved and checked against the reference on a small cache first. Its pulse,
// a streaming read, is calibrated when the suite is made, at the session's start, and the
// caller takes its sweeps between the paper suite's: so its rows and its reference sample the
// whole session, as the paper's do (run after them, a drop of the host's read bandwidth in
// the last minutes moved the reference with it and every decode row of one run).
class DecodeSuite {
 public:
  struct Group {
    std::int64_t batch, seqlen_k;
    DType dtype;
  };
  // `baseline` (--baseline-lib, may be null): every case also runs through it, as a twin.
  DecodeSuite(const Config& cfg, const BaselineLibrary* baseline);
  const std::vector<Group>& groups() const { return groups_; }
  int cases() const { return static_cast<int>(cases_.size()); }  // a group's
  // One sweep of a group: its cache made, its cases (on the first sweep, `earlier` null)
  // checked and warmed up, then timed interleaved with a streaming read after every run and
  // one SGEMM of `sgemm` after them; `earlier`'s runs joined.
  std::vector<Record> measure(const Group& g, const TimingPolicy& policy, int round_base,
                              const std::vector<Record>* earlier, Stopwatch& sgemm);
  const PulseMonitor& monitor() const { return reads_.monitor; }
  // What a sweep of the group costs at `runs` runs a case, roughly, in milliseconds: the
  // bytes its runs and pulses read at the streaming read's rate, the SGEMM after them
  // (`sgemm_ms`), the check.
  double weight(const Group& g, int runs, double sgemm_ms) const;
  std::string name(const Group& g) const;

 private:
  struct Planned {
    std::string impl;
    std::int64_t page_size;
    const BaselineLibrary* other;  // null: this build; else the baseline's twin of the case before
  };
  const Config& cfg_;
  const BaselineLibrary* baseline_;
  Stopwatch reads_;
  std::vector<Planned> cases_;
  std::vector<Group> groups_;
};

// The decode table: per (batch, seqlen_k), each implementation's ms and GB/s of K and V, and
// the fraction of the measured read bandwidth; "" without decode rows.
std::string decode_table(const std::vector<Record>& records, bool markdown);

// `flashattn bench --impl ring` (bench_ring.cpp): ring attention over MPI; in a build
// without MPI it says so.
int ring_bench_main(int argc, char** argv);

}  // namespace flashattn::cli
