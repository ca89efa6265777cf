"""Teacher export: a tiny teacher (stereo and mono) -> teacher.onnx + model_config.json,
onnxruntime parity with torch at other batch sizes and lengths than the export's, checksums, the
CLI and its errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main
from engine.errors import StemtokError
from engine.models.roformer import BandSplitRoformer, save_teacher
from engine.models.teacher_config import TeacherConfig
from engine.runtime.teacher import TeacherModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = TeacherConfig.named("small", name="tiny", n_bands=6, dim=16, depth=1, heads=2, mask_mult=1)
TINY_MONO = replace(TINY, channels=1)


def tiny_teacher(seed: int = 0, cfg: TeacherConfig = TINY) -> BandSplitRoformer:
    """A seeded tiny teacher whose masks are far from trivial (random last layers)."""
    torch.manual_seed(seed)
    model = BandSplitRoformer(cfg).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    return model


def export_tiny(
    folder: Path, seed: int = 0, window_s: float = 0.4, cfg: TeacherConfig = TINY
) -> Path:
    """Export a tiny teacher (saved as a ``teacher.pt`` run folder) into ``folder/model``."""
    from export.teacher import export_teacher

    run = folder / "run"
    save_teacher(tiny_teacher(seed, cfg), run)
    out = folder / "model"
    export_teacher(run, out, window_s=window_s, overlap_s=0.1, echo=lambda line: None)
    return out


@pytest.fixture(scope="module", params=[TINY, TINY_MONO], ids=["stereo", "mono"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("teacher"), cfg=request.param)


def _cfg(folder: Path) -> TeacherConfig:
    return TeacherConfig.load(folder.parent / "run")


def test_config_records_kind_sizes_files_and_parity(exported: Path) -> None:
    cfg = json.loads((exported / "model_config.json").read_text())
    assert cfg["kind"] == "teacher" and cfg["schema"] == 1 and cfg["name"] == exported.name
    assert cfg["teacher"]["n_bands"] == 6 and cfg["sizes"]["n_bins"] == 1025
    c2 = 2 * cfg["teacher"]["channels"]
    assert cfg["graph"]["inputs"]["mix_spec"] == ["B", c2, 1025, "T"]
    assert cfg["graph"]["outputs"]["masks"] == ["B", 4, c2, 1025, "T"]
    assert cfg["parity"]["channels"] == c2 // 2
    assert cfg["rates"] == {"sample_rate": 48000, "stft_n_fft": 2048, "stft_hop": 960}
    assert (
        cfg["inference"]["window_samples"] % 960 == 0 and cfg["inference"]["consistency"] == "equal"
    )
    assert cfg["graph"]["opset"] == 17 and set(cfg["files"]) == {"teacher.onnx"}
    par = cfg["parity"]
    assert par["masks_max_abs"] < 1e-3 and min(v for v in par["stems_snr_db"].values() if v) > 60
    assert len(cfg["files"]["teacher.onnx"]) == 64


def test_onnx_matches_torch_on_new_shapes(exported: Path) -> None:
    cfg = _cfg(exported)
    model = tiny_teacher(cfg=cfg)
    rt = TeacherModel(exported, "cpu", threads=1)
    assert rt.channels == cfg.channels
    for b, t in ((1, 7), (3, 61)):
        ri = torch.randn(b, 2 * cfg.channels, cfg.n_bins, t)
        with torch.no_grad():
            ref = model(ri).numpy()
        got = rt.masks(ri.numpy())
        assert got.shape == (b, 4, 2 * cfg.channels, cfg.n_bins, t)
        assert float(np.abs(ref).mean()) > 0.05  # the masks are not trivially small
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_numpy_stft_path_matches_torch_separation(exported: Path) -> None:
    from engine.training.teacher import separate_batch

    cfg = _cfg(exported)
    x = np.random.default_rng(3).normal(0, 0.1, (2, cfg.channels, 960 * 30)).astype(np.float32)
    with torch.no_grad():
        ref = separate_batch(tiny_teacher(cfg=cfg), torch.from_numpy(x))[0].numpy()
    rt = TeacherModel(exported, "cpu", threads=1)
    got = rt.separate_windows(x, consistent=False)
    err = np.sum((got - ref) ** 2) / np.sum(ref**2)
    assert got.shape == (2, 4, cfg.channels, x.shape[-1]) and err < 1e-6
    if cfg.channels == 1:  # a mono teacher also takes [B, N]
        np.testing.assert_allclose(rt.separate_windows(x[:, 0], consistent=False), got[:, :, 0])
    else:
        with pytest.raises(StemtokError, match="takes 2 channel"):
            rt.separate_windows(x[:, :1])


def test_damaged_graph_is_refused(exported: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    with (copy / "teacher.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(StemtokError, match="checksum mismatch"):
        TeacherModel(copy, "cpu")


def test_parity_failure_raises() -> None:
    from export.teacher import verify

    good = {
        "masks_max_abs": 1e-6,
        "stems_max_abs": 1e-6,
        "stems_snr_db": {"vocals": 120.0, "drums": 90.0, "bass": None},
    }
    verify(good)
    with pytest.raises(StemtokError, match="parity check failed"):
        verify({**good, "stems_snr_db": {"vocals": 120.0, "drums": 20.0}})
    with pytest.raises(StemtokError, match="parity check failed"):
        verify({**good, "stems_max_abs": 0.1})
    with pytest.raises(StemtokError, match="parity check failed"):
        verify({**good, "masks_max_abs": 2e-3})
    verify({**good, "masks_max_abs": 2e-3, "masks_largest": 30.0})  # relative to the masks' scale
    with pytest.raises(StemtokError, match="parity check failed"):
        verify({**good, "masks_max_abs": 0.1, "masks_largest": 30.0})


def test_cli_exports_a_checkpoint_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tmp_path / "step.pt"
    from dataclasses import asdict

    model = tiny_teacher(1)
    state = {
        "model": model.state_dict(),
        "teacher_config": asdict(TINY),
        "step": 7,
        "elapsed_s": 60.0,
    }
    torch.save(state, ckpt)
    out = tmp_path / "m"
    argv = [
        "export",
        "--teacher",
        str(ckpt),
        "--out",
        str(out),
        "--threads",
        "1",
        "--parity-audio",
        str(tmp_path / "none.flac"),
    ]
    assert main(argv) == 0
    cfg = json.loads((out / "model_config.json").read_text())
    assert cfg["source"]["step"] == 7 and cfg["source"]["training_minutes"] == 1.0
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "--teacher", str(tmp_path / "nope"), "--out", str(out) + "2"]) == 2
    assert "no such teacher" in capsys.readouterr().err
    assert main(["export", "--out", str(out) + "3"]) == 2
    assert "--lm and --codec" in capsys.readouterr().err
    assert not (tmp_path / "m3").exists()


def test_exported_graph_gives_back_the_torch_weights(exported: Path) -> None:
    """``from_graph`` inverts the export, so training can go on from a shipped teacher."""
    from export.teacher import from_graph, load_source

    cfg = _cfg(exported)
    want = tiny_teacher(0, cfg).state_dict()
    got = from_graph(exported).state_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0)
    model, info = load_source(exported)
    assert model.cfg == cfg and info["graph"] == "teacher.onnx"


def test_a_folder_of_another_kind_is_not_read_as_a_teacher(tmp_path: Path) -> None:
    from export.teacher import from_graph

    (tmp_path / "teacher.onnx").write_bytes(b"")
    (tmp_path / "model_config.json").write_text(json.dumps({"kind": "lm"}))
    with pytest.raises(StemtokError, match="not an exported teacher"):
        from_graph(tmp_path)


def test_a_runs_best_model_exports_with_its_step_and_cpu_hours(tmp_path: Path) -> None:
    from export.teacher import load_source

    best = tmp_path / "run" / "best"
    save_teacher(tiny_teacher(), best)
    kept = {"step": 1200, "cpu_s": 7200.0, "valid": {"si_sdr": {"avg": 2.5}}}
    (best / "best.json").write_text(json.dumps(kept))
    _, info = load_source(best)
    assert info["step"] == 1200 and info["training_cpu_hours"] == 2.0
    assert info["valid_si_sdr"] == {"avg": 2.5}
