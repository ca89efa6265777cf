"""Drop-to-karaoke: each dropped song is separated and written as an instrumental (optionally with
a guide vocal and a key shift), one after another, next to the song or into a chosen folder.

The mixing is :func:`engine.karaoke.karaoke_mix`, the same as ``stemtok karaoke``; the file is
written at the song's depth where its format holds it (:func:`app.editor.exporter.output_plan`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal

from app.editor.exporter import output_plan
from app.editor.worker import Task
from engine.audio import probe, read_audio
from engine.karaoke import karaoke_mix
from engine.outputs import SUFFIX_FORMATS
from engine.runtime.separator import Separator
from engine.stem_writer import write_arrays


@dataclass(frozen=True)
class KaraokeOptions:
    """``guide_db`` None: no vocal; ``semitones`` in [-12, 12]; ``folder`` None: beside the song."""

    guide_db: float | None = None
    semitones: float = 0.0
    folder: Path | None = None


def output_for(song: Path, folder: Path | None) -> Path:
    """``<song>-karaoke.<ext>`` (the song's format where stemtok writes it, else WAV), never an
    existing file: ``-2``, ``-3``, ... are added."""
    ext = song.suffix.lower() if song.suffix.lower() in SUFFIX_FORMATS else ".wav"
    base = (folder or song.parent) / f"{song.stem}-karaoke"
    out, n = base.with_suffix(ext), 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}").with_suffix(ext)
    return out


def make_karaoke(
    sep: Separator,
    song: Path,
    opts: KaraokeOptions,
    progress: Any,
    cancel: Any,
    report: Callable[[str], None] = lambda line: None,
) -> Path:
    """Separate ``song`` and write its karaoke mix; returns the file written (peaks beyond full
    scale are clipped where the format needs it, and reported by ``report``)."""
    info = probe(song)
    out = output_for(song, opts.folder)
    plan = output_plan(SUFFIX_FORMATS[out.suffix], info.channels, info.rate, info.sample_format)
    audio, rate = read_audio(song)
    stems = sep.separate(audio, rate, progress=progress, cancel=cancel)
    mix = karaoke_mix(stems, opts.guide_db, opts.semitones, rate)
    for line in ([plan.notice] if plan.notice else []) + write_arrays({"mix": out}, plan, [mix]):
        report(line)
    return out


class KaraokeQueue(QObject):
    """Songs waiting for karaoke, done one at a time on the worker pool."""

    changed = pyqtSignal()
    progress = pyqtSignal(str, float)  # song name, fraction
    finished = pyqtSignal(str, str)  # song, output path ("" on failure)
    message = pyqtSignal(str)

    def __init__(self, separator: Callable[[], Any], options: KaraokeOptions | None = None) -> None:
        super().__init__()
        self._separator = separator
        self.options = options or KaraokeOptions()
        self.waiting: list[Path] = []
        self.current: Path | None = None
        self.task: Task | None = None
        self.done: list[Path] = []

    def add(self, paths: list[Path]) -> int:
        """Queue the songs among ``paths`` (others are reported and skipped); returns how many."""
        n = 0
        for p in paths:
            try:
                probe(p)
            except Exception as exc:
                self.message.emit(f"karaoke: skipped {p.name}: {exc}")
                continue
            self.waiting.append(p)
            n += 1
        self.changed.emit()
        self._next()
        return n

    def cancel(self) -> None:
        """Drop the waiting songs and stop the current one."""
        self.waiting.clear()
        if self.task is not None:
            self.task.cancel()
        self.changed.emit()

    def _next(self) -> None:
        if self.task is not None or not self.waiting:
            return
        song, opts = self.waiting.pop(0), self.options
        self.current = song

        def job(progress: Callable[[float], None], cancel: Callable[[], bool]) -> Path:
            return make_karaoke(
                self._separator(),
                song,
                opts,
                progress,
                cancel,
                lambda line: self.message.emit(f"karaoke: {line}"),
            )

        self.task = Task(job)
        self.task.progress.connect(lambda f, _left: self.progress.emit(song.name, f))
        self.task.done.connect(lambda out: self._finish(song, out, ""))
        self.task.failed.connect(lambda m: self._finish(song, None, m))
        self.task.cancelled.connect(lambda: self._finish(song, None, "cancelled"))
        self.task.start()
        self.changed.emit()

    def _finish(self, song: Path, out: Path | None, error: str) -> None:
        self.task, self.current = None, None
        if out is not None:
            self.done.append(out)
            self.message.emit(f"karaoke: wrote {out}")
        else:
            self.message.emit(f"karaoke: {song.name}: {error}")
        self.finished.emit(str(song), str(out or ""))
        self.changed.emit()
        self._next()
