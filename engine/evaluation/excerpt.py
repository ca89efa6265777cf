"""The excerpt shown and played in the report (the paper's Figure 2, with sound).

One song (the first whose vocals are not silent, unless one is named) and the window of
``seconds`` where its true vocals are loudest. The excerpt keeps the mixture, the true stems and
every system's stems for that window, as plain audio (before any codec transform).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.constants import STEMS
from engine.data.musdb import Track
from engine.errors import StemtokError
from engine.evaluation.metrics import is_silent
from engine.evaluation.systems import SystemSpec, load_estimates


@dataclass(frozen=True)
class Excerpt:
    """Audio of one window: every array is ``[C, n]`` at ``rate``."""

    song: str
    rate: int
    start_s: float
    mixture: np.ndarray
    references: dict[str, np.ndarray]
    systems: dict[str, dict[str, np.ndarray]]


def loudest_window(x: np.ndarray, rate: int, seconds: float) -> int:
    """Start sample of the ``seconds`` window (0.25-s grid) with the most energy in ``[C, N]``."""
    n = min(x.shape[-1], round(seconds * rate))
    energy = np.concatenate([[0.0], np.cumsum(np.sum(np.square(x, dtype=np.float64), axis=0))])
    step = max(1, round(0.25 * rate))
    starts = np.arange(0, x.shape[-1] - n + 1, step)
    return int(starts[np.argmax(energy[starts + n] - energy[starts])])


def pick_track(tracks: list[Track], song: str | None, max_seconds: float | None) -> Track:
    """The named song, else the first with audible vocals, else the first."""
    if song is not None:
        for track in tracks:
            if track.name == song:
                return track
        raise StemtokError(f"--excerpt-song: '{song}' is not among the scored songs")
    for track in tracks:
        if not is_silent(track.load_stem("vocals", max_seconds)[0]):
            return track
    return tracks[0]


def collect(
    track: Track,
    specs: list[SystemSpec],
    separated: Mapping[str, Path],
    max_seconds: float | None,
    seconds: float,
    tolerance_s: float,
) -> Excerpt:
    """Cut the excerpt of ``track`` from the references and every system's estimates."""
    audio = track.load(max_seconds=max_seconds)
    start = loudest_window(audio.stems["vocals"], audio.rate, seconds)
    cut = slice(start, start + min(audio.frames, round(seconds * audio.rate)))
    out: dict[str, dict[str, np.ndarray]] = {}
    for spec in specs:
        if spec.kind == "builtin":
            stacked = np.load(separated[spec.name], mmap_mode="r")
            out[spec.name] = {s: np.array(stacked[i][:, cut]) for i, s in enumerate(STEMS)}
        else:
            shape = (audio.channels, audio.frames)
            ests, _ = load_estimates(spec, track, audio.rate, shape, max_seconds, tolerance_s)
            out[spec.name] = {s: ests[s][:, cut] for s in STEMS}
    refs = {s: audio.stems[s][:, cut] for s in STEMS}
    return Excerpt(track.name, audio.rate, start / audio.rate, audio.mixture[:, cut], refs, out)
