"""Metrics agree with hand computations and with the reference implementations they stand for."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from engine import dsp
from engine.audio import read_audio, write_audio
from engine.evaluation import metrics as M
from engine.evaluation import perceptual as P


def _noise(shape: tuple[int, ...], seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal(shape)


def _museval_metrics() -> ModuleType:
    """museval's BSS-Eval v4 module, loaded from its file: ``import museval`` itself pulls in
    musdb/stempeg, which refuse to import without ffmpeg."""
    spec = importlib.util.find_spec("museval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("museval is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "metrics.py"
    mspec = importlib.util.spec_from_file_location("_museval_metrics", path)
    assert mspec and mspec.loader
    module = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(module)
    return module


# --- SI-SDR / SDR against the reference implementations ----------------------------------------


def test_si_sdr_matches_fast_bss_eval() -> None:
    fbe = pytest.importorskip("fast_bss_eval.numpy")
    ref = _noise((2, 20000))
    est = 0.7 * ref + _noise((2, 20000), seed=3, scale=0.2)
    assert dsp.si_sdr(ref, est) == pytest.approx(float(np.mean(fbe.si_sdr(ref, est))), abs=1e-6)


def test_sdr_v4_matches_museval_including_silent_frames() -> None:
    museval = _museval_metrics()
    rate = 4000
    refs = _noise((4, 2, int(4.5 * rate))) * np.array([0.1, 0.2, 0.05, 0.3])[:, None, None]
    refs[0, :, :rate] = 0.0  # vocals digitally silent for the first second
    ests = refs + _noise(refs.shape, seed=1, scale=0.05) + 0.3 * np.roll(refs, 1, axis=0)
    ests[2, :, 2 * rate : 3 * rate] = 0.0  # one estimate silent in the third second
    theirs = museval.bss_eval(
        np.moveaxis(refs, 1, 2), np.moveaxis(ests, 1, 2), window=rate, hop=rate, filters_len=128
    )[0]  # shorter distortion filters than museval's 512 only for speed: SDR does not use them
    ours = M.sdr_v4_frames(refs, ests, window=rate)
    assert ours.shape == theirs.shape == (4, 4)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    assert np.isnan(ours[:, 0]).all() and np.isnan(ours[:, 2]).all()
    np.testing.assert_allclose(ours, theirs, atol=1e-9, equal_nan=True)
    medians = M.sdr_v4(refs, ests, window=rate)
    assert medians == pytest.approx(list(np.nanmedian(theirs, axis=1)), abs=1e-6)


def test_sdr_v4_frame_is_the_plain_frame_sdr() -> None:
    refs = _noise((1, 1, 3000))
    ests = refs + 0.1 * _noise(refs.shape, seed=2)
    frames = M.sdr_v4_frames(refs, ests, window=1000)
    for t in range(3):
        s, e = refs[0, 0, t * 1000 : (t + 1) * 1000], ests[0, 0, t * 1000 : (t + 1) * 1000]
        assert frames[0, t] == pytest.approx(10 * math.log10(np.sum(s**2) / np.sum((e - s) ** 2)))


# --- silence ------------------------------------------------------------------------------------


def test_silence_never_gives_nan_or_inf() -> None:
    ref = _noise((2, 4000))
    zero = np.zeros_like(ref)
    assert M.is_silent(zero) and M.is_silent(1e-4 * ref) and not M.is_silent(0.1 * ref)
    assert dsp.rms_db(zero) == -math.inf
    for value in (
        dsp.si_sdr(ref, zero),
        dsp.sdr(ref, zero),
        dsp.si_sdr(zero, ref),
        dsp.si_sdr(ref, ref),
        M.mrstft_distance(ref, zero),
        M.logmel_l1(ref, zero, 48000),
    ):
        assert math.isfinite(value)
    assert dsp.sdr(ref, zero) == pytest.approx(0.0)  # the score of outputting silence
    assert M.sdr_v4(ref[None], zero[None], window=1000) == [None]  # museval: no scorable frame


# --- spectral -------------------------------------------------------------------------------------


def test_spectral_distances_are_zero_for_identity_and_tolerate_shifts() -> None:
    t = np.arange(48000) / 48000
    x = np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * _noise((48000,))
    shifted = np.roll(x, 24)  # 0.5 ms late
    noisy = x + 0.3 * _noise((48000,), seed=5)
    assert M.mrstft_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert M.logmel_l1(x, x, 48000) == pytest.approx(0.0, abs=1e-9)
    assert M.mrstft_distance(x, shifted) < M.mrstft_distance(x, noisy)
    assert M.logmel_l1(x, shifted, 48000) < M.logmel_l1(x, noisy, 48000)
    assert dsp.si_sdr(x, shifted) < dsp.si_sdr(x, noisy)  # the sample-level metric is not tolerant


# --- perceptual: agreement with the packages' own CLI / API --------------------------------------


def _sung(seconds: float, rate: int, seed: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    f0 = 330 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    return np.asarray(0.25 * x + 0.01 * _noise(t.shape, seed), dtype=np.float32)


def test_visqol_within_0_05_of_the_package_cli(tmp_path: Path) -> None:
    pytest.importorskip("visqol")
    ref = np.stack([_sung(3.0, 48000, 0), _sung(3.0, 48000, 1)])
    deg = ref + 0.05 * _noise(ref.shape, seed=9).astype(np.float32)
    write_audio(tmp_path / "ref.wav", ref, 48000, bit_depth=16)
    write_audio(tmp_path / "deg.wav", np.clip(deg, -1, 1), 48000, bit_depth=16)
    cmd = [
        sys.executable,
        "-m",
        "visqol",
        "-r",
        str(tmp_path / "ref.wav"),
        "-d",
        str(tmp_path / "deg.wav"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ))
    match = re.search(r"MOS-LQO:\s+([0-9.]+)", out.stdout)
    assert match, out.stdout + out.stderr
    ours = P.visqol(read_audio(tmp_path / "ref.wav")[0], read_audio(tmp_path / "deg.wav")[0])
    assert abs(ours - float(match.group(1))) < 0.05
    assert 1.0 <= ours <= 5.0
    assert P.visqol(ref, np.zeros_like(ref)) == 1.0


def test_dnsmos_equals_speechmos_on_the_same_file(tmp_path: Path) -> None:
    if P.dnsmos_model_path() is None:
        pytest.skip("speechmos is not installed")
    pytest.importorskip("librosa")  # speechmos' own code imports librosa (and requests)
    pytest.importorskip("requests")
    from speechmos import dnsmos as speechmos_dnsmos

    for seconds in (3.0, 11.5):
        path = tmp_path / f"v{seconds}.wav"
        write_audio(path, _sung(seconds, 16000, 2)[None], 16000, bit_depth=16)
        theirs = speechmos_dnsmos.run(str(path), 16000)
        ours = P.dnsmos(read_audio(path)[0], 16000)
        assert ours.sig == pytest.approx(float(theirs["sig_mos"]), abs=1e-5)
        assert ours.bak == pytest.approx(float(theirs["bak_mos"]), abs=1e-5)
        assert ours.ovrl == pytest.approx(float(theirs["ovrl_mos"]), abs=1e-5)


def test_dnsmos_windows_follow_speechmos_rules() -> None:
    # a 1-s clip is doubled until it covers 9.01 s (16 s), then cut in 9.01-s windows, 1-s hop
    assert [len(w) for w in P.dnsmos_windows(np.ones(16000))] == [144160] * 7
    assert len(P.dnsmos_windows(np.ones(16000 * 12))) == 3  # 1-s hop
    with pytest.raises(ValueError, match="non-empty"):
        P.dnsmos_windows(np.zeros(0))
