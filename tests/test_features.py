"""Log-mel features and STFT: shapes from the paper, agreement with torch, exact iSTFT."""

from __future__ import annotations

import numpy as np
import pytest

from engine import features


def test_shapes_match_the_paper() -> None:
    x = np.random.default_rng(0).normal(0, 0.1, (3, 192000)).astype(np.float32)
    m = features.log_mel(x)
    assert m.shape == (3, 120, 200) and m.dtype == np.float32
    assert np.isfinite(m).all()
    assert features.log_mel(np.zeros(192000, np.float32)).min() == pytest.approx(np.log(1e-6))


def test_stft_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).normal(0, 0.1, 48000).astype(np.float32)
    ours = features.stft(x)
    ref = torch.stft(
        torch.from_numpy(x),
        n_fft=2048,
        hop_length=960,
        window=torch.hann_window(2048),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).numpy()[:, : ours.shape[-1]]
    np.testing.assert_allclose(ours, ref, atol=2e-4, rtol=1e-4)


def test_istft_inverts_stft() -> None:
    x = np.random.default_rng(2).normal(0, 0.1, (2, 48000)).astype(np.float32)
    y = features.istft(features.stft(x), 48000)
    # the last (n_fft/2) samples lack a frame centred after them; everything else is exact
    np.testing.assert_allclose(y[:, : 48000 - 1024], x[:, : 48000 - 1024], atol=1e-5)


def test_mel_filterbank_is_slaney_normalised() -> None:
    fb = features.mel_filterbank()
    assert fb.shape == (120, 1025)
    assert (fb >= 0).all() and (fb.sum(axis=1) > 0).all()  # no empty band at n_fft 2048
    centres = np.argmax(fb, axis=1)
    assert (np.diff(centres) >= 0).all()
    # a 1 kHz tone lands in the band whose centre is nearest 1 kHz
    t = np.arange(48000) / 48000
    m = features.log_mel(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    band = int(np.argmax(m[:, 25]))
    assert abs(centres[band] * 48000 / 2048 - 1000) < 60
