"""``stemtok eval`` end to end on tiny synthetic songs: files, numbers, silence, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.cli import main
from engine.constants import STEMS
from engine.data.musdb import list_tracks, write_track
from engine.evaluation import perceptual
from engine.evaluation.synthetic import ToySongConfig, make_toy_song, write_set

RATE = 22_050
FAST = ["--metrics", "sdr,si_sdr,mrstft,logmel", "--no-isolate", "--jobs", "1", "-q"]
FAST += ["--excerpt-seconds", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two songs with vocals and one whose vocal stem is digital silence."""
    root = tmp_path_factory.mktemp("songs")
    write_set(root, songs=2, cfg=ToySongConfig(seconds=3.0, rate=RATE))
    quiet = make_toy_song(ToySongConfig(seconds=3.0, rate=RATE, vocals=False), seed=7)
    write_track(root / "test" / "song-quiet", quiet, RATE)
    return root


def _finite_everywhere(x: Any) -> bool:
    if isinstance(x, dict):
        return all(_finite_everywhere(v) for v in x.values())
    if isinstance(x, list):
        return all(_finite_everywhere(v) for v in x)
    return not isinstance(x, float) or math.isfinite(x)


def _summary(result: dict[str, Any], system: str, stem: str, metric: str) -> float:
    return float(result["summary"]["systems"][system]["stems"][stem][metric]["value"])


def test_full_run_with_every_metric(data: Path, tmp_path: Path) -> None:
    missing = [k for k, v in perceptual.available().items() if v]
    if missing:
        pytest.skip(f"not installed: {missing}")
    out = tmp_path / "report"
    args = ["eval", str(data), "--out", str(out), "--songs", "song-00,song-quiet", "-q"]
    args += ["--max-seconds", "2.5"]  # DNSMOS repeats 2.5 s to 10 s: one 9.01-s window
    args += ["--systems", "mixture,oracle"]  # dsp has its own tests; this keeps the file fast
    assert main(args) == 0
    result = json.loads((out / "results.json").read_text())  # strict JSON: no NaN/Infinity
    assert _finite_everywhere(result)
    assert [s["name"] for s in result["systems"]] == ["mixture", "oracle"]
    for metric in ("visqol", "sdr", "si_sdr", "usdr", "mrstft", "logmel_l1"):
        assert _summary(result, "oracle", "bass", metric) is not None
    for stem in STEMS:
        assert _summary(result, "oracle", stem, "visqol") > _summary(
            result, "mixture", stem, "visqol"
        )
        assert _summary(result, "oracle", stem, "sdr") > _summary(result, "mixture", stem, "sdr")
    assert _summary(result, "oracle", "vocals", "dnsmos_ovrl") > 0
    assert result["summary"]["reference_dnsmos"]["n"] == 1
    # the silent vocal stem of song-quiet is reported, not scored
    assert result["summary"]["silent"][0]["song"] == "song-quiet"
    assert result["summary"]["systems"]["oracle"]["stems"]["vocals"]["sdr"]["n"] == 1
    assert result["summary"]["systems"]["oracle"]["stems"]["drums"]["sdr"]["n"] == 2
    speed = result["speed"]["systems"]
    assert all(speed[n]["rtf"] > 0 and speed[n]["peak_rss_mib"] > 10 for n in speed)
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for text in (md, page):
        assert "Table 1: ViSQOL per stem" in text and "Table 2: vocals quality" in text
        assert "Silent references" in text and "Speed and memory" in text
    assert "figures/spectrogram_vocals.png" in md and "audio/true_vocals.mp3" in page
    for rel in (
        "figures/bars_visqol.png",
        "figures/spectrogram_drums.png",
        "audio/oracle_bass.mp3",
    ):
        assert (out / rel).stat().st_size > 1000


def test_external_estimates_are_scored_like_systems(data: Path, tmp_path: Path) -> None:
    est = tmp_path / "est"
    for track in list_tracks(data):
        audio = track.load()
        write_track(est / track.name, dict(audio.stems), audio.rate, bit_depth="32f")
    out = tmp_path / "r"
    assert (
        main(
            [
                "eval",
                str(data),
                "--systems",
                "mixture",
                "--estimates",
                f"perfect={est}",
                "--out",
                str(out),
                *FAST,
            ]
        )
        == 0
    )
    result = json.loads((out / "results.json").read_text())
    assert _summary(result, "perfect", "drums", "si_sdr") > 90
    assert _summary(result, "perfect", "drums", "mrstft") < 1e-3
    assert _summary(result, "mixture", "drums", "si_sdr") < 0


def test_through_codec_transforms_references_and_estimates_alike(
    data: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    est = tmp_path / "est"
    track = next(t for t in list_tracks(data) if t.name == "song-00")
    write_track(est / track.name, dict(track.load().stems), track.load().rate, bit_depth="32f")
    out = tmp_path / "c"
    args = ["eval", str(data), "--systems", "mixture", "--estimates", f"perfect={est}"]
    args += ["--songs", "song-00", "--max-seconds", "1", "--through-codec", "--out", str(out)]
    assert main([*args, *FAST]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["protocol"] == "through codec"
    assert result["config"]["transform"].startswith("codec:codec-small:")
    # the same deterministic round trip on both sides: a perfect estimate stays perfect
    assert _summary(result, "perfect", "drums", "si_sdr") > 60
    assert _summary(result, "mixture", "drums", "si_sdr") < 0


def test_estimate_problems_are_clear(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    est = tmp_path / "est"
    for track in list_tracks(data):
        audio = track.load()
        stems = {s: a[:, : a.shape[1] // 2] for s, a in audio.stems.items()}
        write_track(est / track.name, stems, audio.rate)
    assert (
        main(["eval", str(data), "--estimates", str(est), "--out", str(tmp_path / "a"), *FAST]) == 2
    )
    assert "samples but the reference has" in capsys.readouterr().err
    (est / "song-00" / "bass.wav").unlink()
    assert (
        main(["eval", str(data), "--estimates", str(est), "--out", str(tmp_path / "b"), *FAST]) == 2
    )
    assert "has no bass" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--through-codec", "--codec", "nowhere"], 2, "nowhere holds no codec"),
        (["--systems", "mixture,default"], 2, "no-model: not a model folder"),
        (["--metrics", "pesq"], 2, "unknown metric 'pesq'"),
        (["--max-seconds", "0"], 2, "--max-seconds must be positive"),
        (["--songs", "nope"], 2, "song 'nope' not found"),
    ],
)
def test_bad_options_give_one_line(
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    code: int,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STEMTOK_MODEL", str(tmp_path / "no-model"))
    assert main(["eval", str(data), "--out", str(tmp_path / "o"), *FAST, *extra]) == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_data_gives_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stems = make_toy_song(ToySongConfig(seconds=1.0, rate=RATE), seed=1)
    write_track(tmp_path / "d" / "s", stems, RATE)
    (tmp_path / "d" / "s" / "other.wav").unlink()
    assert main(["eval", str(tmp_path / "d"), "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "song 's' has no other stem" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_refuses_non_empty_output_without_overwrite(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = [
        "eval",
        str(data),
        "--out",
        str(out),
        "--systems",
        "mixture",
        "--songs",
        "song-01",
        *FAST,
    ]
    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err
    more = [
        "--overwrite",
        "--max-seconds",
        "1.5",
        "--audio-format",
        "wav",
        "--excerpt-seconds",
        "1",
    ]
    assert main([*args, *more]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["songs"][0]["seconds"] == pytest.approx(1.5)
    assert (out / "audio" / "mixture_vocals.wav").is_file()
    assert np.isclose(result["config"]["max_seconds"], 1.5)
