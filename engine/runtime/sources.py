"""Where a song's samples come from: an array in memory, or a file read block by block.

The separator reads segments in increasing order (each may overlap the previous one); a
:class:`FileSource` keeps only the samples from the current segment's start on, so a long file
is never held whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.audio import iter_blocks, probe


class Source(Protocol):
    """``channels`` x ``length`` samples at ``rate``; ``read`` with non-decreasing starts."""

    rate: int
    channels: int
    length: int

    def read(self, start: int, stop: int) -> np.ndarray: ...


class ArraySource:
    """An array ``[C, N]`` already in memory."""

    def __init__(self, audio: np.ndarray, rate: int) -> None:
        self.audio, self.rate = audio, rate
        self.channels, self.length = audio.shape

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.audio[:, start:stop]


class FileSource:
    """A file decoded block by block (``engine.audio.iter_blocks``), with a rolling buffer."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        info = probe(path)
        self.path, self.rate = Path(path), info.rate
        self.channels, self.length = info.channels, info.frames
        self._blocks: Iterator[np.ndarray] = iter_blocks(path)
        self._buf = np.zeros((self.channels, 0), np.float32)
        self._start = 0  # file position of self._buf[:, 0]

    def read(self, start: int, stop: int) -> np.ndarray:
        if start < self._start:
            raise ValueError("FileSource reads forward only")
        self._buf = self._buf[:, start - self._start :]
        self._start = start
        stop = min(stop, self.length)
        pieces = [self._buf]
        have = self._buf.shape[1]
        while self._start + have < stop:
            block = next(self._blocks)
            pieces.append(block)
            have += block.shape[1]
        if len(pieces) > 1:
            self._buf = np.concatenate(pieces, axis=1)
        return self._buf[:, : stop - start]
