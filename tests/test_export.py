"""Export: a tiny LM and codec become a checked ONNX folder; onnxruntime agrees with torch (greedy
tokens identical, prefill + steps = one full pass, in-place and growing KV graphs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from tiny_models import tiny_codec_config, tiny_lm

from engine.errors import StemtokError
from engine.models.codec import Codec, save_codec
from engine.models.generate import generate as torch_generate
from engine.models.lm import SeparationLM, save_lm
from engine.runtime.decode import Cancelled, Decoder, Sampling, generate
from engine.runtime.model import Model, read_config
from export.model import export_model
from export.onnx_export import FILES, export_decoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_tiny_sources(folder: Path) -> tuple[Path, Path]:
    """A seeded tiny LM (``lm.pt``) and codec folder (``codec/``) under ``folder``."""
    torch.manual_seed(0)
    codec = Codec(tiny_codec_config()).eval()
    return save_lm(tiny_lm(), folder / "lm.pt"), save_codec(codec, folder / "codec").parent


def export_tiny(folder: Path, kv: str = "inplace") -> Path:
    """Export the tiny pair into ``folder/model`` (quietly) and return that folder."""
    lm_path, codec_dir = make_tiny_sources(folder)
    out = folder / "model"
    export_model(lm_path, codec_dir, out, kv=kv, echo=lambda line: None)
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return export_tiny(tmp_path_factory.mktemp("export"))


def mel_of(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(-7, 3, (batch, 120, 16)).astype(np.float32)


def test_export_writes_a_checked_folder(tiny_dir: Path) -> None:
    config = read_config(tiny_dir)
    assert set(config["files"]) == {*FILES, "lm_fp16.onnx"}
    assert config["kv"]["mode"] == "inplace" and config["schema"] == 1
    assert config["name"] == tiny_dir.name  # the folder's name, not the temporary one's
    parity = config["parity"]
    assert parity["greedy_tokens_equal"] and parity["prefill_logits_max_abs"] < 1e-4
    assert parity["generative_snr_db"] > 60 and parity["aligned_mask_max_abs"] < 1e-4
    for name in FILES[:4]:
        opsets = {o.domain: o.version for o in onnx.load(str(tiny_dir / name)).opset_import}
        assert opsets.get("", opsets.get("ai.onnx", 0)) >= 17


def test_ort_greedy_tokens_equal_torch(tiny_dir: Path) -> None:
    lm, mel = tiny_lm(), mel_of(3, seed=5)
    ref = torch_generate(lm, mel)
    got = generate(Model(tiny_dir, "cpu", threads=1), mel)
    np.testing.assert_array_equal(got.codes, ref.codes)
    np.testing.assert_array_equal(got.frames, ref.frames)
    np.testing.assert_allclose(got.entropy, ref.entropy, atol=1e-4)


def teacher_forced(lm: SeparationLM, mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``[B, L, K]`` of random codes and the torch full-pass logits ``[B, L, K, C]``."""
    layout = lm.cfg.layout
    rng = np.random.default_rng(1)
    codes = rng.integers(0, layout.codebook_size, (mel.shape[0], 4, 2, 3, layout.n_frames))
    inputs, _ = layout.build(codes)
    with torch.no_grad():
        full = lm(torch.from_numpy(mel), torch.from_numpy(inputs)).numpy()
    return inputs, full


@pytest.mark.parametrize("kv", ["inplace", "growing"])
def test_prefill_then_steps_equal_one_full_pass(tiny_dir: Path, tmp_path: Path, kv: str) -> None:
    lm, mel = tiny_lm(), mel_of(2, seed=2)
    folder = tiny_dir
    if kv == "growing":  # same folder, the other LM graph
        folder = tmp_path / "growing"
        folder.mkdir()
        for name in (*FILES, "model_config.json"):
            (folder / name).write_bytes((tiny_dir / name).read_bytes())
        export_decoder(lm, folder / "lm.onnx", static=False)
        config = json.loads((folder / "model_config.json").read_text())
        config["kv"]["mode"], config["files"] = "growing", {}
        (folder / "model_config.json").write_text(json.dumps(config))
    model = Model(folder, "cpu", threads=1)
    inputs, full = teacher_forced(lm, mel)
    dec = Decoder(model, 2)
    dec.prefill(*model.encode(mel))
    i, sizes = 0, [1, 5, 2, 1, 3]  # one graph for steps of any length
    while i < inputs.shape[1]:
        n = sizes[i % len(sizes)]
        logits = dec.step(inputs[:, i : i + n])
        i += n
        np.testing.assert_allclose(logits, full[:, min(i, inputs.shape[1]) - 1], atol=1e-4)
    assert dec.length == 9 + inputs.shape[1]  # prefix + every token position


def test_sampling_is_seeded_and_cancel_stops(tiny_dir: Path) -> None:
    model, mel = Model(tiny_dir, "cpu", threads=1), mel_of(2)
    a = generate(model, mel, Sampling(1.0, 8, seed=3))
    b = generate(model, mel, Sampling(1.0, 8, seed=3))
    c = generate(model, mel, Sampling(1.0, 8, seed=4))
    np.testing.assert_array_equal(a.codes, b.codes)
    assert not np.array_equal(a.codes, c.codes)
    seen: list[int] = []
    with pytest.raises(Cancelled):
        generate(model, mel, progress=lambda d, t: seen.append(d), cancel=lambda: len(seen) >= 3)
    assert seen == [1, 2, 3]


def test_damaged_or_foreign_folders_fail_with_one_line(tiny_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in (*FILES, "model_config.json"):
        (bad / name).write_bytes((tiny_dir / name).read_bytes())
    with (bad / "embed.npy").open("r+b") as f:
        f.seek(200)
        f.write(b"\x01\x02")
    with pytest.raises(StemtokError, match="checksum mismatch"):
        Model(bad, "cpu")
    config = json.loads((bad / "model_config.json").read_text())
    (bad / "model_config.json").write_text(json.dumps({**config, "schema": 99}))
    with pytest.raises(StemtokError, match="schema 99"):
        Model(bad, "cpu")
    with pytest.raises(StemtokError, match="not a model folder"):
        Model(tmp_path, "cpu")


def test_export_refuses_to_replace_without_overwrite(tiny_dir: Path, tmp_path: Path) -> None:
    lm_path, codec_dir = make_tiny_sources(tmp_path)
    with pytest.raises(StemtokError, match="already exists"):
        export_model(lm_path, codec_dir, tiny_dir, echo=lambda line: None)
