"""``stemtok eval`` as a library: separate, measure, score, aggregate, in that order.

1. **Check** everything that can be checked before work starts: the songs (every stem present,
   one rate, channel count and length per song), the systems (unknown names, models not yet
   available), the estimate folders (a folder and four stems per song), the protocol
   (``--through-codec`` needs the codec), the metrics (packages installed; NISQA's weights
   present and NISQA's).
2. **Separate** with each built-in system, one song and one system at a time, each in a fresh
   process (see :mod:`engine.evaluation.runner`), for honest speed and memory numbers.
3. **Score** the songs in parallel (``jobs`` worker processes), each worker sharing the
   reference-side work of its song across systems (see :mod:`engine.evaluation.scoring`).
4. **Aggregate** per system and stem (see :mod:`engine.evaluation.aggregate`).

The result is one JSON-ready dict; :mod:`engine.evaluation.report` renders it.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import engine
from engine.constants import STEMS
from engine.data.musdb import Track, list_tracks
from engine.errors import StemtokError
from engine.evaluation import aggregate, nisqa, perceptual, transforms
from engine.evaluation import excerpt as excerpt_mod
from engine.evaluation import systems as sysmod
from engine.evaluation.excerpt import Excerpt
from engine.evaluation.metrics import SILENCE_DB
from engine.evaluation.runner import SeparationRun, separate_isolated, separate_track
from engine.evaluation.scoring import (
    ALL_METRICS,
    DEFAULT_METRICS,
    ScoreSettings,
    SongTask,
    score_song,
)
from engine.evaluation.systems import SystemSpec
from engine.progress import StageProgress

#: ``(stage, done, total)``: called as work finishes ("separate", "score").


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run."""

    data: Path
    systems: tuple[str, ...] = sysmod.DEFAULT_SYSTEMS
    estimates: tuple[str, ...] = ()  # "[NAME=]DIR" each
    split: str | None = None
    songs: tuple[str, ...] = ()  # only these songs (all when empty)
    through_codec: bool = False
    codec: Path | None = None  # --through-codec with this codec folder (default: codec-small)
    max_seconds: float | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    nisqa_weights: Path | None = None  # None: $STEMTOK_NISQA_WEIGHTS or the default path
    jobs: int = 2
    isolate: bool = True
    silence_db: float = SILENCE_DB
    length_tolerance_s: float = 0.05
    cache_dir: Path | None = None
    excerpt_song: str | None = None
    excerpt_seconds: float = 3.0  # 0: no excerpt


@dataclass(frozen=True)
class EvalRun:
    """What a run produced: the JSON-ready result and the excerpt for the report."""

    result: dict[str, Any]
    excerpt: Excerpt | None


def check_metrics(names: tuple[str, ...]) -> tuple[str, ...]:
    """Validated metric names; perceptual ones whose package is missing are an error."""
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown:
        raise StemtokError(f"unknown metric {unknown[0]!r} (choose from {', '.join(ALL_METRICS)})")
    missing = {k: v for k, v in perceptual.available().items() if v and k in names}
    if missing:
        name, why = next(iter(missing.items()))
        raise StemtokError(f"cannot compute {name}: {why}; or leave it out with --metrics")
    return names


def check_nisqa(cfg: EvalConfig) -> Path | None:
    """The NISQA weights file of the run (loaded once to check it is NISQA's), ``None`` when
    NISQA is not asked for."""
    if "nisqa" not in cfg.metrics:
        return None
    path = nisqa.weights_path(cfg.nisqa_weights)
    model = nisqa.load_model(path)
    shortest = model.cfg.min_samples() / nisqa.NISQA_RATE
    if cfg.max_seconds is not None and cfg.max_seconds < shortest:
        raise StemtokError(f"NISQA needs at least {shortest:.2f} s: raise --max-seconds")
    return path


def select_tracks(cfg: EvalConfig) -> list[Track]:
    """The songs to score, each checked (headers only) before any work starts."""
    tracks = list_tracks(cfg.data, cfg.split)
    if cfg.songs:
        names = {t.name for t in tracks}
        unknown = [s for s in cfg.songs if s not in names]
        if unknown:
            raise StemtokError(f"song '{unknown[0]}' not found under {cfg.data}")
        tracks = [t for t in tracks if t.name in cfg.songs]
    for track in tracks:
        track.check()
    return tracks


def _check_estimates(specs: list[SystemSpec], tracks: list[Track]) -> None:
    for spec in specs:
        if spec.kind == "estimates":
            for track in tracks:
                sysmod.estimate_files(spec, track)


def _separate_all(
    tracks: list[Track],
    specs: list[SystemSpec],
    cfg: EvalConfig,
    work: Path,
    progress: StageProgress,
) -> tuple[dict[str, dict[str, Path]], list[SeparationRun], dict[str, float | None]]:
    """Run every built-in system on every song; returns npy paths, runs and idle RSS per song."""
    built = [s for s in specs if s.kind == "builtin"]
    paths: dict[str, dict[str, Path]] = {t.name: {} for t in tracks}
    runs: list[SeparationRun] = []
    idle: dict[str, float | None] = {}
    total, done = len(tracks) * len(built), 0
    for track in tracks:
        if cfg.isolate and built:
            idle[track.name] = separate_isolated(
                track, built[0], cfg.max_seconds, None
            ).peak_rss_mib
        for spec in built:
            dest = work / track.name / f"{spec.name}.npy"
            run = (separate_isolated if cfg.isolate else separate_track)(
                track, spec, cfg.max_seconds, dest
            )
            paths[track.name][spec.name] = dest
            runs.append(run)
            done += 1
            progress("separate", done, total)
    return paths, runs, idle


def _worker_init() -> None:
    # One BLAS thread per worker. NUMBA_NUM_THREADS is left alone on purpose: changing it makes
    # numba miss its on-disk cache of ViSQOL's kernels and recompile them (~10 s per worker).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _score_all(
    tasks: list[SongTask], jobs: int, progress: StageProgress
) -> Iterator[dict[str, Any]]:
    if jobs <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            yield score_song(task)
            progress("score", i + 1, len(tasks))
        return
    ctx = get_context("spawn")
    workers = min(jobs, len(tasks))
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
        futures: list[Future[dict[str, Any]]] = [pool.submit(score_song, t) for t in tasks]
        for i, fut in enumerate(as_completed(futures)):
            yield fut.result()
            progress("score", i + 1, len(tasks))


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {
        "stemtok": engine.__version__,
        "python": platform.python_version(),
    }
    for pkg in (
        "numpy",
        "scipy",
        "visqol-python",
        "speechmos",
        "onnxruntime-gpu",
        "onnxruntime",
        "numba",
    ):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def run_eval(cfg: EvalConfig, progress: StageProgress | None = None) -> EvalRun:
    """Separate, score and aggregate; returns the JSON-ready result and the report excerpt."""
    report = progress or (lambda stage, done, total: None)
    transform = transforms.resolve(cfg.through_codec, cfg.codec)
    metrics = check_metrics(cfg.metrics)
    cfg = replace(cfg, nisqa_weights=check_nisqa(cfg))
    specs = sysmod.resolve(list(cfg.systems), list(cfg.estimates))
    tracks = select_tracks(cfg)
    _check_estimates(specs, tracks)
    chosen = (
        excerpt_mod.pick_track(tracks, cfg.excerpt_song, cfg.max_seconds)
        if cfg.excerpt_seconds > 0
        else None
    )
    settings = ScoreSettings(
        metrics,
        cfg.silence_db,
        cfg.max_seconds,
        cfg.length_tolerance_s,
        cfg.cache_dir,
        cfg.nisqa_weights,
    )
    work = Path(tempfile.mkdtemp(prefix="stemtok-eval-"))
    clock = {"start": time.perf_counter()}
    try:
        paths, runs, idle = _separate_all(tracks, specs, cfg, work, report)
        clock["separated"] = time.perf_counter()
        tasks = [SongTask(t, tuple(specs), paths[t.name], settings, transform) for t in tracks]
        order = {t.name: i for i, t in enumerate(tracks)}
        songs = sorted(_score_all(tasks, cfg.jobs, report), key=lambda r: order[r["song"]])
        clock["scored"] = time.perf_counter()
        excerpt = None
        if chosen is not None:
            excerpt = excerpt_mod.collect(
                chosen,
                specs,
                paths[chosen.name],
                cfg.max_seconds,
                cfg.excerpt_seconds,
                cfg.length_tolerance_s,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    names = [s.name for s in specs]
    result = {
        "config": _config_json(cfg, transform.name),
        "environment": _environment(),
        "timing": {
            "separate_s": clock["separated"] - clock["start"],
            "score_s": clock["scored"] - clock["separated"],
            "jobs": cfg.jobs,
        },
        "systems": [_spec_json(s) for s in specs],
        "stems": list(STEMS),
        "songs": songs,
        "summary": aggregate.summarise(songs, names),
        "speed": aggregate.speed(runs, idle, [s.name for s in specs if s.kind == "builtin"]),
    }
    return EvalRun(result, excerpt)


def _environment() -> dict[str, Any]:
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpus": os.cpu_count(),
        "versions": _versions(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _spec_json(spec: SystemSpec) -> dict[str, Any]:
    return {**asdict(spec), "path": str(spec.path) if spec.path else None}


def _config_json(cfg: EvalConfig, transform: str) -> dict[str, Any]:
    out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    out["protocol"] = "through codec" if cfg.through_codec else "plain (raw references)"
    if cfg.nisqa_weights is not None:
        digest = hashlib.sha256(cfg.nisqa_weights.read_bytes()).hexdigest()
        out["nisqa_weights_sha256"] = digest
    out["transform"] = transform
    return out
