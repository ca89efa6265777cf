"""Signal processing outside the networks: STFT, iSTFT and the log-mel features of the paper.

Constants live here once: 48 kHz, 120 mel bands, n_fft 2048, hop 960 (50 frames/s). A window of
``N`` samples gives ``N // hop`` frames (a 4-s window: 200 frames), frame ``t`` centred on sample
``t * hop``. Everything is numpy; ``tests/test_features.py`` checks it against ``torch.stft``.
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np
import scipy.fft

from engine.constants import MODEL_RATE

N_FFT: Final[int] = 2048
HOP: Final[int] = 960
N_MELS: Final[int] = 120
FMIN: Final[float] = 0.0
FMAX: Final[float] = MODEL_RATE / 2
LOG_FLOOR: Final[float] = 1e-6  # added to mel power before the log


@functools.cache
def hann(n: int) -> np.ndarray:
    """Periodic Hann window ``[n]`` (the STFT convention, as ``torch.hann_window``)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def frames_of(n_samples: int, hop: int = HOP) -> int:
    return n_samples // hop


def stft(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Complex STFT of ``x`` ``[..., N]`` -> ``[..., n_fft // 2 + 1, N // hop]``.

    Reflect-padded by ``n_fft // 2`` on both sides (centred frames), periodic Hann window.
    """
    x = np.asarray(x, dtype=np.float32)
    pad = n_fft // 2
    if x.shape[-1] <= pad:
        raise ValueError(f"signal of {x.shape[-1]} samples is too short for n_fft {n_fft}")
    widths = [(0, 0)] * (x.ndim - 1) + [(pad, pad)]
    xp = np.pad(x, widths, mode="reflect")
    n_frames = frames_of(x.shape[-1], hop)
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]  # (T, n_fft)
    frames = xp[..., idx] * hann(n_fft)  # (..., T, n_fft) float32
    spec = scipy.fft.rfft(frames, axis=-1)  # (..., T, F) complex64: single precision throughout
    return np.swapaxes(spec, -1, -2).astype(np.complex64, copy=False)


def istft(spec: np.ndarray, length: int, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Inverse of :func:`stft` by weighted overlap-add: ``[..., F, T]`` -> ``[..., length]``.

    Frames beyond ``length // hop`` are not needed: the tail is rebuilt from the last frames.
    """
    spec = np.asarray(spec)
    if spec.dtype != np.complex128:
        spec = spec.astype(np.complex64, copy=False)  # single precision unless given double
    frames = scipy.fft.irfft(np.swapaxes(spec, -1, -2), n=n_fft, axis=-1) * hann(
        n_fft
    )  # (..., T, n)
    n_frames = frames.shape[-2]
    pad = n_fft // 2
    total = hop * (n_frames - 1) + n_fft
    out = np.zeros((*frames.shape[:-2], total), dtype=np.float64)
    norm = np.zeros(total, dtype=np.float64)
    w2 = hann(n_fft).astype(np.float64) ** 2
    for t in range(n_frames):
        out[..., t * hop : t * hop + n_fft] += frames[..., t, :]
        norm[t * hop : t * hop + n_fft] += w2
    out = out[..., pad : pad + length]
    norm = norm[pad : pad + length]
    return (out / np.maximum(norm, 1e-8)).astype(np.float32)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3)
    log = 1000.0 * np.exp((m - 15.0) * (np.log(6.4) / 27.0))
    return np.where(m >= 15.0, log, lin)


@functools.cache
def mel_filterbank(
    n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = MODEL_RATE,
    fmin: float = FMIN, fmax: float = FMAX,
) -> np.ndarray:  # fmt: skip
    """Triangular, area-normalised (Slaney) mel filters ``[n_mels, n_fft // 2 + 1]``."""
    freqs = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)),
                                   n_mels + 2))  # fmt: skip
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (centre - lower)
    down = (upper - freqs[None, :]) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (upper - lower))
    return fb.astype(np.float32)


def log_mel(x: np.ndarray) -> np.ndarray:
    """Log-mel features of 48 kHz audio ``[..., N]`` -> ``[..., 120, N // 960]`` (float32).

    ``log(mel_power + 1e-6)`` with the power spectrum of :func:`stft`.
    """
    spec = stft(x)
    power = spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2
    mel = np.matmul(mel_filterbank(), power)  # (n_mels, F) @ (..., F, T): BLAS, not einsum
    return np.log(mel + LOG_FLOOR).astype(np.float32)
