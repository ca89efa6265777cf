"""Smaller views: the empty-window drop area, the separation progress panel and the karaoke drop
target with its queue."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QDragEnterEvent, QDropEvent
from PyQt6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.editor.karaoke import KaraokeOptions, KaraokeQueue


def dropped_files(e: QDropEvent | QDragEnterEvent) -> list[Path]:
    """The local files of a drag (empty when it carries none)."""
    mime = e.mimeData()
    if mime is None or not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]


def fmt_left(seconds: float) -> str:
    if seconds < 0:
        return "estimating time left ..."
    m, s = divmod(round(seconds), 60)
    return f"about {m}:{s:02d} left"


class DropArea(QLabel):
    """What an empty window shows."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setText(
            "<div style='font-size:22px;color:#d5d8de'>Drop a song here</div>"
            "<div style='font-size:13px;color:#8a8f99'><br>WAV, FLAC, MP3, OGG or AIFF, or "
            "File &#8250; Open (Ctrl+O)<br>It is split into vocals, drums, bass and other.</div>"
        )
        self.setStyleSheet("border: 2px dashed #4a4e57; border-radius: 14px; margin: 40px;")


class ProgressPanel(QWidget):
    """Progress bar, time left and Cancel while a song is being separated."""

    cancelRequested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("Separating ...")
        self.title.setStyleSheet("font-size: 18px; color: #d5d8de;")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setFormat("%p%")
        self.left = QLabel(fmt_left(-1))
        self.left.setStyleSheet("color: #9aa0aa;")
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self.cancelRequested)
        box = QVBoxLayout(self)
        box.addStretch(1)
        for w in (self.title, self.bar, self.left):
            box.addWidget(w)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.cancel)
        box.addLayout(row)
        box.addStretch(2)
        box.setContentsMargins(80, 20, 80, 20)

    def start(self, name: str) -> None:
        self.title.setText(f"Separating {name} ...")
        self.cancel.setEnabled(True)
        self.show_progress(0.0, -1.0)

    def show_progress(self, fraction: float, left: float) -> None:
        self.bar.setValue(round(fraction * 1000))
        self.left.setText(fmt_left(left))


class KaraokePanel(QFrame):
    """A drop target: every song dropped here becomes an instrumental (queued)."""

    def __init__(self, queue: KaraokeQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.queue = queue
        self.setAcceptDrops(True)
        self.setObjectName("karaoke")
        self.setStyleSheet("#karaoke { border: 2px dashed #7d97ff; border-radius: 8px; }")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.guide = QCheckBox("guide vocal")
        self.guide_db = QDoubleSpinBox()
        self.guide_db.setRange(-40, 0)
        self.guide_db.setValue(-18)
        self.guide_db.setSuffix(" dB")
        self.semis = QDoubleSpinBox()
        self.semis.setRange(-12, 12)
        self.semis.setSingleStep(1)
        self.semis.setSuffix(" st")
        self.semis.setToolTip("key shift in semitones")
        self.guide.toggled.connect(self._options)
        self.guide_db.valueChanged.connect(self._options)
        self.semis.valueChanged.connect(self._options)
        self.where = QPushButton("beside each song")
        self.where.setToolTip("where the instrumentals go (click to choose a folder)")
        self.where.clicked.connect(self._choose_folder)
        row = QHBoxLayout()
        for w in (
            self.guide,
            self.guide_db,
            QLabel("key shift"),
            self.semis,
            QLabel("write"),
            self.where,
        ):
            row.addWidget(w)
        self.guide_db.setFixedWidth(90)
        self.semis.setFixedWidth(80)
        row.addStretch(1)
        box = QVBoxLayout(self)
        box.addWidget(self.label)
        box.addLayout(row)
        queue.changed.connect(self.refresh)
        queue.progress.connect(self._running)

        self.refresh()

    def _choose_folder(self) -> None:
        got = QFileDialog.getExistingDirectory(self, "Write instrumentals into")
        self.set_folder(Path(got) if got else None)

    def set_folder(self, folder: Path | None) -> None:
        """Instrumentals go into ``folder`` (None: beside each song)."""
        o = self.queue.options
        self.queue.options = KaraokeOptions(o.guide_db, o.semitones, folder)
        self.where.setText(f"into {folder.name}/" if folder else "beside each song")

    def _options(self, *_: object) -> None:
        guide = self.guide_db.value() if self.guide.isChecked() else None
        self.queue.options = KaraokeOptions(guide, self.semis.value(), self.queue.options.folder)

    def _running(self, name: str, fraction: float) -> None:
        q = self.queue
        self.label.setText(
            f"<b>Karaoke</b>: making {name} ... {fraction:.0%} &#8212; "
            f"{len(q.waiting)} waiting, {len(q.done)} made"
        )

    def refresh(self) -> None:
        q = self.queue
        if q.current is None and not q.waiting:
            done = f" &#8212; {len(q.done)} made" if q.done else ""
            self.label.setText(f"<b>Karaoke</b>: drop songs here for instrumentals{done}")
        else:
            name = q.current.name if q.current else ""
            self.label.setText(f"<b>Karaoke</b>: {name} ({len(q.waiting)} waiting)")

    def dragEnterEvent(self, e: QDragEnterEvent | None) -> None:
        if e is not None and dropped_files(e):
            e.acceptProposedAction()

    def dropEvent(self, e: QDropEvent | None) -> None:
        if e is not None and (files := dropped_files(e)):
            e.acceptProposedAction()
            self.queue.add(files)
