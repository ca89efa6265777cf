"""The progress callbacks of the engine, one name per kind of count.

A long-running call takes ``progress=`` one of these and calls it as it goes; none of them may
block for long (they run on the working thread).
"""

from __future__ import annotations

from collections.abc import Callable

FractionProgress = Callable[[float], None]  # share of the work done, 0..1 (separators)
StepProgress = Callable[[int, int], None]  # (codes generated, codes in all) (token generation)
SecondsProgress = Callable[[float, float], None]  # (seconds of audio done, seconds in all)
StageProgress = Callable[[str, int, int], None]  # (stage, songs done, songs in all) (evaluation)
