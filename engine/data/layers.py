"""Numpy synth layers of generator version 2, for sounds General MIDI renders thinly.

Parts whose ``role`` is in :data:`ROLES` are rendered here instead of by FluidSynth (mono
float32 ``[N]``, ``N = round(duration * rate)``, peaks near 0.3-0.8 before production):

- ``supersaw``: seven band-limited (polyBLEP) saws detuned over ±10-35 cents, low-passed;
- ``pluck``: two saws whose brightness decays within ~100 ms, short amplitude decay;
- ``synth_bass``: two detuned saws and a sine an octave under, low-passed at 300-1200 Hz;
- ``reese``: two saws detuned 15-30 cents, low-passed and driven (a tanh);
- ``808``: one continuous sine with a pitch drop at each note, portamento between overlapping
  notes, long decay and saturation;
- ``synth_kit`` (drum parts): 808/909-like synthesized kick (sine sweep and click), snare (tone
  and noise), clap (three noise bursts and a tail), hats, toms and cymbals, mixed with the
  hydrogen sampler's :func:`~engine.data.drumkit.mix_hits` (closed hats choke open ones).

Every sound is drawn from the part's seed, so a song renders the same every time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy import signal

from engine.data.drumkit import Hit, gm_drum_class, mix_hits
from engine.data.song import Note, Part

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
ROLES = ("supersaw", "pluck", "synth_bass", "reese", "808", "synth_kit")
BASS_ROLES = ("synth_bass", "reese", "808")


def hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def saw(freq: float, n: int, rate: int, phase: float = 0.0) -> F64:
    """Band-limited sawtooth ``[n]`` in [-1, 1] (polyBLEP corrected)."""
    dt = freq / rate
    t = (phase + dt * np.arange(n)) % 1.0
    y = 2.0 * t - 1.0
    lo, hi = t < dt, t > 1.0 - dt
    x = t[lo] / dt
    y[lo] -= 2 * x - x * x - 1.0
    x = (t[hi] - 1.0) / dt
    y[hi] -= x * x + 2 * x + 1.0
    return np.asarray(y, dtype=np.float64)


def _env(n_on: int, n: int, rate: int, attack: float, release: float) -> F64:
    """Linear attack, hold until note off, exponential release: ``[n]``."""
    e = np.ones(n)
    a = max(1, min(n, round(attack * rate)))
    e[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    tail = np.arange(max(0, n - n_on)) / rate
    e[n_on:] *= np.exp(-tail / max(release / 5.0, 1e-3))
    return e


def _notes(part: Part, rate: int, total: int, release: float) -> list[tuple[Note, int, int, int]]:
    """(note, start sample, samples held, samples with release) that fit in ``total``."""
    out = []
    for note in part.notes:
        k = round(note.start * rate)
        if k >= total:
            continue
        held = max(1, round(note.duration * rate))
        out.append((note, k, held, min(total - k, held + round(release * rate))))
    return out


def _melodic(part: Part, total: int, rate: int, voice: Callable[..., F64], release: float) -> F64:
    out = np.zeros(total)
    for note, k, held, n in _notes(part, rate, total, release):
        out[k : k + n] += voice(note, held, n) * (note.velocity / 127.0)
    return out


def render_layer(part: Part, duration: float, *, rate: int, seed: int) -> F32:
    """Render a part whose role is in :data:`ROLES`: mono float32 ``[N]``."""
    total = round(duration * rate)
    rng = np.random.default_rng([seed, 0x5A7])
    if part.role == "synth_kit":
        return synth_kit(part, total, rate, rng)
    if part.role == "808":
        return eight_o_eight(part, total, rate, rng)
    make = {"supersaw": _supersaw, "pluck": _pluck, "synth_bass": _synth_bass, "reese": _reese}
    y = make[part.role](part, total, rate, rng)
    peak = float(np.abs(y).max())
    return np.asarray(y * (0.5 / peak) if peak > 0 else y, dtype=np.float32)


def _lowpass(y: F64, cutoff: float, rate: int, order: int = 2) -> F64:
    sos = signal.butter(order, min(cutoff, 0.45 * rate), fs=rate, output="sos")
    return np.asarray(signal.sosfilt(sos, y))


def _supersaw(part: Part, total: int, rate: int, rng: np.random.Generator) -> F64:
    spread = rng.uniform(10.0, 35.0)
    cents = np.linspace(-spread, spread, 7)
    attack, release = rng.uniform(0.005, 0.08), rng.uniform(0.15, 0.5)

    def voice(note: Note, held: int, n: int) -> F64:
        f = hz(note.pitch)
        y = sum(saw(f * 2 ** (c / 1200), n, rate, float(rng.random())) for c in cents)
        return np.asarray(y) / math.sqrt(7) * _env(held, n, rate, attack, release)

    y = _melodic(part, total, rate, voice, release)
    return _lowpass(y, rng.uniform(3000.0, 9000.0), rate)


def _pluck(part: Part, total: int, rate: int, rng: np.random.Generator) -> F64:
    tau_f, tau_a = rng.uniform(0.04, 0.15), rng.uniform(0.2, 0.6)
    dark = rng.uniform(600.0, 1500.0)

    def voice(note: Note, held: int, n: int) -> F64:
        f = hz(note.pitch)
        full = saw(f, n, rate) + saw(f * 1.004, n, rate, 0.3)
        low = _lowpass(full, dark, rate)
        t = np.arange(n) / rate
        y = low + (full - low) * np.exp(-t / tau_f)
        return np.asarray(y * np.exp(-t / tau_a) * _env(held, n, rate, 0.002, 0.05))

    return _melodic(part, total, rate, voice, 0.05)


def _synth_bass(part: Part, total: int, rate: int, rng: np.random.Generator) -> F64:
    detune, sub = rng.uniform(3.0, 12.0), rng.uniform(0.3, 0.9)

    def voice(note: Note, held: int, n: int) -> F64:
        f = hz(note.pitch)
        t = np.arange(n) / rate
        y = saw(f, n, rate) + saw(f * 2 ** (detune / 1200), n, rate, 0.5)
        y = 0.5 * y + sub * np.sin(2 * np.pi * f / 2 * t)
        return np.asarray(y * _env(held, n, rate, 0.003, 0.06))

    return _lowpass(_melodic(part, total, rate, voice, 0.06), rng.uniform(300.0, 1200.0), rate, 4)


def _reese(part: Part, total: int, rate: int, rng: np.random.Generator) -> F64:
    detune, drive = rng.uniform(15.0, 30.0), rng.uniform(1.5, 5.0)

    def voice(note: Note, held: int, n: int) -> F64:
        f = hz(note.pitch)
        y = saw(f, n, rate) + saw(f * 2 ** (detune / 1200), n, rate, 0.25)
        return np.asarray(y * _env(held, n, rate, 0.005, 0.08))

    y = _lowpass(_melodic(part, total, rate, voice, 0.08), rng.uniform(400.0, 900.0), rate, 4)
    return np.asarray(np.tanh(drive * y / max(float(np.abs(y).max()), 1e-9)))


def eight_o_eight(part: Part, total: int, rate: int, rng: np.random.Generator) -> F32:
    """The 808: a sine whose pitch glides between overlapping notes and drops at each hit."""
    decay, glide = rng.uniform(0.4, 1.2), rng.uniform(0.03, 0.09)
    drop, drive = rng.uniform(0.5, 1.5), rng.uniform(1.0, 4.0)
    logf = np.full(total, math.log(hz(36)))
    amp = np.zeros(total)
    notes = sorted(part.notes, key=lambda x: x.start)
    prev_end, prev_f = -1.0, 0.0
    for i, note in enumerate(notes):
        k = round(note.start * rate)
        if k >= total:
            break
        end = notes[i + 1].start if i + 1 < len(notes) else note.start + note.duration
        n = min(total, round(max(end, note.start + note.duration) * rate) + round(0.03 * rate)) - k
        t = np.arange(n) / rate
        target = math.log(hz(note.pitch))
        legato = note.start < prev_end - 1e-3  # still sounding: glide, no new hit
        start_f = prev_f if legato else target + drop * 0.69  # up to an octave and a half above
        tau = glide if legato else 0.015
        logf[k : k + n] = target + (start_f - target) * np.exp(-t / tau)
        a0 = amp[k - 1] if legato and k > 0 else note.velocity / 127.0
        off = max(1, round(note.duration * rate))
        env = (
            a0
            * np.exp(-t / decay)
            * np.where(t * rate < off, 1.0, np.exp(-(t - off / rate) / 0.02))
        )
        amp[k : k + n] = env
        prev_end, prev_f = note.start + note.duration, target
    phase = 2 * np.pi * np.cumsum(np.exp(logf)) / rate
    y = np.tanh(drive * np.sin(phase) * amp) / math.tanh(drive)
    return np.asarray(0.7 * y, dtype=np.float32)


# ---------------------------------------------------------------- synthesized drum kit


def _decay(n: int, rate: int, tau: float) -> F64:
    return np.exp(-np.arange(n) / rate / tau)


def _noise(n: int, rng: np.random.Generator) -> F64:
    return rng.standard_normal(n)


def _band(y: F64, lo: float, hi: float, rate: int) -> F64:
    sos = signal.butter(2, [lo, min(hi, 0.45 * rate)], btype="band", fs=rate, output="sos")
    return np.asarray(signal.sosfilt(sos, y))


#: Square-wave partials of the 808's metallic cymbals and hats (Hz).
_METAL_HZ = (205.3, 304.4, 369.6, 522.7, 540.0, 800.0)


def _hat(tau: float, rate: int, rng: np.random.Generator) -> F64:
    n = round(tau * 6 * rate)
    return _band(_noise(n, rng), 7000, 20000, rate) * _decay(n, rate, tau)


def _sweep(rate: int, secs: float, f_end: float, f_add: float, tau_f: float, tau_a: float) -> F64:
    """A sine falling from ``f_end + f_add`` to ``f_end`` Hz (kicks and toms)."""
    t = np.arange(round(secs * rate)) / rate
    freq = f_end + f_add * np.exp(-t / tau_f)
    return np.asarray(np.sin(2 * np.pi * np.cumsum(freq) / rate) * np.exp(-t / tau_a))


def _clap(rate: int, rng: np.random.Generator) -> F64:
    clap = np.zeros(round(0.5 * rate))
    burst_n = round(0.012 * rate)
    for k in range(3):
        at = round(0.011 * k * rate)
        clap[at : at + burst_n] += _band(_noise(burst_n, rng), 900, 5000, rate) * _decay(
            burst_n, rate, 0.004
        )
    return clap + 0.6 * _band(_noise(clap.size, rng), 900, 5000, rate) * _decay(
        clap.size, rate, 0.12
    )


def drum_sounds(rate: int, rng: np.random.Generator) -> dict[str, F32]:
    """One synthesized sound per drum class, drawn per song (808 to 909 flavours)."""
    u = rng.uniform
    kick = _sweep(rate, 1.2, u(42, 60), u(60, 160), u(0.02, 0.05), u(0.15, 0.6))
    click = round(0.03 * rate)
    kick[:click] += 0.3 * _band(_noise(click, rng), 1500, 8000, rate) * _decay(click, rate, 0.004)
    n_snare = round(0.4 * rate)
    snare = 0.6 * _sweep(rate, 0.4, u(160, 240), 0.0, 1.0, 0.06)
    snare += _band(_noise(n_snare, rng), 1000, 9000, rate) * _decay(n_snare, rate, u(0.08, 0.2))
    tc = np.arange(round(2.0 * rate)) / rate
    metal = sum(np.sign(np.sin(2 * np.pi * f * u(0.9, 1.1) * tc)) for f in _METAL_HZ)
    cymbal = _band(np.asarray(metal) + 2 * _noise(tc.size, rng), 4000, 20000, rate)
    cymbal = cymbal * _decay(tc.size, rate, u(0.5, 1.0))
    sounds = {
        "kick": kick,
        "snare": snare,
        "clap": _clap(rate, rng),
        "rim": snare[: round(0.05 * rate)] * 0.5,
        "hat_closed": _hat(u(0.02, 0.05), rate, rng),
        "hat_pedal": _hat(0.02, rate, rng),
        "hat_open": _hat(u(0.15, 0.35), rate, rng),
        "crash": cymbal,
        "ride": cymbal[:rate] * 0.5,
        "ride_bell": cymbal[: rate // 2] * 0.5,
        "tom_low": _sweep(rate, 0.6, 80.0, 40.0, 0.05, 0.2),
        "tom_mid": _sweep(rate, 0.6, 110.0, 55.0, 0.05, 0.2),
        "tom_high": _sweep(rate, 0.6, 150.0, 75.0, 0.05, 0.2),
    }
    for name in ("tambourine", "shaker", "cowbell", "perc"):
        sounds[name] = _hat(0.05, rate, rng)
    return {k: np.asarray(0.6 * v / np.abs(v).max(), dtype=np.float32) for k, v in sounds.items()}


def synth_kit(part: Part, total: int, rate: int, rng: np.random.Generator) -> F32:
    """Play a drum part (GM keys) on a synthesized kit: mono float32 ``[total]``."""
    sounds = drum_sounds(rate, rng)
    hits = []
    for note in part.notes:
        cls = gm_drum_class(note.pitch)
        hits.append(Hit(round(note.start * rate), sounds[cls], note.velocity / 127.0, cls))
    return mix_hits(hits, total, rate)
