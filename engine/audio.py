"""Audio file I/O on pedalboard: read, inspect, resample and write, with clear errors.

Arrays are ``float32`` (or ``float64`` on request) shaped ``[C, N]`` (channels first, like
pedalboard). Reading never changes level or length: integer PCM is scaled by ``2**(bits-1)``,
MP3 encoder delay and padding are removed when the file says how much there is (LAME/Xing tag),
and truncated or corrupt files are refused rather than padded. Writing is atomic (a temporary file
in the target folder, renamed over the target) and never replaces a file unless asked to.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pedalboard.io import AudioFile

from engine import wavheader
from engine.atomic import atomic_path
from engine.constants import MAX_RATE, MIN_RATE
from engine.errors import AudioError

READ_SUFFIXES = (".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".aif", ".aiff", ".aifc")
#: Bit depths accepted per output format ("32f" is 32-bit float).
BIT_DEPTHS: dict[str, tuple[str, ...]] = {
    "wav": ("8", "16", "24", "32f"),
    "flac": ("16", "24"),
    "aiff": ("8", "16", "24"),
    "mp3": (),
}
WRITE_FORMATS = tuple(BIT_DEPTHS)
#: The most channels each writer takes (WAV and AIFF: any number).
MAX_CHANNELS: dict[str, int] = {"flac": 8, "mp3": 2}
#: The sample rates the MP3 writer takes (MPEG-1, -2 and -2.5 layer III).
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
BLOCK_FRAMES = 1 << 18  # frames per block when streaming long files (~5 s at 48 kHz)
RESAMPLE_HALF_TAPS = 32
_MP3_DECODER_DELAY = 529  # samples the MPEG layer III synthesis filter adds at the start


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header (and checked against its size)."""

    path: Path
    format: str  # "wav", "flac", "mp3", "ogg", "aiff"
    rate: int
    channels: int
    frames: int
    sample_format: str  # "int16", "int24", "float32", ... as stored in the file

    @property
    def duration(self) -> float:
        return self.frames / self.rate


@dataclass(frozen=True)
class AudioStats:
    """Level statistics over a whole file, computed block by block."""

    peak_dbfs: float
    rms_dbfs: float


def audio_files(folder: Path) -> list[Path]:
    """The audio files (by suffix, :data:`READ_SUFFIXES`) under ``folder``, recursively, sorted."""
    return sorted(f for f in folder.rglob("*") if f.suffix.lower() in READ_SUFFIXES and f.is_file())


def _fmt_name(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".wave": "wav", ".oga": "ogg", ".aif": "aiff", ".aifc": "aiff"}.get(suffix, suffix[1:])


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")


def _open(path: Path) -> Any:
    try:
        return AudioFile(str(path))
    except Exception as exc:  # pedalboard raises ValueError/RuntimeError with long texts
        with path.open("rb") as fh:
            head = fh.read(64)
        if head.startswith(b"OggS") and b"OpusHead" in head:
            raise AudioError(
                f"{path}: Ogg Opus is not supported (Ogg Vorbis is); convert it to "
                "FLAC or WAV first"
            ) from None
        reason = str(exc).split(":")[0] if str(exc) else type(exc).__name__
        raise AudioError(
            f"{path}: not a readable audio file (WAV, FLAC, MP3, OGG or AIFF expected; {reason})"
        ) from None


def _mp3_gapless(path: Path) -> tuple[int, int] | None:
    """(samples to skip, true length) from a Xing/"Info" tag with a LAME-style extension
    (written by LAME and by ffmpeg's libmp3lame, which signs it "Lavc"/"Lavf"), or None."""
    with path.open("rb") as fh:
        head = fh.read(8192)
    for tag in (b"Info", b"Xing"):
        i = head.find(tag)
        if i < 0 or i + 12 > len(head):
            continue
        flags = int.from_bytes(head[i + 4 : i + 8], "big")
        if not flags & 1:
            return None
        n_frames = int.from_bytes(head[i + 8 : i + 12], "big")
        if flags & 2:
            _check_mp3_size(path, head, i, int.from_bytes(head[i + 12 : i + 16], "big"))
        # the optional fields the flags announce: frames, bytes, 100-byte TOC, quality
        ext = i + 8 + 4 * bool(flags & 1) + 4 * bool(flags & 2) + 100 * bool(flags & 4)
        ext += 4 * bool(flags & 8)
        if ext + 24 > len(head) or not head[ext : ext + 4].isalnum():
            return None  # no encoder extension: delay and padding unknown
        b = head[ext + 21 : ext + 24]
        delay = (b[0] << 4) | (b[1] >> 4)
        padding = ((b[1] & 0x0F) << 8) | b[2]
        length = n_frames * _mp3_frame_samples(head, i) - delay - padding
        return (delay + _MP3_DECODER_DELAY, length) if length > 0 else None
    return None


def _mp3_frame_start(head: bytes, tag_pos: int) -> int | None:
    """Offset of the frame header before the tag at ``tag_pos`` (its sync word)."""
    for j in range(tag_pos - 4, max(tag_pos - 48, -1), -1):
        if head[j] == 0xFF and head[j + 1] & 0xE0 == 0xE0:
            return j
    return None


def _check_mp3_size(path: Path, head: bytes, tag_pos: int, stream_bytes: int) -> None:
    """Refuse an MP3 whose stream is shorter than its Xing tag says (a cut-off download):
    decoders would pad the missing part with silence."""
    start = _mp3_frame_start(head, tag_pos)
    if start is None or stream_bytes <= 0:
        return
    available = path.stat().st_size - start
    if available < stream_bytes - 1024:  # a tag-less tail or a last partial frame is fine
        raise AudioError(
            f"{path}: file is truncated (its MP3 header promises {stream_bytes} "
            f"bytes of audio, only {available} are present)"
        )


def _mp3_frame_samples(head: bytes, tag_pos: int) -> int:
    """Samples per frame of the frame holding the tag: 1152 for MPEG-1, 576 for MPEG-2/2.5."""
    for j in range(tag_pos - 4, max(tag_pos - 48, -1), -1):
        if head[j] == 0xFF and head[j + 1] & 0xE0 == 0xE0:
            return 1152 if (head[j + 1] >> 3) & 0x03 == 0x03 else 576
    return 1152


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Read and validate a file's header.

    Raises
    ------
    AudioError
        For a missing path, a directory, an empty, truncated or non-audio file, no channels or
        frames, or a rate outside 8-192 kHz.
    """
    p = Path(path)
    _check_path(p)
    fmt = _fmt_name(p)
    if fmt == "wav":
        wavheader.check_wav(p)
        layout = wavheader.float64_layout(p)
        if layout is not None:  # read by us, exactly (pedalboard cannot open every variant)
            frames = layout.data_bytes // (8 * max(layout.channels, 1))
            info = AudioInfo(p, fmt, layout.rate, layout.channels, frames, "float64")
            _check_info(info)
            return info
    with _open(p) as f:
        rate, channels, frames = int(f.samplerate), int(f.num_channels), int(f.frames)
        dtype = str(f.file_dtype)
    if fmt == "mp3":
        gap = _mp3_gapless(p)
        if gap is not None:
            frames = min(frames - gap[0], gap[1])
    if dtype == "int8" and fmt == "wav":
        dtype = "uint8"
    info = AudioInfo(p, fmt, rate, channels, max(frames, 0), dtype)
    _check_info(info)
    return info


def _check_info(info: AudioInfo) -> None:
    if info.channels < 1:
        raise AudioError(f"{info.path}: file has no audio channels")
    if info.frames < 1:
        raise AudioError(f"{info.path}: file has no audio (0 frames)")
    if not MIN_RATE <= info.rate <= MAX_RATE:
        raise AudioError(
            f"{info.path}: sample rate {info.rate} Hz is not supported "
            f"(stemtok reads {MIN_RATE // 1000}-{MAX_RATE // 1000} kHz)"
        )


def _check_finite(block: np.ndarray, path: Path, offset: int, rate: int) -> None:
    if not np.isfinite(block).all():
        first = int(np.argwhere(~np.isfinite(block))[0][1]) + offset
        raise AudioError(
            f"{path}: contains NaN or infinite samples (first at {first / rate:.3f} s)"
        )


def iter_blocks(
    path: str | os.PathLike[str],
    *,
    block_frames: int = BLOCK_FRAMES,
    dtype: type[np.floating[Any]] = np.float32,
) -> Iterator[np.ndarray]:
    """Yield the file as consecutive blocks ``[C, n]`` (n <= block_frames), validated as read."""
    info = probe(path)
    if info.sample_format == "float64":
        for block64 in wavheader.iter_float64(info.path, block_frames):
            yield block64.astype(dtype, copy=False)
        return
    skip = 0
    if info.format == "mp3":
        gap = _mp3_gapless(info.path)
        skip = gap[0] if gap else 0
    decode = _decoder(info.sample_format)
    check = _FlacChecksum.of(info)
    with _open(info.path) as f:
        if skip:
            f.seek(skip)
        done = 0
        while done < info.frames:
            n = min(block_frames, info.frames - done)
            block = decode(f, n)
            if block.shape[1] < n:
                raise AudioError(
                    f"{info.path}: file is truncated or corrupt "
                    f"(header says {info.frames} frames, only {done + block.shape[1]} could be read)"
                )
            block = np.asarray(block, dtype=dtype)
            _check_finite(block, info.path, done, info.rate)
            if check:
                check.update(block)
            yield block
            done += n
    if check and not check.ok():
        raise AudioError(f"{info.path}: file is truncated or corrupt (FLAC checksum mismatch)")


class _FlacChecksum:
    """The MD5 of the decoded samples that a FLAC file stores in its STREAMINFO block.

    pedalboard returns silence for a FLAC file whose frames are cut off or damaged; the checksum
    is how we notice.
    """

    def __init__(self, expected: bytes, bits: int) -> None:
        self.expected, self.bits = expected, bits
        self.md5 = hashlib.md5()

    @classmethod
    def of(cls, info: AudioInfo) -> _FlacChecksum | None:
        if info.format != "flac":
            return None
        with info.path.open("rb") as fh:
            head = fh.read(42)
        if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
            return None
        bits = (((head[20] & 0x01) << 4) | (head[21] >> 4)) + 1
        expected = head[26:42]
        return cls(expected, bits) if any(expected) and bits in (8, 16, 24) else None

    def update(self, block: np.ndarray) -> None:
        k = np.ascontiguousarray(
            np.round(block.T.astype(np.float64) * 2.0 ** (self.bits - 1)), dtype="<i4"
        )
        nbytes = (self.bits + 7) // 8
        self.md5.update(k.view(np.uint8).reshape(-1, 4)[:, :nbytes].tobytes())

    def ok(self) -> bool:
        return self.md5.digest() == self.expected


_INT_BITS = {"int8": 8, "uint8": 8, "int16": 16, "int24": 24, "int32": 32}


def _decoder(sample_format: str) -> Any:
    """A reader ``(file, n) -> [C, n] float64`` giving integer PCM as ``k / 2**(bits-1)``.

    pedalboard scales integers by ``1 / (2**(bits-1) - 1)``; we take the integers themselves
    (``read_raw``, or by exact rounding for 24-bit, which ``read_raw`` does not offer) so values
    match the usual convention and a read-write round trip is bit-exact.
    """
    bits = _INT_BITS.get(sample_format)
    if bits is None:
        return lambda f, n: f.read(n)
    scale = 2.0 ** (bits - 1)
    if bits == 24:
        return lambda f, n: np.round(f.read(n).astype(np.float64) * (scale - 1)) / scale
    return lambda f, n: f.read_raw(n).astype(np.float64) / scale


def read_audio(
    path: str | os.PathLike[str], *, dtype: type[np.floating[Any]] = np.float32
) -> tuple[np.ndarray, int]:
    """Read a whole file.

    Parameters
    ----------
    path
        WAV, FLAC, MP3, OGG or AIFF at 8-192 kHz, any channel count.
    dtype
        ``np.float32`` (default; exact for 8-24 bit and float32 files) or ``np.float64`` (exact
        for every format, including 32-bit integer and 64-bit float WAV).

    Returns
    -------
    audio : np.ndarray
        ``[C, N]`` samples in [-1, 1] for integer formats.
    rate : int
        The file's sample rate in Hz.
    """
    info = probe(path)
    out = np.empty((info.channels, info.frames), dtype=dtype)
    pos = 0
    for block in iter_blocks(path, dtype=dtype):
        out[:, pos : pos + block.shape[1]] = block
        pos += block.shape[1]
    return out, info.rate


def stats(path: str | os.PathLike[str]) -> AudioStats:
    """Peak and RMS level in dBFS over all channels, read in blocks (bounded memory)."""
    peak, energy, count = 0.0, 0.0, 0
    for block in iter_blocks(path):
        b64 = block.astype(np.float64)
        peak = max(peak, float(np.abs(b64).max()))
        energy += float(np.square(b64).sum())
        count += b64.size
    return AudioStats(_db(peak), _db(math.sqrt(energy / max(count, 1))))


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else -math.inf


def as_channels_first(audio: np.ndarray) -> np.ndarray:
    """Return ``audio`` as ``[C, N]``; a 1-D array becomes one channel."""
    a = np.asarray(audio)
    if a.ndim == 1:
        return a[None, :]
    if a.ndim != 2:
        raise AudioError(f"audio must be [C, N] or [N], got shape {a.shape}")
    return a


def resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """High-quality resampling of ``[C, N]`` to ``[C, round(N * dst / src)]``.

    Polyphase FIR (Kaiser, beta 9, 32 taps a side at the lower rate, about -90 dB stop band),
    zero phase: the output is time-aligned with the input to a small fraction of a sample and
    its pass band has unity gain, so stems resampled alone still add up to the mixture.
    pedalboard's stream resampler was measured first and rejected: up to 0.4 samples of delay
    and, in its default mode, a 1 % level loss.
    """
    from scipy import signal  # deferred: only resampling needs scipy

    a = as_channels_first(audio)
    out_dtype = np.float64 if a.dtype == np.float64 else np.float32
    if src_rate == dst_rate:
        return a.astype(out_dtype, copy=True)
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    m = max(up, down)
    taps = signal.firwin(2 * RESAMPLE_HALF_TAPS * m + 1, 0.97 / m, window=("kaiser", 9.0))
    y = signal.resample_poly(a, up, down, axis=-1, window=taps)
    n_out = round(a.shape[1] * dst_rate / src_rate)
    if y.shape[1] < n_out:
        y = np.pad(y, ((0, 0), (0, n_out - y.shape[1])))
    return np.ascontiguousarray(y[:, :n_out], dtype=out_dtype)


def _normalise_depth(fmt: str, bit_depth: int | str | None) -> str:
    allowed = BIT_DEPTHS[fmt]
    if fmt == "mp3":
        return ""
    depth = str(bit_depth if bit_depth is not None else "24").lower()
    depth = {"32": "32f", "float": "32f", "f32": "32f"}.get(depth, depth)
    if depth not in allowed:
        raise AudioError(
            f"{fmt.upper()} cannot be written at {bit_depth} bits (choose {', '.join(allowed)})"
        )
    return depth


def write_audio(
    path: str | os.PathLike[str],
    audio: np.ndarray,
    rate: int,
    *,
    bit_depth: int | str | None = 24,
    overwrite: bool = False,
    mp3_quality: str = "V0",
) -> Path:
    """Write ``audio`` ``[C, N]`` (or ``[N]``) atomically; the format comes from the suffix.

    Integer depths quantize by rounding, with no dither and no level change; samples outside
    [-1, 1] are refused for integer formats rather than clipped silently. Returns the path.
    """
    p = Path(path)
    fmt = _fmt_name(p)
    if fmt not in BIT_DEPTHS:
        raise AudioError(f"{p}: cannot write '{p.suffix}' files (use .wav, .flac, .aiff or .mp3)")
    if p.exists() and not overwrite:
        raise AudioError(f"{p}: already exists (pass --overwrite to replace it)")
    if p.is_dir():
        raise AudioError(f"{p}: is a directory")
    a = as_channels_first(audio)
    depth = _normalise_depth(fmt, bit_depth)
    _check_writable(a, rate, depth, p)
    with atomic_path(p) as tmp:
        _write_file(tmp, a, rate, fmt, depth, mp3_quality)
    return p


def _check_writable(a: np.ndarray, rate: int, depth: str, p: Path) -> None:
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise AudioError(f"{p}: nothing to write (shape {a.shape})")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"{p}: sample rate {rate} Hz is out of range")
    fmt = _fmt_name(p)
    if a.shape[0] > MAX_CHANNELS.get(fmt, a.shape[0]):
        raise AudioError(
            f"{p}: {fmt.upper()} holds at most {MAX_CHANNELS[fmt]} channels, not {a.shape[0]}"
        )
    if fmt == "mp3" and rate not in MP3_RATES:
        raise AudioError(f"{p}: MP3 holds 8 to 48 kHz at the standard rates, not {rate} Hz")
    if not np.isfinite(a).all():
        raise AudioError(f"{p}: refusing to write NaN or infinite samples")
    if depth not in ("32f", "") and float(np.abs(a).max()) > 1.0:
        raise AudioError(f"{p}: samples exceed full scale; write 32-bit float or lower the level")


def _write_file(tmp: Path, a: np.ndarray, rate: int, fmt: str, depth: str, quality: str) -> None:
    kwargs: dict[str, Any] = {"quality": quality} if fmt == "mp3" else {}
    if depth:
        kwargs["bit_depth"] = 32 if depth == "32f" else int(depth)
    with AudioFile(str(tmp), "w", rate, a.shape[0], **kwargs) as f:
        for i in range(0, a.shape[1], BLOCK_FRAMES):
            f.write(encode_block(a[:, i : i + BLOCK_FRAMES], depth))


def encode_block(block: np.ndarray, depth: str) -> np.ndarray:
    """Samples ``[C, n]`` as pedalboard's writers should receive them: float32 for MP3 (``""``)
    and 32-bit float, integers for integer depths (rounded, so integer PCM round-trips exactly;
    the caller keeps them within full scale)."""
    if depth in ("", "32f"):
        return np.ascontiguousarray(block, dtype=np.float32)
    bits = int(depth)
    scale = 2.0 ** (bits - 1)
    k = np.clip(np.round(block.astype(np.float64) * scale), -scale, scale - 1)
    if bits == 8:
        return np.ascontiguousarray(k, dtype=np.int8)
    if bits == 16:
        return np.ascontiguousarray(k, dtype=np.int16)
    return np.ascontiguousarray(k.astype(np.int32) << 8)  # 24-bit, top-aligned in int32
