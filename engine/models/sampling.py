"""How tokens are chosen, shared by the torch generator and the onnxruntime engine (no torch here).

:class:`Sampling` is greedy by default (``temperature`` 0), or top-k / temperature sampling from
a generator seeded by ``seed`` (the same seed gives the same tokens: re-roll = another seed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import StemtokError
from engine.progress import StepProgress

Cancel = Callable[[], bool]


class GenerationCancelled(StemtokError):
    """The caller's cancel callback asked generation to stop."""

    exit_code = 130


@dataclass
class Ticker:
    """Counts generated codes: each :meth:`tick` first asks ``cancel()`` (raising
    :class:`GenerationCancelled` with ``message``), then reports ``progress(done, total)``."""

    total: int
    progress: StepProgress | None
    cancel: Cancel | None
    message: str = "generation cancelled"
    done: int = 0

    def tick(self) -> None:
        if self.cancel is not None and self.cancel():
            raise GenerationCancelled(self.message)
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


@dataclass(frozen=True)
class Sampling:
    """How a token is chosen from the filtered logits.

    ``temperature`` 0 is greedy (argmax). Otherwise logits are divided by it, cut to the
    ``top_k`` best (0 keeps all) and sampled with a generator seeded by ``seed``.
    ``stop_on_end``: a track may end early on E; False forbids E so every track runs its length.
    """

    temperature: float = 0.0
    top_k: int = 0
    seed: int | None = None
    stop_on_end: bool = True

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0:
            raise ValueError("temperature and top_k must be >= 0")
