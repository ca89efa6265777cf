"""A small RIFF/WAVE header reader: truncation checks and exact 64-bit float reads.

pedalboard reads WAV well but pads a truncated data chunk with silence and returns 64-bit float
files at 32-bit precision. This module reads just enough of the header to refuse the first and
read the second exactly (memory-mapped, block by block).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import AudioError

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


@dataclass(frozen=True)
class WavLayout:
    format_tag: int  # 1 PCM, 3 IEEE float (extensible resolved to its sub-format)
    channels: int
    rate: int
    bits: int
    data_offset: int  # byte offset of the first sample
    data_bytes: int  # size of the data chunk as the header states it


def read_layout(path: Path) -> WavLayout | None:
    """Parse the fmt and data chunks; None for files this reader does not handle (e.g. RF64)."""
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        fmt: tuple[int, int, int, int] | None = None
        while True:
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = _parse_fmt(fh.read(size))
                fh.seek(size % 2, 1)
            elif cid == b"data":
                if fmt is None:
                    return None
                return WavLayout(fmt[0], fmt[1], fmt[2], fmt[3], fh.tell(), size)
            else:
                fh.seek(size + size % 2, 1)


def _parse_fmt(body: bytes) -> tuple[int, int, int, int]:
    tag, channels, rate = struct.unpack("<HHI", body[:8])
    bits = struct.unpack("<H", body[14:16])[0]
    if tag == _EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack("<H", body[24:26])[0]
    return tag, channels, rate, bits


def check_wav(path: Path) -> None:
    """Raise AudioError when the data chunk is cut short (a truncated download or copy)."""
    layout = read_layout(path)
    if layout is None or layout.data_bytes == 0xFFFFFFFF:
        return
    available = path.stat().st_size - layout.data_offset
    frame_bytes = max(layout.channels * layout.bits // 8, 1)
    if (
        available < layout.data_bytes
        and available // frame_bytes < layout.data_bytes // frame_bytes
    ):
        have, want = available // frame_bytes, layout.data_bytes // frame_bytes
        raise AudioError(
            f"{path}: file is truncated (header says {want} frames, only {have} are present)"
        )


def float64_layout(path: Path) -> WavLayout | None:
    """The layout of a 64-bit float WAV (plain or WAVE_FORMAT_EXTENSIBLE), else None."""
    layout = read_layout(path)
    if layout is not None and layout.format_tag == _FLOAT and layout.bits == 64:
        return layout
    return None


def iter_float64(path: Path, block_frames: int) -> Iterator[np.ndarray]:
    """Yield ``[C, n]`` float64 blocks of a 64-bit float WAV, exactly as stored."""
    layout = read_layout(path)
    if layout is None:
        raise AudioError(f"{path}: cannot parse the WAV header")
    frames = layout.data_bytes // (8 * layout.channels)
    data = np.memmap(
        path, dtype="<f8", mode="r", offset=layout.data_offset, shape=(frames, layout.channels)
    )
    for i in range(0, frames, block_frames):
        block = np.array(data[i : i + block_frames].T, dtype=np.float64)
        if not np.isfinite(block).all():
            first = int(np.argwhere(~np.isfinite(block))[0][1]) + i
            raise AudioError(
                f"{path}: contains NaN or infinite samples (first at {first / layout.rate:.3f} s)"
            )
        yield block
