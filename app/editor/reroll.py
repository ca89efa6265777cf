"""Re-roll a region: the region (plus a margin each side) is separated again with another seed and
crossfaded into the stems with raised-cosine ramps over the margins; both takes are kept until the
user chooses one.

::

    weight of the new take   0 ___/‾‾‾‾‾‾‾‾‾‾‾‾‾\\___ 0
                             |fade| region |fade|       (aligned stems still sum to the mix)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FADE_S = 0.25


@dataclass
class Take:
    """A re-rolled span ``[start, stop)`` (frames) with both versions ``[S, C, n]``."""

    start: int
    stop: int
    fade: int
    seed: int
    old: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))
    new: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))
    using_new: bool = True
    conf_at: int = 0  # first confidence frame of the take
    conf_old: dict[str, np.ndarray] = field(default_factory=dict)
    conf_new: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def plan(cls, a: int, b: int, rate: int, frames: int, seed: int) -> Take:
        """The span to separate for region ``[a, b)``: the region widened by the fade."""
        a, b = sorted((max(0, a), min(frames, b)))
        fade = int(FADE_S * rate)
        return cls(max(0, a - fade), min(frames, b + fade), fade, seed)

    def seconds(self, rate: int) -> str:
        return f"{self.start / rate:.2f}-{self.stop / rate:.2f} s"

    def apply(self, bank: np.ndarray, new: bool, confidence: dict[str, np.ndarray]) -> None:
        """Put one take into ``bank`` ``[S, C, N]`` (and its frames into ``confidence``)."""
        bank[:, :, self.start : self.stop] = self.new if new else self.old
        for name, frames in (self.conf_new if new else self.conf_old).items():
            confidence[name][self.conf_at : self.conf_at + frames.size] = frames
        self.using_new = new

    def blend_confidence(
        self, old: dict[str, np.ndarray], fresh: dict[str, np.ndarray], frames_per_sample: float
    ) -> None:
        """Keep both takes' confidence frames over the take (the new ones from ``fresh``)."""
        self.conf_at = round(self.start * frames_per_sample)
        for name, now in old.items():
            if name in fresh:
                n = max(0, min(fresh[name].size, now.size - self.conf_at))
                self.conf_old[name] = now[self.conf_at : self.conf_at + n].copy()
                self.conf_new[name] = fresh[name][:n].astype(np.float32)


def weights(n: int, fade: int, open_start: bool, open_stop: bool) -> np.ndarray:
    """``[n]`` weights of the new take: ramps of ``fade`` at each end that is not the song's."""
    w = np.ones(n, np.float32)
    f = min(fade, n // 2)
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(f) + 0.5) / max(f, 1))).astype(np.float32)
    if not open_start:
        w[:f] = ramp
    if not open_stop:
        w[n - f :] = ramp[::-1]
    return w


def blend(take: Take, bank: np.ndarray, fresh: np.ndarray) -> Take:
    """Fill ``take`` with the old span of ``bank`` ``[S, C, N]`` and the crossfaded new one."""
    old = bank[:, :, take.start : take.stop].copy()
    n = old.shape[2]
    w = weights(n, take.fade, take.start == 0, take.stop == bank.shape[2])
    take.old, take.new = old, (old + (fresh[:, :, :n] - old) * w).astype(np.float32)
    return take
