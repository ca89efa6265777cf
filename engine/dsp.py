"""Signal processing in numpy: STFT and iSTFT, mel filters and log-mel, levels, SDR and SI-SDR.

The model's features are fixed here once: 48 kHz (:data:`~engine.constants.MODEL_RATE`), 120
mel bands, n_fft 2048, hop 960 (50 frames/s), ``log(mel power + 1e-6)``. A window of ``N``
samples gives ``N // hop`` frames (a 4-s window: 200 frames), frame ``t`` centred on sample
``t * hop``. :mod:`engine.models.codec_dsp` holds the torch twins that training and export use
(``tests/test_dsp.py`` checks that they agree with these, and these with ``torch.stft``).

STFT conventions (:func:`stft`): periodic Hann window, frames centred by ``n_fft // 2`` samples
of padding on both sides, spectra ``[..., n_fft // 2 + 1, T]`` complex64.

- ``pad_mode="reflect"``, ``last_frame=False`` (the defaults): the model's features, ``N // hop``
  frames. The runtime, the ONNX graphs and training all use this.
- ``pad_mode="constant"``, ``last_frame=True``: zero padding and ``N // hop + 1`` frames, as
  librosa; the evaluation metrics and baselines use this.

:func:`istft` is the weighted overlap-add inverse of either (exact wherever the frames cover the
signal). Scores take their arguments in one order everywhere: ``(reference, estimate)``, as
museval and fast_bss_eval do.
"""

from __future__ import annotations

import functools
import math
from typing import Final, Literal

import numpy as np
import scipy.fft

from engine.constants import MODEL_RATE

N_FFT: Final[int] = 2048
HOP: Final[int] = 960
N_MELS: Final[int] = 120
LOG_FLOOR: Final[float] = 1e-6  # added to mel power before the log (the model's features)
EPS: Final[float] = 1e-10  # added to both sides of the SDR ratios, so every score is finite

PadMode = Literal["reflect", "constant"]


@functools.cache
def hann(n: int) -> np.ndarray:
    """Periodic Hann window ``[n]`` float32 (the STFT convention, as ``torch.hann_window``)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


@functools.cache
def _window(n_fft: int, win_length: int | None) -> np.ndarray:
    """:func:`hann` of ``win_length`` (default ``n_fft``) centred in ``n_fft`` samples."""
    n = n_fft if win_length is None else win_length
    if not 0 < n <= n_fft:
        raise ValueError(f"win_length {n} must be positive and at most n_fft {n_fft}")
    left = (n_fft - n) // 2
    return np.pad(hann(n), (left, n_fft - n - left))


def frames_of(n_samples: int, hop: int = HOP, last_frame: bool = False) -> int:
    """Frames :func:`stft` makes for ``n_samples`` samples."""
    return n_samples // hop + int(last_frame)


def stft(
    x: np.ndarray,
    n_fft: int = N_FFT,
    hop: int = HOP,
    *,
    pad_mode: PadMode = "reflect",
    last_frame: bool = False,
    win_length: int | None = None,
) -> np.ndarray:
    """Complex STFT of ``x`` ``[..., N]`` -> ``[..., n_fft // 2 + 1, T]`` complex64.

    ``T`` is ``N // hop`` (``N // hop + 1`` with ``last_frame``); the signal is padded by
    ``n_fft // 2`` on both sides with ``pad_mode`` (see the module's conventions). A
    ``win_length`` shorter than ``n_fft`` centres a Hann window of that length in the frame,
    zeros around it, as librosa does. Single precision throughout.
    """
    if hop <= 0 or n_fft <= 0:
        raise ValueError(f"n_fft {n_fft} and hop {hop} must be positive")
    x = np.asarray(x, dtype=np.float32)
    pad = n_fft // 2
    if pad_mode == "reflect" and x.shape[-1] <= pad:
        raise ValueError(f"signal of {x.shape[-1]} samples is too short for n_fft {n_fft}")
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode=pad_mode)
    n_frames = frames_of(x.shape[-1], hop, last_frame)
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft, axis=-1)[..., ::hop, :]
    frames = frames[..., :n_frames, :] * _window(n_fft, win_length)  # (..., T, n_fft) float32
    spec = scipy.fft.rfft(frames, axis=-1)  # (..., T, F) complex64
    return np.swapaxes(spec, -1, -2).astype(np.complex64, copy=False)


def istft(spec: np.ndarray, length: int, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Inverse of :func:`stft` by weighted overlap-add: ``[..., F, T]`` -> ``[..., length]``.

    Float32 out (the sums are float64); single precision unless ``spec`` is complex128.
    Samples no frame covers are zero.
    """
    if not 0 < hop <= n_fft // 2:
        raise ValueError(f"hop {hop} must be positive and at most n_fft / 2 ({n_fft // 2})")
    spec = np.asarray(spec)
    if spec.dtype != np.complex128:
        spec = spec.astype(np.complex64, copy=False)
    window = hann(n_fft)
    frames = scipy.fft.irfft(np.swapaxes(spec, -1, -2), n=n_fft, axis=-1) * window  # (..., T, n)
    n_frames = frames.shape[-2]
    total = hop * (n_frames - 1) + n_fft
    out = np.zeros((*frames.shape[:-2], total), dtype=np.float64)
    norm = np.zeros(total, dtype=np.float64)
    w2 = window.astype(np.float64) ** 2
    for t in range(n_frames):
        out[..., t * hop : t * hop + n_fft] += frames[..., t, :]
        norm[t * hop : t * hop + n_fft] += w2
    pad = n_fft // 2
    out = out[..., pad : pad + length] / np.maximum(norm[pad : pad + length], 1e-8)
    if out.shape[-1] < length:
        out = np.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, length - out.shape[-1])])
    return out.astype(np.float32)


def log_magnitude(spec: np.ndarray, floor: float = 1e-5) -> np.ndarray:
    """``log(|X| + floor)`` of a complex spectrogram, the codec's spectral features."""
    return np.log(np.abs(spec) + np.float32(floor)).astype(np.float32, copy=False)


def ratio_mask(stem_spec: np.ndarray, mix_spec: np.ndarray, floor: float = 1e-8) -> np.ndarray:
    """``|S| / |X|`` clipped to [0, 1]: an estimate of one stem as a magnitude mask on the
    mixture (float32, the shape of the spectra)."""
    ratio = np.abs(stem_spec) / (np.abs(mix_spec) + np.float32(floor))
    return np.clip(ratio, 0.0, 1.0).astype(np.float32, copy=False)


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
    n_mels: int = N_MELS,
    n_fft: int = N_FFT,
    rate: int = MODEL_RATE,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """Triangular, area-normalised (Slaney) mel filters ``[n_mels, n_fft // 2 + 1]`` float32
    from ``fmin`` to ``fmax`` (default ``rate / 2``), as ``librosa.filters.mel``. Read-only."""
    top = rate / 2 if fmax is None else fmax
    freqs = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(top)), n_mels + 2)
    )
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (centre - lower)
    down = (upper - freqs[None, :]) / (upper - centre)
    fb = (np.maximum(0.0, np.minimum(up, down)) * (2.0 / (upper - lower))).astype(np.float32)
    fb.setflags(write=False)
    return fb


def log_mel(
    x: np.ndarray,
    rate: int = MODEL_RATE,
    *,
    n_fft: int = N_FFT,
    hop: int = HOP,
    n_mels: int = N_MELS,
    power: Literal[1, 2] = 2,
    floor: float = LOG_FLOOR,
    pad_mode: PadMode = "reflect",
    last_frame: bool = False,
) -> np.ndarray:
    """Log-mel spectrogram of ``x`` ``[..., N]`` -> ``[..., n_mels, T]`` float32.

    ``log(mel(|X| ** power) + floor)`` with the spectrum of :func:`stft` (``pad_mode`` and
    ``last_frame`` as there). The defaults are the model's features (power, floor 1e-6, 48 kHz,
    ``[..., 120, N // 960]``); the evaluation's log-mel distance uses magnitudes (``power=1``)
    and floor 1e-5.
    """
    spec = stft(x, n_fft, hop, pad_mode=pad_mode, last_frame=last_frame)
    if power == 2:
        mag = spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2
    else:
        mag = np.abs(spec)
    mel = np.matmul(mel_filterbank(n_mels, n_fft, rate), mag)  # (n_mels, F) @ (..., F, T): BLAS
    return np.log(mel + np.float32(floor)).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- levels and scores
def rms_db(x: np.ndarray) -> float:
    """RMS level of ``x`` (any shape, all channels together) in dBFS; ``-inf`` for silence."""
    ms = float(np.mean(np.square(x, dtype=np.float64))) if np.size(x) else 0.0
    return 10.0 * math.log10(ms) if ms > 0 else -math.inf


def _pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    e = np.atleast_2d(np.asarray(estimate, dtype=np.float64))
    if r.shape != e.shape:
        raise ValueError(f"reference {r.shape} and estimate {e.shape} must have the same shape")
    return r, e


def _db(num: float | np.ndarray, den: float | np.ndarray) -> np.ndarray:
    return np.asarray(10.0 * np.log10(num / den), dtype=np.float64)


def si_sdr(
    reference: np.ndarray, estimate: np.ndarray, *, zero_mean: bool = False, eps: float = EPS
) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), per channel, averaged over channels.

    Parameters
    ----------
    reference, estimate
        ``[C, N]`` (or ``[N]``), same shape; reshape to ``[1, C * N]`` to score the channels
        one after the other.
    zero_mean
        Remove each channel's mean first (as the teacher's validation does).
    eps
        Added to both sides of the ratio and to the projection's denominator.

    Returns
    -------
    float
        ``mean_c 10 log10(|a s|^2 / |a s - s_hat|^2)`` with ``a = <s_hat, s> / |s|^2``.
    """
    r, e = _pair(reference, estimate)
    if zero_mean:
        r = r - r.mean(axis=-1, keepdims=True)
        e = e - e.mean(axis=-1, keepdims=True)
    alpha = np.sum(r * e, axis=-1, keepdims=True) / (np.sum(r * r, axis=-1, keepdims=True) + eps)
    target = alpha * r
    num = np.sum(target**2, axis=-1) + eps
    den = np.sum((target - e) ** 2, axis=-1) + eps
    return float(np.mean(_db(num, den)))


def sdr(reference: np.ndarray, estimate: np.ndarray, *, eps: float = EPS) -> float:
    """``10 log10(|s|^2 / |s - s_hat|^2)`` in dB over the whole ``[C, N]`` signals (the
    "utterance-level" SDR of the MDX challenges; also the export parity's signal-to-error)."""
    r, e = _pair(reference, estimate)
    return float(_db(np.sum(r**2) + eps, np.sum((r - e) ** 2) + eps))
