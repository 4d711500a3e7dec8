"""flashattn: exact FlashAttention on the CPU, as PyTorch operators.

    from flashattn import flash_attn_func                 # FlashAttention-2's names (BSHD)
    from flashattn import scaled_dot_product_attention    # PyTorch's signature (BHSD)

Both run the operator torch.ops.flashattn.forward, which works with autograd (its backward
recomputes attention from q, k, v, out and lse), torch.compile(fullgraph=True) and
torch.library.opcheck. flashattn.attention takes every option of the C++ library.
"""

import torch  # first: the operators register into torch.library

from . import _C, _ops  # noqa: F401  (registers torch.ops.flashattn.*)
from .functional import (
    Algorithm,
    BlockMask,
    SUPPORTED_DTYPES,
    attention,
    dropout_mask,
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
    flash_attn_with_kvcache,
    scaled_dot_product_attention,
)

supported_isas = _C.supported_isas
default_isa = _C.default_isa

__all__ = [
    "Algorithm", "BlockMask", "SUPPORTED_DTYPES", "attention", "default_isa", "dropout_mask", "flash_attn_func",
    "flash_attn_kvpacked_func", "flash_attn_qkvpacked_func", "flash_attn_varlen_func", "flash_attn_varlen_kvpacked_func",
    "flash_attn_varlen_qkvpacked_func", "flash_attn_with_kvcache",
    "scaled_dot_product_attention", "supported_isas",
]
