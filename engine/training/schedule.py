"""Learning-rate schedules of every trainer (pure arithmetic: no torch, so configs that name a
schedule load without it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import StemtokError


def lr_factor(step: int, progress: float, warmup: int, final_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 to ``final_ratio``.

    ``progress`` in [0, 1] is how far the run is (the larger of steps done / max steps and time
    spent / time budget), so a run limited by ``--minutes`` still anneals.
    """
    if step < warmup:
        return (step + 1) / warmup
    p = min(max(progress, 0.0), 1.0)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * p))


@dataclass(frozen=True)
class Schedule:
    """The learning-rate factor of every step.

    ``cosine``: linear warm-up over ``warmup`` steps, then one cosine from 1 to ``final_ratio``
    over the run's budget (:func:`lr_factor`). ``restarts``: the same warm-up, then cosine cycles
    of ``cycle_steps`` steps from the cycle's peak down to ``final_ratio``, each peak
    ``cycle_decay`` times the one before (never below ``final_ratio``): the schedule depends on
    the step only, so a run can be resumed and extended for as long as it keeps improving.
    ``exponential`` (the LM paper's recipe): the warm-up, then the rate halves every
    ``half_life`` steps.
    """

    kind: str = "cosine"
    warmup: int = 100
    final_ratio: float = 0.05
    cycle_steps: int = 4000
    cycle_decay: float = 0.7
    half_life: int = 50_000

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "restarts", "exponential"):
            raise StemtokError(f"unknown learning-rate schedule '{self.kind}'")

    def factor(self, step: int, progress: float) -> float:
        if self.kind == "cosine" or step < self.warmup:
            return lr_factor(step, progress, self.warmup, self.final_ratio)
        if self.kind == "exponential":
            return float(0.5 ** ((step - self.warmup) / self.half_life))
        cycle, pos = divmod(step - self.warmup, self.cycle_steps)
        peak = max(self.cycle_decay**cycle, self.final_ratio)
        cos = 0.5 * (1 + math.cos(math.pi * pos / self.cycle_steps))
        return self.final_ratio + (peak - self.final_ratio) * cos
