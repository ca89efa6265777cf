"""The loaded-song pane (strips | lanes | meter, scroll bar below) and the window's dark style."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QGridLayout, QLabel, QScrollBar, QSlider, QVBoxLayout, QWidget

from app.editor.lanes import RULER_H, LaneCanvas
from app.editor.mixer import MAX_DB, MIN_DB
from app.editor.strips import Meter, StemStrip
from engine.constants import STEMS

DARK = """
QWidget { background: #1f2024; color: #d5d8de; }
QMenuBar, QMenu, QStatusBar { background: #26282d; }
QPushButton { background: #3a3d44; border: 1px solid #4a4e57; border-radius: 3px; padding: 3px 10px; }
QPushButton:disabled { color: #6b6f78; background: #2a2c31; border-color: #363940; }
QProgressBar { border: 1px solid #4a4e57; border-radius: 3px; text-align: center; height: 22px; }
QProgressBar::chunk { background: #7d97ff; }
QCheckBox::indicator { width: 13px; height: 13px; border: 1px solid #8a8f99; border-radius: 2px;
                       background: #2b2e34; }
QCheckBox::indicator:checked { background: #7d97ff; border-color: #b8c6ff; }
"""


class EditorView(QWidget):
    """Strips | lanes | meter, with the scroll bar under the lanes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = LaneCanvas()
        self.scrollbar = QScrollBar(Qt.Orientation.Horizontal)
        self.meter = Meter()
        self.strips = {name: StemStrip(name) for name in STEMS}
        self.mix_label = QLabel("<b>Mix</b><br><span style='color:#8a8f99'>the source</span>")
        column = QVBoxLayout()
        column.setContentsMargins(0, RULER_H, 0, 0)
        column.setSpacing(0)
        mix = QVBoxLayout()
        mix.setContentsMargins(6, 2, 6, 2)
        mix.addWidget(self.mix_label)
        self.master = QSlider(Qt.Orientation.Horizontal)
        self.master.setRange(int(MIN_DB * 2), int(MAX_DB * 2))
        self.master.setToolTip("master level (dB)")
        self.master_db = QLabel("master +0.0 dB")
        mix.addWidget(self.master_db)
        mix.addWidget(self.master)
        column.addLayout(mix, 1)
        for s in self.strips.values():
            column.addWidget(s, 1)
        grid = QGridLayout(self)
        grid.setSpacing(2)
        side = QWidget()
        side.setLayout(column)
        side.setFixedWidth(190)
        grid.addWidget(side, 0, 0)
        grid.addWidget(self.canvas, 0, 1)
        grid.addWidget(self.meter, 0, 2)
        grid.addWidget(self.scrollbar, 1, 1)
        self.scrollbar.valueChanged.connect(lambda v: self.canvas.scroll_to(float(v)))
        self.canvas.viewChanged.connect(self.sync_scroll)

    def sync_scroll(self) -> None:
        c = self.canvas
        page = int(c.width() * c.spp)
        self.scrollbar.blockSignals(True)
        self.scrollbar.setRange(0, max(0, c.frames - page))
        self.scrollbar.setPageStep(max(1, page))
        self.scrollbar.setSingleStep(max(1, page // 10))
        self.scrollbar.setValue(int(c.start))
        self.scrollbar.blockSignals(False)
