"""Separation LM: cached decoding equals a full pass, caches across tracks, paper sizes, training."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TINY_LM as TINY
from tiny_models import tiny_lm

from engine.errors import StemtokError
from engine.models.lm import KVCache, SeparationLM, count_parameters, load_lm, save_lm
from engine.models.lm_config import LMConfig, TrainConfig, llama_ff_dim, loss_weights, named
from engine.training.lm import (
    LMTrainer,
    TokenBank,
    allowed_classes,
    lm_loss,
    make_batch,
    train_lm,
    write_synthetic_tokens,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_inputs(cfg: LMConfig, batch: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, cfg.codebook_size, (batch, 4, 2, cfg.n_levels, cfg.n_frames))
    mel = torch.from_numpy(rng.normal(-7, 3, (batch, 120, cfg.mel_frames)).astype(np.float32))
    return mel, codes


def stepwise(
    model: SeparationLM, mel: torch.Tensor, ids: torch.Tensor, static: bool
) -> torch.Tensor:
    cache = model.prefill(mel, capacity=model.cfg.max_positions if static else None)
    outs = []
    for i in range(ids.shape[1]):
        logits, cache = model.step(ids[:, i : i + 1], cache)
        outs.append(logits)
    return torch.cat(outs, dim=1)


# --------------------------------------------------------------------------- cache
@pytest.mark.parametrize("static", [False, True])
def test_step_by_step_decoding_equals_full_forward(static: bool) -> None:
    model = tiny_lm()
    mel, codes = random_inputs(TINY, 2)
    inputs, _ = TINY.layout.build(codes)
    ids = torch.from_numpy(inputs)
    full = model(mel, ids)
    assert full.shape == (2, TINY.layout.seq_length, 3, TINY.layout.n_classes)
    torch.testing.assert_close(stepwise(model, mel, ids, static), full, atol=2e-5, rtol=1e-4)


def test_chunked_steps_equal_single_steps() -> None:
    model = tiny_lm()
    mel, codes = random_inputs(TINY, 1)
    ids = torch.from_numpy(TINY.layout.build(codes)[0])
    cache = model.prefill(mel)
    a, cache = model.step(ids[:, :7], cache)
    b, cache = model.step(ids[:, 7:], cache)
    torch.testing.assert_close(torch.cat([a, b], 1), model(mel, ids), atol=2e-5, rtol=1e-4)
    assert cache.length == 1 + TINY.prefix_frames + TINY.layout.seq_length


def test_cache_is_kept_across_tracks() -> None:
    """Track 2 decoded on the cache left by track 1 equals the full pass and depends on track 1."""
    model, layout = tiny_lm(), TINY.layout
    mel, codes = random_inputs(TINY, 1)
    ids = torch.from_numpy(layout.build(codes)[0])
    t1, t2 = layout.track_slice(0), layout.track_slice(1)
    cache = model.prefill(mel, capacity=TINY.max_positions)
    _, cache = model.step(ids[:, t1], cache)
    assert cache.length == 1 + TINY.prefix_frames + layout.track_length
    second, cache = model.step(ids[:, t2], cache)
    full = model(mel, ids)
    torch.testing.assert_close(second, full[:, t2], atol=2e-5, rtol=1e-4)
    other = codes.copy()
    other[:, 0] = (other[:, 0] + 1) % TINY.codebook_size  # change track 1 only
    changed = model(mel, torch.from_numpy(layout.build(other)[0]))
    assert (changed[:, t2] - full[:, t2]).abs().max() > 1e-4


def test_fixed_buffer_cache_equals_growing_and_is_written_in_place() -> None:
    model = tiny_lm(dataclasses.replace(TINY, n_kv_heads=1))  # grouped-query: 4 heads, 1 kv
    mel, codes = random_inputs(model.cfg, 2)
    ids = torch.from_numpy(model.cfg.layout.build(codes)[0])[:, :9]
    grow = model.prefill(mel)
    fixed = model.prefill(mel, capacity=model.cfg.max_positions)
    buffer = fixed.k.data_ptr()
    for i in range(ids.shape[1]):
        lg, grow = model.step(ids[:, i : i + 1], grow)
        lf, fixed = model.step(ids[:, i : i + 1], fixed)
        torch.testing.assert_close(lf, lg, atol=2e-5, rtol=1e-4)
    assert fixed.k.data_ptr() == buffer and fixed.k.shape[3] == model.cfg.max_positions
    assert grow.k.shape == (2, 2, 1, grow.length, model.cfg.head_dim)
    n = grow.length
    torch.testing.assert_close(fixed.k[:, :, :, :n], grow.k)
    assert fixed.k[:, :, :, n:].abs().max() == 0


def test_static_cache_refuses_to_overflow() -> None:
    cache = KVCache.empty(TINY, 1, capacity=4)
    with pytest.raises(ValueError, match="full"):
        cache.keys_mask(5)


def test_parallel_tracks_do_not_see_each_other() -> None:
    cfg = TINY.ablation("a3")
    model, layout = tiny_lm(cfg), cfg.layout
    mel, codes = random_inputs(cfg, 1)
    inputs, _ = layout.build_parallel(codes)
    full = model(mel, torch.from_numpy(inputs))
    assert full.shape == (1, 4, layout.track_length, 3, layout.n_classes)
    other = codes.copy()
    other[:, 0] = (other[:, 0] + 1) % cfg.codebook_size
    changed = model(mel, torch.from_numpy(layout.build_parallel(other)[0]))
    torch.testing.assert_close(changed[:, 1:], full[:, 1:])
    assert (changed[:, 0] - full[:, 0]).abs().max() > 1e-4
    # the same track through a cache with its own head set
    cache = model.prefill(mel).repeat(4)
    head = torch.arange(4)
    step, _ = model.step(torch.from_numpy(inputs[0]), cache, head)
    torch.testing.assert_close(step, full[0], atol=2e-5, rtol=1e-4)


# --------------------------------------------------------------------------- configs
def test_paper_config_sizes_and_parameter_count() -> None:
    cfg = LMConfig.named("paper")
    assert (cfg.n_layers, cfg.n_heads, cfg.dim, cfg.dropout) == (16, 16, 2048, 0.1)
    assert (cfg.enc_layers, cfg.enc_heads, cfg.enc_conv_kernel) == (8, 12, 31)
    assert (cfg.n_levels, cfg.codebook_size, cfg.loss_weights[:3]) == (16, 1024, (2.0, 1.0, 1.0))
    assert cfg.ff_dim == llama_ff_dim(2048) == 5632
    with torch.device("meta"):
        model = SeparationLM(cfg)
        mel = torch.zeros(2, 120, 200)
        ids = torch.zeros(2, cfg.layout.seq_length, 16, dtype=torch.long)
        logits = model(mel, ids)
    assert logits.shape == (2, 4 * 101, 16, 2049)
    d, k = cfg.dim, cfg.n_levels
    block = 2 * d + d * d + 2 * d * d + d * d + 3 * d * cfg.ff_dim
    decoder = 16 * block + d + k * cfg.layout.vocab_size * d + k * 2049 * d + cfg.enc_dim * d + d
    assert count_parameters(model) - count_parameters(model.encoder) == decoder
    assert 1.0e9 < count_parameters(model) < 1.1e9


def test_named_configs_and_ablations() -> None:
    small, tsmall = named("small")
    assert small.name == "small" and tsmall.warmup_steps == 200
    assert named("paper")[1].warmup_steps == 2000 and named("paper")[1].lr == 5e-4
    assert named("a1")[0].encoder == "frozen"
    assert named("a2")[0].loss_weights == (8.0, 4.0, 3.0, 2.0, 2.0, 2.0, 2.0, 2.0)
    assert named("a3")[0].decoding == "parallel" and named("a3")[0].head_sets == 4
    assert named("paper-a2")[0].dim == 2048
    assert loss_weights("steep", 12)[8:] == (1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        named("huge")


def test_config_json_round_trip() -> None:
    cfg = LMConfig.named("small").ablation("a3")
    assert LMConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    t = TrainConfig.named("small")
    assert TrainConfig.from_json(json.loads(json.dumps(t.to_json()))) == t


def test_learning_rate_schedule() -> None:
    t = TrainConfig(lr=1e-3, warmup_steps=10, decay_half_life=100)
    assert t.lr_at(0) == pytest.approx(1e-4)
    assert t.lr_at(9) == pytest.approx(1e-3)
    assert t.lr_at(110) == pytest.approx(5e-4)
    assert t.lr_at(210) == pytest.approx(2.5e-4)


# --------------------------------------------------------------------------- loss
def test_loss_matches_cross_entropy_and_respects_the_filter() -> None:
    torch.manual_seed(0)
    layout = TINY.layout
    _, codes = random_inputs(TINY, 2)
    targets = torch.from_numpy(layout.build(codes)[1])
    allowed = allowed_classes(TINY, torch.device("cpu"))
    logits = torch.randn(2, layout.seq_length, 3, layout.n_classes)
    parts = lm_loss(logits, targets, allowed, torch.ones(3), 0.0)
    ref = torch.nn.functional.cross_entropy(
        logits.masked_fill(~allowed[:, None], float("-inf")).flatten(0, 2), targets.flatten()
    )
    assert float(parts.loss) == pytest.approx(float(ref), rel=1e-5)
    weighted = lm_loss(logits, targets, allowed, torch.tensor([2.0, 1.0, 1.0]), 0.0)
    want = (2 * parts.level_loss[0] + parts.level_loss[1:].sum()) / 4
    assert float(weighted.loss) == pytest.approx(float(want), rel=1e-5)
    # a forbidden class never costs anything, however large its logit
    boosted = logits.clone()
    boosted[..., layout.end + 0] += 0.0
    boosted[:, :, :, layout.codebook_size :][:, 0] += 100.0  # semantic classes at position 0
    same = lm_loss(boosted, targets, allowed, torch.ones(3), 0.0)
    assert float(same.level_loss[0]) == pytest.approx(float(parts.level_loss[0]), rel=1e-3)


def test_label_smoothing_and_accuracy_of_a_perfect_model() -> None:
    layout = TINY.layout
    _, codes = random_inputs(TINY, 1)
    targets = torch.from_numpy(layout.build(codes)[1])
    allowed = allowed_classes(TINY, torch.device("cpu"))
    logits = torch.nn.functional.one_hot(targets, layout.n_classes).float() * 50
    sharp = lm_loss(logits, targets, allowed, torch.ones(3), 0.0)
    smooth = lm_loss(logits, targets, allowed, torch.ones(3), 0.1)
    assert float(sharp.loss) < 1e-6 < float(smooth.loss)
    assert torch.equal(sharp.level_acc, torch.ones(3))


# --------------------------------------------------------------------------- training
def test_token_bank_crops_are_aligned(tmp_path: Path) -> None:
    tok = write_synthetic_tokens(
        tmp_path / "tok", songs={"train": 2}, frames=10, n_levels=2, codebook_size=8
    )
    bank = TokenBank(tok, "train", n_frames=4)
    assert len(bank) == 2 and bank.frames == 20
    codes, mel = bank.crop(1, 3)
    with np.load(tok / "train" / f"{bank.names[1]}.npz") as f:
        np.testing.assert_array_equal(codes, f["codes"][..., 3:7])
        np.testing.assert_array_equal(mel, f["mel"][:, 12:28].astype(np.float32))
    crops = bank.sample(np.random.default_rng(0), 5)
    assert crops.codes.shape == (5, 4, 2, 2, 4) and crops.mel.shape == (5, 120, 16)


def test_tiny_model_overfits_one_song(tmp_path: Path) -> None:
    tok = write_synthetic_tokens(
        tmp_path / "tok", songs={"train": 1}, frames=4, n_levels=3, codebook_size=16, seed=3
    )
    cfg = dataclasses.replace(TINY, dim=64, n_heads=4, ff_dim=128)
    tcfg = TrainConfig(lr=3e-3, warmup_steps=10, decay_half_life=10**6, batch_size=2)
    trainer = LMTrainer(cfg, tcfg, tok, torch.device("cpu"), tmp_path / "run")
    for _ in range(150):
        trainer.train_step()
    rec = trainer.evaluate(trainer.train_bank)
    assert rec is not None
    assert min(rec["level_acc"]) > 0.95, rec


def test_train_lm_writes_a_resumable_run(tmp_path: Path) -> None:
    tok = write_synthetic_tokens(
        tmp_path / "tok", songs={"train": 2, "valid": 1}, frames=6, n_levels=3, codebook_size=16
    )
    out = tmp_path / "run"
    tcfg = TrainConfig(warmup_steps=2, batch_size=2, eval_every=2, eval_batches=1, log_every=1)
    first = train_lm(TINY, tcfg, tok, out, max_steps=3, echo=None, progress=False)
    assert first["step"] == 3 and len(first["level_acc"]) == 3
    second = train_lm(TINY, tcfg, tok, out, max_steps=5, echo=None, progress=False)
    assert second["step"] == 5
    log = (out / "train.log").read_text()
    assert "resumed from step_00000003.pt" in log
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "lr" in r] == [1, 2, 3, 4, 5]
    model = load_lm(out / "lm.pt")
    assert model.cfg == LMConfig.from_json(json.loads((out / "lm_config.json").read_text()))
    with pytest.raises(StemtokError, match="another LM config"):
        train_lm(TINY.ablation("a2"), tcfg, tok, out, max_steps=6, echo=None, progress=False)


def test_parallel_and_frozen_variants_train(tmp_path: Path) -> None:
    tok = write_synthetic_tokens(
        tmp_path / "tok", songs={"train": 1}, frames=4, n_levels=3, codebook_size=16
    )
    tcfg = TrainConfig(warmup_steps=1, batch_size=2)
    for key in ("a1", "a3"):
        trainer = LMTrainer(TINY.ablation(key), tcfg, tok, torch.device("cpu"), tmp_path / key)
        frozen = [p.clone() for p in trainer.model.encoder.parameters()]
        rec = trainer.train_step()
        assert np.isfinite(rec["loss"])
        moved = any(
            not torch.equal(a, b)
            for a, b in zip(frozen, trainer.model.encoder.parameters(), strict=True)
        )
        assert moved == (key != "a1")


def test_batch_layouts(tmp_path: Path) -> None:
    tok = write_synthetic_tokens(
        tmp_path / "tok", songs={"train": 1}, frames=4, n_levels=3, codebook_size=16
    )
    crops = TokenBank(tok, "train", 4).sample(np.random.default_rng(0), 2)
    seq = make_batch(TINY, crops, torch.device("cpu"))
    par = make_batch(TINY.ablation("a3"), crops, torch.device("cpu"))
    assert seq.inputs.shape == (2, TINY.layout.seq_length, 3)
    assert par.inputs.shape == (2, 4, TINY.layout.track_length, 3)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = tiny_lm()
    path = save_lm(model, tmp_path / "lm.pt")
    again = load_lm(path)
    mel, codes = random_inputs(TINY, 1)
    ids = torch.from_numpy(TINY.layout.build(codes)[0])
    torch.testing.assert_close(again(mel, ids), model(mel, ids))
    with pytest.raises(StemtokError):
        load_lm(tmp_path / "missing.pt")


def test_frame_embedding_marks_the_frame_each_position_is_about() -> None:
    layout = TINY.layout  # T = 4 frames, prefix M = 8 positions
    frames = layout.position_frames(TINY.prefix_frames)
    assert frames.shape == (TINY.max_positions,)
    assert frames[0] == 4  # <mix>: no frame
    assert frames[1:9].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # one track: S->a0 (0), a0->s0 (0), s0->a1 (1), ... s3->E (last frame)
    assert frames[9 : 9 + 9].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3]
    model = SeparationLM(TINY)
    assert model.frame_emb is not None and float(model.frame_emb.weight.detach().abs().sum()) == 0.0
    assert tiny_lm(dataclasses.replace(TINY, frame_embedding=False)).frame_emb is None
    assert not LMConfig.named("paper").frame_embedding and LMConfig.named("small").frame_embedding


def test_aligned_mixture_gives_each_token_position_its_own_frame() -> None:
    model = tiny_lm()
    assert model.mix_inject is not None
    mel, codes = random_inputs(TINY, 1)
    ids = torch.from_numpy(TINY.layout.build(codes)[0])
    with torch.no_grad():
        pre = model.prefix(mel)
        cond = model.condition(pre)
        assert cond is not None and cond.shape == (1, TINY.n_frames + 1, TINY.dim)
        assert float(cond[:, -1].abs().max()) == 0.0  # positions about no frame get nothing
        # frame f pools prefix positions [f * M / T, (f + 1) * M / T) (here 2 per frame)
        pooled = pre[:, 1:].reshape(1, TINY.n_frames, 2, TINY.dim).mean(2)
        torch.testing.assert_close(cond[:, :-1], model.mix_inject(pooled))
        # with the map at zero (its initial value) the model is the plain model
        torch.nn.init.zeros_(model.mix_inject.weight)
        plain = SeparationLM(dataclasses.replace(TINY, aligned_mixture=False)).eval()
        plain.load_state_dict(model.state_dict(), strict=False)
        torch.testing.assert_close(model(mel, ids), plain(mel, ids))
    assert float(SeparationLM(TINY).mix_inject.weight.detach().abs().sum()) == 0.0  # type: ignore[union-attr]
    assert plain.mix_inject is None
    assert not LMConfig.named("paper").aligned_mixture and LMConfig.named("small").aligned_mixture
