"""Measurements of produced audio: ITU-R BS.1770-4 loudness, crest factor, spectral centroid.

:func:`integrated_loudness` follows BS.1770-4 (no package needed; ``pyloudnorm`` is not in the
venv): the K-weighting pre-filter (a high shelf of about +4 dB above 1.5 kHz, then a high-pass
near 38 Hz; the two biquads are designed for any rate with the bilinear transform, which gives
the standard's 48 kHz coefficients), mean square per channel over 400 ms blocks with 75 %
overlap, channel weights 1 (left, right, centre), an absolute gate at -70 LUFS and a relative
gate 10 LU under the loudness of the blocks that passed it:

    L = -0.691 + 10 log10(sum_c G_c * mean_over_gated_blocks(z_c))

A 997 Hz sine peaking at full scale in both channels of a stereo file measures 0.0 LUFS (one
channel alone: -3.01), the standard's calibration.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import signal

F64 = npt.NDArray[np.float64]
SILENT = -math.inf  # loudness of audio with no block above the absolute gate
ABSOLUTE_GATE = -70.0  # LUFS
RELATIVE_GATE = -10.0  # LU under the absolutely gated loudness
BLOCK_S, STEP_S = 0.4, 0.1  # 400 ms gating blocks, 75 % overlap


def k_weighting(rate: int) -> F64:
    """The two K-weighting biquads at ``rate`` as second-order sections ``[2, 6]``.

    Analogue prototypes (as in the standard's 48 kHz coefficients, and libebur128/pyloudnorm):
    shelf at 1681.97 Hz, +3.99984 dB, Q 0.7072; high-pass at 38.1355 Hz, Q 0.5003.
    """
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [
        (vh + vb * k / q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / q + k * k) / a0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / q + k * k) / a0,
    ]
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1.0 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf, highpass], dtype=np.float64)


def block_powers(audio: npt.ArrayLike, rate: int) -> F64:
    """K-weighted mean square of every 400 ms block (75 % overlap), summed over channels: ``[B]``.

    ``audio`` is ``[C, N]`` or mono ``[N]`` (weights 1: mono, stereo and 3.0 layouts only).
    """
    x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    y = signal.sosfilt(k_weighting(rate), x, axis=-1)
    block, step = round(BLOCK_S * rate), round(STEP_S * rate)
    if y.shape[-1] < block:
        return np.zeros(0)
    csum = np.concatenate([np.zeros((y.shape[0], 1)), np.cumsum(y * y, axis=-1)], axis=-1)
    starts = np.arange(0, y.shape[-1] - block + 1, step)
    z = (csum[:, starts + block] - csum[:, starts]) / block  # [C, B]
    return np.asarray(z.sum(axis=0))


def _lufs(power: F64 | float) -> F64:
    return np.asarray(-0.691 + 10.0 * np.log10(np.maximum(power, 1e-30)))


def integrated_loudness(audio: npt.ArrayLike, rate: int) -> float:
    """BS.1770-4 integrated loudness of ``[C, N]`` (or ``[N]``) in LUFS; -inf when silent."""
    z = block_powers(audio, rate)
    z = z[_lufs(z) > ABSOLUTE_GATE]
    if z.size == 0:
        return SILENT
    relative = float(_lufs(z.mean())) + RELATIVE_GATE
    z = z[_lufs(z) > relative]
    return float(_lufs(z.mean()))


def crest_factor_db(audio: npt.ArrayLike) -> float:
    """Sample peak over RMS (all channels together), in dB; 0 for silence."""
    x = np.asarray(audio, dtype=np.float64)
    rms = math.sqrt(float(np.mean(x * x))) if x.size else 0.0
    return 20.0 * math.log10(float(np.abs(x).max()) / rms) if rms > 0.0 else 0.0


def spectral_centroid_hz(audio: npt.ArrayLike, rate: int, n_fft: int = 4096) -> float:
    """Power-weighted mean frequency of the channel-averaged signal (Welch spectrum), in Hz."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim > 1:
        x = x.mean(axis=0)
    if x.size < 16 or not np.any(x):
        return 0.0
    f, p = signal.welch(x, rate, nperseg=min(n_fft, x.size))
    return float((f * p).sum() / p.sum()) if p.sum() > 0 else 0.0
