"""The peer harness the README's decode comparison runs (tools/peer_decode_torch.py): its JSON
lines, one per dtype and shape, and its refusal of a dtype it does not know."""

import json
import pathlib
import subprocess
import sys

TOOL = pathlib.Path(__file__).resolve().parents[2] / "tools" / "peer_decode_torch.py"


def run_tool(*args):
    return subprocess.run([sys.executable, str(TOOL), "--threads", "1", *args], capture_output=True, text=True,
                          timeout=300)


def test_one_line_per_dtype_and_shape_with_bytes_of_its_dtype():
    done = run_tool("--batch", "1,2", "--seqlen-k", "64", "--heads", "4", "--heads-k", "2", "--headdim", "16",
                    "--runs", "1", "--dtype", "f32,bf16", "--max-tokens", "64")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["dtype"], r["batch"]) for r in lines] == [("f32", 1), ("bf16", 1)]  # batch 2 over --max-tokens
    for r in lines:
        assert r["impl"] == "torch_sdpa" and r["seqlen_k"] == 64 and r["ms"] > 0 and r["bandwidth_gbps"] > 0
        element = 4 if r["dtype"] == "f32" else 2
        kv_bytes = 2 * r["batch"] * r["seqlen_k"] * r["heads_k"] * r["headdim"] * element
        assert abs(r["gbps"] - kv_bytes / (r["ms"] * 1e6)) <= 1e-3 + 0.02 * r["gbps"]  # ms is rounded


def test_unknown_dtype_is_refused_by_name():
    done = run_tool("--dtype", "f32,f8")
    assert done.returncode == 2 and "--dtype: expected one of f32, bf16, f16, got 'f8'" in done.stderr and not done.stdout
