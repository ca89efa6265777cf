"""What a library run has left to do, the manifest it keeps, and the loop that drives an
executor (the local process pool or Ray actors) over the songs.

``OUT/manifest.jsonl`` gets one JSON line per finished song, appended (and flushed to disk) by
the coordinator alone as each song comes back; a line cut short by a killed run is skipped when
the manifest is read, and the song is done again. When a song has several lines, the last one
counts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from engine.errors import StemtokError
from engine.library.jobs import MANIFEST, Job, Settings
from engine.runtime.model import sha256

Record = dict[str, Any]


class Executor(Protocol):
    """Runs :func:`~engine.library.jobs.process_song` on its workers; yields each song's record
    as it finishes (in any order)."""

    def run(self, jobs: Sequence[Job]) -> Iterator[Record]: ...

    def close(self) -> None: ...


def read_manifest(out: Path) -> dict[str, Record]:
    """The last record of each source in ``OUT/manifest.jsonl`` (none when there is no file)."""
    path = out / MANIFEST
    records: dict[str, Record] = {}
    if not path.is_file():
        return records
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:  # cut short by a killed run
                continue
            if isinstance(record, dict) and isinstance(record.get("source"), str):
                records[record["source"]] = record
    return records


class Manifest:
    """Appends records to ``OUT/manifest.jsonl``, each line on disk before the next song."""

    def __init__(self, out: Path) -> None:
        path = out / MANIFEST
        try:
            out.mkdir(parents=True, exist_ok=True)
            torn = path.is_file() and path.stat().st_size > 0 and not _ends_with_newline(path)
            self.file = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise StemtokError(f"{path}: cannot be written ({exc.strerror or exc})") from None
        if torn:  # a killed run's half line stays on a line of its own
            self.file.write("\n")

    def append(self, record: Record) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


@dataclass
class Plan:
    """The songs still to do, how many of ``total`` are done already, and how many of those
    are files that could not be read (recorded with their error)."""

    todo: list[Job]
    done: int
    total: int
    failed: int = 0


def plan_library(src: Path, out: Path, settings: Settings, overwrite: bool = False) -> Plan:
    """Every audio file under ``src`` (none inside ``out``) as a job, less those done.

    Raises a one-line :class:`StemtokError` up front for a missing or empty ``src``, two songs
    that would share a folder (``a.wav`` and ``a.flac``), or a song folder that is there but is
    not this run's to replace (not in the manifest, or its line is for other settings or another
    file) without ``overwrite``.
    """
    from engine.audio import audio_files

    if not src.is_dir():
        raise StemtokError(f"{src}: no such folder")
    if out.exists() and not out.is_dir():
        raise StemtokError(f"{out}: not a folder (OUT)")
    inside_out = out.resolve()  # never take earlier results in OUT for songs
    found = audio_files(src)
    files = [f for f in found if inside_out not in f.resolve().parents]
    if not files:
        where = "outside OUT" if found else "in this folder"
        raise StemtokError(f"{src}: no audio files {where}")
    model, digest = settings.model_identity()
    records = read_manifest(out)
    todo, failed = [], 0
    seen: dict[PurePosixPath, str] = {}
    for file in files:
        rel = file.relative_to(src).as_posix()
        name = PurePosixPath(rel).with_suffix("")
        if name in seen:
            raise StemtokError(f"{seen[name]} and {rel} would both be written to {out / name}")
        seen[name] = rel
        job = Job(file, rel, out / name, model, digest)
        record = records.get(rel)
        if _is_done(record, job, settings):
            failed += record is not None and record.get("status") != "ok"
            continue
        if job.folder.exists() and not overwrite and not _left_by_a_killed_run(job, settings):
            why = (
                "its manifest line is for other settings or another file"
                if record
                else "not in the manifest"
            )
            raise StemtokError(
                f"{job.folder}: already exists ({why}); pass --overwrite to replace it"
            )
        todo.append(job)
    return Plan(todo, len(files) - len(todo), len(files), failed)


def _is_done(record: Record | None, job: Job, settings: Settings) -> bool:
    if record is None:
        return False
    try:
        size = job.source.stat().st_size
    except OSError:
        return False
    if record.get("status") != "ok":  # an unreadable file stays so until it is replaced
        same = record.get("size") == size and record.get("sha256") == sha256(job.source)
        return record.get("stage") == "read" and same
    stems = job.stem_paths(job.folder, settings)
    return (
        record.get("size") == size
        and record.get("model_sha256") == job.model_sha256
        and record.get("format") == settings.fmt
        and record.get("mode") == settings.mode
        and record.get("seed") == settings.seed
        and set(record.get("stems", ())) == set(stems)
        and all(p.is_file() for p in stems.values())
    )


def _left_by_a_killed_run(job: Job, settings: Settings) -> bool:
    """A folder that holds exactly this run's stem files and has no record: renamed into place
    by a run killed before it wrote the record."""
    names = {p.name for p in job.stem_paths(job.folder, settings).values()}
    return job.folder.is_dir() and {p.name for p in job.folder.iterdir()} == names


class Throughput:
    """Songs done, songs per minute and time left, for a progress line."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.started = time.monotonic()

    def add(self, n: int = 1) -> None:
        self.done += n

    def per_minute(self) -> float:
        minutes = (time.monotonic() - self.started) / 60
        return self.done / minutes if minutes > 0 else 0.0

    def line(self) -> str:
        rate = self.per_minute()
        left = (self.total - self.done) / rate * 60 if rate > 0 else None
        eta = "?" if left is None else time.strftime("%H:%M:%S", time.gmtime(left))
        return f"{self.done}/{self.total} songs, {rate:.1f} songs/min, {eta} left"


def run_library(
    plan: Plan,
    executor: Executor,
    out: Path,
    on_record: Callable[[Record], None] | None = None,
) -> list[Record]:
    """Run ``plan``'s songs on ``executor``, appending each record to the manifest as it comes
    back (so a run killed at any moment keeps what finished); returns the records."""
    manifest = Manifest(out)
    records = []
    try:
        for record in executor.run(plan.todo):
            manifest.append(record)
            records.append(record)
            if on_record is not None:
                on_record(record)
    finally:
        manifest.close()
    return records
