"""Vocal activity detection: engine.data.vad (segment rules, energy detector, silero via ONNX)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.signal import lfilter

from engine.data import vad
from engine.errors import StemtokError

RATE = 48_000
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480))


def _resonate(x: np.ndarray, freq: float, bw: float) -> np.ndarray:
    r = np.exp(-np.pi * bw / RATE)
    return np.asarray(lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * freq / RATE), r * r], x))


def _voice(f0: np.ndarray, vowel_idx: np.ndarray) -> np.ndarray:
    """Harmonic source at ``f0`` [N] shaped by the formants of the vowel at each sample."""
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    src = np.zeros_like(f0)
    for k in range(1, 30):
        src += np.sin(k * phase) / k * (k * f0 < RATE / 2 - 500)
    out = np.zeros_like(f0)
    for v, formants in enumerate(VOWELS):
        sel = vowel_idx == v
        if sel.any():
            shaped = np.zeros_like(f0)
            for i, (f, g) in enumerate(zip(formants, (1.0, 0.6, 0.3), strict=True)):
                shaped += g * _resonate(src, f, 80 + 40 * i)
            out[sel] = shaped[sel]
    return out


def _gate(seconds: float, on: float = 3.0, off: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return ((t % (on + off)) < on).astype(np.float64)


def singing(seconds: float = 10.0, base: float = 220.0, seed: int = 0) -> np.ndarray:
    """Sung vowels: a note every 0.5 s, 5.5-Hz vibrato, breath noise, 3 s on / 2 s off."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    note = (t / 0.5).astype(int)
    f0 = base * 2 ** (rng.choice([0, 2, 4, 5, 7, 9], note.max() + 1)[note] / 12)
    f0 = f0 * 2 ** (0.4 / 12 * np.sin(2 * np.pi * 5.5 * t))
    y = _voice(f0, rng.integers(0, 4, note.max() + 1)[note])
    y = y / np.abs(y).max() + 0.02 * rng.standard_normal(t.size)
    env = lfilter([0.002], [1, -0.998], _gate(seconds))
    return np.asarray(0.3 * y * env, dtype=np.float32)


def speechlike(seconds: float = 10.0, seed: int = 1) -> np.ndarray:
    """Syllables at 5/s: falling-pitch vowels with fricative onsets, 3 s on / 2 s off."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    syl = (t / 0.2).astype(int)
    phase_in_syl = (t % 0.2) / 0.2
    f0 = 120 * (1 - 0.15 * (t % 5.0) / 3.0) * (1 + 0.08 * np.sin(2 * np.pi * 3 * t))
    y = _voice(f0, rng.integers(0, 4, syl.max() + 1)[syl])
    y = y / np.abs(y).max() * np.sin(np.pi * np.clip((phase_in_syl - 0.25) / 0.75, 0, 1)) ** 2
    fric = _resonate(rng.standard_normal(t.size), 5000, 2000) * (phase_in_syl < 0.2)
    y = y + 0.3 * fric / np.abs(fric).max() * (rng.random(syl.max() + 1) < 0.5)[syl]
    return np.asarray(0.3 * y * _gate(seconds) / np.abs(y).max(), dtype=np.float32)


def drums(seconds: float = 10.0, seed: int = 2) -> np.ndarray:
    """Kick (pitched sweep), snare (noise + 190 Hz body) and hats at 120 BPM."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * RATE))
    tk = np.arange(int(0.4 * RATE)) / RATE
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-tk * 30)) * tk) * np.exp(-tk * 8)
    snare = (0.6 * rng.standard_normal(tk.size) + np.sin(2 * np.pi * 190 * tk)) * np.exp(-tk * 18)
    hat = 0.4 * rng.standard_normal(RATE // 12) * np.exp(-np.arange(RATE // 12) / RATE * 60)
    for b in range(int(seconds * 2)):
        for start, sig in (
            (b * RATE // 2, kick if b % 2 == 0 else snare),
            (b * RATE // 2, hat),
            (b * RATE // 2 + RATE // 4, hat),
        ):
            m = min(sig.size, y.size - start)
            y[start : start + m] += sig[:m]
    return np.asarray(0.5 * y / np.abs(y).max(), dtype=np.float32)


def noise(seconds: float = 10.0) -> np.ndarray:
    return np.asarray(
        0.1 * np.random.default_rng(3).standard_normal(int(seconds * RATE)), dtype=np.float32
    )


ON_SEGMENTS = [(0.0, 3.0), (5.0, 8.0)]  # the 3-s-on parts of a 10-s gated signal


def _close_to(
    found: list[tuple[float, float]], expected: list[tuple[float, float]], tol: float
) -> bool:
    return len(found) == len(expected) and all(
        abs(a - x) <= tol and abs(b - y) <= tol
        for (a, b), (x, y) in zip(found, expected, strict=True)
    )


# ---------------------------------------------------------------- segment rules


def test_mask_to_segments() -> None:
    mask = np.array([0, 1, 1, 0, 0, 1, 1, 1, 1], bool)
    assert vad.mask_to_segments(mask, 0.5) == [(0.5, 1.5), (2.5, 4.5)]
    assert vad.mask_to_segments(np.zeros(5, bool), 0.5) == []
    assert vad.mask_to_segments(np.ones(3, bool), 1.0) == [(0.0, 3.0)]


def test_merge_segments() -> None:
    segs = [(5.0, 6.0), (0.0, 1.0), (1.5, 2.0), (2.6, 3.0), (5.5, 7.0)]
    assert vad.merge_segments(segs, 0.5) == [(0.0, 2.0), (2.6, 3.0), (5.0, 7.0)]
    assert vad.merge_segments(segs, 0.6) == [(0.0, 3.0), (5.0, 7.0)]
    assert vad.merge_segments([], 0.5) == []


def test_finalize_merges_before_dropping_short() -> None:
    # two 1.5-s phrases 0.3 s apart form one 3.3-s segment; a lone 1.9-s one is dropped
    segs = [(0.0, 1.5), (1.8, 3.3), (10.0, 11.9), (20.0, 22.0)]
    assert vad.finalize(segs) == [(0.0, 3.3), (20.0, 22.0)]
    assert all(b - a >= 2.0 for a, b in vad.finalize(segs))


def test_vad_ratio() -> None:
    assert vad.vad_ratio([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)], 10.0) == pytest.approx(0.4)
    assert vad.vad_ratio([], 10.0) == 0.0
    assert vad.vad_ratio([(0.0, 5.0)], 0.0) == 0.0


def test_hysteresis_on_handmade_probabilities() -> None:
    hop = vad.FRAME / vad.VAD_RATE
    p = np.zeros(200)
    p[10:60] = 0.9
    p[30:32] = 0.4  # dips above neg_threshold do not split
    p[60:62] = 0.2  # two frames (64 ms) of silence: shorter than min_silence -> one segment
    p[62:100] = 0.8
    p[150:153] = 0.9  # 96 ms blip: dropped
    segs = vad.hysteresis_segments(p, hop)
    assert len(segs) == 1
    a, b = segs[0]
    assert a == pytest.approx(10 * hop - 0.03) and b == pytest.approx(100 * hop + 0.03)


# ---------------------------------------------------------------- energy detector (always)


def test_energy_finds_singing() -> None:
    segs = vad.vocal_segments_energy(singing(), RATE)
    assert _close_to(segs, ON_SEGMENTS, tol=0.3), segs
    low = vad.vocal_segments_energy(singing(base=110.0, seed=5), RATE)
    assert _close_to(low, ON_SEGMENTS, tol=0.3), low


def test_energy_finds_speechlike() -> None:
    assert _close_to(vad.vocal_segments_energy(speechlike(), RATE), ON_SEGMENTS, tol=0.35)


@pytest.mark.parametrize("signal", [drums, noise], ids=["drums", "noise"])
def test_energy_ignores_drums_and_noise(signal: Callable[[], np.ndarray]) -> None:
    assert vad.vocal_segments_energy(signal(), RATE) == []


def test_stereo_input_and_silence() -> None:
    st = np.stack([singing(), singing()])
    assert _close_to(vad.vocal_segments_energy(st, RATE), ON_SEGMENTS, tol=0.3)
    assert vad.vocal_segments_energy(np.zeros(RATE * 3, np.float32), RATE) == []


def test_detect_records_method(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vad, "silero_model_path", lambda: None)
    act = vad.detect(singing(), RATE)
    assert act.method == "energy"
    assert act.duration == pytest.approx(10.0)
    assert act.ratio == pytest.approx(0.6, abs=0.06)
    entry = act.as_dict()
    assert entry["method"] == "energy" and len(entry["segments"]) == 2
    with pytest.raises(StemtokError, match="silero"):
        vad.detect(singing(), RATE, method="silero")
    with pytest.raises(StemtokError):
        vad.detect(singing(), RATE, method="bogus")  # type: ignore[arg-type]


# ---------------------------------------------------------------- silero (when installed)

needs_silero = pytest.mark.skipif(
    not vad.silero_available(), reason="silero-vad (pip install --no-deps silero-vad) not installed"
)


@needs_silero
def test_silero_finds_speechlike_and_ignores_noise() -> None:
    assert _close_to(vad.vocal_segments_silero(speechlike(), RATE), ON_SEGMENTS, tol=0.35)
    assert vad.vocal_segments_silero(noise(), RATE) == []
    assert vad.vocal_segments_silero(drums(), RATE) == []


@needs_silero
def test_silero_misses_sung_vowels_and_auto_covers_them() -> None:
    x = singing()
    silero = vad.vocal_segments_silero(x, RATE)
    act = vad.detect(x, RATE)
    assert act.method == "silero+energy"
    assert vad.vad_ratio(silero, 10.0) < 0.3  # measured: 0.0 (speech model, sustained vowels)
    assert _close_to(list(act.segments), ON_SEGMENTS, tol=0.3)


@needs_silero
def test_silero_sequence_and_streaming_models_agree() -> None:
    import onnxruntime as ort

    path = vad.silero_model_path()
    assert path is not None
    stream = path.parent / "silero_vad.onnx"
    if not path.name.endswith("_sequence.onnx") or not stream.is_file():
        pytest.skip("this silero-vad wheel ships only one model")
    x16 = vad._mono16(speechlike(4.0), RATE)
    frames = vad._frames_with_context(x16)
    a = vad._run_sequence(vad._session(str(path)), frames, 37)  # odd block size: state carried
    b = vad._run_stream(
        ort.InferenceSession(str(stream), providers=["CPUExecutionProvider"]), frames
    )
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.max() > 0.9 and a.min() < 0.1
