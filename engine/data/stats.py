"""What a multitrack set holds: counts, lengths, the diversity of its songs, and how it sounds.

:func:`audio_stats` reads every song's files and measures, per song: the mixture's integrated
loudness (ITU-R BS.1770-4, LUFS), crest factor (peak over RMS, dB) and sample peak (dBFS); the
loudness and spectral centroid (Hz) of every stem; and the vocal range, from the YIN pitch of
the vocal stem (:func:`engine.data.pitch.yin`): the 5th, 50th and 95th percentile of the sung
MIDI pitch and their span in semitones. :func:`distributions` summarises them over the set
(min, 10th percentile, median, 90th percentile, max).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from engine.data import musdb
from engine.data.loudness import crest_factor_db, integrated_loudness, spectral_centroid_hz
from engine.data.midi_import import GM_FAMILIES
from engine.data.pitch import yin
from engine.errors import StemtokError


def summarise(root: Path) -> dict[str, Any]:
    """A summary from ``root/manifest.json`` when present, else from the files themselves."""
    if not root.is_dir():
        raise StemtokError(f"{root}: no such folder")
    manifest = root / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if m.get("kind") != "pseudo-labels":  # those list sources, not rendered parts
            return _from_manifest(m)
    return _from_files(root)


def _from_files(root: Path) -> dict[str, Any]:
    tracks = musdb.list_tracks(root)
    splits: Counter[str] = Counter()
    seconds: dict[str, float] = {}
    rates: Counter[int] = Counter()
    for t in tracks:
        info = t.check()
        split = t.split or "-"
        splits[split] += 1
        seconds[split] = seconds.get(split, 0.0) + info.duration
        rates[info.rate] += 1
    return {
        "songs": len(tracks),
        "minutes": round(sum(seconds.values()) / 60, 2),
        "splits": {
            k: {"songs": v, "minutes": round(seconds[k] / 60, 2)} for k, v in splits.items()
        },
        "rates": dict(rates),
    }


def _range(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values, dtype=np.float64)
    return {
        "min": round(float(a.min()), 2),
        "median": round(float(np.median(a)), 2),
        "max": round(float(a.max()), 2),
    }


def _from_manifest(m: dict[str, Any]) -> dict[str, Any]:
    songs = m["songs"]
    parts = [p for s in songs for p in s["parts"]]
    melodic = [p for p in parts if not p["drum"]]
    render = [s["render"] for s in songs]
    vad = [s["vad"]["ratio"] for s in songs]
    splits = {
        k: {
            "songs": sum(1 for s in songs if s["split"] == k),
            "minutes": round(sum(s["duration"] for s in songs if s["split"] == k) / 60, 2),
        }
        for k in ("train", "valid", "test")
    }
    return {
        "songs": len(songs),
        "minutes": round(m["total_seconds"] / 60, 2),
        "generator": m["generator"],
        "splits": splits,
        "song_seconds": _range([s["duration"] for s in songs]),
        "tempo_bpm": _range([s["tempo"] for s in songs]),
        "keys": dict(Counter(s["key"] for s in songs).most_common()),
        "styles": dict(Counter(s["style"] or "-" for s in songs).most_common()),
        "sources": dict(Counter(s["source"].split(":")[0] for s in songs).most_common()),
        "programs": len({p["program"] for p in melodic}),
        "program_families": dict(
            Counter(
                GM_FAMILIES[p["program"] // 8] for p in melodic if p["stem"] == "other"
            ).most_common()
        ),
        "other_parts_per_song": _range(
            [sum(p["stem"] == "other" for p in s["parts"]) for s in songs]
        ),
        "fonts": dict(Counter(r.get("font") or "-" for r in render).most_common()),
        "drums": dict(
            Counter(r.get("kit") or "GM (FluidSynth/numpy)" for r in render).most_common()
        ),
        "singers": dict(Counter(r.get("singer") or "-" for r in render).most_common()),
        "voices": dict(
            Counter(p["voice"] or "-" for p in parts if p["stem"] == "vocals").most_common()
        ),
        "vocal_activity_ratio": _range(vad),
        "vad_methods": dict(Counter(s["vad"]["method"] for s in songs).most_common()),
    }


def format_text(s: dict[str, Any]) -> str:
    lines = [f"{s['songs']} songs, {s['minutes']} min"]
    for key, value in s.items():
        if key in ("songs", "minutes"):
            continue
        lines.append(f"  {key}: {_flat(value)}")
    return "\n".join(lines)


def _flat(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_flat(x)}" for k, x in v.items())
    return str(v)


def format_markdown(s: dict[str, Any]) -> str:
    rows = [
        "| what | value |",
        "|---|---|",
        f"| songs | {s['songs']} |",
        f"| minutes | {s['minutes']} |",
    ]
    for key, value in s.items():
        if key in ("songs", "minutes"):
            continue
        rows.append(f"| {key.replace('_', ' ')} | {_flat(value)} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- audio measurements

QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)
QUANTILE_NAMES = ("min", "p10", "median", "p90", "max")


def vocal_range(vocals: np.ndarray, rate: int) -> dict[str, float]:
    """5th/50th/95th percentile of the sung MIDI pitch of ``[C, N]`` and their span."""
    _, f0 = yin(np.asarray(vocals, np.float64).mean(axis=0), rate)
    f0 = f0[np.isfinite(f0)]
    if f0.size < 10:
        return {}
    midi = 69.0 + 12.0 * np.log2(f0 / 440.0)
    lo, mid, hi = (float(np.percentile(midi, q)) for q in (5, 50, 95))
    return {
        "vocal_p5_midi": lo,
        "vocal_median_midi": mid,
        "vocal_p95_midi": hi,
        "vocal_span_semitones": hi - lo,
    }


def song_audio_stats(track: musdb.Track) -> dict[str, float]:
    """The measurements of one song (see the module docstring)."""
    audio = track.load()
    rate, mix = audio.rate, np.asarray(audio.mixture, np.float64)
    out = {
        "mixture_lufs": integrated_loudness(mix, rate),
        "mixture_crest_db": crest_factor_db(mix),
        "mixture_peak_dbfs": 20.0 * float(np.log10(max(float(np.abs(mix).max()), 1e-12))),
        "mixture_centroid_hz": spectral_centroid_hz(mix, rate),
    }
    for stem, x in audio.stems.items():
        if np.any(x):
            out[f"{stem}_lufs"] = integrated_loudness(x, rate)
            out[f"{stem}_centroid_hz"] = spectral_centroid_hz(x, rate)
    if "vocals" in audio.stems and np.any(audio.stems["vocals"]):
        out.update(vocal_range(audio.stems["vocals"], rate))
    return {k: v for k, v in out.items() if np.isfinite(v)}


def audio_stats(root: Path, max_songs: int | None = None) -> list[dict[str, float]]:
    """Per-song measurements of the songs under ``root`` (the first ``max_songs`` when given)."""
    tracks = [t for t in musdb.list_tracks(root) if t.has_mixture]
    return [song_audio_stats(t) for t in tracks[:max_songs]]


def distributions(per_song: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """``metric -> {n, min, p10, median, p90, max}`` over the songs that have the metric."""
    keys = sorted({k for song in per_song for k in song}, key=_metric_order)
    out = {}
    for key in keys:
        values = np.asarray([s[key] for s in per_song if key in s], np.float64)
        qs = np.quantile(values, QUANTILES)
        out[key] = {
            "n": float(values.size),
            **{n: round(float(q), 2) for n, q in zip(QUANTILE_NAMES, qs, strict=True)},
        }
    return out


def _metric_order(key: str) -> tuple[int, str]:
    order = ("mixture", "vocal_", "vocals", "drums", "bass", "other")
    return next((i for i, p in enumerate(order) if key.startswith(p)), len(order)), key


def format_distributions(dist: dict[str, dict[str, float]], markdown: bool = False) -> str:
    """A table of :func:`distributions` (Markdown or aligned text)."""
    head = ["metric", "n", *QUANTILE_NAMES]
    rows = [
        [k, str(int(v["n"])), *(f"{v[q]:.2f}" for q in QUANTILE_NAMES)] for k, v in dist.items()
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [head, *rows]
    )
