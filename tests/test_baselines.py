"""Baselines: shapes, sums, ordering on a synthetic song, and the systems/protocol messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.constants import STEMS
from engine.dsp import si_sdr
from engine.errors import StemtokError
from engine.evaluation import systems, transforms
from engine.evaluation.baselines import DspSeparator, MixtureBaseline, OracleMask, stft_size
from engine.evaluation.synthetic import ToySongConfig, make_toy_song

RATE = 22_050


@pytest.fixture(scope="module")
def song() -> dict[str, np.ndarray]:
    return make_toy_song(ToySongConfig(seconds=4.0, rate=RATE), seed=3)


def _mix(stems: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(sum(stems.values()), dtype=np.float32)


def _scores(stems: dict[str, np.ndarray], est: dict[str, np.ndarray]) -> dict[str, float]:
    return {s: si_sdr(stems[s], est[s]) for s in STEMS}


def test_stft_size_is_about_93_ms() -> None:
    assert stft_size(44_100) == (4096, 1024) and stft_size(48_000) == (4096, 1024)
    assert stft_size(16_000) == (1024, 256)


@pytest.mark.parametrize("separator", [OracleMask(), DspSeparator()])
def test_mask_baselines_sum_to_the_mixture(song: dict[str, np.ndarray], separator: object) -> None:
    mix = _mix(song)
    est = separator(mix, RATE, song)  # type: ignore[operator]
    assert set(est) == set(STEMS)
    assert all(a.shape == mix.shape and a.dtype == np.float32 for a in est.values())
    np.testing.assert_allclose(sum(est.values()), mix, atol=1e-5)


def test_oracle_beats_dsp_beats_mixture(song: dict[str, np.ndarray]) -> None:
    mix = _mix(song)
    floor = _scores(song, MixtureBaseline()(mix, RATE))
    oracle = _scores(song, OracleMask()(mix, RATE, song))
    dsp = _scores(song, DspSeparator()(mix, RATE))
    for s in STEMS:
        assert oracle[s] > floor[s] + 5.0, (s, oracle, floor)
        assert oracle[s] > dsp[s], (s, oracle, dsp)
    assert np.mean(list(dsp.values())) > np.mean(list(floor.values())) + 3.0
    for s in ("vocals", "bass"):  # the stems DSP has a real cue for
        assert dsp[s] > floor[s] + 3.0, (s, dsp, floor)


def test_mono_input_works(song: dict[str, np.ndarray]) -> None:
    mono = {s: a.mean(axis=0, keepdims=True) for s, a in song.items()}
    mix = _mix(mono)
    for sep in (OracleMask(), DspSeparator()):
        est = sep(mix, RATE, mono)
        assert all(a.shape == (1, mix.shape[1]) for a in est.values())
        np.testing.assert_allclose(sum(est.values()), mix, atol=1e-5)


def test_mixture_baseline_copies_the_mixture(song: dict[str, np.ndarray]) -> None:
    mix = _mix(song)
    est = MixtureBaseline()(mix, RATE)
    assert all(np.array_equal(a, mix) for a in est.values())
    est["vocals"][:] = 0  # copies, not views
    assert np.any(mix)


def test_oracle_needs_references(song: dict[str, np.ndarray]) -> None:
    with pytest.raises(StemtokError, match="needs the true stems"):
        OracleMask()(_mix(song), RATE, None)


def test_system_names_and_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specs = systems.resolve(["mixture", "oracle", "dsp"], [f"mine={tmp_path}"])
    assert [s.name for s in specs] == ["mixture", "oracle", "dsp", "mine"]
    assert [s.type for s in specs] == ["F", "O", "B", "E"]
    assert isinstance(specs[2].separator(), DspSeparator)
    monkeypatch.setenv("STEMTOK_MODEL", str(tmp_path / "no-model"))
    with pytest.raises(StemtokError, match="no-model: not a model folder"):
        systems.resolve(["default"], [])
    assert [s.type for s in systems.resolve(["teacher"], [])] == ["D"]  # the shipped teacher
    with pytest.raises(StemtokError, match="unknown system 'demucs'"):
        systems.resolve(["demucs"], [])
    with pytest.raises(StemtokError, match="system named twice: dsp"):
        systems.resolve(["dsp", "dsp"], [])
    with pytest.raises(StemtokError, match="is not a folder"):
        systems.resolve([], [str(tmp_path / "nope")])
    with pytest.raises(StemtokError, match="no systems to score"):
        systems.resolve([], [])


def test_protocol_transforms(tmp_path: Path) -> None:
    assert transforms.resolve(False).name == "identity"
    audio = np.ones((2, 10), np.float32)
    out, rate = transforms.Identity()(audio, RATE)
    assert out is audio and rate == RATE
    with pytest.raises(StemtokError, match="holds no codec"):
        transforms.resolve(True, tmp_path)


def test_codec_round_trip_keeps_rate_length_and_is_deterministic(
    song: dict[str, np.ndarray],
) -> None:
    pytest.importorskip("torch")
    rt = transforms.resolve(True)  # the shipped codec-small
    assert isinstance(rt, transforms.CodecRoundTrip) and rt.name.startswith("codec:codec-small:")
    x = song["bass"][:, : int(1.3 * RATE)]  # any rate, a length that is no frame multiple
    y, rate = rt(x, RATE)
    assert rate == RATE and y.shape == x.shape and y.dtype == x.dtype
    assert np.array_equal(y, rt(x, RATE)[0])
    # the generative decoder does not keep the phase, but it keeps the spectrum: the long-term
    # log spectrum of the round trip is closer to its input than to another stem's
    from scipy.signal import welch

    def spectrum(a: np.ndarray) -> np.ndarray:
        return np.log10(welch(a.mean(0), RATE, nperseg=1024)[1][1:200] + 1e-12)

    own = np.abs(spectrum(y) - spectrum(x)).mean()
    other = np.abs(spectrum(y) - spectrum(song["drums"][:, : x.shape[1]])).mean()
    assert own < 0.5 * other, (own, other)


def test_round_trip_chunks_cross_fade_to_the_whole() -> None:
    torch = pytest.importorskip("torch")
    from engine.models.codec_config import CodecConfig

    class Echo(torch.nn.Module):  # stands in for a codec: decode(encode(x)) == x
        cfg = CodecConfig.named("small")

        def encode(self, w: torch.Tensor) -> torch.Tensor:
            return w

        def decode(self, c: torch.Tensor) -> torch.Tensor:
            return c

    wave = np.random.default_rng(0).normal(size=3 * 48_000 + 123).astype(np.float32)
    out = transforms.round_trip(Echo(), wave, chunk_s=0.5)
    np.testing.assert_allclose(out, wave, atol=1e-6)


def test_conform_external_estimates() -> None:
    ref_shape = (2, 1000)
    mono = np.ones((1, 1005), np.float32)
    out, notes = systems.conform(mono, RATE, RATE, ref_shape, tolerance=10, where="x.wav")
    assert out.shape == ref_shape and len(notes) == 2
    out, notes = systems.conform(np.ones((2, 500)), RATE // 2, RATE, ref_shape, 10, "x.wav")
    assert out.shape == ref_shape and "resampled" in notes[0]
    with pytest.raises(StemtokError, match=r"x\.wav: 1200 samples but the reference has 1000"):
        systems.conform(np.ones((2, 1200)), RATE, RATE, ref_shape, 10, "x.wav")
    with pytest.raises(StemtokError, match="3 channels but the reference has 2"):
        systems.conform(np.ones((3, 1000)), RATE, RATE, ref_shape, 10, "x.wav")


def test_default_system_runs_the_exported_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_export import export_tiny

    monkeypatch.setenv("STEMTOK_MODEL", str(export_tiny(tmp_path)))
    (spec,) = systems.resolve(["default"], [])
    assert spec.type == "G"
    mix = np.random.default_rng(0).normal(0, 0.1, (2, 30_000)).astype(np.float32)
    stems = spec.separator()(mix, 44100)
    assert sorted(stems) == sorted(STEMS) and all(a.shape == mix.shape for a in stems.values())
    np.testing.assert_allclose(sum(stems.values()), mix, atol=1e-4)
