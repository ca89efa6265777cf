"""One song from spec to stems: pick sounds, render each part, produce, detect vocal activity.

The choices for a song (sound font, drum kit or GM drums, singing engine) are drawn from the
song's seed, so the same seed gives the same bytes. Two backends:

- ``full``: FluidSynth with the GM sound fonts (rotated per song), the recorded Hydrogen kits
  through our sampler (or FluidSynth's GM kit), Festival's singing mode or our singer;
- ``numpy``: our numpy instruments and singer only, for tests and machines without the packages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.data import (
    arrange,
    drumkit,
    layers,
    midi_import,
    numpy_synth,
    production,
    record,
    render,
    songwriter,
    vad,
)
from engine.data import vocals as vocal_render
from engine.data.song import Part, SongSpec


@dataclass(frozen=True)
class RenderedSong:
    """A produced song: four stereo stems ``[2, N]`` and their exact sum."""

    stems: dict[str, np.ndarray]
    mixture: np.ndarray
    rate: int
    render_info: dict[str, Any]  # what made each part (font, kit, singer, effects)
    vad: dict[str, Any]  # vocal activity of the vocal stem (method, ratio, segments)


def full_backend_available() -> bool:
    return render.fluidsynth_available() and bool(render.available_fonts())


def midi_sources() -> list[Path]:
    """Real MIDI files from Debian packages, in a stable order."""
    return sorted(midi_import.find_midi_files())


def procedural_song(
    seed: int, min_seconds: float, max_seconds: float, version: str = "1"
) -> SongSpec:
    if version == "1":
        return songwriter.write_song(seed, min_seconds=min_seconds, max_seconds=max_seconds)
    return arrange.write_song_v2(seed, min_seconds=min_seconds, max_seconds=max_seconds)


def midi_song(path: Path, seed: int, max_seconds: float) -> SongSpec:
    return midi_import.spec_from_midi(path, seed=seed, max_seconds=max_seconds)


@dataclass(frozen=True)
class _Sounds:
    """The sound sources one song uses."""

    font: Path | None
    kit: str | None  # a Hydrogen kit, or None for FluidSynth's GM drums / numpy drums


def choose_sounds(seed: int, backend: str, kit_share: float = 0.6) -> _Sounds:
    """Font and drum kit of a song; ``kit_share`` of songs play a recorded hydrogen kit."""
    rng = np.random.default_rng([seed, 7])
    if backend != "full":
        return _Sounds(None, None)
    font = _pick_font(render.available_fonts(), rng)
    kits = drumkit.list_kits()
    use_kit = bool(kits) and rng.random() < kit_share
    kit = kits[int(rng.integers(len(kits)))] if use_kit else None
    return _Sounds(font, kit)


#: FluidR3 renders 3-5x faster than the MuseScore .sf3 (which pays ~1.4 s per call to load),
#: so it gets most songs; every other font found shares the rest.
FAST_FONT_SHARE = 0.65


def _pick_font(fonts: list[Path], rng: np.random.Generator) -> Path:
    fast = [f for f in fonts if f.suffix == ".sf2"]
    slow = [f for f in fonts if f not in fast]
    pool = fast if fast and (not slow or rng.random() < FAST_FONT_SHARE) else slow
    return pool[int(rng.integers(len(pool)))]


def render_track(
    part: Part, duration: float, sounds: _Sounds, *, rate: int, seed: int, backend: str
) -> tuple[np.ndarray, str]:
    """One part as mono ``[N]`` and a short note of what rendered it."""
    if part.role in layers.ROLES:  # version-2 synth layers (no version-1 part has these roles)
        return layers.render_layer(part, duration, rate=rate, seed=seed), f"numpy:{part.role}"
    if part.stem == "vocals":
        engine = vocal_render.choose_engine(part, seed) if backend == "full" else "singer"
        audio = vocal_render.render_vocals(part, duration, rate=rate, seed=seed, engine=engine)
        return audio, engine
    if backend != "full":
        return numpy_synth.render_part_numpy(part, duration, rate=rate, seed=seed), "numpy"
    if part.is_drum and sounds.kit:
        return drumkit.render_drums(part, duration, kit=sounds.kit, rate=rate, seed=seed), (
            f"hydrogen:{sounds.kit}"
        )
    audio = render.render_part(part, duration, rate=rate, font=sounds.font, seed=seed)
    return audio, f"fluidsynth:{sounds.font.name if sounds.font else ''}"


#: Phrases of our songs are ~1-1.4 s apart: merge gaps up to 1 s so a verse is one segment.
VAD_CONFIG = vad.VadConfig(merge_gap_s=1.0)


def _dry_vocals(tracks: list[tuple[Part, np.ndarray]]) -> np.ndarray:
    """The vocal parts before effects: reverb and delay tails would blur the detection."""
    voc = [audio for part, audio in tracks if part.stem == "vocals"]
    n = max((a.shape[-1] for _, a in tracks), default=0)
    return np.sum(voc, axis=0) if voc else np.zeros(n, np.float32)


def render_song(
    spec: SongSpec, *, rate: int, seed: int, backend: str, version: str = "1"
) -> RenderedSong:
    """Render every part, produce the stems and detect where the vocals sing.

    ``version`` is the generator version: "1" mixes with :func:`production.produce`, "2" with
    :func:`record.produce_record` (wider chains, sidechain, convolution reverbs, mastering).
    """
    acoustic = version != "1" and spec.style in ("rock", "funk", "latin", "ballad", "jazz")
    sounds = choose_sounds(seed, backend, kit_share=0.9 if acoustic else 0.6)
    clock = [time.process_time()]
    tracks: list[tuple[Part, np.ndarray]] = []
    made_by: list[str] = []
    for i, part in enumerate(spec.parts):
        audio, how = render_track(
            part, spec.duration, sounds, rate=rate, seed=seed * 31 + i, backend=backend
        )
        tracks.append((part, audio))
        made_by.append(how)
    clock.append(time.process_time())
    if version == "1":
        prod = production.produce(tracks, rate=rate, seed=seed, tempo=spec.tempo)
    else:
        prod = record.produce_record(
            tracks, rate=rate, seed=seed, tempo=spec.tempo, genre=spec.style
        )
    clock.append(time.process_time())
    activity = vad.detect(_dry_vocals(tracks), rate, cfg=VAD_CONFIG)
    clock.append(time.process_time())
    info = {
        "backend": backend,
        "font": sounds.font.name if sounds.font else None,
        "kit": sounds.kit,
        "singer": next(
            (h for p, h in zip(spec.parts, made_by, strict=True) if p.stem == "vocals"), None
        ),
        "parts": made_by,
        "production": prod.chain,
        # CPU seconds of this process per stage (FluidSynth/Festival run as child processes and
        # are not included; the set benchmark measures wall time of everything)
        "cpu_seconds": dict(
            zip(("render", "produce", "vad"), np.diff(clock).round(3).tolist(), strict=True)
        ),
    }
    return RenderedSong(prod.stems, prod.mixture, rate, info, activity.as_dict())
