"""The work of a library run, whatever runs it: which songs are left, one song separated into
its folder, and the manifest of finished songs.

::

    SRC/album/song.flac ─ process_song ─ OUT/album/.song.part/{vocals,...}.wav (hidden)
                                       ─ renamed to OUT/album/song/     (the folder appears whole)
                                       ─ its record: one line of OUT/manifest.jsonl

A song is done when the manifest has its record and (for a separated song) its folder holds the
stems this run asks for from the same model; a song whose file could not be read is done while
its file is the one that failed (same size and sha256). A song that failed later (while it was
separated or written, or its worker died) is tried again by the next run. Everything here is plain data and functions, so the
local process pool and the Ray actors (:mod:`engine.library.local`,
:mod:`engine.library.ray_cluster`) run the same code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from engine.atomic import replace_folder
from engine.constants import STEMS
from engine.errors import StemtokError
from engine.runtime.model import CONFIG_FILE, model_dir, sha256

if TYPE_CHECKING:
    from engine.runtime.separator import Mode, StreamingSeparator

MANIFEST = "manifest.jsonl"
PART = ".part"  # suffix of the hidden folder a song is written into before it appears


@dataclass(frozen=True)
class Settings:
    """How every song of a run is separated (sent to each worker, so plain values only)."""

    model: str | None = None
    mode: Mode = "aligned"
    fmt: str = "wav"
    depth: str = "32f"
    stems: tuple[str, ...] = STEMS
    seed: int | None = None
    device: str = "cpu"
    threads: int | None = 1  # per worker

    def model_identity(self) -> tuple[str, str]:
        """The model's name and the sha256 of its ``model_config.json`` (which holds the
        sha256 of each of its files)."""
        folder = model_dir(self.model)
        return self.model or folder.name, sha256(folder / CONFIG_FILE)


@dataclass(frozen=True)
class Job:
    """One song: ``source`` (a file), ``rel`` (its path under SRC, POSIX) and ``folder``
    (OUT/rel without the extension)."""

    source: Path
    rel: str
    folder: Path
    model: str
    model_sha256: str

    @property
    def part(self) -> Path:
        """The hidden folder the stems are written into."""
        return self.folder.with_name(f".{self.folder.name}{PART}")

    def stem_paths(self, folder: Path, settings: Settings) -> dict[str, Path]:
        return {s: folder / f"{s}.{settings.fmt}" for s in STEMS if s in settings.stems}


def open_worker(settings: Settings, model_sha256: str) -> StreamingSeparator:
    """The separator one worker keeps for the whole run; refuses a model whose files differ
    from the coordinator's (another copy on another machine)."""
    from engine.runtime.factory import open_separator

    name, digest = settings.model_identity()
    if digest != model_sha256:
        raise StemtokError(
            f"model '{name}' on {os.uname().nodename} is not the one the run started with "
            f"(sha256 {digest[:12]} here, {model_sha256[:12]} there); install the same model"
        )
    return open_separator(settings.model, device=settings.device, threads=settings.threads)


def process_song(sep: StreamingSeparator, job: Job, settings: Settings) -> dict[str, Any]:
    """Separate ``job``'s song into its folder (replacing a folder left by an earlier attempt)
    and return its manifest record; a bad song gives a record with its one-line ``error``."""
    from engine.audio import probe
    from engine.outputs import plan_output
    from engine.runtime.sources import FileSource
    from engine.stem_writer import separate_to_files

    started = time.monotonic()
    record = source_fields(job)
    shutil.rmtree(job.part, ignore_errors=True)  # a killed attempt's
    try:
        info = probe(job.source)
    except StemtokError as exc:  # this file fails so again: a rerun skips it while unchanged
        return record | {"status": "error", "stage": "read", "error": str(exc)}
    try:
        plan = plan_output(settings.fmt, info.channels, info.rate, settings.depth)
        paths = job.stem_paths(job.part, settings)
        notices = separate_to_files(
            sep, FileSource(job.source), paths, plan, mode=settings.mode, seed=settings.seed
        )
        replace_folder(job.part, job.folder)  # over one an attempt killed after it left
    except Exception as exc:  # one song's failure, recorded; the others go on
        shutil.rmtree(job.part, ignore_errors=True)
        what = str(exc) if isinstance(exc, StemtokError) else _internal(exc)
        return record | {"status": "error", "stage": "separate", "error": what}
    wall = time.monotonic() - started
    seconds = info.frames / info.rate
    name = PurePosixPath(job.rel).with_suffix("")
    return record | {
        "stems": {s: f"{name}/{p.name}" for s, p in job.stem_paths(job.folder, settings).items()},
        "format": settings.fmt,
        "mode": settings.mode,
        "seed": settings.seed,
        "seconds": round(seconds, 3),
        "wall_s": round(wall, 3),
        "rtf": round(wall / seconds, 4) if seconds else None,
        "notices": [n for n in [plan.notice, *notices] if n],
        "worker": f"{os.uname().nodename}:{os.getpid()}",
        "finished": round(time.time(), 3),
        "status": "ok",
    }


def _internal(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"internal error: {type(exc).__name__}: {text}"


def source_fields(job: Job) -> dict[str, Any]:
    """The record's fields that say what the song is (its file and the model)."""
    fields: dict[str, Any] = {"source": job.rel, "size": None, "sha256": None}
    with contextlib.suppress(OSError):  # unreadable: the error comes from probe
        fields |= {"size": job.source.stat().st_size, "sha256": sha256(job.source)}
    return fields | {"model": job.model, "model_sha256": job.model_sha256}
