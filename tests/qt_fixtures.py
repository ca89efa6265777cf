"""Qt test helpers for the editor tests: one offscreen QApplication for the session, isolated
QSettings, a fake separator with the real ``separate()`` signature, drops and waiting.

Import with ``from qt_fixtures import ...`` (the fixtures are re-exported by each test module).
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

QtCore = pytest.importorskip("PyQt6.QtCore", reason="the editor needs PyQt6")
from PyQt6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PyQt6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PyQt6.QtTest import QTest  # noqa: E402
from PyQt6.QtWidgets import QApplication, QWidget  # noqa: E402

from engine.audio import write_audio  # noqa: E402
from engine.constants import STEMS  # noqa: E402
from engine.runtime.decode import Cancelled  # noqa: E402
from engine.runtime.separator import Stems  # noqa: E402

SHARES = (0.4, 0.3, 0.2, 0.1)  # the fake's stems: fixed shares of the mixture (they sum to it)


@pytest.fixture(scope="session")
def qapp() -> Iterator[QApplication]:
    app = QApplication.instance() or QApplication(["stemtok-tests"])
    assert isinstance(app, QApplication)
    yield app


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


class FakeSeparator:
    """``separate()`` like :class:`engine.runtime.separator.Separator`: stems are fixed shares of
    the mixture (a seed rotates the shares: another take that still sums to the mixture), with
    progress in ``steps`` steps of ``delay`` seconds and a working cancel."""

    def __init__(self, steps: int = 5, delay: float = 0.01) -> None:
        self.steps, self.delay = steps, delay
        self.calls: list[dict[str, Any]] = []

    def separate(
        self,
        audio: np.ndarray,
        rate: int | None = None,
        *,
        stems: Sequence[str] = STEMS,
        mode: str = "aligned",
        seed: int | None = None,
        progress: Callable[[float], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        confidence: bool = False,
    ) -> Stems:
        assert rate is not None
        self.calls.append({"n": audio.shape[1], "seed": seed, "mode": mode})
        for k in range(self.steps):
            if cancel is not None and cancel():
                raise Cancelled("separation cancelled")
            time.sleep(self.delay)
            if progress is not None:
                progress((k + 1) / self.steps)
        shares = np.array(SHARES, np.float32)
        if seed is not None:  # another take: a rotation, never the identity (tests see a change)
            shares = np.roll(shares, 1 + seed % 3)
        out = {n: (audio * shares[i]).astype(np.float32) for i, n in enumerate(STEMS)}
        frames = int(audio.shape[1] / rate * 12.5) + 1
        conf = {n: np.linspace(0.2, 1.0, frames, dtype=np.float32) for n in STEMS}
        return Stems(out, rate, conf if confidence else {}, 12.5 if confidence else 0.0)


def tone_file(
    path: Path, seconds: float = 1.0, rate: int = 44100, channels: int = 2, depth: str = "16"
) -> Path:
    """A chord with a little noise, written as ``path``."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.15 * np.sin(2 * np.pi * 330 * t)
    x = x + 0.02 * np.random.default_rng(0).standard_normal(t.size)
    audio = np.stack([x * (1 - 0.3 * c) for c in range(channels)]).astype(np.float32)
    return write_audio(path, audio, rate, bit_depth=depth)


def drop_files(widget: QWidget, paths: Sequence[Path]) -> QDropEvent:
    """Drag ``paths`` (file URLs) onto ``widget`` as Qt delivers a real drag: a QDragEnterEvent,
    then a QDropEvent. Returns the drop event (``isAccepted()`` tells whether it was taken)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    copy, none, plain = Qt.DropAction.CopyAction, Qt.MouseButton.NoButton, Qt.KeyboardModifier(0)
    enter = QDragEnterEvent(QPoint(10, 10), copy, mime, none, plain)
    QApplication.sendEvent(widget, enter)
    event = QDropEvent(QPointF(10, 10), copy, mime, none, plain)
    if enter.isAccepted():
        QApplication.sendEvent(widget, event)
    return event


# PyQt6's stubs declare QTest's static functions as instance methods: call them untyped.
_QTEST: Any = QTest


def click(widget: QWidget, pos: QPoint | None = None) -> None:
    """A real left click (press and release) on ``widget`` (at ``pos``, default its centre)."""
    args = () if pos is None else (Qt.KeyboardModifier(0), pos)
    _QTEST.mouseClick(widget, Qt.MouseButton.LeftButton, *args)


def drag(widget: QWidget, start: QPoint, stop: QPoint) -> None:
    """Press at ``start``, move to ``stop`` and release there, with the left button."""
    left, plain = Qt.MouseButton.LeftButton, Qt.KeyboardModifier(0)
    _QTEST.mousePress(widget, left, plain, start)
    _QTEST.mouseMove(widget, stop)
    _QTEST.mouseRelease(widget, left, plain, stop)


def key(widget: QWidget, k: Qt.Key, modifier: Qt.KeyboardModifier | None = None) -> None:
    _QTEST.keyClick(widget, k, modifier or Qt.KeyboardModifier(0))


def wait_until(done: Callable[[], bool], timeout: float = 20.0) -> None:
    """Process Qt events until ``done()`` (fails the test after ``timeout`` seconds)."""
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for the editor")
        QApplication.processEvents()
        time.sleep(0.005)
    QApplication.processEvents()
