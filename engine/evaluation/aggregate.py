"""From per-song scores to the numbers in the tables.

- Per system and stem, over the songs where that stem's reference is not silent: the **mean**
  and **median** of each metric and the number of songs ``n``.
- The table value ("headline") is the mean, except for SDR (BSS-Eval v4), where it is the median
  over songs of the per-song median over 1-s frames, as in SiSEC/MUSDB reports.
- ``avg`` per system and metric: the mean of the four stems' headline values (the paper's "Avg"),
  over the stems that have one (``avg_n`` says how many).
- Speed: RTF = total separation seconds / total audio seconds over the songs; peak RSS is the
  largest over the songs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from engine.constants import STEMS
from engine.evaluation.runner import SeparationRun

#: Metric key -> (label, higher is better).
METRICS: dict[str, tuple[str, bool]] = {
    "visqol": ("ViSQOL", True),
    "dnsmos_sig": ("DNSMOS SIG", True),
    "dnsmos_bak": ("DNSMOS BAK", True),
    "dnsmos_ovrl": ("DNSMOS OVRL", True),
    "nisqa_mos": ("NISQA MOS", True),
    "nisqa_noi": ("NISQA noisiness", True),
    "nisqa_dis": ("NISQA discontinuity", True),
    "nisqa_col": ("NISQA coloration", True),
    "nisqa_loud": ("NISQA loudness", True),
    "sdr": ("SDR (BSS-Eval v4, dB)", True),
    "si_sdr": ("SI-SDR (dB)", True),
    "usdr": ("uSDR (dB)", True),
    "mrstft": ("MR-STFT distance", False),
    "logmel_l1": ("log-mel L1", False),
}
MEDIAN_HEADLINE = frozenset({"sdr"})


def _flatten(stem_scores: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in stem_scores.items():
        if isinstance(value, Mapping):
            out.update({f"{key}_{k}": float(v) for k, v in value.items()})
        elif value is not None and math.isfinite(float(value)):
            out[key] = float(value)
    return out


def _stats(values: Sequence[float], metric: str) -> dict[str, float | int]:
    mean, median = statistics.fmean(values), statistics.median(values)
    headline = median if metric in MEDIAN_HEADLINE else mean
    return {"value": headline, "mean": mean, "median": median, "n": len(values)}


def _system_summary(songs: Sequence[Mapping[str, Any]], system: str) -> dict[str, Any]:
    per_stem: dict[str, dict[str, list[float]]] = {s: {} for s in STEMS}
    for song in songs:
        for stem, scores in song["systems"][system]["stems"].items():
            for metric, value in _flatten(scores).items():
                per_stem[stem].setdefault(metric, []).append(value)
    stems = {s: {m: _stats(v, m) for m, v in per_stem[s].items()} for s in STEMS}
    avg: dict[str, Any] = {}
    for metric in METRICS:
        values = [stems[s][metric]["value"] for s in STEMS if metric in stems[s]]
        if values:
            avg[metric] = {"value": statistics.fmean(values), "n_stems": len(values)}
    return {"stems": stems, "avg": avg}


def _mean_scores(scores: Sequence[Mapping[str, float]]) -> dict[str, float] | None:
    """Key-wise mean of score dicts plus ``n``; ``None`` for none."""
    if not scores:
        return None
    return {k: statistics.fmean(s[k] for s in scores) for k in scores[0]} | {"n": len(scores)}


def _reference_nisqa(songs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Mean NISQA of each true stem over the songs where it is scored."""
    refs = [s.get("reference_nisqa") or {} for s in songs]
    per_stem = {stem: _mean_scores([r[stem] for r in refs if stem in r]) for stem in STEMS}
    return per_stem if any(per_stem.values()) else None


def summarise(songs: Sequence[Mapping[str, Any]], systems: Sequence[str]) -> dict[str, Any]:
    """Aggregates per system, the true stems' DNSMOS (vocals) and NISQA, and the
    silent-reference cases."""
    ref_dnsmos = _mean_scores([s["reference_dnsmos"] for s in songs if s.get("reference_dnsmos")])
    silent = [
        {
            "song": s["song"],
            "stem": stem,
            "estimate_rms_db": {
                n: s["systems"][n]["silent"][stem]["estimate_rms_db"] for n in systems
            },
        }
        for s in songs
        for stem in s["silent_stems"]
    ]
    return {
        "systems": {n: _system_summary(songs, n) for n in systems},
        "reference_dnsmos": ref_dnsmos,
        "reference_nisqa": _reference_nisqa(songs),
        "silent": silent,
        "songs": len(songs),
        "seconds": sum(s["seconds"] for s in songs),
    }


def speed(
    runs: Sequence[SeparationRun], idle: Mapping[str, float | None], systems: Sequence[str]
) -> dict[str, Any]:
    """RTF, CPU RTF and peak RSS per built-in system, plus the per-song runs."""
    idle_values = [v for v in idle.values() if v is not None]
    idle_peak = max(idle_values) if idle_values else None
    out: dict[str, Any] = {"idle_rss_mib": idle_peak, "systems": {}, "runs": []}
    for name in systems:
        mine = [r for r in runs if r.system == name]
        audio = sum(r.audio_seconds for r in mine)
        rss = [r.peak_rss_mib for r in mine if r.peak_rss_mib is not None]
        peak = max(rss) if rss else None
        deltas = [
            r.peak_rss_mib - base
            for r in mine
            if r.peak_rss_mib is not None and (base := idle.get(r.song)) is not None
        ]
        out["systems"][name] = {
            "rtf": sum(r.seconds for r in mine) / audio if audio else None,
            "cpu_rtf": sum(r.cpu_seconds for r in mine) / audio if audio else None,
            "seconds": sum(r.seconds for r in mine),
            "audio_seconds": audio,
            "peak_rss_mib": peak,
            "rss_over_idle_mib": max(deltas) if deltas else None,
        }
    out["runs"] = [
        {
            "system": r.system,
            "song": r.song,
            "audio_seconds": r.audio_seconds,
            "seconds": r.seconds,
            "cpu_seconds": r.cpu_seconds,
            "peak_rss_mib": r.peak_rss_mib,
        }
        for r in runs
    ]
    return out
