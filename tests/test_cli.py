"""The CLI shell: help that teaches, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.cli import main
from app.commands import COMMANDS


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_info_reports_format_rate_channels_duration_levels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "tone.flac"
    t = np.arange(44100) / 44100
    sf.write(p, np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1), 44100, subtype="PCM_24")
    assert main(["info", "--json", str(p)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["format"], d["sample_format"], d["rate"], d["channels"]) == (
        "flac",
        "int24",
        44100,
        2,
    )
    assert d["duration"] == pytest.approx(1.0)
    assert d["peak_dbfs"] == pytest.approx(20 * np.log10(0.5), abs=0.01)
    assert d["rms_dbfs"] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.01)
    assert main(["info", str(p)]) == 0
    assert "FLAC int24, 44100 Hz, 2 ch, 0:01.000" in capsys.readouterr().out


def test_info_keeps_going_after_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, np.zeros((100, 1)), 48000)
    (tmp_path / "bad.wav").write_text("not audio")
    assert main(["info", str(tmp_path / "bad.wav"), str(good)]) == 1
    out, err = capsys.readouterr()
    assert "good.wav" in out
    assert err.count("\n") == 1 and "bad.wav" in err and "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_built_and_teaches(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: stemtok " + command)


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "app", "info", str(tmp_path / "missing.wav")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 1
    assert r.stderr.strip() == f"stemtok: error: {tmp_path / 'missing.wav'}: no such file"


def test_help_is_wrapped_to_the_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Long descriptions and examples fit an 80-column terminal (RawDescription texts included)."""
    monkeypatch.setenv("COLUMNS", "80")
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        lines = capsys.readouterr().out.splitlines()
        assert max(map(len, lines)) <= 80, (command, max(lines, key=len))
    with pytest.raises(SystemExit):
        main(["separate", "--help"])
    text = capsys.readouterr().out
    assert "'aligned' mode (default) keeps the input's rate" in " ".join(text.split())
    assert "  stemtok separate song.flac -o stems\n      stems/song/" in text  # examples kept


def test_missing_extras_name_an_install_command_that_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    code = main(["train", "codec", "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err == (
        "stemtok: error: training needs torch (in the stemtok checkout: .venv/bin/pip install "
        "'.[train]')\n"
    )
    sources = Path(__file__).resolve().parents[1]
    for folder in ("app", "engine"):
        for path in (sources / folder).rglob("*.py"):
            assert "pip install 'stemtok[" not in path.read_text(), path
