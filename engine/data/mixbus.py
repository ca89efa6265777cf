"""Mix-bus glue compression and mastering limiter that keep ``mixture == sum(stems)``.

A record's master bus processes the *sum* of the tracks, and its compressor and limiter react to
that sum. We compute their gain curves from the mixture and apply the same time-varying gain to
every stem, so the processed stems still add up to the processed mixture:

    m(t)      = sum_i s_i(t)                               # [2, N], stereo-linked detection
    g_c(t)    = glue compressor gain computed from m        # [N], <= 1
    G         = make-up (drive) gain, solved for the target loudness
    g_l(t)    = look-ahead brick-wall limiter gain from G g_c m, keeping |.| <= ceiling
    s_i'(t)   = round24(G g_c(t) g_l(t) s_i(t))             # each stem
    mixture'  = sum_i s_i'(t)                               # exact on the 24-bit grid

A gain curve is linear in the signal, so ``sum_i g s_i = g sum_i s_i``; the only difference from
mastering the mixture itself is that nothing non-linear (clipping, saturation) runs on the sum.

- Compressor: RMS detector over ``CONTROL`` samples (1.3 ms at 48 kHz), soft knee, ratio and
  threshold drawn per song, attack/release smoothing of the gain reduction.
- Limiter: required gain ``min(1, ceiling / max_c |x_c(t)|)``, a minimum filter over the
  look-ahead window then a moving average of the same length (the average of minima over
  windows that all contain ``t`` is never above the gain ``t`` needs, so the ceiling holds
  exactly), and a release at the control rate that only lets the gain rise slowly.
- Loudness: ITU-R BS.1770-4 (:mod:`engine.data.loudness`); ``G`` is found by a few secant steps
  on ``L(G) - target`` (loudness grows ever more slowly with drive once the limiter works).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from engine.data.loudness import integrated_loudness

F64 = npt.NDArray[np.float64]
CONTROL = 64  # samples per control-rate step of the detectors
TOLERANCE_LU = 0.1  # the drive search stops this close to the target


@dataclass(frozen=True)
class BusParams:
    """What is drawn for one song's master bus (levels in dB; the manifest record)."""

    target_lufs: float
    comp_threshold_db: float  # relative to the mixture's loud-passage RMS level
    comp_ratio: float
    comp_knee_db: float
    comp_attack_ms: float
    comp_release_ms: float
    ceiling_db: float  # limiter ceiling, dBFS sample peak
    lookahead_ms: float
    limit_release_ms: float


def draw_bus(rng: np.random.Generator, loud: tuple[float, float]) -> BusParams:
    """Master-bus settings; ``loud`` is the (low, high) integrated-loudness range in LUFS."""
    return BusParams(
        target_lufs=float(rng.uniform(*loud)),
        comp_threshold_db=float(rng.uniform(-10.0, -2.0)),
        comp_ratio=float(rng.uniform(1.5, 4.0)),
        comp_knee_db=float(rng.uniform(3.0, 9.0)),
        comp_attack_ms=float(rng.uniform(5.0, 30.0)),
        comp_release_ms=float(rng.uniform(80.0, 400.0)),
        ceiling_db=float(rng.uniform(-1.0, -0.2)),
        lookahead_ms=float(rng.uniform(1.5, 5.0)),
        limit_release_ms=float(rng.uniform(30.0, 200.0)),
    )


def _coef(ms: float, rate: int) -> float:
    """One-pole smoothing coefficient per control step for a time constant of ``ms``."""
    return math.exp(-CONTROL / (max(ms, 1e-3) * 1e-3 * rate))


def _to_samples(ctrl: F64, n: int) -> F64:
    """Control-rate curve (one value per ``CONTROL`` block, at the block centre) -> ``[n]``."""
    centres = np.arange(ctrl.size) * CONTROL + (CONTROL - 1) / 2.0
    return np.interp(np.arange(n), centres, ctrl)


def _block_power(mix: F64) -> F64:
    """Mean square of the stereo-linked signal per control block: ``[ceil(N / CONTROL)]``."""
    n = mix.shape[-1]
    pad = (-n) % CONTROL
    p = np.pad(np.mean(mix * mix, axis=0), (0, pad))
    return np.asarray(p.reshape(-1, CONTROL).mean(axis=1))


def _loud_rms_db(power: F64) -> float:
    """RMS level (dB) of the loudest quarter of ~10 ms windows: the "loud passage" level."""
    win = np.convolve(power, np.ones(8) / 8, mode="valid") if power.size >= 8 else power
    if not np.any(win > 0):
        return -120.0
    return 10.0 * math.log10(float(np.quantile(win[win > 0], 0.75)))


def compressor_gain(mix: F64, p: BusParams, rate: int) -> F64:
    """Glue compressor gain ``[N]`` (<= 1) from the mixture ``[2, N]``."""
    power = _block_power(mix)
    level = 10.0 * np.log10(np.maximum(power, 1e-12))
    thr, knee, slope = (
        _loud_rms_db(power) + p.comp_threshold_db,
        p.comp_knee_db,
        1 - 1 / p.comp_ratio,
    )
    over = level - thr
    reduction = np.where(
        over <= -knee / 2,
        0.0,
        np.where(over >= knee / 2, slope * over, slope * (over + knee / 2) ** 2 / (2 * knee)),
    )
    att, rel = _coef(p.comp_attack_ms, rate), _coef(p.comp_release_ms, rate)
    smooth = np.empty_like(reduction)
    state = 0.0
    for k, target in enumerate(reduction.tolist()):
        a = att if target > state else rel
        state = a * state + (1.0 - a) * target
        smooth[k] = state
    return _to_samples(10.0 ** (-smooth / 20.0), mix.shape[-1])


def limiter_gain(peak: F64, ceiling: float, lookahead: int, release_ms: float, rate: int) -> F64:
    """Brick-wall gain ``[N]`` so that ``peak * gain <= ceiling`` everywhere.

    ``peak`` ``[N]`` is the sample peak over every channel the limiter watches.
    """
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    w = max(1, lookahead)
    # minimum over [t, t + w - 1], then the mean over [t - w + 1, t]: both windows contain t
    ahead = _min_forward(need, w)
    csum = np.concatenate([[0.0], np.cumsum(ahead)])
    idx = np.arange(need.size)
    lo = np.maximum(idx - w + 1, 0)
    avg = (csum[idx + 1] - csum[lo]) / (idx + 1 - lo)
    pad = (-need.size) % CONTROL
    blocks = np.pad(avg, (0, pad), constant_values=1.0).reshape(-1, CONTROL).min(axis=1)
    rel = _coef(release_ms, rate)
    env = np.empty_like(blocks)
    state = 1.0
    for k, b in enumerate(blocks.tolist()):
        state = b if b < state else rel * state + (1.0 - rel) * b
        env[k] = state
    return np.minimum(avg, _to_samples(env, need.size))


def _min_forward(x: F64, w: int) -> F64:
    """``out[t] = min(x[t : t + w])`` (the window shortened at the end)."""
    padded = np.concatenate([x, np.ones(w - 1)])
    return np.asarray(ndimage.minimum_filter1d(padded, w, origin=-(w // 2))[: x.size])


@dataclass(frozen=True)
class BusResult:
    gain: F64  # [N] the shared gain curve, drive included
    loudness: float  # LUFS of gain * mixture
    drive_db: float
    comp_max_db: float  # deepest glue-compressor reduction
    limit_max_db: float  # deepest limiter reduction


def master_gain(
    mix: F64, p: BusParams, rate: int, *, stems: Sequence[F64] = (), iterations: int = 8
) -> BusResult:
    """The shared gain curve that brings ``mix`` ``[2, N]`` to ``p.target_lufs``.

    The limiter keeps the mixture *and* every one of ``stems`` (``[2, N]`` each) under the
    ceiling, so no stem can clip when written (stems that partly cancel in the sum can peak
    above it).
    """
    gc = compressor_gain(mix, p, rate)
    glued = mix * gc
    peak = np.max([np.abs(a).max(axis=0) for a in (mix, *stems)], axis=0) * gc
    base = integrated_loudness(glued, rate)
    ceiling = 10.0 ** (p.ceiling_db / 20.0)
    look = max(1, round(p.lookahead_ms * 1e-3 * rate))
    if not math.isfinite(base):
        return BusResult(np.ones(mix.shape[-1]), base, 0.0, 0.0, 0.0)

    def attempt(drive_db: float) -> tuple[F64, float]:
        g = 10.0 ** (drive_db / 20.0)
        gl = limiter_gain(peak * g, ceiling, look, p.limit_release_ms, rate)
        return gl, integrated_loudness(glued * (g * gl), rate)

    d0 = p.target_lufs - base
    gl, l0 = attempt(d0)
    d1 = d0 + (p.target_lufs - l0)
    for _ in range(iterations):
        if abs(l0 - p.target_lufs) <= TOLERANCE_LU:
            d1 = d0
            break
        gl1, l1 = attempt(d1)
        if abs(l1 - p.target_lufs) <= TOLERANCE_LU or abs(l1 - l0) < 1e-6:
            d0, l0, gl = d1, l1, gl1
            break
        slope = max((l1 - l0) / (d1 - d0), 0.05) if d1 != d0 else 1.0
        d0, l0, gl = d1, l1, gl1
        d1 = d1 + float(np.clip((p.target_lufs - l1) / slope, -12.0, 12.0))
    gain = gc * gl * 10.0 ** (d0 / 20.0)
    return BusResult(
        gain=gain,
        loudness=l0,
        drive_db=d0,
        comp_max_db=float(-20.0 * np.log10(gc.min())),
        limit_max_db=float(-20.0 * np.log10(max(gl.min(), 1e-12))),
    )
