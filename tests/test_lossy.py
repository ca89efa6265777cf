"""MP3 round trips as a training augmentation: the mixture is coded, the stems still sum to it."""

from __future__ import annotations

import numpy as np
import pytest

from engine.data import augment

RATE = 48_000


def _tone(f0: float, secs: float = 1.5, harmonics: int = 8) -> np.ndarray:
    t = np.arange(round(secs * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, harmonics + 1))
    return np.asarray(0.2 * np.stack([x, np.roll(x, 7)]), np.float32)


def _stems() -> np.ndarray:
    rng = np.random.default_rng(0)
    hats = np.asarray(0.05 * rng.standard_normal((2, round(1.5 * RATE))), np.float32)
    return np.stack([_tone(220.0), hats, _tone(55.0, harmonics=3), _tone(330.0)])


@pytest.mark.parametrize("kbps", [128, 320])
def test_mp3_roundtrip_is_aligned_and_close(kbps: int) -> None:
    x = _tone(220.0)
    y = augment.mp3_roundtrip(x, RATE, kbps)
    assert y.shape == x.shape and not np.array_equal(x, y)
    core = slice(RATE // 10, -RATE // 10)
    snr = 10 * np.log10(np.sum(x[:, core] ** 2) / np.sum((y - x)[:, core] ** 2))
    assert snr > 15.0
    lag = [np.sum(x[0, core] * np.roll(y[0], s)[core]) for s in (-1, 0, 1)]
    assert int(np.argmax(lag)) == 1  # best aligned at lag 0


def test_lossy_changes_audio_and_keeps_the_sum_exact() -> None:
    stems = _stems()
    out, mix = augment.augment(stems, np.random.default_rng(3), mp3_prob=1.0)
    assert out.shape == stems.shape and not np.allclose(out, stems, atol=1e-4)
    assert np.array_equal(mix, out.astype(np.float64).sum(axis=0).astype(np.float32))
    plain, plain_mix = augment.augment(stems, np.random.default_rng(3))  # same draws, no MP3
    assert not np.allclose(out, plain, atol=1e-4) and not np.allclose(mix, plain_mix, atol=1e-4)


def test_lossy_sum_equals_coded_mixture() -> None:
    stems = _stems().astype(np.float64)
    out = augment.lossy(stems, np.random.default_rng(1), RATE)
    kbps = int(np.random.default_rng(1).choice(augment.MP3_KBPS))
    coded = augment.mp3_roundtrip(stems.sum(axis=0), RATE, kbps)
    assert np.max(np.abs(out.astype(np.float64).sum(axis=0) - coded)) < 1e-5


def test_off_by_default() -> None:
    stems = _stems()
    a, ma = augment.augment(stems, np.random.default_rng(9))
    b, mb = augment.augment(stems, np.random.default_rng(9), mp3_prob=0.0)
    assert a.tobytes() == b.tobytes() and ma.tobytes() == mb.tobytes()


def test_error_goes_to_the_stem_that_owns_the_band() -> None:
    stems = _stems().astype(np.float64)
    n = stems.shape[-1]
    rng = np.random.default_rng(2)
    error = 1e-3 * rng.standard_normal((2, n))
    shares = augment.split_error(stems, error)
    assert np.allclose(shares.sum(axis=0), error, atol=1e-12)
    spec = np.abs(np.fft.rfft(shares, axis=-1)) ** 2
    f = np.fft.rfftfreq(n, 1 / RATE)
    high = f > 8000
    # above 8 kHz only the noisy "drums" stem has energy, so it takes that error
    assert spec[1][..., high].sum() > 0.9 * spec[:, :, high].sum()
