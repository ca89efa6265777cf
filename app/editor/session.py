"""The editor's view-model: one song, its stems, the mix, the transport, the project.

A QObject with signals and no widget code; widgets call its methods and redraw on its signals.
Separation runs on a :class:`~app.editor.worker.Task`; the separator comes from an injected
factory (tests pass a fake with the same ``separate()`` signature).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtCore import QObject, QSettings, pyqtSignal

from app.editor import project
from app.editor.exporter import ExportPlan, run_export
from app.editor.mixer import Mixer, Strip
from app.editor.peaks import Peaks
from app.editor.player import Player
from app.editor.reroll import Take, blend
from app.editor.worker import Task
from engine.audio import probe, read_audio
from engine.constants import MODEL_RATE, STEMS
from engine.errors import StemtokError
from engine.runtime.separator import Mode, Separator, Stems

MAX_RECENT = 10


@dataclass(frozen=True)
class Song:
    """A loaded song, made on the worker thread (peaks included, so the GUI never waits)."""

    mixture: np.ndarray  # (C, N)
    bank: np.ndarray  # (S, C, N), stems in STEMS order
    rate: int
    sample_format: str
    confidence: dict[str, np.ndarray]
    confidence_rate: float
    peaks: list[Peaks]

    @classmethod
    def make(
        cls,
        mixture: np.ndarray,
        bank: np.ndarray,
        rate: int,
        sample_format: str,
        confidence: dict[str, np.ndarray],
        confidence_rate: float,
    ) -> Song:
        peaks = [Peaks(mixture)] + [Peaks(bank[i]) for i in range(bank.shape[0])]
        return cls(mixture, bank, rate, sample_format, confidence, confidence_rate, peaks)


class Session(QObject):
    """State of the editor window. ``state`` is ``empty``, ``separating`` or ``loaded``."""

    stateChanged = pyqtSignal(str)
    progressChanged = pyqtSignal(float, float)  # fraction, seconds left (< 0: unknown)
    loaded = pyqtSignal()
    mixChanged = pyqtSignal()
    stemsEdited = pyqtSignal()  # stem audio changed in place (re-roll take)
    message = pyqtSignal(str)
    recentChanged = pyqtSignal()

    def __init__(
        self,
        separator_factory: Callable[[], Separator],
        settings: QSettings | None = None,
        mode: Mode = "aligned",
    ) -> None:
        super().__init__()
        self._factory = separator_factory
        self._sep: Separator | None = None
        self.settings = settings or QSettings("stemtok", "editor")
        self.mode = mode
        self.state = "empty"
        self.task: Task | None = None
        self.export_task: Task | None = None
        self.pending: Path | None = None
        self._clear()

    def _clear(self) -> None:
        self.source: Path | None = None
        self.source_missing = False
        self.mixture = np.zeros((1, 0), np.float32)
        self.rate, self.sample_format = MODEL_RATE, "float32"
        self.bank = np.zeros((len(STEMS), 1, 0), np.float32)  # (S, C, N), what the mixer reads
        self.confidence: dict[str, np.ndarray] = {}
        self.confidence_rate = 0.0
        self.strips = {name: Strip() for name in STEMS}
        self.master_db = 0.0
        self.view: dict[str, Any] = {}
        self.project_path: Path | None = None
        self.mixer: Mixer | None = None
        self.player: Player | None = None
        self.take: Take | None = None
        self.peaks: list[Peaks] = []  # mix, then the stems in STEMS order
        self.stems_dirty = True  # the stems differ from those saved in the project folder

    # ------------------------------------------------------------------ properties
    @property
    def stems(self) -> dict[str, np.ndarray]:
        return {name: self.bank[i] for i, name in enumerate(STEMS)}

    @property
    def frames(self) -> int:
        return int(self.bank.shape[2])

    @property
    def song_name(self) -> str:
        if self.source is not None:
            return self.source.stem
        return self.project_path.stem if self.project_path else "untitled"

    def _set_state(self, state: str) -> None:
        self.state = state
        self.stateChanged.emit(state)

    def separator(self) -> Separator:
        """The separator, made on first use (from the job's thread: loading takes a while)."""
        if self._sep is None:
            self._sep = self._factory()
        return self._sep

    # ------------------------------------------------------------------ opening
    def open_path(self, path: str | Path) -> None:
        """A project (``.stemtok``) opens as saved; any audio file is separated."""
        p = Path(path)
        if p.suffix == project.SUFFIX:
            self.open_project(p)
        else:
            self.separate_file(p)

    def separate_file(self, path: Path) -> Task | None:
        """Read and separate ``path`` in the background (reports a bad file at once)."""
        if self.task is not None:
            self.message.emit("a separation is already running: cancel it first")
            return None
        try:
            info = probe(path)
        except StemtokError as exc:
            self.message.emit(str(exc))
            return None
        self.pending = path
        self._set_state("separating")
        self.progressChanged.emit(0.0, -1.0)

        def job(progress: Callable[[float], None], cancel: Callable[[], bool]) -> Song:
            audio, rate = read_audio(path)
            stems = self.separator().separate(
                audio, rate, mode=self.mode, progress=progress, cancel=cancel, confidence=True
            )
            bank = np.stack([stems[name] for name in STEMS]).astype(np.float32)
            return Song.make(
                audio, bank, rate, info.sample_format, dict(stems.confidence), stems.confidence_rate
            )

        self.task = Task(job)
        self.task.progress.connect(self.progressChanged)
        self.task.done.connect(self._separated)
        self.task.failed.connect(lambda m: self._stopped(f"separation failed: {m}"))
        self.task.cancelled.connect(lambda: self._stopped("separation cancelled"))
        return self.task.start()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.message.emit("cancelling ...")

    def _stopped(self, text: str) -> None:
        self.task, self.pending = None, None
        self._set_state("loaded" if self.frames else "empty")
        self.message.emit(text)

    def _separated(self, song: Song) -> None:
        path, self.task, self.pending = self.pending, None, None
        assert path is not None
        self.adopt_song(song, path)
        self.add_recent(path)
        self.message.emit(f"{path.name}: separated")

    def adopt_song(self, song: Song, source: Path | None) -> None:
        """Show ``song`` (already separated, e.g. by the DAW bridge) with ``source`` as its
        audio file; its stems count as unsaved."""
        self._adopt(song)
        self.source, self.stems_dirty = source, True
        self._ready()

    def _adopt(self, song: Song) -> None:
        self._close_player()
        self._clear()
        self.mixture, self.bank, self.peaks = song.mixture, song.bank, song.peaks
        self.rate, self.sample_format = song.rate, song.sample_format
        self.confidence, self.confidence_rate = song.confidence, song.confidence_rate

    def _ready(self) -> None:
        self.mixer = Mixer(self.bank, self.rate)
        self.mixer.set_strips([self.strips[n] for n in STEMS], self.master_db)
        self.mixer.settle()
        self.player = Player(self.mixer)
        self._set_state("loaded")
        self.loaded.emit()
        self.mixChanged.emit()

    # ------------------------------------------------------------------ mix
    def set_strip(self, name: str, **changes: Any) -> None:
        """Change one stem's ``gain_db``, ``pan``, ``mute`` or ``solo``."""
        self.strips[name] = dataclasses.replace(self.strips[name], **changes)
        self._push_mix()

    def toggle(self, name: str, what: str) -> None:
        """Flip ``mute`` or ``solo`` of ``name``."""
        self.set_strip(name, **{what: not getattr(self.strips[name], what)})

    def set_master(self, db: float) -> None:
        self.master_db = db
        self._push_mix()

    def _push_mix(self) -> None:
        if self.mixer is not None:
            self.mixer.set_strips([self.strips[n] for n in STEMS], self.master_db)
        self.mixChanged.emit()

    # ------------------------------------------------------------------ transport
    def toggle_play(self) -> None:
        if self.player is None:
            return
        if self.player.playing:
            self.player.pause()
        elif not self.player.play():
            self.player.pause()
            self.message.emit(f"playback unavailable ({self.player.error})")

    def stop(self) -> None:
        if self.player is not None:
            self.player.pause()
            self.player.seek(self.player.loop[0] if self.player.loop else 0)

    def seek_seconds(self, t: float) -> None:
        if self.player is not None:
            self.player.seek(round(t * self.rate))

    def set_loop(self, start_s: float, stop_s: float) -> None:
        if self.player is not None:
            self.player.set_loop(round(start_s * self.rate), round(stop_s * self.rate))

    def _close_player(self) -> None:
        if self.player is not None:
            self.player.close()

    # ------------------------------------------------------------------ projects
    def project_data(self) -> project.ProjectData:
        return project.ProjectData(
            str(self.source or ""),
            self.rate,
            self.sample_format,
            dict(self.strips),
            self.master_db,
            dict(self.view),
            self.confidence_rate,
        )

    def save_project(self, path: Path) -> Path:
        if not self.frames:
            raise StemtokError("nothing to save yet: open a song first")
        target = path if path.suffix == project.SUFFIX else path.with_name(path.name + ".stemtok")
        same = self.project_path is not None and target.resolve() == self.project_path.resolve()
        written = project.save(
            target,
            self.project_data(),
            self.stems,
            self.confidence,
            write_stems=self.stems_dirty or not same,
        )
        self.project_path, self.stems_dirty = written, False
        self.add_recent(written)
        self.message.emit(f"saved {written.name}")
        return written

    def open_project(self, path: Path) -> Task | None:
        """Load a project in the background (stems, source, peaks); the view swaps when done."""
        if self.task is not None:
            self.message.emit("busy: cancel the running separation first")
            return None

        def job(progress: Callable[[float], None], cancel: Callable[[], bool]) -> Any:
            got = project.load(path)
            bank = np.stack([got.stems[n] for n in STEMS]).astype(np.float32)
            src = Path(got.data.source) if got.data.source else None
            mix = bank.sum(axis=0) if got.source_missing or src is None else read_audio(src)[0]
            if mix.shape != bank.shape[1:]:
                raise StemtokError(f"{src}: no longer matches the project's stems")
            d = got.data
            song = Song.make(mix, bank, d.rate, d.sample_format, got.confidence, d.confidence_rate)
            return got, song

        self.message.emit(f"opening {path.name} ...")
        self.task = Task(job)
        self.task.done.connect(lambda result: self._opened(path, *result))
        self.task.failed.connect(lambda m: self._stopped(m))
        return self.task.start()

    def _opened(self, path: Path, got: project.Loaded, song: Song) -> None:
        self.task = None
        self._adopt(song)
        d = got.data
        self.project_path, self.source_missing = path, got.source_missing
        self.source = Path(d.source) if d.source else None
        self.strips.update(d.strips)
        self.master_db, self.view, self.stems_dirty = d.master_db, d.view, False
        self._ready()
        self.add_recent(path)
        note = f" (source {self.source} is missing: the mix lane shows the stems' sum)"
        self.message.emit(f"opened {path.name}" + (note if got.source_missing else ""))

    # ------------------------------------------------------------------ recent files
    def recent(self) -> list[str]:
        value = self.settings.value("recent", [])
        items = [value] if isinstance(value, str) else list(value or [])
        return [str(v) for v in items]

    def add_recent(self, path: Path) -> None:
        items = [str(path)] + [p for p in self.recent() if p != str(path)]
        self.settings.setValue("recent", items[:MAX_RECENT])
        self.recentChanged.emit()

    # ------------------------------------------------------------------ export, re-roll
    def export(self, plan: ExportPlan) -> list[Path]:
        """Write ``plan`` now (the remix from a copy of the mixer: playback is not disturbed)."""
        mixer = self.mixer.copy() if self.mixer is not None else None
        written, warnings = run_export(
            plan, self.song_name, self.stems, mixer, self.rate, self.sample_format
        )
        self._exported(written, warnings)
        return written

    def export_in_background(self, plan: ExportPlan) -> Task:
        """:meth:`export` on the worker pool (a 10-minute remix takes seconds to encode)."""
        plan.check(self.song_name)  # refuse at once what would fail
        mixer = self.mixer.copy() if self.mixer is not None else None
        args = (plan, self.song_name, self.stems, mixer, self.rate, self.sample_format)
        self.export_task = Task(lambda progress, cancel: run_export(*args))
        self.export_task.done.connect(lambda result: self._exported(*result))
        self.export_task.failed.connect(lambda m: self.message.emit(f"export failed: {m}"))
        self.message.emit("exporting ...")
        return self.export_task.start()

    def _exported(self, written: list[Path], warnings: list[str]) -> None:
        self.export_task = None
        for w in warnings:
            self.message.emit(w)
        self.message.emit(f"exported {len(written)} file(s) to {written[0].parent}")

    def reroll(self, start_s: float, stop_s: float, seed: int) -> Task | None:
        """Separate ``[start_s, stop_s)`` again with ``seed`` and crossfade it in (A/B-able)."""
        if self.task is not None or not self.frames:
            self.message.emit("re-roll needs a loaded song and no running separation")
            return None
        take = Take.plan(
            round(start_s * self.rate), round(stop_s * self.rate), self.rate, self.frames, seed
        )
        mix = self.mixture[:, take.start : take.stop].copy()

        def job(progress: Callable[[float], None], cancel: Callable[[], bool]) -> Stems:
            return self.separator().separate(
                mix,
                self.rate,
                mode=self.mode,
                seed=seed,
                progress=progress,
                cancel=cancel,
                confidence=True,
            )

        self.task = Task(job)
        self.task.progress.connect(self.progressChanged)
        self.task.done.connect(lambda stems: self._rerolled(take, stems))
        self.task.failed.connect(lambda m: self._stopped(f"re-roll failed: {m}"))
        self.task.cancelled.connect(lambda: self._stopped("re-roll cancelled"))
        self._set_state("separating")
        return self.task.start()

    def _rerolled(self, take: Take, stems: Stems) -> None:
        self.task = None
        new = np.stack([stems[n] for n in STEMS]).astype(np.float32)
        self.take = blend(take, self.bank, new)
        if self.confidence_rate:
            take.blend_confidence(
                self.confidence, dict(stems.confidence), self.confidence_rate / self.rate
            )
        self.use_take(True)
        self._set_state("loaded")
        self.message.emit(
            f"re-rolled {take.seconds(self.rate)} with seed {take.seed}: "
            "compare the takes, then keep one"
        )

    def use_take(self, new: bool) -> None:
        """Hear the re-rolled take (``new``) or the original in the take's region."""
        if self.take is not None:
            self.take.apply(self.bank, new, self.confidence)
            for lane in self.peaks[1:]:
                lane.refresh(self.take.start, self.take.stop)
            self.stems_dirty = True
            self.stemsEdited.emit()

    def keep_take(self, new: bool) -> None:
        """Keep one take and forget the other."""
        self.use_take(new)
        self.take = None
        self.stemsEdited.emit()
