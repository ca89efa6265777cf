"""MUSDB18-HQ layout reader/writer: layouts, lazy loading, checks and their messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.audio import write_audio
from engine.constants import STEMS
from engine.data.musdb import list_tracks, write_track
from engine.errors import StemtokError

RATE = 16_000


def _stems(n: int = RATE, channels: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s: (0.1 * rng.standard_normal((channels, n))).astype(np.float32) for s in STEMS}


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    stems = _stems()
    track = write_track(tmp_path / "test" / "a", stems, RATE, bit_depth="32f")
    assert set(track.files) == {"mixture", *STEMS}
    [again] = list_tracks(tmp_path)
    assert again.name == "a" and again.split == "test"
    audio = again.load()
    assert audio.rate == RATE and audio.channels == 2 and audio.frames == RATE
    for s in STEMS:
        np.testing.assert_array_equal(audio.stems[s], stems[s])
    np.testing.assert_allclose(audio.mixture, sum(stems.values()), atol=1e-6)


def test_layouts_split_flat_single_and_flac(tmp_path: Path) -> None:
    for split, name in (("train", "x"), ("test", "y"), ("test", "z")):
        write_track(tmp_path / "split" / split / name, _stems(), RATE)
    assert [t.name for t in list_tracks(tmp_path / "split")] == ["x", "y", "z"]
    assert [t.name for t in list_tracks(tmp_path / "split", "test")] == ["y", "z"]
    write_track(tmp_path / "flat" / "b", _stems(), RATE, suffix=".flac", bit_depth=16)
    write_track(tmp_path / "flat" / "a", _stems(), RATE)
    flat = list_tracks(tmp_path / "flat")
    assert [t.name for t in flat] == ["a", "b"] and flat[1].files["vocals"].suffix == ".flac"
    assert flat[1].load().frames == RATE
    single = list_tracks(tmp_path / "flat" / "a")
    assert [t.name for t in single] == ["a"]


def test_missing_mixture_is_the_sum_of_the_stems(tmp_path: Path) -> None:
    stems = _stems()
    for s, a in stems.items():
        write_audio(tmp_path / "song" / f"{s}.wav", a, RATE, bit_depth="32f")
    [track] = list_tracks(tmp_path)
    assert not track.has_mixture
    np.testing.assert_allclose(track.load().mixture, sum(stems.values()), atol=1e-6)


def test_max_seconds_crops_every_source(tmp_path: Path) -> None:
    write_track(tmp_path / "s", _stems(2 * RATE), RATE)
    audio = list_tracks(tmp_path)[0].load(max_seconds=0.5)
    assert audio.frames == RATE // 2
    assert all(a.shape == (2, RATE // 2) for a in audio.stems.values())


def test_missing_stem_is_a_clear_error(tmp_path: Path) -> None:
    track = write_track(tmp_path / "s", _stems(), RATE)
    track.files["drums"].unlink()
    [again] = list_tracks(tmp_path)
    with pytest.raises(StemtokError, match=r"song 's' has no drums stem \(expected drums\.wav"):
        again.load()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("length", r"bass is 8000 samples long but vocals is 16000"),
        ("rate", r"bass is at 22050 Hz but vocals is at 16000 Hz"),
        ("channels", r"bass has 1 channel\(s\) but vocals has 2"),
    ],
)
def test_mismatched_stems_are_clear_errors(tmp_path: Path, change: str, message: str) -> None:
    track = write_track(tmp_path / "s", _stems(), RATE)
    bass = track.files["bass"]
    bad = {
        "length": (np.zeros((2, RATE // 2), np.float32), RATE),
        "rate": (np.zeros((2, RATE), np.float32), 22_050),
        "channels": (np.zeros((1, RATE), np.float32), RATE),
    }[change]
    write_audio(bass, bad[0], bad[1], overwrite=True)
    with pytest.raises(StemtokError, match=message):
        list_tracks(tmp_path)[0].load()


def test_bad_roots_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StemtokError, match="no such folder"):
        list_tracks(tmp_path / "nope")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(StemtokError, match="no songs found"):
        list_tracks(tmp_path / "empty")
    write_track(tmp_path / "d" / "train" / "a", _stems(), RATE)
    with pytest.raises(StemtokError, match="no 'test' split with songs"):
        list_tracks(tmp_path / "d", "test")


def test_write_track_refuses_bad_shapes_and_overwrites(tmp_path: Path) -> None:
    stems = _stems()
    stems["bass"] = stems["bass"][:, :100]
    with pytest.raises(StemtokError, match="one shape"):
        write_track(tmp_path / "s", stems, RATE)
    write_track(tmp_path / "t", _stems(), RATE)
    with pytest.raises(StemtokError, match="already exists"):
        write_track(tmp_path / "t", _stems(), RATE)
    write_track(tmp_path / "t", _stems(seed=1), RATE, overwrite=True)
