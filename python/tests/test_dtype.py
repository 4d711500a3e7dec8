"""bf16 and f16 through the PyTorch entry points.

Rule (the C++ suite's, src/harness: allowed_error): against float64 on the same rounded
inputs, flashattn's error is at most twice the error of PyTorch's own attention computed in
that dtype (its CPU SDPA, forward and backward), plus the dtype's unit roundoff of the
values' size.
"""

import pytest
import torch
import torch.nn.functional as F

import flashattn

UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-9, torch.float16: 2.0**-12}


def _max_err(got, want):
    return (got.double() - want).abs().max().item()


def _allowed(torch_err, want, dtype):
    return 2 * torch_err + UNIT_ROUNDOFF[dtype] * max(1.0, want.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("causal,heads_k,L,S,d", [(False, 4, 65, 97, 64), (True, 2, 97, 64, 40), (True, 1, 1, 300, 128)])
def test_forward_backward_within_pytorch_error(dtype, causal, heads_k, L, S, d):
    torch.manual_seed(L * 31 + S)
    q = torch.randn(2, 4, L, d).to(dtype)
    k = torch.randn(2, heads_k, S, d).to(dtype)
    v = torch.randn(2, heads_k, S, d).to(dtype)
    dout = torch.randn(2, 4, L, d).to(dtype)

    def run(fn, cast):
        leaves = [t.detach().to(cast).requires_grad_() for t in (q, k, v)]
        out = fn(*leaves, is_causal=causal, enable_gqa=heads_k != 4)
        (out * dout.to(cast)).sum().backward()
        return [out.detach()] + [t.grad for t in leaves]

    # PyTorch's is_causal is top-left aligned, as flashattn's sdpa is.
    want = run(F.scaled_dot_product_attention, torch.float64)
    ours = run(flashattn.scaled_dot_product_attention, dtype)
    theirs = run(F.scaled_dot_product_attention, dtype)
    for name, got, ref, yardstick in zip(("out", "dq", "dk", "dv"), ours, want, theirs):
        assert got.dtype == dtype, name
        err, torch_err = _max_err(got, ref), _max_err(yardstick, ref)
        assert err <= _allowed(torch_err, ref, dtype), f"{name}: {err:.3e} vs PyTorch's {torch_err:.3e}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_output_is_the_float32_result_rounded_once(dtype):
    """On a kernel build that computes 16-bit calls in float32 (every build for f16; for bf16
    those without bf16 products, avx512_bf16 and amx), the output is the float32 result on the
    (exactly widened) inputs rounded once, to nearest even: PyTorch's own conversion of the
    float32 result, bit for bit, with dropout (the same mask as float32's for the same seed)
    and GQA."""
    torch.manual_seed(5)
    q, k, v = torch.randn(1, 77, 4, 64).to(dtype), torch.randn(1, 90, 2, 64).to(dtype), torch.randn(1, 90, 2, 64).to(dtype)
    f32_builds = [isa for isa in flashattn.supported_isas() if isa not in ("avx512_bf16", "amx")]
    kw = dict(causal=True, dropout_p=0.2, dropout_seed=11, return_lse=True, isa=f32_builds[-1])
    out16, lse16 = flashattn.attention(q, k, v, **kw)
    out32, lse32 = flashattn.attention(q.float(), k.float(), v.float(), **kw)
    assert out16.dtype == dtype and lse16.dtype == torch.float32
    assert torch.equal(out16, out32.to(dtype))
    assert torch.equal(lse16, lse32)


def test_bf16_float_mask_and_gradient_dtype():
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 2, 33, 32, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    bias = torch.randn(1, 2, 33, 33, dtype=torch.bfloat16, requires_grad=True)
    out = flashattn.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    out.sum().backward()
    assert out.dtype == torch.bfloat16
    assert all(t.grad.dtype == torch.bfloat16 for t in (q, k, v, bias))
    ref = F.scaled_dot_product_attention(*(t.detach().double() for t in (q, k, v)), attn_mask=bias.detach().double())
    assert _max_err(out, ref) <= 4 * UNIT_ROUNDOFF[torch.bfloat16] * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("paged", [False, True])
def test_kvcache_16_bit_is_the_float32_call_rounded(dtype, paged):
    """A 16-bit cache holds the values a float32 cache would hold rounded; on the same values
    the 16-bit call's output is the float32 call's rounded once, and its appended rows are
    the float32 call's rounded."""
    torch.manual_seed(9)
    batch, heads, heads_k, d, capacity = 2, 8, 2, 64, 64
    lengths = torch.tensor([40, 7], dtype=torch.int32)
    q = torch.randn(batch, 1, heads, d).to(dtype)
    k_new, v_new = torch.randn(batch, 1, heads_k, d).to(dtype), torch.randn(batch, 1, heads_k, d).to(dtype)
    if paged:
        k_cache = torch.randn(8, 16, heads_k, d).to(dtype)
        table = torch.tensor([[3, 2, 1, 0], [7, 6, 5, 4]], dtype=torch.int32)
    else:
        k_cache = torch.randn(batch, capacity, heads_k, d).to(dtype)
        table = None
    v_cache = torch.randn_like(k_cache.float()).to(dtype)
    caches32 = [k_cache.float(), v_cache.float()]
    out16 = flashattn.flash_attn_with_kvcache(q, k_cache, v_cache, k=k_new, v=v_new, cache_seqlens=lengths,
                                              block_table=table, causal=True)
    out32 = flashattn.flash_attn_with_kvcache(q.float(), *caches32, k=k_new.float(), v=v_new.float(),
                                              cache_seqlens=lengths, block_table=table, causal=True)
    assert out16.dtype == dtype
    assert torch.equal(out16, out32.to(dtype))
    assert torch.equal(k_cache, caches32[0].to(dtype)) and torch.equal(v_cache, caches32[1].to(dtype))


def test_bench_times_every_implementation_in_the_dtype(tmp_path):
    from flashattn import bench

    out = tmp_path / "bench.jsonl"
    assert bench.main(["--seqlens", "64", "--passes", "fwd,fwdbwd", "--dtype", "bf16", "--min-runs", "1",
                       "--case-seconds", "0", "--overhead-seqlen", "0", "--json", str(out)]) == 0
    import json
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["impl"] for r in records} >= {"flashattn", "sdpa_flash", "sdpa_math", "torch_standard"}
    assert all(r["dtype"] == "bf16" and r["gflops"] > 0 for r in records)
