"""Separator confidence: exp(-token entropy) per stem and codec frame, on the song's timeline,
without changing the separated audio."""

from __future__ import annotations

import numpy as np
import pytest
from test_export import export_tiny

from engine.runtime.lm_separator import LMSeparator

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sep(tmp_path_factory: pytest.TempPathFactory) -> LMSeparator:
    return LMSeparator(export_tiny(tmp_path_factory.mktemp("conf")), "cpu", threads=1, batch=4)


def _song(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(1)
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    return np.stack([x, np.roll(x, 5)]).astype(np.float32)


def test_confidence_covers_the_song_and_leaves_audio_unchanged(sep: LMSeparator) -> None:
    rate = 16000
    x = _song(2.5, rate)
    plain = sep.separate(x, rate, seed=3)
    rich = sep.separate(x, rate, seed=3, confidence=True)
    assert plain.confidence == {} and plain.confidence_rate == 0.0
    assert set(rich.confidence) == set(rich)
    for name in rich:
        np.testing.assert_array_equal(rich[name], plain[name])
        c = rich.confidence[name]
        assert c.ndim == 1 and c.dtype == np.float32
        assert c.size >= 2.5 * rich.confidence_rate
        assert np.all((c > 0) & (c <= 1))
    # sampled from a random tiny model: somewhere the model is unsure
    assert min(float(c.min()) for c in rich.confidence.values()) < 0.99


def test_confidence_follows_chosen_stems_and_segments(sep: LMSeparator) -> None:
    rate = 16000
    x = _song(9.0, rate)
    short = LMSeparator(sep.model.folder, "cpu", threads=1, batch=4, segment_seconds=8.0)
    out = short.separate(x, rate, stems=["drums", "bass"], mode="generative", confidence=True)
    assert list(out.confidence) == ["drums", "bass"]
    frames = out.confidence["drums"].size
    assert frames == pytest.approx(9.0 * out.confidence_rate, abs=2)
    for c in out.confidence.values():
        assert np.all((c > 0) & (c <= 1)) and np.ptp(c) > 0  # the strip has something to show
