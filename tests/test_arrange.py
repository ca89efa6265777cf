"""Generator version 2 songs: genre templates, synth layers, lyrics, backing vocals."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from engine.data import arrange, layers, lyrics, pitch
from engine.data.song import Note, Part, SongSpec

RATE = 48_000


@pytest.fixture(scope="module")
def songs() -> list[SongSpec]:
    return [arrange.write_song_v2(seed, min_seconds=20, max_seconds=30) for seed in range(24)]


def test_same_seed_same_song() -> None:
    a = arrange.write_song_v2(5, min_seconds=20, max_seconds=30)
    assert a == arrange.write_song_v2(5, min_seconds=20, max_seconds=30)


def test_genres_and_their_layers(songs: list[SongSpec]) -> None:
    styles = Counter(s.style for s in songs)
    assert sum(styles[g] for g in ("rock", "pop", "hip-hop", "edm")) >= 18
    roles = Counter(p.role for s in songs for p in s.parts)
    for role in ("synth_kit", "supersaw", "pluck"):
        assert roles[role] > 0, role
    assert any(r in roles for r in ("808", "synth_bass", "reese"))
    for s in songs:
        assert [p.stem for p in s.parts].count("bass") == 1
        assert [p.stem for p in s.parts].count("drums") == 1
        if s.style == "rock" and any("distorted guitar" in p.name for p in s.parts):
            assert sum("distorted guitar" in p.name for p in s.parts) == 2  # doubled L/R


def test_lyrics_are_our_lines_and_choruses_repeat(songs: list[SongSpec]) -> None:
    bank = {w for line in lyrics.LINES for w in lyrics.syllables(line)} | set(lyrics.FILLERS)
    for s in songs:
        lead = s.parts[0]
        assert lead.name.startswith("lead vocal")
        assert {n.lyric for n in lead.notes} <= bank
    lead = songs[0].parts[0]
    again = lyrics.relyric(lead, np.random.default_rng(1))
    by_tune: dict[tuple[tuple[int, int], ...], list[str]] = {}
    for phrase in lyrics.phrases(again.notes):
        t0 = again.notes[phrase[0]].start
        key = tuple((round((again.notes[i].start - t0) * 20), again.notes[i].pitch) for i in phrase)
        words = [again.notes[i].lyric for i in phrase]
        assert by_tune.setdefault(key, words) == words


def test_backing_vocals_are_vocal_stems(songs: list[SongSpec]) -> None:
    names = [p.name for s in songs for p in s.parts if p.stem == "vocals"]
    assert any(n == "harmony vocal" for n in names)
    assert any(n.startswith("backing oohs") for n in names)
    for s in songs:
        for p in s.parts:
            if p.name == "harmony vocal":  # a third (two scale steps) over the lead
                assert all(n.lyric for n in p.notes) and p.notes


def test_808_glides_between_overlapping_notes() -> None:
    notes = (Note(0.1, 0.9, 36, 110), Note(0.5, 0.6, 43, 110))  # overlapping: slide up a fifth
    part = Part("bass", "808 bass", 38, notes, role="808")
    y = layers.render_layer(part, 1.5, rate=RATE, seed=3)
    times, f0 = pitch.yin(y, RATE)
    early = np.nanmedian(f0[(times > 0.3) & (times < 0.45)])
    late = np.nanmedian(f0[(times > 0.75) & (times < 1.0)])
    assert early == pytest.approx(layers.hz(36), rel=0.03)
    assert late == pytest.approx(layers.hz(43), rel=0.03)


@pytest.mark.parametrize("role", ["supersaw", "pluck", "synth_bass", "reese"])
def test_synth_layers_sound_at_their_notes(role: str) -> None:
    part = Part("other", role, 81, (Note(0.2, 0.5, 57, 100),), role=role)
    y = layers.render_layer(part, 1.2, rate=RATE, seed=1)
    assert y.dtype == np.float32 and y.shape == (round(1.2 * RATE),)
    assert np.abs(y[: round(0.19 * RATE)]).max() == 0.0 and np.abs(y).max() > 0.1
    assert layers.render_layer(part, 1.2, rate=RATE, seed=1).tobytes() == y.tobytes()


def test_saw_is_band_limited() -> None:
    y = layers.saw(3000.0, RATE, RATE)
    spec = np.abs(np.fft.rfft(y)) ** 2
    harmonics = spec[3000::3000].sum()
    assert harmonics / spec.sum() > 0.99  # little aliased energy between the harmonics


@pytest.mark.parametrize("key", [36, 38, 39, 42, 46, 49, 45])
def test_synth_kit_hits(key: int) -> None:
    kit = Part("drums", "909 kit", 0, (Note(0.3, 0.1, key, 120),), True, role="synth_kit")
    y = layers.render_layer(kit, 1.0, rate=RATE, seed=2)
    k = round(0.3 * RATE)
    assert np.abs(y[:k]).max() == 0.0 and np.abs(y[k : k + 2400]).max() > 0.1
