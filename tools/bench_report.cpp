// bench_report.cpp — what `flashattn bench` writes of its results: JSON lines, CSV, the
// paper's runtime tables, the flags a row carries (accuracy, spread, disturbance,
// consistency of the passes) and report.md.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "bench.hpp"
#include "io_analysis.hpp"
#include "report.hpp"

namespace flashattn::cli {

using i64 = std::int64_t;

double pass_factor(const std::string& pass) { return pass == "fwd" ? 1.0 : pass == "bwd" ? 2.5 : 3.5; }

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

namespace {

std::string json_list(const std::vector<double>& values) {
  std::string s = "[";
  for (std::size_t i = 0; i < values.size(); ++i) s += (i ? "," : "") + json_number(values[i]);
  return s + "]";
}

const char* json_bool(bool b) { return b ? "true" : "false"; }

std::string seqlen_label(i64 n) { return n >= 1024 && n % 1024 == 0 ? std::to_string(n / 1024) + "K" : std::to_string(n); }

const Record* find_record(const std::vector<Record>& records, const std::string& impl, const std::string& pass,
                          const std::string& variant, i64 n) {
  for (const Record& r : records) {
    if (r.impl == impl && r.pass == pass && variant_key(r) == variant && r.shape.seqlen_q == n && !r.skipped) return &r;
  }
  return nullptr;
}

// A row's size in the flagged and baseline tables: N, or a decode row's batch × cache length.
std::string size_label(const Record& r) {
  if (r.pass != "decode") return std::to_string(r.shape.seqlen_q);
  return format("%lldx%s", static_cast<long long>(r.shape.batch), seqlen_label(r.shape.seqlen_k).c_str());
}

// A speedup is trusted only when both of its figures are.
bool solid(const Record& r) { return !r.timing.unstable && !r.timing.noisy() && r.ok; }

}  // namespace

std::string json_pulse(const PulseRecord& p) {
  const std::string n = std::to_string(Sgemm::kN);
  return "{\"impl\":\"sgemm\",\"pass\":\"gemm\",\"m\":" + n + ",\"n\":" + n + ",\"k\":" + n +
         ",\"threads\":" + std::to_string(p.threads) +
         ",\"isa\":\"" + p.blas + "\",\"ms\":" + json_number(p.ms.median) + ",\"gflops\":" + json_number(p.gflops()) +
         ",\"ms_min\":" + json_number(p.ms.min) + ",\"ms_max\":" + json_number(p.ms.max) +
         ",\"runs\":" + std::to_string(p.ms.n) + ",\"pulse_tolerance\":" + json_number(p.tolerance) + "}";
}

std::string json_record(const Config& cfg, const Record& r) {
  std::ostringstream os;
  os << "{\"impl\":\"" << r.impl << "\",\"pass\":\"" << r.pass << "\",\"batch\":" << r.shape.batch
     << ",\"heads\":" << r.shape.heads << ",\"heads_k\":" << r.shape.heads_k << ",\"seqlen_q\":" << r.shape.seqlen_q
     << ",\"seqlen_k\":" << r.shape.seqlen_k << ",\"headdim\":" << r.shape.headdim
     << ",\"causal\":" << json_bool(cfg.causal || r.pass == "decode") << ",\"dropout\":" << json_number(r.dropout)
     << ",\"threads\":" << cfg.threads << ",\"forward_kernel\":\""
     << (cfg.forward_kernel == AttentionOptions::ForwardKernel::tiled      ? "tiled"
         : cfg.forward_kernel == AttentionOptions::ForwardKernel::split_kv ? "split_kv"
                                                                            : "automatic")
     << "\"";
  if (r.skipped) {
    os << ",\"peak_bytes\":" << r.peak_bytes << ",\"skipped\":\"memory cap\"";
  } else {
    const CaseTiming& t = r.timing;
    os << ",\"isa\":\"" << r.isa << "\",\"ms\":" << json_number(r.ms()) << ",\"gflops\":" << json_number(r.gflops)
       << ",\"flops\":" << format("%.0f", r.flops)
       << ",\"peak_bytes\":" << r.peak_bytes << ",\"max_err\":" << (r.err < 0 ? "null" : json_number(r.err))
       << ",\"block_q\":" << r.tiles.block_q << ",\"block_k\":" << r.tiles.block_k
       << ",\"density\":" << json_number(r.density) << ",\"mask\":\"" << r.mask << "\""
       << ",\"sgemm_gflops\":" << json_number(r.sgemm_gflops)
       << ",\"sgemm_ratio\":" << json_number(r.gflops / r.sgemm_gflops)
       << ",\"peak_gflops\":" << json_number(cfg.peak_for(r.dtype))
       << ",\"peak_ratio\":" << (cfg.peak_for(r.dtype) > 0 ? json_number(r.gflops / cfg.peak_for(r.dtype)) : std::string("null"))
       << ",\"ms_min\":" << json_number(t.summary.min) << ",\"ms_max\":" << json_number(t.summary.max)
       << ",\"ms_q1\":" << json_number(t.summary.q1) << ",\"ms_q3\":" << json_number(t.summary.q3)
       << ",\"runs\":" << t.summary.n << ",\"discarded\":" << t.discarded << ",\"spread\":" << json_number(t.summary.spread())
       << ",\"noisy\":" << json_bool(t.noisy()) << ",\"unstable\":" << json_bool(t.unstable)
       << ",\"run_ms\":" << json_list(t.unstable ? t.all_ms : t.quiet_ms)
       // The decode suite's pulse is a streaming read (timing.hpp's PulseKind).
       << (r.pass == "decode" ? ",\"run_read_ms\":" : ",\"run_sgemm_ms\":")
       << json_list(t.unstable ? t.all_pulse_ms : t.quiet_pulse_ms)
       << ",\"err_fraction\":" << (r.err_fraction < 0 ? "null" : json_number(r.err_fraction))
       << ",\"ok\":" << json_bool(r.ok) << ",\"remeasured\":" << json_bool(r.remeasured);
    if (r.pass == "fwdbwd") os << ",\"consistent\":" << json_bool(r.consistency.empty());
    if (r.pass == "decode") {
      os << ",\"page_size\":" << r.page_size << ",\"bytes_read\":" << format("%.0f", r.bytes_read)
         << ",\"gbps\":" << json_number(r.gbps()) << ",\"bandwidth_gbps\":" << json_number(r.bandwidth_gbps)
         << ",\"bandwidth_ratio\":" << json_number(r.bandwidth_gbps > 0 ? r.gbps() / r.bandwidth_gbps : 0.0);
    }
    if (r.vs_baseline) {
      const RatioEstimate& b = *r.vs_baseline;
      os << ",\"baseline_ratio\":" << json_number(b.ratio) << ",\"baseline_ratio_lo\":" << json_number(b.lo)
         << ",\"baseline_ratio_hi\":" << json_number(b.hi) << ",\"baseline_significant\":" << json_bool(b.significant)
         << ",\"baseline_pairs\":" << std::min(b.n_a, b.n_b);
    }
  }
  os << ",\"variant\":\"" << r.variant << "\",\"key_padding\":" << json_bool(r.padding) << ",\"dtype\":\""
     << to_string(r.dtype) << "\"}";
  return os.str();
}

std::string csv_header() {
  return "impl,pass,variant,batch,heads,heads_k,seqlen_q,seqlen_k,headdim,causal,dropout,key_padding,threads,isa,ms,"
         "gflops,sgemm_gflops,sgemm_ratio,peak_bytes,max_err,block_q,block_k,density,mask,skipped,ms_min,ms_max,runs,"
         "discarded,noisy,unstable,ok";
}

std::string csv_record(const Config& cfg, const Record& r) {
  const std::string head =
      format("%s,%s,%s,%lld,%lld,%lld,%lld,%lld,%lld,%d,%g,%d,%d,%s,", r.impl.c_str(), r.pass.c_str(),
             r.variant.c_str(), (long long)r.shape.batch, (long long)r.shape.heads, (long long)r.shape.heads_k,
             (long long)r.shape.seqlen_q, (long long)r.shape.seqlen_k, (long long)r.shape.headdim, cfg.causal,
             r.dropout, r.padding, cfg.threads, r.isa.c_str());
  if (r.skipped) return head + ",,,," + std::to_string(r.peak_bytes) + ",,,,,,memory cap,,,,,,,";
  const CaseTiming& t = r.timing;
  return head + format("%.6g,%.6g,%.6g,%.6g,%lld,%s,%d,%d,%.6g,%s,,%.6g,%.6g,%zu,%d,%d,%d,%d", r.ms(), r.gflops,
                       r.sgemm_gflops, r.gflops / r.sgemm_gflops, (long long)r.peak_bytes,
                       r.err < 0 ? "" : json_number(r.err).c_str(), r.tiles.block_q, r.tiles.block_k, r.density,
                       r.mask.c_str(), t.summary.min, t.summary.max, t.summary.n, t.discarded, t.noisy(), t.unstable,
                       r.ok);
}

std::string variant_key(const Record& r) {
  return r.dtype == DType::f32 ? r.variant : r.variant + " " + to_string(r.dtype);
}

std::vector<std::string> variant_keys(const Config& cfg) {
  std::vector<std::string> keys;
  for (DType dtype : cfg.dtypes) {
    for (const std::string& variant : cfg.variants) keys.push_back(dtype == DType::f32 ? variant : variant + " " + to_string(dtype));
  }
  return keys;
}

void check_consistency(std::vector<Record>& records) {
  for (Record& whole : records) {
    if (whole.skipped || whole.pass != "fwdbwd") continue;
    const Record *fwd = nullptr, *bwd = nullptr;
    for (const Record& r : records) {
      if (r.skipped || r.impl != whole.impl || variant_key(r) != variant_key(whole) || r.shape.seqlen_q != whole.shape.seqlen_q ||
          r.shape.headdim != whole.shape.headdim) {
        continue;
      }
      if (r.pass == "fwd") fwd = &r;
      if (r.pass == "bwd") bwd = &r;
    }
    whole.consistency = fwd && bwd ? pass_consistency(fwd->timing.summary, bwd->timing.summary, whole.timing.summary) : "";
  }
}

std::string row_flags(const Record& r) {
  std::string flags;
  auto add = [&](const std::string& f) { flags += (flags.empty() ? "" : ",") + f; };
  if (!r.ok) add("FAIL");
  if (r.timing.unstable) add("unstable");
  if (r.timing.noisy()) add("noisy");
  if (!r.consistency.empty()) add("inconsistent");
  return flags;
}

std::string runtime_tables(const Config& cfg, const std::vector<Record>& records, bool markdown) {
  std::ostringstream os;
  std::vector<i64> ns;
  for (const Record& r : records) {
    if (r.pass == "decode") continue;  // decode_table's
    if (std::find(ns.begin(), ns.end(), r.shape.seqlen_q) == ns.end()) ns.push_back(r.shape.seqlen_q);
  }
  for (const std::string& variant : variant_keys(cfg)) {
    for (const std::string& pass : cfg.passes) {
      std::vector<std::vector<std::string>> rows;
      for (const std::string& impl : cfg.impls) {
        std::vector<std::string> row{impl};
        double worst = -1;
        bool any = false;
        for (i64 n : ns) {
          std::string cell = "";
          for (const Record& r : records) {
            if (r.impl != impl || r.pass != pass || variant_key(r) != variant || r.shape.seqlen_q != n) continue;
            // Markers: ! failed its accuracy check, ? unstable, ~ noisy (legend under the tables).
            cell = r.skipped ? "OOM (skipped)"
                             : format(r.ms() < 10 ? "%.2f" : "%.0f", r.ms()) + (r.ok ? "" : "!") +
                                   (r.timing.unstable ? "?" : "") + (r.timing.noisy() ? "~" : "");
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
      const std::string title = "Runtime (ms, median), " + pass + ", " + variant + (cfg.causal ? ", causal" : "");
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

std::string flagged_rows(const Config& cfg, const std::vector<Record>& records, bool markdown) {
  std::vector<std::vector<std::string>> rows;
  for (const Record& r : records) {
    if (r.skipped) continue;
    const std::string flags = row_flags(r);
    if (flags.empty()) continue;
    std::string detail;
    if (!r.ok) detail += format("error %.3g is %.2f× the allowed error; ", r.err, r.err_fraction);
    if (r.timing.unstable) {
      detail += format("%zu quiet runs of %d tried (%d disturbed): the figure is every run's median; ",
                       r.timing.quiet_ms.size(), static_cast<int>(r.timing.all_ms.size()), r.timing.discarded);
    }
    if (r.timing.noisy()) detail += format("runs %.4g … %.4g ms (max/min %.2f); ", r.timing.summary.min, r.timing.summary.max, r.timing.summary.spread());
    if (!r.consistency.empty()) detail += r.consistency + "; ";
    detail.resize(detail.size() - 2);
    rows.push_back({r.impl, r.pass, variant_key(r), size_label(r), std::to_string(r.shape.headdim), flags,
                    detail});
  }
  if (rows.empty()) return "";
  std::ostringstream os;
  const std::string legend =
      format("Markers: ! failed its accuracy check (error above FlashAttention's allowed error), ? unstable (fewer "
             "than the minimum of quiet runs: a pulse next to each other run was more than %.0f%% below the session's "
             "reference), ~ noisy (max/min of the quiet runs above %.2f); fwdbwd rows whose time disagrees with fwd + "
             "bwd beyond their runs' spread are listed as inconsistent.",
             100 * cfg.pulse_tolerance, kNoisySpread);
  if (markdown) {
    os << legend << "\n\n" << markdown_table({"impl", "pass", "variant", "N", "d", "flags", "why"}, rows) << "\n";
  } else {
    os << "Flagged rows (" << rows.size() << "). " << legend << "\n";
    for (const auto& row : rows) {
      os << format("  %-11s %-7s %-9s N=%-6s d=%-4s %-24s %s\n", row[0].c_str(), row[1].c_str(), row[2].c_str(),
                   row[3].c_str(), row[4].c_str(), row[5].c_str(), row[6].c_str());
    }
    os << "\n";
  }
  return os.str();
}

std::string baseline_table(const Config& cfg, const std::vector<Record>& records, bool markdown) {
  std::vector<std::vector<std::string>> rows;
  for (const Record& r : records) {
    if (!r.vs_baseline) continue;
    const RatioEstimate& b = *r.vs_baseline;
    const auto base = std::find_if(records.begin(), records.end(), [&](const Record& x) {
      return x.impl == r.impl + "@baseline" && x.pass == r.pass && x.variant == r.variant && x.dtype == r.dtype &&
             x.shape.batch == r.shape.batch && x.shape.seqlen_q == r.shape.seqlen_q &&
             x.shape.seqlen_k == r.shape.seqlen_k && x.shape.headdim == r.shape.headdim;
    });
    const std::string verdict = !b.has_interval  ? "no interval (fewer than 2 paired runs)"
                                : !b.significant ? "no significant difference"
                                : b.ratio > 1    ? format("slower by %.1f%%", 100 * (b.ratio - 1))
                                                 : format("faster by %.1f%%", 100 * (1 - b.ratio));
    rows.push_back({r.impl, r.pass, variant_key(r), size_label(r), std::to_string(r.shape.headdim),
                    format("%.4g", base == records.end() ? 0.0 : base->ms()), format("%.4g", r.ms()),
                    format("%.4f", b.ratio), format("[%.4f, %.4f]", b.lo, b.hi),
                    std::to_string(std::min(b.n_a, b.n_b)), verdict});
  }
  if (rows.empty()) return "";
  const std::vector<std::string> header{"impl", "pass", "variant", "N", "d", "baseline ms", "this ms", "this / baseline",
                                        "95% interval", "pairs", "this build is"};
  std::ostringstream os;
  const std::string title = "This build against the baseline " + cfg.baseline_lib +
                            " (same process, same buffers, interleaved run by run; the interval is Student's t on "
                            "the paired runs' log ratios)";
  if (markdown) {
    os << "## " << title << "\n\n" << markdown_table(header, rows) << "\n";
  } else {
    os << title << "\n";
    for (const auto& row : rows) {
      os << format("  %-11s %-7s %-9s N=%-6s d=%-4s %10s ms %10s ms  %s %s  %s pairs  %s\n", row[0].c_str(), row[1].c_str(),
                   row[2].c_str(), row[3].c_str(), row[4].c_str(), row[5].c_str(), row[6].c_str(), row[7].c_str(),
                   row[8].c_str(), row[9].c_str(), row[10].c_str());
    }
    os << "\n";
  }
  return os.str();
}

void write_report(const Config& cfg, const std::vector<Record>& records, const PulseRecord& pulse, double seconds) {
  std::vector<i64> ns;
  for (const Record& r : records) {
    if (r.pass == "decode") continue;
    if (std::find(ns.begin(), ns.end(), r.shape.seqlen_q) == ns.end()) ns.push_back(r.shape.seqlen_q);
  }
  std::ostringstream md;
  const std::string blas_warning = blas_core_warning();
  md << "# flashattn benchmark report\n\n"
     << "Command: `" << cfg.command_line << "` — " << records.size() << " cases in " << format("%.0f", seconds)
     << " s.\n\n## Machine\n\n"
     << machine_description() << "- SGEMM 2048³ (OpenBLAS, " << cfg.threads << " threads): "
     << format("%.1f GFLOP/s (median of %zu runs, %.1f … %.1f)", pulse.gflops(), pulse.ms.n,
               Sgemm::gflops(pulse.ms.max), Sgemm::gflops(pulse.ms.min))
     << "\n" << (blas_warning.empty() ? "" : "- **Warning**: " + blas_warning + "\n") << "\n"
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
        "options (N ≤ 160).\n\n"
     << "## How the figures were taken\n\n"
     << format("Each case is timed by at least %d quiet runs (more while its runs add up to under %.1f s, at most "
               "%d), taken in %d sweeps over the whole suite so that they sample the machine across the session, "
               "caches flushed (%.0f MiB written) before each run. The cases of one (N, d, variant) — every "
               "implementation and pass — run interleaved, one run each per round, so that a speedup compares "
               "runs taken in the same seconds. An SGEMM (the machine's pulse) follows every run; a run next to a "
               "pulse more than %.0f%% below the session's reference pulse (the first quartile of its pulses) is "
               "discarded and repeated (at most %d times per case); at the end every group is judged again against "
               "the final reference and measured once more if it falls short (`remeasured`). Figures are medians "
               "of the quiet runs; the JSON lines carry min, max, quartiles and every run.\n\n",
               cfg.policy.min_runs, cfg.policy.budget_ms / 1000, cfg.policy.max_runs,
               cfg.sweep_count(), cfg.flush_bytes / 1048576.0, 100 * cfg.pulse_tolerance,
               cfg.policy.max_retries);

  md << "## Runtime\n\n" << runtime_tables(cfg, records, true) << baseline_table(cfg, records, true);
  const std::string decode = decode_table(records, true);
  if (!decode.empty()) {
    md << "## Decode\n\n"
       << "One call per generated token against a KV cache: the call does little arithmetic, so its speed is the "
          "bytes of K and V it must read per second, here against a streaming read of memory measured in the same "
          "process on the same threads beside each (batch, seqlen_k)'s runs. standard materializes the scores "
          "(BLAS GEMMs); flash is the ordinary forward (split-KV kernel, K and V read in place); kvcache is "
          "forward_with_kvcache appending the call's new tokens into the cache first, contiguous or in pages of "
          "P keys under a shuffled block table. Markers as in the runtime tables.\n\n"
       << decode;
  }
  const std::string flagged = flagged_rows(cfg, records, true);
  md << "## Flags\n\n" << (flagged.empty() ? "No row failed its accuracy check, none was unstable or noisy, and "
                                             "every fwdbwd agreed with fwd + bwd.\n\n"
                                           : flagged);
  {
    std::string densities;
    for (i64 n : ns) {
      const Record* r = find_record(records, "blocksparse", cfg.passes.front(), "plain", n);
      if (r) densities += (densities.empty() ? "" : ", ") + seqlen_label(n) + ": " + format("%.2f", r->density);
    }
    if (!densities.empty()) md << "Block-sparse: fraction of blocks computed — " << densities << ".\n\n";
  }

  // Speedup of flash over standard, every (variant, pass) measured for both, from the
  // medians of the same interleaved rounds.
  {
    std::vector<std::vector<std::string>> rows;
    Plot plot{"speedup of flash over standard", "N", "speedup (standard ms / flash ms)", true, false, {}};
    bool any_doubtful = false;
    for (const std::string& variant : cfg.variants) {
      for (const std::string& pass : cfg.passes) {
        std::vector<std::string> row{pass + ", " + variant};
        Series series{pass + " " + variant, {}};
        bool any = false;
        for (i64 n : ns) {
          const Record* f = find_record(records, "flash", pass, variant, n);
          const Record* s = find_record(records, "standard", pass, variant, n);
          const bool doubtful = f && s && !(solid(*f) && solid(*s));
          any_doubtful = any_doubtful || doubtful;
          row.push_back(f && s ? format("%.2f×%s", s->ms() / f->ms(), doubtful ? " (?)" : "") : "");
          if (f && s) {
            series.points.push_back({double(n), s->ms() / f->ms()});
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
      if (any_doubtful) md << "(?): one of the two figures is flagged (see Flags).\n\n";
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
        if (const Record* r = find_record(records, impl, pass, "plain", n)) series.points.push_back({double(n), r->ms()});
      }
      if (!series.points.empty()) plot.series.push_back(series);
    }
    if (plot.series.empty()) continue;
    const std::string why = draw(cfg.out, "runtime_" + pass, plot);
    md << (why.empty() ? "![runtime " + pass + "](runtime_" + pass + ".png)\n" : "(plot not drawn: " + why + ")\n");
  }
  md << "\n";

  // Memory: what each path allocated at peak (measured in its warm-up run), plain variant,
  // the pass that needs most.
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
          if (r.impl != impl || variant_key(r) != "plain" || r.shape.seqlen_q != n) continue;
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
      const auto r = std::find_if(records.begin(), records.end(), [n](const Record& x) { return x.shape.seqlen_q == n; });
      const harness::Shape& s = r->shape;
      const i64 q = s.batch * s.seqlen_q * s.heads * s.headdim, k = s.batch * s.seqlen_k * s.heads_k * s.headdim;
      tensors.push_back(format("%.2f", 4.0 * (4 * q + 4 * k) / 1048576.0));
    }
    rows.push_back(tensors);
    std::vector<std::string> header{"MiB"};
    for (i64 n : ns) header.push_back(seqlen_label(n));
    md << "## Memory footprint\n\nMiB the call allocates at peak beyond the caller's tensors (measured by the "
          "library's allocation counter during the warm-up run; the largest over the plain variant's passes), and "
          "the tensors themselves for scale. Standard holds N×N matrices; flash holds tiles, the packed K and V, "
          "and row statistics.\n\n"
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
      if (f && s && s->ms() / f->ms() > best) best = s->ms() / f->ms(), best_n = double(n);
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
                 {2048, 4096, 8192, 16384}, 1, 1, false, 0.25, cfg.isa.value_or(default_isa()), {"kernels", "paper"}};
    const SweepSummary s = model_sweep(q, [](const ModelRow&) {});
    md << "## IO model (Theorem 2)\n\nSlow-memory traffic counted along the kernels' loops and along the paper's for a fast memory of M "
          "elements, N = 1K … 16K, M = 2K … 16K elements, d = 64, fitted as traffic ∝ N^a · M^b "
          "(block-sparse: random blocks at density 0.25):\n\n"
       << fits_table(s)
       << "\nFlash along the paper's loops and tiles (Algorithm 1, B_c = ⌈M/4d⌉): a ≈ 2, b ≈ −1, Θ(N²d²/M) as "
          "Theorem 2 states; along this library's loops with its square, register-rounded tiles b departs from −1 "
          "by an amount that depends on d and the ISA (io.md says why); standard: a → 2 with no M dependence (Θ(Nd + N²)). `flashattn io "
          "--out DIR` writes [io.md](io.md) — the README's first command puts it beside this report — with the "
          "Figure 2 tables, the plots and traffic measured on this machine.\n";
  }
  std::ofstream(cfg.out + "/report.md") << md.str();
}

}  // namespace flashattn::cli
