"""The separator contract: what the CLI, the editor, the bridge, evaluation and the bench call.

::

    separator.separate(audio [C, N] | path, rate, *, stems, mode, seed, progress, cancel,
                       confidence) -> Stems {name: [C, N]} at the input's rate
    separator.stream(source, *, stems, mode, seed, progress, cancel, on_entropy)
        -> finished blocks [S, C, n], in order, that cover the song

:class:`Separator` is the first call alone (the editor, the bridge and their test doubles need
no more); :class:`StreamingSeparator` adds ``stream`` and ``rate`` (``stemtok separate`` and
``stemtok bench``). Both shipped kinds implement the two through one base class,
:class:`engine.runtime.segments.SegmentSeparator`: :class:`~engine.runtime.lm_separator.
LMSeparator` (the generative token model) and :class:`~engine.runtime.teacher.TeacherSeparator`
(the discriminative band-split RoFormer); :func:`engine.runtime.factory.open_separator` picks one
from a model folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from engine.constants import STEMS
from engine.errors import StemtokError
from engine.models.sampling import Cancel
from engine.progress import FractionProgress
from engine.runtime.sources import Source

Mode = Literal["aligned", "generative"]
EntropySink = Callable[[float, np.ndarray], None]  # (window start in s, entropy [S, T] in nats)


@dataclass(frozen=True)
class Stems(Mapping[str, np.ndarray]):
    """Stem name -> audio ``[C, N]`` at ``rate`` (the input's rate, length and channels).

    ``confidence`` (only with ``separate(..., confidence=True)`` on a token model): stem ->
    ``[F]`` values in (0, 1], ``exp(-mean token entropy)`` per codec frame, at
    ``confidence_rate`` frames/s.
    """

    audio: dict[str, np.ndarray]
    rate: int
    confidence: dict[str, np.ndarray] = field(default_factory=dict)
    confidence_rate: float = 0.0

    def __getitem__(self, key: str) -> np.ndarray:
        return self.audio[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.audio)

    def __len__(self) -> int:
        return len(self.audio)


class Separator(Protocol):
    """Splits a mixture into stems.

    ``audio`` ``[C, N]`` at ``rate`` (or a file path, ``rate`` then read from it) -> ``stems``
    (any of :data:`STEMS`). ``mode``: ``aligned`` (sample-aligned, sums to the input) or
    ``generative``; ``seed`` samples another take (``None``: greedy); ``progress(fraction)``
    reports the share done; ``cancel() -> True`` stops with
    :class:`engine.runtime.decode.Cancelled`; ``confidence=True`` fills
    :attr:`Stems.confidence` where the model has token entropies.
    """

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
    ) -> Stems: ...


class StreamingSeparator(Separator, Protocol):
    """A :class:`Separator` that also streams a song of any length block by block."""

    @property
    def rate(self) -> int:
        """The model's sample rate (its graphs run at it; input and output keep their own)."""
        ...

    def stream(
        self,
        source: Source,
        *,
        stems: Sequence[str] = STEMS,
        mode: Mode = "aligned",
        seed: int | None = None,
        progress: FractionProgress | None = None,
        cancel: Cancel | None = None,
        on_entropy: EntropySink | None = None,
    ) -> Iterator[np.ndarray]:
        """Finished blocks ``[S, C, n]`` (the chosen stems in :data:`STEMS` order) that cover
        ``source`` in order; ``on_entropy(start_s, entropy [S, T])`` per LM window, if any."""
        ...


def check_stems(stems: Sequence[str]) -> tuple[str, ...]:
    """The chosen stems in :data:`STEMS` order; a one-line error for unknown or none."""
    bad = [s for s in stems if s not in STEMS]
    if bad or not stems:
        raise StemtokError(f"unknown stem(s) {', '.join(bad) or '(none)'}: use {', '.join(STEMS)}")
    return tuple(s for s in STEMS if s in stems)
