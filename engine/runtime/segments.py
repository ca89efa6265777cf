"""A long song in crossfaded segments: the base class of every separator of the runtime.

::

    song (array or file, read block by block) ─ segments of ``segment_seconds`` overlapping 2 s
      per segment [C, n] @ rate ─ resample ─ [C, n48]
        model step (the subclass): 48-kHz [C, n48] -> stems [S, C|1, n48]
      back to ``rate`` ─ exact length ─ (aligned) the residual ``mix - sum(stems)`` that
      resampling leaves, shared equally
      weighted overlap-add (weights normalised by their sum) ─ finished blocks [S, C, m] in order
      ─ yielded (``stream``) or collected (``separate``)

A block is yielded as soon as no later segment touches it, so the working memory is one segment
(plus the separator's own), whatever the song's length. Because the weights are normalised,
stems that add up to the mixture in every segment still do after the crossfade.
:class:`SegmentSeparator` does all of this (and the checks of the input) for its subclasses,
which supply only :meth:`~SegmentSeparator.separate48`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from engine.audio import read_audio, resample
from engine.constants import MAX_RATE, MIN_RATE, STEMS
from engine.errors import StemtokError
from engine.models.sampling import Cancel
from engine.runtime import windows as win
from engine.runtime.separator import EntropySink, FractionProgress, Mode, Stems, check_stems
from engine.runtime.sources import ArraySource, Source

SEGMENT_OVERLAP_S: Final[float] = 2.0  # crossfade between segments of a long song
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


@dataclass(frozen=True)
class SegmentJob:
    """What the model step of one segment is asked for."""

    mode: Mode
    names: tuple[str, ...]  # the stems to compute, in STEMS order (aligned: all four)
    seed: int | None  # None: greedy decoding
    cancel: Cancel | None
    sink: EntropySink | None  # (start_s in the segment, entropy [S, T]), where there are tokens


class EntropyGrid:
    """Mean token entropy of overlapping windows on one song-wide frame grid ``[S, F]``."""

    def __init__(self, n_stems: int, n_frames: int, frame_rate: float) -> None:
        self.sum = np.zeros((n_stems, n_frames), np.float64)
        self.count = np.zeros(n_frames, np.float64)
        self.frame_rate = frame_rate

    def add(self, start_s: float, h: np.ndarray) -> None:
        """Entropy ``[S, T]`` of one window starting ``start_s`` seconds into the song."""
        f0 = round(start_s * self.frame_rate)
        n = max(0, min(h.shape[1], self.count.shape[0] - f0))
        self.sum[:, f0 : f0 + n] += h[:, :n]
        self.count[f0 : f0 + n] += 1

    def confidence(self) -> np.ndarray:
        """``exp(-mean entropy)`` ``[S, F]`` in (0, 1] (1 where no window reached)."""
        mean = self.sum / np.maximum(self.count, 1)
        return np.exp(-mean).astype(np.float32)


class SegmentSeparator(ABC):
    """A :class:`~engine.runtime.separator.StreamingSeparator` that runs its model on 48-kHz
    segments; a subclass supplies :meth:`separate48`, :attr:`rate` and :attr:`folder` (and, for
    confidence curves, :meth:`confidence_frame_rate`; for another set of modes, :attr:`modes`
    or :meth:`check_mode`).

    Parameters
    ----------
    batch : windows per model call (bounds memory: it does not grow with the song).
    segment_seconds : a song is separated in crossfaded segments of this length, so the
        working memory does not grow with the song.
    """

    modes: tuple[str, ...] = ("aligned", "generative")

    def __init__(self, batch: int, segment_seconds: float) -> None:
        self.batch = max(1, batch)
        self.segment_seconds = max(segment_seconds, 4 * SEGMENT_OVERLAP_S)

    @property
    @abstractmethod
    def rate(self) -> int:
        """The rate the model runs at."""

    @property
    @abstractmethod
    def folder(self) -> Path:
        """The model folder."""

    @abstractmethod
    def separate48(self, x: np.ndarray, job: SegmentJob, progress: FractionProgress) -> np.ndarray:
        """One segment at the model's rate ``[C, N48]`` -> ``job.names``' stems
        ``[S, C|1, N48]`` (one channel: the same audio for every channel)."""

    def confidence_frame_rate(self) -> float | None:
        """Frames per second of the confidence curves; ``None``: the model has none."""
        return None

    def check_mode(self, mode: str) -> None:
        if mode not in self.modes:
            raise StemtokError(f"unknown mode {mode!r} ({' or '.join(self.modes)})")

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
        """Split ``audio`` ``[C, N]`` at ``rate`` (or a file path) into ``stems`` in memory (see
        :meth:`stream` for a song of any length); the arguments are those of
        :class:`~engine.runtime.separator.Separator`."""
        chosen = check_stems(stems)
        if isinstance(audio, (str, os.PathLike)):
            audio, rate = read_audio(Path(audio))
        if rate is None:
            raise StemtokError("give the sample rate of the audio")
        a = check_audio(audio, int(rate))
        frame_rate = self.confidence_frame_rate() if confidence else None
        grid = None
        if frame_rate is not None:
            n_frames = int(np.ceil(a.shape[1] / int(rate) * frame_rate)) + 1
            grid = EntropyGrid(len(chosen), n_frames, frame_rate)
        blocks = self.stream(
            ArraySource(a, int(rate)),
            stems=chosen,
            mode=mode,
            seed=seed,
            progress=progress,
            cancel=cancel,
            on_entropy=grid.add if grid else None,
        )
        out = collect(blocks, np.empty((len(chosen), *a.shape), np.float32))
        audio_out = {name: out[i] for i, name in enumerate(chosen)}
        if grid is None or frame_rate is None:
            return Stems(audio_out, int(rate))
        sure = dict(zip(chosen, grid.confidence(), strict=True))
        return Stems(audio_out, int(rate), sure, frame_rate)

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
        """Separate ``source`` segment by segment, yielding finished blocks ``[S, C, n]`` (the
        chosen stems, in :data:`STEMS` order) that together cover the song in order.

        Segments of ``segment_seconds`` overlap by 2 s and are crossfaded; a block is yielded
        once no later segment touches it, so memory does not grow with the song.
        ``on_entropy(start_seconds, entropy [S, T])`` receives each LM window's mean token
        entropy (nats) per chosen stem and codec frame (never called by a model without tokens).
        """
        self.check_mode(mode)
        chosen = check_stems(stems)
        if not MIN_RATE <= source.rate <= MAX_RATE:
            raise StemtokError(f"sample rate {source.rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
        if source.length < 1:
            raise StemtokError("the audio is empty")
        names = STEMS if mode == "aligned" else chosen  # aligned: all four share the residual
        keep = [names.index(n) for n in chosen]
        rate = source.rate

        def one(piece: np.ndarray, part: FractionProgress, start: int) -> np.ndarray:
            sink = None
            if on_entropy is not None:

                def sink(t: float, h: np.ndarray, t0: float = start / rate) -> None:
                    on_entropy(t0 + t, h[keep])

            x = resample(piece, rate, self.rate)  # (C, N48) of this segment
            job = SegmentJob(mode, names, seed, cancel, sink)
            decoded = self.separate48(x, job, part)  # (S, C|1, N48)
            return self._back(piece, rate, decoded, mode)[keep]

        yield from stream_segments(source, one, len(chosen), self.segment_seconds, progress)

    def _back(self, a: np.ndarray, rate: int, decoded: np.ndarray, mode: Mode) -> np.ndarray:
        """Model-rate stems ``[S, C|1, N48]`` -> ``[S, C, N]`` at ``rate``; in aligned mode the
        residual ``a - sum(stems)`` that resampling leaves is shared equally."""
        c, n = a.shape
        out = np.zeros((decoded.shape[0], c, n), np.float32)
        for i in range(decoded.shape[0]):
            y = resample(decoded[i], self.rate, rate)[:, :n]  # (C|1, N)
            out[i, :, : y.shape[1]] = y
        if mode == "aligned":
            out += (a - out.sum(axis=0)) / decoded.shape[0]
        return out
