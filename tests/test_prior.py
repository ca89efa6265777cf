"""An aligned decoder that refines the teacher: it starts as the teacher's masks, trains alone on
top of a frozen tokenizer, exports into a model folder that then runs the teacher too, and
refuses a teacher other than the one it was trained on."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_export import export_tiny as export_tiny_model
from test_teacher_export import export_tiny as export_tiny_teacher
from test_train_codec import stem_set, tiny_train  # noqa: F401  (stem_set is a fixture)
from tiny_models import tiny_codec_config

from engine import dsp
from engine.errors import StemtokError
from engine.models.codec import PRIOR_EPS, Codec, load_codec, save_codec
from engine.models.codec_config import TRAIN_CONFIG_FILE
from engine.runtime.decode import generate
from engine.runtime.lm_separator import LMSeparator
from engine.runtime.model import Model
from engine.training.codec import train_codec
from engine.training.codec_data import GeneratedBank, StemBank
from export.model import refine_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return export_tiny_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny exported LM folder; its codec is ``<parent>/codec``."""
    torch.set_num_threads(1)
    return export_tiny_model(tmp_path_factory.mktemp("model"))


def _refined_codec(base: Path, out: Path, teacher: Path, gate: float) -> Path:
    """The codec of ``base`` with a refining aligned decoder whose gate is ``gate`` (and the
    rest of the new weights random), saved as a run folder that names ``teacher``."""
    source = load_codec(base)
    codec = Codec(replace(source.cfg, al_prior=True))
    codec.load_state_dict(source.state_dict(), strict=False)
    assert codec.aligned.prior is not None
    torch.manual_seed(1)
    with torch.no_grad():
        codec.aligned.gate.fill_(gate)
        codec.aligned.prior.weight.normal_(0, 0.1)
    save_codec(codec, out)
    (out / TRAIN_CONFIG_FILE).write_text(json.dumps({"prior_teacher": str(teacher)}))
    return out


def test_untrained_refinement_returns_the_prior() -> None:
    torch.manual_seed(0)
    codec = Codec(tiny_codec_config(al_prior=True)).eval()
    cfg = codec.cfg
    codes = torch.randint(0, cfg.codebook_size, (2, 2, cfg.n_levels, 4))
    mix = torch.randn(2, 4 * cfg.frame_hop)
    spec = codec.spectrum(mix)
    prior = torch.rand(spec.shape)
    with torch.no_grad():
        mask = codec.mask(*codec.dequantize(codes), spec, prior)
        with pytest.raises(ValueError, match="prior"):
            codec.mask(*codec.dequantize(codes), spec)
    assert torch.allclose(mask, prior.clamp(PRIOR_EPS, 1 - PRIOR_EPS), atol=1e-6)
    plain = Codec(tiny_codec_config()).eval()  # no prior: no new parameters, the old signature
    assert not any("prior" in k or "gate" in k for k in plain.state_dict())


def test_ratio_mask_is_the_clipped_magnitude_ratio() -> None:
    mix = np.array([[2.0 + 0j, 1j, 0.0]], np.complex64)
    stem = np.array([[1.0 + 0j, -2j, 0.0]], np.complex64)
    np.testing.assert_allclose(dsp.ratio_mask(stem, mix), [[0.5, 1.0, 0.0]])


def test_training_moves_only_the_aligned_decoder(
    stem_set: Path,  # noqa: F811
    teacher_dir: Path,
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    base = save_codec(Codec(tiny_codec_config(dec_dim=32)), tmp_path / "base").parent
    cfg = replace(tiny_codec_config(dec_dim=32), al_prior=True)
    out = tmp_path / "run"
    with pytest.raises(StemtokError, match="--init"):
        train_codec(cfg, tiny_train(max_steps=1), stem_set, out, progress=False, echo=None)
    tcfg = tiny_train(max_steps=3, init=str(base), prior_teacher=str(teacher_dir), lr=1e-2)
    train_codec(cfg, tcfg, stem_set, out, progress=False, echo=None)
    before, after = load_codec(base).state_dict(), load_codec(out).state_dict()
    for key, value in before.items():
        same = torch.equal(value, after[key])
        assert same != key.startswith("aligned."), key  # the aligned decoder alone moved
    assert float(after["aligned.gate"].abs()) > 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    valid = [r["valid"] for r in lines if "valid" in r]
    assert valid and {"prior_si_sdr", "random_codes_si_sdr", "aligned_si_sdr"} <= set(valid[0])
    # at step 0 the refinement is the teacher's masks, whatever the codes
    assert valid[0]["aligned_si_sdr"] == pytest.approx(valid[0]["prior_si_sdr"], abs=1e-3)


def test_training_on_the_tokens_an_lm_writes(
    stem_set: Path,  # noqa: F811
    teacher_dir: Path,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    base = model_dir.parent / "codec"
    cfg = replace(load_codec(base).cfg, al_prior=True)
    tcfg = tiny_train(
        max_steps=2,
        init=str(base),
        prior_teacher=str(teacher_dir),
        generated_model=str(model_dir),
        generated_crops=5,
    )
    out = tmp_path / "run"
    train_codec(cfg, tcfg, stem_set, out, progress=False, echo=None)
    bank = GeneratedBank(
        StemBank(stem_set, "train", out / "cache"), model_dir, 5, tcfg.segment, out / "cache"
    )  # read back from the run's cache
    assert bank.stems.shape == (5, 4, tcfg.segment)
    lm = Model(model_dir, "cpu", threads=1)
    mix = np.asarray(bank.stems[:2], np.float32).sum(axis=1)
    np.testing.assert_array_equal(bank.codes[:2], generate(lm, dsp.log_mel(mix)).codes)
    batch, codes = bank.batch(3, np.random.default_rng(0))
    rng = np.random.default_rng(0)  # the same draws: rows, then stems
    rows, stems = rng.integers(0, 5, size=3), rng.integers(0, 4, size=3)
    crops = np.asarray(bank.stems[rows], np.float32)
    np.testing.assert_array_equal(batch.stem, stems)
    np.testing.assert_allclose(batch.stems, crops[np.arange(3), stems])
    np.testing.assert_allclose(batch.mixture, crops.sum(axis=1), atol=1e-6)
    np.testing.assert_array_equal(codes, bank.codes[rows, stems])
    with pytest.raises(StemtokError, match="windows of"):
        GeneratedBank(StemBank(stem_set, "train", out / "cache"), model_dir, 2, 999, tmp_path)


def test_refined_folder_runs_the_teacher_and_refuses_another(
    model_dir: Path, teacher_dir: Path, tmp_path: Path
) -> None:
    codec_run = _refined_codec(model_dir.parent / "codec", tmp_path / "codec", teacher_dir, 0.5)
    out = tmp_path / "refined"
    config = refine_model(model_dir, codec_run, out, echo=lambda line: None)
    assert config["prior"]["teacher"] == str(teacher_dir.resolve())
    assert config["parity"]["aligned_mask_max_abs"] < 1e-3
    assert [i.name for i in Model(out, "cpu", threads=1).aligned.get_inputs()] == [
        "codes",
        "mix_logmag",
        "prior",
    ]
    with pytest.raises(StemtokError, match="already exists"):
        refine_model(model_dir, codec_run, out, echo=lambda line: None)
    with pytest.raises(StemtokError, match="refines no teacher"):
        refine_model(model_dir, model_dir.parent / "codec", tmp_path / "x", echo=lambda _: None)

    rng = np.random.default_rng(0)
    song = (0.1 * rng.standard_normal((2, 48_000))).astype(np.float32)
    stems = LMSeparator(out, device="cpu", threads=1).separate(song, 48_000)
    total = sum(stems[name] for name in stems)
    assert all(s.shape == song.shape for s in stems.values())
    np.testing.assert_allclose(total, song, atol=2e-3)  # the stems still add up to the mix
    plain = LMSeparator(model_dir, device="cpu", threads=1).separate(song, 48_000)
    assert not np.allclose(plain["vocals"], stems["vocals"], atol=1e-4)

    # another teacher in the place the folder names: refused in one line, not run
    other = tmp_path / "other-teacher"
    shutil.copytree(export_tiny_teacher(tmp_path / "t2", seed=3), other)
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    cfg = json.loads((moved / "model_config.json").read_text())
    cfg["prior"]["teacher"] = str(other)
    (moved / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(StemtokError, match="another one") as err:
        Model(moved, "cpu", threads=1)
    assert "\n" not in str(err.value)


def test_refine_refuses_a_codec_with_other_encoders(
    model_dir: Path, teacher_dir: Path, tmp_path: Path
) -> None:
    torch.manual_seed(5)
    stranger = save_codec(Codec(tiny_codec_config()), tmp_path / "stranger").parent
    codec_run = _refined_codec(stranger, tmp_path / "codec", teacher_dir, 0.0)
    # the folder's source names the codec its LM was trained with
    with pytest.raises(StemtokError, match="encoders differ"):
        refine_model(model_dir, codec_run, tmp_path / "out", echo=lambda line: None)
