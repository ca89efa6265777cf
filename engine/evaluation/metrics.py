"""Sample-level and spectral metrics, in numpy, with silence handled explicitly.

Every score takes ``(reference, estimate)``, as museval does.

Sample-level (need sample-aligned outputs):

- :func:`engine.dsp.si_sdr` — scale-invariant SDR (Le Roux et al. 2019), per channel, averaged
  over channels, and :func:`engine.dsp.sdr` — one SDR over the whole excerpt (the
  "utterance-level" SDR of the MDX challenges).
- :func:`sdr_v4_frames` / :func:`sdr_v4` — the SDR of BSS-Eval v4 (museval, SiSEC 2018, images
  version), framewise (1-s windows, 1-s hop) and its median over frames. In the images version
  the four error terms of the decomposition add up to ``estimate - reference``, so the SDR of a
  frame is exactly ``10 log10(sum s^2 / sum (s_hat - s)^2)`` over the frame and all channels; no
  projection filters are needed for it. Frames where any reference or any estimate is all-zero
  are NaN, as in museval. ``tests/test_metrics.py`` checks agreement with museval itself.

Spectral (tolerant of small shifts, for generative outputs), on the zero-padded STFT of
:mod:`engine.dsp` (``pad_mode="constant"``, ``last_frame=True``):

- :func:`mrstft_distance` — multi-resolution STFT distance: spectral convergence plus mean
  absolute log-magnitude difference, averaged over three resolutions.
- :func:`logmel_l1` — mean absolute difference of natural-log mel magnitude spectrograms (120
  bands, n_fft 2048, hop 960 at 48 kHz: the model's own resolution), ``log(mel + 1e-5)``.

Silence: :func:`is_silent` says whether a reference is too quiet to score (RMS below
``silence_db``); the harness reports such stems separately instead of scoring them, so no metric
here has to return NaN or infinity for them. Every ratio carries a tiny ``eps`` so a perfect or an
all-zero estimate still gives a finite number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine import dsp

#: A reference stem whose RMS (all channels) is below this is "silent" and not scored.
SILENCE_DB = -60.0
#: ``(n_fft, hop)`` pairs of the multi-resolution STFT distance (at 48 kHz: 43, 21, 11 ms).
MRSTFT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((2048, 512), (1024, 256), (512, 128))


@dataclass(frozen=True)
class LogMelConfig:
    """Log-mel settings of :func:`logmel_l1` (the model's features at 48 kHz)."""

    n_fft: int = dsp.N_FFT
    hop: int = dsp.HOP
    n_mels: int = dsp.N_MELS
    floor: float = 1e-5


def is_silent(x: np.ndarray, silence_db: float = SILENCE_DB) -> bool:
    """Whether ``x`` is too quiet to be scored as a reference."""
    return dsp.rms_db(x) < silence_db


def _frames(n: int, window: int, hop: int) -> list[slice]:
    """museval's framing: full windows only (one window when the signal is shorter)."""
    if window >= n:
        return [slice(0, n)]
    count = (n - window + hop) // hop
    return [slice(t * hop, min(t * hop + window, n)) for t in range(count)]


def sdr_v4_frames(
    refs: np.ndarray, ests: np.ndarray, window: int, hop: int | None = None, eps: float = 0.0
) -> np.ndarray:
    """Framewise BSS-Eval v4 SDR (images version, museval).

    Parameters
    ----------
    refs, ests
        ``[S, C, N]`` references and estimates of the S sources.
    window, hop
        Frame length and hop in samples (museval's MUSDB setting: one second each).
    eps
        Added to numerator and denominator; ``0`` reproduces museval (``+inf`` for a perfect
        frame), the harness passes :data:`engine.dsp.EPS` so every value is finite.

    Returns
    -------
    np.ndarray
        ``[S, T]`` SDR per source and frame, NaN for frames where any reference or any estimate
        is all-zero (summed over channels), as museval does.
    """
    r = np.asarray(refs, dtype=np.float64)
    e = np.asarray(ests, dtype=np.float64)
    if r.ndim != 3 or r.shape != e.shape:
        raise ValueError(f"refs {r.shape} and ests {e.shape} must both be [S, C, N]")
    spans = _frames(r.shape[-1], window, hop or window)
    out = np.full((r.shape[0], len(spans)), np.nan)
    for t, span in enumerate(spans):
        rs, es = r[..., span], e[..., span]
        if _any_all_zero(rs) or _any_all_zero(es):
            continue
        num = np.sum(rs**2, axis=(1, 2)) + eps
        den = np.sum((es - rs) ** 2, axis=(1, 2)) + eps
        with np.errstate(divide="ignore"):
            out[:, t] = 10.0 * np.log10(num / den)
    return out


def _any_all_zero(x: np.ndarray) -> bool:
    return bool(np.any(np.all(np.sum(x, axis=1) == 0, axis=-1)))


def sdr_v4(
    refs: np.ndarray, ests: np.ndarray, window: int, hop: int | None = None, eps: float = dsp.EPS
) -> list[float | None]:
    """Median over frames of :func:`sdr_v4_frames` per source; ``None`` where no frame could be
    scored (the reference or estimate is digitally silent everywhere).
    """
    frames = sdr_v4_frames(refs, ests, window, hop, eps)
    return [
        float(np.median(row[~np.isnan(row)])) if np.any(~np.isnan(row)) else None for row in frames
    ]


def _mono(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return a.mean(axis=0) if a.ndim == 2 else a


def _trim(ref: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(ref.shape[-1], est.shape[-1])
    return ref[..., :n], est[..., :n]


def stft_magnitudes(
    x: np.ndarray, resolutions: Sequence[tuple[int, int]] = MRSTFT_RESOLUTIONS
) -> list[np.ndarray]:
    """``[F_r, T_r]`` magnitude spectrograms of the mono ``[N]`` signal, one per resolution."""
    mono = _mono(x)
    return [
        np.abs(dsp.stft(mono, n_fft, hop, pad_mode="constant", last_frame=True))
        for n_fft, hop in resolutions
    ]


def mrstft_from_magnitudes(
    ref: Sequence[np.ndarray], est: Sequence[np.ndarray], eps: float = 1e-7
) -> float:
    """:func:`mrstft_distance` from precomputed :func:`stft_magnitudes` (same length inputs)."""
    total = 0.0
    for sr, se in zip(ref, est, strict=True):
        t = min(sr.shape[-1], se.shape[-1])
        sr, se = sr[..., :t], se[..., :t]
        sc = np.linalg.norm(sr - se) / (np.linalg.norm(sr) + eps)
        mag = np.mean(np.abs(np.log(sr + eps) - np.log(se + eps)))
        total += float(sc + mag)
    return total / len(ref)


def mrstft_distance(
    ref: np.ndarray,
    est: np.ndarray,
    resolutions: Sequence[tuple[int, int]] = MRSTFT_RESOLUTIONS,
) -> float:
    """Multi-resolution STFT distance (lower is better; 0 for identical signals).

    Parameters
    ----------
    ref, est
        ``[N]`` or ``[C, N]`` (averaged to mono); compared over the shorter length.

    Returns
    -------
    float
        Mean over resolutions of ``|S - S_hat|_F / |S|_F + mean |log S - log S_hat|`` on
        magnitudes (``log(|S| + 1e-7)``).
    """
    r, e = _trim(_mono(ref), _mono(est))
    return mrstft_from_magnitudes(stft_magnitudes(r, resolutions), stft_magnitudes(e, resolutions))


def log_mel(x: np.ndarray, rate: int, config: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """``[n_mels, T]`` natural-log mel magnitude spectrogram of the mono ``[N]`` signal ``x``."""
    return dsp.log_mel(
        _mono(x),
        rate,
        n_fft=config.n_fft,
        hop=config.hop,
        n_mels=config.n_mels,
        power=1,
        floor=config.floor,
        pad_mode="constant",
        last_frame=True,
    )


def logmel_l1_from(ref_mel: np.ndarray, est_mel: np.ndarray) -> float:
    """:func:`logmel_l1` from precomputed :func:`log_mel` spectrograms."""
    t = min(ref_mel.shape[-1], est_mel.shape[-1])
    return float(np.mean(np.abs(ref_mel[:, :t] - est_mel[:, :t])))


def logmel_l1(
    ref: np.ndarray, est: np.ndarray, rate: int, config: LogMelConfig = LogMelConfig()
) -> float:
    """Mean absolute difference of :func:`log_mel` of ``ref`` and ``est`` (lower is better)."""
    r, e = _trim(_mono(ref), _mono(est))
    return logmel_l1_from(log_mel(r, rate, config), log_mel(e, rate, config))
