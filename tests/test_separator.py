"""Separator: output at the input's rate, length and channels; aligned stems add up to the input;
batching, progress, cancel, windows and the default-model lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_export import export_tiny

from engine.errors import StemtokError
from engine.runtime import windows as win
from engine.runtime.decode import Cancelled
from engine.runtime.lm_separator import LMSeparator
from engine.runtime.model import default_model_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("sep"))


@pytest.fixture(scope="module")
def sep(tiny_dir: Path) -> LMSeparator:
    return LMSeparator(tiny_dir, "cpu", threads=1, batch=4)


def song(channels: int, rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    base = 0.3 * np.sin(2 * np.pi * 110 * t) + 0.1 * rng.standard_normal(n)
    return np.stack([np.roll(base, 3 * c) * (1 - 0.2 * c) for c in range(channels)]).astype(
        np.float32
    )


def db(err: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(err.astype(np.float64) ** 2) / np.sum(ref**2.0) + 1e-30))


@pytest.mark.parametrize(
    ("channels", "rate", "seconds"),
    [(1, 48000, 1.0), (2, 44100, 1.23), (2, 48000, 0.7111), (1, 22050, 0.5)],
)
def test_aligned_stems_keep_shape_rate_and_sum_to_the_input(
    sep: LMSeparator, channels: int, rate: int, seconds: float
) -> None:
    x = song(channels, rate, seconds)
    stems = sep.separate(x, rate)
    assert list(stems) == ["vocals", "drums", "bass", "other"] and stems.rate == rate
    for audio in stems.values():
        assert audio.shape == x.shape and audio.dtype == np.float32
    assert db(sum(stems.values()) - x, x) < -60
    if channels == 2:  # stereo is kept: the channels differ as the input's do
        assert not np.allclose(stems["drums"][0], stems["drums"][1])


def test_generative_mode_copies_mono_stems_to_every_channel(sep: LMSeparator) -> None:
    x = song(2, 44100, 0.9)
    stems = sep.separate(x, 44100, mode="generative", stems=["bass", "vocals"])
    assert list(stems) == ["vocals", "bass"]
    for audio in stems.values():
        assert audio.shape == x.shape
        np.testing.assert_array_equal(audio[0], audio[1])


def test_batch_size_does_not_change_the_result(tiny_dir: Path, sep: LMSeparator) -> None:
    x = song(2, 48000, 1.5, seed=3)
    one = LMSeparator(tiny_dir, "cpu", threads=1, batch=1).separate(x, 48000)
    many = sep.separate(x, 48000)
    for name in one:
        np.testing.assert_allclose(one[name], many[name], atol=1e-5)


def test_progress_rises_to_one_and_cancel_stops(sep: LMSeparator) -> None:
    seen: list[float] = []
    sep.separate(song(1, 48000, 1.0), 48000, progress=seen.append)
    assert seen[-1] == pytest.approx(1.0) and all(np.diff(seen) >= -1e-9)
    with pytest.raises(Cancelled, match="cancelled"):
        sep.separate(song(1, 48000, 1.0), 48000, cancel=lambda: True)


def test_file_input_and_bad_inputs(sep: LMSeparator, tmp_path: Path) -> None:
    import soundfile as sf

    x = song(2, 44100, 0.6)
    sf.write(tmp_path / "s.wav", x.T, 44100, subtype="FLOAT")
    stems = sep.separate(tmp_path / "s.wav", stems=["vocals"])
    assert stems.rate == 44100 and stems["vocals"].shape == x.shape
    with pytest.raises(StemtokError, match="unknown stem"):
        sep.separate(x, 44100, stems=["piano"])
    with pytest.raises(StemtokError, match="rate"):
        sep.separate(x, None)
    with pytest.raises(StemtokError, match="NaN"):
        sep.separate(np.full((1, 1000), np.nan, np.float32), 48000)
    with pytest.raises(StemtokError, match="mode"):
        sep.separate(x, 44100, mode="magic")  # type: ignore[arg-type]


def test_windows_put_back_unchanged_are_exact() -> None:
    x = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32)
    p = win.plan(1000, 256, 64)
    assert p.padded >= 1000 and p.hop == 192
    ola = win.OverlapAdd(p, (2,), 64)
    pieces = win.cut(x, p, 0, p.n_windows)
    for j in range(p.n_windows):
        ola.add(j, pieces[j])
    np.testing.assert_allclose(ola.result(), x, atol=1e-5)


def test_default_model_lookup(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEMTOK_MODEL", str(tiny_dir))
    assert default_model_dir() == tiny_dir
    monkeypatch.setenv("STEMTOK_MODEL", str(tiny_dir / "nowhere"))
    with pytest.raises(StemtokError, match="not a model folder"):
        LMSeparator()


def test_long_songs_go_in_crossfaded_segments(tiny_dir: Path, sep: LMSeparator) -> None:
    x = song(2, 16000, 19.0, seed=4)
    seen: list[float] = []
    short = LMSeparator(tiny_dir, "cpu", threads=1, batch=16, segment_seconds=8.0)
    stems = short.separate(x, 16000, progress=seen.append)
    assert all(a.shape == x.shape for a in stems.values())
    assert db(sum(stems.values()) - x, x) < -60
    assert seen[-1] == pytest.approx(1.0) and all(np.diff(seen) >= -1e-9)
    whole = LMSeparator(tiny_dir, "cpu", threads=1, batch=16, segment_seconds=60.0).separate(
        x, 16000
    )
    for name in stems:  # the same windows: only the seams' resampling margins differ
        assert db(stems[name] - whole[name], whole[name]) < -30


def test_streaming_a_file_gives_the_in_memory_result(tiny_dir: Path, tmp_path: Path) -> None:
    import soundfile as sf

    from engine.runtime.sources import FileSource

    x = song(2, 16000, 19.0, seed=6)
    sf.write(tmp_path / "long.wav", x.T, 16000, subtype="FLOAT")
    short = LMSeparator(tiny_dir, "cpu", threads=1, batch=16, segment_seconds=8.0)
    blocks = list(short.stream(FileSource(tmp_path / "long.wav"), stems=["bass", "vocals"]))
    assert len(blocks) == 3  # one finished block per segment
    streamed = np.concatenate(blocks, axis=-1)
    whole = short.separate(x, 16000, stems=["vocals", "bass"])
    np.testing.assert_allclose(streamed[0], whole["vocals"], atol=1e-6)
    np.testing.assert_allclose(streamed[1], whole["bass"], atol=1e-6)
