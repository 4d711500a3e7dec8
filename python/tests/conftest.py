"""The oracle and the tolerance rule the Python tests share.

The oracle is PyTorch's math SDPA (torch.nn.attention.SDPBackend.MATH) computed in float64,
fed a mask written here from the definitions in include/flashattn/attention.hpp with plain
comparisons (nothing shared with the library). Soft-capping and dropout, which SDPA has no
argument for, are applied by the same float64 formula written out. The rule is the C++
suite's (src/harness: allowed_error): flashattn's error against float64 may be at most twice
the error of the same formula in float32, plus 2e-6 of the values' size.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def visible(batch, heads, seqlen_q, seqlen_k, *, causal=False, window=(-1, -1), top_left=False, prefix=0,
            key_lengths=None, documents=None, mask=None):
    """bool (batch, heads, seqlen_q, seqlen_k): which key each query sees."""
    i = torch.arange(seqlen_q).view(-1, 1)
    j = torch.arange(seqlen_k).view(1, -1)
    shift = 0 if top_left else seqlen_k - seqlen_q  # where query i's own key sits
    left, right = window
    if causal:
        right = 0
    keep = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool)
    if right >= 0:
        keep &= j <= i + shift + right
    if left >= 0:
        keep &= j >= i + shift - left
    if prefix > 0:
        keep |= j < prefix
    keep = keep.expand(batch, heads, seqlen_q, seqlen_k).clone()
    if key_lengths is not None:
        keep &= (j.view(1, 1, 1, -1) < key_lengths.view(-1, 1, 1, 1).long())
    if documents is not None:
        doc_q, doc_k = documents
        keep &= doc_q.view(batch, 1, seqlen_q, 1) == doc_k.view(batch, 1, 1, seqlen_k)
    if mask is not None:
        keep &= mask.bool()
    return keep


def alibi_bias(slopes, seqlen_q, seqlen_k, top_left=False):
    """−slope · |i + (seqlen_k − seqlen_q) − j|, (batch|1, heads, seqlen_q, seqlen_k), float64."""
    shift = 0 if top_left else seqlen_k - seqlen_q
    distance = (torch.arange(seqlen_q).view(-1, 1) + shift - torch.arange(seqlen_k).view(1, -1)).abs()
    slopes = slopes.double()
    if slopes.dim() == 1:
        slopes = slopes.unsqueeze(0)
    return -slopes[:, :, None, None] * distance


def attention_reference(q, k, v, keep, *, scale=None, additive=None, softcap=0.0, dropout=None, dropout_p=0.0):
    """Attention in the inputs' own precision, BSHD in and out. keep: bool
    (batch, heads, Sq, Sk); additive: added after soft-capping (ALiBi, bias); dropout: the
    keep mask of dropout. Returns (out, lse)."""
    heads, heads_k = q.shape[2], k.shape[2]
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    kh = kh.repeat_interleave(heads // heads_k, dim=1)
    vh = vh.repeat_interleave(heads // heads_k, dim=1)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    masked = torch.zeros(keep.shape, dtype=q.dtype).masked_fill(~keep, -math.inf)
    if softcap == 0.0 and dropout is None:
        # PyTorch's math SDPA itself, with every rule folded into its float mask.
        attn_mask = masked if additive is None else masked + additive.to(q.dtype)
        with sdpa_kernel(SDPBackend.MATH):
            out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=attn_mask, scale=scale)
        s = scale * qh @ kh.transpose(-1, -2)
        s = s + attn_mask
    else:
        s = scale * qh @ kh.transpose(-1, -2)
        if softcap > 0.0:
            s = softcap * torch.tanh(s / softcap)
        if additive is not None:
            s = s + additive.to(q.dtype)
        s = s + masked
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # a row that sees nothing gives 0
        if dropout is not None:
            p = p * dropout / (1.0 - dropout_p)
        out = p @ vh
    lse = torch.logsumexp(s, dim=-1)
    return out.transpose(1, 2), lse


def allowed_error(fp32_error, magnitude):
    return 2.0 * fp32_error + 2e-6 * max(1.0, magnitude)


def max_error(got, ref):
    """Largest |got − ref| over the entries where ref is finite; both non-finite elsewhere."""
    got, ref = got.double(), ref.double()
    finite = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(got), finite) and torch.equal(got[~finite], ref[~finite]), \
        "non-finite entries differ"
    return (got[finite] - ref[finite]).abs().max().item() if finite.any() else 0.0


def assert_close_by_rule(name, got, fp32, ref):
    magnitude = ref[torch.isfinite(ref)].abs().max().item() if torch.isfinite(ref).any() else 0.0
    err, baseline = max_error(got, ref), max_error(fp32, ref)
    assert err <= allowed_error(baseline, magnitude), \
        f"{name}: error {err:.3g} > allowed {allowed_error(baseline, magnitude):.3g} (float32 formula: {baseline:.3g})"


def randn(*shape, seed, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).requires_grad_(requires_grad)


@pytest.fixture(autouse=True)
def _fresh_seed():
    torch.manual_seed(1234)
