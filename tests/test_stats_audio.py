"""`stemtok data stats` audio measurements on synthetic songs with known values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from engine.audio import write_audio
from engine.constants import STEMS
from engine.data import stats

RATE = 48_000


def _sine(f: float, amp: float, secs: float = 4.0) -> np.ndarray:
    t = np.arange(round(secs * RATE)) / RATE
    x = amp * np.sin(2 * np.pi * f * t)
    return np.stack([x, x]).astype(np.float32)


def _voice(f0: float, secs: float = 4.0) -> np.ndarray:
    t = np.arange(round(secs * RATE)) / RATE
    x = sum(0.1 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6))
    return np.stack([x, x]).astype(np.float32)


def _song(root: Path, name: str, f0: float) -> None:
    folder = root / "train" / name
    folder.mkdir(parents=True)
    stems = {
        "vocals": _voice(f0),
        "drums": _sine(2000.0, 0.05),
        "bass": _sine(100.0, 0.05),
        "other": np.zeros((2, 4 * RATE), np.float32),
    }
    for s in STEMS:
        write_audio(folder / f"{s}.wav", stems[s], RATE, bit_depth=24)
    write_audio(folder / "mixture.wav", _sine(997.0, 0.1), RATE, bit_depth=24)  # -20 LUFS


@pytest.fixture()
def made(tmp_path: Path) -> Path:
    _song(tmp_path, "a", 220.0)  # A3 = MIDI 57
    _song(tmp_path, "b", 440.0)  # A4 = MIDI 69
    return tmp_path


def test_per_song_values(made: Path) -> None:
    per_song = stats.audio_stats(made)
    assert len(per_song) == 2
    a = per_song[0]
    assert a["mixture_lufs"] == pytest.approx(-20.0, abs=0.05)
    assert a["mixture_crest_db"] == pytest.approx(3.01, abs=0.02)
    assert a["mixture_peak_dbfs"] == pytest.approx(-20.0, abs=0.01)
    assert a["drums_centroid_hz"] == pytest.approx(2000.0, rel=0.01)
    assert a["bass_centroid_hz"] == pytest.approx(100.0, rel=0.05)
    assert "other_lufs" not in a  # silent stems are left out
    assert a["vocal_median_midi"] == pytest.approx(57.0, abs=0.3)
    assert per_song[1]["vocal_median_midi"] == pytest.approx(69.0, abs=0.3)
    assert a["vocal_span_semitones"] < 0.5


def test_distributions_and_cli(made: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = stats.distributions(stats.audio_stats(made))
    assert dist["vocal_median_midi"]["min"] == pytest.approx(57.0, abs=0.3)
    assert dist["vocal_median_midi"]["max"] == pytest.approx(69.0, abs=0.3)
    assert dist["vocal_median_midi"]["median"] == pytest.approx(63.0, abs=0.3)
    assert main(["data", "stats", "--json", str(made)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["audio"]["mixture_lufs"]["n"] == 2
    assert main(["data", "stats", "--markdown", str(made)]) == 0
    out = capsys.readouterr().out
    assert "| metric | n | min | p10 | median | p90 | max |" in out and "mixture_lufs" in out
    assert main(["data", "stats", "--no-audio", str(made)]) == 0
    assert "mixture_lufs" not in capsys.readouterr().out
