"""A stand-in engine for tests and transport benchmarks of the bridge (no model needed).

:class:`FractionEngine` returns fixed power-of-two fractions of the input (each exact in float32;
the four add up to the input to float32 rounding), calls ``progress`` and honours ``cancel`` like
:class:`engine.runtime.separator.Separator` asks.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.runtime.separator import Mode, Stems

FRACTIONS = {"vocals": 0.125, "drums": 0.25, "bass": 0.5, "other": 0.125}


@dataclass(frozen=True)
class Call:
    rate: int
    shape: tuple[int, ...]
    stems: tuple[str, ...]
    mode: str
    seed: int | None
    first: float  # first sample of channel 0 (identifies a region in tests)


class FractionEngine:
    """``separate`` -> {name: audio * FRACTIONS[name]} after ``delay`` seconds in ``steps`` steps.

    ``fail`` (if set) is raised instead of returning; ``calls`` records every call in order.
    """

    def __init__(self, delay: float = 0.0, steps: int = 10) -> None:
        self.delay, self.steps = delay, steps
        self.fail: BaseException | None = None
        self.calls: list[Call] = []
        self.cancels_seen = 0
        self._lock = threading.Lock()

    def separate(
        self,
        audio: np.ndarray | str | os.PathLike[str],
        rate: int | None = None,
        *,
        stems: Sequence[str] = tuple(FRACTIONS),
        mode: Mode = "aligned",
        seed: int | None = None,
        progress: Callable[[float], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        confidence: bool = False,
    ) -> Stems:
        from engine.models.sampling import GenerationCancelled

        a = np.asarray(audio, np.float32)
        with self._lock:
            self.calls.append(
                Call(int(rate or 0), a.shape, tuple(stems), mode, seed, float(a[0, 0]))
            )
        end = time.monotonic() + self.delay
        for i in range(self.steps):
            if progress is not None:
                progress(i / self.steps)
            step_end = end - self.delay * (self.steps - 1 - i) / self.steps
            while True:  # sleep in slices, checking cancel like the engine's step loop
                if cancel is not None and cancel():
                    with self._lock:
                        self.cancels_seen += 1
                    raise GenerationCancelled("separation cancelled")
                left = step_end - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, 0.02))
        if self.fail is not None:
            raise self.fail
        if progress is not None:
            progress(1.0)
        return Stems({n: a * np.float32(FRACTIONS[n]) for n in stems}, int(rate or 0))


def expected(audio: np.ndarray, name: str) -> Any:
    """What :class:`FractionEngine` returns for ``name``."""
    return np.asarray(audio, np.float32) * np.float32(FRACTIONS[name])
