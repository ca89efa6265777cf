"""Training augmentation (gain, polarity, 7-band EQ) and remixing: engine.data.augment."""

from __future__ import annotations

import numpy as np
import pytest

from engine.constants import STEMS
from engine.data import augment as A
from engine.errors import StemtokError

CFG = A.AugmentConfig()
RATE = CFG.rate


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.asarray(0.1 * np.random.default_rng(seed).standard_normal(shape), dtype=np.float32)


def test_draw_statistics() -> None:
    rng = np.random.default_rng(0)
    draws = [A.draw(rng) for _ in range(3000)]
    gains = np.concatenate([d.gains for d in draws])
    flips = np.concatenate([d.flips for d in draws])
    eq = np.stack([d.eq_db for d in draws])  # (3000, 4, 7)
    assert gains.min() >= 0.5 and gains.max() <= 1.5
    assert gains.mean() == pytest.approx(1.0, abs=0.02)
    assert np.quantile(gains, 0.1) == pytest.approx(0.6, abs=0.03)  # uniform, not clustered
    assert flips.mean() == pytest.approx(0.1, abs=0.015)  # 12000 stems: sd 0.003
    assert eq.shape[1:] == (4, 7)
    for i, stem in enumerate(STEMS):
        limit = CFG.eq_max_db[i]
        assert np.abs(eq[:, i]).max() <= limit
        assert np.abs(eq[:, i]).max() > 0.95 * limit, stem  # the whole range is used
        assert eq[:, i].mean() == pytest.approx(0.0, abs=0.1 * limit)
    assert CFG.eq_max_db[0] < CFG.eq_max_db[1]  # vocals get the gentler EQ


def test_single_band_gain_at_its_centre() -> None:
    freqs = np.asarray(A.EQ_FREQS)
    for k, f0 in enumerate(freqs):
        g = np.zeros(7)
        g[k] = 5.0
        resp = A.eq_response_db(g, freqs, CFG)
        assert resp[k] == pytest.approx(5.0, abs=1e-6), f0
        assert np.abs(np.delete(resp, k)).max() < 1.0  # neighbours overlap a little


def test_drawn_eq_response_within_range_at_centres() -> None:
    rng = np.random.default_rng(1)
    freqs = np.asarray(A.EQ_FREQS)
    for _ in range(200):
        d = A.draw(rng)
        for i in range(4):
            limit = CFG.eq_max_db[i]
            resp = A.eq_response_db(d.eq_db[i], freqs, CFG)
            assert np.all(np.abs(resp - d.eq_db[i]) <= 0.35 * limit)
            assert np.all(np.abs(resp) <= 1.35 * limit)


def test_filtered_sine_matches_response() -> None:
    t = np.arange(RATE // 2) / RATE
    eq = np.array([0.0, 0.0, 4.0, -5.0, 2.0, 0.0, 0.0])
    d = A.Draw(np.ones(4), np.zeros(4, bool), np.tile(eq, (4, 1)))
    for f in (400.0, 700.0, 1000.0, 3000.0):
        x = np.zeros((4, 1, t.size), np.float32)
        x[1, 0] = np.sin(2 * np.pi * f * t)
        y = A.apply(x, d)[1, 0, RATE // 4 :]  # skip the settling time
        measured = 20 * np.log10(np.sqrt(2 * np.mean(y.astype(np.float64) ** 2)))
        assert measured == pytest.approx(A.eq_response_db(eq, np.array([f]), CFG)[0], abs=0.05)


def test_mixture_is_sum_and_silence_kept() -> None:
    x = _noise((4, 2, RATE))
    x[2] = 0.0  # a silent bass
    stems, mix = A.augment(x, np.random.default_rng(3))
    assert stems.shape == x.shape and mix.shape == (2, RATE)
    assert stems.dtype == np.float32 and mix.dtype == np.float32
    np.testing.assert_array_equal(mix, stems.astype(np.float64).sum(axis=0).astype(np.float32))
    assert not np.any(stems[2])


def test_gain_and_polarity_applied() -> None:
    x = _noise((4, 1, 4800))
    d = A.Draw(
        np.array([0.5, 1.5, 1.0, 1.2]), np.array([False, True, False, True]), np.zeros((4, 7))
    )
    y = A.apply(x, d)
    np.testing.assert_allclose(y[:, 0], x[:, 0] * d.scales[:, None], rtol=1e-6)


def test_no_click_at_crop_start() -> None:
    """A constant input stays constant from the first sample (filters start settled)."""
    x = np.full((4, 2, 2000), 0.25, np.float32)
    d = A.draw(np.random.default_rng(4))
    y = A.apply(x, d)
    np.testing.assert_allclose(y, 0.25 * d.scales[:, None, None] * np.ones_like(x), atol=1e-5)


def test_deterministic_and_shapes() -> None:
    x = _noise((4, RATE // 4))  # mono [4, N]
    a = A.augment(x, np.random.default_rng(9))
    b = A.augment(x, np.random.default_rng(9))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == x.shape and a[1].shape == (RATE // 4,)
    as_dict = {s: x[i][None] for i, s in enumerate(STEMS) if s != "bass"}
    stems, _ = A.augment(as_dict, np.random.default_rng(9))
    assert stems.shape == (4, 1, RATE // 4) and not np.any(stems[2])


def test_low_rate_drops_bands_above_nyquist() -> None:
    cfg = A.AugmentConfig(rate=16_000)
    assert A.active_bands(cfg) == (60.0, 150.0, 400.0, 1000.0, 2500.0, 6000.0)
    stems, _ = A.augment(_noise((4, 1, 8000)), np.random.default_rng(0), cfg)
    assert np.isfinite(stems).all()


def test_remix_sources_are_distinct_songs() -> None:
    rng = np.random.default_rng(5)
    for batch in (4, 5, 8):
        src = A.remix_sources(batch, rng)
        assert src.shape == (batch, 4)
        assert all(len(set(row)) == 4 for row in src)  # four different songs per example
        assert all(sorted(col) == list(range(batch)) for col in src.T)  # each stem used once


def test_remix_content_and_crop() -> None:
    batch, n = 6, 1000
    # stem s of song b is the constant 10 * b + s + 1, lengths differ per song
    examples = [np.full((4, 2, n + 37 * b), 0.0, np.float32) for b in range(batch)]
    for b, e in enumerate(examples):
        e += (10 * b + np.arange(4) + 1)[:, None, None]
    out = A.remix(examples, np.random.default_rng(6), length=800)
    assert out.shape == (batch, 4, 2, 800)
    for row in out:
        songs = [(row[s, 0, 0] - s - 1) / 10 for s in range(4)]
        assert len(set(songs)) == 4
        for s in range(4):
            assert np.all(row[s] == row[s, 0, 0])


def test_remix_crop_offsets_vary() -> None:
    ramp = np.arange(5000, dtype=np.float32)
    examples = [np.tile(ramp, (4, 1, 1)) for _ in range(4)]
    out = A.remix(examples, np.random.default_rng(7), length=100)
    starts = {float(out[i, s, 0, 0]) for i in range(4) for s in range(4)}
    assert len(starts) > 8
    assert np.all(np.diff(out, axis=-1) == 1.0)  # contiguous windows


def test_augment_batch_sums() -> None:
    batch = _noise((4, 4, 2, 4800), 2)
    stems, mix = A.augment_batch(batch, np.random.default_rng(8), remix_prob=1.0)
    assert stems.shape == batch.shape and mix.shape == (4, 2, 4800)
    np.testing.assert_array_equal(mix, stems.astype(np.float64).sum(axis=1).astype(np.float32))


def test_per_example_remix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(A, "augment", lambda x, rng, cfg, mp3_prob=0.0: (x, None))
    # stem s of song b is the constant 10 * b + s + 1
    batch = np.zeros((4, 4, 2, 100), np.float32) + (
        10 * np.arange(4)[:, None] + np.arange(4)[None, :] + 1
    )[:, :, None, None].astype(np.float32)
    for seed in range(10):
        stems, mix = A.augment_batch(batch, np.random.default_rng(seed), remix_prob=[0, 1, 0, 1])
        np.testing.assert_array_equal(stems[[0, 2]], batch[[0, 2]])  # never remixed
        for row in stems[[1, 3]]:  # always remixed: four stems of four songs, in their places
            songs = [(row[s, 0, 0] - s - 1) / 10 for s in range(4)]
            assert len(set(songs)) == 4 and all(v in range(4) for v in songs)
        np.testing.assert_allclose(mix, stems.sum(axis=1))
    changed = [  # a remixed example has stems of four songs: at least three are new
        not np.array_equal(A.augment_batch(batch, rng, remix_prob=[0.5] * 4)[0][0], batch[0])
        for rng in map(np.random.default_rng, range(200))
    ]
    assert 0.4 < np.mean(changed) < 0.6  # about half of them
    with pytest.raises(StemtokError, match="3 remix probabilities for 4"):
        A.augment_batch(batch, np.random.default_rng(0), remix_prob=[1, 1, 1])


def test_bad_input() -> None:
    with pytest.raises(StemtokError):
        A.augment(np.zeros((3, 2, 10), np.float32), np.random.default_rng(0))
    with pytest.raises(StemtokError):
        A.augment({"voice": np.zeros((1, 10), np.float32)}, np.random.default_rng(0))
    with pytest.raises(StemtokError):
        A.remix([], np.random.default_rng(0))
