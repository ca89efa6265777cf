"""Building blocks of the codec: ConvNeXt blocks, a local-attention transformer with rotary
positions, and the strided (de)convolutions that move between 100 and 12.5 frames/s.

Tensors are channels-first ``[B, C, T]`` between blocks, as in the rest of the codec.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (kernel 7) -> LayerNorm -> MLP (ratio 3) -> layer scale, residual."""

    def __init__(self, dim: int, kernel: int = 7, ratio: int = 3):
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, ratio * dim)
        self.down = nn.Linear(ratio * dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T]`` -> ``[B, C, T]``."""
        y = self.dw(x).transpose(1, 2)  # (B, T, C)
        y = self.down(F.gelu(self.up(self.norm(y)))) * self.scale
        result: torch.Tensor = x + y.transpose(1, 2)
        return result


def rope_tables(t: int, dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables ``cos, sin`` ``[T, dim // 2]`` (base 10000)."""
    inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    ang = torch.arange(t, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels of ``x`` ``[B, H, T, hd]`` by position."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


@functools.lru_cache(maxsize=32)
def _band(t: int, window: int, device: str) -> torch.Tensor:
    i = torch.arange(t, device=device)
    return (i[:, None] - i[None, :]).abs() <= window


def local_mask(t: int, window: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[T, T]``: position ``i`` may attend to ``j`` when ``|i - j| <= window``."""
    return _band(t, window, str(device))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, T, hd)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, hd)
        result: torch.Tensor = self.out(y.transpose(1, 2).reshape(b, t, d))
        return result


class TransformerBlock(nn.Module):
    """Pre-norm attention + GELU MLP (ratio 4)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask, rope)
        result: torch.Tensor = x + self.mlp(self.norm2(x))
        return result


class LocalTransformer(nn.Module):
    """``layers`` transformer blocks whose attention reaches ``window`` frames each side.

    Input and output ``[B, C, T]``.
    """

    def __init__(self, dim: int, layers: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.blocks:
            return x
        t, dim = x.shape[-1], x.shape[1]
        mask = local_mask(t, self.window, x.device)
        rope = rope_tables(t, dim // self.heads, x.device)
        y = x.transpose(1, 2)  # (B, T, C)
        for block in self.blocks:
            y = block(y, mask, rope)
        result: torch.Tensor = self.norm(y).transpose(1, 2)
        return result


def downsample(dim: int, factor: int) -> nn.Conv1d:
    """Strided conv ``[B, C, factor * T]`` -> ``[B, C, T]`` (kernel ``2 * factor``)."""
    return nn.Conv1d(dim, dim, 2 * factor, stride=factor, padding=factor // 2)


def upsample(dim: int, factor: int) -> nn.ConvTranspose1d:
    """Transposed conv ``[B, C, T]`` -> ``[B, C, factor * T]`` (kernel ``2 * factor``)."""
    return nn.ConvTranspose1d(dim, dim, 2 * factor, stride=factor, padding=factor // 2)


def convnext_stack(dim: int, n: int) -> nn.Sequential:
    return nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(n)))
