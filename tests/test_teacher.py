"""The discriminative teacher: band split, shapes, sizes, masks, consistency, stereo and mono,
a tiny overfit, resumable runs, configs of older teachers."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from app.cli import main
from engine.data.musdb import write_track
from engine.errors import StemtokError
from engine.models import codec_dsp
from engine.models.roformer import (
    BandSplitRoformer,
    apply_masks,
    band_edges,
    count_parameters,
    load_teacher,
    spec_input,
)
from engine.models.teacher_config import TeacherConfig, TeacherTrainConfig
from engine.training.teacher import evaluate, losses, train_teacher

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RATE = 48_000
TINY = TeacherConfig.named("small", name="tiny", n_bands=6, dim=16, depth=1, heads=2, mask_mult=1)
TINY_MONO = replace(TINY, channels=1)


@pytest.mark.parametrize(("n_bins", "n_bands"), [(1025, 24), (1025, 60), (513, 40), (1025, 6)])
def test_bands_cover_every_bin_once(n_bins: int, n_bands: int) -> None:
    edges = band_edges(n_bins, n_bands)
    assert edges[0] == 0 and edges[-1] == n_bins and len(edges) == n_bands + 1
    widths = np.diff(edges)
    assert widths.min() >= 2 and widths.sum() == n_bins
    assert widths[0] <= widths[-1]  # narrow at the bottom (mel spacing)
    with pytest.raises(ValueError):
        band_edges(9, 5)


@pytest.mark.parametrize("cfg", [TINY, TINY_MONO], ids=["stereo", "mono"])
def test_shapes_and_sizes(cfg: TeacherConfig) -> None:
    model = BandSplitRoformer(cfg).eval()
    c2 = 2 * cfg.channels
    out = model(torch.randn(2, c2, cfg.n_bins, 7))
    assert out.shape == (2, 4, c2, cfg.n_bins, 7)
    with pytest.raises(ValueError, match="spectra"):
        model(torch.randn(1, c2, 100, 7))
    with pytest.raises(ValueError, match="spectra"):
        model(torch.randn(1, 6 - c2, cfg.n_bins, 7))  # the other channel count


def test_sizes_of_the_named_configs() -> None:
    assert TeacherConfig.named("small").channels == 2  # stereo, like the paper's model
    small = count_parameters(BandSplitRoformer(TeacherConfig.named("small")))
    assert 4e6 < small < 6e6
    mono = count_parameters(BandSplitRoformer(TeacherConfig.named("small", channels=1)))
    assert 2e6 < mono < 4e6
    with torch.device("meta"):
        paper = count_parameters(BandSplitRoformer(TeacherConfig.named("paper")))
    assert 60e6 < paper < 90e6  # BS-RoFormer's main model is of this order
    with pytest.raises(ValueError):
        TeacherConfig.named("small", dim=30, heads=4)
    with pytest.raises(ValueError, match="channels"):
        TeacherConfig.named("small", channels=3)


def test_masks_sum_to_one_so_stems_sum_to_the_mixture() -> None:
    torch.manual_seed(0)
    model = BandSplitRoformer(TINY).eval()
    for p in model.parameters():  # far from the initial state
        torch.nn.init.normal_(p, 0.0, 0.3)
    masks = model(torch.randn(2, 4, TINY.n_bins, 9)).sum(dim=1)  # (B, 2C, F, T)
    torch.testing.assert_close(masks[:, 0::2], torch.ones_like(masks[:, 0::2]))
    torch.testing.assert_close(masks[:, 1::2], torch.zeros_like(masks[:, 1::2]), atol=1e-5, rtol=0)
    free = BandSplitRoformer(replace(TINY, consistent=False)).eval()
    free.load_state_dict(model.state_dict())
    with torch.no_grad():
        sums = free(torch.randn(1, 4, TINY.n_bins, 9)).sum(1)
    assert float((sums[:, 0::2] - 1).abs().max()) > 0.1


def test_older_teacher_configs_keep_their_behaviour(tmp_path: Path) -> None:
    old = {
        k: v for k, v in asdict(TINY).items() if k not in ("channels", "band_energy", "consistent")
    }
    (tmp_path / "teacher_config.json").write_text(json.dumps(old))
    cfg = TeacherConfig.load(tmp_path)
    assert (cfg.channels, cfg.band_energy, cfg.consistent) == (1, False, False)
    assert count_parameters(BandSplitRoformer(cfg)) < count_parameters(BandSplitRoformer(TINY))


def test_masks_multiply_the_mixture_spectrum() -> None:
    spec = torch.randn(1, 2, 5, 3, dtype=torch.complex64)  # stereo
    masks = torch.zeros(1, 4, 4, 5, 3)  # (re, im) of left, then of right
    masks[:, 1, 0] = masks[:, 1, 2] = 1.0  # drums: real 1, imag 0 -> the mixture itself
    masks[:, 2, 1] = 1.0  # bass, left: j -> the mixture turned by 90 degrees
    masks[:, 3, 2] = 0.5  # other, right only: half
    out = apply_masks(masks, spec)
    assert out.shape == (1, 4, 2, 5, 3)
    torch.testing.assert_close(out[0, 1], spec[0])
    torch.testing.assert_close(out[0, 2, 0], 1j * spec[0, 0])
    torch.testing.assert_close(out[0, 3, 1], 0.5 * spec[0, 1])
    assert float(out[0, 0].abs().max()) == 0.0
    assert float(out[0, 2, 1].abs().max()) == float(out[0, 3, 0].abs().max()) == 0.0


def test_sdr_loss_of_known_signals() -> None:
    from engine.training.teacher import sdr_loss

    ref = torch.randn(2, 4, 2, 4000)
    noisy = ref + 0.1 * torch.randn(2, 4, 2, 4000)
    assert float(sdr_loss(noisy, ref)) == pytest.approx(-20.0, abs=0.5)
    silent = torch.zeros(1, 1, 2, 4000)
    assert float(sdr_loss(silent, silent)) == 0.0  # silence for silence: no gain, no penalty
    assert float(sdr_loss(silent + 0.1, silent)) > 20  # noise where the stem is silent


@pytest.mark.parametrize("kind", ["l1", "sdr", "l1+sdr"])
@pytest.mark.parametrize("block", ["transformer", "rnn"])
def test_every_loss_and_block_trains(kind: str, block: str) -> None:
    torch.manual_seed(0)
    model = BandSplitRoformer(replace(TINY, block=block))
    stems = torch.randn(2, 4, 2, 4 * TINY.hop) * 0.1
    total, parts = losses(model, stems, stems.sum(dim=1), kind=kind)
    total.backward()  # type: ignore[no-untyped-call]
    assert ("neg_sdr" in parts) == (kind != "l1") and ("time_l1" in parts) == (kind != "sdr")
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(StemtokError, match="unknown teacher loss"):
        losses(model, stems, stems.sum(dim=1), kind="l2")


def _song(rng: np.random.Generator, seconds: float) -> dict[str, np.ndarray]:
    t = np.arange(int(seconds * RATE)) / RATE
    f = rng.uniform(200, 500)
    stems = {
        "vocals": 0.2 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2,
        "drums": 0.3 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.8),
        "bass": 0.3 * np.sin(2 * np.pi * f / 4 * t),
        "other": 0.1 * np.sign(np.sin(2 * np.pi * 1.5 * f * t)),
    }
    return {k: np.stack([v, v]).astype(np.float32) for k, v in stems.items()}


@pytest.mark.parametrize("cfg", [TINY, TINY_MONO], ids=["stereo", "mono"])
def test_tiny_teacher_overfits_one_clip(cfg: TeacherConfig) -> None:
    torch.manual_seed(0)
    model = BandSplitRoformer(cfg).train()
    song = _song(np.random.default_rng(1), 0.5)
    names = ("vocals", "drums", "bass", "other")
    stems = torch.from_numpy(np.stack([song[s][: cfg.channels] for s in names]))  # (4, C, N)
    stems, mix = stems[None], stems.sum(0)[None]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = last = 0.0
    for i in range(60):
        total, _ = losses(model, stems, mix)
        opt.zero_grad()
        total.backward()  # type: ignore[no-untyped-call]
        opt.step()
        value = float(total.detach())
        first, last = (value, value) if i == 0 else (first, value)
    assert last < 0.4 * first, (first, last)
    ev = evaluate(model, stems.numpy())
    assert ev["si_sdr"]["avg"] > ev["mixture_si_sdr"]["avg"] + 3


@pytest.fixture(scope="module")
def stem_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("set")
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("valid", 1)):
        for i in range(n):
            write_track(root / split / f"song{i}", _song(rng, 1.2), RATE, bit_depth="32f")
    return root


def test_training_run_is_resumable_and_loadable(stem_set: Path, tmp_path: Path) -> None:
    tcfg = TeacherTrainConfig(
        batch_size=2,
        crop_seconds=0.5,
        warmup=1,
        log_every=1,
        eval_every=2,
        checkpoint_minutes=100.0,
        valid_per_song=1,
    )
    out = tmp_path / "run"
    rec = train_teacher(TINY, replace(tcfg, max_steps=2), stem_set, out, progress=False, echo=None)
    assert rec["step"] == 2 and (out / "teacher.pt").is_file()
    rec = train_teacher(TINY, replace(tcfg, max_steps=3), stem_set, out, progress=False, echo=None)
    assert rec["step"] == 3
    # another validation set: the best so far no longer counts, the start is validated again
    train_teacher(
        TINY, replace(tcfg, max_steps=3, valid_per_song=2), stem_set, out, progress=False, echo=None
    )
    again = json.loads((out / "best" / "best.json").read_text())
    assert again["step"] == 3 and len(again["valid"]["si_sdr"]) >= 1
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3]
    assert any("valid" in r for r in lines)
    model = load_teacher(out)
    assert model.cfg == TINY and not model.training
    spec = codec_dsp.stft(torch.zeros(2, 4800), TINY.n_fft, TINY.hop)[None]  # (1, 2, F, T)
    assert model(spec_input(spec)).shape[:3] == (1, 4, 4)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o")
    assert main(["train", "teacher", "--data", str(tmp_path / "none"), "--out", out]) == 2
    assert "no such data folder" in capsys.readouterr().err
    assert main(["train", "teacher", "--data", str(tmp_path), "--out", out, "--resume"]) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err


@pytest.mark.parametrize("cfg", [TINY, TINY_MONO], ids=["stereo", "mono"])
def test_separate_song_keeps_rate_length_and_channels(cfg: TeacherConfig) -> None:
    from engine.training.teacher import separate_song

    model = BandSplitRoformer(cfg).eval()
    for rate, shape in ((44_100, (2, 44_100 + 17)), (48_000, (1, 30_001)), (48_000, (3, 9_600))):
        audio = np.random.default_rng(0).normal(0, 0.1, shape).astype(np.float32)
        out = separate_song(model, audio, rate, chunk_s=0.4, fade_s=0.1)
        assert list(out) == ["vocals", "drums", "bass", "other"]
        assert all(v.shape == shape and v.dtype == np.float32 for v in out.values())
        assert all(np.isfinite(v).all() for v in out.values())


def test_restart_schedule_depends_on_the_step_only() -> None:
    from engine.training.common import Schedule

    s = Schedule("restarts", warmup=10, final_ratio=0.1, cycle_steps=100, cycle_decay=0.5)
    assert s.factor(0, 0.9) == pytest.approx(0.1)  # warm-up, whatever the budget says
    assert s.factor(10, 1.0) == pytest.approx(1.0)  # first peak even at the budget's end
    assert s.factor(109, 0.0) == pytest.approx(0.1, abs=1e-3)  # end of the first cycle
    assert s.factor(110, 0.0) == pytest.approx(0.5)  # second peak, halved
    assert s.factor(10 + 100 * 10, 0.0) == pytest.approx(0.1)  # peaks never below the floor
    assert Schedule("cosine", warmup=10, final_ratio=0.1).factor(50, 1.0) == pytest.approx(0.1)
    with pytest.raises(StemtokError, match="unknown learning-rate schedule"):
        Schedule("linear")


def test_long_runs_keep_the_best_model_and_their_cpu_hours(stem_set: Path, tmp_path: Path) -> None:
    tcfg = TeacherTrainConfig(
        batch_size=2,
        crop_seconds=0.5,
        warmup=1,
        log_every=1,
        eval_every=1,
        checkpoint_minutes=100.0,
        valid_per_song=1,
        valid_seconds=0.5,
        max_steps=3,
    )
    out = tmp_path / "run"
    train_teacher(TINY, tcfg, stem_set, out, progress=False, echo=None)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in lines if "valid" in r]
    assert [r["step"] for r in valid] == [0, 1, 2, 3]  # where it started, then every step
    assert all(r["cpu_s"] > 0 and "time" in r for r in lines)
    best = json.loads((out / "best" / "best.json").read_text())
    top = max(valid, key=lambda r: r["valid"]["score"])
    assert best["step"] == top["step"] and best["valid"]["score"] == top["valid"]["score"]
    assert load_teacher(out / "best").cfg == TINY
    state = torch.load(sorted((out / "checkpoints").glob("*.pt"))[-1], weights_only=False)
    assert state["best"] == best["valid"]["score"] and state["cpu_s"] > 0
    # a session limit ends this invocation at once; the counters stay
    rec = train_teacher(
        TINY,
        replace(tcfg, max_steps=10),
        stem_set,
        out,
        progress=False,
        echo=None,
        session_minutes=0.0,
    )
    assert rec["step"] == 3


def test_songs_added_while_training_are_picked_up(stem_set: Path, tmp_path: Path) -> None:
    from engine.training.common import RunLog
    from engine.training.teacher import TeacherTrainer

    extra = tmp_path / "extra"
    rng = np.random.default_rng(1)
    write_track(extra / "train" / "a", _song(rng, 1.2), RATE, bit_depth="32f")
    tcfg = TeacherTrainConfig(crop_seconds=0.5, valid_per_song=1, valid_seconds=0.5)
    log = RunLog(tmp_path / "run")
    trainer = TeacherTrainer(
        TINY, tcfg, [stem_set, extra], tmp_path / "run", torch.device("cpu"), log
    )
    assert len(trainer.bank.songs) == 3 and trainer.valid is not None
    write_track(extra / "train" / "b", _song(rng, 1.2), RATE, bit_depth="32f")
    assert trainer.refresh_data() == 1 and trainer.refresh_data() == 0
    assert len(trainer.crops.weights) == 4
    log.close()


def test_lossy_examples_keep_the_sum(stem_set: Path, tmp_path: Path) -> None:
    from engine.training.codec_data import StemBank
    from engine.training.teacher import SongCrops

    bank = StemBank(stem_set, "train", tmp_path / "cache", channels=2)
    crops = SongCrops(bank, 9600, np.random.default_rng(0))
    stems, mix = crops.batch(2, remix_prob=0.0, mp3_prob=1.0)
    np.testing.assert_allclose(stems.sum(axis=1), mix, atol=1e-5)
    again = SongCrops(bank, 9600, np.random.default_rng(0)).batch(2, remix_prob=0.0)
    assert not np.allclose(again[1], mix, atol=1e-4)  # the same crops, made lossy


def test_level_augmentation_scales_the_whole_example() -> None:
    from engine.data import augment

    rng = np.random.default_rng(0)
    plain = augment.draw(np.random.default_rng(0))
    quiet = augment.draw(rng, augment.AugmentConfig(level_db=(-12.0, -12.0)))
    factor = 10 ** (-12 / 20)
    assert np.all(quiet.gains >= 0.5 * factor - 1e-9) and np.all(quiet.gains <= 1.5 * factor)
    np.testing.assert_allclose(plain.gains * factor, quiet.gains)  # the same stem gains, scaled


def test_song_weights_by_set() -> None:
    from engine.training.teacher import song_weights

    lengths, sets = np.array([100, 100, 200]), [0, 0, 1]
    np.testing.assert_allclose(song_weights(lengths, sets), [0.25, 0.25, 0.5])
    np.testing.assert_allclose(song_weights(lengths, sets, (3.0, 1.0)), [0.375, 0.375, 0.25])
    np.testing.assert_allclose(song_weights(lengths, sets, (0.0, 2.0)), [0.0, 0.0, 1.0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"set_weights": (1.0,)}, "1 values for 2 data sets"),
        ({"set_weights": (1.0, -1.0)}, r"in \[0, inf\]"),
        ({"set_weights": (0.0, 0.0)}, "positive weight"),
        ({"set_remix": (0.5, 1.5)}, r"in \[0, 1\]"),
    ],
)
def test_bad_set_options_are_refused(change: dict[str, Any], message: str) -> None:
    from engine.training.teacher import check_sets

    with pytest.raises(StemtokError, match=message):
        check_sets(replace(TeacherTrainConfig(), **change), 2)
    check_sets(TeacherTrainConfig(set_weights=(1.0, 0.0), set_remix=(0.0, 1.0)), 2)


@pytest.fixture(scope="module")
def pseudo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pseudo")
    write_track(
        root / "train" / "real", _song(np.random.default_rng(3), 2.0), RATE, bit_depth="32f"
    )
    return root


def test_crops_follow_the_set_weights_and_remix_probabilities(
    stem_set: Path, pseudo_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.data import augment
    from engine.training.codec_data import StemBank
    from engine.training.teacher import SongCrops

    bank = StemBank([stem_set, pseudo_set], "train", tmp_path / "cache", channels=2)
    assert bank.sets == [0, 0, 1]
    asked: list[Any] = []
    real = augment.augment_batch

    def spy(raw: np.ndarray, rng: np.random.Generator, cfg: Any, **kw: Any) -> Any:
        asked.append(kw["remix_prob"])
        return real(raw, rng, cfg, **kw)

    monkeypatch.setattr(augment, "augment_batch", spy)
    crops = SongCrops(bank, 4800, np.random.default_rng(0), (1.0, 1.0), (0.25, 1.0))
    songs = [crops.crop()[1] for _ in range(400)]
    assert 0.4 < np.mean(np.array(songs) == 2) < 0.6  # half the crops from the second set
    for _ in range(5):
        stems, mix = crops.batch(4, remix_prob=0.5)
        np.testing.assert_allclose(stems.sum(axis=1), mix, atol=1e-5)
    assert all(len(a) == 4 and set(a) <= {0.25, 1.0} for a in asked)  # per crop, by its set
    SongCrops(bank, 4800, np.random.default_rng(0)).batch(4, remix_prob=0.5)
    assert asked[-1] == 0.5  # without set_remix: the batch-level probability


def test_self_training_run_on_two_sets(stem_set: Path, pseudo_set: Path, tmp_path: Path) -> None:
    tcfg = TeacherTrainConfig(
        batch_size=2,
        crop_seconds=0.5,
        warmup=1,
        eval_every=2,
        checkpoint_minutes=100.0,
        valid_per_song=1,
        max_steps=2,
        set_weights=(1.0, 1.0),
        set_remix=(0.5, 1.0),
    )
    out = tmp_path / "run"
    rec = train_teacher(TINY, tcfg, [stem_set, pseudo_set], out, progress=False, echo=None)
    assert rec["step"] == 2 and (out / "best" / "best.json").is_file()
    saved = json.loads((out / "teacher_train_config.json").read_text())
    assert saved["set_weights"] == [1.0, 1.0] and saved["set_remix"] == [0.5, 1.0]
    with pytest.raises(StemtokError, match="1 values for 2 data sets"):
        train_teacher(
            TINY, replace(tcfg, set_remix=(1.0,)), [stem_set, pseudo_set], tmp_path / "bad"
        )


def test_cli_set_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o")
    with pytest.raises(SystemExit):
        main(["train", "teacher", "--data", str(tmp_path), "--out", out, "--data-weights", "a,1"])
    assert "expected numbers separated by commas" in capsys.readouterr().err
