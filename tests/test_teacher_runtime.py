"""TeacherSeparator (onnxruntime) and the model factory: shapes, rate, channels, sum to the mix,
stereo kept, streaming equals in-memory, progress/cancel, errors; the factory picks the class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.errors import StemtokError
from engine.runtime.decode import Cancelled
from engine.runtime.factory import model_kind, open_separator
from engine.runtime.lm_separator import LMSeparator
from engine.runtime.model import model_dir
from engine.runtime.separator import Stems
from engine.runtime.sources import ArraySource
from engine.runtime.teacher import TeacherSeparator, mixture_consistent, wiener

STEMS = ("vocals", "drums", "bass", "other")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from test_teacher_export import export_tiny

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return export_tiny(tmp_path_factory.mktemp("rt"), window_s=0.4)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sep(teacher_dir: Path) -> TeacherSeparator:
    return TeacherSeparator(teacher_dir, device="cpu", threads=1, batch=3, segment_seconds=8.0)


def _song(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(shape[1]) / 44_100
    tone = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(shape[1])
    a = np.stack([tone * (1 + 0.5 * c) for c in range(shape[0])])
    return a.astype(np.float32)


@pytest.mark.parametrize(
    ("rate", "shape"), [(44_100, (2, 44_100 + 17)), (48_000, (1, 30_001)), (22_050, (3, 5_000))]
)
def test_shapes_rate_channels_and_sum(sep: TeacherSeparator, rate: int, shape: tuple) -> None:
    audio = _song(shape)
    out = sep.separate(audio, rate)
    assert isinstance(out, Stems) and out.rate == rate and list(out) == list(STEMS)
    for stem in STEMS:
        assert out[stem].shape == shape and out[stem].dtype == np.float32
        assert np.isfinite(out[stem]).all()
    total = sum(out[s] for s in STEMS)
    np.testing.assert_allclose(total, audio, atol=2e-5)
    for stem in STEMS:  # really split: neither the mixture nor an equal share of it
        assert not np.allclose(out[stem], audio, atol=1e-3)
        assert not np.allclose(out[stem], audio / 4, atol=1e-3)


def test_stereo_teacher_sees_the_pair_and_takes_mono_and_surround(sep: TeacherSeparator) -> None:
    assert sep.model.channels == 2
    left = _song((1, 40_000), seed=1)[0]
    right = _song((1, 40_000), seed=7)[0][::-1].copy()
    stereo = np.stack([left, np.zeros_like(left)])
    out = sep.separate(stereo, 44_100)
    assert all(float(np.abs(out[s][1]).max()) < 1e-6 for s in STEMS)  # silence stays silent
    mono = sep.separate(left[None], 44_100)  # a mono file goes in on both inputs
    dual = sep.separate(np.stack([left, left]), 44_100)
    pair = sep.separate(np.stack([left, right]), 44_100)
    for s in STEMS:
        np.testing.assert_allclose(mono[s][0], dual[s].mean(axis=0), atol=1e-5)  # averaged
        # the left stems depend on the right channel: the model sees the stereo image
        assert not np.allclose(pair[s][0], out[s][0], atol=1e-3)
    surround = sep.separate(np.stack([left, right, left]), 44_100)  # a pair and a lone channel
    for s in STEMS:
        np.testing.assert_allclose(surround[s][:2], pair[s], atol=1e-5)
        np.testing.assert_allclose(surround[s][2], mono[s][0], atol=1e-5)


def test_mono_teacher_separates_every_channel_on_its_own(tmp_path: Path) -> None:
    import torch
    from test_teacher_export import TINY_MONO, export_tiny

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = export_tiny(tmp_path, window_s=0.4, cfg=TINY_MONO)
    finally:
        torch.set_num_threads(before)
    mono_sep = TeacherSeparator(folder, device="cpu", threads=1, batch=3, segment_seconds=8.0)
    assert mono_sep.model.channels == 1
    left = _song((1, 40_000), seed=1)[0]
    right = _song((1, 40_000), seed=7)[0]
    out = mono_sep.separate(np.stack([left, right]), 44_100)
    alone = mono_sep.separate(left[None], 44_100)
    for s in STEMS:
        np.testing.assert_allclose(out[s][0], alone[s][0], atol=1e-5)
    np.testing.assert_allclose(sum(out[s] for s in STEMS), np.stack([left, right]), atol=2e-5)


def test_stream_equals_separate_and_covers_the_song(sep: TeacherSeparator) -> None:
    audio = _song((2, 44_100 * 19 + 5), seed=2)  # several 8-s segments
    whole = sep.separate(audio, 44_100, stems=["bass", "vocals"])
    assert list(whole) == ["vocals", "bass"]
    blocks = list(sep.stream(ArraySource(audio, 44_100), stems=["vocals", "bass"]))
    assert len(blocks) >= 3
    streamed = np.concatenate(blocks, axis=-1)
    assert streamed.shape == (2, 2, audio.shape[1])
    np.testing.assert_allclose(streamed[0], whole["vocals"], atol=1e-6)


def test_progress_cancel_and_errors(sep: TeacherSeparator) -> None:
    seen: list[float] = []
    sep.separate(_song((1, 30_000)), 44_100, progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    with pytest.raises(Cancelled):
        sep.separate(_song((1, 30_000)), 44_100, cancel=lambda: True)
    with pytest.raises(StemtokError, match="generative"):
        sep.separate(_song((1, 3_000)), 44_100, mode="generative")
    with pytest.raises(StemtokError, match="unknown stem"):
        sep.separate(_song((1, 3_000)), 44_100, stems=["piano"])
    with pytest.raises(StemtokError, match="sample rate"):
        sep.separate(_song((1, 3_000)), 1_000)
    assert sep.separate(_song((1, 3_000)), 44_100, seed=5)["vocals"].shape == (1, 3_000)


def test_file_input(sep: TeacherSeparator, tmp_path: Path) -> None:
    from engine.audio import write_audio

    audio = _song((2, 20_000))
    write_audio(tmp_path / "s.wav", audio, 44_100, bit_depth="32f")
    out = sep.separate(tmp_path / "s.wav")
    assert out.rate == 44_100 and out["drums"].shape == (2, 20_000)


def test_mixture_consistency_sums_and_keeps_a_perfect_split() -> None:
    rng = np.random.default_rng(0)
    spec = (rng.standard_normal((1, 5, 3)) + 1j * rng.standard_normal((1, 5, 3))).astype(
        np.complex64
    )
    est = rng.standard_normal((1, 4, 5, 3)).astype(np.complex64)
    fixed = mixture_consistent(est, spec)
    np.testing.assert_allclose(fixed.sum(axis=1), spec, atol=1e-5)
    parts = np.stack([spec * w for w in (0.1, 0.2, 0.3, 0.4)], axis=1)
    np.testing.assert_allclose(mixture_consistent(parts, spec), parts, atol=1e-6)
    equal = mixture_consistent(est, spec, "equal")
    np.testing.assert_allclose(equal.sum(axis=1), spec, atol=1e-5)
    np.testing.assert_allclose(equal - est, np.repeat((equal - est)[:, :1], 4, axis=1), atol=1e-6)
    loud = est.copy()
    loud[:, 0] *= 100  # the loud stem takes (nearly) all of the residual under "power"
    moved = mixture_consistent(loud, spec) - loud
    assert np.abs(moved[:, 0]).sum() > 50 * np.abs(moved[:, 1:]).sum()


def test_factory_picks_the_class(teacher_dir: Path, tmp_path: Path) -> None:
    assert model_kind(teacher_dir) == "teacher"
    got = open_separator(teacher_dir, device="cpu", threads=1, batch=2)
    assert isinstance(got, TeacherSeparator) and got.batch == 2
    default = model_dir("default")
    if (default / "model_config.json").is_file():
        assert model_kind(default) == "lm"
        assert isinstance(open_separator(None, device="cpu", threads=1), LMSeparator)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "model_config.json").write_text(json.dumps({"schema": 1, "kind": "vocoder"}))
    with pytest.raises(StemtokError, match="unknown model kind"):
        open_separator(odd)
    with pytest.raises(StemtokError, match="no model named 'nonesuch'"):
        model_dir("nonesuch")
    with pytest.raises(StemtokError, match="no such model folder"):
        model_dir(tmp_path / "missing")


def test_names_resolve_under_resources_models(
    teacher_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    shutil.copytree(teacher_dir, tmp_path / "resources" / "models" / "mine")
    monkeypatch.chdir(tmp_path)
    assert model_dir("mine") == Path.cwd() / "resources" / "models" / "mine"
    assert isinstance(open_separator("mine", device="cpu", threads=1), TeacherSeparator)


def test_cli_separate_with_a_teacher_model(teacher_dir: Path, tmp_path: Path) -> None:
    from app.cli import main
    from engine.audio import read_audio, write_audio

    audio = _song((2, 30_000))
    write_audio(tmp_path / "song.wav", audio, 44_100, bit_depth="32f")
    argv = [
        "separate",
        str(tmp_path / "song.wav"),
        "-o",
        str(tmp_path / "o"),
        "--model",
        str(teacher_dir),
        "--threads",
        "1",
        "--quiet",
    ]
    assert main(argv) == 0
    got = [read_audio(tmp_path / "o" / "song" / f"{s}.wav")[0] for s in STEMS]
    np.testing.assert_allclose(sum(got), audio, atol=2e-5)
    assert (
        main(
            [
                "karaoke",
                str(tmp_path / "song.wav"),
                "-o",
                str(tmp_path / "k.wav"),
                "--model",
                str(teacher_dir),
                "--quiet",
            ]
        )
        == 0
    )
    kar = read_audio(tmp_path / "k.wav")[0]
    assert kar.shape == audio.shape


def test_wiener_filter_uses_the_stereo_image() -> None:
    """Three sources panned apart, estimates that leak 40 % of the others: one round of the
    stereo Wiener filter moves them towards the sources and keeps their sum; in mono it is the power soft mask; identical channels give finite stems."""
    rng = np.random.default_rng(0)
    f, t = 120, 90

    def noise(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)

    pans = np.array([[1.0, 0.15], [0.2, 1.0], [0.7, 0.7]])
    power = rng.gamma(0.5, 1.0, (3, f, t))
    src = np.stack([pans[k][:, None, None] * np.sqrt(power[k]) * noise(f, t) for k in range(3)])
    mix = src.sum(axis=0)
    est = np.stack([0.6 * src[k] + 0.2 * (mix - src[k]) for k in range(3)])

    def sdr(e: np.ndarray) -> float:
        return float(10 * np.log10(np.sum(np.abs(src) ** 2) / np.sum(np.abs(e - src) ** 2)))

    out = wiener(est, mix, 1)
    assert out.shape == est.shape and out.dtype == np.complex64
    assert sdr(out) > sdr(est) + 1.5, (sdr(est), sdr(out))
    assert np.linalg.norm(out.sum(axis=0) - mix) < 1e-4 * np.linalg.norm(mix)
    mono = wiener(est[:, :1], mix[:1], 1)
    p = np.abs(est[:, :1]) ** 2
    np.testing.assert_allclose(mono, p / p.sum(axis=0) * mix[:1], atol=1e-5)
    dual = wiener(np.repeat(est[:, :1], 2, axis=1), np.repeat(mix[:1], 2, axis=0), 2)
    assert np.isfinite(dual).all()
    np.testing.assert_allclose(dual[:, 0], dual[:, 1], rtol=1e-3, atol=1e-4)
    silent = wiener(np.zeros((4, 2, 3, 5), np.complex64), np.zeros((2, 3, 5), np.complex64))
    assert np.isfinite(silent).all() and float(np.abs(silent).max()) == 0.0
    with pytest.raises(ValueError):
        wiener(np.zeros((2, 3, 4, 5), np.complex64), np.zeros((3, 4, 5), np.complex64))
