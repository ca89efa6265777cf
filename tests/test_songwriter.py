"""The procedural song writer: determinism, musical ranges, diversity, MIDI round trips."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import mido
import numpy as np
import pytest

from engine.constants import STEMS
from engine.data.song import Note, SongSpec
from engine.data.songwriter import (
    LICENCE,
    STYLES,
    VOICE_RANGES,
    part_to_midi,
    song_to_midi,
    write_song,
)
from engine.data.theory import Key, diatonic_chord, estimate_key, random_progression, voicing

SEEDS = range(40)


@pytest.fixture(scope="module")
def songs() -> list[SongSpec]:
    return [write_song(seed) for seed in SEEDS]


# ---------------------------------------------------------------------------------------- theory


def test_diatonic_chords_follow_the_mode() -> None:
    a_minor = Key(9, "minor")
    assert [diatonic_chord(a_minor, d).name for d in range(7)] == [
        "Am",
        "Bdim",
        "C",
        "Dm",
        "Em",
        "F",
        "G",
    ]
    assert diatonic_chord(a_minor, 4, raise_third=True).name == "E"
    assert diatonic_chord(Key(0, "major"), 4, seventh=True).name == "G7"
    assert diatonic_chord(Key(2, "dorian"), 3).name == "G"  # the dorian major IV


def test_scale_steps_and_voicings() -> None:
    c_major = Key(0, "major")
    assert c_major.step(60, 1) == 62 and c_major.step(60, -1) == 59 and c_major.step(61, 2) == 64
    chord = diatonic_chord(c_major, 0)
    notes = voicing(chord, 64, 4)
    assert len(notes) == 4 and notes == sorted(notes) and {n % 12 for n in notes} == {0, 4, 7}
    assert abs(np.mean(notes) - 64) <= 3


def test_estimate_key_finds_the_scale() -> None:
    weights = np.zeros(12)
    for pc, w in zip((7, 9, 11, 0, 2, 4, 6), (5, 2, 3, 2, 4, 2, 2), strict=True):
        weights[pc] = w  # G major, tonic and fifth heavy
    assert estimate_key(weights).name == "G major"


def test_random_progression_avoids_degrees() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        prog = random_progression(rng, 4, avoid=(6,))
        assert prog[0] == 0 and len(prog) == 4 and 6 not in prog and prog[-1] != 0


# ----------------------------------------------------------------------------------------- songs


def test_same_seed_same_song_and_different_seeds_differ() -> None:
    assert write_song(11) == write_song(11)
    a, b = write_song(11), write_song(12)
    assert a != b
    assert a.parts_for("vocals")[0].notes != b.parts_for("vocals")[0].notes


def test_metadata(songs: list[SongSpec]) -> None:
    for seed, song in zip(SEEDS, songs, strict=True):
        assert song.title == f"proc-{seed}" and song.seed == seed
        assert song.source == "procedural" and song.licence == LICENCE
        assert song.style in STYLES and 60 <= song.tempo <= 180
        assert 30 <= song.duration <= 90
        assert song.sections[0].start == 0 and sum(s.bars for s in song.sections) >= 2
        assert [s.start for s in song.sections] == sorted(s.start for s in song.sections)


def test_every_stem_has_notes_inside_the_song(songs: list[SongSpec]) -> None:
    for song in songs:
        for stem in STEMS:
            assert any(p.notes for p in song.parts_for(stem)), (song.title, stem)
        assert 1 <= len(song.parts_for("other")) <= 4
        for part in song.parts:
            for n in part.notes:
                assert n.start >= 0 and n.duration > 0 and n.start + n.duration <= song.duration
                assert 1 <= n.velocity <= 127 and 0 <= n.pitch <= 127


def test_parts_are_set_up_for_rendering(songs: list[SongSpec]) -> None:
    for song in songs:
        (drums,) = song.parts_for("drums")
        assert drums.is_drum and all(27 <= n.pitch <= 87 for n in drums.notes)
        (bass,) = song.parts_for("bass")
        assert 32 <= bass.program <= 39 and all(n.pitch <= 64 for n in bass.notes)
        assert all(p.role for p in song.parts)
        for part in song.parts:
            ends: dict[int, float] = {}
            for n in part.notes:  # no pitch overlaps itself: a synth would cut it short
                assert n.start >= ends.get(n.pitch, -1.0), (song.title, part.name)
                ends[n.pitch] = n.start + n.duration


def test_vocals_are_singable(songs: list[SongSpec]) -> None:
    for song in songs:
        (vocals,) = song.parts_for("vocals")
        low, high = VOICE_RANGES[vocals.voice]
        assert vocals.program in (52, 53, 54)
        pitches = [n.pitch for n in vocals.notes]
        assert low <= min(pitches) and max(pitches) <= min(high, 84)
        assert all(n.lyric and n.lyric.isalpha() for n in vocals.notes)
        notes = vocals.notes
        assert all(
            a.start + a.duration <= b.start for a, b in itertools.pairwise(notes)
        )  # monophonic
        steps = np.abs(np.diff(pitches))
        assert np.mean(steps <= 2) > 0.5, "mostly stepwise"
        gaps = [b.start - (a.start + a.duration) for a, b in itertools.pairwise(notes)]
        assert max(gaps) > 60 / song.tempo, "phrases end in rests"


def _section_notes(song: SongSpec, name: str) -> list[list[Note]]:
    (vocals,) = song.parts_for("vocals")
    bounds = [s.start for s in song.sections[1:]] + [song.duration]
    out = []
    for section, end in zip(song.sections[:-1], bounds, strict=False):  # the last one ends early
        if section.name == name:
            out.append([n for n in vocals.notes if section.start - 0.1 <= n.start < end - 0.1])
    return out


def test_choruses_repeat_tune_and_words_verses_repeat_the_tune(songs: list[SongSpec]) -> None:
    checked = 0
    for song in songs:
        choruses = [c for c in _section_notes(song, "chorus") if c]
        verses = [v for v in _section_notes(song, "verse") if v]
        if len(choruses) >= 2 and len(verses) >= 2:
            first, second = choruses[0], choruses[1]
            n = min(len(first), len(second))
            assert [x.pitch for x in first[:n]] == [x.pitch for x in second[:n]]
            assert [x.lyric for x in first[:n]] == [x.lyric for x in second[:n]]
            m = min(len(verses[0]), len(verses[1]))
            assert [x.pitch for x in verses[0][:m]] == [x.pitch for x in verses[1][:m]]
            checked += 1
    assert checked >= 5


def test_diversity_over_40_seeds(songs: list[SongSpec]) -> None:
    assert len({s.style for s in songs}) >= 6
    assert len({s.key.split()[0] for s in songs}) >= 8
    assert len({s.key.split()[1] for s in songs}) >= 3
    assert len({s.meta["meter"] for s in songs}) >= 2
    assert len({p.program for s in songs for p in s.parts_for("other")}) >= 15
    assert len({p.program for s in songs for p in s.parts_for("bass")}) >= 4
    assert {p.voice for s in songs for p in s.parts_for("vocals")} == {"male", "female"}
    assert np.ptp([s.tempo for s in songs]) >= 60
    assert len(Counter(p.role for s in songs for p in s.parts_for("other"))) >= 5


def test_duration_limits_are_respected() -> None:
    for seed in range(10):
        song = write_song(seed, min_seconds=10, max_seconds=20)
        assert 10 <= song.duration <= 20
    with pytest.raises(ValueError):
        write_song(0, min_seconds=50, max_seconds=40)


# ------------------------------------------------------------------------------------------ MIDI


def test_song_to_midi_round_trip(tmp_path: Path) -> None:
    song = write_song(5)
    path = tmp_path / "song.mid"
    song_to_midi(song).save(path)
    mid = mido.MidiFile(path)
    assert mid.type == 1 and len(mid.tracks) == len(song.parts) + 1
    for part, track in zip(song.parts, mid.tracks[1:], strict=True):
        ons = [m for m in track if m.type == "note_on" and m.velocity > 0]
        offs = [m for m in track if m.type == "note_off"]
        assert len(ons) == len(offs) == len(part.notes)
        assert {m.channel for m in ons} == ({9} if part.is_drum else {ons[0].channel})
        programs = [m.program for m in track if m.type == "program_change"]
        assert programs == ([] if part.is_drum else [part.program])
        lyrics = [m.text for m in track if m.type == "lyrics"]
        assert lyrics == [n.lyric for n in part.notes if n.lyric]
    assert abs(mid.length - song.duration) < 0.01


def test_midi_times_match_the_spec(tmp_path: Path) -> None:
    song = write_song(9)
    path = tmp_path / "song.mid"
    song_to_midi(song).save(path)
    starts: list[tuple[float, int]] = []
    now = 0.0
    for msg in mido.MidiFile(path):  # iteration gives seconds through the tempo map
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            starts.append((now, msg.note))
    expected = sorted((n.start, n.pitch) for p in song.parts for n in p.notes)
    tick = 60 / song.tempo / 480
    got = sorted(starts)
    assert len(got) == len(expected)
    assert max(abs(a[0] - b[0]) for a, b in zip(got, expected, strict=True)) <= tick


def test_part_to_midi_is_one_track(tmp_path: Path) -> None:
    song = write_song(2)
    (drums,) = song.parts_for("drums")
    vocals = song.parts_for("vocals")[0]
    for part, channel in ((drums, 9), (vocals, 0)):
        path = tmp_path / f"{part.stem}.mid"
        part_to_midi(part, song.tempo, end=song.duration).save(path)
        mid = mido.MidiFile(path)
        assert mid.type == 0 and len(mid.tracks) == 1
        ons = [m for m in mid.tracks[0] if m.type == "note_on" and m.velocity > 0]
        assert len(ons) == len(part.notes) and {m.channel for m in ons} == {channel}
        assert abs(mid.length - song.duration) < 0.01


def test_melody_lands_on_chord_tones_on_the_beat() -> None:
    from engine.data.songwriter import _phrase_pitches, _phrase_rhythm, _plan

    rng = np.random.default_rng(1)
    on_beat = 0
    for seed in range(10):
        plan = _plan(seed, rng, 30, 90)
        for sec in plan.sections[:3]:
            q0 = sec.start_bar * plan.meter.bar_q
            rhythm = _phrase_rhythm(rng, 2 * plan.meter.bar_q, 0.5)
            pitches = _phrase_pitches(rhythm, q0, plan, (55, 72), rng)
            for (offset, _), pitch in zip(rhythm, pitches, strict=True):
                assert (
                    55 <= pitch <= 72
                    and pitch % 12 in plan.key.scale + plan.chord_at(q0 + offset).pcs
                )
                beat = (q0 + offset) / plan.meter.pulse_q
                if abs(beat - round(beat)) < 1e-9:
                    assert pitch % 12 in plan.chord_at(q0 + offset).pcs
                    on_beat += 1
    assert on_beat > 20
