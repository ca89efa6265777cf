"""Stem folders in the MUSDB18-HQ layout: ``<root>/<split>/<song>/{mixture,vocals,...}.wav``.

Reading accepts what users actually have: a root with split folders (``train``, ``test``) or
without them (``<root>/<song>/...``), or a single song folder; WAV or FLAC (or any format
:func:`engine.audio.read_audio` reads); any rate and channel count, the same for every stem of a
song. A missing ``mixture`` file is allowed (the mixture is then the sum of the stems); a missing
stem is not. Audio is read lazily, one stem at a time, after a header check of the whole song.

Writing (:func:`write_track`) produces the same layout, one atomic file per stem plus the mixture.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.audio import AudioInfo, probe, read_audio, write_audio
from engine.constants import STEMS
from engine.errors import StemtokError

#: Suffixes looked for, in order of preference, when a stem exists in several formats.
SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".aiff", ".aif", ".mp3", ".ogg")
#: Folder names treated as splits when they sit directly under the root.
SPLITS: tuple[str, ...] = ("train", "test", "valid", "validation")
MIXTURE = "mixture"


@dataclass(frozen=True)
class TrackAudio:
    """A song's audio in memory: every array is ``[C, N]`` float32 at ``rate``."""

    name: str
    rate: int
    mixture: np.ndarray
    stems: Mapping[str, np.ndarray]

    @property
    def channels(self) -> int:
        return int(self.mixture.shape[0])

    @property
    def frames(self) -> int:
        return int(self.mixture.shape[1])

    @property
    def duration(self) -> float:
        return self.frames / self.rate


@dataclass(frozen=True)
class Track:
    """One song folder; nothing is read until asked.

    Attributes
    ----------
    name
        The song folder's name.
    path
        The song folder.
    files
        ``source -> file`` for the sources found (``mixture`` and/or the stems).
    split
        ``"train"``/``"test"``/... when the root had split folders, else ``None``.
    """

    name: str
    path: Path
    files: Mapping[str, Path]
    split: str | None = None
    _infos: dict[str, AudioInfo] = field(default_factory=dict, compare=False, repr=False)

    @property
    def has_mixture(self) -> bool:
        return MIXTURE in self.files

    def stem_path(self, stem: str) -> Path:
        """The file of ``stem``; a clear error when the song lacks it."""
        if stem not in self.files:
            raise StemtokError(
                f"song '{self.name}' has no {stem} stem "
                f"(expected {stem}.wav or {stem}.flac in {self.path})"
            )
        return self.files[stem]

    def info(self, source: str) -> AudioInfo:
        """Header facts of one source (``mixture`` or a stem), cached."""
        if source not in self._infos:
            self._infos[source] = probe(self.stem_path(source))
        return self._infos[source]

    def check(self, stems: Iterable[str] = STEMS) -> AudioInfo:
        """Check that every stem (and the mixture, if present) exists and shares rate, channels
        and length; return the header of the first stem.
        """
        names = list(stems) + ([MIXTURE] if self.has_mixture else [])
        first = self.info(names[0])
        for name in names[1:]:
            _check_same(self.name, names[0], first, name, self.info(name))
        return first

    def load_stem(self, stem: str, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
        """Read one source as ``([C, N] float32, rate)``, cropped to ``max_seconds``."""
        audio, rate = read_audio(self.stem_path(stem))
        return _crop(audio, rate, max_seconds), rate

    def load(self, stems: Iterable[str] = STEMS, max_seconds: float | None = None) -> TrackAudio:
        """Check the headers, then read every stem and the mixture (the sum when absent)."""
        names = list(stems)
        first = self.check(names)
        loaded = {s: self.load_stem(s, max_seconds)[0] for s in names}
        if self.has_mixture:
            mixture = self.load_stem(MIXTURE, max_seconds)[0]
        else:
            mixture = np.asarray(np.sum([loaded[s] for s in names], axis=0), dtype=np.float32)
        return TrackAudio(self.name, first.rate, mixture, loaded)


def _check_same(song: str, a: str, ia: AudioInfo, b: str, ib: AudioInfo) -> None:
    if ia.rate != ib.rate:
        raise StemtokError(
            f"song '{song}': {b} is at {ib.rate} Hz but {a} is at {ia.rate} Hz "
            "(all stems of a song must share one sample rate)"
        )
    if ia.channels != ib.channels:
        raise StemtokError(
            f"song '{song}': {b} has {ib.channels} channel(s) but {a} has {ia.channels} "
            "(all stems of a song must have the same channel count)"
        )
    if ia.frames != ib.frames:
        raise StemtokError(
            f"song '{song}': {b} is {ib.frames} samples long but {a} is {ia.frames} "
            f"({ib.duration:.3f} s vs {ia.duration:.3f} s; stems of a song must be equally long)"
        )


def _crop(audio: np.ndarray, rate: int, max_seconds: float | None) -> np.ndarray:
    if max_seconds is None:
        return audio
    if max_seconds <= 0:
        raise StemtokError(f"--max-seconds must be positive, got {max_seconds}")
    return audio[:, : max(1, round(max_seconds * rate))]


def find_sources(folder: Path) -> dict[str, Path]:
    """``source -> file`` for the mixture and stems present in ``folder`` (first suffix wins)."""
    found: dict[str, Path] = {}
    for source in (MIXTURE, *STEMS):
        for suffix in SUFFIXES:
            candidate = folder / f"{source}{suffix}"
            if candidate.is_file():
                found[source] = candidate
                break
    return found


def _song_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and find_sources(p))


def list_tracks(root: str | os.PathLike[str], split: str | None = None) -> list[Track]:
    """Songs under ``root``, sorted by split then name.

    Parameters
    ----------
    root
        A MUSDB-style root with split folders, a root of song folders, or one song folder.
    split
        Only this split (``"train"``, ``"test"``, ...); an error if the root has no such folder.

    Raises
    ------
    StemtokError
        When ``root`` is missing, is not a folder, or holds no song folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise StemtokError(f"{base}: no such folder (expected a folder of songs with stems)")
    splits = [s for s in SPLITS if (base / s).is_dir() and _song_dirs(base / s)]
    if split is not None:
        if split not in splits:
            raise StemtokError(
                f"{base}: no '{split}' split with songs "
                f"(found: {', '.join(splits) if splits else 'no split folders'})"
            )
        splits = [split]
    tracks = [_track(d, s) for s in splits for d in _song_dirs(base / s)]
    if not splits:
        dirs = _song_dirs(base) or ([base] if find_sources(base) else [])
        tracks = [_track(d, None) for d in dirs]
    if not tracks:
        raise StemtokError(
            f"{base}: no songs found (expected <song>/vocals.wav, drums.wav, bass.wav, other.wav, "
            "optionally under train/ or test/)"
        )
    return tracks


def _track(folder: Path, split: str | None) -> Track:
    return Track(folder.name, folder, find_sources(folder), split)


def write_track(
    folder: str | os.PathLike[str],
    stems: Mapping[str, np.ndarray],
    rate: int,
    *,
    mixture: np.ndarray | None = None,
    suffix: str = ".wav",
    bit_depth: int | str = 24,
    overwrite: bool = False,
) -> Track:
    """Write one song in the MUSDB layout; each file is written atomically.

    Parameters
    ----------
    folder
        The song folder (created if needed).
    stems
        ``stem -> [C, N]``; every array must have the same shape.
    rate
        Sample rate in Hz.
    mixture
        ``[C, N]``; the sum of the stems when ``None``.
    suffix, bit_depth, overwrite
        Passed to :func:`engine.audio.write_audio` (``.wav`` or ``.flac``; 16, 24 or "32f").
    """
    out = Path(folder)
    shapes = {name: np.asarray(a).shape for name, a in stems.items()}
    if not stems or len(set(shapes.values())) != 1:
        raise StemtokError(f"{out}: stems must all have one shape [C, N], got {shapes}")
    if mixture is None:
        mixture = np.sum([np.asarray(a, dtype=np.float64) for a in stems.values()], axis=0)
    elif np.asarray(mixture).shape != next(iter(shapes.values())):
        raise StemtokError(f"{out}: mixture shape {np.asarray(mixture).shape} differs from stems")
    for name, audio in [(MIXTURE, mixture), *stems.items()]:
        path = out / f"{name}{suffix}"
        write_audio(path, np.asarray(audio), rate, bit_depth=bit_depth, overwrite=overwrite)
    return _track(out, None)
