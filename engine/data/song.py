"""A song as the data factory writes it: timed notes per part, before any audio exists.

Everything that makes audio (FluidSynth, the drum sampler, the singing synthesizer, the numpy
fallback) reads this one representation, and both sources of songs (the procedural song writer
and imported MIDI files) produce it. Times are in seconds, so renderers need no tempo map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.constants import STEMS


@dataclass(frozen=True)
class Note:
    """One note. ``lyric`` is the syllable sung on it (vocal parts only)."""

    start: float  # seconds from the song start
    duration: float  # seconds
    pitch: int  # MIDI note number (GM drum key for drum parts)
    velocity: int  # 1..127
    lyric: str = ""


@dataclass(frozen=True)
class Part:
    """One instrument of a song, assigned to one of the four stems."""

    stem: str  # one of STEMS
    name: str  # "lead vocal", "kick+snare", "piano", ...
    program: int  # General MIDI program 0..127 (ignored for drums)
    notes: tuple[Note, ...]
    is_drum: bool = False
    voice: str = ""  # singing voice for vocal parts: "male" or "female"
    role: str = ""  # free-form role for production: "guitar", "pad", "keys", "lead", ...

    def __post_init__(self) -> None:
        if self.stem not in STEMS:
            raise ValueError(f"part {self.name!r}: stem must be one of {STEMS}, not {self.stem!r}")

    @property
    def end(self) -> float:
        return max((n.start + n.duration for n in self.notes), default=0.0)


@dataclass(frozen=True)
class Section:
    name: str  # "intro", "verse", "chorus", "bridge", "outro"
    start: float  # seconds
    bars: int


@dataclass(frozen=True)
class SongSpec:
    """A whole song: metadata for the manifest plus its parts."""

    title: str
    seed: int
    source: str  # "procedural" or "midi:<path>"
    licence: str
    tempo: float  # BPM (first tempo for imported files)
    key: str  # e.g. "A minor"
    style: str  # drum style / genre, "" when unknown
    duration: float  # seconds, including the release tail
    parts: tuple[Part, ...]
    sections: tuple[Section, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)

    def parts_for(self, stem: str) -> tuple[Part, ...]:
        return tuple(p for p in self.parts if p.stem == stem)
