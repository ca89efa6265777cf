"""Score one song: every system against the references, each metric per stem.

Reference-side work (the optional codec round trip, silence flags, 48 kHz mono copies, STFT and
log-mel features, DNSMOS of the true vocals, NISQA of the true stems) is done once per song and
shared by all systems; the parts worth keeping between runs (transformed references, the
reference DNSMOS and NISQA) are cached on disk under ``cache_dir``, keyed by the files' size and
mtime and the settings (and, for NISQA, the weights file).

A stem whose reference is silent (RMS below ``silence_db``) is not scored: its entry lists the
level of each system's estimate instead (how much leaks into a stem that should be empty).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import dsp
from engine.atomic import atomic_path, write_json
from engine.constants import STEMS
from engine.data.musdb import Track, TrackAudio
from engine.evaluation import metrics as M
from engine.evaluation import nisqa as N
from engine.evaluation import perceptual as P
from engine.evaluation.systems import SystemSpec, load_estimates
from engine.evaluation.transforms import Transform

CACHE_VERSION = 1
#: What ``--metrics`` runs unless told otherwise; ``nisqa`` needs its weights, so it is asked for.
DEFAULT_METRICS: tuple[str, ...] = ("visqol", "dnsmos", "sdr", "si_sdr", "mrstft", "logmel")
ALL_METRICS: tuple[str, ...] = (*DEFAULT_METRICS, "nisqa")
_SPECTRAL_RATE = P.VISQOL_RATE  # spectral distances are taken on 48 kHz mono, like ViSQOL


@dataclass(frozen=True)
class ScoreSettings:
    """What to compute and how (shared by every song of a run)."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    silence_db: float = M.SILENCE_DB
    max_seconds: float | None = None
    length_tolerance_s: float = 0.05
    cache_dir: Path | None = None
    nisqa_weights: Path | None = None  # checked before the run; needed when "nisqa" is asked


@dataclass(frozen=True)
class SongTask:
    """Everything a worker needs to score one song (picklable)."""

    track: Track
    systems: tuple[SystemSpec, ...]
    separated: Mapping[str, Path]  # built-in system -> .npy of its [S, C, N] estimates
    settings: ScoreSettings
    transform: Transform


@dataclass
class Reference:
    """Reference-side features of one song, computed once."""

    rate: int
    stems: dict[str, np.ndarray]  # transformed references [C, N]
    level_db: dict[str, float]
    silent: dict[str, bool]
    mono48: dict[str, np.ndarray] = field(default_factory=dict)
    mags: dict[str, list[np.ndarray]] = field(default_factory=dict)
    mels: dict[str, np.ndarray] = field(default_factory=dict)
    dnsmos: P.DnsmosScore | None = None
    nisqa: dict[str, N.NisqaScore] = field(default_factory=dict)  # stem -> score


def _cache_key(track: Track, s: ScoreSettings, transform: Transform) -> str:
    parts: list[Any] = [CACHE_VERSION, transform.name, s.max_seconds, s.silence_db]
    for name in sorted(track.files):
        st = track.files[name].stat()
        parts += [name, str(track.files[name].resolve()), st.st_size, st.st_mtime_ns]
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:16]


def _transformed(audio: TrackAudio, task: SongTask) -> tuple[dict[str, np.ndarray], int]:
    """References after the transform, from the disk cache when the transform is not identity."""
    if task.transform.name == "identity":
        return dict(audio.stems), audio.rate
    cache = task.settings.cache_dir
    path = cache / f"{_cache_key(task.track, task.settings, task.transform)}.npz" if cache else None
    if path and path.is_file():
        with np.load(path) as z:
            return {s: z[s] for s in STEMS}, int(z["rate"])
    out = {s: task.transform(a, audio.rate) for s, a in audio.stems.items()}
    stems, rate = {s: v[0] for s, v in out.items()}, next(iter(out.values()))[1]
    if path:
        with atomic_path(path) as tmp:
            np.savez(tmp, rate=np.array(rate), **stems)  # type: ignore[arg-type]
    return stems, rate


def _reference_dnsmos(vocals: np.ndarray, rate: int, task: SongTask) -> P.DnsmosScore:
    cache = task.settings.cache_dir
    key = _cache_key(task.track, task.settings, task.transform)
    path = cache / f"{key}.dnsmos.json" if cache else None
    if path and path.is_file():
        return P.DnsmosScore(**json.loads(path.read_text()))
    score = P.dnsmos(vocals, rate)
    if path:
        write_json(path, asdict(score), indent=None)
    return score


def _nisqa_weights(s: ScoreSettings) -> Path:
    if s.nisqa_weights is None:
        raise ValueError("NISQA was asked for without a weights file")
    return s.nisqa_weights


def _reference_nisqa(audio: np.ndarray, stem: str, rate: int, task: SongTask) -> N.NisqaScore:
    weights = _nisqa_weights(task.settings)
    cache = task.settings.cache_dir
    path = None
    if cache:
        st = weights.stat()
        model = hashlib.sha1(f"{weights.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
        key = _cache_key(task.track, task.settings, task.transform)
        path = cache / f"{key}.nisqa-{model.hexdigest()[:8]}.{stem}.json"
    if path and path.is_file():
        return N.NisqaScore(**json.loads(path.read_text()))
    score = N.nisqa(audio, rate, weights)
    if path:
        write_json(path, asdict(score), indent=None)
    return score


def prepare_reference(audio: TrackAudio, task: SongTask) -> Reference:
    """Transform, silence flags and cached features of the true stems."""
    stems, rate = _transformed(audio, task)
    s = task.settings
    level = {k: dsp.rms_db(v) for k, v in stems.items()}
    ref = Reference(rate, stems, level, {k: level[k] < s.silence_db for k in stems})
    for stem in (k for k in STEMS if not ref.silent[k]):
        if {"visqol", "mrstft", "logmel"} & set(s.metrics):
            ref.mono48[stem] = P.mono_at(stems[stem], rate, _SPECTRAL_RATE)
        if "mrstft" in s.metrics:
            ref.mags[stem] = M.stft_magnitudes(ref.mono48[stem])
        if "logmel" in s.metrics:
            ref.mels[stem] = M.log_mel(ref.mono48[stem], _SPECTRAL_RATE)
    if "dnsmos" in s.metrics and not ref.silent["vocals"]:
        ref.dnsmos = _reference_dnsmos(stems["vocals"], rate, task)
    if "nisqa" in s.metrics:
        for stem in (k for k in STEMS if not ref.silent[k]):
            ref.nisqa[stem] = _reference_nisqa(stems[stem], stem, rate, task)
    return ref


def _estimates(
    spec: SystemSpec, task: SongTask, audio: TrackAudio
) -> tuple[dict[str, np.ndarray], list[str]]:
    if spec.kind == "builtin":
        stacked = np.load(task.separated[spec.name])
        return {s: stacked[i] for i, s in enumerate(STEMS)}, []
    shape = (audio.channels, audio.frames)
    s = task.settings
    return load_estimates(spec, task.track, audio.rate, shape, s.max_seconds, s.length_tolerance_s)


def _stem_scores(stem: str, est: np.ndarray, ref: Reference, s: ScoreSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    true, metrics = ref.stems[stem], s.metrics
    if "si_sdr" in metrics:
        out["si_sdr"] = dsp.si_sdr(true, est)
    if "sdr" in metrics:
        out["usdr"] = dsp.sdr(true, est)
    mono = P.mono_at(est, ref.rate, _SPECTRAL_RATE) if stem in ref.mono48 else None
    if "mrstft" in metrics and mono is not None:
        out["mrstft"] = M.mrstft_from_magnitudes(ref.mags[stem], M.stft_magnitudes(mono))
    if "logmel" in metrics and mono is not None:
        out["logmel_l1"] = M.logmel_l1_from(ref.mels[stem], M.log_mel(mono, _SPECTRAL_RATE))
    if "visqol" in metrics and mono is not None:
        out["visqol"] = P.visqol(ref.mono48[stem], mono, _SPECTRAL_RATE)
    if "dnsmos" in metrics and stem == "vocals":
        out["dnsmos"] = asdict(P.dnsmos(est, ref.rate))
    if "nisqa" in metrics:
        out["nisqa"] = asdict(N.nisqa(est, ref.rate, _nisqa_weights(s)))
    return out


def score_system(
    ests: Mapping[str, np.ndarray], ref: Reference, s: ScoreSettings
) -> dict[str, Any]:
    """Scores of one system's (transformed) estimates: ``stems`` (scored) and ``silent``."""
    scored = [k for k in STEMS if not ref.silent[k]]
    stems = {k: _stem_scores(k, ests[k], ref, s) for k in scored}
    notes: list[str] = []
    if "sdr" in s.metrics and scored:
        refs = np.stack([ref.stems[k] for k in scored])
        est = np.stack([ests[k] for k in scored])
        for k, value in zip(scored, M.sdr_v4(refs, est, window=ref.rate), strict=True):
            if value is None and not np.any(ests[k]):
                value = 0.0  # an all-zero estimate: the SDR of outputting silence
                notes.append(f"{k}: estimate is silent, SDR counted as 0 dB")
            elif value is None:
                notes.append(f"{k}: no frame could be scored for SDR (digital silence)")
            stems[k]["sdr"] = value
    silent = {
        k: {"estimate_rms_db": _finite_db(dsp.rms_db(ests[k]))} for k in STEMS if ref.silent[k]
    }
    return {"stems": stems, "silent": silent, "notes": notes}


def _finite_db(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def score_song(task: SongTask) -> dict[str, Any]:
    """All scores of one song, JSON-ready."""
    s = task.settings
    audio = task.track.load(max_seconds=s.max_seconds)
    ref = prepare_reference(audio, task)
    result: dict[str, Any] = {
        "song": task.track.name,
        "split": task.track.split,
        "rate": audio.rate,
        "channels": audio.channels,
        "seconds": audio.duration,
        "reference_level_db": {k: _finite_db(v) for k, v in ref.level_db.items()},
        "silent_stems": [k for k in STEMS if ref.silent[k]],
        "reference_dnsmos": asdict(ref.dnsmos) if ref.dnsmos else None,
        "reference_nisqa": {k: asdict(v) for k, v in ref.nisqa.items()} if ref.nisqa else None,
        "systems": {},
    }
    for spec in task.systems:
        ests, notes = _estimates(spec, task, audio)
        ests = {k: task.transform(v, audio.rate)[0] for k, v in ests.items()}
        scores = score_system(ests, ref, s)
        scores["notes"] = notes + scores["notes"]
        result["systems"][spec.name] = scores
    return result
