"""The editor's main window: drop a song, watch it separate, then play, remix, export, re-roll,
make karaoke. Widgets only: every decision is the :class:`Session`'s."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt, QThreadPool, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.editor.export_dialog import ExportDialog
from app.editor.karaoke import KaraokeQueue
from app.editor.lanes import Lane, to_qimage
from app.editor.midi import MidiControl
from app.editor.mixer import audible
from app.editor.panes import DARK, EditorView
from app.editor.session import Session
from app.editor.spectro import spectrogram_rgba
from app.editor.views import DropArea, KaraokePanel, ProgressPanel, dropped_files
from app.editor.worker import Task
from engine.constants import STEMS
from engine.errors import StemtokError

AUDIO_FILTER = "Audio or project (*.wav *.flac *.mp3 *.ogg *.aif *.aiff *.stemtok);;All files (*)"


class MainWindow(QMainWindow):
    """``stemtok editor``: one session, one window.

    ``closing`` fires at the start of a close, before the window waits for its jobs (the DAW
    bridge front stops its server there).
    """

    closing = pyqtSignal()

    def __init__(self, session: Session, karaoke: KaraokeQueue | None = None) -> None:
        super().__init__()
        self.session = session
        self.karaoke = karaoke or KaraokeQueue(session.separator)
        self.midi = MidiControl(session)
        self.setWindowTitle("stemtok editor")
        self.setAcceptDrops(True)
        self.setStyleSheet(DARK)
        self.resize(1280, 760)
        self.drop, self.progress, self.editor = DropArea(), ProgressPanel(), EditorView()
        self.pages = QStackedWidget()
        for w in (self.drop, self.progress, self.editor):
            self.pages.addWidget(w)
        self.karaoke_panel = KaraokePanel(self.karaoke)
        self.transport = self._transport_bar()
        central = QWidget()
        box = QVBoxLayout(central)
        box.addWidget(self.transport)
        box.addWidget(self.pages, 1)
        box.addWidget(self.karaoke_panel)
        self.setCentralWidget(central)
        self._menus()
        self._connect()
        self.timer = QTimer(self)
        self.timer.setInterval(33)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self.spectro_task: Task | None = None
        self._show_state(session.state)

    # ------------------------------------------------------------------ building
    def _transport_bar(self) -> QWidget:
        bar = QWidget()
        row = QHBoxLayout(bar)
        row.setContentsMargins(4, 0, 4, 0)
        self.play_btn = QPushButton("Play")
        self.play_btn.clicked.connect(self.session.toggle_play)
        stop = QPushButton("Stop")
        stop.clicked.connect(self.session.stop)
        self.time = QLabel("0:00.00")
        self.time.setStyleSheet("font: bold 15px monospace; padding: 0 12px;")
        self.loop = QCheckBox("loop selection")
        self.loop.toggled.connect(self._apply_loop)
        self.ruler = QComboBox()
        self.ruler.addItems(["seconds", "bars"])
        self.ruler.currentTextChanged.connect(self._ruler_mode)
        self.bpm = QDoubleSpinBox()
        self.bpm.setRange(20, 300)
        self.bpm.setValue(120)
        self.bpm.setSuffix(" BPM")
        self.bpm.valueChanged.connect(self._ruler_mode)
        self.spectro = QCheckBox("spectrogram")
        self.spectro.toggled.connect(self._spectro)
        self.reroll_btn = QPushButton("Re-roll selection")
        self.reroll_btn.clicked.connect(self.reroll)
        self.take_a, self.take_b = QPushButton("Take A"), QPushButton("Take B")
        self.keep = QPushButton("Keep shown take")
        for b in (self.take_a, self.take_b):
            b.setCheckable(True)
        self.take_a.clicked.connect(lambda: self.session.use_take(False))
        self.take_b.clicked.connect(lambda: self.session.use_take(True))
        self.keep.clicked.connect(self._keep_take)
        for w in (self.play_btn, stop, self.time, self.loop, self.ruler, self.bpm, self.spectro):
            row.addWidget(w)
        row.addStretch(1)
        for w in (self.reroll_btn, self.take_a, self.take_b, self.keep):
            row.addWidget(w)
        for b in bar.findChildren(QPushButton):  # Space is play/pause, not "press the button"
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        return bar

    def _menus(self) -> None:
        menu = self.menuBar()
        assert menu is not None
        file = menu.addMenu("&File")
        assert file is not None
        self._act(file, "&Open ...", "Ctrl+O", self.open_dialog)
        self.recent_menu = file.addMenu("Open &Recent")
        self._act(file, "Open &Project ...", "Ctrl+Shift+O", self.open_dialog)
        self._act(file, "&Save Project", "Ctrl+S", self.save)
        self._act(file, "Save Project &As ...", "Ctrl+Shift+S", lambda: self.save(ask=True))
        self._act(file, "&Export ...", "Ctrl+E", self.export_dialog)
        self._act(file, "&Karaoke from files ...", "Ctrl+K", self.karaoke_dialog)
        self._act(file, "&Quit", "Ctrl+Q", self.close)
        view = menu.addMenu("&View")
        assert view is not None
        self._act(view, "Zoom &In", "Ctrl+=", lambda: self.editor.canvas.zoom(1.5))
        self._act(view, "Zoom &Out", "Ctrl+-", lambda: self.editor.canvas.zoom(1 / 1.5))
        self._act(view, "Show &Whole Song", "Ctrl+0", self.editor.canvas.fit)
        self._act(view, "&Spectrogram", "Ctrl+G", self.spectro.toggle)
        self._act(view, "&Taller Waveforms", "Ctrl+Up", lambda: self._v_zoom(2.0))
        self._act(view, "S&horter Waveforms", "Ctrl+Down", lambda: self._v_zoom(0.5))
        play = menu.addMenu("&Transport")
        assert play is not None
        self._act(play, "&Play / Pause", "Space", self.session.toggle_play)
        self._act(play, "&Stop (to start)", "Home", self.session.stop)
        self._act(play, "&Loop Selection", "L", self.loop.toggle)
        for i, name in enumerate(STEMS, 1):
            self._act(play, f"Solo {name}", str(i), self._toggler(name, "solo"))
            self._act(play, f"Mute {name}", f"Alt+{i}", self._toggler(name, "mute"))
        self.midi_menu = menu.addMenu("&MIDI")
        self._midi_menu()
        self._recent()

    def _toggler(self, name: str, what: str) -> Callable[[], None]:
        return lambda: self.session.toggle(name, what)

    def _act(self, menu: QMenu, text: str, keys: str, slot: Callable[[], object]) -> QAction:
        a = QAction(text, self)
        a.setShortcut(QKeySequence(keys))
        a.triggered.connect(lambda _checked=False: slot())
        menu.addAction(a)
        return a

    def _midi_menu(self) -> None:
        m = self.midi_menu
        assert m is not None
        m.clear()
        a = QAction("Listen to first MIDI input", self)
        a.triggered.connect(self._open_midi)
        m.addAction(a)
        learn = m.addMenu("Learn")
        assert learn is not None
        from app.editor.midi import targets

        bound = {t: " ".join(map(str, k)) for k, t in self.midi.bindings.items()}
        for t in targets():
            act = QAction(f"{t}  [{bound.get(t, '-')}]", self)
            act.triggered.connect(lambda _=False, t=t: self._learn(t))
            learn.addAction(act)

    def _connect(self) -> None:
        s, c = self.session, self.editor.canvas
        s.stateChanged.connect(self._show_state)
        s.progressChanged.connect(self._progress)
        s.loaded.connect(self._loaded)
        s.mixChanged.connect(self._mix_changed)
        s.stemsEdited.connect(self._stems_edited)
        s.message.connect(self._message)
        s.recentChanged.connect(self._recent)
        self.karaoke.message.connect(self._message)
        self.progress.cancelRequested.connect(s.cancel)
        self.midi.learned.connect(self._learned)
        self.editor.master.valueChanged.connect(lambda v: s.set_master(v / 2))
        for strip in self.editor.strips.values():
            strip.changed.connect(lambda name, field, v: s.set_strip(name, **{field: v}))
        c.seekRequested.connect(s.seek_seconds)
        c.selectionChanged.connect(lambda a, b: self._apply_loop())

    # ------------------------------------------------------------------ session -> view
    def _show_state(self, state: str) -> None:
        if state == "separating" and self.session.pending is not None:
            self.progress.start(self.session.pending.name)
            self.pages.setCurrentWidget(self.progress)
        elif state != "separating":
            self.pages.setCurrentWidget(self.editor if state == "loaded" else self.drop)
        loaded = state == "loaded"
        for w in (self.play_btn, self.reroll_btn):
            w.setEnabled(loaded)
        self._take_buttons()

    def _progress(self, fraction: float, left: float) -> None:
        self.progress.show_progress(fraction, left)
        if self.session.pending is None:  # a re-roll: the status bar shows it
            self._message(f"re-rolling ... {fraction:.0%}")

    def _loaded(self) -> None:
        s = self.session
        names = ["mix", *STEMS]
        conf = [None] + [s.confidence.get(n) for n in STEMS]
        lanes = [Lane(n, p, c) for n, p, c in zip(names, s.peaks, conf, strict=True)]
        self.editor.canvas.set_song(lanes, s.rate, s.frames, s.confidence_rate)
        missing = " (source missing: sum of stems)" if s.source_missing else ""
        self.editor.mix_label.setText(
            f"<b>Mix</b><br><span style='color:#8a8f99'>{s.song_name}{missing}</span>"
        )
        self.setWindowTitle(f"{s.song_name} - stemtok editor")
        self._mix_changed()

    def _mix_changed(self) -> None:
        s = self.session
        flags = audible([s.strips[n] for n in STEMS])
        for name, strip in self.editor.strips.items():
            strip.show_state(s.strips[name])
        self.editor.master.blockSignals(True)
        self.editor.master.setValue(round(s.master_db * 2))
        self.editor.master.blockSignals(False)
        self.editor.master_db.setText(f"master {s.master_db:+.1f} dB")
        for lane, on in zip(self.editor.canvas.lanes[1:], flags, strict=False):
            lane.dim = not on
            lane.why = "muted" if s.strips[lane.name].mute else "not soloed"
        self.editor.canvas.update()

    def _stems_edited(self) -> None:
        for lane in self.editor.canvas.lanes[1:]:  # the session refreshed their peaks
            lane.spectro, lane.unsure = None, None
        if self.editor.canvas.spectrogram and self.spectro_task is None:
            self._make_spectrograms()
        self.editor.canvas.update()
        self._take_buttons()

    def _take_buttons(self) -> None:
        take = self.session.take
        for b in (self.take_a, self.take_b, self.keep):
            b.setVisible(take is not None)
        if take is not None:
            self.take_a.setChecked(not take.using_new)
            self.take_b.setChecked(take.using_new)

    def _message(self, text: str) -> None:
        bar = self.statusBar()
        if bar is not None:
            bar.showMessage(text, 8000)

    def _recent(self) -> None:
        m = self.recent_menu
        assert m is not None
        m.clear()
        for path in self.session.recent():
            a = QAction(path, self)
            a.triggered.connect(lambda _=False, p=path: self.session.open_path(p))
            m.addAction(a)

    def _tick(self) -> None:
        p = self.session.player
        if p is None:
            return
        t = p.now / self.session.rate
        m, sec = divmod(t, 60)
        self.time.setText(f"{int(m)}:{sec:05.2f}")
        self.play_btn.setText("Pause" if p.playing else "Play")
        c = self.editor.canvas
        if abs(c.playhead - t) > 1e-4:
            c.playhead = t
            if p.playing and not 0 <= c.x_of(t) < c.width():  # page along with the playhead
                c.scroll_to(p.now - 0.1 * c.width() * c.spp)
            c.update()
        self.editor.meter.set_peaks([float(v) for v in p.peak])

    # ------------------------------------------------------------------ actions
    def _apply_loop(self) -> None:
        sel = self.editor.canvas.selection
        if self.session.player is None:
            return
        if self.loop.isChecked() and sel is not None:
            self.session.set_loop(*sel)
        else:
            self.session.player.loop = None

    def _ruler_mode(self, *_: object) -> None:
        c = self.editor.canvas
        c.ruler_bars, c.bpm = self.ruler.currentText() == "bars", self.bpm.value()
        self.session.view.update(ruler=self.ruler.currentText(), bpm=self.bpm.value())
        c.update()

    def _v_zoom(self, factor: float) -> None:
        c = self.editor.canvas
        c.v_zoom = min(64.0, max(1.0, c.v_zoom * factor))
        c.update()

    def _spectro(self, on: bool) -> None:
        c = self.editor.canvas
        c.spectrogram = on
        if on and self.spectro_task is None and any(ln.spectro is None for ln in c.lanes):
            self._make_spectrograms()
        c.update()

    def _make_spectrograms(self) -> None:
        """Spectrograms of every lane on the worker pool (waveforms show until they are done)."""
        lanes, rate = list(self.editor.canvas.lanes), self.editor.canvas.rate

        def job(progress: Callable[[float], None], cancel: Callable[[], bool]) -> list[Any]:
            out = []
            for i, lane in enumerate(lanes):
                out.append(spectrogram_rgba(lane.peaks.audio.mean(axis=0), rate))
                progress((i + 1) / len(lanes))
            return out

        self.spectro_task = Task(job)
        self.spectro_task.done.connect(lambda images: self._spectrograms(lanes, images))
        self.spectro_task.failed.connect(self._message)
        self.spectro_task.start()

    def _spectrograms(self, lanes: list[Lane], images: list[Any]) -> None:
        self.spectro_task = None
        for lane, (pixels, hop) in zip(lanes, images, strict=True):
            lane.spectro, lane.spectro_hop = to_qimage(pixels), hop
        self.editor.canvas.update()

    def reroll(self) -> None:
        sel = self.editor.canvas.selection
        if sel is None or sel[1] - sel[0] < 0.05:
            self._message("select a region first (drag across the lanes)")
            return
        self.session.reroll(sel[0], sel[1], seed=random.randrange(1, 2**31))

    def _keep_take(self) -> None:
        take = self.session.take
        if take is not None:
            self.session.keep_take(take.using_new)

    def _learned(self, target: str, key: str) -> None:
        self._message(f"MIDI {key} -> {target}")
        self._midi_menu()

    def _learn(self, target: str) -> None:
        self.midi.learn(target)
        self._message(f"MIDI learn: move a control or press a pad for {target}")

    def _open_midi(self) -> None:
        try:
            self._message(f"MIDI: listening to {self.midi.open_port()}")
        except (OSError, ImportError) as exc:
            self._message(f"MIDI unavailable: {exc}")

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open", "", AUDIO_FILTER)
        if path:
            self.session.open_path(path)

    def save(self, ask: bool = False) -> None:
        s = self.session
        path = s.project_path
        if ask or path is None:
            start = str((s.source or Path.home() / "untitled").with_suffix(".stemtok"))
            got, _ = QFileDialog.getSaveFileName(self, "Save project", start, "*.stemtok")
            if not got:
                return
            path = Path(got)
        try:
            s.save_project(path)
        except StemtokError as exc:
            self._message(str(exc))

    def export_dialog(self) -> ExportDialog | None:
        s = self.session
        if not s.frames:
            self._message("nothing to export yet: open a song first")
            return None
        folder = (s.source.parent if s.source else Path.home()) / f"{s.song_name}-stems"
        dlg = ExportDialog(s.song_name, folder, s.sample_format, s.rate, self, s.mixture.shape[0])
        dlg.accepted.connect(lambda: self._export(dlg))
        dlg.open()
        return dlg

    def _export(self, dlg: ExportDialog) -> None:
        try:
            self.session.export_in_background(dlg.plan())
        except StemtokError as exc:
            self._message(str(exc))

    def karaoke_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Songs for karaoke", "", AUDIO_FILTER)
        self.karaoke.add([Path(f) for f in files])

    # ------------------------------------------------------------------ drops and close
    def dragEnterEvent(self, e: QDragEnterEvent | None) -> None:
        if e is not None and dropped_files(e):
            e.acceptProposedAction()

    def dropEvent(self, e: QDropEvent | None) -> None:
        files = dropped_files(e) if e is not None else []
        if e is None or not files:
            return
        e.acceptProposedAction()
        self.session.open_path(files[0])
        if len(files) > 1:
            self._message("opened the first file; drop several on the karaoke target to queue them")

    def closeEvent(self, e: QCloseEvent | None) -> None:
        self.closing.emit()
        self.session.cancel()
        self.karaoke.cancel()
        QThreadPool.globalInstance().waitForDone(10_000)  # type: ignore[union-attr]
        self.midi.close_port()
        if self.session.player is not None:
            self.session.player.close()
        super().closeEvent(e)
