"""``stemtok library``: 40 short songs and a corrupt file through the local pool and through Ray
(with a worker killed mid-run), the same bytes from both, a complete manifest, and a run killed
with SIGKILL that resumes where it stopped."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from app.cli import main
from engine.constants import STEMS
from engine.library import MANIFEST, Settings, plan_library, read_manifest, run_library
from engine.runtime.model import sha256

ROOT = Path(__file__).parents[1]
SONGS = 40
MODEL = ["--model", "teacher", "--device", "cpu", "--workers", "2", "--quiet"]


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 songs of 1-2 s (stereo 44.1 kHz and mono 48 kHz, in nested folders), one corrupt."""
    folder = tmp_path_factory.mktemp("library") / "music"
    rng = np.random.default_rng(0)
    for i in range(SONGS):
        rate, channels = (44_100, 2) if i % 3 else (48_000, 1)
        n = int(rate * (1 + (i % 5) / 4))
        t = np.arange(n) / rate
        tone = 0.3 * np.sin(2 * np.pi * (110 + 20 * i) * t)
        x = tone[:, None] + 0.05 * rng.standard_normal((n, channels))
        path = folder / f"disc{i % 4}" / f"track{i:02d}.{'flac' if i % 2 else 'wav'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, x.astype(np.float32), rate)
    (folder / "disc0" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return folder


@pytest.fixture(scope="module")
def local_out(src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "stems"
    assert main(["library", str(src), "-o", str(out), *MODEL]) == 1  # the corrupt file
    return out


def manifest_lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


def stem_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.wav"))}


def check_complete(src: Path, out: Path) -> None:
    """One record per song, each right; every song folder whole; nothing hidden left."""
    lines = manifest_lines(out)
    assert sorted(r["source"] for r in lines) == sorted(
        p.relative_to(src).as_posix() for p in src.rglob("*.*")
    )
    for record in lines:
        song = src / record["source"]
        assert record["size"] == song.stat().st_size and record["sha256"] == sha256(song)
        if record["source"].endswith("broken.wav"):
            assert record["status"] == "error" and "broken.wav" in record["error"]
            assert "\n" not in record["error"]
            continue
        assert record["status"] == "ok" and record["model"] == "teacher"
        assert list(record["stems"]) == list(STEMS) and record["rtf"] > 0
        assert 1.0 <= record["seconds"] <= 2.0
        assert all((out / path).is_file() for path in record["stems"].values())
    folders = {p.parent for p in out.rglob("*.wav")}
    assert len(folders) == SONGS
    assert all(
        sorted(f.name for f in d.iterdir()) == sorted(f"{s}.wav" for s in STEMS) for d in folders
    )
    assert not [p for p in out.rglob(".*")]


def test_local_engine_writes_every_song_and_a_complete_manifest(src: Path, local_out: Path) -> None:
    check_complete(src, local_out)
    stems, rate = sf.read(local_out / "disc1" / "track01" / "vocals.wav", always_2d=True)
    mix, mix_rate = sf.read(src / "disc1" / "track01.flac", always_2d=True)
    assert rate == mix_rate and stems.shape == mix.shape  # aligned: rate, length, channels kept


def test_ray_with_a_worker_killed_mid_run_gives_the_same_bytes(
    src: Path, local_out: Path, tmp_path: Path
) -> None:
    pytest.importorskip("ray", reason="the 'cluster' extra (Ray) is not installed")
    from engine.library.ray_cluster import RayExecutor

    out = tmp_path / "stems"
    settings = Settings(model="teacher", device="cpu")
    plan = plan_library(src, out, settings)
    executor = RayExecutor(settings, plan.todo[0].model_sha256, workers=2)
    killed: list[int] = []

    def kill_the_other_worker(record: dict[str, Any]) -> None:
        # the worker that sent this record waits for its next song; the other is mid-song
        if len(killed) == 0 and len(manifest_lines(out)) == 5:
            busy = [p for p in executor.pids() if record["worker"] != f"{os.uname().nodename}:{p}"]
            os.kill(busy[0], signal.SIGKILL)
            killed.append(busy[0])

    try:
        records = run_library(plan, executor, out, kill_the_other_worker)
        after = executor.pids()
    finally:
        executor.close()
    assert killed and killed[0] not in after  # Ray restarted the killed worker
    assert len(records) == SONGS + 1 and len({r["source"] for r in records}) == SONGS + 1
    check_complete(src, out)
    assert stem_bytes(out) == stem_bytes(local_out)


def test_a_killed_run_resumes_and_skips_finished_songs(
    src: Path, local_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stems"
    cmd = [sys.executable, "-m", "app.cli", "library", str(src), "-o", str(out), *MODEL]
    run = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / MANIFEST).is_file() or len(manifest_lines(out)) < 8:
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # the command and its workers, as a power cut would
    run.wait()
    first = read_manifest(out)
    assert 8 <= len(first) < SONGS + 1
    for folder in {p.parent for p in out.rglob("*.wav") if not p.parent.name.startswith(".")}:
        assert len(list(folder.glob("*.wav"))) == len(STEMS)  # no half-written song visible
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav") if "/." not in str(p)}

    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr  # the corrupt file
    assert f"{len(first)} of {SONGS + 1} songs already done" in result.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # not done again
    check_complete(src, out)
    assert stem_bytes(out) == stem_bytes(local_out)


def test_user_errors_are_one_line(
    src: Path,
    local_out: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def error(*args: str) -> str:
        assert main(["library", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        return err

    out = tmp_path / "out"
    assert "no such folder" in error(str(tmp_path / "nowhere"), "-o", str(out))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if importlib.util.find_spec("ray") is not None:
        address = ["--engine", "ray", "--address", f"127.0.0.1:{port}"]
        assert "cannot reach the Ray cluster" in error(str(src), "-o", str(out), *address)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    hint = error(str(src), "-o", str(out), "--engine", "ray", "--model", "teacher")
    assert "pip install '.[cluster]'" in hint
    (out / "disc0" / "track00").mkdir(parents=True)
    (out / "disc0" / "track00" / "mine.txt").write_text("not ours")
    assert "pass --overwrite" in error(str(src), "-o", str(out), "--model", "teacher")
    assert (out / "disc0" / "track00" / "mine.txt").is_file()
    before = stem_bytes(local_out)  # stems made as wav: not this run's to replace as flac
    flac = error(str(src), "-o", str(local_out), *MODEL, "--format", "flac")
    assert "other settings" in flac and stem_bytes(local_out) == before
    twins = tmp_path / "twins"
    twins.mkdir()
    for name in ("a.wav", "a.flac"):
        sf.write(twins / name, np.zeros(99), 8000)
    assert "would both be written" in error(str(twins), "-o", str(out), "--model", "teacher")


def test_a_song_that_failed_after_it_was_read_is_tried_again(tmp_path: Path) -> None:
    src, out = tmp_path / "music", tmp_path / "stems"
    src.mkdir()
    sf.write(src / "wide.wav", np.zeros((4800, 9), np.float32), 48_000)  # FLAC holds 8 channels
    args = ["library", str(src), "-o", str(out), *MODEL, "--format", "flac"]
    assert main(args) == 1 and main(args) == 1
    lines = manifest_lines(out)
    assert [r["stage"] for r in lines] == ["separate", "separate"]  # tried by both runs
    assert "at most 8 channels" in lines[0]["error"] and not list(out.glob("wide*"))
