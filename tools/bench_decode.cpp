// bench_decode.cpp — `flashattn bench`'s decode suite: one call per generated token,
// seqlen_q new queries per head against a KV cache of seqlen_k keys. Such a call does little
// arithmetic; its speed is how fast it reads K and V, so each row reports the K and V bytes
// the call must read per second against a streaming read of memory measured in the same
// process, on the same threads, after each of the case's runs (bandwidth_ratio): the
// suite's pulse, which decides which runs were disturbed.
//
// Cases of one (batch, seqlen_k) share one cache and run interleaved, caches flushed before
// each run, with the suite's pulse and sweep rules (timing.hpp, stats.hpp):
//   standard  forward(..., Algorithm::standard): S and P materialized, BLAS GEMMs;
//   flash     forward(...): the split-KV kernel reads K and V in place;
//   kvcache   forward_with_kvcache: the cache holds seqlen_k − seqlen_q keys and the call
//             appends seqlen_q new ones, then attends all seqlen_k; contiguous, or paged
//             (variant pagedP: pages of P keys, the block table a shuffle of the same memory).
// With --baseline-lib, each case has a twin "<impl>@baseline" that calls the other build's
// entry points on the same buffers, timed in the same rounds.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>

#include "baseline.hpp"
#include "bench.hpp"
#include "internal.hpp"
#include "flashattn/kvcache.hpp"
#include "report.hpp"

namespace flashattn::cli {
namespace {

using i64 = std::int64_t;

// The K and V bytes a decode call of `s` must read: what its rows report per second.
double kv_bytes_of(const harness::Shape& s, DType dtype) {
  return 2.0 * s.batch * s.seqlen_k * s.heads_k * s.headdim * static_cast<double>(element_bytes(dtype));
}

std::string variant_of(i64 page_size) { return page_size == 0 ? "contiguous" : "paged" + std::to_string(page_size); }

// forward_with_kvcache's call for a case: a cache of capacity seqlen_k filled to
// seqlen_k − seqlen_q, the new keys (copies of k and v's last seqlen_q rows) appended, then
// all seqlen_k attended — the ordinary forward's keys. Contiguous: the cache is k and v as
// they are. Paged: pages of page_size keys under a shuffled block table, either laid over k
// and v's own memory (`faithful` false: for timing, the scattered reads of a real paged
// cache, whatever the keys are) or copied so that each sequence's keys stay its own (for
// the check against the reference).
struct DecodeCall {
  TensorView k_cache, v_cache;
  std::vector<float> k_pages, v_pages, k_new, v_new;
  std::vector<std::uint16_t> k_pages16, v_pages16, k_new16, v_new16;  // the same, in a 16-bit case's dtype
  std::vector<std::int32_t> table, filled;
  KvCache kv;

  // A contiguous view of `values` in the case's dtype (rounded into `bits` when 16-bit).
  static TensorView view_in(DType dtype, const std::vector<float>& values, std::vector<std::uint16_t>& bits,
                            std::initializer_list<i64> shape) {
    TensorView t = TensorView::contiguous(values.data(), shape);
    if (dtype == DType::f32) return t;
    bits.resize(values.size());
    for (std::size_t n = 0; n < values.size(); ++n) bits[n] = dtype == DType::bf16 ? f32_to_bf16(values[n]) : f32_to_f16(values[n]);
    t.data = bits.data();
    t.dtype = dtype;
    return t;
  }

  DecodeCall(const harness::Case& c, const harness::Inputs& in, i64 page_size, bool faithful) {
    const harness::Shape& s = c.shape;
    const i64 token = s.heads_k * s.headdim, fill = s.seqlen_k - s.seqlen_q;
    filled.assign(static_cast<std::size_t>(s.batch), static_cast<std::int32_t>(fill));
    for (i64 b = 0; b < s.batch; ++b) {
      for (i64 i = 0; i < s.seqlen_q; ++i) {
        for (i64 h = 0; h < s.heads_k; ++h) {
          for (i64 x = 0; x < s.headdim; ++x) {
            k_new.push_back(in.k.at(b, fill + i, h, x));
            v_new.push_back(in.v.at(b, fill + i, h, x));
          }
        }
      }
    }
    k_cache = in.k.view();
    v_cache = in.v.view();
    if (page_size > 0) {
      const i64 pages = s.seqlen_k / page_size;
      table.resize(static_cast<std::size_t>(s.batch * pages));
      std::iota(table.begin(), table.end(), 0);
      std::shuffle(table.begin(), table.end(), std::mt19937(12345));
      if (faithful) {  // page table[b · pages + p] holds keys p · page_size … of sequence b
        k_pages.resize(static_cast<std::size_t>(s.batch * s.seqlen_k * token));
        v_pages.resize(k_pages.size());
        for (i64 b = 0; b < s.batch; ++b) {
          for (i64 j = 0; j < s.seqlen_k; ++j) {
            const i64 at = (table[b * pages + j / page_size] * page_size + j % page_size) * token;
            for (i64 h = 0; h < s.heads_k; ++h) {
              for (i64 x = 0; x < s.headdim; ++x) {
                k_pages[at + h * s.headdim + x] = in.k.at(b, j, h, x);
                v_pages[at + h * s.headdim + x] = in.v.at(b, j, h, x);
              }
            }
          }
        }
        k_cache = view_in(c.dtype, k_pages, k_pages16, {s.batch * pages, page_size, s.heads_k, s.headdim});
        v_cache = view_in(c.dtype, v_pages, v_pages16, {s.batch * pages, page_size, s.heads_k, s.headdim});
      } else {  // (batch · pages, page_size, heads_k, d) over k and v's rows
        for (TensorView* t : {&k_cache, &v_cache}) {
          t->shape[0] = s.batch * pages;
          t->shape[1] = page_size;
          t->stride[0] = page_size * t->stride[1];
        }
      }
      kv.block_table = table.data();
      kv.max_pages = pages;
    }
    kv.cache_seqlens = filled.data();
    kv.k_new = view_in(c.dtype, k_new, k_new16, {s.batch, s.seqlen_q, s.heads_k, s.headdim});
    kv.v_new = view_in(c.dtype, v_new, v_new16, {s.batch, s.seqlen_q, s.heads_k, s.headdim});
  }
  DecodeCall(const DecodeCall&) = delete;  // kv points into the vectors

  // Through `entry`: this build's forward_with_kvcache, or a --baseline-lib build's.
  void run(const harness::Case& c, const harness::Inputs& in, harness::ForwardOutputs& out,
           BaselineLibrary::ForwardWithKvCache entry) const {
    entry(in.q.view(), k_cache, v_cache, out.out.view(), out.lse.view(), kv, c.options);
  }
};

harness::Case decode_case(const Config& cfg, i64 batch, i64 seqlen_k, DType dtype) {
  const DecodeConfig& d = cfg.decode;
  harness::Case c;
  c.dtype = dtype;
  c.shape = {batch, d.seqlen_q, seqlen_k, d.heads, d.heads_k, d.headdim};
  c.options.causal = true;  // no effect on the last query; the new queries of a chunk see what they precede
  c.options.num_threads = cfg.threads;
  c.options.isa = cfg.isa;
  c.options.forward_kernel = cfg.forward_kernel;
  return c;
}

// One build's entry points: this one's, or a --baseline-lib build's.
struct Entry {
  BaselineLibrary::Forward forward;
  BaselineLibrary::ForwardWithKvCache forward_with_kvcache;
};
Entry entry_of(const BaselineLibrary* other) {
  if (other != nullptr) return {other->forward, other->forward_with_kvcache};
  return {static_cast<BaselineLibrary::Forward>(&forward), &forward_with_kvcache};
}

// One case on a small cache (two sequences of 301 keys, the case's heads and queries) against
// the reference, through `entry` (standard always through this build's): its max error and
// that error over FlashAttention's allowed error (standard's own limit for standard).
std::pair<double, double> check(const Config& cfg, const std::string& impl, i64 page_size, DType dtype, Entry entry) {
  harness::Case c = decode_case(cfg, 2, 301, dtype);
  if (page_size > 0) c.shape.seqlen_k = (301 + page_size - 1) / page_size * page_size;
  const harness::Inputs in = harness::make_inputs(c);
  const harness::ReferenceOutputs ref = harness::run_reference(c, in, false);
  auto errors_of = [&](const std::string& which, Entry through) {
    harness::ForwardOutputs out = harness::make_forward_outputs(c);
    out.out.poison();
    out.lse.poison();
    if (which == "kvcache") {
      DecodeCall(c, in, page_size, true).run(c, in, out, through.forward_with_kvcache);
    } else {
      through.forward(in.q.view(), in.k.view(), in.v.view(), out.out.view(), out.lse.view(), c.options,
                      which == "standard" ? Algorithm::standard : Algorithm::flash);
    }
    return harness::forward_errors(out, ref);
  };
  const harness::Errors fast = errors_of(impl, entry);
  if (impl == "standard") return {fast.max(), fast.max() / harness::standard_error_limit(ref, dtype)};
  const harness::Errors standard = errors_of("standard", entry_of(nullptr));
  return {fast.max(), harness::worst_fraction_of_allowed(fast, standard, ref, dtype)};
}

}  // namespace

DecodeSuite::DecodeSuite(const Config& cfg, const BaselineLibrary* baseline)
    : cfg_(cfg), baseline_(baseline), reads_(PulseKind::read_bandwidth, cfg.threads, cfg.pulse_tolerance) {
  const DecodeConfig& d = cfg.decode;
  reads_.calibrate(5);
  // Each case, then its twin through the baseline's entry points: the two run in the same rounds.
  auto add = [&](const std::string& impl, i64 page) {
    cases_.push_back({impl, page, nullptr});
    if (baseline == nullptr) return;
    if (impl == "kvcache" && baseline->forward_with_kvcache == nullptr) {
      throw std::runtime_error("--baseline-lib: '" + baseline->path + "' cannot run the decode suite's kvcache cases: " +
                               baseline->kvcache_missing + " (leave kvcache out of --impl)");
    }
    cases_.push_back({impl, page, baseline});
  };
  for (const std::string& impl : d.impls) {
    if (impl != "kvcache") {
      add(impl, 0);
      continue;
    }
    for (i64 page : d.page_sizes) add(impl, page);
  }
  for (const auto& [batch, seqlen_k] : d.shapes) {
    for (DType dtype : cfg.dtypes) groups_.push_back({batch, seqlen_k, dtype});
  }
}

std::string DecodeSuite::name(const Group& g) const {
  return format("decode batch %lld seqlen_k %lld %s", static_cast<long long>(g.batch),
                static_cast<long long>(g.seqlen_k), to_string(g.dtype));
}

double DecodeSuite::weight(const Group& g, int runs, double sgemm_ms) const {
  const double kv_bytes = kv_bytes_of(decode_case(cfg_, g.batch, g.seqlen_k, g.dtype).shape, g.dtype);
  if (kv_bytes > static_cast<double>(cfg_.mem_cap_bytes)) return 1.0;  // skipped
  const double read_bytes = static_cast<double>(reads_.read->bytes());
  const double bytes_per_ms = read_bytes / std::max(reads_.monitor.median_ms(), 1.0);
  // Each run: the case's K and V, the flush before it and the streaming read after it.
  const double per_run = kv_bytes + static_cast<double>(reads_.flusher.bytes()) + read_bytes;
  return runs * static_cast<double>(cases_.size()) * per_run / bytes_per_ms + sgemm_ms + 20.0;
}

std::vector<Record> DecodeSuite::measure(const Group& g, const TimingPolicy& policy, int round_base,
                                         const std::vector<Record>* earlier, Stopwatch& sgemm) {
  const Config& cfg = cfg_;
  const std::string isa_name = to_string(cfg.isa.value_or(default_isa()));
  const std::string blas_name = std::string("openblas-") + openblas_get_corename();
  harness::Case c = decode_case(cfg, g.batch, g.seqlen_k, g.dtype);
  const harness::Shape& s = c.shape;
  const double kv_bytes = kv_bytes_of(s, g.dtype);
  const double q_bytes = 3.0 * s.batch * s.seqlen_q * s.heads * s.headdim * static_cast<double>(element_bytes(g.dtype));
  std::vector<Record> fresh;
  for (const Planned& p : cases_) {
    Record r;
    r.impl = p.other ? p.impl + "@baseline" : p.impl;
    r.pass = "decode";
    r.variant = variant_of(p.page_size);
    r.dtype = g.dtype;
    r.page_size = p.page_size;
    r.shape = s;
    r.flops = 4.0 * s.batch * s.heads * s.seqlen_q * s.seqlen_k * s.headdim;
    r.bytes_read = kv_bytes;
    r.isa = p.impl == "standard" ? blas_name : isa_name;
    r.mask = "none";
    r.skipped = kv_bytes + q_bytes + (p.impl == "standard" ? 8.0 * s.batch * s.heads * s.seqlen_q * s.seqlen_k : 0) >
                static_cast<double>(cfg.mem_cap_bytes);
    if (r.skipped) r.peak_bytes = static_cast<i64>(kv_bytes);
    fresh.push_back(r);
  }
  if (std::none_of(fresh.begin(), fresh.end(), [](const Record& r) { return !r.skipped; })) return fresh;
  const harness::Inputs in = harness::make_inputs(c);
  std::vector<harness::ForwardOutputs> outs;
  std::vector<std::unique_ptr<DecodeCall>> calls;
  for (std::size_t n = 0; n < cases_.size(); ++n) {
    outs.push_back(harness::make_forward_outputs(c));
    const bool kvcache = cases_[n].impl == "kvcache" && !fresh[n].skipped;  // one per case, twins too
    calls.push_back(kvcache ? std::make_unique<DecodeCall>(c, in, cases_[n].page_size, false) : nullptr);
  }
  std::vector<std::function<void()>> runs;
  std::vector<std::size_t> timed;
  std::vector<int> partner;  // a case and its baseline twin run in the same rounds
  for (std::size_t n = 0; n < cases_.size(); ++n) {
    if (fresh[n].skipped) continue;
    const Planned& p = cases_[n];
    const Entry entry = entry_of(p.other);
    harness::ForwardOutputs* out = &outs[n];
    const DecodeCall* call = calls[n].get();
    std::function<void()> run = [&c, &in, out, call, entry, impl = p.impl] {
      if (call != nullptr) {
        call->run(c, in, *out, entry.forward_with_kvcache);
      } else {
        entry.forward(in.q.view(), in.k.view(), in.v.view(), out->out.view(), out->lse.view(), c.options,
                      impl == "standard" ? Algorithm::standard : Algorithm::flash);
      }
    };
    if (!earlier) {
      if (cfg.check) {
        const auto [err, fraction] = check(cfg, p.impl, p.page_size, g.dtype, entry);
        fresh[n].err = err;
        fresh[n].err_fraction = fraction;
        fresh[n].ok = fraction <= cfg.err_limit;
      }
      fresh[n].peak_bytes = peak_bytes_of(p.other, run);  // the warm-up, and the call's own allocations at peak
    }
    partner.push_back(static_cast<int>(baseline_ ? timed.size() / 2 : timed.size()));
    timed.push_back(n);
    runs.push_back(run);
  }
  const std::vector<CaseTiming> timings = reads_.time(policy, runs, partner);
  const double sgemm_gflops = Sgemm::gflops(sgemm.pulse());
  for (std::size_t t = 0; t < timed.size(); ++t) {
    add_sweep(fresh[timed[t]], timings[t], round_base, earlier ? &(*earlier)[timed[t]] : nullptr, cfg.policy.min_runs);
  }
  for (Record& r : fresh) {
    if (r.skipped) continue;
    r.gflops = r.flops / (r.ms() * 1e6);
    r.sgemm_gflops = sgemm_gflops;
    r.bandwidth_gbps = reads_.read->gbps_of(r.timing.pulse_median_ms);
  }
  if (baseline_) {  // each of this build's records is followed by its twin
    for (std::size_t n = 0; n + 1 < fresh.size(); n += 2) {
      if (!fresh[n].skipped) fresh[n].vs_baseline = compare_timings(fresh[n + 1].timing, fresh[n].timing);
    }
  }
  return fresh;
}

namespace {

// A decode table's column: the impl, its cache layout, and its dtype when not f32.
std::string decode_column(const Record& r) {
  const std::string col = r.impl == "kvcache" ? "kvcache " + r.variant : r.impl;
  return r.dtype == DType::f32 ? col : col + " " + to_string(r.dtype);
}

}  // namespace

std::string decode_table(const std::vector<Record>& records, bool markdown) {
  std::vector<std::string> columns;  // impl/variant, in the order met
  std::vector<std::pair<i64, i64>> shapes;
  for (const Record& r : records) {
    if (r.pass != "decode") continue;
    const std::string col = decode_column(r);
    if (std::find(columns.begin(), columns.end(), col) == columns.end()) columns.push_back(col);
    const std::pair<i64, i64> shape{r.shape.batch, r.shape.seqlen_k};
    if (std::find(shapes.begin(), shapes.end(), shape) == shapes.end()) shapes.push_back(shape);
  }
  if (shapes.empty()) return "";
  std::vector<std::string> header{"batch", "seqlen_k", "K+V MiB (widest)", "read GB/s"};
  for (const std::string& col : columns) header.push_back(col + " ms (GB/s, of read)");
  std::vector<std::vector<std::string>> rows;
  const Record* any = nullptr;
  for (const auto& [batch, seqlen_k] : shapes) {
    std::vector<std::string> row{std::to_string(batch), std::to_string(seqlen_k)};
    std::string read = "-";
    double most_bytes = 0;  // the widest dtype's K and V
    for (const std::string& col : columns) {
      std::string cell = "-";
      for (const Record& r : records) {
        if (r.pass != "decode" || r.shape.batch != batch || r.shape.seqlen_k != seqlen_k) continue;
        if (decode_column(r) != col) continue;
        any = &r;
        most_bytes = std::max(most_bytes, r.bytes_read);
        if (r.skipped) {
          cell = "skipped";
          continue;
        }
        read = format("%.1f", r.bandwidth_gbps);
        cell = format(r.ms() < 10 ? "%.2f" : "%.0f", r.ms()) + (r.ok ? "" : "!") + (r.timing.unstable ? "?" : "") +
               (r.timing.noisy() ? "~" : "") + format(" (%.1f, %.2f)", r.gbps(), r.gbps() / r.bandwidth_gbps);
      }
      row.push_back(cell);
    }
    row.insert(row.begin() + 2, {format("%.0f", most_bytes / 1048576.0), read});
    rows.push_back(row);
  }
  const harness::Shape& s = any->shape;
  const std::string title = format("Decode: %lld new quer%s per head, %lld heads, %lld kv-heads, d = %lld, the cache in each column's dtype; "
                                   "ms (median), the K+V bytes read per second (GB/s) and that over the streaming read "
                                   "measured beside it",
                                   static_cast<long long>(s.seqlen_q), s.seqlen_q == 1 ? "y" : "ies",
                                   static_cast<long long>(s.heads), static_cast<long long>(s.heads_k),
                                   static_cast<long long>(s.headdim));
  if (markdown) return "### " + title + "\n\n" + markdown_table(header, rows) + "\n";
  std::string out = title + "\n";
  for (std::size_t c = 0; c < header.size(); ++c) out += format(c < 4 ? "%-10s" : "%-30s", c < 4 ? header[c].c_str() : header[c].substr(0, 29).c_str());
  out += "\n";
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) out += format(c < 4 ? "%-10s" : "%-30s", row[c].c_str());
    out += "\n";
  }
  return out + "\n";
}

}  // namespace flashattn::cli
