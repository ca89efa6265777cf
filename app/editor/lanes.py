"""The lanes canvas: a time ruler (seconds or bars) over the mixture and the four stem lanes, with
waveforms from cached peaks (or spectrograms), confidence strips, the selection and the playhead.

Waveforms are rasterised with numpy (a column per pixel between its min and max) and drawn as one
image per lane, so a redraw costs about the same at any zoom and song length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PyQt6.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QWheelEvent
from PyQt6.QtWidgets import QSizePolicy, QWidget

from app.editor.peaks import Peaks
from engine.constants import MODEL_RATE

RULER_H = 26
CONF_H = 6
BG = QColor("#1c1d21")
LANE_BG = (QColor("#24262b"), QColor("#212328"))
COLORS = {
    "mix": "#c9ccd3",
    "vocals": "#f2b134",
    "drums": "#ed6a4b",
    "bass": "#3cc0a8",
    "other": "#7d97ff",
}
_STEPS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300)


@dataclass
class Lane:
    """One lane: its name, peaks, colour, confidence ``[F]`` (or None) and dimming."""

    name: str
    peaks: Peaks
    confidence: np.ndarray | None = None
    unsure: np.ndarray | None = None  # from confidence, made on first use
    dim: bool = False
    why: str = ""  # why it is silent: "muted" or "not soloed"
    spectro: QImage | None = None  # made on first use
    spectro_hop: int = 0


def rgba(c: QColor) -> np.ndarray:
    return np.array([c.blue(), c.green(), c.red(), 255], np.uint8)  # ARGB32 is BGRA in memory


def wave_image(lo: np.ndarray, hi: np.ndarray, valid: int, h: int, color: QColor) -> np.ndarray:
    """``[h, W, 4]`` BGRA pixels: each column filled between its min and max (at least 1 px)."""
    mid, half = (h - 1) / 2, (h - 2) / 2
    top = np.floor(mid - np.clip(hi[:valid], -1, 1) * half).astype(np.int32)
    bot = np.ceil(mid - np.clip(lo[:valid], -1, 1) * half).astype(np.int32)
    rows = np.arange(h, dtype=np.int32)[:, None]
    mask = (rows >= top[None]) & (rows <= np.maximum(bot, top)[None])
    img = np.zeros((h, lo.size, 4), np.uint8)
    img[:, :valid][mask] = rgba(color)
    return img


def unsureness(conf: np.ndarray) -> np.ndarray:
    """Confidence ``exp(-H)`` ``[F]`` -> 0 (sure) .. 1 (unsure), relative to this stem: its
    least sure 5 % of frames are red, its surest 5 % green (spreads under 0.1 nat stay green)."""
    h = -np.log(np.maximum(conf, 1e-12))
    lo, hi = np.percentile(h, [5, 95])
    return np.clip((h - lo) / max(hi - lo, 0.1), 0, 1).astype(np.float32)


def conf_image(
    unsure: np.ndarray, frame_rate: float, t0: float, dt: float, width: int
) -> np.ndarray:
    """``[CONF_H, width, 4]``: green (sure) to red (unsure) at each pixel's time."""
    t = t0 + (np.arange(width) + 0.5) * dt
    f = np.clip((t * frame_rate).astype(np.int64), 0, unsure.size - 1)
    sure = 1 - np.where(t * frame_rate < unsure.size, unsure[f], 0.0)
    bgra = np.stack([40 + 0 * sure, 60 + 150 * sure, 230 - 170 * sure, 255 + 0 * sure], -1)
    return np.broadcast_to(bgra.astype(np.uint8), (CONF_H, width, 4)).copy()


def to_qimage(a: np.ndarray) -> QImage:
    h, w = a.shape[:2]
    buf = np.ascontiguousarray(a)
    return QImage(buf.tobytes(), w, h, 4 * w, QImage.Format.Format_ARGB32).copy()


def tick_step(px_per_s: float, min_px: float = 90) -> float:
    for s in _STEPS_S:
        if s * px_per_s >= min_px:
            return s
    return _STEPS_S[-1] * math.ceil(min_px / (_STEPS_S[-1] * px_per_s))


def fmt_time(t: float, step: float) -> str:
    m, s = divmod(t, 60)
    digits = 0 if step >= 1 else 1 if step >= 0.1 else 2 if step >= 0.01 else 3
    return f"{int(m)}:{s:0{3 + digits if digits else 2}.{digits}f}"


class LaneCanvas(QWidget):
    """Ruler + lanes. ``start`` (first visible frame) and ``spp`` (frames per pixel) set the view.

    Signals: ``seekRequested(seconds)`` on a click, ``selectionChanged(start_s, stop_s)`` on a
    drag (equal values: cleared), ``viewChanged()`` after zoom or scroll.
    """

    seekRequested = pyqtSignal(float)
    selectionChanged = pyqtSignal(float, float)
    viewChanged = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(400, RULER_H + 5 * 40)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.lanes: list[Lane] = []
        self.rate, self.frames = MODEL_RATE, 0
        self.start, self.spp = 0.0, 1000.0
        self.playhead = 0.0  # seconds
        self.selection: tuple[float, float] | None = None
        self.confidence_rate = 0.0
        self.spectrogram = False
        self.v_zoom = 1.0  # waveform height factor (View > Taller / Shorter Waveforms)
        self.ruler_bars, self.bpm, self.beats = False, 120.0, 4
        self._press: float | None = None

    # ------------------------------------------------------------------ model
    def set_song(self, lanes: list[Lane], rate: int, frames: int, confidence_rate: float) -> None:
        self.lanes, self.rate, self.frames = lanes, rate, frames
        self.confidence_rate = confidence_rate
        self.selection = None
        self.fit()

    def fit(self) -> None:
        """Show the whole song."""
        self.start = 0.0
        self.spp = max(self.frames / max(self.width(), 1), 1 / 16)
        self._changed()

    def zoom(self, factor: float, anchor_x: float | None = None) -> None:
        """Zoom in (``factor`` > 1) around pixel ``anchor_x`` (default: the centre)."""
        x = self.width() / 2 if anchor_x is None else anchor_x
        at = self.start + x * self.spp
        self.spp = min(max(self.spp / factor, 1 / 16), max(self.frames / 100, 1.0))
        self.start = at - x * self.spp
        self._changed()

    def scroll_to(self, frame: float) -> None:
        self.start = frame
        self._changed()

    def _changed(self) -> None:
        page = self.width() * self.spp
        self.start = min(max(0.0, self.start), max(0.0, self.frames - page))
        self.viewChanged.emit()
        self.update()

    def lane_rect(self, i: int) -> QRectF:
        h = (self.height() - RULER_H) / max(len(self.lanes), 5)
        return QRectF(0, RULER_H + i * h, self.width(), h)

    def x_of(self, seconds: float) -> float:
        return (seconds * self.rate - self.start) / self.spp

    def seconds_at(self, x: float) -> float:
        return max(0.0, min(self.frames, self.start + x * self.spp)) / self.rate

    # ------------------------------------------------------------------ painting
    def paintEvent(self, event: QPaintEvent | None) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), BG)
        self._paint_ruler(p)
        for i, lane in enumerate(self.lanes):
            self._paint_lane(p, i, lane)
        self._paint_overlay(p)
        p.end()

    def _paint_lane(self, p: QPainter, i: int, lane: Lane) -> None:
        r = self.lane_rect(i)
        p.fillRect(r, LANE_BG[i % 2])
        conf = lane.confidence is not None and self.confidence_rate > 0
        wave_h = int(r.height()) - (CONF_H + 2 if conf else 0) - 14
        top = int(r.top()) + 14
        color = QColor(COLORS.get(lane.name, "#aaaaaa"))
        if lane.dim:
            color = color.darker(260)
        w = self.width()
        if self.spectrogram and lane.spectro is not None:  # (made in the background)
            self._paint_spectro(p, lane.spectro, lane.spectro_hop, QRectF(0, top, w, wave_h))
        elif wave_h > 2:
            lo, hi, valid = lane.peaks.span(self.start, self.spp, w)
            lo, hi = lo * self.v_zoom, hi * self.v_zoom
            p.drawImage(QPointF(0, top), to_qimage(wave_image(lo, hi, valid, wave_h, color)))
        if conf and lane.confidence is not None:
            if lane.unsure is None:
                lane.unsure = unsureness(lane.confidence)
            img = conf_image(
                lane.unsure, self.confidence_rate, self.start / self.rate, self.spp / self.rate, w
            )
            p.drawImage(QPointF(0, top + wave_h + 1), to_qimage(img))
        p.setPen(QColor("#8a8f99") if lane.dim else color)
        p.setFont(QFont("Sans", 9, QFont.Weight.Bold))
        label = lane.name + (f"  ({lane.why or 'silent'})" if lane.dim else "")
        p.drawText(QPointF(8, r.top() + 12), label)
        p.setPen(QPen(QColor("#101114")))
        p.drawLine(QPointF(0, r.bottom()), QPointF(w, r.bottom()))

    def _paint_spectro(self, p: QPainter, img: QImage, hop: int, target: QRectF) -> None:
        c0 = self.start / hop
        c1 = (self.start + self.width() * self.spp) / hop
        p.drawImage(target, img, QRectF(c0, 0, c1 - c0, img.height()))

    def _paint_ruler(self, p: QPainter) -> None:
        p.fillRect(QRectF(0, 0, self.width(), RULER_H), QColor("#2d3036"))
        p.setFont(QFont("Sans", 8))
        px_per_s = self.rate / self.spp
        t0, t1 = self.start / self.rate, (self.start + self.width() * self.spp) / self.rate
        if self.ruler_bars:
            marks = self._bar_marks(px_per_s, t0, t1)
        else:
            step = tick_step(px_per_s)
            marks = [
                (k * step, fmt_time(k * step, step))
                for k in range(int(t0 // step), int(t1 // step) + 2)
            ]
        room = p.fontMetrics()
        for t, text in marks:
            x = self.x_of(t)
            if x + 3 + room.horizontalAdvance(text) > self.width():
                continue
            p.setPen(QColor("#7c818c"))
            p.drawLine(QPointF(x, RULER_H - 8), QPointF(x, RULER_H))
            p.setPen(QColor("#d5d8de"))
            p.drawText(QPointF(x + 3, RULER_H - 10), text)

    def _bar_marks(self, px_per_s: float, t0: float, t1: float) -> list[tuple[float, str]]:
        bar = 60.0 / self.bpm * self.beats
        every = 1
        while every * bar * px_per_s < 60:
            every *= 2
        first = int(t0 // (bar * every)) * every
        return [(b * bar, str(b + 1)) for b in range(first, int(t1 // bar) + 2, every)]

    def _paint_overlay(self, p: QPainter) -> None:
        if self.selection is not None:
            a, b = (self.x_of(t) for t in self.selection)
            p.fillRect(QRectF(a, RULER_H, b - a, self.height()), QColor(120, 170, 255, 55))
            p.fillRect(QRectF(a, 0, b - a, RULER_H), QColor(120, 170, 255, 140))
        x = self.x_of(self.playhead)
        p.setPen(QPen(QColor("#ffffff"), 1.5))
        p.drawLine(QPointF(x, 0), QPointF(x, self.height()))

    # ------------------------------------------------------------------ input
    def mousePressEvent(self, e: QMouseEvent | None) -> None:
        if e is not None and e.button() == Qt.MouseButton.LeftButton and self.frames:
            self._press = self.seconds_at(e.position().x())

    def mouseMoveEvent(self, e: QMouseEvent | None) -> None:
        if e is not None and self._press is not None:
            t = self.seconds_at(e.position().x())
            self.selection = (min(self._press, t), max(self._press, t))
            self.update()

    def mouseReleaseEvent(self, e: QMouseEvent | None) -> None:
        if e is None or self._press is None:
            return
        t, a = self.seconds_at(e.position().x()), self._press
        self._press = None
        if abs(self.x_of(t) - self.x_of(a)) < 3:
            self.seekRequested.emit(t)
            return
        self.selection = (min(a, t), max(a, t))
        self.selectionChanged.emit(*self.selection)
        self.update()

    def wheelEvent(self, e: QWheelEvent | None) -> None:
        if e is None:
            return
        steps = e.angleDelta().y() / 120 or e.angleDelta().x() / 120
        if e.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom(1.25**steps, e.position().x())
        else:
            self.scroll_to(self.start - steps * self.width() * self.spp / 8)
