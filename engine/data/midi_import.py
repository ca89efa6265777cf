"""Songs from MIDI files: the free music that Debian packages ship, read with mido.

Only files under the directories of the packages in :data:`PACKAGE_DIRS` are searched, so every
file has a known licence (read from the package's ``/usr/share/doc/<pkg>/copyright``).

Stems, per (channel, program) pair:

* channel 10 (index 9) -> ``drums``;
* programs 32–39 (the GM bass family) -> ``bass``;
* ``vocals``: a channel playing a voice program (52 choir aahs, 53 voice oohs, 54 synth voice,
  85 voice lead) that is a melody: mostly monophonic (at most 10 % of its notes start while an
  earlier note still sounds, 50 ms tolerance), median pitch at least G3 (55) and 8 notes or more.
  The one with the most notes wins; other voice channels (choir pads) stay ``other``. When no
  channel qualifies the song has no vocal part: we never promote a sax or a flute to a singer;
* everything else -> ``other``.

Timing uses the file's full tempo map; the sustain pedal (CC64) lengthens notes, and channel
volume and expression (CC7, CC11, sampled at note on) scale velocities, an approximation that keeps
the relative levels of the parts when each part is rendered alone. Pitch bend is ignored.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import mido
import numpy as np

from engine.data.song import Note, Part, SongSpec
from engine.data.theory import estimate_key
from engine.errors import StemtokError

#: Debian packages whose MIDI files we use, and where they install them.
PACKAGE_DIRS: Final[dict[str, tuple[Path, ...]]] = {
    "openttd-openmsx": (Path("/usr/share/games/openttd/baseset/openmsx"),),
    "simutrans-data": (Path("/usr/share/games/simutrans/music"),),
}
DOC_ROOT: Final = Path("/usr/share/doc")
MIDI_SUFFIXES: Final = (".mid", ".midi", ".kar")
TAIL_SECONDS: Final = 2.0
DRUM_CHANNEL: Final = 9
BASS_PROGRAMS: Final = range(32, 40)
#: Voice programs and the vowel their sound sings (used when the file has no lyrics).
VOICE_PROGRAMS: Final[dict[int, str]] = {52: "ah", 53: "oo", 54: "ah", 85: "ah"}
GM_FAMILIES: Final = (
    "piano",
    "chromatic percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth lead",
    "synth pad",
    "synth effects",
    "ethnic",
    "percussive",
    "effects",
)
_MIN_NOTE: Final = 0.01  # seconds


# ------------------------------------------------------------------------------------- finding


def find_midi_files(package_dirs: Mapping[str, Sequence[Path]] = PACKAGE_DIRS) -> list[Path]:
    """All MIDI files installed by the packages in ``package_dirs`` (sorted; [] when none)."""
    found: list[Path] = []
    for dirs in package_dirs.values():
        for root in dirs:
            if root.is_dir():
                found += [p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES]
    return sorted(p for p in found if p.is_file())


def package_of(path: Path, package_dirs: Mapping[str, Sequence[Path]] = PACKAGE_DIRS) -> str:
    """The package whose directory holds ``path``, or "" when none does."""
    resolved = path.resolve()
    for package, dirs in package_dirs.items():
        if any(resolved.is_relative_to(d.resolve()) for d in dirs):
            return package
    return ""


def package_licence(package: str, doc_root: Path = DOC_ROOT) -> str:
    """Short licence name of a package's files, from its machine-readable copyright file.

    Takes the ``License:`` of the ``Files: *`` paragraph (the first ``License:`` when there is
    none). Raises StemtokError when the copyright file is missing or names no licence.
    """
    path = doc_root / package / "copyright"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise StemtokError(f"cannot read the licence of {package}: {path}: {exc.strerror}") from exc
    paragraphs = [_fields(p) for p in re.split(r"\n\s*\n", text)]
    licences = [p["license"] for p in paragraphs if p.get("license")]
    for fields in paragraphs:
        if fields.get("files", "").split()[:1] == ["*"] and fields.get("license"):
            return fields["license"]
    if not licences:
        raise StemtokError(f"no License field in {path}")
    return licences[0]


def _fields(paragraph: str) -> dict[str, str]:
    """First line of each field of a Debian control-style paragraph, keys lower-cased."""
    out: dict[str, str] = {}
    for line in paragraph.splitlines():
        match = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
        if match:
            out[match.group(1).lower()] = match.group(2).strip()
    return out


# ------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TempoMap:
    """Piecewise-constant tempo: change ``i`` starts at ``ticks[i]`` = ``seconds[i]``.

    Shapes: ``ticks``, ``seconds``, ``tempos`` are all [T] with T >= 1 and ``ticks[0] == 0``;
    ``tempos`` in microseconds per quarter note.
    """

    ticks_per_beat: int
    ticks: np.ndarray
    seconds: np.ndarray
    tempos: np.ndarray

    @classmethod
    def from_changes(cls, ticks_per_beat: int, changes: Iterable[tuple[int, int]]) -> TempoMap:
        """From (tick, microseconds per quarter) pairs; 500000 (120 BPM) before the first one."""
        points: dict[int, int] = {0: 500_000}
        for tick, tempo in sorted(changes, key=lambda c: c[0]):
            points[tick] = tempo  # the last change at a tick wins
        ticks = np.array(sorted(points), dtype=np.int64)
        tempos = np.array([points[t] for t in ticks], dtype=np.float64)
        lengths = np.diff(ticks) * tempos[:-1] / (1e6 * ticks_per_beat)
        seconds = np.concatenate([[0.0], np.cumsum(lengths)])
        return cls(ticks_per_beat, ticks, seconds, tempos)

    def to_seconds(self, tick: int) -> float:
        i = int(np.searchsorted(self.ticks, tick, side="right")) - 1
        span = (tick - self.ticks[i]) * self.tempos[i] / (1e6 * self.ticks_per_beat)
        return float(self.seconds[i] + span)

    def bpm_at(self, seconds: float) -> float:
        i = int(np.searchsorted(self.seconds, seconds, side="right")) - 1
        return float(60e6 / self.tempos[max(0, i)])


def _repair_key_signatures(data: bytes) -> bytes:
    """Neutralise key-signature events mido cannot decode (some files store mode 255).

    Only the two data bytes of ``FF 59 02 sf mi`` events with an impossible value are rewritten
    (to C major); lengths do not change, so the chunks stay valid.
    """

    def fix(match: re.Match[bytes]) -> bytes:
        sf, mi = match.group(1)[0], match.group(2)[0]
        valid = (sf <= 7 or sf >= 249) and mi in (0, 1)
        return match.group(0) if valid else b"\xff\x59\x02\x00\x00"

    return re.sub(rb"\xff\x59\x02(.)(.)", fix, data, flags=re.DOTALL)


def _read(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StemtokError(f"cannot read MIDI file {path}: {exc.strerror}") from exc
    try:
        mid = mido.MidiFile(file=io.BytesIO(_repair_key_signatures(data)), clip=True)
    except Exception as exc:  # mido raises many kinds on broken files
        raise StemtokError(f"{path} is not a readable MIDI file ({exc})") from exc
    if mid.type == 2:
        raise StemtokError(f"{path}: MIDI type 2 (independent sequences) is not supported")
    if mid.ticks_per_beat <= 0:
        raise StemtokError(f"{path}: SMPTE time division is not supported")
    return mid


@dataclass
class _Channel:
    """Live state of one MIDI channel while the file is read."""

    program: int = 0
    volume: int = 100
    expression: int = 127
    pedal: bool = False
    held: list[tuple[int, int, int, int]] = field(default_factory=list)  # pitch, on, vel, program


@dataclass
class _Reader:
    """Collects notes (in ticks) per (channel, program), lyric events and meta facts."""

    channels: list[_Channel] = field(default_factory=lambda: [_Channel() for _ in range(16)])
    sounding: dict[tuple[int, int], list[tuple[int, int, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )  # (channel, pitch) -> [(on tick, velocity, program)], first in first out
    notes: dict[tuple[int, int], list[tuple[int, int, int, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )  # (channel, program) -> [(on tick, off tick, pitch, velocity)]
    lyrics: list[tuple[int, str]] = field(default_factory=list)
    tempos: list[tuple[int, int]] = field(default_factory=list)
    key_signature: str = ""

    def feed(self, tick: int, msg: Any) -> None:
        if msg.type == "note_on" and msg.velocity > 0:
            state = self.channels[msg.channel]
            level = state.volume / 100 * state.expression / 127
            vel = max(1, min(127, round(msg.velocity * level)))
            self.sounding[(msg.channel, msg.note)].append((tick, vel, state.program))
        elif msg.type in ("note_on", "note_off"):
            self._release(tick, msg.channel, msg.note)
        elif msg.type == "control_change":
            self._control(tick, msg.channel, msg.control, msg.value)
        elif msg.type == "program_change":
            self.channels[msg.channel].program = msg.program
        elif msg.type == "set_tempo":
            self.tempos.append((tick, msg.tempo))
        elif msg.type in ("lyrics", "text") and msg.text.strip():
            self.lyrics.append((tick, msg.text))
        elif msg.type == "key_signature" and not self.key_signature:
            self.key_signature = msg.key

    def _release(self, tick: int, channel: int, pitch: int) -> None:
        queue = self.sounding.get((channel, pitch))
        if not queue:
            return
        on, vel, program = queue.pop(0)
        if self.channels[channel].pedal:
            self.channels[channel].held.append((pitch, on, vel, program))
        else:
            self.notes[(channel, program)].append((on, tick, pitch, vel))

    def _control(self, tick: int, channel: int, control: int, value: int) -> None:
        state = self.channels[channel]
        if control == 7:
            state.volume = value
        elif control == 11:
            state.expression = value
        elif control == 64:
            state.pedal = value >= 64
            if not state.pedal:
                for pitch, on, vel, program in state.held:
                    self.notes[(channel, program)].append((on, tick, pitch, vel))
                state.held.clear()

    def close(self, tick: int) -> None:
        """End everything still sounding or held at ``tick`` (the end of the file)."""
        for (channel, pitch), queue in list(self.sounding.items()):
            for on, vel, program in queue:
                self.notes[(channel, program)].append((on, tick, pitch, vel))
            queue.clear()
        for channel, state in enumerate(self.channels):
            for pitch, on, vel, program in state.held:
                self.notes[(channel, program)].append((on, tick, pitch, vel))
            state.held.clear()


def _scan(mid: Any) -> _Reader:
    """Feed all tracks' messages in time order (ties: track order, then file order)."""
    timed = []
    for index, track in enumerate(mid.tracks):
        tick = 0
        for seq, msg in enumerate(track):
            tick += msg.time
            timed.append((tick, index, seq, msg))
    timed.sort(key=lambda t: t[:3])
    reader = _Reader()
    for tick, _, _, msg in timed:
        reader.feed(tick, msg)
    reader.close(timed[-1][0] if timed else 0)
    return reader


# ---------------------------------------------------------------------------------------- stems


def _in_seconds(raw: Sequence[tuple[int, int, int, int]], tmap: TempoMap) -> list[Note]:
    notes = []
    for on, off, pitch, vel in raw:
        start = tmap.to_seconds(on)
        notes.append(Note(start, max(_MIN_NOTE, tmap.to_seconds(off) - start), pitch, vel))
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def _overlap_share(notes: Sequence[Note], tolerance: float = 0.05) -> float:
    """Share of notes that start while an earlier note still sounds (``notes`` sorted by start)."""
    latest_end, overlapping = -np.inf, 0
    for n in notes:
        overlapping += n.start < latest_end - tolerance
        latest_end = max(latest_end, n.start + n.duration)
    return overlapping / max(1, len(notes))


def _vocal_group(groups: Mapping[tuple[int, int], Sequence[Note]]) -> tuple[int, int] | None:
    """The (channel, program) that is sung, by the rule in the module docstring, or None."""
    best: tuple[int, int] | None = None
    for (channel, program), notes in groups.items():
        if channel == DRUM_CHANNEL or program not in VOICE_PROGRAMS or len(notes) < 8:
            continue
        if _overlap_share(notes) > 0.1 or np.median([n.pitch for n in notes]) < 55:
            continue
        if best is None or len(notes) > len(groups[best]):
            best = (channel, program)
    return best


def _sung(notes: Sequence[Note], lyrics: Sequence[tuple[float, str]], vowel: str) -> list[Note]:
    """Give each note the file's lyric starting within 50 ms of it, else the program's vowel."""
    times = np.array([t for t, _ in lyrics], dtype=np.float64)
    out = []
    for n in notes:
        text = vowel
        if len(times):
            i = int(np.argmin(np.abs(times - n.start)))
            word = re.sub(r"[^A-Za-z']", "", lyrics[i][1])
            if abs(times[i] - n.start) <= 0.05 and word:
                text = word.lower()
        out.append(Note(n.start, n.duration, n.pitch, n.velocity, text))
    return out


def _part(
    key: tuple[int, int], notes: Sequence[Note], vocal: bool, lyrics: Sequence[tuple[float, str]]
) -> Part:
    channel, program = key
    family = GM_FAMILIES[program // 8]
    if channel == DRUM_CHANNEL:
        return Part(
            "drums", f"ch10 drums (kit {program})", 0, tuple(notes), is_drum=True, role="drums"
        )
    if vocal:
        sung = _sung(notes, lyrics, VOICE_PROGRAMS[program])
        voice = "female" if np.median([n.pitch for n in notes]) >= 60 else "male"
        name = f"ch{channel + 1} voice (program {program})"
        return Part("vocals", name, program, tuple(sung), voice=voice, role="lead")
    stem = "bass" if program in BASS_PROGRAMS else "other"
    return Part(
        stem, f"ch{channel + 1} {family} (program {program})", program, tuple(notes), role=family
    )


def _window(notes: Sequence[Note], start: float, end: float) -> tuple[Note, ...]:
    """Notes starting in ``[start, end)``, moved to start at 0 and cut at ``end``."""
    return tuple(
        Note(n.start - start, min(n.duration, end - n.start), n.pitch, n.velocity, n.lyric)
        for n in notes
        if start <= n.start < end
    )


def _key_name(groups: Mapping[tuple[int, int], Sequence[Note]]) -> str:
    weights = np.zeros(12)
    for (channel, _), notes in groups.items():
        if channel != DRUM_CHANNEL:
            for n in notes:
                weights[n.pitch % 12] += n.duration
    return estimate_key(weights).name


# ----------------------------------------------------------------------------------------- song


def spec_from_midi(
    path: Path,
    *,
    seed: int = 0,
    offset: float | None = 0.0,
    max_seconds: float | None = None,
    doc_root: Path = DOC_ROOT,
) -> SongSpec:
    """Read a MIDI file into a song, optionally cut to a window of it.

    Parameters
    ----------
    path : the MIDI file (type 0 or 1).
    seed : recorded in the spec; with ``offset=None`` it also draws the window start.
    offset : start of the window in seconds of the original; None = a seeded random start such
        that the window fits in the song.
    max_seconds : longest window (music only; the 2 s tail comes on top); None = to the end.
    doc_root : where ``<package>/copyright`` files live (for the licence).

    Notes that start before the window are dropped; notes sounding past its end are cut. Raises
    StemtokError for unreadable files and windows without notes.
    """
    path = Path(path)
    mid = _read(path)
    reader = _scan(mid)
    tmap = TempoMap.from_changes(mid.ticks_per_beat, reader.tempos)
    groups = {k: _in_seconds(v, tmap) for k, v in sorted(reader.notes.items()) if v}
    if not groups:
        raise StemtokError(f"{path} has no notes")
    song_end = max(n.start + n.duration for notes in groups.values() for n in notes)
    start = _window_start(offset, max_seconds, song_end, seed)
    end = start + max_seconds if max_seconds is not None else np.inf
    lyrics = [(tmap.to_seconds(t) - start, text) for t, text in reader.lyrics]
    sung = _vocal_group(groups)
    parts = []
    for key, notes in groups.items():
        kept = _window(notes, start, end)
        if kept:
            parts.append(_part(key, kept, key == sung, lyrics))
    if not parts:
        raise StemtokError(f"{path}: no notes between {start:.1f} s and {end:.1f} s")
    package = package_of(path)
    return SongSpec(
        title=path.stem,
        seed=seed,
        source=f"midi:{path}",
        licence=package_licence(package, doc_root) if package else "unknown",
        tempo=round(tmap.bpm_at(start), 3),
        key=_key_name(groups),
        style="",
        duration=round(max(p.end for p in parts) + TAIL_SECONDS, 5),
        parts=tuple(parts),
        meta=_meta(package, path, sung, start, end, reader, tmap),
    )


def _window_start(
    offset: float | None, max_seconds: float | None, song_end: float, seed: int
) -> float:
    if offset is not None:
        if offset < 0:
            raise StemtokError(f"offset must be >= 0 s, not {offset}")
        return float(offset)
    if max_seconds is None or max_seconds >= song_end:
        return 0.0
    rng = np.random.default_rng(seed)
    return round(float(rng.uniform(0.0, song_end - max_seconds)), 3)


def _meta(
    package: str,
    path: Path,
    sung: tuple[int, int] | None,
    start: float,
    end: float,
    reader: _Reader,
    tmap: TempoMap,
) -> dict[str, str]:
    vocals = "none (no monophonic voice-program channel)"
    if sung is not None:
        vocals = f"channel {sung[0] + 1} program {sung[1]}"
    return {
        "package": package,
        "path": str(path),
        "vocals": vocals,
        "window": f"{start:.3f}-{end:.3f}",
        "tempo_changes": str(len(tmap.ticks) - 1),
        "key_signature": reader.key_signature,
    }
