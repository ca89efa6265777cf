"""Real recordings from Debian packages (engine.data.recordings), on tiny generated files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.audio import read_audio
from engine.data.recordings import build_set, excerpt, find_recordings, package_dirs
from engine.errors import StemtokError

sf = pytest.importorskip("soundfile")
RATE = 48_000


def _tone(seconds: float, channels: int = 2) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    ramp = np.linspace(-0.5, 0.5, t.size)  # tells where an excerpt was cut
    return np.stack([0.3 * np.sin(2 * np.pi * 220 * t) + ramp] * channels).astype(np.float32)


@pytest.fixture
def packages(tmp_path: Path) -> dict[str, tuple[Path, ...]]:
    a, b = tmp_path / "games" / "a", tmp_path / "games" / "b"
    (a / "album").mkdir(parents=True)
    b.mkdir(parents=True)
    sf.write(a / "album" / "theme.wav", _tone(3.0).T, RATE, subtype="FLOAT")
    sf.write(a / "jingle.wav", _tone(0.5).T, RATE, subtype="FLOAT")  # too short: left out
    sf.write(b / "level.opus", _tone(2.0).T, RATE, format="OGG", subtype="OPUS")
    (b / "readme.txt").write_text("not audio")
    return {"pkg-a": (a,), "pkg-b": (b,), "not-installed": (tmp_path / "nope",)}


def test_tracks_are_found_cut_and_listed(
    packages: dict[str, tuple[Path, ...]], tmp_path: Path
) -> None:
    found = find_recordings(packages, min_seconds=1.0)
    assert [(p, f.name) for p, f, _ in found] == [("pkg-a", "theme.wav"), ("pkg-b", "level.opus")]
    out = tmp_path / "real"
    m = build_set(out, dirs=packages, licences={"pkg-a": "GPL-2+"}, excerpt_s=1.0, min_seconds=1.0)
    assert m["kind"] == "recordings" and m["total_seconds"] == pytest.approx(2.0, abs=1e-3)
    assert json.loads((out / "manifest.json").read_text()) == m
    theme, level = m["files"]
    assert theme["file"] == "pkg-a/album_theme.flac" and theme["licence"] == "GPL-2+"
    assert theme["start_seconds"] == 1.0 and theme["seconds"] == 1.0  # the centred second
    assert level["file"] == "pkg-b/level.flac" and "copyright" in level["licence"]
    audio, rate = read_audio(out / theme["file"])
    assert rate == RATE and audio.shape == (2, RATE)
    np.testing.assert_allclose(audio, _tone(3.0)[:, RATE : 2 * RATE], atol=1e-6)  # 24-bit
    opus, rate = read_audio(out / level["file"])  # the Ogg Opus track, decoded
    assert rate == RATE and opus.shape == (2, RATE) and np.abs(opus).max() > 0.1
    with pytest.raises(StemtokError, match="not empty"):
        build_set(out, dirs=packages, min_seconds=1.0)
    again = build_set(out, dirs=packages, excerpt_s=None, min_seconds=1.0, overwrite=True)
    assert again["total_seconds"] == pytest.approx(5.0, abs=0.05)  # whole tracks


def test_nothing_installed_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StemtokError, match="no recordings found: install pkg"):
        build_set(tmp_path / "out", dirs={"pkg": (tmp_path / "none",)})


def test_excerpt() -> None:
    x = np.arange(10, dtype=np.float32)[None]
    assert excerpt(x, 1, 4.0)[1] == 3 and excerpt(x, 1, 4.0)[0].tolist() == [[3, 4, 5, 6]]
    assert excerpt(x, 1, None)[0] is x and excerpt(x, 1, 20.0)[1] == 0


def test_packages_are_chosen_by_name() -> None:
    assert list(package_dirs(["xmoto-data"])) == ["xmoto-data"]
    assert "warzone2100-music" in package_dirs()
    with pytest.raises(StemtokError, match="unknown package 'vlc'"):
        package_dirs(["vlc"])
