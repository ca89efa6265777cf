"""What a multitrack set holds: counts, lengths and the diversity of its songs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from engine.data import musdb
from engine.errors import StemtokError

GM_FAMILIES = (
    "piano", "chromatic perc.", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth lead", "synth pad", "synth fx", "ethnic", "percussive", "sound fx",
)  # fmt: skip


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
