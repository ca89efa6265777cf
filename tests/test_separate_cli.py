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
    args = [
        "separate",
        str(songs),
        "-o",
        str(out),
        "--model",
        str(tiny_dir),
        "--threads",
        "1",
        "--device",
        "cpu",
    ]
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
    code = main(
        [
            "separate",
            str(tmp_path / "ok.wav"),
            "-o",
            str(tmp_path / "o"),
            "--model",
            str(tmp_path / "empty"),
            "--device",
            "cpu",
        ]
    )
    one_line_error(capsys, code, "not a model folder")


def test_karaoke_is_the_instrumental_with_an_optional_guide(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = write_song(tmp_path / "song.wav")
    out = tmp_path / "karaoke.wav"
    base = [
        "karaoke",
        str(tmp_path / "song.wav"),
        "--model",
        str(tiny_dir),
        "--quiet",
        "--device",
        "cpu",
    ]
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
    stems = [
        sf.read(tmp_path / "stems" / "demo" / f"{s}.wav", always_2d=True)[0].T
        for s in ("vocals", "drums", "bass", "other")
    ]
    mix = audio[:, rate * 8 : rate * 11]
    assert all(s.shape == mix.shape for s in stems)
    err = np.sum((sum(stems) - mix) ** 2) / np.sum(mix.astype(np.float64) ** 2)
    assert 10 * np.log10(err + 1e-30) < -60


def test_mp3_of_six_channels_or_96_khz_is_stereo_48_khz_with_a_notice(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.audio import probe

    write_song(tmp_path / "six.wav", 0.6, 48000, 6)
    write_song(tmp_path / "high.wav", 0.6, 96000, 2)
    out = tmp_path / "stems"
    base = ["--model", str(tiny_dir), "--device", "cpu", "--threads", "1", "--quiet"]
    args = ["separate", str(tmp_path / "six.wav"), str(tmp_path / "high.wav"), "-o", str(out)]
    assert main([*args, *base, "--format", "mp3", "--stems", "vocals"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "stemtok: six.wav: MP3 holds 1-2 channels at 8-48 kHz: 6 channels (5.1) are downmixed "
        "to stereo (WAV and FLAC keep the input as it is)",
        "stemtok: high.wav: MP3 holds 1-2 channels at 8-48 kHz: 96 kHz is resampled to 48 kHz "
        "(WAV and FLAC keep the input as it is)",
    ]
    for song in ("six", "high"):
        info = probe(out / song / "vocals.mp3")
        assert (info.channels, info.rate) == (2, 48000) and abs(info.frames - 28800) <= 1
    karaoke = tmp_path / "six-karaoke.mp3"
    assert main(["karaoke", str(tmp_path / "six.wav"), "-o", str(karaoke), *base]) == 0
    assert "downmixed to stereo" in capsys.readouterr().err
    assert (probe(karaoke).channels, probe(karaoke).rate) == (2, 48000)


def test_bad_input_and_refused_format_fail_before_the_model_loads_leaving_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_model(args: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("app.commands.separate.load_separator", no_model)
    monkeypatch.setattr("app.commands.karaoke.load_separator", no_model)
    write_song(tmp_path / "ten.wav", 0.2, 44100, 10)
    (tmp_path / "bad.wav").write_bytes(b"RIFF junk")
    out = tmp_path / "out"
    cases = {
        ("separate", "ten.wav", "--format", "flac"): "FLAC holds at most 8 channels, the input "
        "has 10: use WAV or AIFF",
        ("separate", "missing.wav"): "missing.wav: no such file or folder",
        ("separate", "bad.wav"): "bad.wav: not a readable audio file",
        ("separate", "ten.wav", "--format", "aiff", "--bit-depth", "32f"): "AIFF holds 8, 16 or "
        "24 bits, not 32-bit float",
    }
    for (cmd, song, *more), text in cases.items():
        code = main([cmd, str(tmp_path / song), "-o", str(out), *more])
        one_line_error(capsys, code, text)
        assert code == 2 and not out.exists()
    for song, target, text in [
        ("missing.wav", "k.wav", "no such file"),
        ("bad.wav", "k.wav", "not a readable audio file"),
        ("ten.wav", "k.ogg", "cannot write '.ogg' files"),
    ]:
        code = main(["karaoke", str(tmp_path / song), "-o", str(tmp_path / target)])
        one_line_error(capsys, code, text)


def test_cuda_asked_for_without_a_gpu_is_one_warning_line(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.runtime import session

    if session.cuda_usable():
        pytest.skip("this machine has a working CUDA")
    session._announce.cache_clear()
    write_song(tmp_path / "song.wav", 0.3)
    args = [
        "separate",
        str(tmp_path / "song.wav"),
        "-o",
        str(tmp_path / "o"),
        "--quiet",
        "--model",
        str(tiny_dir),
        "--threads",
        "1",
        "--device",
        "cuda",
    ]
    assert main(args) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "stemtok: CUDA was asked for but cannot run here (CUDA/cuDNN libraries or a GPU not "
        "found): running on CPU"
    ] or (len(err) == 1 and "no CUDA provider" in err[0])


def test_readme_command_runs_twice_and_stems_keep_their_names(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """The README's first command (with --overwrite) works a second time; the stems land in
    their own files whatever order --stems names them in."""
    write_song(tmp_path / "demo.flac", 0.5)
    base = [
        "separate",
        str(tmp_path / "demo.flac"),
        "--model",
        str(tiny_dir),
        "--quiet",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    for _ in range(2):
        assert main([*base, "-o", str(tmp_path / "stems"), "--overwrite"]) == 0
    assert main([*base, "-o", str(tmp_path / "two"), "--stems", "drums,vocals"]) == 0
    for stem in ("vocals", "drums"):
        a, _ = sf.read(tmp_path / "stems" / "demo" / f"{stem}.wav")
        b, _ = sf.read(tmp_path / "two" / "demo" / f"{stem}.wav")
        np.testing.assert_array_equal(a, b)
