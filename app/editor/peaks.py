"""Waveform peaks: min/max of a signal at bucket sizes 64, 256, 1024, ... samples.

A view asks for ``width`` pixels of ``spp`` samples each; :meth:`Peaks.span` reduces the finest
level whose buckets fit in a pixel (the raw samples when zoomed in closer than 64 per pixel), so a
redraw touches about ``width * 4`` values at any zoom, for a 10-minute song too.
"""

from __future__ import annotations

import numpy as np

BASE = 64
FACTOR = 4


def _fold(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-bucket min and max ``[ceil(N / size)]`` of ``x`` ``[C, N]`` over channels."""
    c, n = x.shape
    full = n // size
    lo = np.empty(full + (n % size > 0), np.float32)
    hi = np.empty_like(lo)
    for i in range(c):
        body = x[i, : full * size].reshape(full, size)
        mn, mx = body.min(axis=1), body.max(axis=1)
        if n % size:
            mn = np.append(mn, x[i, full * size :].min())
            mx = np.append(mx, x[i, full * size :].max())
        lo = mn if i == 0 else np.minimum(lo, mn)
        hi = mx if i == 0 else np.maximum(hi, mx)
    return lo, hi


class Peaks:
    """Multi-resolution peaks of one signal ``[C, N]`` (channels folded together)."""

    def __init__(self, audio: np.ndarray) -> None:
        self.audio = audio if audio.ndim == 2 else audio[None]
        self.length = int(self.audio.shape[1])
        lo, hi = _fold(self.audio, BASE) if self.length else (np.zeros(1), np.zeros(1))
        self.levels: list[tuple[int, np.ndarray, np.ndarray]] = [(BASE, lo, hi)]
        while self.levels[-1][1].size > 2 * FACTOR:
            size, lo, hi = self.levels[-1]
            n = -(-lo.size // FACTOR) * FACTOR
            lo = np.pad(lo, (0, n - lo.size), mode="edge").reshape(-1, FACTOR).min(axis=1)
            hi = np.pad(hi, (0, n - hi.size), mode="edge").reshape(-1, FACTOR).max(axis=1)
            self.levels.append((size * FACTOR, lo, hi))

    def refresh(self, start: int, stop: int) -> None:
        """Recompute the buckets over samples ``[start, stop)`` after the audio changed there."""
        a, b = start // BASE, -(-min(stop, self.length) // BASE)
        for i, (_size, lo, hi) in enumerate(self.levels):
            if i == 0:
                lo[a:b], hi[a:b] = _fold(self.audio[:, a * BASE : b * BASE], BASE)
            else:
                below_lo, below_hi = self.levels[i - 1][1], self.levels[i - 1][2]
                a, b = a // FACTOR, -(-b // FACTOR)
                for j in range(a, min(b, lo.size)):
                    part = slice(j * FACTOR, (j + 1) * FACTOR)
                    lo[j], hi[j] = below_lo[part].min(), below_hi[part].max()

    def _level(self, spp: float) -> tuple[int, np.ndarray, np.ndarray] | None:
        best = None
        for level in self.levels:
            if level[0] <= spp:
                best = level
        return best

    def span(self, start: float, spp: float, width: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Min and max ``[width]`` of pixels ``i`` covering samples ``start + i * spp`` up to
        ``start + (i + 1) * spp`` (exact from the samples below 64 per pixel, else from whole
        buckets, so a pixel may also show up to one bucket of its neighbours); also how many
        pixels hold audio (the rest are zero)."""
        lo_out = np.zeros(width, np.float32)
        hi_out = np.zeros(width, np.float32)
        level = self._level(spp)
        if level is None:  # raw samples: fold the visible slice only
            s0 = max(0, int(start))
            s1 = min(self.length, int(np.ceil(start + spp * width)) + 1)
            if s1 <= s0:
                return lo_out, hi_out, 0
            lo, hi = _fold(self.audio[:, s0:s1], 1)
            size, offset = 1, s0
        else:
            size, lo, hi = level
            offset = 0
        edges = np.floor((start + np.arange(width + 1) * spp) / size).astype(np.int64) - offset
        valid = int(np.count_nonzero((edges[:-1] >= 0) & (edges[:-1] < lo.size)))
        if valid:
            idx = np.clip(edges[:valid], 0, lo.size - 1)
            stop = max(int(idx[-1]) + 1, min(lo.size, int(edges[valid])))  # end of last pixel
            lo_out[:valid] = np.minimum.reduceat(lo[:stop], idx)
            hi_out[:valid] = np.maximum.reduceat(hi[:stop], idx)
            if size > 1:  # a pixel's last samples may lie in the bucket where the next one starts
                nxt = np.clip(edges[1 : valid + 1], 0, lo.size - 1)
                np.minimum(lo_out[:valid], lo[nxt], out=lo_out[:valid])
                np.maximum(hi_out[:valid], hi[nxt], out=hi_out[:valid])
        return lo_out, hi_out, valid
