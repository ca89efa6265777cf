"""MIDI import: tempo maps, stem assignment, windows, broken files, Debian licences."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest

from engine.data.midi_import import (
    PACKAGE_DIRS,
    TempoMap,
    find_midi_files,
    package_licence,
    package_of,
    spec_from_midi,
)
from engine.data.songwriter import song_to_midi
from engine.errors import StemtokError

TPB = 480


def _track(events: list[tuple[int, mido.Message]]) -> mido.MidiTrack:
    """Absolute-tick events -> a track with delta times."""
    track, now = mido.MidiTrack(), 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        track.append(msg.copy(time=tick - now))
        now = tick
    return track


def _notes(channel: int, notes: list[tuple[int, int, int]]) -> list[tuple[int, mido.Message]]:
    """(on tick, off tick, pitch) triples -> note_on/note_off events."""
    out = []
    for on, off, pitch in notes:
        out.append((on, mido.Message("note_on", channel=channel, note=pitch, velocity=90)))
        out.append((off, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
    return out


def _program(channel: int, program: int) -> tuple[int, mido.Message]:
    return (0, mido.Message("program_change", channel=channel, program=program))


def _write(path: Path, *, voice_program: int = 53, polyphonic_voice: bool = False) -> Path:
    """A 6-beat song: 120 BPM for 4 beats, then 60 BPM.

    ch1: voice melody (8 notes, one per half beat ... ), ch2: finger bass, ch3: piano chords,
    ch10: drums. Tick t in beats b: seconds = 0.5 b for b <= 4, else 2 + (b - 4).
    """
    conductor = _track(
        [
            (0, mido.MetaMessage("set_tempo", tempo=500_000)),
            (4 * TPB, mido.MetaMessage("set_tempo", tempo=1_000_000)),
        ]
    )
    melody = [(i * TPB // 2, (i + 1) * TPB // 2 - 10, 67 + i % 5) for i in range(12)]
    if polyphonic_voice:
        melody += [(on, off, pitch - 4) for on, off, pitch in melody]
    voice = _track(
        [
            _program(0, voice_program),
            (0, mido.MetaMessage("lyrics", text="Hel-")),
            *_notes(0, melody),
        ]
    )
    bass = _track([_program(1, 33), *_notes(1, [(0, 4 * TPB, 40), (6 * TPB, 7 * TPB, 43)])])
    piano = _track([_program(2, 0), *_notes(2, [(0, 2 * TPB, p) for p in (60, 64, 67)])])
    drums = _track(_notes(9, [(b * TPB, b * TPB + 60, 36 if b % 2 == 0 else 38) for b in range(7)]))
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    mid.tracks.extend([conductor, voice, bass, piano, drums])
    mid.save(path)
    return path


@pytest.fixture
def song_file(tmp_path: Path) -> Path:
    return _write(tmp_path / "song.mid")


def test_tempo_map_converts_ticks_to_seconds() -> None:
    tmap = TempoMap.from_changes(TPB, [(4 * TPB, 1_000_000), (0, 500_000)])
    assert tmap.to_seconds(0) == 0.0
    assert tmap.to_seconds(2 * TPB) == pytest.approx(1.0)
    assert tmap.to_seconds(4 * TPB) == pytest.approx(2.0)
    assert tmap.to_seconds(6 * TPB) == pytest.approx(4.0)
    assert tmap.bpm_at(1.0) == pytest.approx(120.0) and tmap.bpm_at(3.0) == pytest.approx(60.0)
    assert TempoMap.from_changes(TPB, []).to_seconds(TPB) == pytest.approx(0.5)  # default 120


def test_channels_map_to_stems_and_times_follow_the_tempo_map(song_file: Path) -> None:
    spec = spec_from_midi(song_file)
    by_stem = {p.stem: p for p in spec.parts}
    assert set(by_stem) == {"vocals", "drums", "bass", "other"}
    assert by_stem["drums"].is_drum and by_stem["bass"].program == 33
    assert by_stem["other"].program == 0 and len(by_stem["other"].notes) == 3
    bass = by_stem["bass"].notes
    assert bass[0].start == 0 and bass[0].duration == pytest.approx(2.0)
    assert bass[1].start == pytest.approx(4.0) and bass[1].duration == pytest.approx(1.0)
    kicks = [n.start for n in by_stem["drums"].notes]
    assert kicks == pytest.approx([0, 0.5, 1, 1.5, 2, 3, 4])
    assert spec.tempo == pytest.approx(120.0) and spec.meta["tempo_changes"] == "1"
    assert spec.duration == pytest.approx(5.0 + 2.0)
    assert spec.source == f"midi:{song_file}" and spec.licence == "unknown" and spec.style == ""


def test_vocals_get_lyrics_from_the_file_or_the_program_vowel(song_file: Path) -> None:
    (vocals,) = spec_from_midi(song_file).parts_for("vocals")
    assert vocals.program == 53 and vocals.voice == "female" and vocals.role == "lead"
    assert vocals.notes[0].lyric == "hel"
    assert {n.lyric for n in vocals.notes[1:]} == {"oo"}


@pytest.mark.parametrize(("program", "polyphonic"), [(56, False), (53, True)])
def test_no_singer_is_invented(tmp_path: Path, program: int, polyphonic: bool) -> None:
    path = _write(tmp_path / "lead.mid", voice_program=program, polyphonic_voice=polyphonic)
    spec = spec_from_midi(path)
    assert spec.parts_for("vocals") == ()
    assert spec.meta["vocals"].startswith("none")
    assert any(p.program == program for p in spec.parts_for("other"))


def test_window_cuts_and_shifts(song_file: Path) -> None:
    spec = spec_from_midi(song_file, offset=1.0, max_seconds=2.0)
    for part in spec.parts:
        for n in part.notes:
            assert 0 <= n.start < 2.0 and n.start + n.duration <= 2.0 + 1e-9
    assert [n.start for n in spec.parts_for("drums")[0].notes] == pytest.approx([0, 0.5, 1])
    assert spec.parts_for("bass") == ()  # the held bass note started before the window
    assert spec.duration <= 2.0 + 2.0 and spec.meta["window"] == "1.000-3.000"
    assert spec.tempo == pytest.approx(120.0)
    assert spec_from_midi(song_file, offset=2.5).tempo == pytest.approx(60.0)


def test_random_window_is_seeded(song_file: Path) -> None:
    a = spec_from_midi(song_file, seed=4, offset=None, max_seconds=2.0)
    assert a == spec_from_midi(song_file, seed=4, offset=None, max_seconds=2.0)
    starts = {
        spec_from_midi(song_file, seed=s, offset=None, max_seconds=2.0).meta["window"]
        for s in range(5)
    }
    assert len(starts) > 1


def test_sustain_pedal_holds_notes(tmp_path: Path) -> None:
    events = [
        _program(0, 0),
        (0, mido.Message("control_change", channel=0, control=64, value=127)),
        *_notes(0, [(0, TPB, 60)]),
        (3 * TPB, mido.Message("control_change", channel=0, control=64, value=0)),
    ]
    mid = mido.MidiFile(type=0, ticks_per_beat=TPB)
    mid.tracks.append(_track(events))
    mid.save(tmp_path / "pedal.mid")
    (part,) = spec_from_midi(tmp_path / "pedal.mid").parts
    assert part.notes[0].duration == pytest.approx(1.5)  # 3 beats at the default 120 BPM


def test_broken_files_raise_stemtok_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"this is not a midi file at all")
    with pytest.raises(StemtokError, match="not a readable MIDI file"):
        spec_from_midi(junk)
    with pytest.raises(StemtokError, match="cannot read"):
        spec_from_midi(tmp_path / "missing.mid")
    empty = mido.MidiFile(type=1)
    empty.tracks.append(mido.MidiTrack())
    empty.save(tmp_path / "empty.mid")
    with pytest.raises(StemtokError, match="no notes"):
        spec_from_midi(tmp_path / "empty.mid")
    multi = mido.MidiFile(type=2)
    multi.tracks.append(_track(_notes(0, [(0, TPB, 60)])))
    multi.save(tmp_path / "multi.mid")
    with pytest.raises(StemtokError, match="type 2"):
        spec_from_midi(tmp_path / "multi.mid")


def test_bad_key_signature_is_repaired(song_file: Path, tmp_path: Path) -> None:
    mid = mido.MidiFile(song_file)
    mid.tracks[0].insert(0, mido.MetaMessage("key_signature", key="F"))
    mid.save(tmp_path / "keyed.mid")
    data = (tmp_path / "keyed.mid").read_bytes()
    at = data.index(b"\xff\x59\x02")
    broken = tmp_path / "broken_key.mid"
    broken.write_bytes(data[: at + 3] + b"\xff\xff" + data[at + 5 :])  # mode 255, as some files do
    with pytest.raises(Exception):  # noqa: B017 - mido itself gives up on it
        mido.MidiFile(broken)
    assert len(spec_from_midi(broken).parts) == 4


def test_licence_and_package_lookup(tmp_path: Path) -> None:
    doc = tmp_path / "doc" / "some-music" / "copyright"
    doc.parent.mkdir(parents=True)
    doc.write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: debian/*\nCopyright: 2020 Packager\nLicense: GPL-3+\n\n"
        "Files: *\nCopyright: 2010 Composers\nLicense: CC-BY-SA-3.0\n text of it\n"
    )
    assert package_licence("some-music", tmp_path / "doc") == "CC-BY-SA-3.0"
    with pytest.raises(StemtokError):
        package_licence("absent", tmp_path / "doc")
    music = tmp_path / "share" / "music"
    (music / "sub").mkdir(parents=True)
    _write(music / "sub" / "a.MID")
    (music / "readme.txt").write_text("not music")
    dirs = {"some-music": (music,)}
    assert find_midi_files(dirs) == [music / "sub" / "a.MID"]
    assert package_of(music / "sub" / "a.MID", dirs) == "some-music"
    assert package_of(tmp_path / "elsewhere.mid", dirs) == ""


def test_imported_song_round_trips_through_song_to_midi(song_file: Path, tmp_path: Path) -> None:
    spec = spec_from_midi(song_file)
    song_to_midi(spec).save(tmp_path / "again.mid")
    again = spec_from_midi(tmp_path / "again.mid")
    assert sorted(p.stem for p in again.parts) == sorted(p.stem for p in spec.parts)
    for a, b in zip(spec.parts, again.parts, strict=True):
        assert [(n.pitch, n.velocity) for n in a.notes] == [(n.pitch, n.velocity) for n in b.notes]
        assert [n.start for n in a.notes] == pytest.approx([n.start for n in b.notes], abs=3e-3)


def test_real_debian_file() -> None:
    files = find_midi_files()
    if not files:
        pytest.skip("no MIDI files from openttd-openmsx or simutrans-data installed")
    path = files[0]
    spec = spec_from_midi(path, max_seconds=30.0)
    package = package_of(path)
    assert package in PACKAGE_DIRS and spec.meta["package"] == package
    assert spec.licence == package_licence(package) and spec.licence not in ("", "unknown")
    assert spec.parts_for("drums") and spec.parts_for("other")
    assert spec.duration <= 32.0 and 20 <= spec.tempo <= 300
    assert all(n.start < 30.0 for p in spec.parts for n in p.notes)
