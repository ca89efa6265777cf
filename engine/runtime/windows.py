"""Windows of a long signal and their crossfaded overlap-add (numpy, outside the graphs).

::

    |---- window 0 ----|
                |---- window 1 ----|            hop = window - overlap
                       |---- window 2 ----|   (the last one ends at the end; only a song
                                              shorter than one window is zero-padded)
    weights:  ___/‾‾‾‾‾‾‾‾‾\\___  raised-cosine ramps over the overlap, never exactly zero

The sum of the weighted windows is divided by the sum of the weights, so a signal cut into
windows and put back unchanged comes out exactly (no clicks, no level bumps at the seams).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_FLOOR = 1e-3  # weights never reach zero, so every sample has a defined average


@dataclass(frozen=True)
class Plan:
    """Window starts ``[n_windows]`` for a signal of ``length`` samples."""

    length: int
    window: int
    hop: int
    starts: np.ndarray

    @property
    def padded(self) -> int:
        """Samples the windows cover (``>= length``)."""
        return int(self.starts[-1]) + self.window

    @property
    def n_windows(self) -> int:
        return len(self.starts)


def plan(length: int, window: int, overlap: int) -> Plan:
    """Windows of ``window`` samples overlapping by ``overlap`` that cover ``length`` samples."""
    if not 0 <= overlap < window:
        raise ValueError(f"overlap {overlap} must lie in [0, {window})")
    hop = window - overlap
    n = 1 + max(0, -(-(length - window) // hop))
    starts = np.arange(n, dtype=np.int64) * hop
    if n > 1:  # the last window ends at the end (it overlaps its neighbour more): no padding
        starts[-1] = length - window
    return Plan(length, window, hop, starts)


def weights(window: int, overlap: int) -> np.ndarray:
    """Crossfade weights ``[window]``: raised-cosine ramps of ``overlap`` samples at both ends."""
    w = np.ones(window, np.float32)
    if overlap:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
        w[:overlap] = np.maximum(ramp, _FLOOR)
        w[-overlap:] = np.maximum(ramp[::-1], _FLOOR)
    return w


def cut(x: np.ndarray, p: Plan, first: int, count: int) -> np.ndarray:
    """Windows ``first .. first + count`` of ``x`` ``[..., N]`` -> ``[count, ..., window]``
    (zeros past the end)."""
    out = np.zeros((count, *x.shape[:-1], p.window), np.float32)
    for j in range(count):
        s = int(p.starts[first + j])
        piece = x[..., s : s + p.window]
        out[j, ..., : piece.shape[-1]] = piece
    return out


class OverlapAdd:
    """Accumulates weighted windows ``[..., window]`` into ``[..., padded]``."""

    def __init__(self, p: Plan, lead: tuple[int, ...], overlap: int) -> None:
        self.plan = p
        self.w = weights(p.window, overlap)
        self.sum = np.zeros((*lead, p.padded), np.float32)
        self.norm = np.zeros(p.padded, np.float32)

    def add(self, index: int, y: np.ndarray) -> None:
        """Window ``index`` ``[..., n]`` (``n <= window``: a short last piece needs no padding)."""
        s, n = int(self.plan.starts[index]), y.shape[-1]
        self.sum[..., s : s + n] += y * self.w[:n]
        self.norm[s : s + n] += self.w[:n]

    def result(self) -> np.ndarray:
        """The average ``[..., length]`` (the accumulator is reused, not copied)."""
        self.sum /= np.maximum(self.norm, 1e-12)
        return self.sum[..., : self.plan.length]
