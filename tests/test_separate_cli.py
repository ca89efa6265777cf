"""``stemtok separate`` / ``karaoke`` / ``bench``: files where they belong, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_export import export_tiny

from app.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEMO = Path(__file__).parents[1] / "resources" / "demo" / "demo.flac"
DEFAULT = Path(__file__).parents[1] / "resources" / "models" / "default"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("cli"))


def write_song(
    path: Path, seconds: float = 0.8, rate: int = 44100, channels: int = 2
) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = (0.2 * rng.standard_normal((channels, int(seconds * rate)))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.T, rate, subtype="FLOAT" if path.suffix == ".wav" else "PCM_24")
    return x


def one_line_error(capsys: pytest.CaptureFixture[str], code: int, text: str) -> None:
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and text in err and "Traceback" not in err


def test_separate_writes_song_folders_and_refuses_to_overwrite(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    songs = tmp_path / "album"
    x = write_song(songs / "one.wav")
    write_song(songs / "sub" / "two.flac", 0.5, 48000, 1)
    out = tmp_path / "stems"
    args = ["separate", str(songs), "-o", str(out), "--model", str(tiny_dir), "--threads", "1",
            "--device", "cpu"]  # fmt: skip
    assert main([*args, "--stems", "vocals,drums", "--quiet"]) == 0
    assert sorted(p.name for p in (out / "one").iterdir()) == ["drums.wav", "vocals.wav"]
    vocals, rate = sf.read(out / "one" / "vocals.wav", always_2d=True)
    assert rate == 44100 and vocals.T.shape == x.shape
    assert (out / "two" / "drums.wav").is_file()
    capsys.readouterr()
    one_line_error(capsys, main([*args, "--stems", "vocals", "--quiet"]), "already exists")
    assert main([*args, "--stems", "vocals", "--quiet", "--overwrite", "--format", "flac"]) == 0


def test_bad_inputs_give_one_line(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["-o", str(tmp_path / "out"), "--model", str(tiny_dir), "--device", "cpu"]
    one_line_error(capsys, main(["separate", str(tmp_path / "missing.wav"), *base]), "no such")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    one_line_error(capsys, main(["separate", str(tmp_path / "empty"), *base]), "no audio files")
    (tmp_path / "bad.wav").write_text("not audio")
    one_line_error(capsys, main(["separate", str(tmp_path / "bad.wav"), *base]), "bad.wav")
    write_song(tmp_path / "ok.wav")
    one_line_error(
        capsys, main(["separate", str(tmp_path / "ok.wav"), *base, "--stems", "piano"]), "piano"
    )
    code = main(["separate", str(tmp_path / "ok.wav"), "-o", str(tmp_path / "o"),
                 "--model", str(tmp_path / "empty"), "--device", "cpu"])  # fmt: skip
    one_line_error(capsys, code, "not a model folder")


def test_karaoke_is_the_instrumental_with_an_optional_guide(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = write_song(tmp_path / "song.wav")
    out = tmp_path / "karaoke.wav"
    base = ["karaoke", str(tmp_path / "song.wav"), "--model", str(tiny_dir), "--quiet",
            "--device", "cpu"]  # fmt: skip
    assert main([*base, "-o", str(out)]) == 0
    plain, rate = sf.read(out, always_2d=True)
    assert rate == 44100 and plain.T.shape == x.shape
    assert main([*base, "-o", str(out), "--guide-vocal", "-6", "--overwrite"]) == 0
    guided, _ = sf.read(out, always_2d=True)
    assert not np.allclose(plain, guided)
    capsys.readouterr()
    one_line_error(capsys, main([*base, "-o", str(out)]), "already exists")
    one_line_error(capsys, main([*base, "-o", str(out), "--overwrite", "--guide-vocal", "3"]), "dB")


def test_bench_reports_rtf_and_memory(tiny_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    args = ["bench", "--seconds", "1", "--device", "cpu", "--model", str(tiny_dir)]
    assert main([*args, "--threads", "1", "--json", str(report)]) == 0
    (row,) = json.loads(report.read_text())
    assert row["seconds"] == 1 and row["rtf"] > 0 and row["peak_rss_mb"] > 10
    assert row["decode_steps_per_s"] > 0 and row["kv"] == "inplace"


def test_end_to_end_with_the_shipped_model(tmp_path: Path) -> None:
    """A few seconds of the demo song through the default model (the README's command)."""
    if not (DEFAULT / "model_config.json").is_file() or not DEMO.is_file():
        pytest.skip("the default model or the demo song is not in this checkout")
    from engine.audio import read_audio, write_audio

    audio, rate = read_audio(DEMO)
    clip = tmp_path / "demo.wav"
    write_audio(clip, audio[:, rate * 8 : rate * 11], rate, bit_depth="32f")
    args = ["separate", str(clip), "-o", str(tmp_path / "stems"), "--quiet", "--device", "cpu"]
    assert main([*args, "--threads", "2"]) == 0
    stems = [sf.read(tmp_path / "stems" / "demo" / f"{s}.wav", always_2d=True)[0].T
             for s in ("vocals", "drums", "bass", "other")]  # fmt: skip
    mix = audio[:, rate * 8 : rate * 11]
    assert all(s.shape == mix.shape for s in stems)
    err = np.sum((sum(stems) - mix) ** 2) / np.sum(mix.astype(np.float64) ** 2)
    assert 10 * np.log10(err + 1e-30) < -60
