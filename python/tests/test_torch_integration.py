"""The operators inside PyTorch: opcheck, torch.compile(fullgraph=True) of a transformer
block against eager, one OpenMP runtime shared with PyTorch, the GIL released."""

import threading
import time

import pytest
import torch
import torch.nn as nn

import flashattn
from flashattn._ops import option_values as options


def leaves(*shapes):
    return [torch.randn(*s, requires_grad=True) for s in shapes]


OPCHECK_CASES = {
    "plain": lambda: (*leaves((2, 9, 4, 16), (2, 11, 2, 16), (2, 11, 2, 16)), *options()),
    "causal_window_softcap": lambda: (*leaves((1, 20, 2, 8), (1, 20, 2, 8), (1, 20, 2, 8)),
                                      *options(causal=True, window_left=5, softcap=3.0, softmax_scale=0.5)),
    "bias_mask": lambda: (*leaves((1, 6, 2, 8), (1, 7, 2, 8), (1, 7, 2, 8)),
                          *options(bias=torch.randn(1, 2, 6, 7, requires_grad=True),
                                   mask=torch.rand(1, 1, 6, 7) > 0.3)),
    "dropout": lambda: (*leaves((1, 12, 2, 8), (1, 12, 2, 8), (1, 12, 2, 8)),
                        *options(dropout_p=0.25, seed=torch.tensor(99))),
    "varlen": lambda: (*leaves((1, 9, 2, 8), (1, 12, 1, 8), (1, 12, 1, 8)),
                       *options(cu_seqlens_q=torch.tensor([0, 4, 9], dtype=torch.int32),
                                cu_seqlens_k=torch.tensor([0, 5, 12], dtype=torch.int32), causal=True)),
}


@pytest.mark.parametrize("case", OPCHECK_CASES)
def test_opcheck_forward(case):
    torch.library.opcheck(torch.ops.flashattn.forward.default, OPCHECK_CASES[case]())


def test_opcheck_backward():
    q, k, v = (t.detach() for t in leaves((1, 9, 2, 16), (1, 9, 2, 16), (1, 9, 2, 16)))
    bias = torch.randn(1, 2, 9, 9)
    opts = options(causal=True, bias=bias)
    out, lse = torch.ops.flashattn.forward(q, k, v, *opts)
    torch.library.opcheck(torch.ops.flashattn.backward.default, (torch.randn_like(out), q, k, v, out, lse, *opts, True))


def test_opcheck_kvcache():
    q = torch.randn(2, 1, 4, 16)
    k_cache, v_cache = torch.randn(2, 32, 2, 16), torch.randn(2, 32, 2, 16)
    args = (q, k_cache, v_cache, torch.tensor([5, 9], dtype=torch.int32), torch.randn(2, 1, 2, 16),
            torch.randn(2, 1, 2, 16), None, None, False, None, torch.tensor([1, 0], dtype=torch.int32), None, None,
            None, True, -1, -1, 0.0, 0, 0)
    torch.library.opcheck(torch.ops.flashattn.forward_with_kvcache.default, args)


class Block(nn.Module):
    """A pre-LayerNorm transformer block whose attention is flashattn's operator."""

    def __init__(self, width=64, heads=4):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        b, t, c = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, c // self.heads)
        y = flashattn.flash_attn_qkvpacked_func(qkv, causal=True)
        x = x + self.proj(y.reshape(b, t, c))
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    """A two-block causal language model whose attention function is a constructor argument,
    called as a model calls F.scaled_dot_product_attention."""

    def __init__(self, sdpa, vocab=50, width=32, heads=4, layers=2, context=24):
        super().__init__()
        self.sdpa, self.heads = sdpa, heads
        self.embed, self.pos = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.qkv = nn.ModuleList(nn.Linear(width, 3 * width) for _ in range(layers))
        self.mlp = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
                                 for _ in range(layers))
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens):
        b, t = tokens.shape
        x = self.embed(tokens) + self.pos(torch.arange(t))
        for qkv, mlp in zip(self.qkv, self.mlp):
            q, k, v = qkv(x).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # 3 × (b, heads, t, d)
            x = x + self.sdpa(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, -1)
            x = x + mlp(x)
        return self.head(x)


def test_drop_in_for_torch_sdpa_same_losses_and_gradients():
    losses = {}
    for name, sdpa in (("torch", torch.nn.functional.scaled_dot_product_attention),
                       ("flashattn", flashattn.scaled_dot_product_attention)):
        torch.manual_seed(0)
        model = TinyLM(sdpa)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        data = torch.randint(0, 50, (4, 25), generator=torch.Generator().manual_seed(1))
        losses[name] = []
        for _ in range(8):
            logits = model(data[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, 50), data[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            losses[name].append((loss.item(), model.qkv[0].weight.grad.clone()))
            optimizer.step()
    for (a, ga), (b, gb) in zip(losses["torch"], losses["flashattn"]):
        assert abs(a - b) <= 1e-5 * abs(a)
        torch.testing.assert_close(gb, ga, rtol=1e-3, atol=1e-6)


def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    block = Block()
    x = torch.randn(2, 37, 64)
    eager = block(x)
    eager.square().mean().backward()
    eager_grads = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    compiled = torch.compile(block, fullgraph=True)
    got = compiled(x)
    got.square().mean().backward()
    torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-5)
    for g, e in zip((p.grad for p in block.parameters()), eager_grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def test_compile_sdpa_with_dropout_and_bias():
    bias = torch.randn(1, 2, 16, 16, requires_grad=True)

    def f(q, k, v):
        return flashattn.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=0.1)

    q, k, v = leaves((1, 2, 16, 8), (1, 2, 16, 8), (1, 2, 16, 8))
    out = torch.compile(f, fullgraph=True)(q, k, v)
    out.sum().backward()
    assert out.shape == (1, 2, 16, 8) and bias.grad is not None and torch.isfinite(bias.grad).all()


def loaded_openmp_runtimes():
    with open("/proc/self/maps") as maps:
        return {line.split()[-1] for line in maps if "libgomp" in line or "libiomp" in line or "libomp" in line}


def test_one_openmp_runtime_shared_with_pytorch():
    """PyTorch's wheel ships its own libgomp.so.1; libflashattn needs the same soname, so the
    dynamic linker binds both to the one already loaded: one runtime, one thread pool."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    model = nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 64))
    x = torch.randn(4, 50, 64)
    for _ in range(3):  # PyTorch's parallel matmuls and flashattn's kernels, interleaved
        h = model(x).view(4, 50, 4, 16)
        out = flashattn.flash_attn_func(h, h, h, causal=True)
        expected = torch.nn.functional.scaled_dot_product_attention(
            *(t.transpose(1, 2) for t in (h, h, h)), is_causal=True).transpose(1, 2)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        (out.sum() + model(x).sum()).backward()
    assert torch.get_num_threads() == threads
    assert len(loaded_openmp_runtimes()) == 1, loaded_openmp_runtimes()


def longest_pause_during_call(q):
    """The longest stretch during one call in a second thread in which this thread could
    not run, and the call's own duration."""
    done = threading.Event()

    def work():
        flashattn.flash_attn_func(q, q, q)
        done.set()

    ticks = [time.perf_counter()]
    worker = threading.Thread(target=work)
    worker.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
    worker.join()
    return max(b - a for a, b in zip(ticks, ticks[1:])), ticks[-1] - ticks[0]


def test_gil_released_while_kernels_run():
    # Holding the GIL for the call would stop this thread's loop for the whole call; a
    # preemption of the machine can stop it once, so any of three tries may show it ran.
    q = torch.randn(1, 2048, 8, 64)
    tries = [longest_pause_during_call(q) for _ in range(3)]
    assert any(pause < call / 2 for pause, call in tries), tries
