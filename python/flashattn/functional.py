"""The functions users call: FlashAttention-2's (BSHD) and PyTorch's
scaled_dot_product_attention (BHSD), both over the one operator flashattn::forward.

Layout, as in FlashAttention-2: q (batch, seqlen_q, heads, headdim), k and v
(batch, seqlen_k, heads_k, headdim), heads a multiple of heads_k; lse (batch, heads, seqlen_q).
Any strides are taken as they are (a BHSD view, slices of a packed QKV tensor), except that
the last dimension must be contiguous. Semantics are the C++ library's
(include/flashattn/attention.hpp): causal and windows bottom-right aligned unless
alignment="top_left"; a row that sees no key gives 0 and lse −inf.
"""

import operator
from dataclasses import dataclass
from enum import Enum

import torch

from . import _C
from ._ops import attention_forward, kvcache_forward, option_values

# q, k, v (and so out and the gradients) share one of these; lse stays float32. bf16 and
# f16 compute in f32 inside (products and softmax), the outputs rounded once.
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_F32 = (torch.float32,)


def _check(name, t, ndim, dtypes=SUPPORTED_DTYPES):
    if type(t) is torch.Tensor and t.is_cpu and t.dtype in dtypes and t.dim() == ndim:
        return  # the common case, tested first: each call costs microseconds
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"flashattn: {name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise TypeError(f"flashattn: {name}: tensor is on {t.device}; flashattn computes on the CPU only "
                        "(supported device: cpu)")
    if t.dtype not in dtypes:
        names = ", ".join(str(d) for d in dtypes)
        raise TypeError(f"flashattn: {name}: dtype {t.dtype} is not supported (supported: {names}); "
                        "convert it explicitly, flashattn never casts silently")
    if t.dim() != ndim:
        raise ValueError(f"flashattn: {name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")


def _check_optional(name, t, dtypes):
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"flashattn: {name}: expected a torch.Tensor, got {type(t).__name__}")
    _check(name, t, t.dim(), dtypes)


_INT32 = (torch.int32,)
_MASK_DTYPES = (torch.bool, torch.uint8)


class Algorithm(str, Enum):
    """flash: tiled, fused, O(N) extra memory. standard: S and P materialized with BLAS
    GEMMs, the paper's baseline, for comparisons."""

    flash = "flash"
    standard = "standard"


@dataclass(frozen=True)
class BlockMask:
    """Block-sparse attention (the paper's Section 3.3): score (i, j) exists only where
    blocks[i // block_q, j // block_k] is nonzero; the other blocks are neither loaded nor
    computed. blocks is uint8 (rows, cols) = (ceil(seqlen_q / block_q), ceil(seqlen_k / block_k)),
    or (batch | 1, heads | 1, rows, cols) for a mask per batch or head."""

    blocks: torch.Tensor
    block_q: int
    block_k: int

    @staticmethod
    def _from(generated, rows, cols, block_q, block_k):
        blocks = torch.frombuffer(bytearray(generated), dtype=torch.uint8).view(rows, cols)
        return BlockMask(blocks, block_q, block_k)

    @staticmethod
    def _grid(seqlen_q, seqlen_k, block_q, block_k):
        return -(-seqlen_q // block_q), -(-seqlen_k // block_k)

    @classmethod
    def local_global(cls, seqlen_q, seqlen_k, block_q, block_k, window, global_blocks):
        """Block (r, c) on when |r − c| <= window, or r < global_blocks, or c < global_blocks."""
        rows, cols = cls._grid(seqlen_q, seqlen_k, block_q, block_k)
        return cls._from(_C.local_global_blocks(rows, cols, window, global_blocks), rows, cols, block_q, block_k)

    @classmethod
    def fixed_stride(cls, seqlen_q, seqlen_k, block_q, block_k, stride):
        rows, cols = cls._grid(seqlen_q, seqlen_k, block_q, block_k)
        return cls._from(_C.fixed_stride_blocks(rows, cols, stride), rows, cols, block_q, block_k)

    @classmethod
    def butterfly(cls, seqlen_q, seqlen_k, block_q, block_k):
        rows, cols = cls._grid(seqlen_q, seqlen_k, block_q, block_k)
        return cls._from(_C.butterfly_blocks(rows, cols), rows, cols, block_q, block_k)

    @classmethod
    def random(cls, seqlen_q, seqlen_k, block_q, block_k, density, seed=0):
        rows, cols = cls._grid(seqlen_q, seqlen_k, block_q, block_k)
        return cls._from(_C.random_blocks(rows, cols, density, seed), rows, cols, block_q, block_k)


def dropout_mask(seed, dropout_p, batch, heads, seqlen_q, seqlen_k):
    """The keep mask (bool, (batch, heads, seqlen_q, seqlen_k)) that a call with this seed
    and dropout_p draws: the kernels evaluate the same counter-based Philox function."""
    keep = torch.empty((batch, heads, seqlen_q, seqlen_k), dtype=torch.uint8)
    _C.dropout_mask(int(seed) & ((1 << 64) - 1), float(dropout_p), keep)
    return keep.bool()


def _int_pair(name, value, meaning):
    """(a, b) as two ints, or a clear error naming the argument."""
    try:
        first, second = value
        return operator.index(first), operator.index(second)
    except (TypeError, ValueError):
        raise ValueError(f"flashattn: {name}: expected a pair of ints ({meaning}), got {value!r}") from None


def _window(window_size):
    return _int_pair("window_size", window_size, "left, right; -1 unbounded")


def _as_4d(name, t, dtypes, seqlen_q, seqlen_k):
    """A mask or bias broadcastable to (batch, heads, seqlen_q, seqlen_k), as a 4-D view:
    batch and heads may stay 1 (the library broadcasts them), seqlen_q and seqlen_k are
    expanded (stride 0) from 1."""
    _check_optional(name, t, dtypes)
    if t is None:
        return None
    if t.dim() > 4:
        raise ValueError(f"flashattn: {name}: expected at most 4 dimensions, got shape {tuple(t.shape)}")
    while t.dim() < 4:
        t = t.unsqueeze(0)
    if t.shape[2] == 1 or t.shape[3] == 1:
        t = t.expand(t.shape[0], t.shape[1], seqlen_q if t.shape[2] == 1 else t.shape[2],
                     seqlen_k if t.shape[3] == 1 else t.shape[3])
    return t


def attention(q, k, v, *, softmax_scale=None, causal=False, window_size=(-1, -1), alignment="bottom_right",
              prefix_length=0, softcap=0.0, alibi_slopes=None, dropout_p=0.0, dropout_seed=None,
              key_lengths=None, document_ids=None, mask=None, bias=None, block_mask=None,
              algorithm="flash", num_threads=None, isa=None, forward_kernel="automatic", num_splits=0,
              block_size=(0, 0), return_lse=False):
    """Exact attention with every option of the C++ library, BSHD layout. Returns out, or
    (out, lse) with return_lse.

    window_size: (left, right), −1 unbounded; causal sets right to 0. alignment:
    "bottom_right" (FlashAttention ≥ 2.1) or "top_left" (PyTorch's is_causal).
    prefix_length: keys below it are visible to every query (prefix-LM).
    alibi_slopes: float32 (heads,) or (batch, heads). dropout_seed: an int; by default one is
    drawn from torch's generator, so torch.manual_seed makes a run reproducible.
    key_lengths: int32 (batch,), keys at or past key_lengths[b] masked. document_ids: a pair
    of int32 (batch, seqlen_q) and (batch, seqlen_k); a query sees keys of its own document.
    mask: bool/uint8 broadcastable to (batch, heads, seqlen_q, seqlen_k), True keeps.
    bias: float32 broadcastable likewise, added to the scores; differentiable.
    block_mask: a BlockMask. algorithm: Algorithm.flash or Algorithm.standard (or their
    names). num_threads: default torch.get_num_threads().
    """
    _check("q", q, 4)
    _check("k", k, 4)
    _check("v", v, 4)
    if algorithm not in ("flash", "standard"):
        raise ValueError(f"flashattn: algorithm: expected 'flash' or 'standard', got {algorithm!r}")
    algorithm = Algorithm(algorithm).value
    if alignment not in ("bottom_right", "top_left"):
        raise ValueError(f"flashattn: alignment: expected 'bottom_right' or 'top_left', got {alignment!r}")
    _check_optional("alibi_slopes", alibi_slopes, (torch.float32,))
    _check_optional("key_lengths", key_lengths, _INT32)
    doc_q = doc_k = None
    if document_ids is not None:
        doc_q, doc_k = document_ids
        _check_optional("document_ids[0]", doc_q, _INT32)
        _check_optional("document_ids[1]", doc_k, _INT32)
    window_left, window_right = _window(window_size)
    block_q, block_k = _int_pair("block_size", block_size, "block_q, block_k; 0 chooses")
    options = dict(
        softmax_scale=None if softmax_scale is None else float(softmax_scale), causal=bool(causal),
        window_left=window_left, window_right=window_right, top_left=alignment == "top_left",
        prefix_length=int(prefix_length), softcap=float(softcap), alibi_slopes=alibi_slopes,
        dropout_p=float(dropout_p), key_lengths=key_lengths, document_ids_q=doc_q, document_ids_k=doc_k,
        mask=_as_4d("mask", mask, _MASK_DTYPES, q.shape[1], k.shape[1]),
        bias=_as_4d("bias", bias, (torch.float32,), q.shape[1], k.shape[1]),
        algorithm=algorithm, num_threads=int(num_threads or 0), isa=isa, forward_kernel=forward_kernel,
        num_splits=int(num_splits), block_q=block_q, block_k=block_k)
    if block_mask is not None:
        if not isinstance(block_mask, BlockMask):
            raise TypeError("flashattn: block_mask: expected a flashattn.BlockMask")
        _check_optional("block_mask.blocks", block_mask.blocks, (torch.uint8, torch.bool))
        options.update(block_mask=block_mask.blocks, block_mask_q=int(block_mask.block_q),
                       block_mask_k=int(block_mask.block_k))
    return _call(q, k, v, options, dropout_seed, return_lse)


def _call(q, k, v, options, dropout_seed, return_lse):
    if options.get("dropout_p", 0.0) > 0.0:
        if dropout_seed is None:  # torch's generator decides: torch.manual_seed reproduces a run
            options["seed"] = torch.randint(0, 2**62, (), dtype=torch.int64)
        else:  # the seed's 64 bits, as the int64 the schema carries
            seed = int(dropout_seed) & ((1 << 64) - 1)
            options["seed"] = torch.tensor(seed - (1 << 64) if seed >= 1 << 63 else seed, dtype=torch.int64)
    out, lse = attention_forward(q, k, v, option_values(**options))
    return (out, lse) if return_lse else out


def _fa2_result(out, lse, return_attn_probs):
    # FlashAttention-2 returns (out, softmax_lse, S_dmask); the N×N probabilities are
    # exactly what this library never forms, so S_dmask is None.
    return (out, lse, None) if return_attn_probs else out


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=True, return_attn_probs=False):
    """FlashAttention-2's flash_attn_func. q (batch, seqlen_q, heads, d), k and v
    (batch, seqlen_k, heads_k, d). The backward is always deterministic here, so
    `deterministic` is accepted and changes nothing."""
    out, lse = attention(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                         softcap=softcap, alibi_slopes=alibi_slopes, dropout_p=dropout_p, return_lse=True)
    return _fa2_result(out, lse, return_attn_probs)


def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                              softcap=0.0, alibi_slopes=None, deterministic=True, return_attn_probs=False):
    """qkv (batch, seqlen, 3, heads, d): q, k and v are read in place, not copied."""
    _check("qkv", qkv, 5)
    return flash_attn_func(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], dropout_p, softmax_scale, causal,
                           window_size, softcap, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                             softcap=0.0, alibi_slopes=None, deterministic=True, return_attn_probs=False):
    """kv (batch, seqlen_k, 2, heads_k, d): k and v are read in place, not copied."""
    _check("kv", kv, 5)
    return flash_attn_func(q, kv[:, :, 0], kv[:, :, 1], dropout_p, softmax_scale, causal, window_size, softcap,
                           alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=True, return_attn_probs=False):
    """Packed sequences of different lengths: q (total_q, heads, d), k and v
    (total_k, heads_k, d), cu_seqlens int32 (batch + 1,). lse is (heads, total_q)."""
    _check("q", q, 3)
    _check("k", k, 3)
    _check("v", v, 3)
    _check_optional("cu_seqlens_q", cu_seqlens_q, _INT32)
    _check_optional("cu_seqlens_k", cu_seqlens_k, _INT32)
    _check_optional("alibi_slopes", alibi_slopes, (torch.float32,))
    window_left, window_right = _window(window_size)
    options = dict(
        cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, max_seqlen_q=int(max_seqlen_q),
        max_seqlen_k=int(max_seqlen_k), softmax_scale=None if softmax_scale is None else float(softmax_scale),
        causal=bool(causal), window_left=window_left, window_right=window_right,
        softcap=float(softcap), alibi_slopes=alibi_slopes, dropout_p=float(dropout_p))
    out, lse = _call(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), options, None, True)
    return _fa2_result(out.squeeze(0), lse.squeeze(0), return_attn_probs)


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None, causal=False,
                                     window_size=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=True,
                                     return_attn_probs=False):
    """qkv (total, 3, heads, d), one cu_seqlens for queries and keys: read in place."""
    _check("qkv", qkv, 4)
    return flash_attn_varlen_func(qkv[:, 0], qkv[:, 1], qkv[:, 2], cu_seqlens, cu_seqlens, max_seqlen, max_seqlen,
                                  dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                                  return_attn_probs)


def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                                    softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                                    alibi_slopes=None, deterministic=True, return_attn_probs=False):
    """kv (total_k, 2, heads_k, d): k and v are read in place."""
    _check("kv", kv, 4)
    return flash_attn_varlen_func(q, kv[:, 0], kv[:, 1], cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                  dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                                  return_attn_probs)


def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None,
                            cache_seqlens=None, cache_batch_idx=None, cache_leftpad=None, block_table=None,
                            softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                            rotary_interleaved=True, alibi_slopes=None, num_splits=0, return_softmax_lse=False):
    """FlashAttention-2's decoding call: appends k, v (batch, seqlen_new, heads_k, d) into the
    caches in place at cache_seqlens (an int or int32 (batch,)), then attends q to each
    batch's cache_seqlens[b] + seqlen_new keys. cache_leftpad: int32 (batch,), where each
    batch's tokens start in its cache row (contiguous caches): keys before it are not seen,
    and rotary positions count from it. Paged caches: k_cache and v_cache
    (num_pages, page_size, heads_k, d) with block_table int32 (batch, max_pages). q, the caches
    and k, v share one dtype (float32, bfloat16 or float16: a 16-bit cache is read in place at 2
    bytes per element; appended keys are rotated in float32, then rounded). No autograd."""
    _check("q", q, 4)
    _check("k_cache", k_cache, 4)
    _check("v_cache", v_cache, 4)
    for name, t in (("k", k), ("v", v)):
        _check_optional(name, t, SUPPORTED_DTYPES)
    for name, t in (("rotary_cos", rotary_cos), ("rotary_sin", rotary_sin), ("alibi_slopes", alibi_slopes)):
        _check_optional(name, t, _F32)
    if cache_seqlens is None:
        cache_seqlens = 0
    if isinstance(cache_seqlens, int):
        cache_seqlens = torch.full((q.shape[0],), cache_seqlens, dtype=torch.int32)
    for name, t in (("cache_seqlens", cache_seqlens), ("cache_batch_idx", cache_batch_idx),
                    ("cache_leftpad", cache_leftpad), ("block_table", block_table)):
        _check_optional(name, t, _INT32)
    out, lse = kvcache_forward(
        q, k_cache, v_cache, cache_seqlens, k, v, rotary_cos, rotary_sin, bool(rotary_interleaved),
        cache_batch_idx, cache_leftpad, block_table, alibi_slopes,
        None if softmax_scale is None else float(softmax_scale), bool(causal), *_window(window_size), float(softcap),
        int(num_splits), 0)
    return (out, lse) if return_softmax_lse else out


def _sdpa_batches(t, batch_shape):
    """(..., heads, length, d), its leading dimensions broadcast to batch_shape, as the 4-D
    (batch, heads, length, d) the operator takes: a view unless more than one leading
    dimension has to be flattened."""
    while t.dim() < 3:
        t = t.unsqueeze(0)
    if tuple(t.shape[:-3]) != tuple(batch_shape):
        t = t.expand(*batch_shape, *t.shape[-3:])
    return t.reshape(-1, *t.shape[-3:]) if len(batch_shape) != 1 else t


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """torch.nn.functional.scaled_dot_product_attention's signature and semantics:
    query (N, ..., heads, L, d), key and value (N, ..., heads_k, S, d) — any number of leading
    dimensions, broadcast against each other as PyTorch does; the third from last is the heads,
    which grouped-query attention (enable_gqa, or heads_k = 1) maps onto heads_k. attn_mask:
    bool (True takes part) or float (added to the scores, differentiable), broadcastable to
    (N, ..., heads, L, S); a float mask in query's dtype is widened to float32 (exactly).
    is_causal is top-left aligned, as in PyTorch. Returns (N, ..., heads, L, d). The usual
    (batch, heads, L, d) views are read in place."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        _check(name, t, t.dim() if isinstance(t, torch.Tensor) else 4)
        if t.dim() < 2:
            raise ValueError(f"flashattn: {name}: expected at least 2 dimensions (..., length, d), "
                             f"got shape {tuple(t.shape)}")
    heads = query.shape[-3] if query.dim() >= 3 else 1
    heads_k = key.shape[-3] if key.dim() >= 3 else 1
    if heads != heads_k and heads_k != 1 and not enable_gqa:
        raise ValueError(f"flashattn: key: {heads_k} heads against the query's {heads}; "
                         "pass enable_gqa=True for grouped-query attention")
    try:
        batch_shape = torch.broadcast_shapes(*(t.shape[:-3] for t in (query, key, value)))
    except RuntimeError:
        raise ValueError(f"flashattn: key, value: leading dimensions {tuple(key.shape[:-3])}, "
                         f"{tuple(value.shape[:-3])} do not broadcast against the query's "
                         f"{tuple(query.shape[:-3])}") from None
    q, k, v = (_sdpa_batches(t, batch_shape) for t in (query, key, value))
    mask = bias = None
    if attn_mask is not None:
        _check_optional("attn_mask", attn_mask, tuple({torch.bool, torch.float32, query.dtype}))
        if attn_mask.dim() > len(batch_shape) + 3:
            raise ValueError(f"flashattn: attn_mask: shape {tuple(attn_mask.shape)} has more dimensions than "
                             f"(N, ..., heads, L, S) = {tuple(batch_shape) + (heads, q.shape[2], k.shape[2])}")
        if attn_mask.dim() > 3 and len(batch_shape) > 1:  # leading dimensions flattened as the query's
            attn_mask = _sdpa_batches(attn_mask, batch_shape)
        mask, bias = (attn_mask, None) if attn_mask.dtype == torch.bool else (None, attn_mask.float())
    out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale,
                    causal=is_causal, alignment="top_left", dropout_p=dropout_p, mask=mask, bias=bias)
    return out.transpose(1, 2).reshape(*batch_shape, *query.shape[-min(query.dim(), 3):])
