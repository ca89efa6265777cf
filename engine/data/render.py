"""Render the non-vocal parts of a song to audio, one part (one stem layer) at a time.

Three renderers share one signature and return mono float32 ``[N]``, ``N = round(duration *
rate)``:

- FluidSynth with a General MIDI sound font (``font``): the part is written as a one-part MIDI
  file and rendered by the ``fluidsynth`` command line in fast-render mode with its own reverb
  and chorus off (effects are added later by our production chain); drum parts play the GM kit
  on channel 10;
- the hydrogen-drumkits sampler (``kit``, drum parts only), see :mod:`engine.data.drumkit`;
- the pure-numpy synthesizer (no ``font``), see :mod:`engine.data.numpy_synth`.

Levels are fixed, never normalised: FluidSynth runs at master gain :data:`FLUIDSYNTH_GAIN`, where
one GM piano note at velocity 100 peaks at 0.16 (FluidR3_GM) or 0.12 (MuseScore_General), 4-voice
piano chords at 0.36 and dense six-string guitar strums at 0.84. FluidSynth writes 32-bit float,
so a part past full scale is kept, not clipped.

Debian packages: ``fluidsynth`` and one or more of ``fluid-soundfont-gm``,
``musescore-general-soundfont``, ``timgm6mb-soundfont``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import mido
import numpy as np

from engine.constants import MODEL_RATE
from engine.data.drumkit import render_drums
from engine.data.numpy_synth import render_part_numpy
from engine.data.song import Part
from engine.errors import StemtokError

#: FluidSynth master gain (its default is 0.2); see the module docstring for the levels it gives.
FLUIDSYNTH_GAIN: Final[float] = 1.0

#: MIDI clock of the files we write: 120 BPM at 1000 ticks per beat, i.e. 2000 ticks per second.
TICKS_PER_BEAT: Final[int] = 1000
TEMPO_US: Final[int] = 500_000
TICKS_PER_SECOND: Final[float] = TICKS_PER_BEAT * 1e6 / TEMPO_US

MELODIC_CHANNEL: Final[int] = 0
DRUM_CHANNEL: Final[int] = 9  # "channel 10" in GM terms

#: GM sound fonts from Debian packages, best first; other fonts found in the same folders follow.
KNOWN_FONTS: Final[tuple[Path, ...]] = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),  # fluid-soundfont-gm
    Path("/usr/share/sounds/sf3/MuseScore_General_Full.sf3"),  # musescore-general-soundfont
    Path("/usr/share/sounds/sf2/MuseScore_General.sf2"),  # ...-lossless
    Path("/usr/share/sounds/sf3/MuseScore_General.sf3"),  # ...-small
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),  # timgm6mb-soundfont
)
FONT_DIRS: Final[tuple[Path, ...]] = (Path("/usr/share/sounds/sf2"), Path("/usr/share/sounds/sf3"))
#: Font names left out: GS variants, the OPL3 chip emulation, and FluidR3Mono (a lossy mono
#: copy of FluidR3_GM).
_SKIP_FONT: Final[re.Pattern[str]] = re.compile(r"(^|[_\W])gs($|[_\W])|opl|mono_gm")

#: Seconds allowed per second of audio (FluidSynth renders 50-500x faster), plus start-up.
_TIMEOUT_PER_SECOND: Final[float] = 2.0
_TIMEOUT_START: Final[float] = 60.0


def fluidsynth_available() -> bool:
    """Whether the ``fluidsynth`` command is on the PATH."""
    return shutil.which("fluidsynth") is not None


def available_fonts(
    known: Iterable[Path] = KNOWN_FONTS, dirs: Iterable[Path] = FONT_DIRS
) -> list[Path]:
    """Installed GM sound fonts (``.sf2``/``.sf3``), known ones first, symlinks resolved, unique."""
    found: list[Path] = []
    candidates = [*known, *(p for d in dirs for p in sorted(d.glob("*.sf[23]")))]
    for path in candidates:
        if not path.is_file() or _SKIP_FONT.search(path.stem.lower()):
            continue
        real = path.resolve()
        if real not in found:
            found.append(real)
    return found


# --- MIDI -------------------------------------------------------------------------------------


def _ticks(seconds: float) -> int:
    return max(0, round(seconds * TICKS_PER_SECOND))


def _note_events(part: Part) -> list[tuple[int, int, int, int]]:
    """(tick, order, pitch, velocity) events; note-offs sort before note-ons at the same tick.

    A note is cut where the next note of the same pitch starts, so a note-off never silences a
    later note.
    """
    by_pitch: dict[int, list[tuple[int, int, int]]] = {}
    for note in sorted(part.notes, key=lambda n: (n.start, n.pitch)):
        on = _ticks(note.start)
        off = max(on + 1, _ticks(note.start + note.duration))
        by_pitch.setdefault(note.pitch, []).append((on, off, min(max(note.velocity, 1), 127)))
    events = []
    for pitch, notes in by_pitch.items():
        for i, (on, off, vel) in enumerate(notes):
            nxt = notes[i + 1][0] if i + 1 < len(notes) else off
            events.append((on, 1, pitch, vel))
            events.append((max(on + 1, min(off, nxt)), 0, pitch, 0))
    return sorted(events)


def _part_midi(part: Part, path: Path, *, end: float | None = None) -> None:
    """Write ``part`` as a one-track MIDI file at 120 BPM (times in seconds map exactly).

    Melodic parts play on channel 1 with ``part.program``; drum parts on channel 10 with
    ``part.program`` as the GM kit number (0 is the standard kit). ``end`` (seconds) places the
    end-of-track marker, so that FluidSynth renders at least that long.
    """
    channel = DRUM_CHANNEL if part.is_drum else MELODIC_CHANNEL
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=TEMPO_US, time=0))
    track.append(mido.Message("program_change", channel=channel, program=part.program % 128))
    now = 0
    for tick, order, pitch, vel in _note_events(part):
        kind = "note_on" if order else "note_off"
        track.append(mido.Message(kind, channel=channel, note=pitch, velocity=vel, time=tick - now))
        now = tick
    last = max(now, _ticks(end if end is not None else part.end))
    track.append(mido.MetaMessage("end_of_track", time=last - now))
    midi = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    midi.save(str(path))


# --- FluidSynth -------------------------------------------------------------------------------


def _fluidsynth_command(font: Path, midi: Path, out: Path, rate: int) -> list[str]:
    return [
        "fluidsynth",
        "-ni",  # no MIDI input, no shell
        "-q",
        "-R",
        "0",  # our own reverb and chorus are added later
        "-C",
        "0",
        "-g",
        str(FLUIDSYNTH_GAIN),
        "-r",
        str(rate),
        "-o",
        "synth.dynamic-sample-loading=1",  # load only the presets in use (sf3: 6x faster)
        "-o",
        "synth.polyphony=512",
        "-T",
        "raw",
        "-O",
        "float",
        "-E",
        "little",  # 32-bit float stereo, no clipping
        "-F",
        str(out),
        str(font),
        str(midi),
    ]


def _run_fluidsynth(cmd: list[str], timeout: float) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise StemtokError("fluidsynth not found (apt install fluidsynth)") from exc
    except subprocess.TimeoutExpired as exc:
        raise StemtokError(f"fluidsynth took longer than {timeout:.0f} s") from exc
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    if proc.returncode != 0 or errors:
        detail = (errors or proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise StemtokError(f"fluidsynth failed (exit {proc.returncode}): {detail}")


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``[M]`` to ``[n]`` float32."""
    out = np.zeros(n, np.float32)
    m = min(n, len(audio))
    out[:m] = audio[:m]
    return out


def render_part_fluidsynth(
    part: Part, duration: float, *, font: Path, rate: int = MODEL_RATE
) -> np.ndarray:
    """Render one part with FluidSynth and ``font``; mono float32 ``[N]`` (mean of L and R)."""
    if not font.is_file():
        raise StemtokError(f"sound font not found: {font}")
    n = round(duration * rate)
    with tempfile.TemporaryDirectory(prefix="stemtok-fs-") as tmp:
        midi, raw = Path(tmp) / "part.mid", Path(tmp) / "part.f32"
        _part_midi(part, midi, end=duration)
        timeout = _TIMEOUT_START + _TIMEOUT_PER_SECOND * duration
        _run_fluidsynth(_fluidsynth_command(font, midi, raw, rate), timeout)
        stereo = np.fromfile(raw, dtype="<f4") if raw.is_file() else np.zeros(0, "<f4")
    frames = stereo[: len(stereo) // 2 * 2].reshape(-1, 2)  # (M, 2)
    return _fit(frames.mean(axis=1, dtype=np.float32), n)


def render_part(
    part: Part,
    duration: float,
    *,
    rate: int = MODEL_RATE,
    font: Path | None,
    seed: int,
    kit: str | None = None,
) -> np.ndarray:
    """Render one non-vocal part.

    Parameters
    ----------
    part : the part; drum parts carry GM drum keys.
    duration : seconds of output (the song length, tail included).
    rate : output sample rate.
    font : GM sound font for FluidSynth; ``None`` renders with the numpy synthesizer.
    seed : seeds the numpy synthesizer and the drum sampler's choice of instruments.
    kit : hydrogen kit for drum parts (overrides ``font`` for them); ignored for melodic parts.

    Returns
    -------
    mono float32 audio ``[N]``, ``N = round(duration * rate)``.
    """
    if part.is_drum and kit is not None:
        return render_drums(part, duration, kit=kit, rate=rate, seed=seed)
    if font is not None:
        return render_part_fluidsynth(part, duration, font=font, rate=rate)
    return render_part_numpy(part, duration, rate=rate, seed=seed)
