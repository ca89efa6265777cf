"""Minimal WAV reading and writing with the standard library, for DAW scripts without numpy.

PCM travels as interleaved little-endian float32 bytes (the bridge's ``f32le``). Reading takes
16/24/32-bit integer and 32-bit float files; writing makes 32-bit float files (so stems still
add up to the region exactly), atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import array
import os
import struct
import sys
from pathlib import Path

from engine.atomic import atomic_path

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


def write_wav_f32(path: str | os.PathLike[str], pcm: bytes, rate: int, channels: int) -> Path:
    """Write interleaved f32le ``pcm`` as a 32-bit float WAV file; returns the path."""
    p = Path(path)
    fmt = struct.pack("<HHIIHHH", _FLOAT, channels, rate, rate * channels * 4, channels * 4, 32, 0)
    frames = len(pcm) // (4 * channels)
    body = b"".join(
        [
            b"WAVE",
            b"fmt ",
            struct.pack("<I", len(fmt)),
            fmt,
            b"fact",
            struct.pack("<II", 4, frames),
            b"data",
            struct.pack("<I", len(pcm)),
        ]
    )
    pad = b"\0" if len(pcm) % 2 else b""
    with atomic_path(p, mode=0o644) as tmp, open(tmp, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body) + len(pcm) + len(pad)) + body)
        f.write(pcm + pad)
    return p


def read_wav_f32(path: str | os.PathLike[str]) -> tuple[bytes, int, int]:
    """A WAV file -> (interleaved f32le PCM, sample rate, channels)."""
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a WAV file")
    fmt, samples = None, None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunk = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = chunk
        elif cid == b"data":
            samples = chunk
        pos += 8 + size + (size & 1)
    if fmt is None or samples is None:
        raise ValueError(f"{path}: no fmt or data chunk")
    tag, channels, rate = struct.unpack("<HHI", fmt[:8])
    bits = struct.unpack("<H", fmt[14:16])[0]
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]
    return _to_f32(samples, tag, bits, path), rate, channels


def _to_f32(raw: bytes, tag: int, bits: int, path: object) -> bytes:
    if tag == _FLOAT and bits == 32:
        return raw[: len(raw) // 4 * 4]
    if tag != _PCM or bits not in (16, 24, 32):
        raise ValueError(f"{path}: WAV format {tag}/{bits} bits is not supported here")
    if bits == 24:  # widen to 32-bit, top-aligned
        n = len(raw) // 3
        wide = bytearray(4 * n)
        for k in range(3):
            wide[k + 1 :: 4] = raw[k : 3 * n : 3]
        raw, bits = bytes(wide), 32
    ints = array.array("h" if bits == 16 else "i")
    ints.frombytes(raw[: len(raw) // ints.itemsize * ints.itemsize])
    if sys.byteorder == "big":
        ints.byteswap()
    scale = 1.0 / (2 ** (bits - 1))
    out = array.array("f", (v * scale for v in ints))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()
