// bench_compare.cpp — `flashattn bench --compare A B`: two sets of `flashattn bench` JSON
// lines (each one or more files, e.g. runs of two builds alternated), matched case by case,
// and per case the time ratio B / A with a confidence interval (stats.hpp).
//
// Two processes differ by more than their runs do (measured on the CI-kind VM: a case's
// median moved 17.6 → 27.5 ms between eight processes of one build, each process's runs
// within ±10%), so with several files a side each file is one sample; `--baseline-lib`
// (bench.cpp) is the way to resolve a few percent.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>

#include "args.hpp"
#include "bench.hpp"
#include "report.hpp"
#include "timing.hpp"

namespace flashattn::cli {

namespace {

constexpr const char* kCompareUsage = R"usage(usage: flashattn bench --compare A.jsonl[,A2.jsonl...] B.jsonl[,B2.jsonl...] [flags]

Matches the cases of two `flashattn bench --json` outputs (or results.jsonl files) and prints,
per case, the ratio of B's time to A's with its confidence interval and whether the
difference is significant (the interval excludes 1). Several files on one side pool their
runs: alternate the two builds (A, B, A, B) so that slow drift of the machine hits both.
The interval is Welch's t on the logarithms of the samples: with several files on both
sides each file's (process's) median is a sample, so the variation between processes is
counted; with one file a side the runs (`run_ms`) are, and it is not. To resolve a few
percent, time both builds in one process instead: `flashattn bench --baseline-lib`.

  --by ms|pulse      ms (default): the times as they are; pulse: each run's time divided by
                     the pulse that followed it — SGEMM, or on decode rows the streaming read
                     (cancels drift of the whole machine, adds the pulse's own variation
                     between processes); `sgemm` is an older name for pulse
  --confidence C     two-sided confidence of the interval, default 0.95
  --json FILE|-      also write one JSON object per matched case (- for stdout, then no table)

JSON fields: the case's impl, pass, variant, batch, heads, heads_k, seqlen_q, seqlen_k,
headdim, causal, dropout, threads, mask, key_padding, dtype (f32 when absent); a_ms, b_ms (medians of the raw runs),
ranges_overlap (the two sides' [min, max] of raw runs overlap: the rows agree within their
spread), chance_apart (the chance that they would not on a steady machine, from the run
counts), pulse_ranges_overlap (--by pulse: the same for each run's time over its pulse),
within_spread (each median inside the other side's [min, max]: stricter),
n_a, n_b (runs), by, ratio (B / A, geometric mean of the runs' ratio), ratio_lo, ratio_hi,
confidence, significant, samples ("processes" or "runs").
)usage";

// The fields that name a case: equal in A and B for the same work.
const char* const kKeyFields[] = {"impl",     "pass",     "variant", "batch",   "heads",       "heads_k",
                                  "seqlen_q", "seqlen_k", "headdim", "causal",  "dropout",     "threads",
                                  "mask",     "key_padding", "dtype"};

struct Side {
  std::vector<double> ms, normalized;               // every run: its time, and time / pulse
  std::vector<double> file_ms, file_normalized;     // each file's (process's) median of those
};

struct Cases {
  std::vector<std::string> order;      // first-seen order of the keys
  std::map<std::string, nlohmann::json> key_json;
  std::map<std::string, Side> runs;
};

void read_side(const std::string& list, Cases& cases) {
  std::vector<std::string> files = split(list);
  std::erase(files, "");
  if (files.empty()) throw UsageError("--compare needs two lists of JSON-lines files");
  for (const std::string& file : files) {
    std::ifstream in(file);
    if (!in) throw std::runtime_error("cannot read '" + file + "'");
    int line_no = 0, used = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(file + ":" + std::to_string(line_no) + ": not a JSON object (" + e.what() + ")");
      }
      if (!j.is_object() || !j.contains("impl") || j["impl"] == "sgemm" || j.contains("skipped") || !j.contains("ms")) {
        continue;
      }
      nlohmann::json key = nlohmann::json::object();
      for (const char* field : kKeyFields) key[field] = j.value(field, nlohmann::json());
      if (key["dtype"].is_null()) key["dtype"] = "f32";  // records from before dtypes were f32
      const std::string id = key.dump();
      if (!cases.runs.count(id)) {
        cases.order.push_back(id);
        cases.key_json[id] = key;
      }
      Side& side = cases.runs[id];
      // Older files carry only the median and the pulse rate: one run each.
      std::vector<double> ms = j.contains("run_ms") ? j["run_ms"].get<std::vector<double>>()
                                                    : std::vector<double>{j["ms"].get<double>()};
      std::vector<double> pulse;
      if (j.contains("run_sgemm_ms")) {
        pulse = j["run_sgemm_ms"].get<std::vector<double>>();
      } else if (j.contains("run_read_ms")) {  // the decode suite's streaming-read pulse
        pulse = j["run_read_ms"].get<std::vector<double>>();
      } else {
        const double gflops = j.value("sgemm_gflops", 0.0);
        pulse.assign(ms.size(), gflops > 0 ? Sgemm::kFlops / (gflops * 1e6) : 0.0);
      }
      if (pulse.size() != ms.size()) {
        throw std::runtime_error(file + ":" + std::to_string(line_no) + ": run_ms and its pulses differ in length");
      }
      std::vector<double> run_ms, run_normalized;
      for (std::size_t i = 0; i < ms.size(); ++i) {
        if (!(ms[i] > 0)) continue;
        run_ms.push_back(ms[i]);
        run_normalized.push_back(pulse[i] > 0 ? ms[i] / pulse[i] : std::nan(""));
      }
      if (run_ms.empty()) continue;
      side.ms.insert(side.ms.end(), run_ms.begin(), run_ms.end());
      side.normalized.insert(side.normalized.end(), run_normalized.begin(), run_normalized.end());
      side.file_ms.push_back(median(run_ms));
      side.file_normalized.push_back(median(run_normalized));
      ++used;
    }
    if (used == 0) throw std::runtime_error("'" + file + "' holds no timed bench record");
  }
}

std::string describe(const nlohmann::json& key) {
  std::string s = key["impl"].get<std::string>() + " " + key["pass"].get<std::string>();
  if (key["variant"].is_string() && key["variant"] != "plain") s += " " + key["variant"].get<std::string>();
  if (key["dtype"] != "f32") s += " " + key["dtype"].get<std::string>();
  s += format(" N=%lld", key["seqlen_q"].get<long long>());
  if (key["seqlen_k"] != key["seqlen_q"]) s += format("/%lld", key["seqlen_k"].get<long long>());
  s += format(" d=%lld b=%lld h=%lld", key["headdim"].get<long long>(), key["batch"].get<long long>(),
              key["heads"].get<long long>());
  if (key["heads_k"] != key["heads"]) s += format("/%lld", key["heads_k"].get<long long>());
  if (key["causal"] == true) s += " causal";
  return s;
}

}  // namespace

int compare_main(int argc, char** argv) {
  // argv[0] is "--compare"; the two lists follow, then flags.
  std::string by;
  double confidence = 0.95;
  std::string json_path;
  Cases a, b;
  try {
    if (argc >= 2 && std::string(argv[1]) == "--help") {
      std::cout << kCompareUsage;
      return 0;
    }
    if (argc < 3 || std::string(argv[1]).rfind("--", 0) == 0 || std::string(argv[2]).rfind("--", 0) == 0) {
      throw UsageError("--compare needs two lists of JSON-lines files, A then B");
    }
    Args args(argc - 2, argv + 2);
    by = args.words("by", {"ms"}, {"pulse", "sgemm", "ms"}).front();
    confidence = args.real("confidence", 0.95, 0.5, 0.9999);
    json_path = args.text("json", "");
    args.finish();
    read_side(argv[1], a);
    read_side(argv[2], b);
  } catch (const UsageError& e) {
    std::cerr << "flashattn bench --compare: " << e.what() << "\n\n" << kCompareUsage;
    return 2;
  }

  std::ofstream json_file;
  std::ostream* json = open_json(json_path, json_file);
  const bool table = json_path != "-";
  if (table) {
    std::printf("B / A, %s, %.0f%% confidence interval (Welch's t on log times)\n\n", by != "ms" ? "each run's time over its pulse" : "raw times", 100 * confidence);
    std::printf("%-46s %10s %10s %7s %7s %17s  %s\n", "case", "A ms", "B ms", "runs", "B/A", "interval", "verdict");
  }
  int matched = 0, slower = 0, faster = 0, agree = 0, overlapping = 0, per_process_cases = 0;
  int overlapping_by_pulse = 0;  // --by pulse: the ranges of each run's time over its pulse
  std::vector<double> chances_apart;  // per row, the chance its ranges lie apart on a steady machine
  double log_sum = 0;
  for (const std::string& id : a.order) {
    if (!b.runs.count(id)) continue;
    const Side& sa = a.runs.at(id);
    const Side& sb = b.runs.at(id);
    // Several processes on both sides: each process's median is one sample, so that the
    // variation between processes (memory placement, the host's load) is in the interval.
    // One process a side: its runs are the samples, and that variation is not.
    const bool per_process = sa.file_ms.size() >= 2 && sb.file_ms.size() >= 2;
    per_process_cases += per_process;
    const std::vector<double>& va = per_process ? (by != "ms" ? sa.file_normalized : sa.file_ms)
                                                : (by != "ms" ? sa.normalized : sa.ms);
    const std::vector<double>& vb = per_process ? (by != "ms" ? sb.file_normalized : sb.file_ms)
                                                : (by != "ms" ? sb.normalized : sb.ms);
    if (std::any_of(va.begin(), va.end(), [](double v) { return std::isnan(v); }) ||
        std::any_of(vb.begin(), vb.end(), [](double v) { return std::isnan(v); })) {
      throw std::runtime_error("a record of " + describe(a.key_json.at(id)) + " has no pulse: use --by ms");
    }
    const RatioEstimate r = compare_samples(va, vb, confidence);
    ++matched;
    // The spreads the tables printed, [min, max] of the raw runs: the rows agree when they
    // overlap; `within`, each median inside the other's, is the older and stricter rule.
    const Summary ta = summarize(sa.ms), tb = summarize(sb.ms);
    const bool within = tb.median >= ta.min && tb.median <= ta.max && ta.median >= tb.min && ta.median <= tb.max;
    auto ranges_overlap = [](const Summary& x, const Summary& y) { return x.min <= y.max && y.min <= x.max; };
    const bool overlap = ranges_overlap(ta, tb);
    const double chance_apart = chance_ranges_apart(sa.ms.size(), sb.ms.size());
    // The same for the runs over their pulses (one value per run, so the same chance): two
    // processes a shift of the host's speed apart agree there when the kernels do.
    const bool overlap_by_pulse = by != "ms" && ranges_overlap(summarize(sa.normalized), summarize(sb.normalized));
    agree += within;
    overlapping += overlap;
    overlapping_by_pulse += overlap_by_pulse;
    chances_apart.push_back(chance_apart);
    log_sum += std::log(r.ratio);
    const std::string verdict = !r.has_interval  ? "no interval (one run on a side)"
                                : !r.significant ? "no significant difference"
                                : r.ratio > 1    ? format("B slower by %.1f%%", 100 * (r.ratio - 1))
                                                 : format("B faster by %.1f%%", 100 * (1 - r.ratio));
    slower += r.significant && r.ratio > 1;
    faster += r.significant && r.ratio < 1;
    if (table) {
      std::printf("%-46s %10.4g %10.4g %3zu/%-3zu %7.4f  [%6.4f, %6.4f]  %s%s\n", describe(a.key_json.at(id)).c_str(),
                  ta.median, tb.median, r.n_a, r.n_b, r.ratio, r.lo, r.hi, verdict.c_str(),
                  overlap ? (within ? "" : "; medians outside each other's spread") : "; spreads apart");
    }
    if (json) {
      nlohmann::json out = a.key_json.at(id);
      out["a_ms"] = ta.median;
      out["b_ms"] = tb.median;
      out["within_spread"] = within;
      out["ranges_overlap"] = overlap;
      out["chance_apart"] = chance_apart;
      if (by != "ms") out["pulse_ranges_overlap"] = overlap_by_pulse;
      out["n_a"] = r.n_a;
      out["n_b"] = r.n_b;
      out["by"] = by;
      out["ratio"] = r.ratio;
      out["ratio_lo"] = r.lo;
      out["ratio_hi"] = r.hi;
      out["confidence"] = confidence;
      out["significant"] = r.significant;
      out["samples"] = per_process ? "processes" : "runs";
      *json << out.dump() << std::endl;
    }
  }
  if (matched == 0) {
    std::cerr << "flashattn bench --compare: no case appears in both A and B\n";
    return 1;
  }
  if (table) {
    std::printf("\n%d case(s) matched (%zu only in A, %zu only in B): B significantly slower in %d, faster in %d; "
                "geometric mean of B/A %.4f\n",
                matched, a.order.size() - matched, b.order.size() - matched, slower, faster,
                std::exp(log_sum / matched));
    double expected_apart = 0;
    for (double c : chances_apart) expected_apart += c;
    // "overlap in X of N rows; apart in k, where a steady machine would leave μ apart ...".
    auto overlap_summary = [&](int overlap_count) {
      const int apart = matched - overlap_count;
      const double chance_as_many = chance_at_least(chances_apart, static_cast<std::size_t>(apart));
      return format("overlap in %d of %d rows; apart in %d, where a steady machine would leave %.2f apart by chance "
                    "with these run counts (at least %d: chance %.3g)%s",
                    overlap_count, matched, apart, expected_apart, apart, chance_as_many,
                    chance_as_many < 0.05 ? ": the two differ" : "");
    };
    std::printf("Spreads ([min, max] of the runs) %s. Each median inside the other's spread: %d of %d.\n",
                overlap_summary(overlapping).c_str(), agree, matched);
    if (by != "ms") {
      std::printf("Spreads of each run's time over its pulse %s.\n", overlap_summary(overlapping_by_pulse).c_str());
    }
    std::printf("%s\n", per_process_cases == matched
                             ? "Samples: each process's median (several files a side)."
                             : "Samples: the runs of one process a side. They do not see how much a figure moves between "
                               "processes (on a shared VM, 20% and more): an interval this narrow is only about these "
                               "two processes. Pass several alternated runs a side, or time both builds in one process "
                               "with --baseline-lib.");
  }
  return 0;
}

}  // namespace flashattn::cli
