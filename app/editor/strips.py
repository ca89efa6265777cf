"""Channel strips beside the lanes (solo, mute, gain, pan) and the master level meter."""

from __future__ import annotations

import math

from PyQt6.QtCore import QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QPainter, QPaintEvent
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QSlider, QToolButton, QVBoxLayout, QWidget

from app.editor.lanes import COLORS
from app.editor.mixer import MAX_DB, MIN_DB, Strip

_BUTTON_CSS = """
QToolButton { background: #3a3d44; color: #d5d8de; border: 1px solid #4a4e57; border-radius: 3px;
              font-weight: bold; min-width: 22px; min-height: 20px; }
QToolButton:checked#solo { background: #e8c547; color: #111; }
QToolButton:checked#mute { background: #e0564a; color: #111; }
"""


class StemStrip(QWidget):
    """Controls of one stem. Emits ``changed(name, field, value)`` when the user moves one."""

    changed = pyqtSignal(str, str, object)

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.setStyleSheet(_BUTTON_CSS)
        self.title = QLabel(name.capitalize())
        self.title.setStyleSheet(f"color: {COLORS.get(name, '#ccc')}; font-weight: bold;")
        self.solo, self.mute = self._button("S", "solo"), self._button("M", "mute")
        self.gain = QSlider(Qt.Orientation.Horizontal)
        self.gain.setRange(int(MIN_DB * 2), int(MAX_DB * 2))  # half-dB steps
        self.gain.setToolTip("gain (dB); double-click the value to reset")
        self.gain.valueChanged.connect(lambda v: self._emit("gain_db", v / 2))
        self.db = QLabel("0.0 dB")
        self.db.setMinimumWidth(52)
        self.pan = QSlider(Qt.Orientation.Horizontal)
        self.pan.setRange(-100, 100)
        self.pan.setToolTip("pan (left ... right)")
        self.pan.valueChanged.connect(lambda v: self._emit("pan", v / 100))
        self.db.mouseDoubleClickEvent = lambda e: self.gain.setValue(0)  # type: ignore[assignment,method-assign]
        self._layout()

    def _button(self, text: str, field: str) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setObjectName(field)
        b.setCheckable(True)
        b.setToolTip(field)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        b.toggled.connect(lambda on: self._emit(field, on))
        return b

    def _layout(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.solo)
        top.addWidget(self.mute)
        gain = QHBoxLayout()
        gain.addWidget(self.gain, 1)
        gain.addWidget(self.db)
        pan = QHBoxLayout()
        pan.addWidget(QLabel("pan"))
        pan.addWidget(self.pan, 1)
        box = QVBoxLayout(self)
        box.setContentsMargins(6, 2, 6, 2)
        box.setSpacing(1)
        for row in (top, gain, pan):
            box.addLayout(row)

    def _emit(self, field: str, value: object) -> None:
        if field == "gain_db" and isinstance(value, float):
            self.db.setText(f"{value:+.1f} dB" if value > MIN_DB else "-inf dB")
        self.changed.emit(self.name, field, value)

    def show_state(self, s: Strip) -> None:
        """Reflect ``s`` without emitting ``changed``."""
        for button, on in ((self.solo, s.solo), (self.mute, s.mute)):
            button.blockSignals(True)
            button.setChecked(on)
            button.blockSignals(False)
        for slider, v in ((self.gain, round(s.gain_db * 2)), (self.pan, round(s.pan * 100))):
            slider.blockSignals(True)
            slider.setValue(v)
            slider.blockSignals(False)
        self.db.setText(f"{s.gain_db:+.1f} dB" if s.gain_db > MIN_DB else "-inf dB")


class Meter(QWidget):
    """Stereo peak meter, -60 .. 0 dBFS, with a falling bar and a red clip light."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedWidth(34)
        self.levels = [0.0, 0.0]  # dBFS-scaled 0..1
        self.clip = False

    def set_peaks(self, peaks: list[float]) -> None:
        for i, v in enumerate(peaks[:2]):
            db = 20 * math.log10(max(v, 1e-6))
            target = min(1.0, max(0.0, (db + 60) / 60))
            self.levels[i] = max(target, self.levels[i] - 0.03)  # fall ~1.8 dB a frame
        self.clip = self.clip or max(peaks[:2], default=0.0) >= 1.0
        self.update()

    def paintEvent(self, event: QPaintEvent | None) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#17181b"))
        h = self.height() - 22
        for i, v in enumerate(self.levels):
            x = 4 + i * 14
            p.fillRect(QRectF(x, 16, 11, h), QColor("#2b2e34"))
            color = (
                QColor("#e0564a")
                if v > 0.95
                else QColor("#e8c547")
                if v > 0.8
                else QColor("#4cc38a")
            )
            p.fillRect(QRectF(x, 16 + h * (1 - v), 11, h * v), color)
        p.fillRect(QRectF(4, 4, 25, 8), QColor("#e0564a") if self.clip else QColor("#3a3d44"))
        p.setPen(QColor("#9aa0aa"))
        p.setFont(QFont("Sans", 6))
        p.drawText(
            QRectF(0, self.height() - 10, self.width(), 10), Qt.AlignmentFlag.AlignCenter, "L  R"
        )
        p.end()
