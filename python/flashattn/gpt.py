"""A GPT-2-style language model whose attention is chosen by a flag, everything else equal:

  flash     flashattn's operator (flash_attn_qkvpacked_func: q, k, v read in place)
  standard  written with PyTorch ops, S and P materialized (HuggingFace's GPT-2 did this)
  sdpa      PyTorch's own scaled_dot_product_attention

Pre-LayerNorm blocks, GELU MLP (4× width), learned positions, the output layer tied to the
token embedding. Bytes are the tokens (vocabulary 256).
"""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import functional as fa

ATTENTIONS = ("flash", "standard", "sdpa")


@dataclass
class GPTConfig:
    vocab: int = 256
    context: int = 256   # positions the model has
    width: int = 128
    layers: int = 4
    heads: int = 4
    dropout: float = 0.0
    attention: str = "flash"

    def __post_init__(self):
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}")
        if min(self.vocab, self.context, self.width, self.layers, self.heads) <= 0:
            raise ValueError("vocab, context, width, layers and heads must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a value in [0, 1), got {self.dropout}")

    def to_dict(self):
        return asdict(self)


def standard_attention(q, k, v, dropout_p):
    """q, k, v (B, H, T, d): softmax(QKᵀ/√d + causal mask) V with S and P in memory."""
    t = q.shape[-2]
    s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    p = torch.softmax(s, dim=-1)
    if dropout_p > 0.0:
        p = F.dropout(p, dropout_p)
    return p @ v


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x):
        b, t, c = x.shape
        h = self.cfg.heads
        p = self.cfg.dropout if self.training else 0.0
        qkv = self.qkv(x).view(b, t, 3, h, c // h)
        if self.cfg.attention == "flash":
            y = fa.flash_attn_qkvpacked_func(qkv, dropout_p=p, causal=True)  # (B, T, H, d)
        else:
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 × (B, H, T, d)
            if self.cfg.attention == "sdpa":
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            else:
                y = standard_attention(q, k, v, p)
            y = y.transpose(1, 2)
        return self.proj(y.reshape(b, t, c))

    def decode(self, x, k_cache, v_cache, cache_seqlens):
        """x (B, T_new, C) for positions cache_seqlens …: appends its keys and values to the
        caches (B, context, H, d) in place and attends with flashattn's KV-cache call."""
        b, t, c = x.shape
        h = self.cfg.heads
        q, k, v = self.qkv(x).view(b, t, 3, h, c // h).unbind(2)
        y = fa.flash_attn_with_kvcache(q, k_cache, v_cache, k, v, cache_seqlens=cache_seqlens, causal=True)
        return self.proj(y.reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.width), nn.LayerNorm(cfg.width)
        self.attn = Attention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, 4 * cfg.width), nn.GELU(), nn.Linear(4 * cfg.width, cfg.width),
                                 nn.Dropout(cfg.dropout))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tokens = nn.Embedding(cfg.vocab, cfg.width)
        self.positions = nn.Embedding(cfg.context, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.width)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2: residual projections scaled by depth
            for proj in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.layers))

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def logits(self, h):
        return self.norm(h) @ self.tokens.weight.t()  # tied output layer

    def forward(self, idx, targets=None):
        """idx (B, T) bytes; returns logits (B, T, vocab), and the mean cross-entropy when
        targets are given."""
        t = idx.shape[1]
        if t > self.cfg.context:
            raise ValueError(f"sequence of {t} tokens is longer than the model's {self.cfg.context} positions")
        x = self.drop(self.tokens(idx) + self.positions(torch.arange(t, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        logits = self.logits(x)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def decode_step(self, idx, caches, cache_seqlens):
        """Logits of the last of idx (B, T_new), which continue the cached prefix of
        cache_seqlens tokens (the same for every batch row, an int)."""
        t = idx.shape[1]
        if cache_seqlens + t > self.cfg.context:
            raise ValueError(f"{cache_seqlens + t} tokens exceed the model's {self.cfg.context} positions")
        positions = torch.arange(cache_seqlens, cache_seqlens + t)
        x = self.tokens(idx) + self.positions(positions)
        for block, (k_cache, v_cache) in zip(self.blocks, caches):
            x = x + block.attn.decode(block.norm1(x), k_cache, v_cache, cache_seqlens)
            x = x + block.mlp(block.norm2(x))
        return self.logits(x[:, -1])

    def new_caches(self, batch):
        shape = (batch, self.cfg.context, self.cfg.heads, self.cfg.width // self.cfg.heads)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in range(self.cfg.layers)]
