"""Per-track production chains of generator version 2, drawn per song and track.

Version 1's chain (:mod:`engine.data.production`) is kept as it is; version 2 draws wider and
adds what records have and version 1 lacks. Each mono track goes through

1. the reference trim of version 1 (so thresholds mean the same on every track);
2. EQ: high-pass, low shelf (±6 dB), two peak bands (±8 dB), high shelf (vocals: air up to
   +8 dB), sometimes a low-pass (lo-fi keys, dark pads);
3. saturation: a tanh waveshaper (drive up to 24 dB, wet/dry mix), or pedalboard's distortion
   with a cabinet low-pass for overdriven guitars and distorted basses;
4. a compressor (ratios up to 10:1 on vocals and drums of loud genres), in parallel (blended
   with the dry track) for drums half the time, then version 1's brick-wall limiter;
5. a constant-power pan (wider than version 1), chorus, tempo-synced delay, and a stereo width
   stage in mid/side: the side is a Haas-delayed copy (8-25 ms) for width, scaled by the
   drawn width;
6. the fader (level relative to the lead vocal) and a send to one of the song's reverbs.

The genre's *heat* (0 gentle .. 1 aggressive) raises the odds and amounts of saturation and
compression: rock and EDM are hot, ballads and jazz cool.

Reverbs are convolutions with synthetic impulse responses (:func:`impulse_response`): decaying
decorrelated stereo noise whose highs die faster than its lows, with early reflections for
rooms and chambers; kinds ``room`` (RT60 0.3-0.8 s), ``chamber`` (0.8-1.5), ``plate``
(1.0-2.5) and ``hall`` (1.8-3.5), two drawn per song (a short one for drums and a long one for
the rest, most of the time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pedalboard as pb
from scipy import signal

from engine.data import production as v1
from engine.data.song import Part

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: How hard each genre is produced (saturation and compression odds and amounts).
HEAT: dict[str, float] = {
    "rock": 1.0,
    "edm": 1.0,
    "electronic": 0.9,
    "hip-hop": 0.8,
    "pop": 0.65,
    "funk": 0.5,
    "latin": 0.4,
    "ballad": 0.25,
    "jazz": 0.15,
}
REVERB_KINDS: dict[str, tuple[float, float]] = {
    "room": (0.3, 0.8),
    "chamber": (0.8, 1.5),
    "plate": (1.0, 2.5),
    "hall": (1.8, 3.5),
}
SHORT_VERB = ("kick", "drums", "cymbals", "bass")


@dataclass(frozen=True)
class Chain:
    """Everything drawn for one version-2 track (also its manifest record)."""

    name: str
    stem: str
    kind: str
    hpf_hz: float
    lpf_hz: float  # 0: none
    low_shelf_db: float
    peaks: tuple[tuple[float, float, float], ...]  # (Hz, dB, Q)
    high_shelf_db: float
    sat_drive_db: float  # tanh waveshaper (0: none)
    sat_mix: float
    dist_drive_db: float  # pedalboard distortion + cabinet (0: none)
    cab_hz: float
    comp: tuple[float, float, float, float]  # threshold dB, ratio, attack ms, release ms
    parallel: float  # share of the dry track blended back after compression (0: serial)
    limit_db: float
    pan: float
    width: float  # side gain of the Haas copy (0: mono)
    haas_ms: float
    chorus: tuple[float, float, float]  # mix, rate Hz, depth (mix 0: none)
    delay: tuple[float, float, float]  # seconds, feedback, mix (seconds 0: none)
    level_db: float
    send_db: float
    verb: int  # index of the song reverb it is sent to

    def as_dict(self) -> dict[str, Any]:
        def r(v: Any) -> Any:
            if isinstance(v, float):
                return round(v, 3) if math.isfinite(v) else None
            if isinstance(v, tuple):
                return [r(x) for x in v]
            return v

        return {k: r(v) for k, v in self.__dict__.items()}


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _log_u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


def _kind(part: Part) -> str:
    kind = v1.track_kind(part)
    if part.stem == "bass" and "dist" in part.role:
        return "bass_dist"
    return kind


def draw_chain(
    part: Part, rng: np.random.Generator, *, side: float, n_other: int, tempo: float, heat: float
) -> Chain:
    """Draw the version-2 chain of one track (``side`` ±1 alternates spread parts)."""
    kind = _kind(part)
    base = v1.draw_track(part, rng, side=side, n_other=n_other, tempo=tempo)
    vocal, drums = kind.endswith("vocal"), part.stem == "drums"
    sat = rng.random() < 0.25 + 0.5 * heat and kind not in ("cymbals",)
    dist = kind in ("guitar_dist", "bass_dist")
    thr, ratio, att, rel = base.comp_threshold_db, base.comp_ratio, base.comp_attack_ms, 0.0
    if vocal or drums or kind == "bass":
        ratio *= 1.0 + heat * _u(rng, 0.0, 1.0)
        thr -= heat * _u(rng, 0.0, 8.0)
    rel = base.comp_release_ms
    spread = kind not in v1._CENTRE
    pan = side * _u(rng, 0.3, 1.0) if spread else base.pan
    if kind == "backing_vocal":
        pan = side * _u(rng, 0.2, 0.9)
    beat = 60.0 / tempo
    delay = (vocal or kind in ("lead", "keys", "guitar")) and rng.random() < 0.5
    chorus = kind in ("guitar", "keys", "pad", "lead", "backing_vocal") and rng.random() < 0.45
    wide = kind in ("pad", "guitar", "guitar_dist", "keys", "lead", "backing_vocal", "cymbals")
    return Chain(
        name=part.name,
        stem=part.stem,
        kind=kind,
        hpf_hz=base.hpf_hz * _u(rng, 0.8, 1.4),
        lpf_hz=_log_u(rng, 2500.0, 9000.0) if kind in ("keys", "pad") and rng.random() < 0.2 else 0,
        low_shelf_db=_u(rng, -6.0, 6.0 if kind in ("kick", "bass", "bass_dist") else 3.0),
        peaks=tuple(
            (_log_u(rng, 150.0, 8000.0), _u(rng, -8.0, 6.0), _u(rng, 0.5, 3.0)) for _ in range(2)
        ),
        high_shelf_db=_u(rng, 1.0, 8.0) if vocal else _u(rng, -6.0, 5.0),
        sat_drive_db=_u(rng, 3.0, 6.0 + 18.0 * heat) if sat else 0.0,
        sat_mix=_u(rng, 0.3, 1.0) if sat else 0.0,
        dist_drive_db=_u(rng, 15.0, 35.0) if dist else 0.0,
        cab_hz=_u(rng, 3000.0, 7500.0) if dist else 0.0,
        comp=(thr, ratio, att, rel),
        parallel=_u(rng, 0.3, 0.6) if drums and rng.random() < 0.5 else 0.0,
        limit_db=_u(rng, 0.5, 1.0 + 3.0 * heat),
        pan=pan,
        width=_u(rng, 0.1, 0.7) if wide and rng.random() < 0.6 else 0.0,
        haas_ms=_u(rng, 8.0, 25.0),
        chorus=(_u(rng, 0.2, 0.6), _u(rng, 0.2, 2.0), _u(rng, 0.1, 0.5)) if chorus else (0, 0, 0),
        delay=(
            (
                beat * float(rng.choice([0.25, 0.5, 0.75, 1.0])),
                _u(rng, 0.1, 0.45),
                _u(rng, 0.05, 0.25),
            )
            if delay
            else (0.0, 0.0, 0.0)
        ),
        level_db=base.level_db + (_u(rng, -1.0, 2.0) if kind == "bass_dist" else 0.0),
        send_db=base.send_db + _u(rng, -4.0, 4.0),
        verb=0 if kind in SHORT_VERB and rng.random() < 0.8 else 1,
    )


def _tone(c: Chain) -> list[pb.Plugin]:
    plugins: list[pb.Plugin] = [
        pb.HighpassFilter(cutoff_frequency_hz=c.hpf_hz),
        pb.LowShelfFilter(cutoff_frequency_hz=180.0, gain_db=c.low_shelf_db),
    ]
    plugins += [pb.PeakFilter(cutoff_frequency_hz=f, gain_db=g, q=q) for f, g, q in c.peaks]
    plugins.append(pb.HighShelfFilter(cutoff_frequency_hz=7000.0, gain_db=c.high_shelf_db))
    if c.lpf_hz > 0:
        plugins.append(pb.LowpassFilter(cutoff_frequency_hz=c.lpf_hz))
    if c.dist_drive_db > 0:
        plugins += [pb.Distortion(drive_db=c.dist_drive_db), pb.LowpassFilter(c.cab_hz)]
    return plugins


def saturate(x: npt.NDArray[np.floating], drive_db: float, mix: float) -> F32:
    """tanh waveshaper at ``drive_db`` (input near -20 dBFS RMS), level-matched, blended."""
    if drive_db <= 0.0:
        return np.asarray(x, dtype=np.float32)
    d = 10.0 ** (drive_db / 20.0) * 4.0  # the reference level sits 12 dB under full scale
    wet = np.tanh(d * x.astype(np.float64)) / d
    return np.asarray((1.0 - mix) * x + mix * wet, dtype=np.float32)


def _compress(y: F32, c: Chain, rate: int) -> F32:
    thr, ratio, att, rel = c.comp
    comp = pb.Compressor(threshold_db=thr, ratio=ratio, attack_ms=att, release_ms=rel)
    wet = np.asarray(comp(y, rate), dtype=np.float32)
    if c.parallel > 0:
        wet = wet * (1.0 - c.parallel) + y * c.parallel
    peak = float(np.abs(wet).max())
    if peak <= 0.0:
        return wet
    ceiling = 20.0 * math.log10(peak) - c.limit_db
    return np.asarray(pb.BrickwallLimiter(ceiling_db=ceiling, release_ms=80.0)(wet, rate))


def _stereo(y: F32, c: Chain, rate: int) -> F32:
    """Pan, width (M/S with a Haas copy as side), chorus and delay: mono ``[N]`` -> ``[2, N]``."""
    st = v1.pan_stereo(y, c.pan)
    if c.width > 0.0:
        lag = round(c.haas_ms * 1e-3 * rate)
        side = np.zeros_like(y)
        side[lag:] = y[: y.size - lag] * c.width * 0.5
        st = st + np.stack([side, -side])
    plugins: list[pb.Plugin] = []
    if c.chorus[0] > 0:
        plugins.append(pb.Chorus(rate_hz=c.chorus[1], depth=c.chorus[2], mix=c.chorus[0]))
    if c.delay[0] > 0:
        plugins.append(pb.Delay(delay_seconds=c.delay[0], feedback=c.delay[1], mix=c.delay[2]))
    return v1.run_chain(plugins, st.astype(np.float32), rate) if plugins else st


def process(x: F32, c: Chain, rate: int, cfg: v1.ProductionConfig) -> F32:
    """One mono track ``[N]`` through its version-2 chain at its mix level: ``[2, N]``."""
    ref = v1._ref_gain
    y = v1.run_chain(_tone(c), (x * ref(x, cfg))[None, :], rate)
    y = saturate(y * ref(y, cfg), c.sat_drive_db, c.sat_mix)
    y = _compress(np.ascontiguousarray(y * ref(y, cfg), dtype=np.float32), c, rate)
    y = y * (ref(y, cfg) * v1.db_to_gain(c.level_db))
    return _stereo(np.asarray(y[0], dtype=np.float32), c, rate)


# ---------------------------------------------------------------- reverbs


@dataclass(frozen=True)
class Verb:
    kind: str
    rt60: float  # seconds (low band; highs decay faster)
    damping: float  # high-band decay time as a share of the low band's
    predelay_s: float
    brightness_hz: float  # crossover between the low and high decay bands


def draw_verbs(rng: np.random.Generator) -> tuple[Verb, Verb]:
    """A short reverb (drums, bass) and a long one (the rest) for one song."""
    short = str(rng.choice(["room", "room", "chamber", "plate"]))
    long = str(rng.choice(["plate", "hall", "hall", "chamber", "room"]))
    return _verb(short, rng), _verb(long, rng)


def _verb(kind: str, rng: np.random.Generator) -> Verb:
    lo, hi = REVERB_KINDS[kind]
    return Verb(kind, _u(rng, lo, hi), _u(rng, 0.3, 0.8), _u(rng, 0.0, 0.04), _u(rng, 1500, 5000))


def impulse_response(v: Verb, rate: int, seed: int) -> F64:
    """Stereo impulse response ``[2, L]`` of ``v`` (unit energy per channel)."""
    rng = np.random.default_rng(seed)
    n = round((v.predelay_s + v.rt60 * 1.2) * rate)
    t = np.arange(n) / rate - v.predelay_s
    noise = rng.standard_normal((2, n))
    b, a = signal.butter(2, v.brightness_hz / (rate / 2))
    low = signal.lfilter(b, a, noise, axis=-1)
    high = noise - low
    env = np.where(t >= 0, 1.0, 0.0)
    ir = low * env * np.exp(-6.9 * np.maximum(t, 0) / v.rt60)
    ir += high * env * np.exp(-6.9 * np.maximum(t, 0) / (v.rt60 * v.damping))
    ir *= np.minimum(1.0, np.maximum(t, 0) / 0.005)  # a 5 ms build-up
    if v.kind in ("room", "chamber"):  # sparse early reflections
        for _ in range(8):
            k = round((v.predelay_s + _u(rng, 0.003, 0.06)) * rate)
            ir[int(rng.integers(2)), k] += _u(rng, -1.0, 1.0) * 6.0
    return np.asarray(ir / np.sqrt((ir * ir).sum(axis=-1, keepdims=True)))


def convolve_return(bus: F64, ir: F64) -> F64:
    """Wet stereo return of ``bus`` ``[2, N]`` through ``ir`` ``[2, L]``, level-matched to the bus
    (its send level is then its reverb-to-dry ratio, as in version 1)."""
    n = bus.shape[-1]
    wet = np.stack([signal.oaconvolve(bus[c], ir[c])[:n] for c in range(2)])
    level = v1.active_rms(wet)
    return wet * (v1.active_rms(bus) / level) if level > 0.0 else wet
