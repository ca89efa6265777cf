"""Audio I/O: every format, rate and channel count reads with the right metadata and samples;
lossless formats round-trip bit-exactly; bad input fails with one clear line."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine import audio
from engine.errors import AudioError

RATES = (8000, 11025, 22050, 44100, 48000, 96000, 192000)
CHANNELS = (1, 2, 6)
# (suffix, libsndfile subtype, our sample_format, lossless)
FORMATS = (
    ("wav", "PCM_U8", "uint8", True),
    ("wav", "PCM_16", "int16", True),
    ("wav", "PCM_24", "int24", True),
    ("wav", "PCM_32", "int32", True),
    ("wav", "FLOAT", "float32", True),
    ("wav", "DOUBLE", "float64", True),
    ("flac", "PCM_16", "int16", True),
    ("flac", "PCM_24", "int24", True),
    ("aiff", "PCM_16", "int16", True),
    ("aiff", "PCM_24", "int24", True),
    ("aiff", "FLOAT", "float32", True),
    ("ogg", "VORBIS", "float32", False),
    ("mp3", "MPEG_LAYER_III", "float32", False),
)


def _signal(rate: int, channels: int, seconds: float = 0.25) -> np.ndarray:
    n = int(rate * seconds)
    t = np.arange(n) / rate
    chans = [0.5 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]
    return np.stack(chans, axis=1)  # (N, C) for soundfile


def _supported(fmt: str, subtype: str, rate: int, channels: int) -> bool:
    if fmt == "mp3":
        return rate <= 48000 and channels <= 2
    if fmt == "flac":
        return rate <= 192000
    return True


CASES = [
    (f, s, k, lossless, r, c)
    for (f, s, k, lossless) in FORMATS
    for r in RATES
    for c in CHANNELS
    if _supported(f, s, r, c)
]


@pytest.mark.parametrize("fmt,subtype,kind,lossless,rate,channels", CASES)
def test_reads_every_format_rate_and_channel_count(
    tmp_path: Path, fmt: str, subtype: str, kind: str, lossless: bool, rate: int, channels: int
) -> None:
    path = tmp_path / f"x.{fmt}"
    sf.write(path, _signal(rate, channels), rate, subtype=subtype)
    ref = sf.read(path, dtype="float64", always_2d=True)[0].T  # libsndfile as the reference

    info = audio.probe(path)
    assert (info.rate, info.channels, info.frames) == (rate, channels, ref.shape[1])
    assert info.sample_format == kind
    got, got_rate = audio.read_audio(path, dtype=np.float64)
    assert got_rate == rate and got.shape == ref.shape
    if lossless:
        np.testing.assert_array_equal(got, ref)
    else:
        inner = slice(0, ref.shape[1] - 1152)  # decoders differ only in the last frame
        assert np.max(np.abs(got[:, inner] - ref[:, inner])) < 1e-3


WRITE_CASES = [
    ("wav", "PCM_U8", 8),
    ("wav", "PCM_16", 16),
    ("wav", "PCM_24", 24),
    ("wav", "FLOAT", "32f"),
    ("flac", "PCM_16", 16),
    ("flac", "PCM_24", 24),
    ("aiff", "PCM_16", 16),
    ("aiff", "PCM_24", 24),
]


@pytest.mark.parametrize("fmt,subtype,depth", WRITE_CASES)
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_lossless_round_trip_is_bit_exact(
    tmp_path: Path, fmt: str, subtype: str, depth: int | str, channels: int
) -> None:
    rng = np.random.default_rng(channels)
    src = tmp_path / f"src.{fmt}"
    sf.write(src, rng.uniform(-1, 1, (4000, channels)), 44100, subtype=subtype)
    a, rate = audio.read_audio(src)
    dst = audio.write_audio(tmp_path / f"dst.{fmt}", a, rate, bit_depth=depth)
    assert sf.info(dst).subtype == subtype
    ref = sf.read(src, dtype="float64", always_2d=True)[0]
    back = sf.read(dst, dtype="float64", always_2d=True)[0]
    np.testing.assert_array_equal(back, ref)


def test_mp3_keeps_length_and_timing(tmp_path: Path) -> None:
    x = np.zeros((1, 48000), np.float32)
    x[0, 10000] = 0.8
    p = audio.write_audio(tmp_path / "click.mp3", x, 48000)
    y, rate = audio.read_audio(p)
    assert rate == 48000 and y.shape == (1, 48000)
    assert abs(int(np.argmax(np.abs(y[0]))) - 10000) <= 1


def test_resample_is_aligned_and_exact_length() -> None:
    rate = 44100
    x = np.zeros((2, rate), np.float32)
    x[:, 20000] = 1.0
    y = audio.resample(x, rate, 48000)
    assert y.shape == (2, 48000)
    assert abs(int(np.argmax(y[0])) - round(20000 * 48000 / rate)) <= 1
    back = audio.resample(audio.resample(_signal(rate, 1, 1.0).T, rate, 96000), 96000, rate)
    err = back[0, 2000:-2000] - _signal(rate, 1, 1.0)[2000:-2000, 0]
    assert np.sqrt(np.mean(err**2)) < 1e-3


def test_write_refuses_to_overwrite_and_is_atomic(tmp_path: Path) -> None:
    p = tmp_path / "mine.wav"
    p.write_bytes(b"precious")
    with pytest.raises(AudioError, match=r"already exists.*--overwrite"):
        audio.write_audio(p, np.zeros((1, 100)), 48000)
    assert p.read_bytes() == b"precious"
    with pytest.raises(AudioError):  # NaN refused: the old file survives, no temp file left
        audio.write_audio(p, np.full((1, 10), np.nan), 48000, overwrite=True)
    assert p.read_bytes() == b"precious"
    assert [f.name for f in tmp_path.iterdir()] == ["mine.wav"]
    audio.write_audio(p, np.zeros((1, 100)), 48000, overwrite=True)
    assert audio.probe(p).frames == 100


def test_write_refuses_clipping_for_integer_formats(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="full scale"):
        audio.write_audio(tmp_path / "loud.wav", np.full((1, 10), 1.5), 48000, bit_depth=16)
    audio.write_audio(tmp_path / "loud32.wav", np.full((1, 10), 1.5), 48000, bit_depth="32f")
    assert audio.read_audio(tmp_path / "loud32.wav")[0].max() == pytest.approx(1.5)


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "dir.wav").mkdir()
    (tmp / "empty.wav").write_bytes(b"")
    (tmp / "text.wav").write_text("this is not audio\n" * 50)
    sf.write(tmp / "full.wav", np.zeros((48000, 2)), 48000, subtype="PCM_16")
    data = (tmp / "full.wav").read_bytes()
    (tmp / "truncated.wav").write_bytes(data[: len(data) // 2])
    sf.write(tmp / "full.flac", np.random.default_rng(0).normal(0, 0.1, (48000, 2)), 48000)
    data = (tmp / "full.flac").read_bytes()
    (tmp / "truncated.flac").write_bytes(data[: len(data) // 3])
    (tmp / "garbage.flac").write_bytes(b"fLaC" + bytes(range(256)) * 20)
    nan = np.zeros((1000, 1), np.float32)
    nan[500] = np.nan
    sf.write(tmp / "nan.wav", nan, 48000, subtype="FLOAT")
    inf = np.zeros((1000, 1), np.float32)
    inf[10] = np.inf
    sf.write(tmp / "inf.wav", inf, 48000, subtype="FLOAT")
    sf.write(tmp / "zero.wav", np.zeros((0, 2)), 48000)
    sf.write(tmp / "rate4k.wav", np.zeros((100, 1)), 4000)
    sf.write(tmp / "rate384k.wav", np.zeros((100, 1)), 384000)
    return {
        "missing": (tmp / "nope.wav", "no such file"),
        "directory": (tmp / "dir.wav", "is a directory"),
        "empty": (tmp / "empty.wav", "empty"),
        "text": (tmp / "text.wav", "not a readable audio file"),
        "truncated wav": (tmp / "truncated.wav", "truncated"),
        "truncated flac": (tmp / "truncated.flac", "truncated|corrupt|not a readable"),
        "garbage flac": (tmp / "garbage.flac", "not a readable|corrupt"),
        "nan": (tmp / "nan.wav", "NaN or infinite"),
        "inf": (tmp / "inf.wav", "NaN or infinite"),
        "zero frames": (tmp / "zero.wav", "0 frames"),
        "rate too low": (tmp / "rate4k.wav", "not supported"),
        "rate too high": (tmp / "rate384k.wav", "not supported"),
    }


def test_bad_inputs_fail_with_one_clear_line(tmp_path: Path) -> None:
    for name, (path, pattern) in _bad_inputs(tmp_path).items():
        with pytest.raises(AudioError, match=pattern) as err:
            audio.read_audio(path)
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg, name


def test_stats_of_a_long_file_use_bounded_memory(tmp_path: Path) -> None:
    rate, seconds = 48000, 300  # 5 minutes of stereo: 110 MB as float32 if read whole
    p = tmp_path / "long.wav"
    with sf.SoundFile(p, "w", rate, 2, subtype="PCM_16") as f:
        block = (0.25 * np.ones((rate * 10, 2))).astype(np.float32)
        for _ in range(seconds // 10):
            f.write(block)
    tracemalloc.start()
    st = audio.stats(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert st.peak_dbfs == pytest.approx(20 * np.log10(0.25), abs=1e-3)
    assert peak < 40e6


def test_written_files_get_normal_permissions(tmp_path: Path) -> None:
    import os

    p = audio.write_audio(tmp_path / "new.wav", np.zeros((1, 10)), 48000)
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask
    os.chmod(p, 0o640)
    audio.write_audio(p, np.zeros((1, 10)), 48000, overwrite=True)
    assert p.stat().st_mode & 0o777 == 0o640  # replacing keeps the file's mode


def _extensible_float64_wav(path: Path, x: np.ndarray, rate: int) -> None:
    """A WAVE_FORMAT_EXTENSIBLE 64-bit float WAV (as ffmpeg writes them), by hand."""
    import struct

    channels = x.shape[0]
    data = np.ascontiguousarray(x.T, "<f8").tobytes()
    guid = struct.pack("<IHH", 3, 0x0000, 0x0010) + bytes.fromhex("800000aa00389b71")
    fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * channels * 8, channels * 8, 64)
    fmt += struct.pack("<HHI", 22, 64, 3) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_extensible_float64_wav_reads_exactly(tmp_path: Path) -> None:
    x = np.random.default_rng(3).uniform(-1, 1, (3, 1001))
    _extensible_float64_wav(tmp_path / "x.wav", x, 44100)
    info = audio.probe(tmp_path / "x.wav")
    assert (info.rate, info.channels, info.frames, info.sample_format) == (
        44100,
        3,
        1001,
        "float64",
    )
    y, _ = audio.read_audio(tmp_path / "x.wav", dtype=np.float64)
    np.testing.assert_array_equal(y, x)
    y32, _ = audio.read_audio(tmp_path / "x.wav")
    assert y32.dtype == np.float32 and np.abs(y32 - x).max() < 1e-7


def _encoder_extension(data: bytes) -> int:
    """Offset of the encoder string after the Xing/Info header of an MP3 (LAME layout)."""
    i = max(data.find(b"Info"), data.find(b"Xing"))
    flags = int.from_bytes(data[i + 4 : i + 8], "big")
    return (
        i
        + 8
        + 4 * bool(flags & 1)
        + 4 * bool(flags & 2)
        + 100 * bool(flags & 4)
        + 4 * bool(flags & 8)
    )


def test_mp3_gapless_info_is_read_whatever_the_encoder_signs(tmp_path: Path) -> None:
    x = np.zeros((1, 33333), np.float32)
    x[0, 12345] = 0.8
    data = bytearray(audio.write_audio(tmp_path / "a.mp3", x, 48000).read_bytes())
    ext = _encoder_extension(bytes(data))
    assert bytes(data[ext : ext + 4]) == b"LAME"
    data[ext : ext + 4] = b"Lavc"  # ffmpeg's libmp3lame signs the same fields this way
    (tmp_path / "b.mp3").write_bytes(bytes(data))
    for name in ("a.mp3", "b.mp3"):
        y, _ = audio.read_audio(tmp_path / name)
        assert y.shape == (1, 33333), name
        assert abs(int(np.argmax(np.abs(y[0]))) - 12345) <= 1, name


def test_cut_off_mp3_is_refused_not_padded(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(0, 0.1, (1, 48000 * 3)).astype(np.float32)
    data = audio.write_audio(tmp_path / "full.mp3", x, 48000).read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 3])
    with pytest.raises(AudioError, match="truncated"):
        audio.read_audio(tmp_path / "cut.mp3")


def test_ogg_opus_gets_its_own_message(tmp_path: Path) -> None:
    page = b"OggS" + bytes(24) + b"OpusHead" + bytes(200)
    (tmp_path / "song.ogg").write_bytes(page)
    with pytest.raises(AudioError, match="Ogg Opus is not supported"):
        audio.read_audio(tmp_path / "song.ogg")
