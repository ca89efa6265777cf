"""The discriminative teacher: a band-split rotary transformer (BS-RoFormer style) for 4 stems.

The graph starts after the STFT and ends at the masks, so it exports to ONNX and the STFT/iSTFT
run in numpy (or torch, when training) outside it::

    mixture STFT of C channels (re, im) [B, 2C, F, T]   (c0 re, c0 im, c1 re, c1 im, ...)
      -> band split: bins [F] cut into n_bands bands, each band's (re, im) of every channel
         -> RMSNorm -> (+ the band's log level) -> Linear               -> [B, T, n_bands, D]
      -> depth x (transformer over time within each band, transformer over bands within each
         frame), rotary positions, RMSNorm, GELU feed-forward
      -> per-band mask MLP (RMSNorm, Linear, Tanh, Linear, GLU) -> complex masks
         [B, 4, 2C, F, T], projected so the four stems' masks sum to 1 in every bin
         (``consistent``: the stems add up to the mixture by construction)

A stem's spectrum is the complex product mask x mixture, channel by channel
(:func:`apply_masks`). ``channels`` is 2 (stereo, as in the BS-RoFormer paper: the model sees
the stereo image, which is what tells a centre-panned voice from the band around it) or 1 (mono,
the first teachers). 48 kHz, n_fft 2048, hop 960 (``small``) or 480 (``paper``).

The sizes, the training recipe and the presets (``small``, ``paper``) are in
:mod:`engine.models.teacher_config`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.constants import MODEL_RATE
from engine.errors import StemtokError
from engine.models.conformer import apply_rotary, rotary_tables
from engine.models.teacher_config import TeacherConfig
from engine.models.weights import load_weights, save_weights

WEIGHTS_FILE = "teacher.pt"


def band_edges(n_bins: int, n_bands: int, rate: int = MODEL_RATE) -> np.ndarray:
    """Bin edges ``[n_bands + 1]`` of bands evenly spaced on the mel scale, each >= 2 bins wide,
    covering ``[0, n_bins)`` without gaps or overlap."""
    mel = np.linspace(0.0, 2595 * np.log10(1 + (rate / 2) / 700), n_bands + 1)
    hz = 700 * (10 ** (mel / 2595) - 1)
    edges = np.round(hz / (rate / 2) * (n_bins - 1)).astype(np.int64)
    edges[-1] = n_bins
    for i in range(1, n_bands):  # at least 2 bins per band, from the bottom up
        edges[i] = max(edges[i], edges[i - 1] + 2)
    for i in range(n_bands - 1, 0, -1):  # then pull the top back inside [0, n_bins)
        edges[i] = min(edges[i], edges[i + 1] - 2)
    if edges[0] != 0 or np.any(np.diff(edges) < 2):
        raise ValueError(f"cannot split {n_bins} bins into {n_bands} bands of >= 2 bins")
    return edges


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Attention(nn.Module):
    """Pre-norm self-attention with rotary positions over ``[N, L, D]`` (no mask)."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.heads, self.theta = cfg.heads, cfg.rope_theta
        self.norm = RMSNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.drop = cfg.dropout

    def forward(self, x: Tensor) -> Tensor:
        n, length, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        cos, sin = rotary_tables(torch.arange(length, device=x.device), d // self.heads, self.theta)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        drop = self.drop if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        return self.out(y.transpose(1, 2).reshape(n, length, d))


class Transformer(nn.Module):
    """One residual attention + feed-forward block over ``[N, L, D]``."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.attn = Attention(cfg)
        self.ff = nn.Sequential(
            RMSNorm(cfg.dim),
            nn.Linear(cfg.dim, cfg.dim * cfg.ff_mult),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.dim * cfg.ff_mult, cfg.dim),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(x)
        out: Tensor = x + self.ff(x)
        return out


class RNNBlock(nn.Module):
    """One residual bidirectional-LSTM block over ``[N, L, D]`` (the band-split RNN's sequence
    and band modelling): RMSNorm, BiLSTM with ``D`` units each way, a projection back to ``D``."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.dim)
        self.rnn = nn.LSTM(cfg.dim, cfg.dim, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * cfg.dim, cfg.dim)

    def forward(self, x: Tensor) -> Tensor:
        y, _ = self.rnn(self.norm(x))  # (N, L, 2D)
        out: Tensor = x + self.proj(y)
        return out


BLOCKS: dict[str, type[nn.Module]] = {"transformer": Transformer, "rnn": RNNBlock}


class BandSplitRoformer(nn.Module):
    """Mixture STFT (re, im) ``[B, 2C, F, T]`` -> complex masks ``[B, n_stems, 2C, F, T]``."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.cfg = cfg
        edges = band_edges(cfg.n_bins, cfg.n_bands)
        self.widths = [int(w) for w in np.diff(edges)]
        extra, c2 = (1 if cfg.band_energy else 0), 2 * cfg.channels
        self.split = nn.ModuleList(
            nn.Sequential(RMSNorm(c2 * w), nn.Linear(c2 * w + extra, cfg.dim)) for w in self.widths
        )
        block = BLOCKS[cfg.block]
        self.layers = nn.ModuleList(
            nn.ModuleList([block(cfg), block(cfg)]) for _ in range(cfg.depth)
        )
        self.norm = RMSNorm(cfg.dim)
        hidden = cfg.dim * cfg.mask_mult
        self.masks = nn.ModuleList(
            _mask_head(cfg.dim, hidden, cfg.n_stems * cfg.channels, w) for w in self.widths
        )

    def forward(self, ri: Tensor) -> Tensor:
        b, c2, f, t = ri.shape
        if f != self.cfg.n_bins or c2 != 2 * self.cfg.channels:
            raise ValueError(
                f"expected [B, {2 * self.cfg.channels}, {self.cfg.n_bins}, T] "
                f"spectra, got {list(ri.shape)}"
            )
        x = ri.permute(0, 3, 2, 1)  # (B, T, F, 2C)
        bands, start = [], 0
        for w, proj in zip(self.widths, self.split, strict=True):
            band = x[:, :, start : start + w].reshape(b, t, c2 * w)
            feat = proj[0](band)  # type: ignore[index]
            if self.cfg.band_energy:  # the level RMSNorm takes away, as log10 RMS (about -3..1)
                level = 0.5 * torch.log10(band.pow(2).mean(-1, keepdim=True) + 1e-8)
                feat = torch.cat((feat, level), dim=-1)
            bands.append(proj[1](feat))  # type: ignore[index]
            start += w
        h = torch.stack(bands, dim=2)  # (B, T, K, D)
        k, d = h.shape[2], h.shape[3]
        for pair in self.layers:
            time_block: nn.Module = pair[0]  # type: ignore[index]
            band_block: nn.Module = pair[1]  # type: ignore[index]
            h = time_block(h.transpose(1, 2).reshape(b * k, t, d)).view(b, k, t, d).transpose(1, 2)
            h = band_block(h.reshape(b * t, k, d)).view(b, t, k, d)
        h = self.norm(h)
        s = self.cfg.n_stems
        masks = [
            head(h[:, :, i]).view(b, t, s, c2, w)
            for i, (head, w) in enumerate(zip(self.masks, self.widths, strict=True))
        ]
        out = torch.cat(masks, dim=-1).permute(0, 2, 3, 4, 1)  # (B, S, 2C, F, T)
        if self.cfg.consistent:  # spread what the masks miss of (1 + 0j) equally over the stems
            one = torch.tensor([1.0, 0.0] * self.cfg.channels, dtype=out.dtype, device=out.device)
            out = out + (one.view(1, 1, c2, 1, 1) - out.sum(dim=1, keepdim=True)) / s
        return out


def _mask_head(dim: int, hidden: int, n_masks: int, width: int) -> nn.Module:
    """Band features ``[..., D]`` -> ``n_masks`` (re, im) masks for ``width`` bins."""
    return nn.Sequential(
        RMSNorm(dim),
        nn.Linear(dim, hidden),
        nn.Tanh(),
        nn.Linear(hidden, 2 * n_masks * 2 * width),
        nn.GLU(dim=-1),
    )


def spec_input(spec: Tensor) -> Tensor:
    """Complex mixture spectra ``[B, C, F, T]`` -> the graph's input ``[B, 2C, F, T]``."""
    b, c, f, t = spec.shape
    return torch.stack((spec.real, spec.imag), dim=2).reshape(b, 2 * c, f, t)


def apply_masks(masks: Tensor, spec: Tensor) -> Tensor:
    """Complex masks ``[B, S, 2C, F, T]`` times the mixture spectra ``[B, C, F, T]`` (complex)
    -> stem spectra ``[B, S, C, F, T]`` (complex)."""
    b, s, c2, f, t = masks.shape
    m = masks.view(b, s, c2 // 2, 2, f, t)
    return torch.complex(m[:, :, :, 0], m[:, :, :, 1]) * spec[:, None]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_teacher(model: BandSplitRoformer, folder: str | os.PathLike[str]) -> Path:
    """``teacher.pt`` (state_dict) + ``teacher_config.json`` into ``folder``, atomically."""
    out = Path(folder)
    path = save_weights(model, out / WEIGHTS_FILE)
    model.cfg.save(out)
    return path


def load_teacher(folder: str | os.PathLike[str], device: str = "cpu") -> BandSplitRoformer:
    """A teacher from a folder with ``teacher.pt`` or a training run (its latest checkpoint)."""
    path = Path(folder)
    if not path.is_dir():
        raise StemtokError(f"{path}: no such teacher folder")
    model = BandSplitRoformer(TeacherConfig.load(path)).to(device)
    model.load_state_dict(load_weights(path, WEIGHTS_FILE, device))
    return model.eval()
