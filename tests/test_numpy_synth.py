"""The pure-numpy synthesizer: lengths, determinism, timing, pitch, levels and speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.data import numpy_synth as ns
from engine.data.song import Note, Part

RATE = 48_000


def _part(notes: list[Note], program: int = 0, *, drums: bool = False) -> Part:
    stem = "drums" if drums else ("bass" if 32 <= program < 40 else "other")
    return Part(stem=stem, name="test", program=program, notes=tuple(notes), is_drum=drums)


def _fundamental(audio: np.ndarray, rate: int = RATE) -> float:
    """Frequency of the strongest FFT peak, refined by parabolic interpolation (Hz)."""
    seg = audio * np.hanning(len(audio))
    spec = np.abs(np.fft.rfft(seg, 4 * len(seg)))
    i = int(np.argmax(spec[1:])) + 1
    a, b, c = np.log(spec[i - 1 : i + 2] + 1e-12)
    return float((i + 0.5 * (a - c) / (a - 2 * b + c)) * rate / (4 * len(seg)))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


@pytest.mark.parametrize("duration", [0.5, 1.2345, 3.0])
@pytest.mark.parametrize("drums", [False, True])
def test_length_dtype_and_shape(duration: float, drums: bool) -> None:
    notes = [Note(0.1, 0.3, 38 if drums else 60, 100), Note(2.9, 1.0, 42 if drums else 64, 90)]
    out = ns.render_part_numpy(_part(notes, drums=drums), duration, rate=RATE, seed=1)
    assert out.shape == (round(duration * RATE),)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("program", [0, 24, 33, 89])
def test_same_seed_same_bytes(program: int) -> None:
    part = _part([Note(0.0, 0.5, 57, 100), Note(0.5, 0.5, 60, 70)], program)
    a = ns.render_part_numpy(part, 1.5, seed=7)
    b = ns.render_part_numpy(part, 1.5, seed=7)
    assert a.tobytes() == b.tobytes()


def test_drums_same_seed_same_bytes_other_seed_differs() -> None:
    part = _part([Note(0.0, 0.1, k, 100) for k in (36, 38, 42, 49)], drums=True)
    a = ns.render_part_numpy(part, 1.0, seed=3)
    assert a.tobytes() == ns.render_part_numpy(part, 1.0, seed=3).tobytes()
    assert a.tobytes() != ns.render_part_numpy(part, 1.0, seed=4).tobytes()


@pytest.mark.parametrize("program", [0, 16, 24, 33, 48, 56, 73, 81, 89, 11])
def test_silence_before_and_after_energy_during(program: int) -> None:
    part = _part([Note(1.0, 0.5, 60, 100)], program)
    out = ns.render_part_numpy(part, 4.0, seed=0)
    assert not np.any(out[: RATE - 1])  # nothing before the note
    assert _rms(out[RATE : RATE + RATE // 2]) > 1e-3
    release_end = 1.5 + ns.timbre_for(part).release
    assert not np.any(out[int((release_end + 0.01) * RATE) :])  # nothing after the release


def test_empty_part_is_silent() -> None:
    out = ns.render_part_numpy(_part([]), 2.0, seed=0)
    assert out.shape == (2 * RATE,) and not np.any(out)


def test_notes_outside_the_song_are_cut() -> None:
    notes = [Note(-0.5, 0.2, 60, 100), Note(1.8, 2.0, 60, 100), Note(5.0, 1.0, 60, 100)]
    out = ns.render_part_numpy(_part(notes), 2.0, seed=0)
    assert out.shape == (2 * RATE,)
    assert not np.any(out[: int(1.79 * RATE)])
    assert _rms(out[int(1.8 * RATE) :]) > 1e-3


@pytest.mark.parametrize(
    "program", [0, 4, 6, 11, 16, 24, 30, 33, 38, 40, 52, 56, 66, 73, 80, 81, 89, 96, 112]
)
def test_pitch_of_a4_within_2_percent(program: int) -> None:
    out = ns.render_part_numpy(_part([Note(0.0, 1.0, 69, 100)], program), 1.0, seed=0)
    f0 = _fundamental(out[RATE // 10 : RATE // 2 + RATE // 10])
    assert abs(f0 / 440.0 - 1.0) < 0.02, f"{ns.timbre_for(_part([], program)).name}: {f0:.1f} Hz"


@pytest.mark.parametrize("pitch", [40, 45, 57, 76, 88])
def test_plucked_and_bass_pitch_across_the_range(pitch: int) -> None:
    for program in (24, 33):
        out = ns.render_part_numpy(_part([Note(0.0, 1.5, pitch, 110)], program), 1.5, seed=0)
        f0 = _fundamental(out[RATE // 20 : RATE + RATE // 20])
        assert abs(f0 / ns.midi_hz(pitch) - 1.0) < 0.02


def test_karplus_strong_period_is_exact() -> None:
    for freq in (98.0, 261.63, 1046.5):
        exc = np.random.default_rng(0).uniform(-1, 1, 400)
        ring = ns.karplus_strong(freq, RATE, RATE, 4.0, exc)
        seg = ring[RATE // 10 : RATE // 10 + RATE // 4].astype(np.float64)
        period = RATE / freq
        lags = np.arange(int(period) - 2, int(period) + 3)
        corr = [np.dot(seg[:-10], np.roll(seg, -k)[:-10]) for k in lags]
        k = int(np.argmax(corr))
        a, b, c = corr[k - 1], corr[k], corr[k + 1]
        best = lags[k] + 0.5 * (a - c) / (a - 2 * b + c)
        assert abs(best / period - 1.0) < 0.002


def test_velocity_makes_notes_louder() -> None:
    soft = ns.render_part_numpy(_part([Note(0.0, 0.5, 60, 40)]), 0.6, seed=0)
    loud = ns.render_part_numpy(_part([Note(0.0, 0.5, 60, 120)]), 0.6, seed=0)
    assert _rms(loud) > 4 * _rms(soft)


@pytest.mark.parametrize("program", range(0, 128, 3))
def test_every_program_family_sounds_below_full_scale(program: int) -> None:
    out = ns.render_part_numpy(_part([Note(0.0, 0.4, 60, 127)], program), 0.6, seed=0)
    assert 0.02 < float(np.abs(out).max()) < 1.0


def _timbre_features(out: np.ndarray, freq: float) -> np.ndarray:
    """Levels (dB) of harmonics 2..10 against the fundamental, and of the envelope in 10 steps
    of 0.1 s against its maximum: what tells a piano from an organ."""
    seg = out[: RATE // 2] * np.hanning(RATE // 2)
    spec = np.abs(np.fft.rfft(seg))  # 2 Hz bins
    bins = [round(k * freq / 2) for k in range(1, 11)]
    harm = np.array([spec[b - 2 : b + 3].max() for b in bins])
    env = np.sqrt(np.mean(np.square(out[:RATE]).reshape(10, -1), axis=1))
    feats = np.concatenate([harm[1:] / harm[0], env / env.max()])
    return np.asarray(np.maximum(20 * np.log10(feats + 1e-6), -60.0))


def test_families_sound_different() -> None:
    programs = (0, 11, 16, 24, 33, 48, 56, 66, 73, 89)
    feats = []
    for program in programs:
        out = ns.render_part_numpy(_part([Note(0.0, 1.0, 57, 100)], program), 1.0, seed=0)
        feats.append(_timbre_features(out, ns.midi_hz(57)))
    for i in range(len(programs)):
        for j in range(i):
            distance = float(np.sqrt(np.mean((feats[i] - feats[j]) ** 2)))
            assert distance > 5.0, f"programs {programs[i]} and {programs[j]}: {distance:.1f} dB"


@pytest.mark.parametrize("key", range(27, 88))
def test_every_gm_drum_key_makes_a_hit(key: int) -> None:
    out = ns.render_part_numpy(_part([Note(0.5, 0.1, key, 100)], drums=True), 1.0, seed=0)
    assert not np.any(out[: RATE // 2])
    assert 1e-3 < float(np.abs(out).max()) <= ns.DRUM_LEVEL + 1e-6


def test_kick_lands_on_time() -> None:
    out = ns.render_part_numpy(_part([Note(1.0, 0.1, 36, 110)], drums=True), 2.0, seed=0)
    onset = int(np.argmax(np.abs(out) > 0.05 * np.abs(out).max())) / RATE
    assert abs(onset - 1.0) < 0.005


def test_closed_hat_chokes_open_hat() -> None:
    open_hat = [Note(0.0, 0.1, 46, 100)]
    closed = [Note(0.5, 0.1, 42, 100)]
    ringing = ns.render_part_numpy(_part(open_hat, drums=True), 2.0, seed=0)
    choked = ns.render_part_numpy(_part(open_hat + closed, drums=True), 2.0, seed=0)
    late = slice(int(0.9 * RATE), int(1.5 * RATE))  # after the closed hat has died away
    assert _rms(ringing[late]) > 1e-3
    assert _rms(choked[late]) < 1e-6


def _dense_part(program: int) -> Part:
    rng = np.random.default_rng(0)
    notes = [
        Note(bar * 2.0, 2.0, root + interval + int(rng.integers(0, 5)), 90)
        for bar in range(30)
        for root, interval in ((48, 0), (48, 7), (48, 12), (48, 16))
    ]
    return _part(notes, program)


def test_fast_enough() -> None:
    """Target is 50x real time on one core (measured ~95x for piano chords); the assert leaves
    room for a busy CI machine."""
    part = _dense_part(0)
    ns.render_part_numpy(part, 2.0, seed=0)  # warm the table cache
    start = time.perf_counter()
    ns.render_part_numpy(part, 60.0, seed=0)
    speed = 60.0 / (time.perf_counter() - start)
    assert speed > 30.0, f"{speed:.0f}x real time"
