"""Constants shared across the engine, in one place."""

from typing import Final

#: The four stems, in the order the language model writes them.
STEMS: Final[tuple[str, ...]] = ("vocals", "drums", "bass", "other")

#: Sample rate of the model domain (the paper works at 48 kHz mono).
MODEL_RATE: Final[int] = 48_000

#: Rates stemtok accepts on input, in Hz (inclusive).
MIN_RATE: Final[int] = 8_000
MAX_RATE: Final[int] = 192_000
