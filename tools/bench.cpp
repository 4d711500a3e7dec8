// bench.cpp — `flashattn bench`: the machine's SGEMM rate, then each implementation,
// pass and variant against N, in one process, with the same thread count; then the
// paper's tables (Section 4.3, Appendix E), CSV, JSON lines, plots and a Markdown report.
//
// Each case is validated against the reference on a small shape with the same headdim,
// head ratio, mask and dropout, then warmed up and timed (timing.hpp), and reported by
// its median as a ratio to SGEMM runs interleaved with its own. FLOPs are counted as
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
#include "flashattn/score_mod.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/flash.hpp"
#include "harness/harness.hpp"
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
with dropout 0.1 and with key padding (lengths N − 20 … N). A progress bar on stderr, each
case's row on stdout, then the tables; CSV, JSON lines, PNG plots and report.md under --out.
Each case is validated against the reference on a small shape first, then timed (a case
whose warm-up run takes over half of --case-seconds is timed by that run), each run
followed by an SGEMM run (OpenBLAS 2048^3, same thread count) to set its speed against.

  --impl LIST        flash,standard,blocksparse,maskmod (default: the first three);
                     blocksparse is flash with a block mask (--mask, --density,
                     --mask-block); maskmod is flash with causal written as a mask_mod
                     callable, classified into blocks of --mask-block; scoremod is flash
                     with a relative-position score_mod callable (s − 0.01 (q − kv))
  --pass LIST        fwd,bwd,fwdbwd (default: all three)
  --variant LIST     plain,dropout,padding,dropout_padding,varlen (default: plain,dropout,
                     padding): dropout 0.1, key padding with random lengths in [N − 20, N],
                     both, or the batch packed as variable-length sequences (cu_seqlens)
  --variant-pass LIST  passes run for the variants other than plain (those also in
                     --pass), default fwdbwd
  --batch B          default: max(1, --tokens / N)
  --tokens T         batch × N when --batch is not given, default 8192
  --heads H          default 1
  --heads-k HK       default: heads (a divisor of heads: grouped-query attention)
  --seqlen N[,N...]  query lengths, default 128,256,...,16384
  --long             extend the default lengths to 65536
  --seqlen-k NK      key length, default: seqlen
  --headdim D[,D...] default 64
  --causal           causal mask (bottom-right aligned)
  --dropout P        dropout probability of the plain variant in [0, 1), default 0
  --threads T        default: all cores (OpenMP's default)
  --repeat R         timed runs per case at most (median reported), default 3
  --case-seconds S   fewer runs once a case's timed runs add up to S seconds, default 1
  --isa NAME         force the flash kernels: portable, avx2, avx512
  --block-q BQ       flash tile rows (default: from the cache sizes)
  --block-k BK       flash tile keys (default: from the cache sizes)
  --mask NAME        blocksparse pattern: random (default), local (window 1, 1 global
                     block), fixed (stride 4), butterfly, causal (the blocks a causal mask
                     touches; add --causal for the element mask on the diagonal)
  --density S        blocksparse: fraction of blocks on for --mask random, default 0.25
                     (a query block left with none gets its diagonal block)
  --mask-block B     blocksparse: block size in queries and keys, default 128
  --no-check         skip the validation against the reference
  --mem-cap-mib M    skip (as "OOM (skipped)") any case whose tensors and the path's own
                     buffers would exceed M MiB; default: half the machine's memory
  --json FILE|-      also write one JSON object per line (- for stdout, then no table)
  --out DIR          results.csv, results.jsonl, plots and report.md; default bench-report;
                     "none" writes nothing

JSON fields: impl, pass, batch, heads, heads_k, seqlen_q, seqlen_k, headdim, causal,
dropout, threads, isa, ms (median), gflops, peak_bytes (bytes the call allocated at peak,
measured), max_err (null when not checked), block_q, block_k, density (fraction of the
block mask's blocks on; 1 without one), mask (none, or the pattern), skipped (present only on a
case skipped for the memory cap, with peak_bytes the estimate), sgemm_gflops (SGEMM runs
interleaved with this case's runs), sgemm_ratio (gflops / sgemm_gflops), variant,
key_padding (true when keys are padded); the first record has impl "sgemm", pass "gemm"
and m, n, k.
)usage";

struct Config {
  std::vector<std::string> impls, passes, variants, variant_passes;
  i64 batch, tokens, heads, heads_k, seqlen_k;
  std::vector<i64> seqlens, headdims;
  bool causal, check;
  i64 mem_cap_bytes;
  double density;            // blocksparse: fraction of blocks on (random pattern)
  std::string mask_pattern;  // blocksparse: random, local, fixed, butterfly, causal
  i64 mask_block;            // blocksparse: block size (queries and keys)
  double dropout;
  int threads, repeat, block_q, block_k;
  double case_ms;
  std::optional<Isa> isa;
  std::string json, out;
  std::string command_line;
};

i64 batch_for(const Config& cfg, i64 seqlen) {
  return cfg.batch > 0 ? cfg.batch : std::max<i64>(1, cfg.tokens / seqlen);
}

harness::Case make_case(const Config& cfg, i64 seqlen, i64 headdim, const std::string& variant) {
  harness::Case c;
  c.shape = {batch_for(cfg, seqlen), seqlen, cfg.seqlen_k > 0 ? cfg.seqlen_k : seqlen, cfg.heads, cfg.heads_k, headdim};
  c.options.causal = cfg.causal;
  const bool dropout = variant == "dropout" || variant == "dropout_padding";
  c.options.dropout_p = static_cast<float>(dropout ? 0.1 : cfg.dropout);
  if (variant == "varlen") {  // the same batch packed as variable-length sequences
    c.set_varlen(std::vector<std::int32_t>(c.shape.batch, static_cast<std::int32_t>(c.shape.seqlen_q)),
                 std::vector<std::int32_t>(c.shape.batch, static_cast<std::int32_t>(c.shape.seqlen_k)));
  }
  if (variant == "padding" || variant == "dropout_padding") {  // the paper's: lengths N − 20 … N
    std::vector<std::int32_t> lengths;
    for (i64 b = 0; b < c.shape.batch; ++b) {
      const i64 cut = static_cast<i64>((b * 2654435761u + seqlen) % 21);
      lengths.push_back(static_cast<std::int32_t>(std::max<i64>(0, c.shape.seqlen_k - cut)));
    }
    c.set_key_lengths(std::move(lengths));
  }
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
  if (cfg.mask_pattern == "random") {  // a query block with no key block would time nothing
    for (i64 qb = 0; qb < rows; ++qb) {
      if (std::none_of(blocks.begin() + qb * cols, blocks.begin() + (qb + 1) * cols, [](std::uint8_t x) { return x; })) {
        blocks[qb * cols + std::min(qb, cols - 1)] = 1;
      }
    }
  }
  c.set_block_mask(std::move(blocks), block, block);
}

// scoremod: flash with a relative-position score_mod callable (s − 0.01 (q − kv)).
const auto kRelative = [](float s, i64, i64, i64 q, i64 kv) { return s - 0.01f * static_cast<float>(q - kv); };
const auto kRelativeGrad = [](float, i64, i64, i64, i64) { return 1.0f; };
const ScoreModifier<decltype(kRelative), decltype(kRelativeGrad)> kRelativeMod(kRelative, kRelativeGrad);

// maskmod: flash with the mask written as a callable (flashattn/mask_mod.hpp), here
// bottom-right causal, classified into blocks of --mask-block; the built-in causal is off.
void add_mod_mask(const Config& cfg, harness::Case& c) {
  const i64 offset = c.shape.seqlen_k - c.shape.seqlen_q;
  auto causal = [offset](i64, i64, i64 i, i64 j) { return j <= i + offset; };
  c.options.causal = false;
  c.set_mod_mask(std::make_shared<const ModBlockMask>(causal, 1, 1, c.shape.seqlen_q, c.shape.seqlen_k, cfg.mask_block,
                                                      cfg.mask_block));
}

// Fraction of the mask's blocks that are on (1 without a mask).
double mask_density(const harness::Case& c) {
  if (c.mod_mask) {
    const double blocks = c.mod_mask->empty_blocks() + c.mod_mask->full_blocks() + c.mod_mask->partial_blocks();
    return blocks > 0 ? 1.0 - c.mod_mask->empty_blocks() / blocks : 1.0;
  }
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
  if (full.mod_mask) {
    add_mod_mask(cfg, c);
  } else if (full.options.block_mask) {
    add_block_mask(cfg, c);
  }
  if (full.options.varlen) {  // two sequences of the small case's lengths
    const i64 n = std::min<i64>(static_cast<i64>((*full.cu_seqlens_q)[1]), 160);
    const i64 nk = std::max<i64>(1, n + ((*full.cu_seqlens_k)[1] - (*full.cu_seqlens_q)[1]));
    c.set_varlen({static_cast<std::int32_t>(n), static_cast<std::int32_t>(n / 2)},
                 {static_cast<std::int32_t>(nk), static_cast<std::int32_t>(nk)});
  }
  if (full.key_lengths) {
    std::vector<std::int32_t> lengths{static_cast<std::int32_t>(c.shape.seqlen_k - (full.shape.seqlen_k - (*full.key_lengths)[0]))};
    lengths[0] = std::max<std::int32_t>(0, lengths[0]);
    c.set_key_lengths(std::move(lengths));
  }
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



// One row of the results: a timed case, or one skipped for the memory cap.
struct Record {
  std::string impl, pass, variant;
  harness::Shape shape;
  double dropout = 0;
  bool padding = false, skipped = false;
  double ms = 0, gflops = 0, sgemm_gflops = 0, err = -1, density = 1;
  i64 peak_bytes = 0;  // measured; the estimate when skipped
  TileConfig tiles;
  std::string isa, mask;
};

std::string json_record(const Config& cfg, const Record& r) {
  std::ostringstream os;
  os << "{\"impl\":\"" << r.impl << "\",\"pass\":\"" << r.pass << "\",\"batch\":" << r.shape.batch
     << ",\"heads\":" << r.shape.heads << ",\"heads_k\":" << r.shape.heads_k << ",\"seqlen_q\":" << r.shape.seqlen_q
     << ",\"seqlen_k\":" << r.shape.seqlen_k << ",\"headdim\":" << r.shape.headdim
     << ",\"causal\":" << (cfg.causal ? "true" : "false") << ",\"dropout\":" << json_number(r.dropout)
     << ",\"threads\":" << cfg.threads;
  if (r.skipped) {
    os << ",\"peak_bytes\":" << r.peak_bytes << ",\"skipped\":\"memory cap\"";
  } else {
    os << ",\"isa\":\"" << r.isa << "\",\"ms\":" << json_number(r.ms) << ",\"gflops\":" << json_number(r.gflops)
       << ",\"peak_bytes\":" << r.peak_bytes << ",\"max_err\":" << (r.err < 0 ? "null" : json_number(r.err))
       << ",\"block_q\":" << r.tiles.block_q << ",\"block_k\":" << r.tiles.block_k
       << ",\"density\":" << json_number(r.density) << ",\"mask\":\"" << r.mask << "\""
       << ",\"sgemm_gflops\":" << json_number(r.sgemm_gflops)
       << ",\"sgemm_ratio\":" << json_number(r.gflops / r.sgemm_gflops);
  }
  os << ",\"variant\":\"" << r.variant << "\",\"key_padding\":" << (r.padding ? "true" : "false") << "}";
  return os.str();
}

std::string csv_header() {
  return "impl,pass,variant,batch,heads,heads_k,seqlen_q,seqlen_k,headdim,causal,dropout,key_padding,threads,isa,ms,"
         "gflops,sgemm_gflops,sgemm_ratio,peak_bytes,max_err,block_q,block_k,density,mask,skipped";
}

std::string csv_record(const Config& cfg, const Record& r) {
  return format("%s,%s,%s,%lld,%lld,%lld,%lld,%lld,%lld,%d,%g,%d,%d,%s,", r.impl.c_str(), r.pass.c_str(),
                r.variant.c_str(), (long long)r.shape.batch, (long long)r.shape.heads, (long long)r.shape.heads_k,
                (long long)r.shape.seqlen_q, (long long)r.shape.seqlen_k, (long long)r.shape.headdim, cfg.causal,
                r.dropout, r.padding, cfg.threads, r.isa.c_str()) +
         (r.skipped ? std::string(",,,,") + std::to_string(r.peak_bytes) + ",,,,,,memory cap"
                    : format("%.6g,%.6g,%.6g,%.6g,%lld,%s,%d,%d,%.6g,%s,", r.ms, r.gflops, r.sgemm_gflops,
                             r.gflops / r.sgemm_gflops, (long long)r.peak_bytes,
                             r.err < 0 ? "" : json_number(r.err).c_str(), r.tiles.block_q, r.tiles.block_k, r.density,
                             r.mask.c_str()));
}

// A progress bar on stderr: redrawn in place on a terminal, one line per case otherwise.
class Progress {
 public:
  explicit Progress(double total_weight) : total_(total_weight), tty_(isatty(STDERR_FILENO)), start_(Clock::now()) {}
  void clear() const {
    if (tty_) std::fprintf(stderr, "\r\033[K");
  }
  void step(double weight, const std::string& what) {
    done_ += weight;
    ++cases_;
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
  double total_, done_ = 0;
  int cases_ = 0;
  bool tty_;
  Clock::time_point start_;
};

double pass_factor(const std::string& pass) { return pass == "fwd" ? 1.0 : pass == "bwd" ? 2.5 : 3.5; }

std::string seqlen_label(i64 n) { return n >= 1024 && n % 1024 == 0 ? std::to_string(n / 1024) + "K" : std::to_string(n); }

// The tables of the paper's Appendix E: one per (variant, pass), impl × N.
std::string runtime_tables(const Config& cfg, const std::vector<Record>& records, bool markdown) {
  std::ostringstream os;
  std::vector<i64> ns;
  for (const Record& r : records) {
    if (std::find(ns.begin(), ns.end(), r.shape.seqlen_q) == ns.end()) ns.push_back(r.shape.seqlen_q);
  }
  for (const std::string& variant : cfg.variants) {
    for (const std::string& pass : cfg.passes) {
      std::vector<std::vector<std::string>> rows;
      for (const std::string& impl : cfg.impls) {
        std::vector<std::string> row{impl};
        double worst = -1;
        bool any = false;
        for (i64 n : ns) {
          std::string cell = "";
          for (const Record& r : records) {
            if (r.impl != impl || r.pass != pass || r.variant != variant || r.shape.seqlen_q != n) continue;
            cell = r.skipped ? "OOM (skipped)" : format(r.ms < 10 ? "%.2f" : "%.0f", r.ms);
            worst = std::max(worst, r.err);
            any = true;
          }
          row.push_back(cell);
        }
        row.push_back(worst < 0 ? "-" : format("%.1e", worst));
        if (any) rows.push_back(row);
      }
      if (rows.empty()) continue;
      std::vector<std::string> header{"ms"};
      for (i64 n : ns) header.push_back(seqlen_label(n));
      header.push_back("max err");
      const std::string title = "Runtime (ms), " + pass + ", " + variant + (cfg.causal ? ", causal" : "");
      if (markdown) {
        os << "### " << title << "\n\n" << markdown_table(header, rows) << "\n";
      } else {
        os << title << "\n";
        for (const std::string& h : header) os << format(h == "ms" ? "%-12s" : "%14s", h.c_str());
        os << "\n";
        for (const auto& row : rows) {
          for (std::size_t c = 0; c < row.size(); ++c) os << format(c == 0 ? "%-12s" : "%14s", row[c].c_str());
          os << "\n";
        }
        os << "\n";
      }
    }
  }
  return os.str();
}

const Record* find_record(const std::vector<Record>& records, const std::string& impl, const std::string& pass,
                          const std::string& variant, i64 n) {
  for (const Record& r : records) {
    if (r.impl == impl && r.pass == pass && r.variant == variant && r.shape.seqlen_q == n && !r.skipped) return &r;
  }
  return nullptr;
}

// report.md under --out: the machine, the tables, the plots, the paper's A100 figures
// beside ours, and the IO model.
void write_report(const Config& cfg, const std::vector<Record>& records, double sgemm, double seconds) {
  std::vector<i64> ns;
  for (const Record& r : records) {
    if (std::find(ns.begin(), ns.end(), r.shape.seqlen_q) == ns.end()) ns.push_back(r.shape.seqlen_q);
  }
  std::ostringstream md;
  md << "# flashattn benchmark report\n\n"
     << "Command: `" << cfg.command_line << "` — " << records.size() << " cases in " << format("%.0f", seconds)
     << " s.\n\n## Machine\n\n"
     << machine_description() << "- SGEMM 2048³ (OpenBLAS, " << cfg.threads << " threads): "
     << format("%.1f", sgemm) << " GFLOP/s\n\n"
     << "## Shape\n\n"
     << "d = " << cfg.headdims.front() << ", " << cfg.heads << " head(s), batch "
     << (cfg.batch > 0 ? std::to_string(cfg.batch) : "max(1, " + std::to_string(cfg.tokens) + " / N)")
     << " — the paper's benchmark (Section 4.3, Appendix E: A100, d = 64, N = 128 … 64K, forward, backward "
        "and both, with dropout and a key-padding mask) scaled down to fit a few minutes on this machine: a "
        "constant number of tokens keeps the short lengths long enough to time, one head keeps the long "
        "ones short. fp32 throughout (the paper used fp16). Block-sparse: mask `"
     << cfg.mask_pattern << "`" << (cfg.mask_pattern == "random" ? format(" at density %.2f", cfg.density) : "")
     << ", blocks of " << cfg.mask_block << ". Variants: plain"
     << (cfg.dropout > 0 ? format(" (dropout %.2f)", cfg.dropout) : "")
     << "; dropout = p 0.1; padding = key lengths drawn in [N − 20, N] per batch, as the paper did. Each "
        "row's `max err` is the largest error against the plain-loop reference on a small case with the same "
        "options (N ≤ 160). Times are medians of up to "
     << cfg.repeat << " runs with caches flushed between runs.\n\n";

  md << "## Runtime\n\n" << runtime_tables(cfg, records, true);
  {
    std::string densities;
    for (i64 n : ns) {
      const Record* r = find_record(records, "blocksparse", cfg.passes.front(), "plain", n);
      if (r) densities += (densities.empty() ? "" : ", ") + seqlen_label(n) + ": " + format("%.2f", r->density);
    }
    if (!densities.empty()) md << "Block-sparse: fraction of blocks computed — " << densities << ".\n\n";
  }

  // Speedup of flash over standard, every (variant, pass) measured for both.
  {
    std::vector<std::vector<std::string>> rows;
    Plot plot{"speedup of flash over standard", "N", "speedup (standard ms / flash ms)", true, false, {}};
    for (const std::string& variant : cfg.variants) {
      for (const std::string& pass : cfg.passes) {
        std::vector<std::string> row{pass + ", " + variant};
        Series series{pass + " " + variant, {}};
        bool any = false;
        for (i64 n : ns) {
          const Record* f = find_record(records, "flash", pass, variant, n);
          const Record* s = find_record(records, "standard", pass, variant, n);
          row.push_back(f && s ? format("%.2f×", s->ms / f->ms) : "");
          if (f && s) {
            series.points.push_back({double(n), s->ms / f->ms});
            any = true;
          }
        }
        if (any) {
          rows.push_back(row);
          plot.series.push_back(series);
        }
      }
    }
    if (!rows.empty()) {
      std::vector<std::string> header{"speedup"};
      for (i64 n : ns) header.push_back(seqlen_label(n));
      md << "### Speedup of flash over standard\n\n" << markdown_table(header, rows) << "\n";
      const std::string why = draw(cfg.out, "speedup", plot);
      md << (why.empty() ? "![speedup](speedup.png)\n\n" : "(plot not drawn: " + why + ")\n\n");
    }
  }

  // Runtime against N, one plot per pass (plain variant).
  for (const std::string& pass : cfg.passes) {
    Plot plot{"runtime, " + pass + " (plain)", "N", "ms", true, true, {}};
    for (const std::string& impl : cfg.impls) {
      Series series{impl, {}};
      for (i64 n : ns) {
        if (const Record* r = find_record(records, impl, pass, "plain", n)) series.points.push_back({double(n), r->ms});
      }
      if (!series.points.empty()) plot.series.push_back(series);
    }
    if (plot.series.empty()) continue;
    const std::string why = draw(cfg.out, "runtime_" + pass, plot);
    md << (why.empty() ? "![runtime " + pass + "](runtime_" + pass + ".png)\n" : "(plot not drawn: " + why + ")\n");
  }
  md << "\n";

  // Memory: what each path allocated at peak (measured), plain variant, the pass that
  // needs most.
  {
    std::vector<std::vector<std::string>> rows;
    Plot plot{"memory the call allocates at peak (plain)", "N", "MiB", true, true, {}};
    for (const std::string& impl : cfg.impls) {
      std::vector<std::string> row{impl};
      Series series{impl, {}};
      for (i64 n : ns) {
        double peak = -1;
        bool skipped = false;
        for (const Record& r : records) {
          if (r.impl != impl || r.variant != "plain" || r.shape.seqlen_q != n) continue;
          if (r.skipped) skipped = true;
          else peak = std::max(peak, static_cast<double>(r.peak_bytes));
        }
        row.push_back(skipped ? "OOM (skipped)" : peak < 0 ? "" : format("%.2f", peak / 1048576.0));
        if (peak > 0 && !skipped) series.points.push_back({double(n), peak / 1048576.0});
      }
      rows.push_back(row);
      if (!series.points.empty()) plot.series.push_back(series);
    }
    std::vector<std::string> tensors{"(q, k, v, o, dO, dq, dk, dv)"};
    for (i64 n : ns) {
      const harness::Case c = make_case(cfg, n, cfg.headdims.front(), "plain");
      const i64 q = c.shape.batch * c.shape.seqlen_q * c.shape.heads * c.shape.headdim;
      const i64 k = c.shape.batch * c.shape.seqlen_k * c.shape.heads_k * c.shape.headdim;
      tensors.push_back(format("%.2f", 4.0 * (4 * q + 4 * k) / 1048576.0));
    }
    rows.push_back(tensors);
    std::vector<std::string> header{"MiB"};
    for (i64 n : ns) header.push_back(seqlen_label(n));
    md << "## Memory footprint\n\nMiB the call allocates at peak beyond the caller's tensors (measured by the "
          "library's allocation counter; the largest over the plain variant's passes), and the tensors "
          "themselves for scale. Standard holds N×N matrices; flash holds tiles, the packed K and V, and "
          "row statistics.\n\n"
       << markdown_table(header, rows) << "\n";
    const std::string why = draw(cfg.out, "memory", plot);
    md << (why.empty() ? "![memory](memory.png)\n\n" : "(plot not drawn: " + why + ")\n\n");
  }

  // The paper's figures beside ours, for the shape of the curves.
  {
    double best = 0, best_n = 0, mem_ratio = 0, mem_n = 0;
    for (i64 n : ns) {
      const Record* f = find_record(records, "flash", "fwdbwd", "plain", n);
      const Record* s = find_record(records, "standard", "fwdbwd", "plain", n);
      if (f && s && s->ms / f->ms > best) best = s->ms / f->ms, best_n = double(n);
      if (f && s && f->peak_bytes > 0 && double(s->peak_bytes) / f->peak_bytes >= mem_ratio) {
        mem_ratio = double(s->peak_bytes) / f->peak_bytes, mem_n = double(n);
      }
    }
    md << "## Beside the paper (A100, fp16)\n\n"
       << markdown_table(
              {"what", "paper", "source in the paper", "here"},
              {{"forward + backward, flash vs standard attention",
                "up to 3× faster than the PyTorch implementation", "Section 4.3, Figure 3 (left)",
                best > 0 ? format("up to %.2f× (N = %.0f)", best, best_n) : "not measured"},
               {"memory of flash vs exact baselines", "up to 20× less, linear in N",
                "Section 4.3, Figure 3 (right)",
                mem_ratio > 0 ? format("%.0f× less at N = %.0f; linear in N (table above)", mem_ratio, mem_n)
                              : "not measured"},
               {"GPT-2 medium attention (N = 1024, d = 64, 16 heads, batch 64), fwd + bwd",
                "standard 41.7 ms, 40.3 GB HBM R/W; flash 7.3 ms, 4.4 GB", "Figure 2 (left)",
                "`flashattn io` (io.md): same table with this machine's runtimes and modelled traffic"}})
       << "\nThe machines differ (a CPU's caches against DRAM, an A100's SRAM against HBM; a tuned BLAS for the "
          "baseline here, PyTorch there), so the numbers are not comparable; the shape is: standard's time and "
          "memory grow as N², flash's memory as N, and the speedup grows with N.\n\n";
  }

  // The IO model (Theorem 2), quick: forward, d = 64, a few N and M.
  {
    SweepQuery q{{"standard", "flash", "blocksparse"}, {"fwd", "bwd"}, {1024, 2048, 4096, 8192, 16384}, {64},
                 {2048, 4096, 8192, 16384}, 1, 1, false, 0.25, cfg.isa.value_or(default_isa())};
    const SweepSummary s = model_sweep(q, [](const ModelRow&) {});
    md << "## IO model (Theorem 2)\n\nSlow-memory traffic counted along the kernels' loops for a fast memory of M "
          "elements, N = 1K … 16K, M = 2K … 16K elements, d = 64, fitted as traffic ∝ N^a · M^b "
          "(block-sparse: random blocks at density 0.25):\n\n"
       << fits_table(s)
       << "\nFlash: a ≈ 2, b ≈ −1 (Θ(N²d²/M)); standard: a → 2 with no M dependence (Θ(Nd + N²)). `flashattn io "
          "--out DIR` writes [io.md](io.md) — the README's first command puts it beside this report — with the "
          "Figure 2 tables, the plots and traffic measured on this machine.\n";
  }
  std::ofstream(cfg.out + "/report.md") << md.str();
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
    for (int i = 0; i < argc; ++i) cfg.command_line += (i ? " " : "flashattn ") + std::string(argv[i]);
    cfg.impls = args.words("impl", {"flash", "standard", "blocksparse"}, {"flash", "standard", "blocksparse", "maskmod", "scoremod"});
    cfg.density = args.real("density", 0.25, 0.0, 1.0);
    cfg.mask_pattern = args.words("mask", {"random"}, {"random", "local", "fixed", "butterfly", "causal"}).front();
    cfg.mask_block = args.integer("mask-block", 128, 1, 4096);
    cfg.passes = args.words("pass", {"fwd", "bwd", "fwdbwd"}, {"fwd", "bwd", "fwdbwd"});
    cfg.variants = args.words("variant", {"plain", "dropout", "padding"},
                              {"plain", "dropout", "padding", "dropout_padding", "varlen"});
    cfg.variant_passes = args.words("variant-pass", {"fwdbwd"}, {"fwd", "bwd", "fwdbwd"});
    cfg.batch = args.integer("batch", 0, 1, 1 << 20);
    cfg.tokens = args.integer("tokens", 8192, 1, i64{1} << 30);
    cfg.heads = args.integer("heads", 1, 1, 1 << 16);
    cfg.heads_k = args.integer("heads-k", cfg.heads, 1, 1 << 16);
    if (cfg.heads % cfg.heads_k != 0) throw UsageError("--heads-k must divide --heads");
    std::vector<i64> lengths;
    for (i64 n = 128; n <= (args.flag("long") ? 65536 : 16384); n *= 2) lengths.push_back(n);
    cfg.seqlens = args.integers("seqlen", lengths, 1, i64{1} << 24);
    cfg.seqlen_k = args.integer("seqlen-k", 0, 1, i64{1} << 24);
    cfg.headdims = args.integers("headdim", {64}, 1, kMaxHeadDim);
    cfg.causal = args.flag("causal");
    cfg.dropout = args.real("dropout", 0.0, 0.0, 0.999);
    cfg.threads = static_cast<int>(args.integer("threads", omp_get_max_threads(), 1, 1024));
    cfg.repeat = static_cast<int>(args.integer("repeat", 3, 1, 1000));
    cfg.case_ms = 1000 * args.real("case-seconds", 1.0, 0.0, 1e6);
    cfg.block_q = static_cast<int>(args.integer("block-q", 0, 1, 4096));
    cfg.block_k = static_cast<int>(args.integer("block-k", 0, 1, 4096));
    cfg.check = !args.flag("no-check");
    const i64 ram = static_cast<i64>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
    cfg.mem_cap_bytes = args.integer("mem-cap-mib", ram / 2 >> 20, 1, i64{1} << 40) << 20;
    cfg.json = args.text("json", "");
    cfg.out = args.text("out", "bench-report");
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
  std::ostream* json = open_json(cfg.json, json_file);
  const bool out_files = cfg.out != "none";
  if (out_files) make_directory(cfg.out);
  const bool table = cfg.json != "-";
  const std::string isa_name = to_string(cfg.isa.value_or(default_isa()));
  const std::string blas_name = std::string("openblas-") + openblas_get_corename();

  // The cases, in the order they run, with a weight (their FLOPs, the standard path's
  // doubled) for the progress bar's estimate.
  struct Planned {
    i64 headdim, seqlen;
    std::string variant, impl, pass;
  };
  std::vector<Planned> plan;
  double total_weight = 0;
  auto weight = [&](const Planned& c) {
    const double n = static_cast<double>(c.seqlen);
    const double flops = 4.0 * batch_for(cfg, c.seqlen) * cfg.heads * n * n * c.headdim * pass_factor(c.pass);
    return flops * (c.impl == "standard" ? 2.0 : c.impl == "blocksparse" ? 0.5 : 1.0) + 2e9;  // + SGEMM, check
  };
  for (i64 headdim : cfg.headdims) {
    for (i64 seqlen : cfg.seqlens) {
      for (const std::string& variant : cfg.variants) {
        for (const std::string& impl : cfg.impls) {
          for (const std::string& pass : cfg.passes) {
            if (variant == "varlen" && (impl == "blocksparse" || impl == "maskmod")) continue;  // not combinable yet
            if (variant != "plain" &&
                std::find(cfg.variant_passes.begin(), cfg.variant_passes.end(), pass) == cfg.variant_passes.end()) {
              continue;
            }
            plan.push_back({headdim, seqlen, variant, impl, pass});
            total_weight += weight(plan.back());
          }
        }
      }
    }
  }

  CacheFlusher flusher;
  Sgemm sgemm_runner;
  openblas_set_num_threads(cfg.threads);
  const double sgemm_warm = sgemm_runner.run_ms();
  const double sgemm_ms =
      time_case(cfg.repeat, cfg.case_ms, sgemm_warm, flusher, sgemm_runner, [&] { sgemm_runner.run_ms(); }).ms;
  const double sgemm = Sgemm::kFlops / (sgemm_ms * 1e6);
  const std::string sgemm_json = "{\"impl\":\"sgemm\",\"pass\":\"gemm\",\"m\":2048,\"n\":2048,\"k\":2048,\"threads\":" +
                                 std::to_string(cfg.threads) + ",\"isa\":\"" + blas_name + "\",\"ms\":" +
                                 json_number(sgemm_ms) + ",\"gflops\":" + json_number(sgemm) + "}";
  if (json) *json << sgemm_json << std::endl;
  if (table) {
    std::printf("machine: %d threads, L1d %lld KiB, L2 %lld KiB; OpenBLAS core %s\n", cfg.threads,
                static_cast<long long>(cache_sizes().l1d_bytes >> 10),
                static_cast<long long>(cache_sizes().l2_bytes >> 10), openblas_get_corename());
    std::printf("sgemm 2048^3: %.2f ms, %.1f GFLOP/s (each row's /sgemm uses SGEMM runs interleaved with its own)\n",
                sgemm_ms, sgemm);
    std::printf("%zu cases; batch %s, %lld head(s)\n\n", plan.size(),
                cfg.batch > 0 ? std::to_string(cfg.batch).c_str() : ("max(1, " + std::to_string(cfg.tokens) + "/N)").c_str(),
                static_cast<long long>(cfg.heads));
    std::printf("%-11s %-7s %-9s %7s %7s %5s %7s %10s %9s %7s %12s %10s\n", "impl", "pass", "variant", "seqlen",
                "seqlen_k", "d", "tiles", "ms", "GFLOP/s", "/sgemm", "peak_MiB", "max_err");
  }

  Progress progress(total_weight);
  std::vector<Record> records;
  auto emit = [&](const Record& r) {
    records.push_back(r);
    if (json) *json << json_record(cfg, r) << std::endl;
    if (!table) return;
    progress.clear();
    if (r.skipped) {
      std::printf("%-11s %-7s %-9s %7lld %7lld %5lld %7s %10s   OOM (skipped: needs %.0f MiB, cap %.0f MiB)\n",
                  r.impl.c_str(), r.pass.c_str(), r.variant.c_str(), (long long)r.shape.seqlen_q,
                  (long long)r.shape.seqlen_k, (long long)r.shape.headdim, "-", "-", r.peak_bytes / 1048576.0,
                  cfg.mem_cap_bytes / 1048576.0);
    } else {
      const std::string tiles = r.impl == "standard" ? "-" : format("%dx%d", r.tiles.block_q, r.tiles.block_k);
      std::printf("%-11s %-7s %-9s %7lld %7lld %5lld %7s %10.3f %9.1f %7.3f %12.2f %10s\n", r.impl.c_str(),
                  r.pass.c_str(), r.variant.c_str(), (long long)r.shape.seqlen_q, (long long)r.shape.seqlen_k,
                  (long long)r.shape.headdim, tiles.c_str(), r.ms, r.gflops, r.gflops / r.sgemm_gflops,
                  r.peak_bytes / 1048576.0, r.err < 0 ? "-" : json_number(r.err).c_str());
    }
    std::fflush(stdout);
  };

  for (std::size_t first = 0; first < plan.size();) {
    // The cases of one (headdim, seqlen, variant) share their inputs.
    std::size_t last = first;
    while (last < plan.size() && plan[last].headdim == plan[first].headdim && plan[last].seqlen == plan[first].seqlen &&
           plan[last].variant == plan[first].variant) {
      ++last;
    }
    const harness::Case c = make_case(cfg, plan[first].seqlen, plan[first].headdim, plan[first].variant);
    // The batch as a dense case: what the sizes, FLOPs and records describe (varlen packs it).
    const harness::Case dense = make_case(cfg, plan[first].seqlen, plan[first].headdim, "plain");
    harness::Case sparse = c;
    if (std::find(cfg.impls.begin(), cfg.impls.end(), "blocksparse") != cfg.impls.end()) add_block_mask(cfg, sparse);
    harness::Case modded = c, scored = c;
    if (std::find(cfg.impls.begin(), cfg.impls.end(), "maskmod") != cfg.impls.end()) add_mod_mask(cfg, modded);
    scored.options.score_mod = kRelativeMod.handle();
    bool any = false;
    for (std::size_t i = first; i < last; ++i) any = any || estimated_bytes(dense, plan[i].impl, plan[i].pass) <= cfg.mem_cap_bytes;
    std::optional<harness::Inputs> in;
    std::optional<harness::ForwardOutputs> fwd;
    std::optional<harness::BackwardOutputs> bwd;
    if (any) {  // nothing is allocated for a group none of whose cases fit
      in.emplace(harness::make_inputs(c));
      fwd.emplace(harness::make_forward_outputs(c));
      bwd.emplace(harness::make_backward_outputs(c));
    }
    const harness::Shape& ds = dense.shape;
    const double fwd_flops = 4.0 * ds.batch * ds.heads * ds.seqlen_q * ds.seqlen_k * ds.headdim * (cfg.causal ? 0.5 : 1.0);
    std::string forward_done_for;  // the impl whose forward outputs fwd holds
    for (std::size_t i = first; i < last; ++i) {
      const Planned& pc = plan[i];
      const harness::Case& ci =
          pc.impl == "blocksparse" ? sparse : pc.impl == "maskmod" ? modded : pc.impl == "scoremod" ? scored : c;
      Record r;
      r.impl = pc.impl;
      r.pass = pc.pass;
      r.variant = pc.variant;
      r.shape = dense.shape;
      r.dropout = ci.options.dropout_p;
      r.padding = static_cast<bool>(ci.key_lengths);
      const i64 need = estimated_bytes(dense, pc.impl, pc.pass);
      if (need > cfg.mem_cap_bytes) {
        r.skipped = true;
        r.peak_bytes = need;
        emit(r);
        progress.step(weight(pc), pc.impl + " " + pc.pass + " N=" + std::to_string(pc.seqlen) + " " + pc.variant + " (skipped)");
        continue;
      }
      const bool is_flash = pc.impl != "standard";
      const Algorithm algorithm = is_flash ? Algorithm::flash : Algorithm::standard;
      r.density = mask_density(ci);
      r.tiles = is_flash ? choose_tiles(harness::reference_problem(ci)) : TileConfig{0, 0};
      r.isa = is_flash ? isa_name : blas_name;
      r.mask = ci.mod_mask                ? "mask_mod causal"
               : ci.options.score_mod   ? "score_mod relative"
               : ci.options.block_mask ? cfg.mask_pattern
                                        : "none";
      if (pc.pass == "bwd" && forward_done_for != pc.impl) {
        harness::run_forward(ci, *in, *fwd, algorithm);  // the backward's inputs
        forward_done_for = pc.impl;
      }
      r.err = cfg.check ? validate(cfg, ci, algorithm, pc.pass) : -1.0;
      auto run = [&] {
        if (pc.pass != "bwd") {
          forward(in->q.view(), in->k.view(), in->v.view(), fwd->out.view(), fwd->lse.view(), ci.options, algorithm);
        }
        if (pc.pass != "fwd") {
          backward(in->dout.view(), in->q.view(), in->k.view(), in->v.view(), fwd->out.view(), fwd->lse.view(),
                   bwd->dq.view(), bwd->dk.view(), bwd->dv.view(), ci.options, algorithm);
        }
      };
      const i64 before = allocated_bytes();
      reset_peak_allocated_bytes();
      const auto warm_start = Clock::now();
      run();  // also the warm-up
      const double warm_ms = milliseconds(warm_start);
      if (pc.pass != "bwd") forward_done_for = pc.impl;
      r.peak_bytes = peak_allocated_bytes() - before;
      const Timing timing = time_case(cfg.repeat, cfg.case_ms, warm_ms, flusher, sgemm_runner, run);
      r.ms = timing.ms;
      // Block-sparse counts the FLOPs of the blocks it computes.
      // maskmod's mask is causal whether or not --causal halved fwd_flops.
      const double work = pc.impl == "blocksparse" ? r.density : pc.impl == "maskmod" && !cfg.causal ? 0.5 : 1.0;
      r.gflops = fwd_flops * work * pass_factor(pc.pass) / (r.ms * 1e6);
      r.sgemm_gflops = Sgemm::kFlops / (timing.sgemm_ms * 1e6);
      emit(r);
      progress.step(weight(pc), pc.impl + " " + pc.pass + " N=" + std::to_string(pc.seqlen) + " " + pc.variant);
    }
    first = last;
  }
  progress.finish();
  const double seconds = progress.seconds();

  if (table) std::printf("\n%s", runtime_tables(cfg, records, false).c_str());
  if (out_files) {
    std::ofstream jsonl(cfg.out + "/results.jsonl"), csv(cfg.out + "/results.csv");
    jsonl << sgemm_json << "\n";
    csv << csv_header() << "\n";
    for (const Record& r : records) {
      jsonl << json_record(cfg, r) << "\n";
      csv << csv_record(cfg, r) << "\n";
    }
    write_report(cfg, records, sgemm, seconds);
    if (table) std::printf("wrote %s/report.md, results.csv, results.jsonl and the plots (%.0f s of benchmark)\n",
                           cfg.out.c_str(), seconds);
  }
  return 0;
}

}  // namespace flashattn::cli
