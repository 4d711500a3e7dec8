"""python -m flashattn.bench: flashattn's operator against PyTorch's own CPU attention,
timed in one process, interleaved run by run.

Implementations, all in the --dtype given (float32 by default; bf16 or f16: every
implementation computes in it, PyTorch with its own low-precision kernels, flashattn in
float32 inside with one rounding of its output):
  flashattn       flashattn.flash_attn_func (the torch operator, BSHD inputs)
  flashattn_c     the C++ call under it (flashattn._C.forward into preallocated outputs):
                  the operator's overhead is flashattn / flashattn_c − 1 (forward only)
  sdpa_flash      torch's scaled_dot_product_attention, its CPU flash kernel (BHSD inputs)
  sdpa_math       the same function, its math kernel
  torch_standard  softmax(QKᵀ · scale) V written with PyTorch ops, S and P materialized
Every round runs each implementation once, in a rotating order; a figure is the median of
the rounds (at least --min-runs, more while --case-seconds lasts), and a ratio between two
implementations is the median of their ratios within each round, which a slow moment of a
shared machine moves far less than it moves the times. FLOPs are counted as
FlashAttention's benchmark counts them (forward 4·B·H·N²·d, halved under causal; forward +
backward 3.5× that). JSON lines use `flashattn bench`'s field names.
"""

import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import flashattn
from . import _C, _ops


def standard_attention(q, k, v, causal):
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-1, -2)) * scale
    if causal:
        n_q, n_k = s.shape[-2], s.shape[-1]
        s = s.masked_fill(torch.ones(n_q, n_k, dtype=torch.bool).triu(n_k - n_q + 1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def sdpa(backend):
    def run(q, k, v, causal):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return run


# name: (function, layout of its inputs)
IMPLS = {
    "flashattn": (lambda q, k, v, causal: flashattn.flash_attn_func(q, k, v, causal=causal), "bshd"),
    "sdpa_flash": (sdpa(SDPBackend.FLASH_ATTENTION), "bhsd"),
    "sdpa_math": (sdpa(SDPBackend.MATH), "bhsd"),
    "torch_standard": (standard_attention, "bhsd"),
}


class Case:
    def __init__(self, batch, heads, seqlen, headdim, causal, pass_, impls, dtype=torch.float32):
        self.batch, self.heads, self.seqlen, self.headdim, self.causal, self.pass_ = (
            batch, heads, seqlen, headdim, causal, pass_)
        self.dtype = dtype
        shape = (batch, seqlen, heads, headdim)
        grad = pass_ == "fwdbwd"
        self.bshd = [torch.randn(shape).to(dtype).requires_grad_(grad) for _ in range(3)]
        self.bhsd = [t.detach().transpose(1, 2).contiguous().requires_grad_(grad) for t in self.bshd]
        self.dout = {"bshd": torch.randn(shape).to(dtype),
                     "bhsd": torch.randn(shape).to(dtype).transpose(1, 2).contiguous()}
        self.runs = {}
        for name in impls:
            if name == "flashattn_c":
                self.runs[name] = self._c_call()
            else:
                fn, layout = IMPLS[name]
                self.runs[name] = self._timed(fn, layout)
        self.flops = 4.0 * batch * heads * seqlen * seqlen * headdim * (0.5 if causal else 1.0) * (
            3.5 if grad else 1.0)

    def _timed(self, fn, layout):
        inputs = self.bshd if layout == "bshd" else self.bhsd
        dout = self.dout[layout]
        if self.pass_ == "fwd":
            def run():
                with torch.no_grad():
                    fn(*inputs, self.causal)
        else:
            def run():
                for t in inputs:
                    t.grad = None
                fn(*inputs, self.causal).backward(dout)
        return run

    def _c_call(self):
        q, k, v = (t.detach() for t in self.bshd)
        out = torch.empty_like(q)
        lse = torch.empty(q.shape[0], q.shape[2], q.shape[1], dtype=torch.float32)
        options = _ops._options(_ops.option_values(causal=self.causal))
        return lambda: _C.forward(q, k, v, out, lse, options)


def time_once(run, calls):
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) * 1e3 / calls


def measure(case, min_runs, case_seconds, calls):
    names = list(case.runs)
    for name in names:  # warm-up: first-touch pages, PyTorch's lazy init
        case.runs[name]()
    times = {name: [] for name in names}
    deadline = time.perf_counter() + case_seconds
    round_ = 0
    while round_ < min_runs or time.perf_counter() < deadline:
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            times[name].append(time_once(case.runs[name], calls))
        round_ += 1
        if round_ >= 50 * min_runs:
            break
    return times


def paired_ratio(a, b):
    """Median over rounds of a[i] / b[i]: the two were timed next to each other."""
    return statistics.median(x / y for x, y in zip(a, b))


DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def record(case, name, ms):
    median = statistics.median(ms)
    return {
        "impl": name, "pass": case.pass_, "batch": case.batch, "heads": case.heads, "heads_k": case.heads,
        "seqlen_q": case.seqlen, "seqlen_k": case.seqlen, "headdim": case.headdim, "causal": case.causal,
        "dropout": 0.0, "threads": torch.get_num_threads(), "dtype": DTYPE_NAMES[case.dtype], "ms": median,
        "ms_min": min(ms),
        "ms_max": max(ms), "runs": len(ms), "spread": max(ms) / min(ms), "flops": case.flops,
        "gflops": case.flops / (median * 1e6), "torch_version": torch.__version__,
    }


def with_ratios(records, times):
    """flashattn's rows get operator_overhead (flashattn / flashattn_c − 1) and
    speedup_vs_torch (the fastest PyTorch implementation's time / flashattn's), both paired."""
    peers = [n for n in times if n not in ("flashattn", "flashattn_c")]
    for r in records:
        if r["impl"] != "flashattn":
            continue
        if "flashattn_c" in times:
            r["operator_overhead"] = paired_ratio(times["flashattn"], times["flashattn_c"]) - 1
        if peers:
            fastest = min(peers, key=lambda n: statistics.median(times[n]))
            r["fastest_torch"] = fastest
            r["speedup_vs_torch"] = paired_ratio(times[fastest], times["flashattn"])
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m flashattn.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seqlens", default="512,1024,2048,4096", help="comma-separated N (default %(default)s)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--headdim", type=int, default=64)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--dtype", default="f32", choices=list(DTYPES),
                        help="of q, k, v and the outputs, for every implementation (default %(default)s)")
    parser.add_argument("--passes", default="fwd,fwdbwd", help="fwd, fwdbwd or both (default %(default)s)")
    parser.add_argument("--impls", default=",".join(["flashattn", "flashattn_c", *list(IMPLS)[1:]]),
                        help="which implementations (default: all)")
    parser.add_argument("--min-runs", type=int, default=3)
    parser.add_argument("--case-seconds", type=float, default=1.0, help="time budget per case (default 1 s)")
    parser.add_argument("--overhead-seqlen", type=int, default=16,
                        help="the tiny case timing the operator's overhead per call (0: skip)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", default="", help="write JSON lines to this file (- for stdout)")
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        seqlens = [int(n) for n in args.seqlens.split(",") if n]
    except ValueError:
        parser.error(f"--seqlens: expected comma-separated integers, got {args.seqlens!r}")
    passes = [p for p in args.passes.split(",") if p]
    impls = [i for i in args.impls.split(",") if i]
    for p in passes:
        if p not in ("fwd", "fwdbwd"):
            parser.error(f"--passes: unknown pass {p!r} (fwd, fwdbwd)")
    for i in impls:
        if i not in IMPLS and i != "flashattn_c":
            parser.error(f"--impls: unknown implementation {i!r} ({', '.join(['flashattn_c', *IMPLS])})")
    if any(n <= 0 for n in seqlens) or min(args.batch, args.heads, args.headdim, args.min_runs) <= 0:
        parser.error("--seqlens, --batch, --heads, --headdim and --min-runs must be positive")

    torch.manual_seed(0)
    records = []
    print(f"flashattn {flashattn.default_isa()} vs torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch {args.batch}, {args.heads} heads, headdim {args.headdim}, {args.dtype}"
          f"{', causal' if args.causal else ''}", flush=True)
    for pass_ in passes:
        for n in seqlens:
            case_impls = [i for i in impls if not (i == "flashattn_c" and pass_ != "fwd")]
            case = Case(args.batch, args.heads, n, args.headdim, args.causal, pass_, case_impls, DTYPES[args.dtype])
            times = measure(case, args.min_runs, args.case_seconds, 1)
            records += with_ratios([record(case, name, ms) for name, ms in times.items()], times)
            print(f"  {pass_} N={n}: " + ", ".join(f"{name} {statistics.median(ms):.2f} ms"
                                                  for name, ms in times.items()), flush=True)
    overhead = None
    if args.overhead_seqlen > 0 and {"flashattn", "flashattn_c"} <= set(impls):
        case = Case(1, 1, args.overhead_seqlen, args.headdim, False, "fwd", ["flashattn", "flashattn_c"],
                    DTYPES[args.dtype])
        times = measure(case, max(args.min_runs, 15), args.case_seconds, 200)
        overhead = statistics.median(a - b for a, b in zip(times["flashattn"], times["flashattn_c"])) * 1e3
        records += [dict(record(case, name, t), calls_per_run=200) for name, t in times.items()]

    print_table(records, impls, overhead, args.overhead_seqlen)
    if args.json:
        out = sys.stdout if args.json == "-" else open(args.json, "w")
        for r in records:
            out.write(json.dumps(r) + "\n")
        if out is not sys.stdout:
            out.close()
    return 0


def print_table(records, impls, overhead_us, overhead_seqlen):
    rows = {}
    for r in records:
        if r.get("calls_per_run"):
            continue
        rows.setdefault((r["pass"], r["seqlen_q"]), {})[r["impl"]] = r
    print()
    print("| pass | N | " + " | ".join(f"{i} ms (GFLOP/s)" for i in impls) + " | flashattn vs fastest torch |"
          + (" operator overhead |" if "flashattn_c" in impls else ""))
    print("|" + "---|" * (len(impls) + 3 + ("flashattn_c" in impls)))
    for (pass_, n), row in rows.items():
        cells = []
        for i in impls:
            r = row.get(i)
            cells.append("-" if r is None else f"{r['ms']:.2f} ({r['gflops']:.0f})" + (" ±" if r["spread"] > 1.15 else ""))
        flash = row.get("flashattn", {})
        ratio = f"{flash['speedup_vs_torch']:.2f}× ({flash['fastest_torch']})" if "speedup_vs_torch" in flash else "-"
        line = f"| {pass_} | {n} | " + " | ".join(cells) + f" | {ratio} |"
        if "flashattn_c" in impls:
            line += f" {100 * flash['operator_overhead']:+.1f}% |" if "operator_overhead" in flash else " - |"
        print(line)
    print("(± : that figure's runs spread more than 15% max/min)")
    if overhead_us is not None:
        print(f"operator overhead per call at N={overhead_seqlen}, 1 head: {overhead_us:.1f} µs")


if __name__ == "__main__":
    sys.exit(main())
