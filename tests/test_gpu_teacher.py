"""scripts/gpu_teacher.sh, the one command for a lent GPU machine, run on the CPU with a tiny
config: rendered data, bf16 autocast, batch workers, validation, float16 export, and what it
leaves in OUT within the limits of what comes back; batches made ahead equal in-line ones."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from engine.data.musdb import write_track

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu_teacher.sh"


def gpu_teacher() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_teacher", REPO / "scripts/gpu_teacher.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_script_trains_exports_and_fits_what_comes_back(tmp_path: Path) -> None:
    out, work = tmp_path / "OUT", tmp_path / "work"
    env = os.environ | {"PYTHON": sys.executable, "WHEELS": str(tmp_path / "no-wheels")}
    args = [
        "--out",
        str(out),
        "--work",
        str(work),
        "--config",
        "tiny",
        "--minutes",
        "0.2",
        "--render-seconds",
        "15",
        "--render-minutes",
        "0.6",
        "--song-seconds",
        "4",
        "7",
        "--jobs",
        "2",
        "--workers",
        "1",
        "--precision",
        "bfloat16",
        "--eval-every",
        "1",
        "--log-every",
        "1",
    ]
    proc = subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=150
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "every package the run needs is here" in proc.stdout
    files = {str(p.relative_to(out)): p.stat().st_size for p in out.rglob("*") if p.is_file()}
    assert set(files) == {
        "model/teacher.onnx",
        "model/model_config.json",
        "train.log",
        "metrics.jsonl",
        "summary.json",
    }
    assert max(files.values()) <= 16 * 2**20
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == {k: v for k, v in files.items() if k != "summary.json"} | {
        "summary.json": summary["files"]["summary.json"]
    }
    assert summary["config"]["name"] == "tiny" and summary["data"]["rendered_songs"]["valid"] >= 1
    assert summary["validations"] >= 1 and summary["best"] is not None
    assert summary["model"].endswith("from best") and summary["last_step"]["step"] >= 1
    assert summary["train_config"]["precision"] == "bfloat16"
    config = json.loads((out / "model" / "model_config.json").read_text())
    assert config["graph"]["weights"] == "float16" and config["teacher"]["dim"] == 16

    from engine.runtime.teacher import TeacherModel

    masks = TeacherModel(out / "model", "cpu", threads=1).masks(
        np.zeros((1, 4, 1025, 5), np.float32)
    )
    assert masks.shape == (1, 4, 4, 1025, 5) and np.isfinite(masks).all()


def test_out_limits_and_configs(tmp_path: Path) -> None:
    script = gpu_teacher()
    for i in range(9):
        (tmp_path / f"f{i}").write_bytes(b"x")
    with pytest.raises(SystemExit, match="9 files, at most 8"):
        script.check_out(tmp_path)
    sizes = {name: script.float16_bytes(script.teacher_config(name)) for name in ("small", "large")}
    assert sizes["small"] < 11 * 2**20 and 14 * 2**20 < sizes["large"] <= script.MAX_BYTES


@pytest.mark.parametrize("per_set", [False, True], ids=["one-set", "set-weights-and-remix"])
def test_prefetched_batches_equal_inline_ones(tmp_path: Path, per_set: bool) -> None:
    from engine.training.codec_data import StemBank
    from engine.training.prefetch import PrefetchCrops
    from engine.training.teacher import SongCrops

    rng = np.random.default_rng(0)
    for i in range(3):
        song = {
            s: (0.1 * rng.standard_normal((2, 9600))).astype(np.float32)
            for s in ("vocals", "drums", "bass", "other")
        }
        where = "extra" if per_set and i == 2 else "set"
        write_track(tmp_path / where / "train" / f"s{i}", song, 48_000, bit_depth="32f")
    roots = [tmp_path / "set", tmp_path / "extra"] if per_set else [tmp_path / "set"]
    sets: tuple[tuple[float, ...] | None, ...] = (
        ((1.0, 2.0), (0.0, 1.0)) if per_set else (None, None)
    )
    bank = StemBank(roots, "train", tmp_path / "cache", channels=2)
    pre = PrefetchCrops(
        bank, 4800, 2, 3, 0.5, 1, np.random.default_rng(7), tmp_path / "ring", *sets
    )
    try:
        got = [tuple(np.array(x) for x in pre.batch(3, 0.5)) for _ in range(3)]
    finally:
        pre.close()
    trainer_rng = np.random.default_rng(7)
    seeds = [int(trainer_rng.integers(2**31)) for _ in range(3)]
    for (stems, mix), seed in zip(got, seeds, strict=True):
        want = SongCrops(bank, 4800, np.random.default_rng(seed), *sets).batch(3, 0.5)
        np.testing.assert_array_equal(stems, want[0])
        np.testing.assert_array_equal(mix, want[1])


def test_without_onnx_the_model_comes_back_as_float16_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the export cannot run, float16 ``teacher.pt`` comes back and exports here."""
    import torch

    import export.teacher
    from engine.models.roformer import BandSplitRoformer, save_teacher

    script = gpu_teacher()
    torch.manual_seed(0)
    model = BandSplitRoformer(script.teacher_config("tiny"))
    save_teacher(model, tmp_path / "run")

    def no_onnx(*args: object, **kw: object) -> None:
        raise ModuleNotFoundError("No module named 'onnx'")

    with monkeypatch.context() as m:
        m.setattr(export.teacher, "export_teacher", no_onnx)
        written = script.export(tmp_path / "run", tmp_path / "OUT" / "model")
    assert "export it after fetching" in written
    state = torch.load(tmp_path / "OUT" / "model" / "teacher.pt", weights_only=True)
    assert {v.dtype for v in state.values()} == {torch.float16}
    export.teacher.export_teacher(
        tmp_path / "OUT" / "model",
        tmp_path / "exported",
        window_s=0.4,
        overlap_s=0.1,
        weights="float16",
        echo=lambda line: None,
    )
    got = export.teacher.from_graph(tmp_path / "exported").state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(got[key], value.half().float(), rtol=0, atol=0)
