"""Editor waveform peaks: every pixel's min/max covers the samples it stands for, at any zoom,
and a redraw-sized query stays small for a long song."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from app.editor.peaks import BASE, Peaks


def brute(
    x: np.ndarray, start: float, spp: float, width: int, margin: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.zeros(width, np.float32), np.zeros(width, np.float32)
    for i in range(width):
        a = int(np.floor(start + i * spp))
        b = max(a + 1, int(np.floor(start + (i + 1) * spp)))
        a, b = max(0, a - margin), b + margin
        if a < x.shape[1]:
            lo[i], hi[i] = x[:, a:b].min(), x[:, a:b].max()
    return lo, hi


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 200_003)).astype(np.float32)


@pytest.mark.parametrize("spp", [0.25, 1.0, 7.5, 40.0])
def test_zoomed_in_pixels_are_exact(signal: np.ndarray, spp: float) -> None:
    p = Peaks(signal)
    lo, hi, valid = p.span(1234.5, spp, 300)
    want_lo, want_hi = brute(signal, 1234.5, spp, 300)
    assert valid == 300
    np.testing.assert_array_equal(lo, want_lo)
    np.testing.assert_array_equal(hi, want_hi)


@pytest.mark.parametrize("spp", [64.0, 100.0, 1000.0, 5000.0])
def test_zoomed_out_pixels_cover_their_samples(signal: np.ndarray, spp: float) -> None:
    """Buckets are whole: a pixel's range is its samples' range, widened by at most one bucket."""
    p = Peaks(signal)
    start = 64 * 30.0
    lo, hi, valid = p.span(start, spp, 30)
    want_lo, want_hi = brute(signal, start, spp, 30)
    assert valid == 30
    assert np.all(lo <= want_lo) and np.all(hi >= want_hi)
    size = max(s for s, *_ in p.levels if s <= spp)
    wide_lo, wide_hi = brute(signal, start, spp, 30, margin=size)
    assert np.all(lo >= wide_lo) and np.all(hi <= wide_hi)


def test_past_the_end_is_empty_and_levels_shrink(signal: np.ndarray) -> None:
    p = Peaks(signal)
    lo, hi, valid = p.span(signal.shape[1] - 10 * 100, 100.0, 50)
    assert valid in (10, 11) and np.all(lo[valid:] == 0) and np.all(hi[valid:] == 0)
    sizes = [s for s, *_ in p.levels]
    assert sizes[0] == BASE and all(b == 4 * a for a, b in itertools.pairwise(sizes))
    assert p.levels[0][1].size == -(-signal.shape[1] // BASE)
    assert hi.max() <= signal.max() and lo[:10].min() >= signal.min()


def test_a_long_song_span_is_fast() -> None:
    x = np.zeros((1, 48000 * 600), np.float32)  # 10 minutes
    x[0, ::997] = 1.0
    p = Peaks(x)
    times = []
    for spp in (10.0, 300.0, 18000.0):
        t = time.perf_counter()
        p.span(1e6, spp, 1600)
        times.append(time.perf_counter() - t)
    assert max(times) < 0.05, times


def test_refresh_after_an_edit_equals_a_rebuild(signal: np.ndarray) -> None:
    x = signal.copy()
    p = Peaks(x)
    x[:, 50_001:61_234] *= 3.0  # edited in place, as a re-roll take does
    p.refresh(50_001, 61_234)
    fresh = Peaks(x)
    for (size, lo, hi), (size2, lo2, hi2) in zip(p.levels, fresh.levels, strict=True):
        assert size == size2
        np.testing.assert_array_equal(lo, lo2)
        np.testing.assert_array_equal(hi, hi2)
