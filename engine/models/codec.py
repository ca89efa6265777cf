"""The dual-path codec: acoustic and semantic encoders, RVQ per path, and two decoders.

::

    wave [B, N] ─ STFT (n_fft 2048, hop 480) ─ log|X| [B, 1025, 8T] ─ AcousticEncoder ─┐
               └ log-mel (120, hop 960) [B, 120, 4T] ─ SemanticEncoder ─────────────┐    │
                                                                (latent [B, L, T])  │    │
                                                  RVQ_semantic [B, K, T] ◄──────────┘    │
                                                  RVQ_acoustic [B, K, T] ◄───────────────┘
    codes [B, 2, K, T] ─ dequantise ─┬─ GenerativeDecoder ─ [B, 2, 1025, 8T] (re, im) ─ iSTFT
                                     └─ AlignedDecoder(+ log|X_mix|) ─ mask [B, 1025, 8T]
                                        mask * X_mix ─ iSTFT  (sample-aligned with the mixture)

``T = N // 3840`` (12.5 frames/s at 48 kHz); ``N`` must be a multiple of 3840
(:func:`pad_to_frames`). STFT and iSTFT sit outside the networks, so the ONNX graphs start at
spectral features and end at spectra or masks; :mod:`engine.dsp` does the numpy side.

The semantic path is trained only by its own targets (see :mod:`engine.models.codec_losses`):
reconstruction gradients stop at its codes, as they would at a frozen SSL model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import StemtokError
from engine.models import codec_dsp
from engine.models.codec_blocks import LocalTransformer, convnext_stack, downsample, upsample
from engine.models.codec_config import CodecConfig
from engine.models.rvq import ResidualVQ, RVQOutput
from engine.models.weights import load_weights, save_weights

#: Targets predicted by the semantic head: 12 pitch classes, onset, loudness, 4 stem classes.
SEMANTIC_TARGETS = 18
PRIOR_EPS = 1e-3  # prior masks are clamped to [eps, 1 - eps] before their logit
WEIGHTS_FILE = "codec.pt"


class AcousticEncoder(nn.Module):
    """log|X| ``[B, F, 8T]`` -> latent ``[B, L, T]``: ConvNeXt at 100 fps, transformer at 12.5."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.inp = nn.Conv1d(cfg.n_bins, cfg.enc_dim, 1)
        self.convs = convnext_stack(cfg.enc_dim, cfg.enc_convnext)
        self.down = downsample(cfg.enc_dim, cfg.upsample)
        self.tf = LocalTransformer(cfg.enc_dim, cfg.enc_layers, cfg.heads, cfg.attn_window)
        self.out = nn.Conv1d(cfg.enc_dim, cfg.latent_dim, 1)

    def forward(self, logmag: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.out(self.tf(self.down(self.convs(self.inp(logmag)))))
        return result


class LearnedSemanticEncoder(nn.Module):
    """log-mel ``[B, 120, 4T]`` -> latent ``[B, L, T]``."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.inp = nn.Conv1d(120, cfg.sem_dim, 3, padding=1)
        self.convs = convnext_stack(cfg.sem_dim, cfg.sem_convnext)
        self.down = downsample(cfg.sem_dim, 4)
        self.tf = LocalTransformer(cfg.sem_dim, cfg.sem_layers, cfg.heads, cfg.attn_window)
        self.out = nn.Conv1d(cfg.sem_dim, cfg.latent_dim, 1)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.out(
            self.tf(self.down(self.convs(self.inp((logmel + 5.0) / 5.0))))
        )
        return result


class _TokenTrunk(nn.Module):
    """Dequantised latents of both paths ``2 x [B, L, T]`` -> ``[B, D, 8T]``."""

    def __init__(self, cfg: CodecConfig, dim: int, layers: int):
        super().__init__()
        self.inp = nn.Conv1d(2 * cfg.latent_dim, dim, 3, padding=1)
        self.tf = LocalTransformer(dim, layers, cfg.heads, cfg.attn_window)
        self.up = upsample(dim, cfg.upsample)

    def forward(self, za: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.up(self.tf(self.inp(torch.cat([za, zs], dim=1))))
        return result


class GenerativeDecoder(nn.Module):
    """Latents -> spectrum ``[B, 2, F, 8T]`` (real, imag), Vocos-style: magnitude and phase."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.trunk = _TokenTrunk(cfg, cfg.dec_dim, cfg.dec_layers)
        self.convs = convnext_stack(cfg.dec_dim, cfg.dec_convnext)
        self.norm = nn.LayerNorm(cfg.dec_dim)
        self.head = nn.Linear(cfg.dec_dim, 2 * cfg.n_bins)

    def forward(self, za: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.convs(self.trunk(za, zs)).transpose(1, 2))  # (B, 8T, D)
        logmag, phase = self.head(h).transpose(1, 2).chunk(2, dim=1)  # (B, F, 8T) each
        mag = torch.exp(logmag.clamp(max=8.0))
        return torch.stack((mag * torch.cos(phase), mag * torch.sin(phase)), dim=1)


class AlignedDecoder(nn.Module):
    """Latents + log|X_mix| ``[B, F, 8T]`` -> mask ``[B, F, 8T]`` in [0, 1] on the mixture.

    With ``cfg.al_prior`` it also takes a prior mask ``[B, F, 8T]`` (the teacher's estimate of
    the stem as a magnitude ratio) and refines it: ``sigmoid(logit(prior) + gate * head)``. The
    gate and the prior's projection start at zero, so before training the output is the prior.
    """

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.trunk = _TokenTrunk(cfg, cfg.al_dim, cfg.al_layers)
        self.mix = nn.Conv1d(cfg.n_bins, cfg.al_dim, 1)
        self.convs = convnext_stack(cfg.al_dim, cfg.al_convnext)
        self.norm = nn.LayerNorm(cfg.al_dim)
        self.head = nn.Linear(cfg.al_dim, cfg.n_bins)
        self.prior: nn.Conv1d | None = None
        if cfg.al_prior:
            self.prior = nn.Conv1d(cfg.n_bins, cfg.al_dim, 1)
            for param in self.prior.parameters():
                nn.init.zeros_(param)
            self.gate = nn.Parameter(torch.zeros(1))

    def forward(
        self,
        za: torch.Tensor,
        zs: torch.Tensor,
        mix_logmag: torch.Tensor,
        prior: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.trunk(za, zs) + self.mix(mix_logmag)
        if self.prior is not None:
            if prior is None:
                raise ValueError("this aligned decoder refines a prior mask: pass prior")
            h = h + self.prior(prior)
        logits = self.head(self.norm(self.convs(h).transpose(1, 2))).transpose(1, 2)  # (B, F, 8T)
        if self.prior is not None and prior is not None:
            p = prior.clamp(PRIOR_EPS, 1.0 - PRIOR_EPS)
            logits = torch.log(p) - torch.log1p(-p) + self.gate * logits
        return torch.sigmoid(logits)


@dataclass
class Quantized:
    """Both paths of a training forward pass (see :meth:`Codec.quantize`)."""

    acoustic: RVQOutput
    semantic: RVQOutput

    @property
    def codes(self) -> torch.Tensor:
        """``[B, 2, K, T]``."""
        return torch.stack((self.acoustic.codes, self.semantic.codes), dim=1)


def pad_to_frames(wave: torch.Tensor, frame_hop: int) -> torch.Tensor:
    """Zero-pad ``[..., N]`` at the end to a multiple of ``frame_hop`` samples."""
    extra = (-wave.shape[-1]) % frame_hop
    return F.pad(wave, (0, extra)) if extra else wave


class Codec(nn.Module):
    """The whole codec. ``encode``/``decode``/``decode_aligned`` work on waveforms ``[B, N]``."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.acoustic = AcousticEncoder(cfg)
        self.semantic = _semantic_encoder(cfg)
        self.semantic_head = nn.Sequential(
            nn.Conv1d(cfg.latent_dim, cfg.sem_dim, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(cfg.sem_dim, SEMANTIC_TARGETS, 1),
        )
        rvq_args = (
            cfg.n_levels,
            cfg.latent_dim,
            cfg.codebook_size,
            cfg.ema_decay,
            cfg.dead_ratio,
            cfg.dead_patience,
        )
        self.rvq_acoustic = ResidualVQ(*rvq_args)
        self.rvq_semantic = ResidualVQ(*rvq_args)
        self.decoder = GenerativeDecoder(cfg)
        self.aligned = AlignedDecoder(cfg)

    def spectrum(self, wave: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``[B, F, 8T]`` of ``[B, N]``."""
        return codec_dsp.stft(wave, self.cfg.n_fft, self.cfg.stft_hop)

    def latents(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unquantised latents of both paths, ``2 x [B, L, T]``."""
        self._check_length(wave)
        za = self.acoustic(codec_dsp.log_magnitude(self.spectrum(wave)))
        return za, self.latents_semantic(wave)

    def latents_semantic(self, wave: torch.Tensor) -> torch.Tensor:
        """Unquantised semantic latents ``[B, L, T]`` of ``[B, N]``."""
        self._check_length(wave)
        if self.cfg.semantic == "crepe":
            out: torch.Tensor = self.semantic(wave)
        else:
            out = self.semantic(codec_dsp.log_mel(wave))
        return out

    def quantize(self, wave: torch.Tensor) -> Quantized:
        """Training pass of the encoders: RVQ outputs of both paths (codebooks update in train)."""
        za, zs = self.latents(wave)
        return Quantized(self.rvq_acoustic(za), self.rvq_semantic(zs))

    @torch.no_grad()
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, 2, K, T]`` of ``[B, N]`` (``N`` a multiple of 3840)."""
        za, zs = self.latents(wave)
        return torch.stack((self.rvq_acoustic.encode(za), self.rvq_semantic.encode(zs)), dim=1)

    def dequantize(
        self, codes: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents ``2 x [B, L, T]`` of codes ``[B, 2, K', T]`` (``K' <= K`` levels used;
        ``keep`` ``[B]`` optionally limits item ``b`` to its first ``keep[b]`` levels).
        """
        za = self.rvq_acoustic.decode(codes[:, 0], keep)
        return za, self.rvq_semantic.decode(codes[:, 1], keep)

    def decode_spectrum(self, za: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        """Generative decoder: complex spectrum ``[B, F, 8T]``."""
        ri = self.decoder(za, zs)
        return torch.complex(ri[:, 0], ri[:, 1])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Generative decoding: codes ``[B, 2, K, T]`` -> waveform ``[B, 3840 T]``."""
        spec = self.decode_spectrum(*self.dequantize(codes))
        n = codes.shape[-1] * self.cfg.frame_hop
        return codec_dsp.istft(spec, n, self.cfg.n_fft, self.cfg.stft_hop)

    def mask(
        self,
        za: torch.Tensor,
        zs: torch.Tensor,
        mix_spec: torch.Tensor,
        prior: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Aligned decoder: mask ``[B, F, 8T]`` for one stem on the mixture spectrum (``prior``
        ``[B, F, 8T]``: the mask it refines, for a config with ``al_prior``)."""
        result: torch.Tensor = self.aligned(za, zs, codec_dsp.log_magnitude(mix_spec), prior)
        return result

    def decode_aligned(
        self, codes: torch.Tensor, mixture: torch.Tensor, prior: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Aligned decoding: codes ``[B, 2, K, T]`` + mixture ``[B, 3840 T]`` (+ the prior mask
        ``[B, F, 8T]`` of an ``al_prior`` config) -> stem ``[B, N]``."""
        self._check_length(mixture)
        spec = self.spectrum(mixture)
        est = self.mask(*self.dequantize(codes), spec, prior) * spec
        return codec_dsp.istft(est, mixture.shape[-1], self.cfg.n_fft, self.cfg.stft_hop)

    def predict_semantic(self, zq: torch.Tensor) -> torch.Tensor:
        """Semantic head (training only): ``[B, L, T]`` -> ``[B, 18, T]`` target logits."""
        out: torch.Tensor = self.semantic_head(zq)
        return out

    def _check_length(self, wave: torch.Tensor) -> None:
        if wave.shape[-1] % self.cfg.frame_hop:
            raise ValueError(
                f"waveform of {wave.shape[-1]} samples is not a multiple of "
                f"{self.cfg.frame_hop} (pad it with pad_to_frames)"
            )


def _semantic_encoder(cfg: CodecConfig) -> nn.Module:
    if cfg.semantic == "crepe":
        from engine.models.codec_crepe import CrepeSemanticEncoder

        return CrepeSemanticEncoder(cfg)
    return LearnedSemanticEncoder(cfg)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def save_codec(codec: Codec, folder: str | os.PathLike[str], half: bool = False) -> Path:
    """Write ``codec.pt`` (a state_dict) and ``codec_config.json`` into ``folder`` atomically."""
    out = Path(folder)
    path = save_weights(codec, out / WEIGHTS_FILE, half)
    codec.cfg.save(out)
    return path


def load_codec(path: str | os.PathLike[str], device: str = "cpu") -> Codec:
    """Rebuild a codec from a folder with ``codec.pt`` + ``codec_config.json`` (or a training
    run folder: its latest checkpoint), in eval mode.
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise StemtokError(f"{folder}: no such codec folder")
    codec = Codec(CodecConfig.load(folder)).to(device)
    codec.load_state_dict(load_weights(folder, WEIGHTS_FILE, device))
    return codec.eval()
