#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention on the decode shapes of `flashattn bench --pass
decode`, anchored the same way: the K and V bytes the call reads per second over a streaming
read of memory measured in the same process, same threads (torch.sum over a buffer four times
the last-level cache, at least 256 MiB). Comparing the two programs' bandwidth_ratio compares
ratios each measured within one run, not absolute times taken at different moments.

    python3 tools/peer_decode_torch.py [--threads 2] [--batch 1,8] [--seqlen-k 1024,...] [--dtype f32,bf16]

Prints one JSON object per shape and dtype: impl "torch_sdpa", dtype, batch, heads, heads_k,
seqlen_k, headdim, ms (median), runs, gbps (the K and V bytes in their dtype), bandwidth_gbps,
bandwidth_ratio, torch (its version).
"""
import argparse
import itertools
import json
import os
import statistics
import time

DTYPE_NAMES = ("f32", "bf16", "f16")  # flashattn's names, in the order of their torch dtypes in main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--seqlen-k", default="1024,8192,32768,131072")
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--heads-k", type=int, default=8)
    parser.add_argument("--headdim", type=int, default=128)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dtype", default="f32", help="f32, bf16, f16: q, K and V all in it")
    parser.add_argument("--max-tokens", type=int, default=262144, help="batch x seqlen_k at most (flashattn bench's default)")
    args = parser.parse_args()
    dtype_names = args.dtype.split(",")
    for name in dtype_names:
        if name not in DTYPE_NAMES:
            parser.error(f"--dtype: expected one of {', '.join(DTYPE_NAMES)}, got {name!r}")
    batches = [int(x) for x in args.batch.split(",")]
    lengths = [int(x) for x in args.seqlen_k.split(",")]

    import torch  # imported here so that --help and argument errors work without it
    import torch.nn.functional as F

    dtypes = dict(zip(DTYPE_NAMES, (torch.float32, torch.bfloat16, torch.float16)))
    torch.set_num_threads(args.threads)
    llc = 32 << 20
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:
            text = f.read().strip()
            llc = int(text[:-1]) << (10 if text.endswith("K") else 20)
    except (OSError, ValueError):
        pass
    stream = torch.ones(max(256 << 20, 4 * llc) // 4, dtype=torch.float32)
    flush = torch.zeros(max(64 << 20, 2 * llc) // 4, dtype=torch.float32)

    def read_gbps() -> float:
        start = time.perf_counter()
        stream.sum()
        return stream.numel() * 4 / (time.perf_counter() - start) / 1e9

    read_gbps()
    for dtype_name, batch, seqlen_k in itertools.product(dtype_names, batches, lengths):
        if batch * seqlen_k > args.max_tokens:
            continue
        dtype = dtypes[dtype_name]
        q = torch.randn(batch, args.heads, 1, args.headdim).to(dtype)
        k = torch.randn(batch, args.heads_k, seqlen_k, args.headdim).to(dtype)
        v = torch.randn(batch, args.heads_k, seqlen_k, args.headdim).to(dtype)

        def call():
            return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

        call()  # warm-up
        times, reads = [], []
        for _ in range(args.runs):
            reads.append(read_gbps())
            flush.add_(1.0)  # evict the caches, as the bench does before each run
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1e3)
        ms = statistics.median(times)
        read = statistics.median(reads)
        kv_bytes = 2 * batch * seqlen_k * args.heads_k * args.headdim * k.element_size()
        gbps = kv_bytes / (ms * 1e6)
        print(json.dumps({"impl": "torch_sdpa", "dtype": dtype_name, "batch": batch, "heads": args.heads, "heads_k": args.heads_k,
                          "seqlen_k": seqlen_k, "headdim": args.headdim, "threads": args.threads,
                          "ms": round(ms, 4), "runs": args.runs, "gbps": round(gbps, 3),
                          "bandwidth_gbps": round(read, 3), "bandwidth_ratio": round(gbps / read, 4),
                          "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
