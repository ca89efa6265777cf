"""Training batches made ahead in worker processes, for a trainer that a GPU makes faster than
one CPU core can crop and augment (``TeacherTrainConfig.workers``).

Each worker draws crops from the same memory-mapped float16 song cache as the trainer's
:class:`~engine.training.codec_data.StemBank` and augments them exactly as
:class:`~engine.training.teacher.SongCrops` does, writing the batch into one slot of a
file-backed ring (nothing large is pickled)::

    ring file  OUT/cache/prefetch-<pid>.f32   slots x (stems [B, 4, C, N], mixtures [B, C, N])
    main:  submit(slot, song paths, seed) ...  ->  worker fills the slot  ->  batch() returns
           views of the slot, which is handed back to the workers at the next batch() call

Every task's seed comes from the trainer's generator when the task is submitted, so a run
draws the same batches for the same seed and the same number of workers; a resumed run goes
on with fresh ones.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np

from engine.constants import STEMS
from engine.training.codec_data import StemBank

_OPEN: dict[str, np.ndarray] = {}  # in a worker: songs opened so far, by cache path


class _Songs:
    """The part of :class:`StemBank` that :class:`SongCrops` reads, over cache files."""

    def __init__(self, paths: list[str], sets: list[int]) -> None:
        for p in paths:
            if p not in _OPEN:
                _OPEN[p] = np.load(p, mmap_mode="r")
        self.songs = [_OPEN[p] for p in paths]
        self.sets = sets
        self.lengths = np.array([s.shape[-1] for s in self.songs], dtype=np.int64)

    def crop(self, song: int, start: int, n: int) -> np.ndarray:
        part = np.asarray(self.songs[song][..., start : start + n], dtype=np.float32)
        pad = n - part.shape[-1]
        return np.pad(part, [(0, 0)] * (part.ndim - 1) + [(0, pad)]) if pad > 0 else part


def _ring(path: str, slots: int, shape: tuple[int, ...], mode: Literal["r+", "w+"]) -> np.ndarray:
    """The ring file as ``[slots, B * 5 * C * N]`` float32 (four stems and the mixture)."""
    b, c, n = shape
    return np.memmap(path, np.float32, mode, shape=(slots, b * (len(STEMS) + 1) * c * n))


def _views(row: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    b, c, n = shape
    split = b * len(STEMS) * c * n
    return row[:split].reshape(b, len(STEMS), c, n), row[split:].reshape(b, c, n)


def _fill(
    ring: str,
    slots: int,
    shape: tuple[int, ...],
    slot: int,
    paths: list[str],
    sets: list[int],
    seed: int,
    remix_prob: float,
    mp3_prob: float,
    level_db: tuple[float, float],
    set_weights: tuple[float, ...] | None,
    set_remix: tuple[float, ...] | None,
) -> int:
    """In a worker: one augmented batch into ``slot`` of the ring; returns ``slot``."""
    from engine.training.teacher import SongCrops

    rng = np.random.default_rng(seed)
    crops = SongCrops(_Songs(paths, sets), shape[-1], rng, set_weights, set_remix)  # type: ignore[arg-type]
    stems, mix = crops.batch(shape[0], remix_prob, mp3_prob, level_db)
    out_stems, out_mix = _views(_ring(ring, slots, shape, "r+")[slot], shape)
    out_stems[:], out_mix[:] = stems, mix
    return slot


class PrefetchCrops:
    """:meth:`SongCrops.batch` from ``workers`` processes, ``2 x workers`` batches in flight.

    Parameters
    ----------
    bank : the trainer's song bank (its cache files are what the workers read).
    n, channels, size, remix_prob : crop length, channels, batch size and remix probability.
    workers : processes (spawned: the trainer may hold a CUDA context).
    rng : the trainer's generator; one seed is drawn from it per batch.
    folder : where the ring file goes (removed at exit).
    set_weights, set_remix : per data set, as in :class:`SongCrops`.
    """

    def __init__(
        self,
        bank: StemBank,
        n: int,
        channels: int,
        size: int,
        remix_prob: float,
        workers: int,
        rng: np.random.Generator,
        folder: Path,
        set_weights: tuple[float, ...] | None = None,
        set_remix: tuple[float, ...] | None = None,
    ) -> None:
        self.bank, self.rng, self.remix_prob, self.mp3_prob = bank, rng, remix_prob, 0.0
        self.set_weights, self.set_remix = set_weights, set_remix
        self.level_db = (0.0, 0.0)
        self.shape = (size, channels, n)
        self.slots = 2 * workers
        folder.mkdir(parents=True, exist_ok=True)
        self.ring_path = str(folder / f"prefetch-{os.getpid()}.f32")
        self.ring = _ring(self.ring_path, self.slots, self.shape, "w+")
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        self.pending: deque[Future[int]] = deque()
        self.in_use: int | None = None
        self.reweight()
        atexit.register(self.close)

    def reweight(self) -> None:
        """Draw from the bank's songs as they are now (after it grew)."""
        self.paths = [str(getattr(s, "filename", "")) for s in self.bank.songs]
        self.sets = list(self.bank.sets)

    def _submit(self, slot: int) -> None:
        seed = int(self.rng.integers(2**31))
        args = (
            self.ring_path,
            self.slots,
            self.shape,
            slot,
            self.paths,
            self.sets,
            seed,
            self.remix_prob,
            self.mp3_prob,
            self.level_db,
            self.set_weights,
            self.set_remix,
        )
        self.pending.append(self.pool.submit(_fill, *args))

    def batch(
        self,
        size: int,
        remix_prob: float,
        mp3_prob: float = 0.0,
        level_db: tuple[float, float] = (0.0, 0.0),
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(stems [B, 4, C, N], mixtures [B, C, N])``, views valid until the next call."""
        if not self.pending:
            self.mp3_prob, self.level_db = mp3_prob, level_db
        asked = (remix_prob, mp3_prob, level_db)
        if size != self.shape[0] or asked != (self.remix_prob, self.mp3_prob, self.level_db):
            raise ValueError("a prefetched batch has the size and chances it was made with")
        if not self.pending:
            for slot in range(self.slots):
                self._submit(slot)
        if self.in_use is not None:
            self._submit(self.in_use)
        self.in_use = self.pending.popleft().result()
        return _views(self.ring[self.in_use], self.shape)

    def close(self) -> None:
        """Stop the workers and remove the ring file (also at exit)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pending.clear()
        Path(self.ring_path).unlink(missing_ok=True)
