"""LM graph passes: the fused float32 graph decodes exactly as the exported one, the float16
graph agrees with it step by step, and the runtime picks the right graph for the device."""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from test_export import make_tiny_sources, mel_of

from app.cli import main
from engine.errors import StemtokError
from engine.models.codec import load_codec
from engine.models.lm import load_lm
from engine.runtime.decode import Decoder, generate
from engine.runtime.model import FP16_LM, Model, lm_file, read_config
from export.model import optimize_model
from export.onnx_export import export_all
from export.optimize import optimize_lm
from export.parity import precision_parity

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model folder as :func:`export_all` writes it, before any pass."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("plain")
    lm_path, codec_dir = make_tiny_sources(root)
    export_all(load_lm(lm_path), load_codec(codec_dir), root / "model")
    return root / "model"


@pytest.fixture(scope="module")
def optimized_dir(plain_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("optimized") / "model"
    optimize_model(plain_dir, out, echo=lambda line: None)
    return out


def _ops(path: Path) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_fusions_replace_the_patterns(plain_dir: Path, tmp_path: Path) -> None:
    done = optimize_lm(plain_dir / "lm.onnx", tmp_path / "fused.onnx")
    layers = read_config(plain_dir)["lm"]["n_layers"]
    # q + kv and gate + up per layer; both norms of every layer take their residual add along
    assert done == {"projections": 2 * layers, "skip_norms": 2 * layers}
    before, after = _ops(plain_dir / "lm.onnx"), _ops(tmp_path / "fused.onnx")
    assert after["MatMul"] == before["MatMul"] - 2 * layers
    assert after["SkipSimplifiedLayerNormalization"] == 2 * layers
    assert after["Pow"] == 1  # only the final norm (no residual add before it) is left


def test_fused_graph_decodes_exactly_like_the_plain_one(
    plain_dir: Path, optimized_dir: Path
) -> None:
    mel = mel_of(3, seed=4)
    plain, fused = Model(plain_dir, "cpu", threads=1), Model(optimized_dir, "cpu", threads=1)
    assert fused.lm_name == "lm.onnx" and fused.lm_dtype == np.float32
    pre, cond = plain.encode(mel)
    a = Decoder(plain, 3).prefill(pre, cond)
    b = Decoder(fused, 3).prefill(pre, cond)
    assert np.abs(a - b).max() < 1e-4
    np.testing.assert_array_equal(generate(plain, mel).codes, generate(fused, mel).codes)


def test_fp16_graph_runs_with_a_float16_cache_and_agrees(
    plain_dir: Path, optimized_dir: Path
) -> None:
    config = read_config(optimized_dir)
    assert config["graphs"][FP16_LM]["dtype"] == "float16"
    half = Model(optimized_dir, "cpu", threads=1, precision="fp16")
    graph = onnx.load(str(optimized_dir / FP16_LM)).graph
    fp16 = onnx.TensorProto.FLOAT16
    assert all(i.type.tensor_type.elem_type == fp16 for i in graph.input if i.name != "start")
    dec = Decoder(half, 2)
    assert dec.kv.dtype == np.float16
    figures = precision_parity(Model(plain_dir, "cpu", threads=1), half, mel_of(2, seed=5))
    assert figures["fp16_step_argmax_agreement"] >= 0.9
    assert figures["fp16_logits_rel"] < 0.05
    codes = generate(half, mel_of(2)).codes
    assert codes.min() >= 0 and codes.max() < half.sizes.layout.codebook_size
    assert config["parity"]["fp16_step_argmax_agreement"] >= 0.9  # recorded at optimize time


def test_graph_choice_follows_device_and_precision(optimized_dir: Path, plain_dir: Path) -> None:
    config, plain = read_config(optimized_dir), read_config(plain_dir)
    assert lm_file(config, "cpu", "auto") == "lm.onnx"
    assert lm_file(config, "cuda", "auto") == FP16_LM
    assert lm_file(config, "cuda", "fp32") == "lm.onnx"
    assert lm_file(config, "cpu", "fp16") == FP16_LM
    assert lm_file(plain, "cuda", "auto") == "lm.onnx"  # no float16 graph: float32 on CUDA
    with pytest.raises(StemtokError, match=r"no lm_fp16\.onnx"):
        lm_file(plain, "cpu", "fp16")
    with pytest.raises(StemtokError, match="unknown precision"):
        lm_file(config, "cpu", "half")


def test_optimize_command_refuses_twice_and_keeps_the_folder(
    optimized_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(optimized_dir, copy)
    before = json.loads((copy / "model_config.json").read_text())
    code = main(["export", "--optimize", str(copy), "--out", str(copy), "--overwrite"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "already optimized" in err and len(err.splitlines()) == 1
    assert json.loads((copy / "model_config.json").read_text()) == before
    code = main(["export", "--optimize", str(copy), "--out", str(optimized_dir)])
    assert code != 0 and "already exists" in capsys.readouterr().err
