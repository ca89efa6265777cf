"""Numpy STFT / inverse STFT and a mel filter bank, for metrics and baselines.

The STFT is centred (``n_fft // 2`` zeros on both sides), uses a periodic Hann window and
returns ``[..., F, T]`` with ``F = n_fft // 2 + 1`` (any positive hop). :func:`istft` is its exact inverse
(weighted overlap-add divided by the summed squared window) whenever ``hop`` divides ``n_fft``
and ``hop <= n_fft // 2``.
"""

from __future__ import annotations

import functools

import numpy as np


def hann(n: int) -> np.ndarray:
    """Periodic Hann window ``[n]`` (float64)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def _check(n_fft: int, hop: int) -> None:
    if hop <= 0 or n_fft % hop or hop > n_fft // 2:
        raise ValueError(f"hop {hop} must divide n_fft {n_fft} and be at most n_fft / 2")


def frame_count(length: int, hop: int) -> int:
    """Frames :func:`stft` makes for ``length`` samples."""
    return length // hop + 1


def stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Short-time Fourier transform.

    Parameters
    ----------
    x
        ``[..., N]`` real signal.

    Returns
    -------
    np.ndarray
        ``[..., n_fft // 2 + 1, N // hop + 1]`` complex64.
    """
    if hop <= 0 or n_fft <= 0:
        raise ValueError(f"n_fft {n_fft} and hop {hop} must be positive")
    pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    xp = np.pad(np.asarray(x, dtype=np.float32), pad)
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft, axis=-1)[..., ::hop, :]
    frames = frames[..., : frame_count(x.shape[-1], hop), :]  # (..., T, n_fft)
    spec = np.fft.rfft(frames * hann(n_fft).astype(np.float32), axis=-1)
    return np.swapaxes(spec, -1, -2).astype(np.complex64)


def istft(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """Inverse of :func:`stft`: ``[..., F, T]`` complex to ``[..., length]`` float32."""
    _check(n_fft, hop)
    frames = np.fft.irfft(np.swapaxes(spec, -1, -2), n=n_fft, axis=-1)  # (..., T, n_fft)
    window = hann(n_fft)
    frames = frames * window
    n_frames, ratio = frames.shape[-2], n_fft // hop
    chunks = np.zeros((*frames.shape[:-2], n_frames + ratio - 1, hop))
    norm = np.zeros((n_frames + ratio - 1, hop))
    for r in range(ratio):
        chunks[..., r : r + n_frames, :] += frames[..., r * hop : (r + 1) * hop]
        norm[r : r + n_frames, :] += window[r * hop : (r + 1) * hop] ** 2
    out = (chunks / np.maximum(norm, 1e-8)).reshape((*frames.shape[:-2], -1))
    start = n_fft // 2
    out = out[..., start : start + length]
    if out.shape[-1] < length:
        out = np.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, length - out.shape[-1])])
    return out.astype(np.float32)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3.0)
    log = 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f < 1000.0, lin, log)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3.0)
    log = 1000.0 * np.exp((m - 15.0) * (np.log(6.4) / 27.0))
    return np.where(m < 15.0, lin, log)


@functools.lru_cache(maxsize=16)
def mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float = 0.0) -> np.ndarray:
    """Triangular, area-normalised (Slaney) mel filters ``[n_mels, n_fft // 2 + 1]`` up to
    ``rate / 2``.
    """
    freqs = np.linspace(0.0, rate / 2.0, n_fft // 2 + 1)
    span = _hz_to_mel(np.array([fmin, rate / 2.0]))
    edges = _mel_to_hz(np.linspace(span[0], span[1], n_mels + 2))
    lower = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - freqs[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    bank = np.maximum(0.0, np.minimum(lower, upper))
    bank *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    bank.setflags(write=False)
    return np.asarray(bank)
