"""Production of generator version 2: per-track chains, sidechain pumping, reverbs, mix bus.

The steps (the exactness argument is in :mod:`engine.data.production` and
:mod:`engine.data.mixbus`):

1. every track through its drawn chain (:mod:`engine.data.chains`);
2. sidechain pumping: tracks of the roles in :data:`DUCKED` (pads, synth chords, basses) are
   multiplied by a ducking curve keyed from the kick's notes (a dip of ``depth`` dB that
   recovers over ``release`` of a beat); it is applied to a track, before stems are summed, so
   it belongs to that track's stem;
3. tracks summed into their stems, plus each stem's returns of the song's two convolution
   reverbs;
4. the mix bus (:func:`engine.data.mixbus.master_gain`): one gain curve computed from the
   mixture, applied to every stem; stems rounded to the 24-bit grid; the mixture is their sum.
   Should a single stem exceed the ceiling (stems that cancel in the sum), all stems get one
   common scale so that none does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.constants import MODEL_RATE, STEMS
from engine.data import chains, mixbus
from engine.data import production as v1

F64 = npt.NDArray[np.float64]
_CFG = v1.ProductionConfig()
KICK_KEYS = (35, 36)
#: Kinds (see :func:`chains._kind`) and roles that duck under the kick.
DUCKED = ("pad", "bass", "bass_dist", "supersaw", "keys", "lead")
#: Integrated loudness range (LUFS) per genre: loud genres louder.
LOUDNESS: dict[str, tuple[float, float]] = {
    "rock": (-11.0, -7.0),
    "edm": (-10.0, -7.0),
    "electronic": (-11.0, -7.0),
    "hip-hop": (-11.0, -7.0),
    "pop": (-12.0, -8.0),
}
DEFAULT_LOUDNESS = (-14.0, -9.0)
#: Sidechain depth (dB) per genre; others get none.
PUMP: dict[str, tuple[float, float]] = {
    "edm": (4.0, 10.0),
    "electronic": (3.0, 8.0),
    "pop": (1.0, 4.0),
    "hip-hop": (1.0, 4.0),
}


def kick_times(tracks: Sequence[v1.Track]) -> list[float]:
    """Onsets (s) of the kick drum notes of every drum part."""
    return sorted(
        n.start for part, _ in tracks if part.is_drum for n in part.notes if n.pitch in KICK_KEYS
    )


def duck_curve(
    onsets: Sequence[float], n: int, rate: int, depth_db: float, release_s: float
) -> F64:
    """Gain ``[n]`` that dips by ``depth_db`` 5 ms after each onset and recovers over
    ``release_s`` (a raised-cosine shape, like a compressor keyed from the kick)."""
    gain = np.ones(n)
    floor = 10.0 ** (-depth_db / 20.0)
    attack, rel = round(0.005 * rate), max(1, round(release_s * rate))
    shape = np.concatenate(
        [
            np.linspace(1.0, floor, attack, endpoint=False),
            floor + (1 - floor) * 0.5 * (1 - np.cos(np.linspace(0, math.pi, rel))),
        ]
    )
    for t in onsets:
        k = round(t * rate)
        if k >= n:
            continue
        seg = shape[: n - k]
        np.minimum(gain[k : k + seg.size], seg, out=gain[k : k + seg.size])
    return gain


def room_mic(kit: F64, ir: F64, level_db: float) -> F64:
    """Room microphones of an acoustic kit ``[2, N]``: the kit in a small room, squashed (a
    hard tanh), ``level_db`` under the close mics."""
    wet = chains.convolve_return(kit, ir)
    peak = float(np.abs(wet).max())
    if peak <= 0.0:
        return wet
    squashed = np.tanh(4.0 * wet / peak) * (
        v1.active_rms(wet) / max(v1.active_rms(np.tanh(4.0 * wet / peak)), 1e-12)
    )
    return np.asarray(squashed * 10.0 ** (level_db / 20.0))


def produce_record(
    tracks: Sequence[v1.Track],
    *,
    rate: int = MODEL_RATE,
    seed: int,
    tempo: float,
    genre: str,
    length: int | None = None,
    cfg: v1.ProductionConfig = _CFG,
) -> v1.Production:
    """Mix and master ``(Part, mono audio)`` tracks into four stereo stems and their exact sum.

    Same contract as :func:`engine.data.production.produce`; the mixture is mastered to a
    loudness drawn from :data:`LOUDNESS` for ``genre`` (BS.1770 integrated, LUFS).
    """
    n = v1.song_length(tracks, length)
    rng = np.random.default_rng([seed, 2])
    heat = chains.HEAT.get(genre, 0.5)
    verbs = chains.draw_verbs(rng)
    irs = [chains.impulse_response(v, rate, seed + k) for k, v in enumerate(verbs)]
    room_ir = chains.impulse_response(chains.Verb("room", 0.5, 0.5, 0.0, 3000.0), rate, seed + 7)
    pump = PUMP.get(genre)
    depth = float(rng.uniform(*pump)) if pump else 0.0
    duck = duck_curve(kick_times(tracks), n, rate, depth, float(rng.uniform(0.4, 0.8)) * 60 / tempo)
    n_other = sum(1 for part, _ in tracks if part.stem == "other")
    side = 1.0 if rng.random() < 0.5 else -1.0
    dry = {s: np.zeros((2, n)) for s in STEMS}
    sends = {(s, k): np.zeros((2, n)) for s in STEMS for k in range(len(verbs))}
    records: list[dict[str, Any]] = []
    for part, audio in tracks:
        c = chains.draw_chain(part, rng, side=side, n_other=n_other, tempo=tempo, heat=heat)
        side = -side if c.kind not in v1._CENTRE else side
        x = v1.pad_track(audio, part.name, n)
        if float(np.abs(x).max()) < v1.SILENCE:
            records.append({"name": part.name, "stem": part.stem, "silent": True})
            continue
        y = chains.process(x, c, rate, cfg).astype(np.float64)
        ducked = depth > 0 and (c.kind in DUCKED or part.role in DUCKED) and not part.is_drum
        if ducked:
            y *= duck
        if part.is_drum and part.role != "synth_kit" and rng.random() < 0.7:
            y += room_mic(y, room_ir, float(rng.uniform(-14.0, -5.0)))
        dry[part.stem] += y
        sends[(part.stem, c.verb)] += y * v1.db_to_gain(c.send_db)
        records.append({**c.as_dict(), "ducked": ducked})
    for (stem, k), bus in sends.items():
        if np.any(bus):
            dry[stem] += chains.convolve_return(bus, irs[k])
    stems, mixture, bus_record = master(dry, rng, rate, LOUDNESS.get(genre, DEFAULT_LOUDNESS))
    chain = {
        "seed": seed,
        "version": 2,
        "genre": genre,
        "heat": heat,
        "reverbs": [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.__dict__.items()}
            for r in verbs
        ],
        "sidechain_db": round(depth, 2),
        "bus": bus_record,
        "peak": round(float(np.abs(mixture).max()), 4),
        "tracks": records,
    }
    return v1.Production(stems, mixture, chain)


def master(
    stems: dict[str, F64],
    rng: np.random.Generator,
    rate: int,
    loud: tuple[float, float],
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """Mix bus on ``stems`` (``[2, N]`` each): shared gain, 24-bit rounding, exact mixture."""
    params = mixbus.draw_bus(rng, loud)
    mix = sum(stems.values(), np.zeros_like(next(iter(stems.values()))))
    result = mixbus.master_gain(mix, params, rate, stems=list(stems.values()))
    out = {name: s * result.gain for name, s in stems.items()}
    peak = max(
        [float(np.abs(mix * result.gain).max())] + [float(np.abs(s).max()) for s in out.values()]
    )
    limit = 10.0 ** (params.ceiling_db / 20.0) - 4.0 / v1.GRID
    scale = min(1.0, limit / peak) if peak > 0 else 1.0
    q = {name: v1.quantize24(s * scale) for name, s in out.items()}
    record = {
        **{k: round(v, 3) for k, v in params.__dict__.items()},
        "drive_db": round(result.drive_db, 3),
        "comp_max_db": round(result.comp_max_db, 3),
        "limit_max_db": round(result.limit_max_db, 3),
        "safety_scale_db": round(20 * math.log10(scale), 3) if scale > 0 else None,
    }
    return q, v1.mixture_of(q), record
