"""Production of a rendered song: per-track effects, panning, stems, mix level and 24-bit exactness.

Input: the rendered mono tracks of a song, one per :class:`~engine.data.song.Part`. Each track
goes through

1. a level trim to a reference loudness, so effect thresholds mean the same on every track;
2. a mono chain (pedalboard): high-pass, low shelf, one peak band, high shelf, distortion with a
   cabinet low-pass for overdriven guitars (GM programs 29-30: overdriven and distortion guitar;
   31, guitar harmonics, is a clean sound), a compressor, and a gentle brick-wall limiter whose
   ceiling sits 0.5-2.5 dB under the track's peak;
3. a constant-power pan to stereo (lead vocal, bass, kick and snare near the centre; backing
   vocals, hats, toms and the "other" instruments spread, alternating sides);
4. optional stereo chorus (clean guitars, keys, pads) and tempo-synced delay (vocals, leads);
5. a fader that sets its loudness relative to the lead vocal (vocals on top, then drums, bass,
   the other instruments sharing their level), and a reverb send (its reverb-to-dry ratio).

Tracks are summed into the four stems. Each stem gets the return of its own reverb, all four
with the same room (size, damping, width, pre-delay) drawn once per song, so a reverb tail stays
in the stem of the track that made it. A master gain, common to all stems, puts the highest peak
of the mixture and of every stem at a level drawn in [0.5, 0.9] (headroom; nothing ever clips).

Exactness for 24-bit files: after the master gain each stem is rounded to the 24-bit grid
(``round(x * 2**23) / 2**23``, exact in float32), and the mixture is the float64 sum of the
rounded stems, which is on the same grid and under full scale, so a 24-bit writer that maps
``k / 2**23`` to the integer ``k`` stores stems and mixture without error and
``mixture == sum(stems)`` holds bit for bit after reading them back.

Generator version 2 (:mod:`engine.data.record`) replaces the last step by a mix bus with glue
compression and a limiter that bring the song to a drawn commercial loudness (BS.1770
integrated, -14 to -7 LUFS) while the mixture stays the exact sum of the stems: the compressor
and limiter gain curves are computed from the mixture (the limiter also watching every stem),
multiplied into ONE shared time-varying gain ``g(t)``, and every stem is multiplied by ``g(t)``
(``sum_i g s_i = g sum_i s_i``); the stems are then rounded to the 24-bit grid as above and the
mixture is defined as the sum of the rounded stems. Nothing non-linear runs on the sum itself.
See :mod:`engine.data.mixbus`. Version 1 below is unchanged.

Every random choice comes from one ``numpy`` Generator seeded per song, so a song renders the
same every time. :func:`produce` returns a :class:`Production` whose ``chain`` records what was
applied (song-level room and master gain, one small dict per track) for the manifest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pedalboard as pb

from engine.constants import MODEL_RATE, STEMS
from engine.data.song import Part
from engine.errors import StemtokError

GRID = 2.0**23  # 24-bit full scale
SILENCE = 1e-6  # a track whose peak is below this (-120 dBFS) is treated as silent
DISTORTED_PROGRAMS = (29, 30)  # GM overdriven guitar, distortion guitar (0-based)
Track = tuple[Part, np.ndarray]


@dataclass(frozen=True)
class ProductionConfig:
    """Song-independent settings of the production stage (levels in dB)."""

    ref_rms_db: float = -20.0  # every track is trimmed to this active RMS before its chain
    peak_range: tuple[float, float] = (0.5, 0.9)  # master: highest peak of mixture and stems
    max_peak: float = 0.9  # hard ceiling (after 24-bit rounding too)
    predelay_ms: tuple[float, float] = (5.0, 40.0)  # reverb pre-delay, per song
    room_size: tuple[float, float] = (0.25, 0.75)
    damping: tuple[float, float] = (0.3, 0.7)
    width: tuple[float, float] = (0.6, 1.0)  # reverb stereo width


@dataclass(frozen=True)
class Room:
    """The song's shared reverb room."""

    room_size: float
    damping: float
    width: float
    predelay_s: float


@dataclass(frozen=True)
class TrackParams:
    """Everything drawn for one track (also the manifest record, via :meth:`as_dict`)."""

    name: str
    stem: str
    kind: str
    hpf_hz: float
    low_shelf_db: float
    peak_hz: float
    peak_db: float
    peak_q: float
    high_shelf_db: float
    drive_db: float  # 0: no distortion
    cab_hz: float  # low-pass after distortion (0: none)
    comp_threshold_db: float
    comp_ratio: float
    comp_attack_ms: float
    comp_release_ms: float
    limit_db: float  # limiter ceiling below the track peak
    pan: float  # -1 (left) .. 1 (right)
    chorus_mix: float  # 0: no chorus
    chorus_rate_hz: float
    delay_s: float  # 0: no delay
    delay_feedback: float
    delay_mix: float
    level_db: float  # loudness relative to the lead vocal
    send_db: float  # reverb send (-inf: none)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, float):
                out[key] = round(value, 3) if math.isfinite(value) else None
            else:
                out[key] = value
        return out


@dataclass(frozen=True)
class Production:
    """A produced song: four stereo stems ``[2, N]``, their mixture ``[2, N]`` and the record.

    ``stems`` and ``mixture`` are float32 on the 24-bit grid with ``mixture == sum(stems)``
    exactly (summed in float64); silent stems are zeros.
    """

    stems: dict[str, np.ndarray]
    mixture: np.ndarray
    chain: dict[str, Any] = field(default_factory=dict)

    def stem_array(self) -> np.ndarray:
        """Stems stacked in :data:`STEMS` order, ``[4, 2, N]``."""
        return np.stack([self.stems[s] for s in STEMS])


# ---------------------------------------------------------------- level helpers


def active_rms(x: np.ndarray, frame: int = 2048, range_db: float = 40.0) -> float:
    """RMS of ``x`` ``[..., N]`` (channels averaged) over its ``frame``-sample blocks within
    ``range_db`` of the loudest block, so pauses do not lower a track's measured level."""
    a = np.asarray(x, dtype=np.float32)
    flat = a.reshape(-1, a.shape[-1]).mean(axis=0) if a.ndim > 1 else a
    n = flat.size // frame
    if n == 0:
        return float(np.sqrt(np.mean(np.square(flat, dtype=np.float64)))) if flat.size else 0.0
    blocks = flat[: n * frame].reshape(n, frame)
    power = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64) / frame
    if power.max() <= 0.0:
        return 0.0
    keep = power >= power.max() * 10.0 ** (-range_db / 10.0)
    return float(np.sqrt(power[keep].mean()))


def db_to_gain(db: float) -> float:
    return 0.0 if db == -math.inf else float(10.0 ** (db / 20.0))


def quantize24(x: np.ndarray) -> np.ndarray:
    """Round to the 24-bit grid ``k / 2**23`` (float64 arithmetic, float32 result, exact)."""
    return (np.round(np.asarray(x, dtype=np.float64) * GRID) / GRID).astype(np.float32)


def mixture_of(stems: Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Sum of stems (dict, list or ``[S, C, N]``) computed in float64, returned as float32."""
    arrays = list(stems.values()) if isinstance(stems, Mapping) else list(stems)
    if not arrays:
        raise StemtokError("cannot mix zero stems")
    total = np.zeros(np.shape(arrays[0]), dtype=np.float64)
    for a in arrays:
        total += np.asarray(a, dtype=np.float64)
    return total.astype(np.float32)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Mean over channels: ``[..., C, N]`` → ``[..., N]`` float32 (model domain).

    For 24-bit-grid stereo inputs below full scale the result is exact, so the mono stems of a
    :class:`Production` still sum exactly to the mono mixture.
    """
    a = np.asarray(audio, dtype=np.float64)
    if a.ndim < 2:
        raise StemtokError(f"expected [..., C, N] audio, got shape {a.shape}")
    return np.asarray((a.sum(axis=-2) / a.shape[-2]).astype(np.float32))


def mono(stems: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each stem ``[C, N]`` as mono ``[N]`` (mean of channels)."""
    return {name: to_mono(audio) for name, audio in stems.items()}


# ---------------------------------------------------------------- drawing parameters


def track_kind(part: Part) -> str:
    """Production role of a part: lead_vocal, backing_vocal, kick, drums, cymbals, bass,
    guitar_dist, guitar, keys, pad, lead or other."""
    name, role = part.name.lower(), part.role.lower()
    if part.stem == "vocals":
        backing = any(w in name or w in role for w in ("backing", "harmony", "choir", "double"))
        return "backing_vocal" if backing else "lead_vocal"
    if part.stem == "drums":
        if any(w in name for w in ("hat", "cymbal", "ride", "crash", "perc", "shaker", "tom")):
            return "cymbals"
        return "kick" if ("kick" in name or "snare" in name) else "drums"
    if part.stem == "bass":
        return "bass"
    if part.program in DISTORTED_PROGRAMS and not part.is_drum:
        return "guitar_dist"
    if role in ("guitar", "keys", "pad", "lead"):
        return role
    return _kind_from_program(part.program)


def _kind_from_program(program: int) -> str:
    if 24 <= program <= 31:
        return "guitar"
    if program <= 23:
        return "keys"
    if 88 <= program <= 103 or 48 <= program <= 55:
        return "pad"
    if 80 <= program <= 87 or 56 <= program <= 79:
        return "lead"
    return "other"


# kind: (high-pass Hz, level dB re lead vocal, reverb-to-dry dB, compressor ratio), as ranges
_KIND_TABLE: dict[
    str, tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]
] = {
    "lead_vocal": ((70.0, 120.0), (0.0, 0.0), (-20.0, -12.0), (2.5, 5.0)),
    "backing_vocal": ((120.0, 220.0), (-10.0, -5.0), (-16.0, -9.0), (2.5, 5.0)),
    "kick": ((25.0, 40.0), (-4.0, -1.0), (-30.0, -20.0), (2.0, 5.0)),
    "drums": ((25.0, 40.0), (-4.0, -1.0), (-30.0, -20.0), (2.0, 5.0)),
    "cymbals": ((200.0, 450.0), (-13.0, -7.0), (-26.0, -18.0), (1.5, 3.0)),
    "bass": ((25.0, 45.0), (-7.0, -3.0), (-60.0, -32.0), (3.0, 6.0)),
    "guitar_dist": ((80.0, 140.0), (-9.0, -4.0), (-24.0, -16.0), (1.5, 3.0)),
    "guitar": ((70.0, 140.0), (-9.0, -4.0), (-22.0, -14.0), (2.0, 4.0)),
    "keys": ((40.0, 100.0), (-9.0, -4.0), (-22.0, -14.0), (1.5, 3.0)),
    "pad": ((100.0, 250.0), (-12.0, -6.0), (-16.0, -9.0), (1.5, 2.5)),
    "lead": ((80.0, 160.0), (-8.0, -3.0), (-20.0, -12.0), (2.0, 4.0)),
    "other": ((40.0, 120.0), (-10.0, -5.0), (-22.0, -14.0), (1.5, 3.0)),
}
_CENTRE = ("lead_vocal", "bass", "kick", "drums")


def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def draw_track(
    part: Part, rng: np.random.Generator, *, side: float, n_other: int, tempo: float | None
) -> TrackParams:
    """Draw the effect parameters of one track (``side`` is ±1 for spread parts)."""
    kind = track_kind(part)
    hpf, level, send, ratio = _KIND_TABLE[kind]
    vocal = kind.endswith("vocal")
    pan = _u(rng, (-0.08, 0.08)) if kind in _CENTRE else side * _u(rng, (0.25, 0.8))
    if part.stem == "other":
        level = (
            level[0] - 5.0 * math.log10(max(n_other, 1)),
            level[1] - 5.0 * math.log10(max(n_other, 1)),
        )
    dist = kind == "guitar_dist"
    chorus = kind in ("guitar", "keys", "pad") and rng.random() < 0.35
    delay = (vocal or kind == "lead") and rng.random() < 0.4
    beat = 60.0 / tempo if tempo else _u(rng, (0.4, 0.6))
    return TrackParams(
        name=part.name,
        stem=part.stem,
        kind=kind,
        hpf_hz=_u(rng, hpf),
        low_shelf_db=_u(rng, (-3.0, 2.0)),
        peak_hz=float(np.exp(rng.uniform(np.log(300.0), np.log(5000.0)))),
        peak_db=_u(rng, (-4.0, 4.0)),
        peak_q=_u(rng, (0.7, 2.0)),
        high_shelf_db=_u(rng, (0.0, 4.0) if vocal else (-3.0, 3.0)),
        drive_db=_u(rng, (15.0, 30.0)) if dist else 0.0,
        cab_hz=_u(rng, (3500.0, 7000.0)) if dist else 0.0,
        comp_threshold_db=part_threshold(rng, kind),
        comp_ratio=_u(rng, ratio),
        comp_attack_ms=_u(rng, (10.0, 30.0) if part.stem == "drums" else (2.0, 20.0)),
        comp_release_ms=_u(rng, (60.0, 250.0)),
        limit_db=_u(rng, (0.5, 2.5)),
        pan=pan,
        chorus_mix=_u(rng, (0.2, 0.5)) if chorus else 0.0,
        chorus_rate_hz=_u(rng, (0.3, 1.5)) if chorus else 0.0,
        delay_s=beat * float(rng.choice([0.5, 0.75, 1.0])) if delay else 0.0,
        delay_feedback=_u(rng, (0.15, 0.35)) if delay else 0.0,
        delay_mix=_u(rng, (0.08, 0.2)) if delay else 0.0,
        level_db=_u(rng, level),
        send_db=_u(rng, send),
    )


def part_threshold(rng: np.random.Generator, kind: str) -> float:
    """Compressor threshold in dBFS for a track trimmed to the reference RMS (-20 dBFS)."""
    return _u(rng, (-22.0, -12.0) if kind in ("kick", "drums", "cymbals") else (-26.0, -16.0))


def draw_room(rng: np.random.Generator, cfg: ProductionConfig) -> Room:
    return Room(
        room_size=_u(rng, cfg.room_size),
        damping=_u(rng, cfg.damping),
        width=_u(rng, cfg.width),
        predelay_s=_u(rng, cfg.predelay_ms) / 1000.0,
    )


# ---------------------------------------------------------------- processing


def tone_chain(p: TrackParams) -> list[pb.Plugin]:
    """EQ and, for overdriven guitars, distortion with a cabinet low-pass (mono)."""
    plugins: list[pb.Plugin] = [
        pb.HighpassFilter(cutoff_frequency_hz=p.hpf_hz),
        pb.LowShelfFilter(cutoff_frequency_hz=200.0, gain_db=p.low_shelf_db),
        pb.PeakFilter(cutoff_frequency_hz=p.peak_hz, gain_db=p.peak_db, q=p.peak_q),
        pb.HighShelfFilter(cutoff_frequency_hz=8000.0, gain_db=p.high_shelf_db),
    ]
    if p.drive_db > 0.0:
        plugins += [pb.Distortion(drive_db=p.drive_db), pb.LowpassFilter(p.cab_hz)]
    return plugins


def dynamics(y: np.ndarray, p: TrackParams, rate: int) -> np.ndarray:
    """Compressor, then a brick-wall limiter ``limit_db`` under the compressed peak."""
    comp = pb.Compressor(
        threshold_db=p.comp_threshold_db,
        ratio=p.comp_ratio,
        attack_ms=p.comp_attack_ms,
        release_ms=p.comp_release_ms,
    )
    y = comp(y, rate)
    peak = float(np.abs(y).max())
    if peak <= 0.0:
        return y
    ceiling = 20.0 * math.log10(peak) - p.limit_db
    return np.asarray(pb.BrickwallLimiter(ceiling_db=ceiling, release_ms=100.0)(y, rate))


def stereo_chain(p: TrackParams) -> list[pb.Plugin]:
    """Chorus and delay, applied after panning."""
    plugins: list[pb.Plugin] = []
    if p.chorus_mix > 0.0:
        plugins.append(pb.Chorus(rate_hz=p.chorus_rate_hz, depth=0.3, mix=p.chorus_mix))
    if p.delay_s > 0.0:
        plugins.append(
            pb.Delay(delay_seconds=p.delay_s, feedback=p.delay_feedback, mix=p.delay_mix)
        )
    return plugins


def run_chain(plugins: Sequence[pb.Plugin], audio: np.ndarray, rate: int) -> np.ndarray:
    """Apply ``plugins`` in order to ``[C, N]`` float32 audio."""
    y = np.ascontiguousarray(audio, dtype=np.float32)
    for plugin in plugins:
        y = np.asarray(plugin(y, rate), dtype=np.float32)
    return y


def pan_stereo(x: np.ndarray, pan: float) -> np.ndarray:
    """Constant-power pan of mono ``[N]`` to ``[2, N]`` (pan -1 left .. 1 right)."""
    theta = (pan + 1.0) * math.pi / 4.0
    return np.stack([x * math.cos(theta), x * math.sin(theta)]).astype(np.float32)


def _ref_gain(x: np.ndarray, cfg: ProductionConfig) -> float:
    rms = active_rms(x)
    return db_to_gain(cfg.ref_rms_db) / rms if rms > 0.0 else 0.0


def process_track(x: np.ndarray, p: TrackParams, rate: int, cfg: ProductionConfig) -> np.ndarray:
    """One mono track ``[N]`` through its chain and pan, at its mix level: stereo ``[2, N]``."""
    y = run_chain(tone_chain(p), (x * _ref_gain(x, cfg))[None, :], rate)
    y = dynamics((y * _ref_gain(y, cfg)).astype(np.float32), p, rate)
    y = y * (_ref_gain(y, cfg) * db_to_gain(p.level_db))
    st = pan_stereo(y[0], p.pan)
    if p.chorus_mix > 0.0 or p.delay_s > 0.0:
        st = run_chain(stereo_chain(p), st, rate)
    return st


def reverb_return(bus: np.ndarray, room: Room, rate: int) -> np.ndarray:
    """Wet signal of the song's room for one stem's send bus ``[2, N]`` (pre-delayed).

    The return is scaled to the loudness of the bus itself, so a track's send level is its
    reverb-to-dry ratio whatever the room size (Freeverb's own gain grows with the room).
    """
    shift = round(room.predelay_s * rate)
    delayed = np.zeros_like(bus)
    delayed[:, shift:] = bus[:, : bus.shape[1] - shift]
    verb = pb.Reverb(
        room_size=room.room_size,
        damping=room.damping,
        wet_level=1.0,
        dry_level=0.0,
        width=room.width,
    )
    wet = np.asarray(verb(delayed.astype(np.float32), rate), dtype=np.float64)
    level = active_rms(wet)
    return wet * (active_rms(bus) / level) if level > 0.0 else wet


# ---------------------------------------------------------------- the whole song


def song_length(tracks: Sequence[tuple[Part, np.ndarray]], length: int | None) -> int:
    """``length``, or the longest track's when None; a one-line error when there is nothing."""
    n = (
        length
        if length is not None
        else max((np.asarray(x).shape[-1] for _, x in tracks), default=0)
    )
    if n <= 0:
        raise StemtokError("nothing to produce: no tracks and no length given")
    return int(n)


def pad_track(audio: np.ndarray, name: str, n: int) -> np.ndarray:
    """A track as mono float32 ``[n]``: cut to ``n`` samples or padded with silence."""
    x = np.zeros(n, dtype=np.float32)
    a = _as_mono(audio, name)[:n]
    x[: a.size] = a
    return x


def _as_mono(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1:
        raise StemtokError(f"track {name!r}: expected mono audio [N], got shape {a.shape}")
    if not np.isfinite(a).all():
        raise StemtokError(f"track {name!r}: contains NaN or infinite samples")
    return a


def _draw_all(
    tracks: Sequence[Track], rng: np.random.Generator, tempo: float | None
) -> list[TrackParams]:
    n_other = sum(1 for part, _ in tracks if part.stem == "other")
    side = 1.0 if rng.random() < 0.5 else -1.0
    params = []
    for part, _ in tracks:
        params.append(draw_track(part, rng, side=side, n_other=n_other, tempo=tempo))
        if params[-1].kind not in _CENTRE:
            side = -side
    return params


def _master(
    stems: dict[str, np.ndarray], rng: np.random.Generator, cfg: ProductionConfig
) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Common gain to a drawn peak, 24-bit rounding, exact mixture."""
    mix = sum(stems.values(), np.zeros_like(next(iter(stems.values()))))
    peak = max([float(np.abs(mix).max())] + [float(np.abs(s).max()) for s in stems.values()])
    target = min(_u(rng, cfg.peak_range), cfg.max_peak - 4.0 / GRID)
    gain = target / peak if peak > 0.0 else 0.0
    q = {name: quantize24(s * gain) for name, s in stems.items()}
    return q, mixture_of(q), gain


def produce(
    tracks: Sequence[Track],
    *,
    rate: int = MODEL_RATE,
    seed: int,
    tempo: float | None = None,
    length: int | None = None,
    cfg: ProductionConfig = ProductionConfig(),
) -> Production:
    """Mix a song's rendered tracks into four stereo stems and their exact mixture.

    Parameters
    ----------
    tracks
        ``(Part, audio)`` pairs, audio mono ``[N_i]`` float at ``rate``; shorter tracks are
        padded with silence to the longest (or to ``length``; longer ones are cut).
    seed
        Seeds every random choice, so equal inputs give equal outputs.
    tempo
        BPM for tempo-synced delays (random delay times when None).

    Returns
    -------
    Production
        ``stems[name]`` ``[2, N]`` for every name in :data:`STEMS` (zeros when silent),
        ``mixture`` ``[2, N]``, ``chain`` for the manifest.
    """
    n = song_length(tracks, length)
    rng = np.random.default_rng(seed)
    room = draw_room(rng, cfg)
    params = _draw_all(tracks, rng, tempo)
    dry = {s: np.zeros((2, n), dtype=np.float64) for s in STEMS}
    bus = {s: np.zeros((2, n), dtype=np.float64) for s in STEMS}
    records: list[dict[str, Any]] = []
    for (part, audio), p in zip(tracks, params, strict=True):
        x = pad_track(audio, part.name, n)
        if float(np.abs(x).max()) < SILENCE:  # nothing (or only dither) rendered
            records.append({"name": part.name, "stem": part.stem, "silent": True})
            continue
        y = process_track(x, p, rate, cfg)
        dry[part.stem] += y
        bus[part.stem] += y * db_to_gain(p.send_db)
        records.append(p.as_dict())
    wet = {
        s: dry[s] + (reverb_return(bus[s], room, rate) if np.any(bus[s]) else 0.0) for s in STEMS
    }
    stems, mixture, gain = _master(wet, rng, cfg)
    chain = {
        "seed": seed,
        "room": {k: round(v, 4) for k, v in room.__dict__.items()},
        "master_gain_db": round(20.0 * math.log10(gain), 3) if gain > 0 else None,
        "peak": round(float(np.abs(mixture).max()), 4),
        "tracks": records,
    }
    return Production(stems, mixture, chain)
