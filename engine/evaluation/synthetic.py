"""Tiny synthetic songs with true stems, in numpy, for tests and the example report.

This is *not* the data factory (:mod:`engine.data` renders real instruments and singing); it is a
seeded, dependency-free stand-in with the properties a separation metric cares about: a
centre-panned vibrato "voice" in the vocal range with rests, a kick/snare/hi-hat pattern, a low bass
line that follows the chords, and chord pads panned off-centre. The mixture is the sum of the stems.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.data.musdb import Track, write_track

_CHORDS = ((0, 4, 7), (9, 12, 16), (5, 9, 12), (7, 11, 14))  # I vi IV V, semitones over the key


@dataclass(frozen=True)
class ToySongConfig:
    """One synthetic song: length, rate, channels, tempo and key."""

    seconds: float = 8.0
    rate: int = 44_100
    channels: int = 2
    bpm: float = 120.0
    key_hz: float = 110.0
    vocals: bool = True  # False: the vocal stem is digital silence


def _hz(key_hz: float, semitones: float) -> float:
    return float(key_hz * 2.0 ** (semitones / 12.0))


def _tone(freq: np.ndarray | float, n: int, rate: int, partials: int, phase: float) -> np.ndarray:
    """Harmonic tone ``[n]`` with 1/k partial amplitudes (frequency may vary per sample)."""
    inst = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    base = 2.0 * np.pi * np.cumsum(inst) / rate + phase
    return np.asarray(np.sum([np.sin(k * base) / k for k in range(1, partials + 1)], axis=0))


def _envelope(n: int, rate: int, attack: float, release: float) -> np.ndarray:
    t = np.arange(n) / rate
    return np.asarray(
        np.minimum(1.0, t / attack) * np.minimum(1.0, (n / rate - t) / release).clip(0.0)
    )


def _pan(mono: np.ndarray, channels: int, pan: float) -> np.ndarray:
    """``[C, N]`` with constant-power panning (-1 left, 0 centre, 1 right)."""
    if channels == 1:
        return mono[None, :]
    angle = (pan + 1.0) * np.pi / 4.0
    gains = [np.cos(angle), np.sin(angle)] + [np.sqrt(0.5)] * (channels - 2)
    return np.asarray(np.stack([g * mono for g in gains]) * np.sqrt(2.0))


def _place(out: np.ndarray, start: int, sound: np.ndarray) -> None:
    end = min(out.shape[-1], start + sound.shape[-1])
    if end > start:
        out[..., start:end] += sound[..., : end - start]


def _bar_chords(cfg: ToySongConfig, n: int) -> list[tuple[int, tuple[int, ...]]]:
    bar = round(4 * 60.0 / cfg.bpm * cfg.rate)
    return [(b, _CHORDS[i % len(_CHORDS)]) for i, b in enumerate(range(0, n, bar))]


def _bass(cfg: ToySongConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    beat = round(60.0 / cfg.bpm * cfg.rate)
    for start, chord in _bar_chords(cfg, n):
        for k in range(4):
            note = _tone(_hz(cfg.key_hz / 2, chord[0]), beat, cfg.rate, 4, rng.uniform(0, 6))
            _place(out, start + k * beat, 0.35 * note * _envelope(beat, cfg.rate, 0.01, 0.05))
    return _pan(out, cfg.channels, 0.0)


def _drums(cfg: ToySongConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros((cfg.channels, n))
    eighth = round(30.0 / cfg.bpm * cfg.rate)
    t = np.arange(round(0.25 * cfg.rate)) / cfg.rate
    kick = np.sin(2 * np.pi * np.cumsum(50 + 90 * np.exp(-t / 0.03)) / cfg.rate) * np.exp(-t / 0.08)
    for i, start in enumerate(range(0, n, eighth)):
        if i % 4 == 0:
            _place(out, start, _pan(0.6 * kick, cfg.channels, 0.0))
        if i % 4 == 2:
            snare = rng.standard_normal(t.size) * np.exp(-t / 0.05) * 0.25
            _place(out, start, _pan(snare, cfg.channels, 0.1))
        hat = np.diff(rng.standard_normal(t.size + 1)) * np.exp(-t / 0.012) * 0.08
        _place(out, start, _pan(hat, cfg.channels, 0.4))
    return out


def _other(cfg: ToySongConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros((cfg.channels, n))
    for start, chord in _bar_chords(cfg, n):
        length = min(n - start, round(4 * 60.0 / cfg.bpm * cfg.rate))
        env = _envelope(length, cfg.rate, 0.08, 0.2)
        for j, semis in enumerate(chord):
            note = _tone(_hz(cfg.key_hz * 2, semis), length, cfg.rate, 6, rng.uniform(0, 6))
            _place(out, start, _pan(0.1 * note * env, cfg.channels, (-0.7, 0.6, -0.3)[j]))
    return out


def _vocals(cfg: ToySongConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    beat = round(60.0 / cfg.bpm * cfg.rate)
    scale = (0, 2, 4, 5, 7, 9, 11, 12)
    for i, start in enumerate(range(0, n, beat)):
        if i % 8 == 7:  # a rest every second bar
            continue
        length = beat
        t = np.arange(length) / cfg.rate
        freq = _hz(cfg.key_hz * 4, scale[rng.integers(len(scale))]) * (
            1.0 + 0.012 * np.sin(2 * np.pi * 5.5 * t)
        )
        note = _tone(freq, length, cfg.rate, 8, 0.0) * _envelope(length, cfg.rate, 0.03, 0.06)
        _place(out, start, 0.2 * note)
    return _pan(out, cfg.channels, 0.0)


def make_toy_song(cfg: ToySongConfig, seed: int) -> dict[str, np.ndarray]:
    """``stem -> [C, N]`` float32 for one song; the mixture (their sum) peaks below 0.9."""
    rng = np.random.default_rng(seed)
    n = round(cfg.seconds * cfg.rate)
    stems = {
        "vocals": _vocals(cfg, n, rng) if cfg.vocals else np.zeros((cfg.channels, n)),
        "drums": _drums(cfg, n, rng),
        "bass": _bass(cfg, n, rng),
        "other": _other(cfg, n, rng),
    }
    peak = float(np.abs(sum(stems.values(), np.zeros((cfg.channels, n)))).max())
    scale = 0.9 / peak if peak > 0.9 else 1.0
    return {k: (v * scale).astype(np.float32) for k, v in stems.items()}


def write_set(
    root: str | os.PathLike[str],
    songs: int = 2,
    cfg: ToySongConfig = ToySongConfig(),
    seed: int = 0,
) -> list[Track]:
    """Write ``songs`` songs as ``<root>/test/song-NN/{mixture,vocals,drums,bass,other}.wav``."""
    out = []
    for i in range(songs):
        song_cfg = ToySongConfig(**{**cfg.__dict__, "key_hz": cfg.key_hz * 2 ** (i % 5 / 12)})
        stems = make_toy_song(song_cfg, seed + i)
        out.append(write_track(Path(root) / "test" / f"song-{i:02d}", stems, cfg.rate))
    return out
