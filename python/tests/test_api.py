"""FlashAttention-2's functions, PyTorch's SDPA signature, dropout, the KV cache, inputs
read in place, and the errors bad inputs get."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode

import flashattn
from conftest import assert_close_by_rule, attention_reference, randn, visible


def both_precisions(fn):
    """fn(dtype) in float64 (the oracle) and float32 (the rule's baseline)."""
    return fn(torch.float64), fn(torch.float32)


class RecordOps(TorchDispatchMode):
    """Records every operator called, with its arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append((func, args))
        return func(*args, **(kwargs or {}))


def flash_inputs(call):
    return [args for func, args in call.calls if func is torch.ops.flashattn.forward.default]


def test_packed_inputs_are_read_in_place():
    qkv = torch.randn(2, 65, 3, 4, 32)
    with RecordOps() as rec:
        out = flashattn.flash_attn_qkvpacked_func(qkv, causal=True)
    (args,) = flash_inputs(rec)
    assert [a.data_ptr() for a in args[:3]] == [qkv[:, :, i].data_ptr() for i in range(3)]
    assert not any("copy" in str(f) or "clone" in str(f) or "contiguous" in str(f) for f, _ in rec.calls)
    q, k, v = qkv.unbind(2)
    torch.testing.assert_close(out, flashattn.flash_attn_func(q.contiguous(), k.contiguous(), v.contiguous(),
                                                              causal=True), rtol=0, atol=0)
    q = torch.randn(2, 65, 4, 32)
    kv = torch.randn(2, 70, 2, 2, 32)
    with RecordOps() as rec:
        out = flashattn.flash_attn_kvpacked_func(q, kv)
    (args,) = flash_inputs(rec)
    assert args[1].data_ptr() == kv.data_ptr() and args[2].data_ptr() == kv[:, :, 1].data_ptr()


def test_packed_varlen_inputs_are_read_in_place():
    cu = torch.tensor([0, 30, 31, 77], dtype=torch.int32)
    qkv = torch.randn(77, 3, 4, 32, requires_grad=True)
    with RecordOps() as rec:
        out, lse, _ = flashattn.flash_attn_varlen_qkvpacked_func(qkv, cu, 46, causal=True, return_attn_probs=True)
    (args,) = flash_inputs(rec)
    assert [a.data_ptr() for a in args[:3]] == [qkv[:, i].data_ptr() for i in range(3)]
    q, k, v = (t.detach().contiguous().requires_grad_() for t in qkv.unbind(1))
    want, want_lse, _ = flashattn.flash_attn_varlen_func(q, k, v, cu, cu, 46, 46, causal=True, return_attn_probs=True)
    assert torch.equal(out, want) and torch.equal(lse, want_lse)
    dout = torch.randn_like(out)
    (out * dout).sum().backward()
    (want * dout).sum().backward()
    assert torch.equal(qkv.grad, torch.stack([q.grad, k.grad, v.grad], 1))
    kv = qkv.detach()[:, 1:]
    with RecordOps() as rec:
        got = flashattn.flash_attn_varlen_kvpacked_func(q.detach(), kv, cu, cu, 46, 46, causal=True)
    (args,) = flash_inputs(rec)
    assert args[1].data_ptr() == kv.data_ptr() and args[2].data_ptr() == kv[:, 1].data_ptr()
    assert torch.equal(got, want)


def test_bhsd_view_is_read_in_place():
    q, k, v = (torch.randn(2, 4, 50, 16) for _ in range(3))  # BHSD, as SDPA takes it
    with RecordOps() as rec:
        flashattn.scaled_dot_product_attention(q, k, v)
    (args,) = flash_inputs(rec)
    assert args[0].data_ptr() == q.data_ptr() and args[0].stride() == q.transpose(1, 2).stride()


@pytest.mark.parametrize("L,S", [(37, 37), (20, 45), (45, 20)])
def test_sdpa_matches_pytorch(L, S):
    q, k, v = randn(2, 4, L, 24, seed=1), randn(2, 2, S, 24, seed=2), randn(2, 2, S, 24, seed=3)
    bool_mask = torch.rand(L, S) > 0.2
    float_mask = randn(2, 1, L, S, seed=4)
    for kwargs in ({"is_causal": True}, {"attn_mask": bool_mask}, {"attn_mask": float_mask}, {"scale": 0.2}):
        for t in (q, k, v, float_mask):
            t.grad = None
        got = flashattn.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kwargs)
        dout = torch.randn_like(got)
        (got * dout).sum().backward()
        got_grads = [t.grad for t in (q, k, v)]
        if "attn_mask" in kwargs and kwargs["attn_mask"] is float_mask:
            got_grads.append(float_mask.grad)

        def pytorch(dtype):
            leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
            kw = dict(kwargs)
            if "attn_mask" in kw and kw["attn_mask"].dtype != torch.bool:
                kw["attn_mask"] = kw["attn_mask"].detach().to(dtype).requires_grad_()
                leaves.append(kw["attn_mask"])
            with sdpa_kernel(SDPBackend.MATH):
                out = F.scaled_dot_product_attention(*leaves[:3], enable_gqa=True, **kw)
            (out * dout.to(dtype)).sum().backward()
            return out, [t.grad for t in leaves]

        (ref, ref_grads), (fp32, fp32_grads) = both_precisions(pytorch)
        assert got.shape == ref.shape
        assert_close_by_rule(f"out {kwargs.keys()}", got, fp32, ref)
        for name, g, f, r in zip(("dq", "dk", "dv", "dmask"), got_grads, fp32_grads, ref_grads):
            assert_close_by_rule(name, g, f, r)


# PyTorch's SDPA shapes beyond (batch, heads, L, d): (L, d), (heads, L, d), several leading
# dimensions, key and value broadcast against the query, masks broadcast against them all.
SDPA_SHAPES = {
    "2d": ((21, 16), (30, 16), None),
    "3d mask": ((3, 21, 16), (3, 30, 16), (3, 21, 30)),
    "5d gqa mask": ((2, 3, 4, 21, 16), (2, 3, 2, 30, 16), (3, 1, 21, 30)),
    "5d kv broadcast": ((2, 3, 2, 21, 16), (1, 3, 1, 30, 16), (2, 1, 1, 1, 30)),
    "4d kv broadcast": ((2, 2, 21, 16), (1, 2, 30, 16), (2, 2, 21, 30)),
    "4d key padding": ((2, 2, 21, 16), (2, 2, 30, 16), (2, 1, 1, 30)),
    "4d per query": ((2, 2, 21, 16), (2, 2, 30, 16), (21, 1)),
}


@pytest.mark.parametrize("name", SDPA_SHAPES)
@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_sdpa_takes_pytorchs_shapes(name, mask_kind):
    q_shape, kv_shape, mask_shape = SDPA_SHAPES[name]
    q, k, v = randn(*q_shape, seed=1), randn(*kv_shape, seed=2), randn(*kv_shape, seed=3)
    mask = None
    if mask_shape is not None:
        mask = torch.rand(mask_shape) > 0.3 if mask_kind == "bool" else randn(*mask_shape, seed=4)
    gqa = len(kv_shape) > 2 and kv_shape[-3] not in (1, q_shape[-3])  # one kv-head broadcasts, as in PyTorch
    got = flashattn.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=gqa)
    dout = torch.randn_like(got)
    (got * dout).sum().backward()
    got_grads = [q.grad, k.grad, v.grad] + ([mask.grad] if mask is not None and mask.requires_grad else [])

    def pytorch(dtype):
        leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
        m = mask
        if mask is not None and mask.dtype != torch.bool:
            m = mask.detach().to(dtype).requires_grad_()
            leaves.append(m)
        with sdpa_kernel(SDPBackend.MATH):
            out = F.scaled_dot_product_attention(*leaves[:3], attn_mask=m, is_causal=m is None, enable_gqa=gqa)
        (out * dout.to(dtype)).sum().backward()
        return out, [t.grad for t in leaves]

    (ref, ref_grads), (fp32, fp32_grads) = both_precisions(pytorch)
    assert got.shape == ref.shape and len(got_grads) == len(ref_grads)
    assert_close_by_rule("out", got, fp32, ref)
    for what, g, f, r in zip(("dq", "dk", "dv", "dmask"), got_grads, fp32_grads, ref_grads):
        assert g.shape == r.shape, what
        assert_close_by_rule(what, g, f, r)


def test_sdpa_shape_errors():
    q = torch.randn(2, 4, 8, 16)
    with pytest.raises(ValueError, match="query: expected at least 2 dimensions"):
        flashattn.scaled_dot_product_attention(torch.randn(16), q, q)
    with pytest.raises(ValueError, match="do not broadcast"):
        flashattn.scaled_dot_product_attention(q, torch.randn(3, 4, 8, 16), torch.randn(3, 4, 8, 16))
    with pytest.raises(ValueError, match="attn_mask: shape .* more dimensions"):
        flashattn.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(1, 2, 4, 8, 8, dtype=torch.bool))


def test_pairs_are_checked():
    q = torch.randn(1, 8, 2, 16)
    for bad in ((8,), 8, (1.5, 0), "ab"):
        with pytest.raises(ValueError, match="window_size: expected a pair of ints"):
            flashattn.flash_attn_func(q, q, q, window_size=bad)
    with pytest.raises(ValueError, match="block_size: expected a pair of ints"):
        flashattn.attention(q, q, q, block_size=(32,))
    with pytest.raises(ValueError, match="window_size"):
        flashattn.flash_attn_with_kvcache(q[:, :1], q, q, window_size=(1, 2, 3))


def test_sdpa_gqa_needs_enable_gqa():
    q, k = torch.randn(1, 4, 8, 16), torch.randn(1, 2, 8, 16)
    with pytest.raises(ValueError, match="enable_gqa"):
        flashattn.scaled_dot_product_attention(q, k, k)


def test_fa2_return_conventions():
    q, k, v = torch.randn(2, 9, 4, 16), torch.randn(2, 11, 2, 16), torch.randn(2, 11, 2, 16)
    out = flashattn.flash_attn_func(q, k, v)
    assert isinstance(out, torch.Tensor) and out.shape == q.shape
    out2, lse, probs = flashattn.flash_attn_func(q, k, v, return_attn_probs=True)
    assert torch.equal(out, out2) and lse.shape == (2, 4, 9) and lse.dtype == torch.float32 and probs is None


def test_varlen_matches_each_sequence():
    lengths_q, lengths_k = [5, 0, 40, 17], [9, 3, 40, 1]
    cu_q = torch.tensor([0] + torch.tensor(lengths_q).cumsum(0).tolist(), dtype=torch.int32)
    cu_k = torch.tensor([0] + torch.tensor(lengths_k).cumsum(0).tolist(), dtype=torch.int32)
    q, k, v = randn(sum(lengths_q), 4, 32, seed=1), randn(sum(lengths_k), 2, 32, seed=2), randn(sum(lengths_k), 2, 32, seed=3)
    out, lse, _ = flashattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lengths_q), max(lengths_k), causal=True,
                                                   return_attn_probs=True)
    dout = torch.randn_like(out)
    (out * dout).sum().backward()
    assert out.shape == q.shape and lse.shape == (4, q.shape[0])
    for b in range(len(lengths_q)):
        rq, rk = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        keep = visible(1, 4, lengths_q[b], lengths_k[b], causal=True)

        def reference(dtype):
            leaves = [t.detach()[r].to(dtype).unsqueeze(0).requires_grad_() for t, r in ((q, rq), (k, rk), (v, rk))]
            o, l = attention_reference(*leaves, keep)
            (o * dout[rq].to(dtype).unsqueeze(0)).sum().backward()
            return [o[0], l[0]] + [t.grad[0] for t in leaves]

        ref, fp32 = both_precisions(reference)
        got = [out[rq], lse[:, rq], q.grad[rq], k.grad[rk], v.grad[rk]]
        for name, g, f, r in zip(("out", "lse", "dq", "dk", "dv"), got, fp32, ref):
            assert_close_by_rule(f"{name} of sequence {b}", g, f, r)


def test_dropout_mask_rebuilt_from_dropout_keep():
    q, k, v = randn(2, 33, 4, 16, seed=1), randn(2, 47, 2, 16, seed=2), randn(2, 47, 2, 16, seed=3)
    p, seed = 0.3, 2**63 + 12345
    out, lse = flashattn.attention(q, k, v, dropout_p=p, dropout_seed=seed, causal=True, return_lse=True)
    dout = torch.randn_like(out)
    (out * dout).sum().backward()
    keep = flashattn.dropout_mask(seed, p, 2, 4, 33, 47)
    assert 0.6 < keep.float().mean() < 0.8

    def reference(dtype):
        leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
        o, l = attention_reference(*leaves, visible(2, 4, 33, 47, causal=True), dropout=keep.to(dtype), dropout_p=p)
        (o * dout.to(dtype)).sum().backward()
        return [o, l] + [t.grad for t in leaves]

    ref, fp32 = both_precisions(reference)
    for name, g, f, r in zip(("out", "lse", "dq", "dk", "dv"), [out, lse, q.grad, k.grad, v.grad], fp32, ref):
        assert_close_by_rule(name, g, f, r)


def test_dropout_seed_follows_torch_generator():
    q, k, v = (torch.randn(1, 40, 2, 16) for _ in range(3))
    torch.manual_seed(7)
    a = flashattn.flash_attn_func(q, k, v, dropout_p=0.5)
    torch.manual_seed(7)
    b = flashattn.flash_attn_func(q, k, v, dropout_p=0.5)
    c = flashattn.flash_attn_func(q, k, v, dropout_p=0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("paged", [False, True])
def test_kvcache_appends_and_attends(paged):
    batch, capacity, heads, heads_k, d = 2, 64, 4, 2, 32
    lengths = torch.tensor([10, 30], dtype=torch.int32)
    k_all, v_all = torch.randn(batch, capacity, heads_k, d), torch.randn(batch, capacity, heads_k, d)
    k_new, v_new = torch.randn(batch, 3, heads_k, d), torch.randn(batch, 3, heads_k, d)
    q = torch.randn(batch, 3, heads, d)
    if paged:  # pages of 16 tokens, batch b's pages in reverse order
        page = 16
        table = torch.tensor([[3, 2, 1, 0], [7, 6, 5, 4]], dtype=torch.int32)
        k_cache = torch.empty(8, page, heads_k, d)
        v_cache = torch.empty(8, page, heads_k, d)
        for b in range(batch):
            for p in range(4):
                k_cache[table[b, p]] = k_all[b, p * page:(p + 1) * page]
                v_cache[table[b, p]] = v_all[b, p * page:(p + 1) * page]
    else:
        table, k_cache, v_cache = None, k_all.clone(), v_all.clone()
    out = flashattn.flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=lengths,
                                            block_table=table, causal=True)
    for b in range(batch):
        n = int(lengths[b])
        keys = torch.cat([k_all[b, :n], k_new[b]]).unsqueeze(0)
        values = torch.cat([v_all[b, :n], v_new[b]]).unsqueeze(0)
        expected = flashattn.flash_attn_func(q[b:b + 1], keys, values, causal=True)
        torch.testing.assert_close(out[b:b + 1], expected, rtol=1e-5, atol=1e-5)
        stored = k_cache[table[b, n // 16], n % 16] if paged else k_cache[b, n]
        assert torch.equal(stored, k_new[b, 0])  # appended in place


def test_kvcache_left_padding():
    """cache_leftpad: batch b's tokens start at row cache_leftpad[b]; rows before it are never
    read (NaN there would show), rotary positions count from it."""
    batch, capacity, heads, heads_k, d, rotary_dim = 3, 48, 4, 2, 32, 16
    lengths = torch.tensor([20, 9, 4], dtype=torch.int32)
    pads = torch.tensor([7, 0, 4], dtype=torch.int32)
    k_cache, v_cache = torch.randn(batch, capacity, heads_k, d), torch.randn(batch, capacity, heads_k, d)
    for b in range(batch):
        k_cache[b, :pads[b]] = v_cache[b, :pads[b]] = float("nan")
    k_before, v_before = k_cache.clone(), v_cache.clone()
    k_new, v_new, q = torch.randn(batch, 2, heads_k, d), torch.randn(batch, 2, heads_k, d), torch.randn(batch, 2, heads, d)
    angle = torch.arange(capacity).double()[:, None] * 10000.0 ** (-torch.arange(rotary_dim // 2).double() * 2 / rotary_dim)
    cos, sin = angle.cos().float(), angle.sin().float()

    def rotate(x, position):  # GPT-NeoX pairs (t, t + rotary_dim / 2), x (..., d) at one position
        x = x.clone()
        a, b = x[..., :rotary_dim // 2].clone(), x[..., rotary_dim // 2:rotary_dim].clone()
        x[..., :rotary_dim // 2] = a * cos[position] - b * sin[position]
        x[..., rotary_dim // 2:rotary_dim] = a * sin[position] + b * cos[position]
        return x

    out = flashattn.flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, rotary_cos=cos, rotary_sin=sin,
                                            cache_seqlens=lengths, cache_leftpad=pads, causal=True,
                                            rotary_interleaved=False)
    for b in range(batch):
        n, p = int(lengths[b]), int(pads[b])
        new_keys = torch.stack([rotate(k_new[b, i], n - p + i) for i in range(2)])
        keys = torch.cat([k_before[b, p:n], new_keys]).unsqueeze(0)
        values = torch.cat([v_before[b, p:n], v_new[b]]).unsqueeze(0)
        queries = torch.stack([rotate(q[b, i], n - p + i) for i in range(2)]).unsqueeze(0)
        expected = flashattn.flash_attn_func(queries, keys, values, causal=True)
        torch.testing.assert_close(out[b:b + 1], expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(k_cache[b, n:n + 2], new_keys, rtol=1e-6, atol=1e-6)  # appended at n
        assert k_cache[b, :p].isnan().all() and torch.equal(v_cache[b, n:n + 2], v_new[b])
    with pytest.raises(ValueError, match=r"cache.cache_leftpad: entry 1 is 10, expected 0 \.\. 9"):
        flashattn.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lengths,
                                          cache_leftpad=torch.tensor([0, 10, 0], dtype=torch.int32))


def test_bad_inputs_raise_clear_errors():
    q, k, v = torch.randn(2, 8, 4, 16), torch.randn(2, 8, 2, 16), torch.randn(2, 8, 2, 16)
    with pytest.raises(ValueError, match="q: expected 4 dimensions"):
        flashattn.flash_attn_func(q[0], k, v)
    with pytest.raises(TypeError, match=r"k: dtype torch.float64 is not supported \(supported: torch.float32, "
                                        r"torch.bfloat16, torch.float16\)"):
        flashattn.flash_attn_func(q, k.double(), v)
    with pytest.raises(ValueError, match=r"k: expected dtype f32, got bf16 \(q, k, v, out"):  # mixed dtypes
        flashattn.flash_attn_func(q, k.bfloat16(), v)
    with pytest.raises(TypeError, match="CPU only"):
        flashattn.flash_attn_func(q, k, v.to("meta"))
    with pytest.raises(ValueError, match="k"):  # shape disagreement, named by the C++ library
        flashattn.flash_attn_func(q, k[:, :, :, :8], v)
    with pytest.raises(ValueError, match="q.*stride"):
        flashattn.flash_attn_func(q.transpose(2, 3).contiguous().transpose(2, 3), k, v)
    with pytest.raises(ValueError, match="heads"):
        flashattn.flash_attn_func(torch.randn(2, 8, 3, 16), k, v)
    with pytest.raises(TypeError, match="cu_seqlens_q"):
        flashattn.flash_attn_varlen_func(q[0], k[0], v[0], torch.tensor([0, 8]), torch.tensor([0, 8], dtype=torch.int32), 8, 8)
    with pytest.raises(ValueError, match="key_lengths"):
        flashattn.attention(q, k, v, key_lengths=torch.tensor([3], dtype=torch.int32))
    with pytest.raises(ValueError, match="algorithm"):
        flashattn.attention(q, k, v, algorithm="fast")
    with pytest.raises(ValueError, match="dropout"):
        flashattn.flash_attn_func(q, k, v, dropout_p=1.5)
