"""engine.dsp: shapes from the paper, agreement with torch and librosa, exact iSTFT, scores; and
its torch twins (engine.models.codec_dsp) against it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import dsp

EVAL = {"pad_mode": "constant", "last_frame": True}  # the evaluation's STFT convention


def _noise(shape: tuple[int, ...], seed: int = 0, scale: float = 0.1) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def test_log_mel_shapes_match_the_paper() -> None:
    m = dsp.log_mel(_noise((3, 192000)))
    assert m.shape == (3, 120, 200) and m.dtype == np.float32
    assert np.isfinite(m).all()
    assert dsp.log_mel(np.zeros(192000, np.float32)).min() == pytest.approx(np.log(1e-6))


def test_log_mel_floor_and_power_are_parameters() -> None:
    x = _noise((48000,), seed=3)
    mag = dsp.log_mel(x, power=1, floor=1e-5, pad_mode="constant", last_frame=True)
    assert mag.shape == (120, 51)
    assert dsp.log_mel(np.zeros(48000, np.float32), power=1, floor=1e-5).max() == pytest.approx(
        np.log(1e-5)
    )
    spec = np.abs(dsp.stft(x, pad_mode="constant", last_frame=True))
    hand = np.log(dsp.mel_filterbank().astype(np.float64) @ spec + 1e-5)
    np.testing.assert_allclose(mag, hand, atol=1e-5)


def test_stft_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    x = _noise((48000,), seed=1)
    ours = dsp.stft(x)
    ref = torch.stft(
        torch.from_numpy(x),
        n_fft=2048,
        hop_length=960,
        window=torch.hann_window(2048),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).numpy()
    assert ours.shape[-1] == 50 and ref.shape[-1] == 51  # the model drops the last frame
    np.testing.assert_allclose(ours, ref[:, :50], atol=2e-4, rtol=1e-4)


def test_istft_inverts_stft() -> None:
    x = _noise((2, 48000), seed=2)
    y = dsp.istft(dsp.stft(x), 48000)
    # the last (n_fft/2) samples lack a frame centred after them; everything else is exact
    np.testing.assert_allclose(y[:, : 48000 - 1024], x[:, : 48000 - 1024], atol=1e-5)


def test_evaluation_stft_round_trip_and_librosa_agreement() -> None:
    x = _noise((2, 10001), scale=1.0)
    for n_fft, hop in ((2048, 512), (1024, 256), (512, 128)):
        spec = dsp.stft(x, n_fft, hop, pad_mode="constant", last_frame=True)
        assert spec.shape == (2, n_fft // 2 + 1, 10001 // hop + 1)
        np.testing.assert_allclose(dsp.istft(spec, x.shape[1], n_fft, hop), x, atol=2e-6)
    librosa = pytest.importorskip("librosa")
    theirs = librosa.stft(x, n_fft=2048, hop_length=960, center=True, pad_mode="constant")
    np.testing.assert_allclose(dsp.stft(x, 2048, 960, **EVAL), theirs, atol=1e-3)  # type: ignore[arg-type]
    fb = librosa.filters.mel(sr=48000, n_fft=2048, n_mels=120)
    np.testing.assert_allclose(dsp.mel_filterbank(120, 2048, 48000), fb, atol=1e-7)


def test_short_window_is_centred_in_the_frame_as_librosa_does() -> None:
    x = _noise((9601,), scale=1.0)
    spec = dsp.stft(x, 4096, 480, pad_mode="reflect", last_frame=True, win_length=960)
    assert spec.shape == (2049, 9601 // 480 + 1)
    librosa = pytest.importorskip("librosa")
    theirs = librosa.stft(x, n_fft=4096, hop_length=480, win_length=960, pad_mode="reflect")
    np.testing.assert_allclose(spec, theirs, atol=1e-3)
    with pytest.raises(ValueError, match="win_length"):
        dsp.stft(x, 1024, 256, win_length=2048)


def test_istft_pads_what_no_frame_covers_and_refuses_sparse_hops() -> None:
    spec = dsp.stft(_noise((4800,)), 2048, 960)  # 5 frames cover 4800 - 64 samples
    y = dsp.istft(spec, 6000, 2048, 960)
    assert y.shape == (6000,) and not y[-100:].any()
    with pytest.raises(ValueError, match="hop"):
        dsp.istft(spec, 4800, 2048, 1100)


def test_mel_filterbank_is_slaney_normalised() -> None:
    fb = dsp.mel_filterbank()
    assert fb.shape == (120, 1025) and fb.dtype == np.float32 and not fb.flags.writeable
    assert (fb >= 0).all() and (fb.sum(axis=1) > 0).all()  # no empty band at n_fft 2048
    centres = np.argmax(fb, axis=1)
    assert (np.diff(centres) >= 0).all()
    # a 1 kHz tone lands in the band whose centre is nearest 1 kHz
    t = np.arange(48000) / 48000
    m = dsp.log_mel(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    band = int(np.argmax(m[:, 25]))
    assert abs(centres[band] * 48000 / 2048 - 1000) < 60


def test_scores_take_reference_then_estimate() -> None:
    ref = _noise((2, 8000), scale=1.0).astype(np.float64)
    noise = _noise((2, 8000), seed=1, scale=1.0).astype(np.float64)
    noise -= (np.sum(noise * ref, -1, keepdims=True) / np.sum(ref * ref, -1, keepdims=True)) * ref
    noise *= (
        0.1
        * np.linalg.norm(ref, axis=-1, keepdims=True)
        / np.linalg.norm(noise, axis=-1, keepdims=True)
    )
    # est = 3 * ref + orthogonal noise at -20 dB relative to ref: SI-SDR = 20 log10(3 / 0.1)
    est = 3.0 * ref + noise
    assert dsp.si_sdr(ref, est) == pytest.approx(20 * math.log10(30.0), abs=1e-6)
    assert dsp.si_sdr(ref, 0.5 * ref) > 90.0  # scale does not matter
    assert dsp.si_sdr(ref + 5.0, ref + 1.0, zero_mean=True) > 90.0  # nor, with zero_mean, offset
    assert dsp.sdr(ref, ref + noise) == pytest.approx(20.0, abs=1e-6)
    assert dsp.sdr(ref, 3.0 * ref) == pytest.approx(20 * math.log10(1 / 2), abs=1e-6)  # order
    assert dsp.sdr(3.0 * ref, ref) == pytest.approx(20 * math.log10(3 / 2), abs=1e-6)
    assert dsp.rms_db(np.zeros(3)) == -math.inf and dsp.rms_db(np.ones(4)) == 0.0


def test_torch_twins_match_numpy() -> None:
    torch = pytest.importorskip("torch")
    from engine.models import codec_dsp

    x = _noise((2, 4 * 960))
    spec = dsp.stft(x, 2048, 480)
    ts = codec_dsp.stft(torch.from_numpy(x), 2048, 480).numpy()
    assert np.abs(spec - ts).max() < 1e-3
    back = codec_dsp.istft(torch.from_numpy(spec), x.shape[1], 2048, 480).numpy()
    assert np.abs(back - dsp.istft(spec, x.shape[1], 2048, 480)).max() < 1e-5
    assert np.abs(back - x).max() < 1e-4
    mel = codec_dsp.log_mel(torch.from_numpy(x)).numpy()
    assert np.abs(mel - dsp.log_mel(x)).max() < 1e-3
    logmag = codec_dsp.log_magnitude(torch.from_numpy(spec)).numpy()
    np.testing.assert_allclose(logmag, dsp.log_magnitude(spec), atol=1e-5)
    ref, est = torch.randn(3, 4000), torch.randn(3, 4000)
    est = ref + 0.1 * est * ref.std()
    for zero_mean in (False, True):
        ours = codec_dsp.si_sdr(ref + 0.3, est, zero_mean=zero_mean).numpy()
        theirs = [
            dsp.si_sdr(r + 0.3, e, zero_mean=zero_mean)
            for r, e in zip(ref.numpy(), est.numpy(), strict=True)
        ]
        np.testing.assert_allclose(ours, theirs, atol=1e-3)
    assert abs(float(codec_dsp.si_sdr(ref, est).mean()) - 20.0) < 1.0
    assert float(codec_dsp.si_sdr(ref, 2.5 * ref).min()) > 60
