"""Teacher export with float16 weights: half the file, float32 arithmetic, parity against the
rounded torch model, the runtime loading it unchanged, and the weights read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.models.roformer import BandSplitRoformer, save_teacher
from engine.models.teacher_config import TeacherConfig
from engine.runtime.teacher import TeacherModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = TeacherConfig.named("small", name="tiny", n_bands=6, dim=16, depth=1, heads=2, mask_mult=1)


def tiny_teacher(seed: int = 0) -> BandSplitRoformer:
    torch.manual_seed(seed)
    model = BandSplitRoformer(TINY).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from export.teacher import export_teacher

    root = tmp_path_factory.mktemp("fp16")
    save_teacher(tiny_teacher(), root / "run")
    out = {}
    for weights in ("float32", "float16"):
        out[weights] = root / weights
        export_teacher(
            root / "run",
            out[weights],
            window_s=0.4,
            overlap_s=0.1,
            weights=weights,
            echo=lambda line: None,
        )
    return out


def test_float16_weights_halve_the_file_and_keep_parity(exported: dict[str, Path]) -> None:
    size32 = (exported["float32"] / "teacher.onnx").stat().st_size
    size16 = (exported["float16"] / "teacher.onnx").stat().st_size
    assert size16 < 0.55 * size32
    cfg = json.loads((exported["float16"] / "model_config.json").read_text())
    assert cfg["graph"]["weights"] == "float16" and cfg["graph"]["dtype"] == "float32"
    par = cfg["parity"]
    assert par["masks_max_abs"] < 1e-3 * max(1.0, par["masks_largest"])
    assert min(v for v in par["stems_snr_db"].values() if v is not None) > 60


def test_runtime_runs_it_close_to_the_float32_graph(exported: dict[str, Path]) -> None:
    """The rounded weights move the masks by about float16's precision, no more."""
    ri = np.random.default_rng(0).standard_normal((2, 4, TINY.n_bins, 9)).astype(np.float32)
    full = TeacherModel(exported["float32"], "cpu", threads=1).masks(ri)
    half = TeacherModel(exported["float16"], "cpu", threads=1).masks(ri)
    assert half.dtype == np.float32 and half.shape == full.shape
    assert 0 < np.abs(half - full).max() < 2e-2 * np.abs(full).max()


def test_weights_read_back_are_the_rounded_ones(exported: dict[str, Path]) -> None:
    import onnx

    from export.half_weights import round_to_float16
    from export.teacher import from_graph

    graph = onnx.load(str(exported["float16"] / "teacher.onnx")).graph
    kinds = {i.data_type for i in graph.initializer if len(i.dims) == 2}
    assert kinds == {onnx.TensorProto.FLOAT16}
    want = round_to_float16(tiny_teacher()).state_dict()
    got = from_graph(exported["float16"]).state_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0)


def test_constants_float16_cannot_hold_stay_float32(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from export.half_weights import store_float16

    w = np.full((4, 4), 0.5, np.float32)
    eps = np.full((4, 4), 1e-8, np.float32)  # float16 would make it 0
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["y0"]),
            helper.make_node("Add", ["y0", "e"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(eps, "e")],
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert store_float16(path) == 1
    kept = {i.name: i.data_type for i in onnx.load(str(path)).graph.initializer}
    assert kept == {"w.float16": TensorProto.FLOAT16, "e": TensorProto.FLOAT}
