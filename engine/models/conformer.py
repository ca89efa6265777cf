"""Conditional encoder of the separation LM: log-mel -> Conformer -> (the LM's linear adapter).

A Conformer block (Gulati et al. 2020) is macaron-shaped::

    x = x + 1/2 FFN(x)          feed-forward, SiLU, pre-norm
    x = x + MHSA(x)             self-attention with rotary positions, pre-norm
    x = x + Conv(x)             pointwise -> GLU -> depthwise (kernel 31) -> norm -> SiLU -> pointwise
    x = x + 1/2 FFN(x)
    x = LayerNorm(x)

The depthwise convolution's norm is a LayerNorm over channels rather than BatchNorm, so the
encoder behaves the same for any batch size and exports without running statistics.

The rotary helpers here are shared with the decoder (:mod:`engine.models.lm`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.lm_config import LMConfig


# --------------------------------------------------------------------------- rotary positions
def rotary_tables(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """Cos/sin tables for ``positions`` ``[L]`` -> two ``[L, head_dim // 2]`` float32 tensors."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = positions.to(torch.float32)[:, None] * inv.to(positions.device)[None, :]
    return torch.cos(angles), torch.sin(angles)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs ``(x[2i], x[2i+1])`` of ``x`` ``[B, H, L, hd]`` by the angles of each position."""
    x2 = x.float().reshape(*x.shape[:-1], -1, 2)  # (B, H, L, hd/2, 2)
    re, im = x2[..., 0], x2[..., 1]
    out = torch.stack((re * cos - im * sin, re * sin + im * cos), dim=-1)
    return out.flatten(-2).type_as(x)


# --------------------------------------------------------------------------- blocks
class FeedForward(nn.Module):
    """Pre-norm feed-forward ``[B, L, D] -> [B, L, D]`` with SiLU."""

    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        return out


class RotarySelfAttention(nn.Module):
    """Bidirectional pre-norm multi-head self-attention with rotary positions."""

    def __init__(self, dim: int, heads: int, dropout: float, theta: float) -> None:
        super().__init__()
        self.heads, self.theta, self.dropout = heads, theta, dropout
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, hd)
        cos, sin = rotary_tables(torch.arange(n, device=x.device), d // self.heads, self.theta)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v)
        out: Tensor = self.drop(self.out(y.transpose(1, 2).reshape(b, n, d)))
        return out


class ConvModule(nn.Module):
    """Conformer convolution module ``[B, L, D] -> [B, L, D]`` (depthwise, 'same' padding)."""

    def __init__(self, dim: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.conv_norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Conv1d(dim, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = F.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1)  # (B, D, L)
        y = self.depthwise(y)
        y = F.silu(self.conv_norm(y.transpose(1, 2))).transpose(1, 2)
        out: Tensor = self.drop(self.pointwise_out(y).transpose(1, 2))
        return out


class ConformerBlock(nn.Module):
    def __init__(
        self, dim: int, heads: int, kernel: int, ff_mult: int, dropout: float, theta: float
    ) -> None:
        super().__init__()
        self.ff1 = FeedForward(dim, ff_mult, dropout)
        self.attn = RotarySelfAttention(dim, heads, dropout, theta)
        self.conv = ConvModule(dim, kernel, dropout)
        self.ff2 = FeedForward(dim, ff_mult, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x)
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(x)
        out: Tensor = self.norm(x)
        return out


# --------------------------------------------------------------------------- encoder
class ConformerEncoder(nn.Module):
    """Log-mel ``[B, n_mels, Tm]`` -> mixture features ``[B, Tm // stride, enc_dim]``.

    ``stride`` consecutive mel frames are stacked into one position before the input projection
    (``stride`` 1 in the paper config). Features are normalised as ``(mel - shift) / scale``.
    """

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.stride, self.shift, self.scale = cfg.enc_stride, cfg.mel_shift, cfg.mel_scale
        self.proj = nn.Linear(cfg.n_mels * cfg.enc_stride, cfg.enc_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            ConformerBlock(
                cfg.enc_dim,
                cfg.enc_heads,
                cfg.enc_conv_kernel,
                cfg.enc_ff_mult,
                cfg.dropout,
                cfg.rope_theta,
            )
            for _ in range(cfg.enc_layers)
        )

    def forward(self, mel: Tensor) -> Tensor:
        b, m, t = mel.shape
        if t % self.stride:
            raise ValueError(f"{t} mel frames are not a multiple of the stride {self.stride}")
        x = (mel.transpose(1, 2) - self.shift) / self.scale  # (B, Tm, n_mels)
        x = x.reshape(b, t // self.stride, self.stride * m)  # (B, M, stride * n_mels)
        x = self.drop(self.proj(x))
        for block in self.blocks:
            x = block(x)
        out: Tensor = x
        return out


def build_encoder(cfg: LMConfig) -> ConformerEncoder:
    """The encoder of ``cfg``: trainable, or (``encoder="frozen"``, ablation A1) a Conformer of the
    same size with a fixed seeded random init whose parameters never train."""
    if cfg.encoder == "conformer":
        return ConformerEncoder(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        enc = ConformerEncoder(cfg)
    enc.requires_grad_(False)
    return enc
