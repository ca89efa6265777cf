"""Make a multitrack set: plan songs from a seed, render them in parallel, write the MUSDB layout.

A set is ``<out>/<split>/<song>/{mixture,vocals,drums,bass,other}.wav`` (48 kHz stereo, 24-bit;
the mixture is exactly the sum of the stems) with ``<out>/manifest.json``. Each song depends
only on its own seed, so a set is deterministic whatever the number of workers, and a run that
was stopped resumes where it was: finished songs (their ``song.json`` is written last) are kept.

Generator versions (``SynthConfig.version``): "1" is the original factory and renders the same
bytes as it always did (a fixed benchmark set); "2" (the default) writes songs that sound more
like records: genre arrangements, wider per-track chains, sidechain pumping, convolution reverbs
and a mastering bus that brings each song to a drawn commercial loudness
(:mod:`engine.data.record`). Everything version 2 adds is reached only through ``version``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine import atomic
from engine.audio import write_audio
from engine.constants import MODEL_RATE, STEMS
from engine.data import pipeline
from engine.data.song import SongSpec
from engine.errors import StemtokError
from engine.progress import SecondsProgress

GENERATOR_VERSION = "2"
VERSIONS = ("1", "2")
SONG_META = "song.json"
MANIFEST = "manifest.json"
SPLITS = ("train", "valid", "test")
#: A repeating pattern of ten songs, 8 train : 1 valid : 1 test, so small sets get every split.
_SPLIT_PATTERN = ("train",) * 4 + ("valid",) + ("train",) * 4 + ("test",)


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides a synthetic set's content (stored in its manifest)."""

    minutes: float
    seed: int = 0
    rate: int = MODEL_RATE
    backend: str = "auto"  # "full": FluidSynth, kits, Festival/singer; "numpy": no system packages
    midi_share: float = 0.15  # share of songs cut from real MIDI files (full backend only)
    min_seconds: float = 30.0
    max_seconds: float = 75.0
    version: str = GENERATOR_VERSION


@dataclass(frozen=True)
class SongJob:
    """One song to make: where it comes from and where it goes."""

    index: int
    seed: int
    split: str
    name: str
    midi: str = ""  # path of a real MIDI file; "" for a procedural song
    duration: float = 0.0


def derive_seed(seed: int, *keys: object) -> int:
    """A stable 31-bit seed from a parent seed and keys (independent of Python's hash salt)."""
    text = "/".join(str(k) for k in (seed, *keys))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def _midi_split(path: str) -> str:
    """Real MIDI files go to a split by their name, the same in every set: no file crosses."""
    return _SPLIT_PATTERN[derive_seed(0, "midi", Path(path).name) % len(_SPLIT_PATTERN)]


def resolve_backend(backend: str) -> str:
    if backend not in ("auto", "full", "numpy"):
        raise StemtokError(f"unknown backend {backend!r} (choose auto, full or numpy)")
    if backend == "auto":
        return "full" if pipeline.full_backend_available() else "numpy"
    if backend == "full" and not pipeline.full_backend_available():
        raise StemtokError(
            "the full backend needs FluidSynth and a GM sound font "
            "(apt-get install fluidsynth fluid-soundfont-gm); use --backend numpy without them"
        )
    return backend


def plan(cfg: SynthConfig) -> list[SongJob]:
    """The songs of a set, in order, until their durations add up to ``cfg.minutes``."""
    if cfg.minutes <= 0:
        raise StemtokError("--minutes must be positive")
    midi_files = pipeline.midi_sources() if cfg.backend == "full" else []
    jobs: list[SongJob] = []
    total = 0.0
    rng = np.random.default_rng(derive_seed(cfg.seed, "plan"))
    while total < cfg.minutes * 60.0:
        i = len(jobs)
        seed = derive_seed(cfg.seed, "song", i)
        use_midi = bool(midi_files) and rng.random() < cfg.midi_share
        midi = str(midi_files[int(rng.integers(len(midi_files)))]) if use_midi else ""
        spec = _spec(SongJob(i, seed, "", "", midi), cfg)
        split = _midi_split(midi) if midi else _SPLIT_PATTERN[i % len(_SPLIT_PATTERN)]
        jobs.append(SongJob(i, seed, split, f"{i:05d}-{spec.title}", midi, spec.duration))
        total += spec.duration
    return jobs


def _spec(job: SongJob, cfg: SynthConfig) -> SongSpec:
    if job.midi:
        return pipeline.midi_song(Path(job.midi), job.seed, cfg.max_seconds)
    return pipeline.procedural_song(job.seed, cfg.min_seconds, cfg.max_seconds, cfg.version)


def song_dir(out: Path, job: SongJob) -> Path:
    return out / job.split / job.name


def is_done(out: Path, job: SongJob) -> bool:
    return (song_dir(out, job) / SONG_META).is_file()


def make_song(job: SongJob, cfg: SynthConfig, out: Path) -> dict[str, Any]:
    """Render, produce and write one song; returns its manifest entry.

    Files go to a hidden temporary folder that is renamed into place once complete, so an
    interrupted run never leaves a half-written song that looks finished.
    """
    spec = _spec(job, cfg)
    t0 = time.perf_counter()
    song = pipeline.render_song(
        spec, rate=cfg.rate, seed=job.seed, backend=cfg.backend, version=cfg.version
    )
    final = song_dir(out, job)
    tmp = final.parent / f".{final.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_audio(tmp / "mixture.wav", song.mixture, cfg.rate, bit_depth=24)
    for stem in STEMS:
        write_audio(tmp / f"{stem}.wav", song.stems[stem], cfg.rate, bit_depth=24)
    meta = _song_meta(job, spec, song, time.perf_counter() - t0)
    (tmp / SONG_META).write_text(json.dumps(meta, indent=1))
    atomic.replace_folder(tmp, final)
    return meta


def _song_meta(
    job: SongJob, spec: SongSpec, song: pipeline.RenderedSong, seconds: float
) -> dict[str, Any]:
    return {
        "name": job.name,
        "split": job.split,
        "seed": job.seed,
        "source": spec.source,
        "licence": spec.licence,
        "title": spec.title,
        "duration": round(song.mixture.shape[1] / song.rate, 3),
        "rate": song.rate,
        "tempo": round(spec.tempo, 2),
        "key": spec.key,
        "style": spec.style,
        "sections": [s.name for s in spec.sections],
        "parts": [
            {
                "stem": p.stem,
                "name": p.name,
                "program": p.program,
                "drum": p.is_drum,
                "role": p.role,
                "voice": p.voice,
                "notes": len(p.notes),
            }
            for p in spec.parts
        ],
        "render": song.render_info,
        "vad": song.vad,
        "render_seconds": round(seconds, 2),
        "meta": spec.meta,
    }


def synth(
    cfg: SynthConfig, out: Path, *, jobs: int = 1, progress: SecondsProgress | None = None
) -> dict[str, Any]:
    """Make (or finish) the set ``cfg`` in ``out``; returns the manifest, also written there."""
    if cfg.version not in VERSIONS:
        raise StemtokError(
            f"unknown generator version {cfg.version!r} (choose {', '.join(VERSIONS)})"
        )
    cfg = replace(cfg, backend=resolve_backend(cfg.backend))
    out.mkdir(parents=True, exist_ok=True)
    _check_same_config(out, cfg)
    todo_all = plan(cfg)
    total = sum(j.duration for j in todo_all)
    done_s = sum(j.duration for j in todo_all if is_done(out, j))
    todo = [j for j in todo_all if not is_done(out, j)]
    if progress:
        progress(done_s, total)
    for job in _run(todo, cfg, out, jobs):
        done_s += job.duration
        if progress:
            progress(done_s, total)
    manifest = build_manifest(cfg, out, todo_all)
    _write_json(out / MANIFEST, manifest)
    return manifest


def _run(todo: list[SongJob], cfg: SynthConfig, out: Path, jobs: int) -> Iterator[SongJob]:
    if jobs <= 1 or len(todo) <= 1:
        for job in todo:
            make_song(job, cfg, out)
            yield job
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(make_song, job, cfg, out): job for job in todo}
        from concurrent.futures import as_completed

        for fut in as_completed(futures):
            fut.result()
            yield futures[fut]


def _check_same_config(out: Path, cfg: SynthConfig) -> None:
    """Resuming is only safe into a folder made with the same settings."""
    stamp = out / ".synth-config.json"
    mine = asdict(cfg)
    if stamp.exists():
        theirs = json.loads(stamp.read_text())
        if theirs != mine:
            diff = ", ".join(
                f"{k}: {theirs.get(k)} -> {v}" for k, v in mine.items() if theirs.get(k) != v
            )
            raise StemtokError(
                f"{out} holds a set made with other settings ({diff}); "
                "choose another --out or the same settings to resume"
            )
    else:
        _write_json(stamp, mine)


def build_manifest(cfg: SynthConfig, out: Path, jobs: list[SongJob]) -> dict[str, Any]:
    songs = [json.loads((song_dir(out, j) / SONG_META).read_text()) for j in jobs]
    return {
        "format": "stemtok-multitrack",
        "schema": 1,
        "generator": {"name": "stemtok data synth", "version": cfg.version},
        "config": asdict(cfg),
        "rate": cfg.rate,
        "channels": 2,
        "stems": list(STEMS),
        "splits": {s: sum(1 for x in songs if x["split"] == s) for s in SPLITS},
        "total_seconds": round(sum(x["duration"] for x in songs), 3),
        "songs": songs,
    }


def _write_json(path: Path, obj: Any) -> None:
    atomic.write_text(path, json.dumps(obj, indent=1))
