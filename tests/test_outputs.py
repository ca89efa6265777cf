"""Output formats: what each writer holds (checked against pedalboard itself), what a musician
gets where the input does not fit (a downmix or resampling with a notice, or a one-line
refusal), the streaming resampler, and the one stem writer (atomic, never clipping silently)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.audio import read_audio, resample, write_audio
from engine.errors import StemtokError
from engine.karaoke import karaoke_mix
from engine.outputs import (
    FORMATS,
    StreamResampler,
    downmix_matrix,
    format_of,
    mp3_rate,
    output_depth,
    plan_output,
)
from engine.stem_writer import StemWriter, write_arrays

RATES = (8000, 22050, 37800, 44100, 48000, 64000, 88200, 96000, 176400, 192000)


def noise(channels: int, n: int, level: float = 0.3, seed: int = 0) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal((channels, n))).astype(np.float32)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_plan_is_writable_and_every_refusal_is_one_line(fmt: str, tmp_path: Path) -> None:
    """For each channel count and rate, the plan either refuses in one line or names a file
    that pedalboard's writer really takes, at the planned channels and rate."""
    for channels in (1, 2, 3, 6, 8, 9):
        for rate in RATES:
            try:
                plan = plan_output(fmt, channels, rate)
            except StemtokError as exc:
                assert fmt == "flac" and channels > 8 and "\n" not in str(exc)
                assert "at most 8 channels" in str(exc)
                continue
            path = tmp_path / f"{channels}-{rate}.{fmt}"
            write_arrays({"x": path}, plan, [noise(channels, rate // 10)])
            got, got_rate = read_audio(path)
            assert (got.shape[0], got_rate) == (plan.channels, plan.rate)
            assert bool(plan.notice) == ((plan.channels, plan.rate) != (channels, rate))


def test_mp3_downmixes_and_resamples_with_a_notice() -> None:
    six = plan_output("mp3", 6, 96000)
    assert (six.channels, six.rate, six.depth) == (2, 48000, "")
    assert "6 channels (5.1) are downmixed to stereo" in six.notice
    assert "96 kHz is resampled to 48 kHz" in six.notice
    assert plan_output("mp3", 2, 88200).rate == 44100 and plan_output("mp3", 1, 44100).notice == ""
    assert [mp3_rate(r) for r in (176400, 192000, 64000, 37800, 8000)] == [
        44100,
        48000,
        48000,
        44100,
        8000,
    ]
    assert plan_output("flac", 6, 96000).notice == ""  # FLAC, WAV and AIFF keep the input
    assert (plan_output("wav", 9, 192000).channels, plan_output("aiff", 9, 8000).rate) == (9, 8000)


def test_depths_and_formats_are_refused_in_one_line() -> None:
    assert [output_depth(f) for f in FORMATS] == ["32f", "24", "24", ""]
    cases = {
        ("flac", "32f"): "FLAC holds 16 or 24 bits, not 32-bit float (WAV holds 32-bit float)",
        ("aiff", "32f"): "AIFF holds 8, 16 or 24 bits",
        ("flac", "8"): "not 8 bits",
        ("mp3", "16"): "MP3 has no bit depth",
        ("ogg", None): "cannot write 'ogg' files (choose wav, flac, aiff or mp3)",
    }
    for (fmt, depth), text in cases.items():
        with pytest.raises(StemtokError) as err:
            plan_output(fmt, 2, 44100, depth)
        assert text in str(err.value)
    assert format_of("a/b.AIF") == "aiff"
    with pytest.raises(StemtokError, match=r"name it \.wav, \.flac, \.aiff or \.mp3"):
        format_of("song.ogg")


def test_downmix_follows_the_layouts() -> None:
    m = downmix_matrix(6)  # L R C LFE Ls Rs
    h = np.float32(1 / np.sqrt(2))
    np.testing.assert_allclose(m, [[1, 0, h, 0, h, 0], [0, 1, h, 0, 0, h]], rtol=1e-6)
    odd = downmix_matrix(7)  # no usual layout: alternate sides, averaged
    np.testing.assert_allclose(odd.sum(axis=1), [1, 1], rtol=1e-6)
    assert odd[0, 0] > 0 and odd[1, 0] == 0 and odd[1, 1] > 0


@pytest.mark.parametrize("src,dst", [(96000, 48000), (176400, 44100), (37800, 44100)])
def test_stream_resampler_equals_resampling_the_whole(src: int, dst: int) -> None:
    x = noise(2, src + 1234)
    r = StreamResampler(src, dst)
    pieces, i = [], 0
    for n in (1, 999, 20000, 7, 10**6):
        pieces.append(r.process(x[:, i : i + n]))
        i += n
    pieces.append(r.flush())
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), resample(x, src, dst), atol=1e-6)


def test_writer_keeps_samples_exact_and_leaves_nothing_behind(tmp_path: Path) -> None:
    x = noise(2, 30000, 0.1)
    out = tmp_path / "new" / "song"
    paths = {"vocals": out / "vocals.flac", "drums": out / "drums.flac"}
    plan = plan_output("flac", 2, 44100, "24")
    assert write_arrays(paths, plan, [x, -x]) == []
    ref = write_audio(tmp_path / "ref.flac", x, 44100, bit_depth=24)
    assert paths["vocals"].read_bytes() == ref.read_bytes()  # the same bytes as write_audio
    assert sorted(p.name for p in out.iterdir()) == ["drums.flac", "vocals.flac"]  # no temp files
    gone = tmp_path / "gone" / "song"
    with StemWriter({"vocals": gone / "vocals.wav"}, plan_output("wav", 2, 44100)) as w:
        w.write(x[None])  # ... and the separation fails: no commit
    assert not (tmp_path / "gone").exists()  # the folders it made are removed too


def test_clipping_is_reported_never_silent(tmp_path: Path) -> None:
    loud = noise(1, 1000, 0.2)
    loud[0, 10] = 1.6
    lines = write_arrays({"a": tmp_path / "a.wav"}, plan_output("wav", 1, 48000, "16"), [loud])
    assert len(lines) == 1 and "peak 1.60 clipped to full scale" in lines[0]
    assert write_arrays({"b": tmp_path / "b.wav"}, plan_output("wav", 1, 48000), [loud]) == []
    assert read_audio(tmp_path / "b.wav")[0][0, 10] == pytest.approx(1.6)  # 32f keeps it


def test_karaoke_mix_is_drums_bass_other_plus_a_guide() -> None:
    stems = {s: noise(2, 100, seed=i) for i, s in enumerate(("vocals", "drums", "bass", "other"))}
    plain = karaoke_mix(stems)
    np.testing.assert_allclose(plain, stems["drums"] + stems["bass"] + stems["other"], atol=1e-6)
    guided = karaoke_mix(stems, guide_db=-20)
    np.testing.assert_allclose(guided - plain, 0.1 * stems["vocals"], atol=1e-6)
