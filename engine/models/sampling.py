"""How tokens are chosen, shared by the torch generator and the onnxruntime engine (no torch here).

:class:`Sampling` is greedy by default (``temperature`` 0), or top-k / temperature sampling from
a generator seeded by ``seed`` (the same seed gives the same tokens: re-roll = another seed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import StemtokError

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


class GenerationCancelled(StemtokError):
    """The caller's cancel callback asked generation to stop."""

    exit_code = 130


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
