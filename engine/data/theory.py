"""Just enough music theory for the song writer and the MIDI importer.

Pitches are MIDI note numbers, pitch classes (pc) are 0..11 with 0 = C. Scale degrees are 0-based
(degree 0 is the tonic), so a progression ``(0, 4, 5, 3)`` is I–V–vi–IV in major and i–v–VI–iv in
minor: chords are always built from the mode's own scale by stacking thirds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

NOTE_NAMES: Final[tuple[str, ...]] = (
    "C",
    "C#",
    "D",
    "Eb",
    "E",
    "F",
    "F#",
    "G",
    "Ab",
    "A",
    "Bb",
    "B",
)

#: Intervals of each mode above its tonic, in semitones.
MODES: Final[dict[str, tuple[int, ...]]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
}

#: Well-worn progressions per mode, as 0-based scale degrees (one chord per harmonic step).
PROGRESSIONS: Final[dict[str, tuple[tuple[int, ...], ...]]] = {
    "major": (
        (0, 4, 5, 3),
        (0, 5, 3, 4),
        (5, 3, 0, 4),
        (0, 3, 4, 3),
        (0, 3, 0, 4),
        (1, 4, 0, 0),
        (0, 3, 5, 4),
        (0, 2, 3, 4),
        (3, 0, 4, 5),
        (0, 0, 3, 4),
    ),
    "minor": (
        (0, 5, 2, 6),
        (0, 3, 4, 0),
        (0, 6, 5, 6),
        (0, 5, 3, 4),
        (0, 3, 6, 2),
        (0, 2, 6, 3),
        (5, 6, 0, 0),
        (0, 3, 0, 4),
    ),
    "dorian": ((0, 3), (0, 3, 0, 4), (0, 2, 3, 0), (0, 6, 3, 0), (0, 1, 0, 3)),
    "mixolydian": ((0, 6, 3, 0), (0, 3, 6, 3), (0, 6, 0, 3), (0, 4, 6, 3)),
    "lydian": ((0, 1), (0, 1, 4, 0), (0, 1, 5, 4)),
    "phrygian": ((0, 1), (0, 1, 6, 1), (0, 6, 5, 1)),
}

_QUALITY: Final[dict[tuple[int, ...], str]] = {
    (4, 7): "",
    (3, 7): "m",
    (3, 6): "dim",
    (4, 8): "aug",
    (4, 7, 11): "maj7",
    (4, 7, 10): "7",
    (3, 7, 10): "m7",
    (3, 6, 10): "m7b5",
    (3, 7, 11): "mMaj7",
    (3, 6, 9): "dim7",
    (4, 8, 11): "augMaj7",
}

# Krumhansl–Kessler key profiles (probe-tone ratings), index 0 = tonic.
_KK_MAJOR: Final = np.array(
    [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]
)
_KK_MINOR: Final = np.array(
    [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]
)


@dataclass(frozen=True)
class Key:
    """A tonic pitch class and a mode name from :data:`MODES`."""

    tonic: int
    mode: str

    @property
    def name(self) -> str:
        return f"{NOTE_NAMES[self.tonic % 12]} {self.mode}"

    @property
    def scale(self) -> tuple[int, ...]:
        """Pitch classes of the scale, tonic first."""
        return tuple((self.tonic + i) % 12 for i in MODES[self.mode])

    def degree_pc(self, degree: int) -> int:
        return self.scale[degree % 7]

    def snap(self, pitch: int) -> int:
        """The scale pitch nearest to ``pitch`` (ties go down)."""
        for delta in (0, -1, 1, -2, 2):
            if (pitch + delta) % 12 in self.scale:
                return pitch + delta
        raise AssertionError("every pitch is within 2 semitones of a heptatonic scale")

    def step(self, pitch: int, steps: int) -> int:
        """Move ``pitch`` (snapped to the scale first) by ``steps`` scale degrees."""
        pitch = self.snap(pitch)
        direction = 1 if steps > 0 else -1
        for _ in range(abs(steps)):
            pitch += direction
            while pitch % 12 not in self.scale:
                pitch += direction
        return pitch


@dataclass(frozen=True)
class Chord:
    """A chord: its root pitch class and all its pitch classes (root first, stacked thirds)."""

    root: int
    pcs: tuple[int, ...]
    degree: int = 0

    @property
    def name(self) -> str:
        intervals = tuple((pc - self.root) % 12 for pc in self.pcs[1:])
        return NOTE_NAMES[self.root] + _QUALITY.get(intervals, "?")

    @property
    def fifth(self) -> int:
        return self.pcs[2] if len(self.pcs) > 2 else (self.root + 7) % 12

    def pitches(self, low: int, high: int) -> list[int]:
        """All chord tones between ``low`` and ``high`` inclusive, ascending."""
        return [p for p in range(low, high + 1) if p % 12 in self.pcs]

    def nearest(self, pitch: int, low: int, high: int) -> int:
        """The chord tone in ``[low, high]`` nearest to ``pitch`` (ties go down)."""
        tones = self.pitches(low, high)
        if not tones:
            raise ValueError(f"no tone of {self.name} between {low} and {high}")
        return min(tones, key=lambda p: (abs(p - pitch), p))


def diatonic_chord(
    key: Key, degree: int, *, seventh: bool = False, raise_third: bool = False
) -> Chord:
    """The chord on ``degree`` of ``key`` made of scale thirds.

    ``raise_third`` makes a minor chord major (the harmonic-minor dominant in a minor key).
    """
    count = 4 if seventh else 3
    pcs = [key.degree_pc(degree + 2 * i) for i in range(count)]
    if raise_third and (pcs[1] - pcs[0]) % 12 == 3:
        pcs[1] = (pcs[1] + 1) % 12
    return Chord(root=pcs[0], pcs=tuple(pcs), degree=degree % 7)


def random_progression(
    rng: np.random.Generator, length: int = 4, *, avoid: tuple[int, ...] = ()
) -> tuple[int, ...]:
    """A random diatonic progression: starts on the tonic, moves mostly by fourths/fifths/thirds.

    Degrees in ``avoid`` (say, the diminished triad of the mode) are never used.
    """
    moves = (3, 4, 5, 2, 1, 6)  # up a fourth, fifth, sixth, third, second, seventh (degrees)
    weights = np.array([0.28, 0.24, 0.16, 0.14, 0.1, 0.08])
    degrees = [0]
    while len(degrees) < length:
        nxt = (degrees[-1] + int(rng.choice(moves, p=weights))) % 7
        if nxt != degrees[-1] and nxt not in avoid:
            degrees.append(nxt)
    if degrees[-1] == 0:
        degrees[-1] = int(rng.choice([d for d in (3, 4, 5) if d not in avoid]))
    return tuple(degrees)


def voicing(chord: Chord, center: int, size: int) -> list[int]:
    """A close-position voicing of ``size`` notes whose mean is nearest to ``center``.

    Tries every inversion (and octave doublings when ``size`` exceeds the chord), so that calling
    it with a fixed ``center`` for successive chords gives smooth voice leading.
    """
    best: list[int] = []
    best_cost = float("inf")
    for inversion in range(len(chord.pcs)):
        order = chord.pcs[inversion:] + chord.pcs[:inversion]
        for base in range(center - 12, center + 1):
            if base % 12 != order[0]:
                continue
            notes = [base]
            for i in range(1, size):
                pc = order[i % len(order)]
                nxt = notes[-1] + 1
                while nxt % 12 != pc:
                    nxt += 1
                notes.append(nxt)
            cost = abs(float(np.mean(notes)) - center)
            if cost < best_cost:
                best, best_cost = notes, cost
    return best


def estimate_key(weights: np.ndarray) -> Key:
    """Best major or minor key for a pitch-class histogram (Krumhansl–Kessler correlation).

    Parameters
    ----------
    weights : [12] float
        Total duration (or count) per pitch class, index 0 = C.
    """
    if weights.shape != (12,) or not np.any(weights > 0):
        return Key(0, "major")
    best = (-2.0, Key(0, "major"))
    for tonic in range(12):
        rolled = np.roll(weights, -tonic)
        for mode, profile in (("major", _KK_MAJOR), ("minor", _KK_MINOR)):
            score = float(np.corrcoef(rolled, profile)[0, 1])
            if score > best[0]:
                best = (score, Key(tonic, mode))
    return best[1]
