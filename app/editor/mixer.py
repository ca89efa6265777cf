"""The stem mixer: solo/mute/gain/pan -> per-stem channel gains, applied with click-free ramps.

Pure numpy, no Qt. :meth:`Mixer.render_into` is the only mixing function: the audio callback calls
it block by block and Export calls it over the whole song, so the remix you hear is the remix
Export writes. The master bus is stereo; a mono stem feeds both sides.

Gains change by at most ``1 / ramp`` per sample (a slew limiter), so toggling mute or solo fades
over ``ramp`` samples (10 ms at 48 kHz) instead of jumping::

    gain  1 ‾‾‾‾‾‾\\                 /‾‾‾‾‾
               ramp\\_______________/ramp        mute on ... mute off
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_DB = -60.0  # at or below: silence
MAX_DB = 12.0
OUT_CHANNELS = 2
DEFAULT_BLOCK = 8192


@dataclass(frozen=True)
class Strip:
    """One stem's mixer settings: gain in dB, pan in [-1 (left), 1 (right)], mute, solo."""

    gain_db: float = 0.0
    pan: float = 0.0
    mute: bool = False
    solo: bool = False


def db_to_gain(db: float) -> float:
    """Linear gain of ``db`` (0 at or below :data:`MIN_DB`, capped at :data:`MAX_DB`)."""
    return 0.0 if db <= MIN_DB else float(10 ** (min(db, MAX_DB) / 20))


def pan_gains(pan: float) -> tuple[float, float]:
    """Balance law: unity on both sides at the centre, the far side fades out linearly, so a
    centred remix at 0 dB is the mixture exactly."""
    p = min(1.0, max(-1.0, pan))
    return 1.0 - max(p, 0.0), 1.0 + min(p, 0.0)


def audible(strips: Sequence[Strip]) -> list[bool]:
    """Which stems sound: soloed ones when any is soloed, else the unmuted; mute always wins."""
    any_solo = any(s.solo for s in strips)
    return [not s.mute and (s.solo or not any_solo) for s in strips]


def channel_gains(strips: Sequence[Strip], master_db: float = 0.0) -> np.ndarray:
    """Gains ``[S, 2]`` (left, right) of each stem on the master bus."""
    master = db_to_gain(master_db)
    out = np.zeros((len(strips), OUT_CHANNELS), np.float32)
    for i, (s, on) in enumerate(zip(strips, audible(strips), strict=True)):
        if on:
            out[i] = np.multiply(pan_gains(s.pan), db_to_gain(s.gain_db) * master)
    return out


class Mixer:
    """Mixes stems ``[S, C, N]`` onto a stereo bus with slew-limited gains.

    Parameters
    ----------
    stems : ``[S, C, N]`` float32 (C = 1 feeds both sides; C > 2 uses the first two channels).
    rate : sample rate in Hz (sets the default ramp of 10 ms).
    block : the most frames one :meth:`render_into` call mixes at once (scratch is preallocated).
    """

    def __init__(self, stems: np.ndarray, rate: int, block: int = DEFAULT_BLOCK) -> None:
        self.stems = np.ascontiguousarray(stems, dtype=np.float32)
        self.rate, self.block = rate, block
        s = self.stems.shape[0]
        self.length = int(self.stems.shape[2])
        self._nc = min(self.stems.shape[1], OUT_CHANNELS)
        self._target = np.ones((s, OUT_CHANNELS), np.float32)  # swapped whole by the GUI
        self.current = self._target.copy()
        self._gain = np.empty(block, np.float32)
        self._scratch = np.empty(block, np.float32)
        self.set_ramp(max(1, rate // 100))

    def copy(self) -> Mixer:
        """A mixer over the same stems with the same targets, settled (for offline renders)."""
        twin = Mixer(self.stems, self.rate, self.block)
        twin._target = self._target.copy()
        twin.settle()
        return twin

    def set_ramp(self, samples: int) -> None:
        """Gains move by at most ``1 / samples`` per sample."""
        self.ramp = samples
        self._up = (np.arange(1, self.block + 1, dtype=np.float32) / samples).astype(np.float32)
        self._down = -self._up

    def set_strips(self, strips: Sequence[Strip], master_db: float = 0.0) -> None:
        """New targets (GUI thread): one reference swap, which the callback reads once a block."""
        self._target = channel_gains(strips, master_db)

    @property
    def target(self) -> np.ndarray:
        return self._target

    def settle(self) -> None:
        """Jump to the targets (before an offline render, or while stopped)."""
        self.current[:] = self._target

    def render_into(self, out: np.ndarray, start: int) -> None:
        """Mix frames ``start .. start + n`` into ``out`` ``[2, n]`` (zeros past the end).

        Allocates no audio buffers: only one-dimensional numpy calls on preallocated scratch (a
        multi-dimensional broadcast would make numpy allocate an iteration buffer).
        """
        for a in range(0, out.shape[1], self.block):
            self._render_block(out[:, a : a + self.block], start + a)

    def _render_block(self, out: np.ndarray, start: int) -> None:
        n = out.shape[1]
        avail = max(0, min(n, self.length - start))
        out[0, :] = 0.0
        out[1, :] = 0.0
        target = self._target  # read once: the GUI may swap it at any time
        for s in range(self.stems.shape[0]):
            for c in range(OUT_CHANNELS):
                gain = self._ramp_gain(s, c, float(target[s, c]), n)
                if avail and (gain is None or gain != 0.0):
                    self._add(
                        out[c, :avail],
                        self.stems[s, min(c, self._nc - 1), start : start + avail],
                        gain,
                        avail,
                    )

    def _ramp_gain(self, s: int, c: int, target: float, n: int) -> float | None:
        """A constant gain (settled), or None with the ramp of this block in ``_gain[:n]``."""
        cur = float(self.current[s, c])
        if cur == target:
            return cur
        diff, g = target - cur, self._gain[:n]
        if diff > 0:
            np.minimum(self._up[:n], diff, out=g)
        else:
            np.maximum(self._down[:n], diff, out=g)
        g += cur
        self.current[s, c] = target if abs(diff) <= n / self.ramp else g[n - 1]
        return None

    def _add(self, out: np.ndarray, x: np.ndarray, gain: float | None, n: int) -> None:
        tmp = self._scratch[:n]
        if gain is None:
            np.multiply(self._gain[:n], x, out=tmp)
        else:
            np.multiply(x, gain, out=tmp)
        np.add(out, tmp, out=out)

    def render(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The settled remix ``[2, stop - start]`` (what Export writes), block by block through
        :meth:`render_into`."""
        stop = self.length if stop is None else stop
        self.settle()
        out = np.zeros((OUT_CHANNELS, max(0, stop - start)), np.float32)
        self.render_into(out, start)
        return out
