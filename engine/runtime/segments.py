"""A long song in crossfaded segments, shared by every separator of the runtime.

::

    source [C, N] ─ segments of ``segment_seconds`` overlapping by 2 s
      per segment: separate(piece [C, n], progress, start) -> stems [S, C, n]
      weighted overlap-add (weights normalised by their sum) ─ finished blocks [S, C, m] in order

A block is yielded as soon as no later segment touches it, so the working memory is one segment
(plus the separator's own), whatever the song's length. Because the weights are normalised,
stems that add up to the mixture in every segment still do after the crossfade.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final

import numpy as np

from engine.constants import MAX_RATE, MIN_RATE
from engine.errors import StemtokError
from engine.runtime import windows as win
from engine.runtime.sources import Source

SEGMENT_OVERLAP_S: Final[float] = 2.0  # crossfade between segments of a long song
FractionProgress = Callable[[float], None]
SeparateFn = Callable[[np.ndarray, FractionProgress, int], np.ndarray]


def check_audio(audio: np.ndarray, rate: int) -> np.ndarray:
    """``audio`` as float32 ``[C, N]`` (1-D is one channel); one-line errors for bad input."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise StemtokError(f"audio must be [channels, samples], got shape {np.shape(audio)}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise StemtokError(f"sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
    if not np.all(np.isfinite(a)):
        raise StemtokError("audio holds NaN or infinite samples")
    return a


def stream_segments(
    source: Source,
    separate: SeparateFn,
    n_stems: int,
    segment_seconds: float,
    progress: FractionProgress | None = None,
) -> Iterator[np.ndarray]:
    """Run ``separate(piece [C, n], progress, start) -> [n_stems, C, n]`` over the crossfaded
    segments of ``source`` (``start``: the piece's first sample in the song) and yield finished
    blocks ``[n_stems, C, m]`` that cover it in order."""
    rate, n_total = source.rate, source.length
    seg, overlap = int(segment_seconds * rate), int(SEGMENT_OVERLAP_S * rate)
    p = win.plan(n_total, max(min(seg, n_total), overlap + 1), overlap)
    w = win.weights(p.window, overlap)
    acc = np.zeros((n_stems, source.channels, 0), np.float32)  # pending weighted sum
    norm = np.zeros(0, np.float32)
    done = 0  # samples already yielded; acc[..., 0] is sample `done`
    for k in range(p.n_windows):
        s0 = int(p.starts[k])
        piece = check_audio(source.read(s0, s0 + p.window), rate)

        def part(f: float, k: int = k) -> None:
            if progress is not None:
                progress((k + f) / p.n_windows)

        stems_k = separate(piece, part, s0)
        end = s0 + piece.shape[1]
        grow = end - done - acc.shape[-1]
        if grow > 0:
            acc = np.concatenate([acc, np.zeros((*acc.shape[:2], grow), np.float32)], -1)
            norm = np.concatenate([norm, np.zeros(grow, np.float32)])
        acc[..., s0 - done : end - done] += stems_k * w[: piece.shape[1]]
        norm[s0 - done : end - done] += w[: piece.shape[1]]
        final = int(p.starts[k + 1]) if k + 1 < p.n_windows else n_total
        yield acc[..., : final - done] / np.maximum(norm[: final - done], 1e-12)
        acc, norm, done = acc[..., final - done :], norm[final - done :], final


def collect(blocks: Iterable[np.ndarray], out: np.ndarray) -> np.ndarray:
    """Write consecutive blocks ``[S, C, n]`` into ``out`` ``[S, C, N]`` in order; returns it."""
    pos = 0
    for block in blocks:
        out[:, :, pos : pos + block.shape[-1]] = block
        pos += block.shape[-1]
    return out
