"""NISQA v2.0 in numpy against the ``nisqa`` package on the same files; the checkpoint reader;
``stemtok eval --metrics nisqa`` end to end and its errors.

The weights are not part of the project (CC BY-NC-SA): tests that need them look where the
harness looks (``$STEMTOK_NISQA_WEIGHTS``, else ``../shared/weights/nisqa/nisqa.tar``) and skip
when they are not there. The reference is the ``nisqa`` package (installed by scripts/test.sh
without its pinned dependencies; it imports torch, librosa and pandas).
"""

from __future__ import annotations

import io
import json
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.cli import main
from engine.audio import read_audio, write_audio
from engine.constants import STEMS
from engine.data import pipeline
from engine.data.augment import mp3_roundtrip
from engine.data.factory import GENERATOR_VERSION
from engine.evaluation import nisqa as N
from engine.evaluation.synthetic import ToySongConfig, write_set
from engine.evaluation.torchzip import CheckpointError, read_checkpoint
from engine.runtime.factory import open_separator

RATE = N.NISQA_RATE
#: The published model's feature and segment settings (its checkpoint ``args``).
PUBLISHED = N.NisqaConfig(
    n_fft=4096,
    hop_s=0.01,
    win_s=0.02,
    n_mels=48,
    fmax=20000,
    seg_length=15,
    seg_hop=4,
    max_segments=1300,
    pool_1=(24, 7),
    pool_2=(12, 5),
    pool_3=(6, 3),
    nhead=1,
)


def _weights() -> Path:
    path = N.weights_path()
    if not path.is_file():
        pytest.skip(f"NISQA weights not found at {path} (set {N.ENV_WEIGHTS} to nisqa.tar)")
    return path


def _reference_lib() -> Any:
    pytest.importorskip("torch", reason="the nisqa reference needs torch")
    pytest.importorskip("librosa", reason="the nisqa reference needs librosa")
    pytest.importorskip("pandas", reason="the nisqa reference needs pandas")
    return pytest.importorskip("nisqa.NISQA_lib", reason="the nisqa package is not installed")


def _reference_predict(folder: Path, weights: Path) -> dict[str, dict[str, float]]:
    """NISQA's own prediction (its predict_dir mode, CPU) for every WAV file in ``folder``."""
    _reference_lib()
    from nisqa.NISQA_model import nisqaModel

    args = {
        "mode": "predict_dir",
        "pretrained_model": str(weights),
        "data_dir": str(folder),
        "output_dir": None,
        "ms_channel": None,
        "tr_bs_val": 1,
        "tr_num_workers": 0,
        "tr_device": "cpu",
        "tr_parallel": False,
    }
    df = nisqaModel(args).predict()
    return {
        row["deg"]: {k: float(row[f"{k}_pred"]) for k in N.DIMENSIONS} for _, row in df.iterrows()
    }


def _factory_song(seconds: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """``seconds`` of a numpy-backend factory song at 48 kHz where its vocals are loudest:
    ``(mixture, vocals)``, each ``[2, N]``."""
    spec = pipeline.procedural_song(11, 8, 12, GENERATOR_VERSION)
    song = pipeline.render_song(
        spec, rate=RATE, seed=11, backend="numpy", version=GENERATOR_VERSION
    )
    vocals, n = song.stems["vocals"], int(seconds * RATE)
    total = np.concatenate([[0.0], np.cumsum(np.mean(vocals**2, axis=0, dtype=np.float64))])
    energy = total[n:] - total[:-n]  # of the n samples from each start
    start = int(np.argmax(energy[:: RATE // 10])) * (RATE // 10)
    return song.mixture[:, start : start + n], vocals[:, start : start + n]


def _five_vocals(folder: Path) -> dict[str, np.ndarray]:
    """Clean factory vocals, with noise, clipped, through MP3, and the teacher's estimate."""
    mixture, clean = _factory_song()
    rng = np.random.default_rng(3)
    rms = float(np.sqrt(np.mean(clean**2)))
    noise = rng.standard_normal(clean.shape).astype(np.float32) * rms / 10 ** (10 / 20)
    peak = float(np.max(np.abs(clean)))
    teacher = open_separator("teacher", device="cpu", threads=1)
    files = {
        "clean": clean,
        "noisy": clean + noise,  # white noise at 10 dB SNR
        "clipped": np.clip(clean * 4.0, -peak, peak),  # +12 dB into the old peak
        "mp3": mp3_roundtrip(clean, RATE, 32),  # 32 kbps MP3 and back
        "teacher": teacher.separate(mixture, RATE, stems=["vocals"])["vocals"],
    }
    for name, audio in files.items():
        write_audio(folder / f"{name}.wav", audio, RATE, bit_depth="32f")
    return files


def test_nisqa_equals_the_reference_on_five_vocal_files(tmp_path: Path) -> None:
    weights = _weights()
    _reference_lib()
    _five_vocals(tmp_path)
    # a 60-s signal: NISQA refuses it in one piece, we score it in two halves
    long = np.tile(read_audio(tmp_path / "noisy.wav")[0], (1, 8))[:, : 60 * RATE]
    halves = N.pieces(long.shape[1], N.load_model(weights).cfg)
    assert [p.stop - p.start for p in halves] == [30 * RATE, 30 * RATE]
    parts = tmp_path / "parts"
    for i, p in enumerate(halves):
        write_audio(parts / f"half{i}.wav", long[:, p], RATE, bit_depth="32f")
    theirs = _reference_predict(tmp_path, weights)
    report = []
    for name in ("clean", "noisy", "clipped", "mp3", "teacher"):
        audio, rate = read_audio(tmp_path / f"{name}.wav")
        ours = N.nisqa(audio, rate, weights)
        diff = {k: getattr(ours, k) - theirs[f"{name}.wav"][k] for k in N.DIMENSIONS}
        report.append(
            f"{name}: MOS {ours.mos:.4f} " + " ".join(f"d{k} {v:+.1e}" for k, v in diff.items())
        )
        assert all(abs(v) < 0.05 for v in diff.values()), report[-1]
    print("\nNISQA ours vs reference:\n" + "\n".join(report))
    ref_parts = _reference_predict(parts, weights)
    ours_long = N.nisqa(long, RATE, weights)
    expected = np.mean([ref_parts[f"half{i}.wav"]["mos"] for i in range(2)])
    assert ours_long.mos == pytest.approx(expected, abs=0.05)


def test_features_and_segments_follow_nisqa(tmp_path: Path) -> None:
    lib = _reference_lib()
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(RATE * 3 + 123)).astype(np.float32)
    write_audio(tmp_path / "x.wav", x[None], RATE, bit_depth="32f")
    theirs = lib.get_librosa_melspec(
        str(tmp_path / "x.wav"),
        sr=None,
        n_fft=4096,
        hop_length=0.01,
        win_length=0.02,
        n_mels=48,
        fmax=20000,
    )
    ours = N.melspec(read_audio(tmp_path / "x.wav")[0][0], PUBLISHED)
    assert ours.shape == theirs.shape == (48, (RATE * 3 + 123) // 480 + 1)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    segs, n = lib.segment_specs("x", theirs, 15, 4, 1300)
    got = N.segments(ours, PUBLISHED)
    assert got.shape == (int(n), 48, 15)
    np.testing.assert_allclose(got, segs[: int(n), 0].numpy(), atol=1e-3)


def test_length_limits_are_nisqa_s() -> None:
    cfg = PUBLISHED
    longest = cfg.max_samples()
    frames = longest // cfg.hop() + 1
    assert math.ceil((frames - cfg.seg_length + 1) / cfg.seg_hop) == cfg.max_segments
    assert math.ceil((frames + 1 - cfg.seg_length + 1) / cfg.seg_hop) > cfg.max_segments
    assert N.pieces(longest, cfg) == [slice(0, longest)]
    assert [p.stop - p.start for p in N.pieces(longest + 1, cfg)] == [
        (longest + 2) // 2,
        (longest + 1) // 2,
    ]
    assert N.segments(np.zeros((48, 15), np.float32), cfg).shape == (1, 48, 15)
    with pytest.raises(ValueError, match="at least 15 frames"):
        N.segments(np.zeros((48, 14), np.float32), cfg)
    assert cfg.min_samples() == 14 * 480


def _zip_checkpoint(path: Path, obj: Any, storages: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        for key, raw in (storages or {}).items():
            z.writestr(f"archive/data/{key}", raw)
    return path


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("ran code from a checkpoint",))


def test_checkpoint_reader_reads_tensors_and_never_runs_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    tensors = {
        "w": torch.arange(24, dtype=torch.float32).reshape(2, 3, 4),
        "t": torch.arange(12, dtype=torch.float64).reshape(3, 4).t(),  # not contiguous
        "n": torch.tensor(7),  # 0-d long
        "s": torch.arange(10, dtype=torch.int32)[3:7],  # offset into its storage
        "b": torch.tensor([True, False]),
    }
    torch.save({"args": {"k": (3, 3), "x": None}, "state": tensors}, tmp_path / "ok.pt")
    got = read_checkpoint(tmp_path / "ok.pt")
    assert got["args"] == {"k": (3, 3), "x": None}
    for key, t in tensors.items():
        assert got["state"][key].shape == tuple(t.shape)
        np.testing.assert_array_equal(got["state"][key], t.numpy())
    evil = _zip_checkpoint(tmp_path / "evil.pt", {"a": _Evil()})
    with pytest.raises(CheckpointError, match="print, which a checkpoint never needs"):
        read_checkpoint(evil)
    assert "ran code" not in capsys.readouterr().out
    (tmp_path / "text.pt").write_text("not a zip")
    with pytest.raises(CheckpointError, match="not a zip"):
        read_checkpoint(tmp_path / "text.pt")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/other.txt", "x")
    (tmp_path / "empty.pt").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match=r"no data\.pkl"):
        read_checkpoint(tmp_path / "empty.pt")


def _bad_weights(kind: str, folder: Path) -> Path:
    """A weights path that is missing, a folder, or a file that is not NISQA's."""
    if kind == "text":
        (folder / "t.tar").write_text("not a checkpoint")
        return folder / "t.tar"
    if kind == "mos-only":  # NISQA's MOS-only model: no dimensions
        return _zip_checkpoint(
            folder / "m.tar", {"args": {"model": "NISQA"}, "model_state_dict": {}}
        )
    if kind == "other":
        return _zip_checkpoint(folder / "o.tar", {"weights": {}})
    return folder if kind == "folder" else folder / "missing.tar"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such file"),
        ("folder", "a folder"),
        ("text", "not a zip archive"),
        ("mos-only", "model is 'NISQA', not 'NISQA_DIM'"),
        ("other", "no 'args' and 'model_state_dict'"),
    ],
)
def test_missing_or_foreign_weights_fail_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, message: str
) -> None:
    data = tmp_path / "data"
    write_set(data, songs=1, cfg=ToySongConfig(seconds=1.0, rate=22_050))
    weights = _bad_weights(kind, tmp_path)
    out = tmp_path / "out"
    args = ["eval", str(data), "--systems", "default", "--metrics", "sdr,nisqa", "--out", str(out)]
    assert main([*args, "--nisqa-weights", str(weights), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "NISQA weights" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_eval_reports_nisqa_beside_dnsmos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = _weights()
    monkeypatch.setenv(N.ENV_WEIGHTS, str(weights))  # the variable, not --nisqa-weights
    data = tmp_path / "data"
    write_set(data, songs=1, cfg=ToySongConfig(seconds=3.0, rate=22_050))
    out = tmp_path / "r"
    args = ["eval", str(data), "--systems", "mixture,oracle", "--metrics", "nisqa,sdr"]
    args += ["--out", str(out), "--no-isolate", "--jobs", "1", "-q", "--excerpt-seconds", "0"]
    assert main(args) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["nisqa_weights"] == str(weights)
    assert result["config"]["nisqa_weights_sha256"] and "dnsmos" not in result["config"]["metrics"]
    song = result["songs"][0]
    vocals = read_audio(data / "test" / "song-00" / "vocals.wav")
    assert song["reference_nisqa"]["vocals"]["mos"] == pytest.approx(
        N.nisqa(*vocals, weights).mos, abs=1e-6
    )
    for name in ("mixture", "oracle"):
        for stem in STEMS:
            scores = song["systems"][name]["stems"][stem]["nisqa"]
            assert set(scores) == set(N.DIMENSIONS) and all(
                math.isfinite(v) for v in scores.values()
            )
    mixture = read_audio(data / "test" / "song-00" / "mixture.wav")
    assert song["systems"]["mixture"]["stems"]["bass"]["nisqa"]["mos"] == pytest.approx(
        N.nisqa(*mixture, weights).mos, abs=1e-6
    )
    summary = result["summary"]
    assert summary["systems"]["oracle"]["stems"]["vocals"]["nisqa_loud"]["n"] == 1
    assert summary["reference_nisqa"]["drums"]["n"] == 1
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for text in (md, page):
        assert "Table 2: vocals quality (NISQA)" in text
        assert "NISQA dimensions on vocals" in text and "NISQA MOS per stem" in text
        assert "oracle NISQA vocals" in text and "oracle ViSQOL" not in text  # per song: what ran
    row = next(line for line in md.splitlines() if line.startswith("| reference (true vocals)"))
    assert f"{summary['reference_nisqa']['vocals']['mos']:.2f}" in row
