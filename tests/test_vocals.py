"""Vocal parts: our singer (always) and Festival's singing mode (when installed) sing the notes
at their pitches, with vibrato, consonants, silent rests and a real upper band at 48 kHz."""

from __future__ import annotations

import shutil

import numpy as np
import numpy.typing as npt
import pytest
from scipy import signal

from engine.data import festival, singer, vocals
from engine.data.pitch import cents_off as _cents_off
from engine.data.pitch import yin
from engine.data.song import Note, Part
from engine.errors import StemtokError

RATE = 48_000
F64 = npt.NDArray[np.float64]
needs_festival = pytest.mark.skipif(
    shutil.which("festival") is None or not festival.festival_available(),
    reason="Festival singing needs the festival and festvox-kallpc16k packages",
)


def part_of(notes: list[tuple[float, float, int, str]], voice: str = "male") -> Part:
    """A vocal part from (start, duration, pitch, lyric) tuples, velocity 100."""
    return Part(
        "vocals", "lead", 0, tuple(Note(s, d, p, 100, w) for s, d, p, w in notes), voice=voice
    )


SUSTAINED_MALE = part_of([(0.3, 1.2, 55, "ah"), (1.5, 1.2, 59, "oh"), (2.7, 1.2, 62, "ee")])
SUSTAINED_FEMALE = part_of(
    [(0.3, 1.2, 67, "ah"), (1.5, 1.2, 71, "la"), (2.7, 1.2, 74, "oh")], voice="female"
)


# ---------------------------------------------------------------------------------------------
# analysis helpers
# ---------------------------------------------------------------------------------------------


def cents_off(y: npt.NDArray[np.floating], part: Part) -> tuple[F64, float]:
    return _cents_off(y, RATE, part.notes)


def band_energy(x: npt.NDArray[np.floating], lo: float, hi: float) -> float:
    f, p = signal.welch(np.asarray(x, np.float64), RATE, nperseg=2048)
    return float(p[(f >= lo) & (f < hi)].sum())


def rms(x: npt.NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


# ---------------------------------------------------------------------------------------------
# our singer
# ---------------------------------------------------------------------------------------------


def test_sing_length_dtype_and_determinism() -> None:
    a = singer.sing(SUSTAINED_MALE, 4.2, seed=7)
    b = singer.sing(SUSTAINED_MALE, 4.2, seed=7)
    c = singer.sing(SUSTAINED_MALE, 4.2, seed=8)
    assert a.shape == (round(4.2 * RATE),) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert np.all(np.isfinite(a)) and np.max(np.abs(a)) == pytest.approx(singer.PEAK, rel=1e-3)
    assert singer.sing(SUSTAINED_MALE, 1.0, rate=44_100, seed=7).shape == (44_100,)


def test_sing_empty_part_and_notes_past_the_end() -> None:
    assert not np.any(singer.sing(part_of([]), 1.0, seed=1))
    late = part_of([(2.0, 1.0, 60, "la")])
    assert not np.any(singer.sing(late, 1.5, seed=1))
    assert singer.sing(late, 0.0, seed=1).shape == (0,)


@pytest.mark.parametrize("part", [SUSTAINED_MALE, SUSTAINED_FEMALE], ids=["male", "female"])
def test_singer_pitch_follows_notes(part: Part) -> None:
    y = singer.sing(part, 4.2, seed=3)
    cents, voiced = cents_off(y, part)
    assert voiced > 0.9
    assert np.median(np.abs(cents)) < 50
    assert np.mean(np.abs(cents) > 600) < 0.05  # (almost) no octave jumps


def test_vibrato_is_present_at_a_singing_rate() -> None:
    part = part_of([(0.2, 3.0, 57, "ah")])
    y = singer.sing(part, 3.5, seed=11)
    times, f0 = yin(y, RATE)
    sel = (times > 1.0) & (times < 3.0) & ~np.isnan(f0)
    assert sel.mean() > 0.15  # ~200 voiced frames in the held part
    cents = 1200 * np.log2(f0[sel] / np.median(f0[sel]))
    spectrum = np.abs(np.fft.rfft((cents - cents.mean()) * np.hanning(len(cents)), 2048))
    freqs = np.fft.rfftfreq(2048, 0.01)
    peak = freqs[1:][np.argmax(spectrum[1:])]
    assert 4.0 <= peak <= 8.0
    assert 8.0 < np.std(cents) < 80.0


def test_rests_are_silent_but_for_breath() -> None:
    part = part_of([(0.2, 1.0, 57, "la"), (1.25, 0.8, 59, "la"), (4.0, 1.0, 60, "la")])
    y = singer.sing(part, 5.2, seed=5)
    sung = rms(y[int(0.3 * RATE) : int(2.0 * RATE)])
    after_release = y[int(2.4 * RATE) : int(3.0 * RATE)]  # 0.35 s after the phrase ends
    whole_rest = y[int(2.4 * RATE) : int(3.95 * RATE)]  # may hold a breath intake
    assert rms(after_release) < 1e-3 * sung
    assert rms(whole_rest) < 10 ** (-15 / 20) * sung


def test_upper_band_present_but_well_below_the_body() -> None:
    y = singer.sing(SUSTAINED_FEMALE, 4.2, seed=2)
    body, top = band_energy(y, 0, 4000), band_energy(y, 10_000, 24_000)
    ratio_db = 10 * np.log10(top / body)
    assert -70 < ratio_db < -20
    assert band_energy(y, 18_000, 22_000) > 1e-8 * body  # the top octave is not empty


def test_consonants_make_noise_bursts_at_syllable_starts() -> None:
    lyrics = ["sa", "ta", "sha", "ka", "ah", "ah"]
    part = part_of([(0.2 + 0.7 * k, 0.6, 57, w) for k, w in enumerate(lyrics)])
    y = singer.sing(part, 4.6, seed=9)

    def hf_share(t0: float, t1: float) -> float:
        seg = y[int(t0 * RATE) : int(t1 * RATE)]
        return band_energy(seg, 3000, 20_000) / band_energy(seg, 0, 20_000)

    onsets = [hf_share(n.start, n.start + 0.07) for n in part.notes]
    vowels = [hf_share(n.start + 0.3, n.start + 0.45) for n in part.notes]
    for k in range(4):  # consonant syllables: the onset is far noisier than the vowel
        assert onsets[k] > 10 * vowels[k], (lyrics[k], onsets[k], vowels[k])
        assert onsets[k] > 10 * onsets[4]
    assert onsets[4] < 3 * vowels[4]  # a vowel onset is not


def test_syllable_phones() -> None:
    sp = singer.syllable_phones
    assert sp("night") == ("N", "AY", "T")
    assert sp("Love,") == ("L", "AH", "V")
    assert sp("sha") == ("SH", "AA")
    assert sp("stars") == ("S", "T", "AA", "R", "S")
    assert sp("the") == ("DH", "AX")
    assert sp("") == ("AA",) and sp("123") == ("AA",)
    assert sp("mmm") == ("M", "AX")
    for word in ("xyzzy", "qu", "ough", "y", "rhythm", "strengths"):
        phones = sp(word)
        assert phones and all(p in singer.CONSONANTS or singer._is_vowel(p) for p in phones)


def test_singer_speed() -> None:
    """The singer runs at least 20x faster than real time (CPU time, so a busy machine is fine)."""
    import time

    rng = np.random.default_rng(0)
    notes, t = [], 0.3
    while t < 19.0:
        d = float(rng.choice([0.25, 0.5, 1.0]))
        notes.append((t, 0.9 * d, int(rng.integers(52, 64)), "la"))
        t += d + (1.0 if rng.random() < 0.15 else 0.0)
    part = part_of(notes)
    singer.sing(part, 1.0, seed=1)  # builds the wavetables
    start = time.process_time()
    singer.sing(part, 20.0, seed=1)
    assert time.process_time() - start < 20.0 / 20.0


# ---------------------------------------------------------------------------------------------
# Festival: XML, planning and the upper band are pure; singing needs the package
# ---------------------------------------------------------------------------------------------


def test_phrase_xml_beats_pitches_and_rests() -> None:
    phrase = [
        Note(1.0, 0.5, 69, 90, "la"),
        Note(1.5, 0.25, 72, 90, "la"),
        Note(2.0, 1.0, 64, 90, ""),
    ]
    take = festival.plan_take(phrase, 1.0, RATE)
    xml = festival.phrase_xml(phrase, take)
    assert xml.count("<DURATION") == 3 and xml.count("<REST") == 1
    assert f'BPM="{festival.BPM:g}"' in xml
    # a beat lasts 50/BPM s: 0.5 s at BPM 100 is 1 beat (times the ratio)
    assert f'BEATS="{festival.beats(0.5 * take.ratio):.5f}"' in xml
    assert festival.beats(0.5, 100.0) == pytest.approx(1.0)
    assert f'FREQ="{440.0 / take.ratio:.3f}"' in xml
    assert ">ah</PITCH>" in xml  # an empty lyric sings "ah"


def test_plan_take_keeps_festival_below_its_limit() -> None:
    low = festival.plan_take([Note(0, 1, 57, 90, "la")], 1.0, RATE)
    assert low.octave == 0 and low.ratio == pytest.approx(1.0, abs=0.02)
    assert low.up / low.down == pytest.approx(RATE / (festival.FESTIVAL_RATE * low.ratio))
    high = festival.plan_take([Note(0, 1, 76, 90, "la")], 1.17, RATE)
    assert festival.midi_hz(76) / high.ratio <= festival.SAFE_FREQ + 1
    very_high = festival.plan_take([Note(0, 1, 86, 90, "la")], 1.17, RATE)
    assert very_high.octave == -1
    assert festival.midi_hz(86) / 2 / very_high.ratio <= festival.MAX_FREQ


def test_festival_word() -> None:
    assert festival.festival_word("Don't!") == "don't"
    assert festival.festival_word("mmm") == "mah"  # vowel-less tokens get spelled out
    assert festival.festival_word("") == "ah"


def test_extend_band_builds_a_falling_top_band() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(2 * RATE) / RATE
    tone = sum(np.sin(2 * np.pi * 150 * h * t) / h for h in range(1, 60))
    low = signal.sosfilt(signal.butter(8, 7000, fs=RATE, output="sos"), tone).astype(np.float32)
    out = festival.extend_band(low, RATE, 7200.0, rng)
    assert out.shape == low.shape and out.dtype == np.float32
    b_low, b_high = band_energy(low, 500, 5000), band_energy(low, 10_000, 20_000)
    assert band_energy(out, 500, 5000) == pytest.approx(b_low, rel=0.05)
    e1, e2 = band_energy(out, 9000, 13_000), band_energy(out, 16_000, 20_000)
    assert e1 > 100 * b_high and e2 < e1  # new energy above the cutoff, falling with frequency


def test_warp_pitch_adds_vibrato() -> None:
    t = np.arange(3 * RATE) / RATE
    x = np.sin(2 * np.pi * 220 * t).astype(np.float32)
    frames = np.arange(3 * RATE // singer.HOP + 1) * singer.HOP / RATE
    cents = 50.0 * np.sin(2 * np.pi * 5.5 * frames)
    y = festival.warp_pitch(x, 0, cents, RATE)
    times, f0 = yin(y, RATE)
    dev = 1200 * np.log2(f0[(times > 0.5) & (times < 2.5)] / 220.0)
    assert 25 < np.std(dev) < 50  # a 50-cent sine has a 35-cent std


def test_festival_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(StemtokError, match="apt install festival"):
        festival.run_festival(["<SINGING/>"], 1.0)


@needs_festival
def test_festival_crash_is_a_clear_error() -> None:
    take = festival.Take(1.0, 3, 1, 0)
    ok = festival.phrase_xml([Note(0, 0.5, 60, 90, "la")], take)
    crash = ok.replace('FREQ="261.626"', 'FREQ="700.000"')  # Festival's octave 6 segfaults
    with pytest.raises(StemtokError, match="phrase 2 of 2"):
        festival.run_festival([ok, crash], 1.0)


@needs_festival
def test_festival_timeout_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(festival, "TIMEOUT_S", 0.01)
    score = festival.phrase_xml([Note(0, 0.5, 60, 90, "la")], festival.Take(1.0, 3, 1, 0))
    with pytest.raises(StemtokError, match="timed out"):
        festival.run_festival([score], 0.0)


@needs_festival
@pytest.mark.parametrize("part", [SUSTAINED_MALE, SUSTAINED_FEMALE], ids=["male", "female"])
def test_festival_sings_the_notes_at_full_band(part: Part) -> None:
    y = festival.sing_festival(part, 4.2, seed=4)
    assert y.shape == (round(4.2 * RATE),) and y.dtype == np.float32
    assert np.array_equal(y, festival.sing_festival(part, 4.2, seed=4))
    cents, voiced = cents_off(y, part)
    assert voiced > 0.7
    assert np.median(np.abs(cents)) < 50
    ratio_db = 10 * np.log10(band_energy(y, 10_000, 20_000) / band_energy(y, 0, 4000))
    assert -70 < ratio_db < -20  # Festival stops at 8 kHz: this band is ours


@needs_festival
def test_festival_keeps_time_with_odd_lyrics() -> None:
    part = part_of([(0.5, 0.5, 57, "mmm"), (1.0, 0.5, 59, "bcd"), (1.5, 1.0, 60, "strengths")])
    y = festival.sing_festival(part, 4.0, seed=1)
    assert rms(y[: int(0.4 * RATE)]) < 0.05 * rms(y[int(0.5 * RATE) : int(2.5 * RATE)])
    assert rms(y[int(3.2 * RATE) :]) < 0.05 * rms(y[int(0.5 * RATE) : int(2.5 * RATE)])


# ---------------------------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------------------------


def test_render_vocals_engines() -> None:
    y = vocals.render_vocals(SUSTAINED_MALE, 4.2, seed=3, engine="singer")
    assert np.array_equal(y, singer.sing(SUSTAINED_MALE, 4.2, seed=3))
    with pytest.raises(StemtokError, match="unknown singing engine"):
        vocals.render_vocals(SUSTAINED_MALE, 4.2, seed=3, engine="opera")
    picks = {vocals.choose_engine(SUSTAINED_MALE, s) for s in range(12)}
    assert picks == ({"singer", "festival"} if festival.festival_available() else {"singer"})
    assert vocals.choose_engine(SUSTAINED_MALE, 5) == vocals.choose_engine(SUSTAINED_MALE, 5)


def test_auto_falls_back_to_the_singer(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise StemtokError("festival failed singing phrase 1 of 1: crash")

    monkeypatch.setattr(vocals, "choose_engine", lambda part, seed: "festival")
    monkeypatch.setattr(festival, "sing_festival", broken)
    y = vocals.render_vocals(SUSTAINED_MALE, 4.2, seed=3)
    assert np.array_equal(y, singer.sing(SUSTAINED_MALE, 4.2, seed=3))
    with pytest.raises(StemtokError, match="phrase 1 of 1"):
        vocals.render_vocals(SUSTAINED_MALE, 4.2, seed=3, engine="festival")
