"""A fast pure-numpy synthesizer: the fallback renderer when FluidSynth or the drum kits are absent.

It needs nothing but numpy, so tests and CI always have a renderer. Sounds are simple but each
General MIDI program family gets its own timbre (:func:`timbre_for`):

- *table* voices (piano, organ, bass, strings, brass, reeds, pipes, synth leads and pads): one
  band-limited cycle per note built from harmonic amplitudes (``k ** -slope``, odd-only for
  square-like tones, or explicit drawbars), shaped by a lowpass over the harmonic index whose
  cutoff moves from ``start_cutoff`` to ``cutoff`` (a filter sweep), read with a phase
  accumulator (optional vibrato and a detuned second voice), times an ADSR envelope;
- *pluck* voices (guitars, harp, pizzicato, sitar...): Karplus-Strong with a fractional delay,
  computed one period at a time (vectorised) and cached per pitch and velocity step;
- *mallet* voices (chromatic percussion, bells, steel drums): a few inharmonic decaying sines;
- drums: noise and swept sines per drum class (kick, snare, hats, toms, cymbals, ...), mixed with
  :func:`engine.data.drumkit.mix_hits` (closed hats choke open hats).

Levels are fixed, nothing is normalised: a note is ``VOICE_GAIN * (velocity/127) ** 2`` times a
unit voice (tables have an RMS of 0.5 before their lowpass; plucks peak at 0.7), so one note at
velocity 100 peaks at 0.08-0.22 and a 4-voice chord part at about 0.4; drum hits peak at
``DRUM_LEVEL * velocity/127`` for the kick and less for the other classes. Output is deterministic for a given seed (noise comes from ``numpy.random.default_rng``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from engine.constants import MODEL_RATE
from engine.data.drumkit import Hit, gm_drum_class, mix_hits
from engine.data.song import Note, Part

TABLE_SIZE: Final[int] = 8192
MAX_HARMONICS: Final[int] = 64
#: Gain of one note at full velocity (-12 dB), so chords and dense parts stay below 1.
VOICE_GAIN: Final[float] = 0.25
#: Level of the loudest drum (the kick) at full velocity.
DRUM_LEVEL: Final[float] = 0.5
#: Longest Karplus-Strong ring, in seconds (a pluck has died away by then).
PLUCK_MAX: Final[float] = 4.0

_F32 = np.float32


def _f32(x: object) -> np.ndarray:
    """``x`` as a float32 array (no copy when it already is one)."""
    return np.asarray(x, dtype=_F32)


@dataclass(frozen=True)
class Timbre:
    """How one family of programs sounds. Times in seconds, cutoffs in harmonic numbers."""

    name: str
    kind: str = "table"  # "table", "pluck" or "mallet"
    slope: float = 1.0  # harmonic k has amplitude k ** -slope
    odd: bool = False  # odd harmonics only
    drawbars: tuple[float, ...] = ()  # explicit harmonic amplitudes (override slope)
    cutoff: float = 1e9  # lowpass over the harmonic index, where the tone settles
    start_cutoff: float = 0.0  # cutoff at the note start (0: no sweep)
    sweep: float = 0.1  # time constant of the cutoff sweep
    attack: float = 0.005
    decay: float = 0.0  # time constant towards ``sustain`` at middle C (0: none)
    sustain: float = 1.0
    release: float = 0.08
    vibrato: float = 0.0  # depth as a fraction of the frequency, at 5.5 Hz
    detune: float = 0.0  # cents of a second voice
    drive: float = 0.0  # tanh saturation (distorted guitars)
    partials: tuple[float, ...] = ()  # frequency ratios of mallet partials


PIANO = Timbre(
    "piano",
    slope=1.3,
    cutoff=6,
    start_cutoff=18,
    sweep=0.25,
    attack=0.002,
    decay=1.4,
    sustain=0.0,
    release=0.2,
)
EPIANO = Timbre(
    "epiano",
    slope=3.0,
    cutoff=2,
    start_cutoff=8,
    sweep=0.08,
    attack=0.002,
    decay=1.6,
    sustain=0.0,
    release=0.2,
)
HARPSICHORD = Timbre("harpsichord", slope=0.8, cutoff=20, attack=0.001, decay=0.7, sustain=0.0)
ORGAN = Timbre("organ", drawbars=(1, 0.8, 0.6, 0.5, 0, 0.3, 0, 0.25), attack=0.01, release=0.06)
BASS = Timbre(
    "bass",
    slope=1.0,
    cutoff=2.5,
    start_cutoff=10,
    sweep=0.08,
    attack=0.003,
    decay=1.2,
    sustain=0.35,
    release=0.06,
)
SYNTH_BASS = Timbre(
    "synth_bass",
    slope=1.0,
    cutoff=5,
    start_cutoff=30,
    sweep=0.12,
    attack=0.002,
    decay=0.5,
    sustain=0.6,
    release=0.05,
)
STRINGS = Timbre("strings", slope=1.0, cutoff=10, attack=0.15, release=0.3, vibrato=0.004, detune=6)
CHOIR = Timbre("choir", slope=2.0, cutoff=6, attack=0.2, release=0.3, vibrato=0.006, detune=8)
BRASS = Timbre("brass", slope=1.0, cutoff=14, start_cutoff=2, sweep=0.06, attack=0.04, release=0.12)
REED = Timbre("reed", slope=1.1, odd=True, cutoff=10, attack=0.03, release=0.08, vibrato=0.004)
PIPE = Timbre("pipe", slope=3.0, attack=0.04, release=0.1, vibrato=0.003)
SQUARE_LEAD = Timbre("square_lead", slope=1.0, odd=True, attack=0.005, decay=0.5, sustain=0.8)
SAW_LEAD = Timbre(
    "saw_lead", slope=1.0, cutoff=30, attack=0.005, decay=0.5, sustain=0.8, vibrato=0.003
)
PAD = Timbre("pad", slope=1.0, cutoff=5, attack=0.35, release=0.6, detune=12)
SWEEP_PAD = Timbre(
    "sweep_pad", slope=1.0, cutoff=3, start_cutoff=20, sweep=1.0, attack=0.2, release=0.6, detune=9
)
GUITAR = Timbre("guitar", kind="pluck", decay=2.5, release=0.08)
DIST_GUITAR = Timbre("dist_guitar", kind="pluck", decay=3.0, release=0.08, drive=6.0)
MALLET = Timbre("mallet", kind="mallet", decay=0.6, release=0.3, partials=(1.0, 3.93, 9.54))
BELL = Timbre("bell", kind="mallet", decay=1.5, release=0.5, partials=(1.0, 2.76, 5.4, 8.93))

#: Timbre of each program family (program // 8), with exceptions in ``_PROGRAM_TIMBRES``.
_FAMILY_TIMBRES: Final[tuple[Timbre, ...]] = (
    PIANO,
    MALLET,
    ORGAN,
    GUITAR,
    BASS,
    STRINGS,
    STRINGS,
    BRASS,
    REED,
    PIPE,
    SAW_LEAD,
    PAD,
    SWEEP_PAD,
    GUITAR,
    MALLET,
    PAD,
)
_PROGRAM_TIMBRES: Final[dict[int, Timbre]] = {
    4: EPIANO,
    5: EPIANO,
    6: HARPSICHORD,
    7: HARPSICHORD,
    9: BELL,
    14: BELL,
    29: DIST_GUITAR,
    30: DIST_GUITAR,
    38: SYNTH_BASS,
    39: SYNTH_BASS,
    45: GUITAR,
    46: GUITAR,
    47: MALLET,
    52: CHOIR,
    53: CHOIR,
    54: CHOIR,
    55: BRASS,
    80: SQUARE_LEAD,
    108: MALLET,
    109: REED,
    110: STRINGS,
    111: REED,
    112: BELL,
}


def timbre_for(part: Part) -> Timbre:
    """The timbre of a melodic part, from its General MIDI program."""
    program = min(max(part.program, 0), 127)
    return _PROGRAM_TIMBRES.get(program, _FAMILY_TIMBRES[program // 8])


def midi_hz(pitch: float) -> float:
    return float(440.0 * 2.0 ** ((pitch - 69.0) / 12.0))


def velocity_gain(velocity: int) -> float:
    """Amplitude of a note: ``(velocity / 127) ** 2`` (about 40 log10 dB, as GM suggests)."""
    return (min(max(velocity, 0), 127) / 127.0) ** 2


# --- table voices -----------------------------------------------------------------------------


def _harmonics(timbre: Timbre, count: int) -> np.ndarray:
    """Amplitudes ``[count]`` of harmonics 1..count before any lowpass."""
    k = np.arange(1, count + 1, dtype=np.float64)
    if timbre.drawbars:
        amps = np.zeros(count)
        n = min(count, len(timbre.drawbars))
        amps[:n] = timbre.drawbars[:n]
        return amps
    amps = k**-timbre.slope
    if timbre.odd:
        amps[1::2] = 0.0
    return amps


@functools.lru_cache(maxsize=4096)
def _table(timbre: Timbre, count: int, cutoff: float) -> np.ndarray:
    """One cycle ``[TABLE_SIZE]`` with ``count`` harmonics, lowpassed at harmonic ``cutoff``.

    Every table of a timbre is scaled by the same factor, so a darker table is also quieter.
    """
    full = _harmonics(timbre, MAX_HARMONICS)
    scale = 0.5 / np.sqrt(0.5 * np.sum(full**2))
    amps = _harmonics(timbre, count) / (1.0 + (np.arange(1, count + 1) / cutoff) ** 4)
    spectrum = np.zeros(TABLE_SIZE // 2 + 1, np.complex128)
    spectrum[1 : count + 1] = -0.5j * TABLE_SIZE * amps * scale  # sine phases
    table = np.fft.irfft(spectrum, n=TABLE_SIZE).astype(_F32)
    table.setflags(write=False)
    return table


def _phase(freq: float, n: int, rate: int, vibrato: float) -> np.ndarray:
    """Phase in cycles ``[n]`` (float64) of a tone at ``freq`` Hz with 5.5 Hz vibrato."""
    t = np.arange(n, dtype=np.float64) / rate
    phase = freq * t
    if vibrato > 0.0:
        w = 2.0 * np.pi * 5.5
        phase += freq * vibrato / w * (1.0 - np.cos(w * t))
    return phase


def _lookup(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    idx = (phase * TABLE_SIZE).astype(np.int64) & (TABLE_SIZE - 1)
    return _f32(table[idx])


def _adsr(timbre: Timbre, freq: float, n_on: int, n: int, rate: int) -> np.ndarray:
    """Envelope ``[n]``: attack, decay towards sustain, linear release after ``n_on`` samples."""
    t = np.arange(n, dtype=_F32) / _F32(rate)
    env = np.minimum(t / _F32(max(timbre.attack, 1e-4)), _F32(1.0))
    if timbre.decay > 0.0:
        tau = timbre.decay * min(2.0, (261.63 / freq) ** 0.5)
        level = timbre.sustain + (1.0 - timbre.sustain) * np.exp(-t / _F32(tau))
        env *= level.astype(_F32)
    n_rel = n - n_on
    if n_rel > 0:
        env[n_on:] *= np.linspace(1.0, 0.0, n_rel, dtype=_F32)
    return _f32(env)


def _cutoff_mix(timbre: Timbre, n: int, rate: int) -> np.ndarray:
    """Weight ``[n]`` of the start-cutoff table against the settled one (1 at the start)."""
    t = np.arange(n, dtype=_F32) / _F32(rate)
    return _f32(np.exp(-t / _F32(timbre.sweep)).astype(_F32))


def _table_voice(timbre: Timbre, freq: float, n_on: int, n: int, rate: int) -> np.ndarray:
    """One note of a table voice, unit level, ``[n]`` float32."""
    detune = 2.0 ** (timbre.detune / 1200.0)
    top = freq * detune * (1.0 + timbre.vibrato)
    count = int(np.clip(0.45 * rate / top, 1, MAX_HARMONICS))
    settled = _table(timbre, count, timbre.cutoff)
    phases = [_phase(freq, n, rate, timbre.vibrato)]
    if timbre.detune:
        phases.append(_phase(freq * detune, n, rate, timbre.vibrato) + 0.31)
    out = np.zeros(n, _F32)
    for phase in phases:
        wave = _lookup(settled, phase)
        if timbre.start_cutoff > 0.0:
            start = _table(timbre, count, timbre.start_cutoff)
            wave += _cutoff_mix(timbre, n, rate) * (_lookup(start, phase) - wave)
        out += wave
    out *= _adsr(timbre, freq, n_on, n, rate) / _F32(len(phases))
    return out


# --- mallets ----------------------------------------------------------------------------------


def _mallet_voice(timbre: Timbre, freq: float, n_on: int, n: int, rate: int) -> np.ndarray:
    """Inharmonic partials, each decaying faster than the one below it."""
    t = np.arange(n, dtype=_F32) / _F32(rate)
    out = np.zeros(n, _F32)
    for i, ratio in enumerate(timbre.partials):
        f = freq * ratio
        if f >= 0.45 * rate:
            break
        tau = timbre.decay * min(2.0, (261.63 / freq) ** 0.5) / (1.0 + 2.5 * i)
        amp = 0.7 / (1.0 + i)
        out += amp * np.sin(_F32(2.0 * np.pi * f) * t) * np.exp(-t / _F32(tau))
    return _f32(
        out * _adsr(Timbre("gate", attack=0.001, release=timbre.release), freq, n_on, n, rate)
    )


# --- plucks (Karplus-Strong) ------------------------------------------------------------------


def karplus_strong(
    freq: float, n: int, rate: int, t60: float, excitation: np.ndarray
) -> np.ndarray:
    """A plucked string ``[n]``: a delay line of ``rate/freq`` samples fed back through a filter.

    The loop filter is a two-point average (half a sample of delay) convolved with a linear
    interpolator (the fractional rest of the period), so the pitch is exact to a fraction of a
    cent. The recursion reaches back at least one period, so whole periods are computed at once.
    ``excitation`` fills the first period (it is resized to it and its mean removed).
    """
    delay = rate / freq
    period = max(2, int(np.floor(delay - 0.5)))
    frac = delay - 0.5 - period
    gain = 10.0 ** (-3.0 * delay / (rate * t60))  # -60 dB after t60 seconds
    taps = gain * np.array([0.5 * (1.0 - frac), 0.5, 0.5 * frac])
    buf = np.zeros(n + 2, np.float64)  # two leading zeros for the taps reaching back
    first = min(period, n)
    start_shape = np.resize(excitation, period)
    buf[2 : 2 + first] = (start_shape - start_shape.mean())[:first]  # no DC in the loop
    for start in range(2 + period, n + 2, period):
        m = min(period, n + 2 - start)
        back = start - period
        buf[start : start + m] = (
            taps[0] * buf[back : back + m]
            + taps[1] * buf[back - 1 : back - 1 + m]
            + taps[2] * buf[back - 2 : back - 2 + m]
        )
    return buf[2:].astype(_F32)


def _pluck_excitation(rng: np.random.Generator, period: int, velocity: int) -> np.ndarray:
    """The string's shape when released ``[period]``: a triangle peaked at the plucking point
    (a fifth to a quarter of the string) plus noise, smoothed more for softer plucks (darker)."""
    x = np.linspace(0.0, 1.0, period, endpoint=False)
    at = rng.uniform(0.2, 0.25)
    shape = np.where(x < at, x / at, (1.0 - x) / (1.0 - at)) + rng.uniform(-0.3, 0.3, period)
    width = 1 + round(4 * (1.0 - velocity / 127.0))
    smooth = np.convolve(np.concatenate([shape, shape[:width]]), np.ones(width) / width)
    smooth = smooth[width : width + period]
    return _f32(smooth - smooth.mean())


@dataclass
class _PluckCache:
    """Karplus-Strong rings of one render call, per (pitch, velocity step)."""

    timbre: Timbre
    rate: int
    seed: int
    rings: dict[tuple[int, int], np.ndarray]

    def ring(self, pitch: int, velocity: int) -> np.ndarray:
        step = min(3, velocity // 32)
        key = (pitch, step)
        if key not in self.rings:
            freq = midi_hz(pitch)
            rng = np.random.default_rng([self.seed, pitch, step])
            exc = _pluck_excitation(rng, int(self.rate / freq) + 1, 32 * step + 16)
            t60 = self.timbre.decay * min(2.0, (110.0 / freq) ** 0.3)
            n = round(PLUCK_MAX * self.rate)
            ring = karplus_strong(freq, n, self.rate, t60, exc)
            if self.timbre.drive:
                ring = np.tanh(self.timbre.drive * ring) / np.tanh(self.timbre.drive)
            ring *= 0.7 / max(float(np.abs(ring[: 4 * len(exc)]).max()), 1e-6)
            self.rings[key] = ring.astype(_F32)
        return self.rings[key]


def _pluck_voice(cache: _PluckCache, note: Note, n_on: int, n: int) -> np.ndarray:
    ring = cache.ring(note.pitch, note.velocity)
    out = np.zeros(n, _F32)
    m = min(n, len(ring))
    out[:m] = ring[:m]
    if n > n_on:
        out[n_on:] *= np.linspace(1.0, 0.0, n - n_on, dtype=_F32)
    return out


# --- melodic parts ----------------------------------------------------------------------------


def _note_span(timbre: Timbre, note: Note, rate: int, total: int) -> tuple[int, int, int]:
    """(start sample, samples held, samples with release), clipped to the output length."""
    start = round(note.start * rate)
    n_on = max(1, round(note.duration * rate))
    n = min(n_on + round(timbre.release * rate), total - start)
    return start, min(n_on, max(n, 0)), n


def _voice(timbre: Timbre, rate: int, seed: int) -> Callable[[Note, int, int], np.ndarray]:
    """The function that renders one note ``(note, held samples, total samples) -> [n]``."""
    if timbre.kind == "pluck":
        return functools.partial(_pluck_voice, _PluckCache(timbre, rate, seed, {}))

    def voice(note: Note, n_on: int, n: int) -> np.ndarray:
        synth = _mallet_voice if timbre.kind == "mallet" else _table_voice
        return synth(timbre, midi_hz(note.pitch), n_on, n, rate)

    return voice


def _render_melodic(part: Part, n_out: int, rate: int, seed: int) -> np.ndarray:
    timbre = timbre_for(part)
    voice = _voice(timbre, rate, seed)
    out = np.zeros(n_out, _F32)
    for note in part.notes:
        start, n_on, n = _note_span(timbre, note, rate, n_out)
        if n <= 0 or start < 0:
            continue
        gain = _F32(VOICE_GAIN * velocity_gain(note.velocity))
        out[start : start + n] += gain * voice(note, n_on, n)
    return out


# --- drums ------------------------------------------------------------------------------------


def _decay(n: int, rate: int, tau: float) -> np.ndarray:
    return _f32(np.exp(-np.arange(n, dtype=_F32) / _F32(rate * tau)).astype(_F32))


def _sweep(rate: int, length: float, f_end: float, f_add: float, tau: float) -> np.ndarray:
    """A sine whose frequency falls from ``f_end + f_add`` to ``f_end`` (time constant tau)."""
    t = np.arange(round(length * rate), dtype=np.float64) / rate
    phase = f_end * t + f_add * tau * (1.0 - np.exp(-t / tau))
    return np.sin(2.0 * np.pi * phase).astype(_F32)


def _metal(rate: int, length: float, rng: np.random.Generator, base: float) -> np.ndarray:
    """Six detuned square waves plus noise, highpassed: the classic hi-hat/cymbal source."""
    t = np.arange(round(length * rate), dtype=np.float64) / rate
    ratios = (1.0, 1.483, 1.8, 2.546, 2.63, 3.897)
    tone = sum(np.sign(np.sin(2 * np.pi * base * r * t + rng.uniform(0, 6.3))) for r in ratios)
    src = 0.12 * np.asarray(tone) + rng.normal(0.0, 0.5, len(t))
    return np.diff(np.diff(src, prepend=0.0), prepend=0.0).astype(_F32) * _F32(0.35)


def _noise(rate: int, length: float, rng: np.random.Generator, highpass: bool) -> np.ndarray:
    noise = rng.normal(0.0, 0.4, round(length * rate))
    return (np.diff(noise, prepend=0.0) if highpass else noise).astype(_F32)


#: Peak level of each drum class at full velocity, before ``DRUM_LEVEL``.
_DRUM_PEAK: Final[dict[str, float]] = {
    "kick": 1.0,
    "snare": 0.9,
    "clap": 0.8,
    "rim": 0.6,
    "hat_closed": 0.45,
    "hat_pedal": 0.35,
    "hat_open": 0.5,
    "crash": 0.6,
    "ride": 0.45,
    "ride_bell": 0.5,
    "tambourine": 0.45,
    "shaker": 0.35,
    "cowbell": 0.5,
}


def _drum_wave(cls: str, key: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """One hit of a drum class at full velocity, ``[L]`` float32, peak ``_DRUM_PEAK[cls]``."""
    wave = _drum_source(cls, key, rate, rng)
    return wave * _F32(_DRUM_PEAK.get(cls, 0.8) / max(float(np.abs(wave).max()), 1e-9))


def _drum_source(cls: str, key: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    if cls == "kick":
        body = _sweep(rate, 0.6, 48.0, 110.0, 0.035) * _decay(round(0.6 * rate), rate, 0.22)
        click = _noise(rate, 0.6, rng, True) * _decay(round(0.6 * rate), rate, 0.003)
        return _f32(body + click)
    if cls in ("snare", "clap", "rim"):
        return _snare_like(cls, rate, rng)
    if cls.startswith("hat"):
        tau = {"hat_closed": 0.035, "hat_pedal": 0.05, "hat_open": 0.4}[cls]
        wave = _metal(rate, 6 * tau + 0.05, rng, 330.0)
        return _f32(wave * _decay(len(wave), rate, tau) * _F32(0.7 if cls == "hat_pedal" else 1.0))
    if cls in ("crash", "ride", "ride_bell"):
        return _cymbal(cls, rate, rng)
    if cls in ("tambourine", "shaker"):
        wave = _noise(rate, 0.3, rng, True) * _F32(1.5)
        return _f32(wave * _decay(len(wave), rate, 0.08 if cls == "tambourine" else 0.04))
    if cls == "cowbell":
        t = np.arange(round(0.4 * rate), dtype=np.float64) / rate
        sq = np.sign(np.sin(2 * np.pi * 540 * t)) + np.sign(np.sin(2 * np.pi * 800 * t))
        return _f32((0.3 * sq).astype(_F32) * _decay(len(t), rate, 0.08))
    return _tom_like(cls, key, rate)


def _snare_like(cls: str, rate: int, rng: np.random.Generator) -> np.ndarray:
    if cls == "rim":
        tone = _sweep(rate, 0.08, 1700.0, 300.0, 0.005)
        return _f32(
            (tone + _noise(rate, 0.08, rng, True)) * _decay(round(0.08 * rate), rate, 0.012)
        )
    if cls == "clap":
        n = round(0.35 * rate)
        env = _decay(n, rate, 0.09)
        for at in (0.0, 0.011, 0.022):
            i = round(at * rate)
            env[i:] += _decay(n - i, rate, 0.006) * _F32(1.5)
        return _f32(_noise(rate, 0.35, rng, True) * env)
    n = round(0.45 * rate)
    body = _sweep(rate, 0.45, 185.0, 60.0, 0.02) * _decay(n, rate, 0.07) * _F32(0.7)
    return _f32(body + _noise(rate, 0.45, rng, True) * _decay(n, rate, 0.11) * _F32(1.2))


def _cymbal(cls: str, rate: int, rng: np.random.Generator) -> np.ndarray:
    if cls == "ride_bell":
        t = np.arange(round(1.5 * rate), dtype=np.float64) / rate
        ping = np.sin(2 * np.pi * 740 * t) + 0.6 * np.sin(2 * np.pi * 1105 * t)
        return _f32((0.5 * ping).astype(_F32) * _decay(len(t), rate, 0.5))
    length, tau = (3.0, 1.1) if cls == "crash" else (2.0, 0.7)
    wave = _metal(rate, length, rng, 420.0 if cls == "crash" else 510.0)
    wave += _noise(rate, length, rng, True) * _F32(0.5 if cls == "crash" else 0.2)
    return _f32(wave * _decay(len(wave), rate, tau))


def _tom_like(cls: str, key: int, rate: int) -> np.ndarray:
    """Toms by key (41 lowest .. 50 highest), other percussion as small high drums."""
    if cls.startswith("tom"):
        freq, tau = 70.0 + 11.0 * (min(max(key, 41), 50) - 41), 0.25
    else:
        freq, tau = 180.0 + 12.0 * (key % 24), 0.12
    n = round(6 * tau * rate)
    return _f32(_sweep(rate, 6 * tau, freq, freq * 0.6, 0.04) * _decay(n, rate, tau))


def _render_drum_part(part: Part, n_out: int, rate: int, seed: int) -> np.ndarray:
    waves: dict[int, tuple[str, np.ndarray]] = {}
    hits = []
    for note in part.notes:
        if note.pitch not in waves:
            cls = gm_drum_class(note.pitch)
            rng = np.random.default_rng([seed, note.pitch])
            waves[note.pitch] = (cls, _drum_wave(cls, note.pitch, rate, rng))
        cls, wave = waves[note.pitch]
        gain = DRUM_LEVEL * min(max(note.velocity, 0), 127) / 127.0
        hits.append(Hit(round(note.start * rate), wave, gain, cls))
    return mix_hits(hits, n_out, rate)


def render_part_numpy(
    part: Part, duration: float, *, rate: int = MODEL_RATE, seed: int
) -> np.ndarray:
    """Render one part with the numpy synthesizer.

    Parameters
    ----------
    part : a melodic part (timbre from its GM program) or a drum part (GM drum keys).
    duration : seconds of output; notes and tails past it are cut.
    rate : output sample rate.
    seed : seeds every noise source (same seed, same samples).

    Returns
    -------
    mono float32 audio ``[N]``, ``N = round(duration * rate)``.
    """
    n_out = round(duration * rate)
    if part.is_drum:
        return _render_drum_part(part, n_out, rate, seed)
    return _render_melodic(part, n_out, rate, seed)
