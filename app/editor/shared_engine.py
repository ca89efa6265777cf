"""One separator for the editor and its DAW bridge (no Qt here).

::

    editor jobs (separate, re-roll, karaoke) ─┐
                                               ├─ SharedEngine: load once, one call at a time
    bridge worker ─ FrontEngine ──────────────┘   (waiters poll their cancel while they wait)

The editor's separations and the bridge's jobs share one engine behind a lock rather than each
having a :class:`~engine.runtime.separator.Separator`: the model is loaded once (half the
memory), the onnxruntime sessions are never entered from two threads at once (we do not rely on
their thread safety), and two separations never fight over the same cores (each session already
uses all of them). The cost: a region from a DAW waits while the editor separates, and the other
way round; cancel still works while waiting.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

import numpy as np

from engine.constants import STEMS
from engine.runtime.decode import Cancel, Cancelled
from engine.runtime.separator import FractionProgress, Mode, Separator, Stems

Factory = Callable[[], Separator]


class SharedEngine:
    """A :class:`~engine.runtime.separator.Separator` around a separator factory: :meth:`separate`
    loads the separator on first use and runs one call at a time."""

    def __init__(self, factory: Factory, poll: float = 0.05) -> None:
        self._factory, self._poll = factory, poll
        self._engine: Separator | None = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def busy(self) -> bool:
        """A separation is running now."""
        return self._run_lock.locked()

    def load(self) -> Separator:
        """The separator, made once (thread-safe; a failed load is retried on the next call)."""
        with self._load_lock:
            if self._engine is None:
                self._engine = self._factory()
            return self._engine

    def separate(
        self,
        audio: np.ndarray | str | os.PathLike[str],
        rate: int | None = None,
        *,
        stems: Sequence[str] = STEMS,
        mode: Mode = "aligned",
        seed: int | None = None,
        progress: FractionProgress | None = None,
        cancel: Cancel | None = None,
        confidence: bool = False,
    ) -> Stems:
        """``separate(audio [C, N], rate, ...)`` of the wrapped separator, once the engine is
        free; raises :class:`~engine.runtime.decode.Cancelled` if ``cancel()`` while waiting."""
        engine = self.load()
        self._acquire(cancel)
        try:
            return engine.separate(
                audio,
                rate,
                stems=stems,
                mode=mode,
                seed=seed,
                progress=progress,
                cancel=cancel,
                confidence=confidence,
            )
        finally:
            self._run_lock.release()

    def _acquire(self, cancel: Callable[[], bool] | None) -> None:
        while not self._run_lock.acquire(timeout=self._poll):
            if cancel is not None and cancel():
                raise Cancelled("cancelled while waiting for the engine")


class FrontEngine:
    """The bridge's :class:`~engine.runtime.separator.Separator` when the editor is its front.

    In ``aligned`` mode it always asks for all four stems (the model computes all four anyway)
    and hands the client the ones it asked for; in ``generative`` mode only the requested ones
    (each costs decoding time). The region's audio and stems stay here until :meth:`take`
    collects them: the bridge runs one job at a time and calls ``on_result`` before the next,
    and :meth:`take` checks the shape against the request besides.
    """

    def __init__(self, shared: SharedEngine) -> None:
        self.shared = shared
        self._last: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
        self._lock = threading.Lock()

    def separate(
        self,
        audio: np.ndarray | str | os.PathLike[str],
        rate: int | None = None,
        *,
        stems: Sequence[str] = STEMS,
        mode: Mode = "aligned",
        seed: int | None = None,
        progress: FractionProgress | None = None,
        cancel: Cancel | None = None,
        confidence: bool = False,
    ) -> Stems:
        want = [n for n in STEMS if n in stems]
        ask = list(STEMS) if mode == "aligned" else want
        out = self.shared.separate(
            audio, rate, stems=ask, mode=mode, seed=seed, progress=progress, cancel=cancel
        )
        got = {n: out[n] for n in ask}
        with self._lock:
            self._last = (np.asarray(audio), got)
        return Stems({n: got[n] for n in want}, out.rate)

    def take(self, channels: int, frames: int) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """The last region ``[C, N]`` and its stems ``{name: [C, N]}`` (not copies), once."""
        with self._lock:
            last, self._last = self._last, None
        if last is None or np.shape(last[0]) != (channels, frames):
            return None
        return last
