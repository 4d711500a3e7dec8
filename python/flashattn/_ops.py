"""The PyTorch operators: flashattn::forward, flashattn::backward and
flashattn::forward_with_kvcache, registered with torch.library over the nanobind module.

Nothing here is compiled against libtorch: the kernels see the tensors through DLPack, so
one build works with any recent torch. Each operator has a CPU kernel (allocates the
outputs, calls flashattn._C), a fake kernel (shapes only, for torch.compile) and, for the
forward, an autograd formula that saves q, k, v, out, lse and the seed: never an N×N tensor.
"""

import atexit

import torch
from torch.utils.dlpack import to_dlpack

from . import _C

# Every option an attention operator takes after its tensors, in schema order: the one list
# from which the schemas, the calls and the C++ options are built.
OPTIONS = (
    # (name, schema type, default)
    ("seed", "Tensor?", None),  # int64 scalar tensor, drawn from torch's generator
    ("alibi_slopes", "Tensor?", None),
    ("key_lengths", "Tensor?", None),
    ("document_ids_q", "Tensor?", None),
    ("document_ids_k", "Tensor?", None),
    ("mask", "Tensor?", None),
    ("bias", "Tensor?", None),
    ("cu_seqlens_q", "Tensor?", None),
    ("cu_seqlens_k", "Tensor?", None),
    ("block_mask", "Tensor?", None),
    ("softmax_scale", "float?", None),
    ("causal", "bool", False),
    ("window_left", "int", -1),
    ("window_right", "int", -1),
    ("top_left", "bool", False),
    ("prefix_length", "int", 0),
    ("softcap", "float", 0.0),
    ("dropout_p", "float", 0.0),
    ("max_seqlen_q", "int", 0),
    ("max_seqlen_k", "int", 0),
    ("block_mask_q", "int", 0),
    ("block_mask_k", "int", 0),
    ("block_q", "int", 0),
    ("block_k", "int", 0),
    ("algorithm", "str", "flash"),
    ("isa", "str?", None),
    ("forward_kernel", "str", "automatic"),
    ("num_splits", "int", 0),
    ("num_threads", "int", 0),  # 0: torch.get_num_threads() when the kernel runs
)
OPTION_NAMES = tuple(name for name, _, _ in OPTIONS)
OPTION_DEFAULTS = {name: default for name, _, default in OPTIONS}


def option_values(**changes):
    """The operators' option arguments in schema order: the defaults, with `changes`."""
    unknown = changes.keys() - OPTION_DEFAULTS.keys()
    if unknown:
        raise TypeError(f"flashattn: unknown options {sorted(unknown)}")
    return [changes.get(name, default) for name, default in OPTION_DEFAULTS.items()]


_TENSOR_OPTIONS = tuple(i for i, (_, kind, _) in enumerate(OPTIONS) if kind.startswith("Tensor"))
_BIAS = OPTION_NAMES.index("bias")
_SEED_MASK = (1 << 64) - 1

_schema_options = ", ".join(f"{kind} {name}" for name, kind, _ in OPTIONS)
_lib = torch.library.Library("flashattn", "DEF")
_lib.define(f"forward(Tensor q, Tensor k, Tensor v, {_schema_options}) -> (Tensor, Tensor)")
_lib.define(
    f"backward(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, {_schema_options}, "
    "bool need_dbias) -> (Tensor, Tensor, Tensor, Tensor)"
)
_lib.define(
    "forward_with_kvcache(Tensor q, Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor cache_seqlens, "
    "Tensor? k_new, Tensor? v_new, Tensor? rotary_cos, Tensor? rotary_sin, bool rotary_interleaved, "
    "Tensor? cache_batch_idx, Tensor? cache_leftpad, Tensor? block_table, Tensor? alibi_slopes, "
    "float? softmax_scale, bool causal, int window_left, int window_right, float softcap, int num_splits, "
    "int num_threads) -> (Tensor, Tensor)"
)


# The tensor as a DLPack capsule: what nanobind reads, with no copy. torch's C function
# takes 0.5 µs where Tensor.__dlpack__ takes 6, five times per call.
_plain = to_dlpack
_DEFAULTS = tuple(default for _, _, default in OPTIONS)


def _build_options(values):
    o = _C.Options()
    for name, value, default in zip(OPTION_NAMES, values, _DEFAULTS):
        if value is None or (not isinstance(value, torch.Tensor) and value == default):
            continue
        if name == "seed":
            o.seed = int(value.item()) & _SEED_MASK
        elif isinstance(value, torch.Tensor):
            setattr(o, name, _plain(value))
        else:
            setattr(o, name, value)
    if o.num_threads == 0:
        o.num_threads = torch.get_num_threads()
    return o


# Options without tensors, built once per distinct set of values: building one costs
# 9 µs, a lookup 1. The C++ side only reads them.
_options_cache = {}
atexit.register(_options_cache.clear)  # before nanobind's leak check at exit


def _options(values):
    if any(values[i] is not None for i in _TENSOR_OPTIONS):
        return _build_options(values)
    key = (*values, torch.get_num_threads())
    o = _options_cache.get(key)
    if o is None:
        if len(_options_cache) >= 256:
            _options_cache.clear()
        o = _options_cache[key] = _build_options(values)
    return o


def _lse_shape(q):
    return (q.shape[0], q.shape[2], q.shape[1])  # (batch, heads, seqlen_q)


@torch.library.impl(_lib, "forward", "CPU")
def _forward_cpu(q, k, v, *options):
    out = torch.empty(q.shape, dtype=q.dtype)
    lse = torch.empty(_lse_shape(q), dtype=torch.float32)
    _C.forward(_plain(q), _plain(k), _plain(v), _plain(out), _plain(lse), _options(options))
    return out, lse


@torch.library.register_fake("flashattn::forward", lib=_lib)
def _forward_fake(q, k, v, *options):
    return q.new_empty(q.shape), q.new_empty(_lse_shape(q), dtype=torch.float32)


def _dbias_like(bias, need_dbias, like):
    return like.new_empty(bias.shape, dtype=torch.float32) if need_dbias else like.new_empty((0,))


@torch.library.impl(_lib, "backward", "CPU")
def _backward_cpu(dout, q, k, v, out, lse, *rest):
    options, need_dbias = rest[:-1], rest[-1]
    dq, dk, dv = (torch.empty(t.shape, dtype=t.dtype) for t in (q, k, v))
    dbias = _dbias_like(options[_BIAS], need_dbias, q)
    o = _build_options(options) if need_dbias else _options(options)  # (cached ones are shared)
    if need_dbias:
        o.dbias = _plain(dbias)
    _C.backward(*(_plain(t) for t in (dout, q, k, v, out, lse, dq, dk, dv)), o)
    return dq, dk, dv, dbias


@torch.library.register_fake("flashattn::backward", lib=_lib)
def _backward_fake(dout, q, k, v, out, lse, *rest):
    options, need_dbias = rest[:-1], rest[-1]
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape),
            _dbias_like(options[_BIAS], need_dbias, q))


def _setup_context(ctx, inputs, output):
    q, k, v, *options = inputs
    out, lse = output
    tensors = [options[i] for i in _TENSOR_OPTIONS]
    ctx.save_for_backward(q, k, v, out, lse, *tensors)
    ctx.scalars = [None if i in _TENSOR_OPTIONS else value for i, value in enumerate(options)]
    ctx.mark_non_differentiable(lse)


def _backward_formula(ctx, dout, _dlse, backward=None):
    q, k, v, out, lse, *tensors = ctx.saved_tensors
    options = list(ctx.scalars)
    for i, t in zip(_TENSOR_OPTIONS, tensors):
        options[i] = t
    need_dbias = options[_BIAS] is not None and ctx.needs_input_grad[3 + _BIAS]
    if dout.stride(-1) != 1:  # e.g. the expanded gradient of a sum()
        dout = dout.contiguous()
    dq, dk, dv, dbias = (backward or torch.ops.flashattn.backward)(dout, q, k, v, out, lse, *options, need_dbias)
    grads = [None] * len(options)
    if need_dbias:
        grads[_BIAS] = dbias
    return (dq, dk, dv, *grads)


torch.library.register_autograd("flashattn::forward", _backward_formula, setup_context=_setup_context, lib=_lib)


class _EagerAttention(torch.autograd.Function):
    """The same kernels and the same autograd formula as the operator, called without
    torch.library's dispatch, which costs 40 µs a call (150 with autograd) in torch 2.x.
    (forward takes ctx itself: a separate setup_context makes apply() bind its arguments
    with inspect.signature on every call.)"""

    @staticmethod
    def forward(ctx, q, k, v, *options):
        out, lse = _forward_cpu(q, k, v, *options)
        _setup_context(ctx, (q, k, v, *options), (out, lse))
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        return _backward_formula(ctx, dout, dlse, backward=_backward_cpu)


_Tensor = torch.Tensor
eager_fast_path = True  # False: always through torch.library (the tests run both routes)


def plain_eager(tensors):
    """True where torch.library's dispatch would change nothing: eager mode, no dispatch or
    function mode, plain tensors (no fake, functional or other subclass)."""
    return (eager_fast_path and not torch.compiler.is_compiling() and torch._C._len_torch_dispatch_stack() == 0
            and not torch._C._is_torch_function_mode_enabled()
            and all(type(t) is _Tensor for t in tensors if t is not None))


def attention_forward(q, k, v, options):
    """out, lse of flashattn::forward(q, k, v, *options), differentiable. Eager calls on
    plain CPU tensors skip torch.library's dispatch; under torch.compile, a dispatch or
    function mode, or with tensor subclasses, the operator itself runs."""
    extra = [t for t in map(options.__getitem__, _TENSOR_OPTIONS) if t is not None]
    if not plain_eager((q, k, v, *extra)):
        return torch.ops.flashattn.forward(q, k, v, *options)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad
                                    or any(t.requires_grad for t in extra)):
        return _EagerAttention.apply(q, k, v, *options)
    return _forward_cpu(q, k, v, *options)


def kvcache_forward(q, k_cache, v_cache, *rest):
    """flashattn::forward_with_kvcache, called directly where dispatch changes nothing."""
    if plain_eager((q, k_cache, v_cache, *(t for t in rest if isinstance(t, torch.Tensor)))):
        return _kvcache_cpu(q, k_cache, v_cache, *rest)
    return torch.ops.flashattn.forward_with_kvcache(q, k_cache, v_cache, *rest)


@torch.library.impl(_lib, "forward_with_kvcache", "CPU")
def _kvcache_cpu(q, k_cache, v_cache, cache_seqlens, k_new, v_new, rotary_cos, rotary_sin, rotary_interleaved,
                 cache_batch_idx, cache_leftpad, block_table, alibi_slopes, softmax_scale, causal, window_left,
                 window_right, softcap, num_splits, num_threads):
    out = torch.empty(q.shape, dtype=q.dtype)
    lse = torch.empty(_lse_shape(q), dtype=torch.float32)
    o = _options(option_values(alibi_slopes=alibi_slopes, softmax_scale=softmax_scale, causal=causal,
                               window_left=window_left, window_right=window_right, softcap=softcap,
                               num_splits=num_splits, num_threads=num_threads))
    tensors = [None if t is None else _plain(t) for t in (q, k_cache, v_cache, out, lse, cache_seqlens, k_new,
                                                           v_new, rotary_cos, rotary_sin, cache_batch_idx,
                                                           cache_leftpad, block_table)]
    _C.forward_with_kvcache(*tensors[:10], rotary_interleaved, *tensors[10:], o)
    return out, lse


@torch.library.register_fake("flashattn::forward_with_kvcache", lib=_lib)
def _kvcache_fake(q, *rest):
    return q.new_empty(q.shape), q.new_empty(_lse_shape(q), dtype=torch.float32)
