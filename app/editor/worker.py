"""Background work on a QThreadPool: a job gets ``progress(fraction)`` and ``cancel() -> bool``,
and its outcome is posted back to the GUI thread as a signal (queued across threads)."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PyQt6.QtCore import QObject, QRunnable, QThreadPool, pyqtSignal

from engine.errors import StemtokError
from engine.runtime.decode import Cancelled

JobFn = Callable[[Callable[[float], None], Callable[[], bool]], Any]


class Task(QObject):
    """One job on the shared pool.

    Signals: ``progress(fraction, seconds_left)`` (``seconds_left`` < 0 while unknown), ``done``
    (the job's result), ``failed`` (a one-line message) and ``cancelled``; exactly one of the last
    three fires.
    """

    progress = pyqtSignal(float, float)
    done = pyqtSignal(object)
    failed = pyqtSignal(str)
    cancelled = pyqtSignal()

    def __init__(self, fn: JobFn) -> None:
        super().__init__()  # no parent: the running job keeps its Task alive
        self._fn = fn
        self._stop = threading.Event()
        self._t0 = 0.0
        self.finished = threading.Event()
        self.fraction = 0.0

    def start(self, pool: QThreadPool | None = None) -> Task:
        runnable = QRunnable.create(self._run)
        (pool or QThreadPool.globalInstance()).start(runnable)  # type: ignore[union-attr]
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next cancel check."""
        self._stop.set()

    @property
    def cancelling(self) -> bool:
        return self._stop.is_set()

    def _report(self, fraction: float) -> None:
        if self._stop.is_set():
            raise Cancelled("cancelled")
        self.fraction = fraction = min(1.0, max(0.0, fraction))
        spent = time.monotonic() - self._t0
        left = spent * (1 - fraction) / fraction if fraction > 0.01 and spent > 0.5 else -1.0
        self.progress.emit(fraction, left)

    def _run(self) -> None:
        self._t0 = time.monotonic()
        try:
            outcome = self._outcome()
            outcome()
        except RuntimeError:  # the window went away while the job ran: nobody to tell
            pass
        finally:
            self.finished.set()

    def _outcome(self) -> Callable[[], None]:
        """Run the job; the signal emission that reports how it ended."""
        try:
            result = self._fn(self._report, self._stop.is_set)
        except Cancelled:
            return self.cancelled.emit
        except StemtokError as exc:
            message = str(exc)
            return lambda: self.failed.emit(message)
        except Exception as exc:  # shown to the user in one line, never a crash
            if self._stop.is_set():
                return self.cancelled.emit
            traceback.print_exc()
            text = f"internal error: {type(exc).__name__}: {exc}"
            return lambda: self.failed.emit(text)
        if self._stop.is_set():
            return self.cancelled.emit
        return lambda: self.done.emit(result)
