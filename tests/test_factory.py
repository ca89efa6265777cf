"""The data factory end to end on the numpy backend: exact sums, determinism, resume, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from engine.audio import read_audio
from engine.constants import STEMS
from engine.data import factory, musdb
from engine.errors import StemtokError

CFG = factory.SynthConfig(minutes=0.4, seed=5, backend="numpy", min_seconds=8, max_seconds=12)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.wav"))
    }


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("set")
    factory.synth(CFG, out, jobs=2)
    return out


def test_layout_manifest_and_exact_sums(made: Path) -> None:
    manifest = json.loads((made / "manifest.json").read_text())
    songs = manifest["songs"]
    assert manifest["total_seconds"] >= 0.4 * 60 and len(songs) >= 2
    assert {s["split"] for s in songs} <= {"train", "valid", "test"}
    tracks = musdb.list_tracks(made)
    assert sorted(t.name for t in tracks) == sorted(s["name"] for s in songs)
    for song in songs:
        folder = made / song["split"] / song["name"]
        mix, rate = read_audio(folder / "mixture.wav", dtype=np.float64)
        stems = [read_audio(folder / f"{s}.wav", dtype=np.float64)[0] for s in STEMS]
        assert rate == 48000 and mix.shape[0] == 2
        assert np.max(np.abs(np.sum(stems, axis=0) - mix)) <= 1e-5
        # version 2 masters to a ceiling of -0.2 dBFS at most; version 1 keeps 0.9 of headroom
        ceiling = 0.9 if manifest["generator"]["version"] == "1" else 10 ** (-0.2 / 20)
        assert np.abs(mix).max() <= ceiling + 1e-6
        assert max(np.abs(s).max() for s in stems) <= ceiling + 1e-6
        for seg in song["vad"]["segments"]:
            assert seg[1] - seg[0] >= 2.0
        assert song["licence"] and song["source"]


def test_same_seed_same_bytes_and_resume(made: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    factory.synth(CFG, again, jobs=1)
    assert _digest(again) == _digest(made)
    # resume: remove one finished song, leave a stale partial folder, run again
    song = next(p for p in again.glob("*/*") if p.is_dir())
    for f in song.iterdir():
        f.unlink()
    song.rmdir()
    (song.parent / f".{song.name}.partial").mkdir()
    factory.synth(CFG, again, jobs=1)
    assert _digest(again) == _digest(made)
    assert not list(again.rglob(".*.partial"))


def test_other_settings_refuse_to_resume(made: Path) -> None:
    other = factory.SynthConfig(minutes=0.4, seed=6, backend="numpy", min_seconds=8, max_seconds=12)
    with pytest.raises(StemtokError, match="other settings"):
        factory.synth(other, made)


def test_splits_never_share_a_song() -> None:
    jobs = factory.plan(factory.SynthConfig(minutes=12, seed=1, backend="numpy"))
    assert {j.split for j in jobs} == {"train", "valid", "test"}
    assert len({j.seed for j in jobs}) == len(jobs)


def test_cli_synth_and_stats(
    made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    args = [
        "data",
        "synth",
        "--minutes",
        "0.15",
        "--out",
        str(out),
        "--seed",
        "2",
        "--backend",
        "numpy",
        "--min-seconds",
        "8",
        "--max-seconds",
        "10",
        "--jobs",
        "1",
    ]
    assert main([*args, "--generator", "1"]) == 0
    assert "songs" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["version"] == "1" and manifest["config"]["version"] == "1"
    assert json.loads((made / "manifest.json").read_text())["generator"]["version"] == "2"
    with pytest.raises(StemtokError, match="unknown generator version"):
        factory.synth(
            factory.SynthConfig(minutes=0.1, backend="numpy", version="3"), tmp_path / "v3"
        )
    assert main(["data", "stats", "--json", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["songs"] >= 1 and summary["tempo_bpm"]["min"] >= 60
    assert main(["data", "stats", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["data", "synth", "--minutes", "-1", "--out", str(out), "--backend", "numpy"]) == 2
