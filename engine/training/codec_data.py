"""Training examples for the codec: random 4-s crops of single mono stems, with their mixture.

:class:`StemBank` turns a MUSDB-layout set (``engine.data.musdb``) into mono 48 kHz float16
arrays ``[4, N]`` (vocals, drums, bass, other), cached once as ``.npy`` files in the run folder
and memory-mapped afterwards, so sampling costs a slice. :class:`CropSampler` draws batches:
one stem per example (silent crops mostly skipped), a per-stem gain in [0.5, 1.5] and a 10 %
polarity flip, and the mixture of the same crop as the sum of the four gained stems.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.atomic import save_npy
from engine.audio import resample
from engine.constants import MODEL_RATE, STEMS
from engine.data.musdb import Track, list_tracks
from engine.dsp import rms_db
from engine.errors import StemtokError

log = logging.getLogger(__name__)


def _cache_key(track: Track) -> str:
    facts = [
        f"{s}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for s, p in sorted(track.files.items())
    ]
    return hashlib.sha1("|".join(facts).encode()).hexdigest()[:12]


def mono_stems(track: Track, rate: int = MODEL_RATE) -> np.ndarray:
    """The four stems of ``track`` as mono float32 ``[4, N]`` at ``rate``."""
    return track_stems(track, 1, rate)[:, 0]


def track_stems(track: Track, channels: int, rate: int = MODEL_RATE) -> np.ndarray:
    """The four stems of ``track`` as float32 ``[4, channels, N]`` at ``rate``: ``1`` is the mean
    of the channels, ``2`` the first two (a mono file on both)."""
    audio = track.load(STEMS)
    out = []
    for stem in STEMS:
        x = audio.stems[stem]
        x = x.mean(axis=0, keepdims=True) if channels == 1 else x[[0, min(1, len(x) - 1)]]
        if audio.rate != rate:
            x = resample(x, audio.rate, rate)
        out.append(x)
    return np.stack(out).astype(np.float32)


class StemBank:
    """Mono (or, with ``channels=2``, stereo) stems of every song of one split, memory-mapped
    from a float16 cache.

    Parameters
    ----------
    root, split
        The set (or several sets, read as one) and split (``list_tracks(root, split)``).
    cache
        Folder for ``<split>/<song>-<key>.npy``; the key changes when a source file changes.
    progress
        Optional ``callback(done, total)`` while the cache is built.
    channels
        1: songs ``[4, N]`` (mono); 2: ``[4, 2, N]`` (stereo, cached as ``...-stereo.npy``).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        split: str | None,
        cache: Path,
        progress: Callable[[int, int], None] | None = None,
        channels: int = 1,
    ):
        roots = [root] if isinstance(root, str | os.PathLike) else list(root)
        self.roots, self.split, self.channels = [Path(r) for r in roots], split, channels
        self.folder = cache / (split or "all")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.names: list[str] = []
        self.songs: list[np.ndarray] = []
        self.sets: list[int] = []  # per song: the index of its root in ``roots``
        self.refresh(progress)
        if not self.songs:
            where = ", ".join(map(str, self.roots))
            raise StemtokError(f"{where}: no complete song in split '{split}'")

    def refresh(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Add songs that appeared since the last call (a set still being rendered); songs
        whose files are incomplete are skipped until a later call. Returns how many were added.
        """
        tracks = [
            (k, f"{root}/{t.name}", t)
            for k, root in enumerate(self.roots)
            for t in list_tracks(root, self.split)
        ]
        tracks = [(k, name, t) for k, name, t in tracks if name not in self.names]
        added = 0
        for i, (k, name, track) in enumerate(tracks):
            try:
                self._add(name, track)
                self.sets.append(k)
                added += 1
            except StemtokError as exc:
                log.info("skipping %s for now: %s", track.name, exc)
            if progress is not None:
                progress(i + 1, len(tracks))
        return added

    def _add(self, name: str, track: Track) -> None:
        suffix = "" if self.channels == 1 else "-stereo"
        path = self.folder / f"{track.name}-{_cache_key(track)}{suffix}.npy"
        if not path.is_file():
            stems = track_stems(track, self.channels)
            save_npy(path, (stems[:, 0] if self.channels == 1 else stems).astype(np.float16))
        self.songs.append(np.load(path, mmap_mode="r"))
        self.names.append(name)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([s.shape[-1] for s in self.songs], dtype=np.int64)

    @property
    def seconds(self) -> float:
        return float(self.lengths.sum()) / MODEL_RATE

    def crop(self, song: int, start: int, n: int) -> np.ndarray:
        """``[4, n]`` (stereo: ``[4, 2, n]``) float32 from ``start`` (zero-padded past the end)."""
        src = self.songs[song]
        part = np.asarray(src[..., start : start + n], dtype=np.float32)
        if part.shape[-1] < n:
            part = np.pad(part, [(0, 0)] * (part.ndim - 1) + [(0, n - part.shape[-1])])
        return part


@dataclass
class Batch:
    """``stems`` ``[B, N]`` (the target stem of each example), ``mixture`` ``[B, N]``, ``stem``
    ``[B]`` (index into STEMS)."""

    stems: np.ndarray
    mixture: np.ndarray
    stem: np.ndarray


class CropSampler:
    """Random crops of ``n`` samples; songs drawn in proportion to their length."""

    def __init__(
        self,
        bank: StemBank,
        n: int,
        rng: np.random.Generator,
        silence_db: float = -50.0,
        keep_silent: float = 0.05,
    ):
        self.bank, self.n, self.rng = bank, n, rng
        self.silence_db, self.keep_silent = silence_db, keep_silent
        self.reweight()

    def reweight(self) -> None:
        """Recompute song weights (after the bank grew)."""
        lengths = self.bank.lengths.astype(np.float64)
        self.weights = lengths / lengths.sum()

    def example(self, stem: int) -> tuple[np.ndarray, np.ndarray]:
        """One (stem ``[N]``, mixture ``[N]``) pair for ``stem``, gains applied."""
        for _ in range(30):
            song = int(self.rng.choice(len(self.weights), p=self.weights))
            length = int(self.bank.lengths[song])
            start = int(self.rng.integers(0, max(1, length - self.n + 1)))
            crop = self.bank.crop(song, start, self.n)
            active = rms_db(crop[stem]) > self.silence_db
            if active or self.rng.random() < self.keep_silent:
                break
        gains = self.rng.uniform(0.5, 1.5, size=(4, 1)).astype(np.float32)
        if self.rng.random() < 0.1:
            gains = -gains
        crop = crop * gains
        return crop[stem], crop.sum(axis=0)

    def batch(self, size: int) -> Batch:
        stems = self.rng.integers(0, len(STEMS), size=size)
        pairs = [self.example(int(s)) for s in stems]
        return Batch(
            np.stack([p[0] for p in pairs]),
            np.stack([p[1] for p in pairs]),
            stems.astype(np.int64),
        )


def fixed_batch(bank: StemBank, n: int, per_stem: int, seed: int = 1234) -> Batch:
    """A deterministic evaluation batch: ``per_stem`` active crops of each stem."""
    sampler = CropSampler(bank, n, np.random.default_rng(seed), keep_silent=0.0)
    items = [(s, *sampler.example(s)) for s in range(len(STEMS)) for _ in range(per_stem)]
    return Batch(
        np.stack([i[1] for i in items]),
        np.stack([i[2] for i in items]),
        np.array([i[0] for i in items], dtype=np.int64),
    )


class GeneratedBank:
    """Crops of training songs with the codes a separation LM writes for each of their stems: an
    aligned decoder that refines the teacher also learns from the tokens it will be given at
    run time, not only from corrupted true ones.

    ``n`` crops of ``size`` samples (the LM's window), drawn once with ``seed`` in proportion to
    song length, their stems as they are (no gains: the LM's tokens depend on the mixture), and
    the greedy codes of the exported model folder ``model`` (onnxruntime), cached in ``cache``
    (``.npz``) for resumed runs.
    """

    def __init__(self, bank: StemBank, model: Path, n: int, size: int, cache: Path, seed: int = 7):
        path = cache / f"generated-{n}-{seed}.npz"
        if path.is_file():
            with np.load(path) as z:
                self.stems, self.codes = z["stems"], z["codes"]
            return
        from engine import dsp
        from engine.runtime.decode import generate
        from engine.runtime.model import Model

        lm = Model(model, "cpu")
        if lm.sizes.window != size:
            raise StemtokError(
                f"{model}: its LM writes tokens for windows of {lm.sizes.window} samples, the "
                f"crops are {size}"
            )
        rng = np.random.default_rng(seed)
        weights = bank.lengths / bank.lengths.sum()
        songs = rng.choice(len(weights), size=n, p=weights)
        starts = [int(rng.integers(0, max(1, bank.lengths[k] - size + 1))) for k in songs]
        self.stems = np.stack(
            [bank.crop(int(k), s, size) for k, s in zip(songs, starts, strict=True)]
        )
        codes = []
        for first in range(0, n, 16):
            mix = self.stems[first : first + 16].sum(axis=1)
            codes.append(generate(lm, dsp.log_mel(mix)).codes)  # (b, 4, 2, K, T)
        self.codes = np.concatenate(codes)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, stems=self.stems.astype(np.float16), codes=self.codes.astype(np.int16))
        tmp.replace(path)

    def batch(self, size: int, rng: np.random.Generator) -> tuple[Batch, np.ndarray]:
        """``size`` (crop, stem) examples and the LM's codes of each ``[B, 2, K, T]``."""
        rows = rng.integers(0, len(self.stems), size=size)
        stems = rng.integers(0, len(STEMS), size=size)
        crops = np.asarray(self.stems[rows], dtype=np.float32)  # (B, 4, N)
        batch = Batch(crops[np.arange(size), stems], crops.sum(axis=1), stems.astype(np.int64))
        return batch, np.asarray(self.codes[rows, stems], dtype=np.int64)
