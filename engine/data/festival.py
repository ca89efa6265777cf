"""Vocals from Festival's singing mode, made believable at 48 kHz.

Festival (``festival`` + a voice such as ``festvox-kallpc16k``) sings an XML score: a
``<SINGING BPM=..>`` element holding one ``<DURATION BEATS=..><PITCH FREQ=..>word</PITCH>
</DURATION>`` per syllable and ``<REST BEATS=..>`` for silences. Facts this module relies on:

- a beat lasts ``50 / BPM`` seconds (not 60), so ``BEATS = seconds * BPM / 50``;
- ``NOTE`` names are one octave low (its A5 is 440 Hz) and only name semitones, so we write
  ``FREQ`` in Hz instead;
- pitches from its octave 6 up (about 523 Hz) crash it (segmentation fault);
- its output is 16 kHz with nothing above ~7.4 kHz.

Each phrase (notes between rests) is rendered separately (all phrases in one Festival process)
and placed at its start time, so timing stays exact. The "voice" is changed by a playback-rate
trick: Festival sings ``ratio`` times lower and slower, and the result is resampled as if it had
been recorded at ``16 kHz * ratio`` - pitch and timing come out right and the formants move up
by ``ratio`` (about 1.17 gives a female tract from the male voice). Then: vibrato and drift by a
modulated delay, the 7-24 kHz band rebuilt from the signal (rectified excitation plus noise,
shaped by each frame's upper spectrum), phrase and velocity dynamics, breath intakes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import NoReturn

import numpy as np
import numpy.typing as npt
from scipy import ndimage, signal
from scipy.io import wavfile

from engine.constants import MODEL_RATE
from engine.data import singer
from engine.data.song import Note, Part
from engine.errors import StemtokError

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

FESTIVAL_RATE = 16_000
BPM = 100.0
MAX_FREQ = 494.0  # B in Festival's octave 5; its octave 6 (523 Hz and up) crashes it
# Festival's pulses get irregular as its pitch rises (YIN octave jumps on ~6 % of frames below
# 400 Hz, 18 % at 425-450 Hz), so phrases are planned to stay under SAFE_FREQ.
SAFE_FREQ = 420.0
MAX_RATIO = 1.6  # beyond this the formant shift sounds like a child; sing an octave lower
MIN_FREQ = 55.0
TOP = 7_200.0  # Festival's output is clean up to here (at ratio 1)
TIMEOUT_S = 30.0  # plus 3 s per second of audio
_SCRIPT = """(load (path-append datadir "init.scm"))
(gc-status nil)
(defvar stemtok_fp nil)
(defvar stemtok_n 0)
(defvar stemtok_utt nil)
(define (stemtok_save utt)
  (if (eq? stemtok_n 0)
      (wave.save.header stemtok_fp (utt.wave utt) 'riff nil (list (list "numsamples" 0))))
  (set! stemtok_n (+ stemtok_n (get_param 'num_samples (wave.info (utt.wave utt)) 0)))
  (wave.save.data.fp (utt.wave utt) stemtok_fp 'riff nil)
  (set! stemtok_utt utt))
(set! tts_hooks (list utt.synth stemtok_save))
(define (stemtok_render xml wav)
  (set! stemtok_fp (fopen wav "wb"))
  (set! stemtok_n 0)
  (tts_file xml 'singing)
  (fseek stemtok_fp 0 0)
  (wave.save.header stemtok_fp (utt.wave stemtok_utt) 'riff nil
                    (list (list "numsamples" stemtok_n)))
  (fclose stemtok_fp))
"""


def beats(seconds: float, bpm: float = BPM) -> float:
    """Festival beats for a length in seconds (its beat lasts ``50 / bpm`` s)."""
    return seconds * bpm / 50.0


def midi_hz(pitch: float) -> float:
    return float(440.0 * 2.0 ** ((pitch - 69.0) / 12.0))


def festival_word(lyric: str) -> str:
    """A token Festival pronounces as one word: letters only, at least one vowel letter."""
    word = re.sub(r"[^a-z']", "", lyric.lower()).strip("'")
    if not re.search(r"[aeiouy]", word):
        onset = re.match(r"[^aeiouy']*", word)
        word = (onset.group(0)[:1] if onset else "") + "ah"
    return word


@dataclass(frozen=True)
class Take:
    """How one phrase is sung: ``ratio`` (playback-rate trick) and an octave shift."""

    ratio: float  # Festival sings at pitch / ratio and duration * ratio
    up: int  # resampling factors: 16 kHz -> rate is up/down at this ratio
    down: int
    octave: int  # 0, or -1 when even the largest ratio cannot bring the phrase under MAX_FREQ


def plan_take(phrase: list[Note], base_ratio: float, rate: int) -> Take:
    """Choose the ratio for a phrase so Festival sings its highest note under ``SAFE_FREQ``."""
    top = max(midi_hz(n.pitch) for n in phrase)
    octave = 0
    ratio = max(base_ratio, top / SAFE_FREQ)
    while ratio > MAX_RATIO:
        octave -= 1
        top /= 2.0
        ratio = max(base_ratio, top / SAFE_FREQ)
    frac = Fraction(rate / (FESTIVAL_RATE * ratio)).limit_denominator(64)
    exact = rate / (FESTIVAL_RATE * float(frac))
    return Take(exact, frac.numerator, frac.denominator, octave)


def within_reach(part: Part) -> bool:
    """Whether Festival can sing every note at its pitch (no octave shift needed)."""
    return bool(part.notes) and max(midi_hz(n.pitch) for n in part.notes) <= SAFE_FREQ * MAX_RATIO


def phrase_xml(
    phrase: list[Note], take: Take, syllables: dict[str, int] | None = None, *, plain: bool = False
) -> str:
    """The singing-mode XML for one phrase, starting at its first note.

    ``syllables`` gives Festival's syllable count per word: a word of k syllables gets k equal
    beats and k copies of its pitch (one per syllable, as singing mode expects - a missing one
    aborts Festival). ``plain`` sings "la" on every note.
    """
    items: list[str] = []
    for k, n in enumerate(phrase):
        length = n.duration
        gap = phrase[k + 1].start - (n.start + n.duration) if k + 1 < len(phrase) else 0.0
        if gap <= 0.01:
            length += max(gap, 0.0)
        freq = min(max(midi_hz(n.pitch) * 2.0**take.octave / take.ratio, MIN_FREQ), MAX_FREQ)
        word = "la" if plain else festival_word(n.lyric)
        count = max((syllables or {}).get(word, 1), 1)
        each = beats(length * take.ratio) / count
        items.append(
            f'<DURATION BEATS="{",".join([f"{each:.5f}"] * count)}">'
            f'<PITCH FREQ="{",".join([f"{freq:.3f}"] * count)}">{word}</PITCH></DURATION>'
        )
        if gap > 0.01:
            items.append(f'<REST BEATS="{beats(gap * take.ratio):.5f}"></REST>')
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE SINGING PUBLIC "-//SINGING//DTD SINGING mark up//EN" '
        f'"Singing.v0_1.dtd" []>\n<SINGING BPM="{BPM:g}">\n' + "\n".join(items) + "\n</SINGING>\n"
    )


# ---------------------------------------------------------------------------------------------
# Running Festival
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def festival_available() -> bool:
    """Whether Festival and a voice are installed and can sing (probed once per process)."""
    if shutil.which("festival") is None:
        return False
    take = Take(1.0, 3, 1, 0)
    try:
        (audio,) = run_festival([phrase_xml([Note(0.0, 0.3, 60, 100, "la")], take)], 0.3)
    except StemtokError:
        return False
    return len(audio) > 0


def run_festival(scores: list[str], seconds: float) -> list[F32]:
    """Sing each XML score in one Festival process. Returns ``[n_k]`` float32 at 16 kHz each.

    ``seconds`` (the total audio expected) sets the time limit: ``TIMEOUT_S + 3 * seconds``.

    Raises StemtokError when Festival is missing, times out or crashes (naming the score it
    stopped on).
    """
    exe = shutil.which("festival")
    if exe is None:
        raise StemtokError("festival is not installed (apt install festival festvox-kallpc16k)")
    with tempfile.TemporaryDirectory(prefix="stemtok-festival-") as tmp:
        folder = Path(tmp)
        lines = [_SCRIPT]
        for k, score in enumerate(scores):
            (folder / f"p{k:04d}.xml").write_text(score, encoding="utf-8")
            lines.append(f'(stemtok_render "p{k:04d}.xml" "p{k:04d}.wav")')
        (folder / "run.scm").write_text("\n".join(lines) + "\n", encoding="utf-8")
        limit = TIMEOUT_S + 3.0 * seconds
        result = _call([exe, "--script", "run.scm"], folder, limit)
        outputs = [folder / f"p{k:04d}.wav" for k in range(len(scores))]
        if result.returncode != 0:  # the last file it started is the phrase it died on
            started = sum(1 for path in outputs if path.exists())
            _fail(max(started, 1), len(scores), result)
        return [_read_output(path, k, len(scores), result) for k, path in enumerate(outputs)]


def syllable_counts(words: list[str]) -> dict[str, int]:
    """How many syllables Festival's lexicon (or letter-to-sound rules) gives each word."""
    exe = shutil.which("festival")
    unique = sorted({w for w in words if re.fullmatch(r"[a-z']+", w)})
    if exe is None or not unique:
        return {}
    body = [
        '(load (path-append datadir "init.scm"))',
        '(define (stemtok_count w) (format t "%s %d\\n" w (length (car (cddr (lex.lookup w nil))))))',
        *(f'(stemtok_count "{w}")' for w in unique),
    ]
    with tempfile.TemporaryDirectory(prefix="stemtok-festival-") as tmp:
        (Path(tmp) / "count.scm").write_text("\n".join(body) + "\n", encoding="utf-8")
        result = _call([exe, "--script", "count.scm"], Path(tmp), TIMEOUT_S)
    counts: dict[str, int] = {}
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        word, _, number = line.rpartition(" ")
        if word in unique and number.isdigit():
            counts[word] = int(number)
    return counts


def _call(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            cmd, cwd=cwd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise StemtokError(f"festival singing timed out after {timeout:.0f} s") from exc
    except OSError as exc:
        raise StemtokError(f"festival could not be started: {exc}") from exc


def _fail(number: int, total: int, result: subprocess.CompletedProcess[bytes]) -> NoReturn:
    err = result.stderr.decode("utf-8", "replace").strip().splitlines()
    code = result.returncode
    why = f"crashed (signal {-code})" if code < 0 else (err[-1] if err else f"exit status {code}")
    raise StemtokError(f"festival failed singing phrase {number} of {total}: {why}")


def _read_output(path: Path, k: int, total: int, result: subprocess.CompletedProcess[bytes]) -> F32:
    if not path.exists() or path.stat().st_size <= 44:
        _fail(k + 1, total, result)
    rate, data = wavfile.read(path)
    if rate != FESTIVAL_RATE or data.dtype != np.int16:
        raise StemtokError(f"festival wrote {rate} Hz {data.dtype} audio, expected 16 kHz int16")
    return np.asarray(data, dtype=np.float32).reshape(-1) / np.float32(32768.0)


# ---------------------------------------------------------------------------------------------
# Making it believable at 48 kHz
# ---------------------------------------------------------------------------------------------


def _stft(x: F32, n_fft: int, hop: int) -> npt.NDArray[np.complex64]:
    win = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (n_fft // 2, n_fft)), n_fft)
    return np.asarray(np.fft.rfft(frames[::hop] * win, axis=1), dtype=np.complex64)


def _istft(spec: npt.NDArray[np.complex64], n: int, n_fft: int, hop: int) -> F32:
    win = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    frames = np.fft.irfft(spec, n_fft, axis=1).astype(np.float32) * win
    size = (len(frames) - 1) * hop + n_fft
    out, norm = np.zeros(size, np.float32), np.zeros(size, np.float32)
    for k in range(n_fft // hop):
        blocks = frames[:, k * hop : (k + 1) * hop]
        view = out[k * hop : k * hop + len(frames) * hop].reshape(-1, hop)
        view += blocks
        norm[k * hop : k * hop + len(frames) * hop].reshape(-1, hop)[:] += (win * win)[
            k * hop : (k + 1) * hop
        ]
    pad = n_fft // 2
    return np.asarray(out[pad : pad + n] / np.maximum(norm[pad : pad + n], 1e-3), np.float32)


def extend_band(x: F32, rate: int, cutoff: float, rng: np.random.Generator) -> F32:
    """Rebuild the band above ``cutoff`` Hz that a low-rate source lacks. ``[N] -> [N]``.

    The new band's fine structure mixes a full-wave rectified copy of the top octave (which
    keeps voiced frames harmonic) with noise; its level and slope continue each frame's
    spectrum from ``cutoff / 2`` to ``cutoff``, always falling (6 to 20 dB per octave).
    """
    n_fft, hop = 1024, 256
    if len(x) == 0 or cutoff >= 0.45 * rate:
        return x
    sos = signal.butter(4, [cutoff / 2.0, 0.98 * cutoff], "band", fs=rate, output="sos")
    top_octave = signal.sosfilt(sos, x).astype(np.float32)
    spec = _stft(x, n_fft, hop)
    excite = _stft(np.abs(top_octave), n_fft, hop)
    noise = _stft(rng.standard_normal(len(x)).astype(np.float32), n_fft, hop)
    f = np.fft.rfftfreq(n_fft, 1.0 / rate).astype(np.float32)
    fine = 0.6 * _whiten(excite) + 0.5 * _whiten(noise)
    high = _continuation(np.abs(spec), f, cutoff) * fine
    fade = singer.smoothstep((f - 0.88 * cutoff) / (0.12 * cutoff)).astype(np.float32)
    # the two parts are uncorrelated: a power-complementary crossfade keeps the level even
    return _istft(spec * np.sqrt(1.0 - fade) + high * np.sqrt(fade), len(x), n_fft, hop)


def _whiten(spec: npt.NDArray[np.complex64]) -> npt.NDArray[np.complex64]:
    """Divide each frame by its magnitude smoothed over ~1 kHz: keeps fine structure only."""
    smooth = ndimage.uniform_filter1d(np.abs(spec), 21, axis=1, mode="nearest")
    return np.asarray(spec / np.maximum(smooth, 1e-9), np.complex64)


def _continuation(mag: F32, f: F32, cutoff: float) -> F32:
    """Per-frame magnitude ``[T, F]`` continuing the ``cutoff/2 .. cutoff`` band upwards."""
    lo = (f >= 0.5 * cutoff) & (f < 0.7 * cutoff)
    hi = (f >= 0.7 * cutoff) & (f < 0.92 * cutoff)
    m_lo = np.sqrt(np.mean(mag[:, lo] ** 2, axis=1)) + 1e-9
    m_hi = np.sqrt(np.mean(mag[:, hi] ** 2, axis=1)) + 1e-9
    octaves = float(np.log2(np.mean(f[hi]) / np.mean(f[lo])))
    slope = np.clip(20.0 * np.log10(m_hi / m_lo) / octaves, -20.0, -6.0)  # dB per octave
    ref = float(np.mean(f[hi]))
    octs = np.log2(np.maximum(f, 1.0) / ref)
    return np.asarray(m_hi[:, None] * 10.0 ** (slope[:, None] * octs[None, :] / 20.0), np.float32)


def warp_pitch(x: F32, start: int, cents: F64, rate: int) -> F32:
    """Vibrato by a modulated delay: ``cents`` ``[T]`` at the frame rate, song time from 0.

    The read position advances at ``2 ** (cents / 1200)`` samples per sample; its slow part is
    removed so the phrase never drifts off time (the delay stays within a few ms).
    """
    frame_rate = rate / singer.HOP
    ratio = 2.0 ** (cents / 1200.0)
    delay = np.cumsum(ratio - 1.0) * singer.HOP
    delay -= singer.smooth(delay, 0.4, frame_rate)
    n = np.arange(len(x), dtype=np.float64)
    centres = np.arange(len(cents)) * singer.HOP - start
    d = np.interp(n, centres, delay)
    return np.interp(n + d, n, x, left=0.0, right=0.0).astype(np.float32)


def level_curve(notes: list[Note], times: F64, rng: np.random.Generator) -> F64:
    """Gain ``[T]``: velocity of the current note and a gentle arc over each phrase."""
    gain = np.zeros_like(times)
    for phrase in singer.phrases(notes):
        p0, p1 = phrase[0].start, phrase[-1].start + phrase[-1].duration
        depth = rng.uniform(0.0, 0.3)
        for k, n in enumerate(phrase):
            end = phrase[k + 1].start if k + 1 < len(phrase) else p1 + 0.4
            sel = (times >= n.start - 0.1) & (times < end)
            pos = np.clip((times[sel] - p0) / max(p1 - p0, 1e-3), 0.0, 1.0)
            gain[sel] = (n.velocity / 127.0) ** 1.3 * (1.0 + depth * np.sin(np.pi * pos))
    return singer.smooth(gain, 0.03, 1.0 / (times[1] - times[0]) if len(times) > 1 else 1.0)


# ---------------------------------------------------------------------------------------------
# The public entry point
# ---------------------------------------------------------------------------------------------


def sing_festival(part: Part, duration: float, *, rate: int = MODEL_RATE, seed: int) -> F32:
    """Sing a vocal part with Festival. Returns ``[N]`` float32 mono, ``N = round(duration * rate)``.

    ``part.voice`` "female" moves the formants up by the playback-rate trick; the output peaks
    at ``singer.PEAK``. Raises StemtokError when Festival is missing or fails.
    """
    n = max(round(duration * rate), 0)
    notes = singer.prepare_notes(part, duration)
    if n == 0 or not notes:
        return np.zeros(n, dtype=np.float32)
    rng = np.random.default_rng(seed)
    female = singer.voice_kind(part, notes) == "female"
    voice = singer.draw_voice("female" if female else "male", rng)
    base = rng.uniform(1.12, 1.22) if female else rng.uniform(0.95, 1.05)
    groups = singer.phrases(notes)
    takes = [plan_take(g, base, rate) for g in groups]
    audio = _sing_checked(groups, takes)
    times = np.arange(n // singer.HOP + 1) * singer.HOP / rate
    cents = singer.vibrato_cents(notes, times, voice, rng)
    y = np.zeros(n, dtype=np.float32)
    for group, take, raw in zip(groups, takes, audio, strict=True):
        _place(y, _polish(raw, group, take, cents, rate, rng), group, rate)
    y *= np.interp(np.arange(n), times * rate, level_curve(notes, times, rng)).astype(np.float32)
    singer.add_breaths(y, notes, rate, voice.breath_db, rng)
    peak = float(np.max(np.abs(y)))
    return (y * (singer.PEAK / peak) if peak > 0 else y).astype(np.float32)


def _sing_checked(groups: list[list[Note]], takes: list[Take]) -> list[F32]:
    """Render every phrase in one Festival run. Phrases whose length comes out wrong (a lyric
    it spelled out) are sung again on "la"; if the run fails, phrases are retried one by one,
    on "la" where their lyrics make it fail."""
    syllables = syllable_counts([festival_word(n.lyric) for g in groups for n in g])
    pairs = list(zip(groups, takes, strict=True))
    seconds = sum(_span(g) * t.ratio for g, t in pairs)
    try:
        audio = run_festival([phrase_xml(g, t, syllables) for g, t in pairs], seconds)
    except StemtokError:
        audio = [_sing_one(g, t, syllables) for g, t in pairs]
    bad = [
        k
        for k, ((g, t), a) in enumerate(zip(pairs, audio, strict=True))
        if abs(len(a) / FESTIVAL_RATE - _span(g) * t.ratio) > 0.08 + 0.02 * _span(g)
    ]
    if bad:
        redo = run_festival([phrase_xml(*pairs[k], plain=True) for k in bad], seconds)
        for k, a in zip(bad, redo, strict=True):
            audio[k] = a
    return audio


def _sing_one(phrase: list[Note], take: Take, syllables: dict[str, int]) -> F32:
    seconds = _span(phrase) * take.ratio
    try:
        return run_festival([phrase_xml(phrase, take, syllables)], seconds)[0]
    except StemtokError:
        return run_festival([phrase_xml(phrase, take, plain=True)], seconds)[0]


def _span(phrase: list[Note]) -> float:
    return phrase[-1].start + phrase[-1].duration - phrase[0].start


def _polish(
    raw: F32, phrase: list[Note], take: Take, cents: F64, rate: int, rng: np.random.Generator
) -> F32:
    """One phrase from Festival's 16 kHz take to full band at ``rate``, vibrato included."""
    x = signal.resample_poly(raw, take.up, take.down).astype(np.float32)
    keep = round((_span(phrase) + 0.25) * rate)
    x = x[:keep]
    start = round(phrase[0].start * rate)
    x = warp_pitch(x, start, cents, rate)
    return extend_band(x, rate, min(TOP * take.ratio, 0.45 * rate), rng)


def _place(y: F32, x: F32, phrase: list[Note], rate: int) -> None:
    start = round(phrase[0].start * rate)
    seg = y[start : start + len(x)]
    tail = np.ones(len(seg), np.float32)
    fade = min(int(0.05 * rate), len(seg))
    if fade:
        tail[-fade:] = np.linspace(1.0, 0.0, fade, dtype=np.float32)
    seg += x[: len(seg)] * tail
