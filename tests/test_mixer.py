"""The editor's mixer and transport (pure numpy): solo/mute/gain/pan math, click-free ramps, and
that what the callback plays is what Export renders."""

from __future__ import annotations

import numpy as np
import pytest

from app.editor.mixer import (
    MIN_DB,
    Mixer,
    Strip,
    audible,
    channel_gains,
    db_to_gain,
    pan_gains,
)
from app.editor.player import Player

RATE = 48000


def stems(channels: int = 2, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal((4, channels, int(RATE * seconds)))).astype(np.float32)


def test_db_and_pan_laws() -> None:
    assert db_to_gain(0) == 1.0
    assert db_to_gain(-6.0206) == pytest.approx(0.5, rel=1e-4)
    assert db_to_gain(MIN_DB) == 0.0 and db_to_gain(-100) == 0.0
    assert db_to_gain(40) == pytest.approx(10 ** (12 / 20))  # capped at +12 dB
    assert pan_gains(0) == (1.0, 1.0)
    assert pan_gains(-1) == (1.0, 0.0) and pan_gains(1) == (0.0, 1.0)
    assert pan_gains(0.5) == (0.5, 1.0) and pan_gains(7) == (0.0, 1.0)


def test_solo_and_mute_rules() -> None:
    plain, solo, mute = Strip(), Strip(solo=True), Strip(mute=True)
    assert audible([plain, mute, plain, plain]) == [True, False, True, True]
    assert audible([solo, plain, plain, plain]) == [True, False, False, False]
    assert audible([solo, solo, mute, plain]) == [True, True, False, False]
    assert audible([Strip(solo=True, mute=True), plain, plain, plain]) == [False] * 4  # mute wins
    g = channel_gains([Strip(gain_db=-6.0206, pan=-0.5), mute, solo, plain], master_db=0)
    np.testing.assert_allclose(g, [[0, 0], [0, 0], [1, 1], [0, 0]], atol=1e-6)
    g = channel_gains([Strip(gain_db=-6.0206, pan=0.5)] + [plain] * 3, master_db=-6.0206)
    np.testing.assert_allclose(g[0], [0.125, 0.25], rtol=1e-4)
    np.testing.assert_allclose(g[1], [0.5, 0.5], rtol=1e-4)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_default_mix_is_the_sum_of_the_stems(channels: int) -> None:
    x = stems(channels)
    out = Mixer(x, RATE).render()
    assert out.shape == (2, x.shape[2])
    want = x[:, :2].sum(axis=0) if channels > 1 else np.repeat(x[:, 0].sum(0)[None], 2, 0)
    np.testing.assert_allclose(out, want, atol=1e-6)


def test_gain_pan_and_solo_render_what_the_math_says() -> None:
    x = stems()
    m = Mixer(x, RATE)
    strips = [Strip(gain_db=-12, pan=0.25), Strip(mute=True), Strip(pan=-1), Strip(gain_db=3)]
    m.set_strips(strips, master_db=-1)
    out = m.render()
    g = channel_gains(strips, -1)
    want = np.einsum("sc,scn->cn", g, x)
    np.testing.assert_allclose(out, want, atol=1e-6)
    assert np.all(out[1] != 0)
    m.set_strips([Strip(), Strip(solo=True), Strip(), Strip()])
    np.testing.assert_allclose(m.render(), x[1], atol=1e-7)


def test_mute_toggle_ramps_without_a_click() -> None:
    n = RATE
    t = np.arange(n) / RATE
    sine = (0.4 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    x = np.zeros((4, 1, n), np.float32)
    x[0, 0] = 0.5  # DC: a mute that jumps would step by 0.5 in one sample
    x[1, 0] = sine
    m = Mixer(x, RATE, block=512)
    p = Player(m, block=512)
    p.playing = True
    out = np.zeros((2, n), np.float32)
    for a in range(0, n, 512):
        if a == 512 * 20:
            m.set_strips([Strip(mute=True), Strip(), Strip(), Strip()])
        if a == 512 * 60:
            m.set_strips([Strip(), Strip(mute=True), Strip(), Strip()])
        p.fill(out[:, a : a + 512])
    steps = np.abs(np.diff(out[0]))
    sine_slope = 0.4 * 2 * np.pi * 1000 / RATE  # the largest step of the sine itself
    assert steps.max() <= sine_slope + 0.5 / m.ramp + 1e-4
    # the fade takes the ramp length, then the muted stem is gone exactly
    mute_at = 512 * 20
    np.testing.assert_allclose(
        out[0, mute_at + m.ramp + 1 : 512 * 60], sine[mute_at + m.ramp + 1 : 512 * 60], atol=1e-6
    )
    assert np.all(
        np.diff(out[0, mute_at : mute_at + m.ramp] - sine[mute_at : mute_at + m.ramp]) < 0
    )
    np.testing.assert_allclose(out[0, 512 * 60 + m.ramp + 1 :], 0.5, atol=1e-6)


def test_playback_blocks_equal_the_export_render() -> None:
    x = stems(seconds=0.3)
    m = Mixer(x, RATE, block=700)
    m.set_strips([Strip(gain_db=-3, pan=0.3), Strip(), Strip(mute=True), Strip(gain_db=2)])
    export = m.render()  # settles the ramps
    p = Player(m, block=700)
    p.playing = True
    heard = np.zeros((2, x.shape[2] + 999), np.float32)
    a = 0
    for size in [333, 700, 1, 257] * 1000:
        if a >= heard.shape[1]:
            break
        p.fill(heard[:, a : a + size])
        a += size
    np.testing.assert_array_equal(heard[:, : x.shape[2]], np.clip(export, -1, 1))
    assert not p.playing and np.all(heard[:, x.shape[2] :] == 0)  # stops at the end


def test_transport_loop_seek_and_peaks() -> None:
    x = np.zeros((4, 1, 1000), np.float32)
    x[0, 0] = np.arange(1000, dtype=np.float32) / 1000
    m = Mixer(x, 100, block=64)
    p = Player(m, block=64)
    p.set_loop(100, 130)
    p.seek(120)
    p.playing = True
    buf = np.zeros((2, 64), np.float32)
    p.fill(buf)
    frames = np.round(buf[0] * 1000).astype(int)
    assert list(frames[:10]) == list(range(120, 130))
    assert list(frames[10:40]) == list(range(100, 130))
    assert p.peak[0] == pytest.approx(0.129)
    p.set_loop(5, 5)  # too short: no loop
    assert p.loop is None
    p.pause()
    p.fill(buf)
    assert np.all(buf == 0) and np.all(p.peak == 0)


def test_no_audio_device_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    import sounddevice as sd

    def fail(*a: object, **k: object) -> None:
        raise sd.PortAudioError("Error querying device -1")

    monkeypatch.setattr(sd, "OutputStream", fail)
    p = Player(Mixer(stems(seconds=0.01), RATE))
    assert p.play() is False
    assert p.error is not None and "no audio output" in p.error


def test_the_callback_path_allocates_no_audio_buffers() -> None:
    import tracemalloc

    x = stems(seconds=2.0)
    m = Mixer(x, RATE, block=1024)
    p = Player(m, block=1024)
    p.playing = True
    out = np.zeros((1024, 2), np.float32)  # what sounddevice hands the callback
    p._callback(out, 1024, None, None)  # warm up
    tracemalloc.start()
    for k in range(60):
        if k % 7 == 0:
            m.set_strips([Strip(mute=k % 2 == 0), Strip(), Strip(), Strip()])  # GUI side
        p._callback(out, 1024, None, None)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4096, peak  # one block of stems is 32 KiB: nothing block-sized was allocated


def test_the_stream_callback_plays_the_mixer(monkeypatch: pytest.MonkeyPatch) -> None:
    import sounddevice as sd

    made: list[dict[str, object]] = []

    class Stream:  # stands in for a device: records how the stream was opened
        def __init__(self, **kw: object) -> None:
            made.append(kw)

        def start(self) -> None: ...
        def stop(self) -> None: ...
        def close(self) -> None: ...

    monkeypatch.setattr(sd, "OutputStream", Stream)
    x = stems(seconds=0.05)
    m = Mixer(x, RATE)
    m.set_strips([Strip(pan=-1), Strip(mute=True), Strip(), Strip()])
    want = m.render()
    p = Player(m)
    assert p.play() and p.error is None
    kw = made[0]
    assert kw["samplerate"] == RATE and kw["channels"] == 2 and kw["dtype"] == "float32"
    out = np.zeros((512, 2), np.float32)
    callback = kw["callback"]
    assert callable(callback)
    callback(out, 512, None, None)
    np.testing.assert_array_equal(out, np.clip(want[:, :512], -1, 1).T)
    p.close()
