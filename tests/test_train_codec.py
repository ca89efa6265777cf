"""Codec training: a tiny model learns, runs checkpoint and resume, the CLI wiring works."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny_codec_config

from engine.data.musdb import write_track
from engine.errors import StemtokError
from engine.models import codec_dsp
from engine.models.codec import Codec
from engine.models.codec_config import CodecTrainConfig
from engine.models.codec_losses import spectral_loss
from engine.training import common
from engine.training.codec import evaluate, train_codec
from engine.training.codec_data import CropSampler, StemBank, fixed_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HOP = 3840
RATE = 48_000


def tiny_train(**kw: object) -> CodecTrainConfig:
    base = CodecTrainConfig(
        batch_size=2,
        segment_seconds=4 * HOP / RATE,
        warmup=2,
        log_every=1,
        eval_every=2,
        checkpoint_minutes=100.0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def _song(rng: np.random.Generator, seconds: float) -> dict[str, np.ndarray]:
    t = np.arange(int(seconds * RATE)) / RATE
    f = rng.uniform(200, 600)
    stems = {
        "vocals": 0.2 * np.sin(2 * np.pi * f * t),
        "drums": 0.3 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.9),
        "bass": 0.3 * np.sin(2 * np.pi * f / 4 * t),
        "other": 0.1 * np.sign(np.sin(2 * np.pi * 1.5 * f * t)),
    }
    return {k: np.stack([v, v]).astype(np.float32) for k, v in stems.items()}


@pytest.fixture(scope="module")
def stem_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("set")
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("valid", 1), ("test", 1)):
        for i in range(n):
            write_track(root / split / f"song{i}", _song(rng, 1.5), RATE, bit_depth="32f")
    return root


def test_tiny_codec_overfits_one_clip() -> None:
    torch.manual_seed(0)
    codec = Codec(tiny_codec_config(dec_dim=32)).train()
    t = torch.arange(4 * HOP) / RATE
    clip = (0.3 * torch.sin(2 * np.pi * 330 * t) + 0.1 * torch.sin(2 * np.pi * 990 * t))[None]
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        q = codec.quantize(clip)
        spec = codec.decode_spectrum(q.acoustic.quantized, q.semantic.quantized.detach())
        y = codec_dsp.istft(spec, clip.shape[-1], 2048, 480)
        loss = spectral_loss(y, clip) + 0.5 * (q.acoustic.commit_loss + q.semantic.commit_loss)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses[::8]


def test_stem_bank_and_sampler(stem_set: Path, tmp_path: Path) -> None:
    bank = StemBank(stem_set, "train", tmp_path / "cache")
    assert len(bank.songs) == 2 and bank.songs[0].shape == (4, int(1.5 * RATE))
    assert bank.songs[0].dtype == np.float16
    again = StemBank(stem_set, "train", tmp_path / "cache")  # from the cache
    assert np.array_equal(np.asarray(again.songs[1]), np.asarray(bank.songs[1]))
    sampler = CropSampler(bank, 4 * HOP, np.random.default_rng(0))
    batch = sampler.batch(6)
    assert batch.stems.shape == (6, 4 * HOP) and batch.mixture.shape == (6, 4 * HOP)
    assert batch.stem.shape == (6,) and set(batch.stem.tolist()) <= {0, 1, 2, 3}
    fixed = fixed_batch(bank, 4 * HOP, per_stem=1)
    assert fixed.stem.tolist() == [0, 1, 2, 3]


def test_train_then_resume_continues_from_checkpoint(stem_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = train_codec(
        tiny_codec_config(dec_dim=32),
        tiny_train(max_steps=3),
        stem_set,
        out,
        progress=False,
        echo=None,
    )
    assert first["step"] == 3
    ckpt = common.latest_checkpoint(out)
    assert ckpt is not None and ckpt.name == "step_00000003.pt"
    assert (out / "codec.pt").is_file() and (out / "codec_config.json").is_file()
    second = train_codec(
        tiny_codec_config(dec_dim=32),
        tiny_train(max_steps=5),
        stem_set,
        out,
        progress=False,
        echo=None,
    )
    assert second["step"] == 5
    log = (out / "train.log").read_text()
    assert "resumed from step_00000003.pt (step 3)" in log
    assert "valid step 2" in log and "usage_acoustic" in (out / "metrics.jsonl").read_text()
    state = common.load_checkpoint(out / "checkpoints" / "step_00000005.pt")
    assert state["step"] == 5 and state["elapsed_s"] > 0
    with pytest.raises(StemtokError, match="another codec config"):
        other = replace(tiny_codec_config(dec_dim=32), codebook_size=32)
        train_codec(other, tiny_train(max_steps=6), stem_set, out, progress=False, echo=None)


def test_evaluate_reports_metrics(stem_set: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    codec = Codec(tiny_codec_config(dec_dim=32))
    batch = fixed_batch(StemBank(stem_set, "valid", tmp_path / "c"), 4 * HOP, per_stem=1)
    ev = evaluate(codec, batch)
    assert set(ev) == {"mel_l1", "aligned_si_sdr", "mixture_si_sdr", "batch_code_use"}
    assert len(ev["batch_code_use"]) == 2 and len(ev["batch_code_use"][0]) == 3
    assert codec.training


def test_lr_schedule_and_budget() -> None:
    assert common.lr_factor(0, 0.0, 10, 0.1) == pytest.approx(0.1)
    assert common.lr_factor(10, 0.0, 10, 0.1) == pytest.approx(1.0)
    assert common.lr_factor(50, 1.0, 10, 0.1) == pytest.approx(0.1)
    budget = common.Budget(max_steps=100, minutes=1.0)
    assert budget.progress(10, 30.0) == pytest.approx(0.5)
    assert budget.done(100, 0.0) and budget.done(1, 60.0) and not budget.done(1, 1.0)


def test_checkpoints_are_atomic_and_pruned(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        common.save_checkpoint(tmp_path, {"step": step, "x": torch.ones(2)})
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000002.pt", "step_00000003.pt"]
    assert common.latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step_00000003.pt"
    assert common.latest_checkpoint(tmp_path / "none") is None


def _parser() -> argparse.ArgumentParser:
    from app.commands import train

    p = argparse.ArgumentParser(prog="stemtok")
    train.register(p.add_subparsers(dest="command"))
    return p


@pytest.mark.parametrize("model", ["codec", "lm", "teacher"])
def test_cli_registers_every_trainer(model: str) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["train", model, "--help"])
    assert exc.value.code == 0


def test_cli_codec_errors_are_one_line(stem_set: Path, tmp_path: Path) -> None:
    args = _parser().parse_args(
        ["train", "codec", "--data", str(stem_set), "--out", str(tmp_path / "r"), "--resume"]
    )
    with pytest.raises(StemtokError, match="no checkpoint"):
        args.func(args)
    args = _parser().parse_args(
        ["train", "codec", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]
    )
    with pytest.raises(StemtokError, match="no such data folder"):
        args.func(args)
