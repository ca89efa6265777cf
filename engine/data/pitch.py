"""Pitch tracking (YIN) for checking that rendered vocals sing the notes they were given."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import signal

from engine.data.song import Note

F64 = npt.NDArray[np.float64]


def yin(x: npt.NDArray[np.floating], rate: int, hop_s: float = 0.01) -> tuple[F64, F64]:
    """YIN pitch track: (frame times [T], f0 [T] in Hz, NaN where unvoiced)."""
    sr, w, fmin, fmax = 16_000, 1024, 60.0, 1000.0
    y = signal.resample_poly(np.asarray(x, np.float64), sr, rate)
    tmax, tmin, hop = int(sr / fmin), int(sr / fmax), int(hop_s * sr)
    w2 = w - tmax
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, (w // 2, w)), w)[::hop]
    frames = frames[: len(y) // hop]
    a = np.fft.rfft(frames[:, :w2], 2 * w)
    r = np.fft.irfft(np.conj(a) * np.fft.rfft(frames, 2 * w), 2 * w)[:, : tmax + 1]
    sq = np.cumsum(np.pad(frames**2, ((0, 0), (1, 0))), axis=1)
    d = sq[:, w2][:, None] + sq[:, w2 : w2 + tmax + 1] - sq[:, : tmax + 1] - 2 * r
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * np.arange(1, tmax + 1) / np.maximum(np.cumsum(d[:, 1:], 1), 1e-12)
    energy = np.sqrt(np.mean(frames[:, :w2] ** 2, axis=1))
    f0 = np.full(len(frames), np.nan)
    for i in np.nonzero(energy > 10 ** (-40 / 20) * energy.max())[0]:
        row = cmnd[i]
        below = np.nonzero(row[tmin:] < 0.1)[0]
        t = below[0] + tmin if len(below) else int(np.argmin(row[tmin:])) + tmin
        while t + 1 <= tmax and row[t + 1] < row[t]:
            t += 1
        if row[t] < 0.25 and 1 <= t < tmax:
            den = row[t - 1] - 2 * row[t] + row[t + 1]
            off = 0.5 * (row[t - 1] - row[t + 1]) / den if den else 0.0
            f0[i] = sr / (t + float(np.clip(off, -1, 1)))
    return np.arange(len(frames), dtype=np.float64) * hop_s, f0


def cents_off(y: npt.NDArray[np.floating], rate: int, notes: Sequence[Note]) -> tuple[F64, float]:
    """Cents from each voiced frame inside a note (edges trimmed) to that note's pitch, and
    the voiced fraction of those frames."""
    times, f0 = yin(y, rate)
    out, inside = [], 0
    for n in notes:
        sel = (times >= n.start + 0.12) & (times < n.start + n.duration - 0.05)
        inside += int(sel.sum())
        v = f0[sel][~np.isnan(f0[sel])]
        out.append(1200 * np.log2(v / (440.0 * 2 ** ((n.pitch - 69) / 12))))
    cents = np.concatenate(out)
    return cents, len(cents) / inside
