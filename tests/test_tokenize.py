"""``data tokenize``: the stored token files follow docs/dev/TOKENS.md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny_codec_config

from engine import dsp
from engine.constants import STEMS
from engine.data.musdb import write_track
from engine.data.tokenize import apply_augmentation, draw_augmentation, tokenize_set
from engine.models.codec import Codec, load_codec, save_codec
from engine.models.codec_config import CodecConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 48_000
HOP = 3840


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tok")
    rng = np.random.default_rng(0)
    n = int(1.3 * RATE)  # not a whole number of codec frames: padded
    for split, name in (("train", "a"), ("train", "b"), ("test", "c")):
        stems = {s: (0.1 * rng.standard_normal((2, n))).astype(np.float32) for s in STEMS}
        write_track(root / "set" / split / name, stems, RATE, bit_depth="32f")
    torch.manual_seed(0)
    codec = Codec(tiny_codec_config()).train()
    codec.quantize(0.1 * torch.randn(4, 4 * HOP))
    save_codec(codec.eval(), root / "codec")
    return root / "set", root / "codec"


def test_tokenize_writes_the_contract(setup: tuple[Path, Path], tmp_path: Path) -> None:
    set_dir, codec_dir = setup
    out = tmp_path / "tok"
    man = tokenize_set(set_dir, codec_dir, out, variants=2, seed=3)
    frames = -(-int(1.3 * RATE) // HOP)
    for split, song in (("train", "a"), ("train", "b"), ("test", "c")):
        for suffix in (".npz", ".v1.npz"):
            z = np.load(out / split / f"{song}{suffix}")
            assert z["codes"].dtype == np.int16 and z["codes"].shape == (4, 2, 3, frames)
            assert z["mel"].dtype == np.float16 and z["mel"].shape == (120, 4 * frames)
            assert z["codes"].min() >= 0 and z["codes"].max() < 16
            assert set(z.files) == {"codes", "mel"}
    saved = json.loads((out / "tokens.json").read_text())
    assert saved == json.loads(json.dumps(man))
    assert CodecConfig(**saved["codec_config"]) == tiny_codec_config()
    assert saved["stems"] == list(STEMS) and len(saved["songs"]) == 6
    entry = next(e for e in saved["songs"] if e["song"] == "a" and e["variant"] == 1)
    assert entry["split"] == "train" and entry["frames"] == frames
    assert set(entry["augmentation"]) == set(STEMS)
    assert next(e for e in saved["songs"] if e["variant"] == 0)["augmentation"] is None


def test_variant0_is_the_codec_and_mel_of_the_song(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    from engine.data.musdb import list_tracks
    from engine.training.codec_data import mono_stems

    set_dir, codec_dir = setup
    out = tmp_path / "tok"
    tokenize_set(set_dir, codec_dir, out, variants=2, splits=["test"])
    assert not (out / "train").exists()
    stems = mono_stems(list_tracks(set_dir, "test")[0])
    padded = np.pad(stems, ((0, 0), (0, (-stems.shape[1]) % HOP)))
    codes = load_codec(codec_dir).encode(torch.from_numpy(padded)).numpy()
    z0, z1 = np.load(out / "test" / "c.npz"), np.load(out / "test" / "c.v1.npz")
    assert np.array_equal(z0["codes"], codes)
    mel = dsp.log_mel(padded.sum(0))
    assert np.abs(z0["mel"].astype(np.float32) - mel).max() < 0.05
    assert not np.array_equal(z0["mel"], z1["mel"])  # the augmented variant differs


def test_rerun_skips_finished_files(setup: tuple[Path, Path], tmp_path: Path) -> None:
    set_dir, codec_dir = setup
    out = tmp_path / "tok"
    tokenize_set(set_dir, codec_dir, out, splits=["test"])
    f = out / "test" / "c.npz"
    stamp = f.stat().st_mtime_ns
    tokenize_set(set_dir, codec_dir, out, splits=["test"])
    assert f.stat().st_mtime_ns == stamp


def test_augmentation_is_seeded_and_bounded() -> None:
    a = draw_augmentation(np.random.default_rng(5))
    assert a == draw_augmentation(np.random.default_rng(5))
    for stem in STEMS:
        assert 0.5 <= a[stem]["gain"] <= 1.5 and a[stem]["polarity"] in (-1, 1)
        assert len(a[stem]["eq_db"]) == 7
    x = (0.1 * np.random.default_rng(0).standard_normal((4, RATE))).astype(np.float32)
    y = apply_augmentation(x, a)
    assert y.shape == x.shape and np.isfinite(y).all() and not np.allclose(x, y)


def test_cli_registers_under_data(setup: tuple[Path, Path], tmp_path: Path) -> None:
    from app.commands import tokenize_cmd

    parser = argparse.ArgumentParser(prog="stemtok")
    data = parser.add_subparsers(dest="command").add_parser("data")
    tokenize_cmd.register(data.add_subparsers(dest="data_command"))
    set_dir, codec_dir = setup
    out = tmp_path / "tok"
    args = parser.parse_args(
        [
            "data",
            "tokenize",
            str(set_dir),
            "--codec",
            str(codec_dir),
            "--out",
            str(out),
            "--splits",
            "test",
            "--quiet",
        ]
    )
    assert args.func(args) == 0
    assert (out / "tokens.json").is_file() and (out / "test" / "c.npz").is_file()
