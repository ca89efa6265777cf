"""Torch twins of :mod:`engine.dsp`, for training and export on batches (the same numbers).

Conventions as in :mod:`engine.dsp` (its defaults: the model's features): periodic Hann
window, frames centred on ``t * hop`` with reflect padding, ``N // hop`` frames for ``N``
samples, an iSTFT by weighted overlap-add, scores taking ``(reference, estimate)``. At run time
the numpy versions surround the ONNX graphs; these let the training losses and the encoders see
exactly what the numpy code will give them (``tests/test_dsp.py`` compares the two).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from engine import dsp
from engine.constants import MODEL_RATE


def stft(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Complex STFT ``[B, N]`` -> ``[B, n_fft // 2 + 1, N // hop]``."""
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(
        x, n_fft, hop, window=window, center=True, pad_mode="reflect", return_complex=True
    )
    return spec[..., : x.shape[-1] // hop]


def istft(spec: torch.Tensor, length: int, n_fft: int, hop: int) -> torch.Tensor:
    """Weighted overlap-add inverse of :func:`stft`: ``[B, F, T]`` -> ``[B, length]``."""
    n_frames = spec.shape[-1]
    window = torch.hann_window(n_fft, device=spec.device, dtype=torch.float32)
    frames = torch.fft.irfft(spec, n=n_fft, dim=-2) * window[:, None]  # (B, n_fft, T)
    total = hop * (n_frames - 1) + n_fft
    out = F.fold(frames, (1, total), (1, n_fft), stride=(1, hop))[:, 0, 0]  # (B, total)
    env = _envelope(n_fft, hop, n_frames, str(spec.device))
    pad = n_fft // 2
    return out[:, pad : pad + length] / env[pad : pad + length]


@functools.lru_cache(maxsize=16)
def _envelope(n_fft: int, hop: int, n_frames: int, device: str) -> torch.Tensor:
    w2 = torch.hann_window(n_fft, dtype=torch.float32) ** 2
    frames = w2[None, :, None].expand(1, n_fft, n_frames)
    env = F.fold(frames, (1, hop * (n_frames - 1) + n_fft), (1, n_fft), stride=(1, hop))
    return env[0, 0, 0].clamp_min(1e-8).to(device)


@functools.lru_cache(maxsize=8)
def _mel_fb(n_mels: int, n_fft: int, rate: int, device: str) -> torch.Tensor:
    return torch.tensor(dsp.mel_filterbank(n_mels, n_fft, rate), device=device)


def mel_power(mag2: torch.Tensor, n_mels: int, n_fft: int, rate: int) -> torch.Tensor:
    """Mel power ``[B, n_mels, T]`` of a power spectrogram ``[B, F, T]`` (Slaney filters)."""
    return torch.einsum("mf,bft->bmt", _mel_fb(n_mels, n_fft, rate, str(mag2.device)), mag2)


def log_mel(x: torch.Tensor) -> torch.Tensor:
    """:func:`engine.dsp.log_mel` on a batch: ``[B, N]`` -> ``[B, 120, N // 960]``."""
    spec = stft(x, dsp.N_FFT, dsp.HOP)
    power = spec.real**2 + spec.imag**2
    mel = mel_power(power, dsp.N_MELS, dsp.N_FFT, MODEL_RATE)
    return torch.log(mel + dsp.LOG_FLOOR)


def log_magnitude(spec: torch.Tensor, floor: float = 1e-5) -> torch.Tensor:
    """``log(|X| + floor)`` of a complex spectrogram, the codec's spectral features."""
    return torch.log(spec.abs() + floor)


def si_sdr(
    reference: torch.Tensor, estimate: torch.Tensor, *, zero_mean: bool = False, eps: float = 1e-8
) -> torch.Tensor:
    """:func:`engine.dsp.si_sdr` per row: ``[..., N]`` -> SI-SDR in dB ``[...]`` (differentiable;
    ``eps`` 1e-8 suits float32)."""
    if zero_mean:
        reference = reference - reference.mean(-1, keepdim=True)
        estimate = estimate - estimate.mean(-1, keepdim=True)
    dot = (estimate * reference).sum(-1, keepdim=True)
    target = dot / (reference.pow(2).sum(-1, keepdim=True) + eps) * reference
    num = target.pow(2).sum(-1) + eps
    return 10 * torch.log10(num / ((estimate - target).pow(2).sum(-1) + eps))
