"""Forward, LSE and gradients of flashattn's operator against float64 math SDPA, by the
C++ suite's tolerance rule, on awkward shapes and every option."""

import pytest
import torch

import flashattn
from conftest import alibi_bias, assert_close_by_rule, attention_reference, randn, visible


@pytest.fixture(autouse=True, params=["eager", "operator"])
def route(request, monkeypatch):
    """Every case twice: eager calls' direct route, and torch.library's operator with its
    registered autograd formula (the route torch.compile and dispatch modes take)."""
    monkeypatch.setattr(flashattn._ops, "eager_fast_path", request.param == "eager")

# (batch, seqlen_q, seqlen_k, heads, heads_k, headdim): not multiples of any tile, GQA, MQA,
# one query, more queries than keys.
SHAPES = [
    (1, 1, 1, 1, 1, 8),
    (2, 97, 113, 4, 2, 59),
    (1, 130, 65, 3, 3, 64),
    (2, 33, 257, 6, 1, 32),
    (1, 1, 300, 8, 2, 128),
    (1, 200, 200, 2, 2, 111),
]


def run_case(shape, seed=0, *, algorithm="flash", ref_keep=None, ref_additive=None, bias=None, **options):
    batch, seqlen_q, seqlen_k, heads, heads_k, d = shape
    q = randn(batch, seqlen_q, heads, d, seed=seed)
    k = randn(batch, seqlen_k, heads_k, d, seed=seed + 1)
    v = randn(batch, seqlen_k, heads_k, d, seed=seed + 2)
    dout = randn(batch, seqlen_q, heads, d, seed=seed + 3, requires_grad=False)
    keep = ref_keep if ref_keep is not None else visible(batch, heads, seqlen_q, seqlen_k)
    out, lse = flashattn.attention(q, k, v, bias=bias, algorithm=algorithm, return_lse=True, **options)
    (out * dout).sum().backward()
    got = {"out": out, "lse": lse, "dq": q.grad, "dk": k.grad, "dv": v.grad}
    if bias is not None:
        got["dbias"] = bias.grad

    results = {}
    for dtype in (torch.float64, torch.float32):
        leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
        b = bias.detach().to(dtype).requires_grad_() if bias is not None else None
        additive = ref_additive
        if b is not None:
            additive = b if additive is None else additive + b
        r_out, r_lse = attention_reference(*leaves, keep, scale=options.get("softmax_scale"), additive=additive,
                                           softcap=options.get("softcap", 0.0))
        (r_out * dout.to(dtype)).sum().backward()
        results[dtype] = {"out": r_out, "lse": r_lse, "dq": leaves[0].grad, "dk": leaves[1].grad,
                          "dv": leaves[2].grad}
        if b is not None:
            results[dtype]["dbias"] = b.grad
    for name, value in got.items():
        assert value.shape == results[torch.float64][name].shape, name
        assert_close_by_rule(name, value, results[torch.float32][name], results[torch.float64][name])
    return got


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("algorithm", list(flashattn.Algorithm))
def test_plain(shape, algorithm):
    run_case(shape, algorithm=algorithm)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("top_left", [False, True], ids=["bottom_right", "top_left"])
def test_causal(shape, top_left):
    b, sq, sk, h, _, _ = shape
    run_case(shape, causal=True, alignment="top_left" if top_left else "bottom_right",
             ref_keep=visible(b, h, sq, sk, causal=True, top_left=top_left))


@pytest.mark.parametrize("window", [(16, 0), (5, 7), (-1, 3), (40, -1)])
def test_window(window):
    shape = (2, 97, 113, 4, 2, 59)
    b, sq, sk, h, _, _ = shape
    run_case(shape, window_size=window, ref_keep=visible(b, h, sq, sk, window=window))


def test_softcap_alibi_scale():
    shape = (2, 97, 113, 4, 2, 59)
    b, sq, sk, h, _, _ = shape
    slopes = torch.rand(b, h) * 0.3
    run_case(shape, softcap=5.0, alibi_slopes=slopes, softmax_scale=0.3, causal=True,
             ref_keep=visible(b, h, sq, sk, causal=True), ref_additive=alibi_bias(slopes, sq, sk))


def test_key_lengths_documents_prefix():
    shape = (2, 70, 70, 2, 1, 32)
    b, sq, sk, h, _, _ = shape
    lengths = torch.tensor([50, 0], dtype=torch.int32)  # batch 1 sees nothing: zeros, lse −inf
    run_case(shape, key_lengths=lengths, ref_keep=visible(b, h, sq, sk, key_lengths=lengths))
    docs = torch.sort(torch.randint(0, 4, (b, sq), dtype=torch.int32), dim=1).values
    run_case(shape, document_ids=(docs, docs), causal=True,
             ref_keep=visible(b, h, sq, sk, causal=True, documents=(docs, docs)))
    run_case(shape, prefix_length=20, causal=True, ref_keep=visible(b, h, sq, sk, causal=True, prefix=20))


@pytest.mark.parametrize("mask_shape", [(2, 4, 97, 113), (97, 113), (2, 1, 97, 113)])
def test_mask_and_bias_gradient(mask_shape):
    shape = (2, 97, 113, 4, 2, 59)
    b, sq, sk, h, _, _ = shape
    mask = torch.rand(mask_shape) > 0.3
    got = run_case(shape, mask=mask, ref_keep=visible(b, h, sq, sk, mask=mask))
    bias = randn(*mask_shape, seed=9)
    got = run_case(shape, bias=bias)
    assert got["dbias"].shape == bias.shape


def test_block_mask():
    shape = (1, 200, 200, 2, 2, 64)
    b, sq, sk, h, _, _ = shape
    block_mask = flashattn.BlockMask.local_global(sq, sk, 64, 64, window=1, global_blocks=1)
    blocks = block_mask.blocks.bool().repeat_interleave(64, 0).repeat_interleave(64, 1)[:sq, :sk]
    run_case(shape, block_mask=block_mask, ref_keep=visible(b, h, sq, sk, mask=blocks))


def test_empty_sequences():
    for shape in [(1, 0, 5, 2, 2, 8), (1, 5, 0, 2, 2, 8), (0, 5, 5, 2, 2, 8)]:
        b, sq, sk, h, hk, d = shape
        q, k, v = torch.randn(b, sq, h, d), torch.randn(b, sk, hk, d), torch.randn(b, sk, hk, d)
        out, lse = flashattn.attention(q, k, v, return_lse=True)
        assert out.shape == q.shape and lse.shape == (b, h, sq)
        assert torch.all(out == 0) and torch.all(lse == float("-inf"))


def test_threads_follow_torch_and_do_not_change_the_result():
    q, k, v = torch.randn(2, 300, 4, 64), torch.randn(2, 300, 2, 64), torch.randn(2, 300, 2, 64)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(flashattn.flash_attn_func(q, k, v, causal=True))
        results.append(flashattn.attention(q, k, v, causal=True, num_threads=1))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(r, results[0]) for r in results)  # same bits for any thread count
