"""The bridge server through its Python client: queueing, cancel, shutdown, limits, files, CLI.

Most tests run the server with :class:`app.bridge.testing.FractionEngine` (stems are exact
fractions of the input); ``test_real_model_round_trip`` uses the shipped default model.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.bridge import paths
from app.bridge.auth import TokenError, load_or_create_token, read_token
from app.bridge.client import BridgeClient, BridgeError
from app.bridge.connection import Timeouts
from app.bridge.protocol import Limits
from app.bridge.server import BridgeConfig, BridgeServer
from app.bridge.testing import FractionEngine, expected
from app.cli import main
from engine.errors import StemtokError

ROOT = Path(__file__).resolve().parents[1]
FAST = Timeouts(hello=2.0, idle=5.0, frame=2.0, write=2.0, flush=1.0)


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    cfg, run = tmp_path / "cfg", tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(cfg))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    return {"cfg": cfg, "run": run}


@pytest.fixture
def make_server() -> Iterator[Callable[..., BridgeServer]]:
    started: list[BridgeServer] = []

    def make(engine: Any = None, on_result: Any = None, **config: Any) -> BridgeServer:
        config.setdefault("port", 0)
        config.setdefault("socket_path", paths.default_socket_path())
        config.setdefault("timeouts", FAST)
        srv = BridgeServer(engine or FractionEngine(), BridgeConfig(**config), on_result)
        srv.start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def region(seconds: float, rate: int = 8000, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal((channels, int(seconds * rate)))).astype(np.float32)


def pcm(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a.T, "<f4").tobytes()


# --------------------------------------------------------------------------- round trips
def test_client_round_trip_is_exact_over_both_transports(make_server: Any) -> None:
    srv = make_server()
    a = region(1.0, 44100)
    for client in (BridgeClient(srv.socket_path), BridgeClient(port=srv.port), BridgeClient()):
        with client:
            stems = client.separate(a, 44100)
        assert list(stems) == ["vocals", "drums", "bass", "other"]
        for name, s in stems.items():
            np.testing.assert_array_equal(s, expected(a, name))
        np.testing.assert_allclose(sum(stems.values()), a, rtol=1e-6, atol=1e-7)


def test_progress_is_reported_and_ends_at_total(make_server: Any) -> None:
    srv = make_server(FractionEngine(delay=0.5, steps=10))
    seen: list[tuple[int, int]] = []
    with BridgeClient(srv.socket_path) as c:
        c.separate(region(0.5), 8000, progress=lambda d, t: seen.append((d, t)))
    assert len(seen) >= 3
    assert seen == sorted(seen) and seen[-1] == (4000, 4000)


def test_fair_order_across_clients(make_server: Any) -> None:
    engine = FractionEngine(delay=0.3, steps=3)
    srv = make_server(engine)
    a, b = BridgeClient(srv.socket_path), BridgeClient(port=srv.port)
    ids = [a.submit(pcm(np.full((1, 80), 0.1 * (k + 1), np.float32)), 8000, 1) for k in range(3)]
    while not engine.calls:
        time.sleep(0.01)
    b_id = b.submit(pcm(np.full((1, 80), 0.9, np.float32)), 8000, 1)
    for rid in ids:
        a.wait(rid)
    b.wait(b_id)
    order = [round(c.first, 3) for c in engine.calls]
    assert order == [0.1, 0.9, 0.2, 0.3]  # B's one region does not wait behind A's list
    a.close()
    b.close()


def test_cancel_of_a_queued_job_and_others_still_run(make_server: Any) -> None:
    engine = FractionEngine(delay=0.4, steps=4)
    srv = make_server(engine)
    with BridgeClient(srv.socket_path) as c:
        first = c.submit(pcm(region(0.1)), 8000, 2)
        queued = c.submit(pcm(region(0.1)), 8000, 2)
        c.cancel(queued)
        with pytest.raises(BridgeError) as exc:
            c.wait(queued)
        assert exc.value.code == "cancelled"
        assert c.wait(first).stems
    assert len(engine.calls) == 1


def test_closing_a_connection_cancels_its_running_job(make_server: Any) -> None:
    engine = FractionEngine(delay=30.0)
    srv = make_server(engine)
    c = BridgeClient(srv.socket_path)
    c.submit(pcm(region(0.1)), 8000, 2)
    while not engine.calls:
        time.sleep(0.01)
    c.sock.close()
    t0 = time.monotonic()
    while engine.cancels_seen == 0:
        assert time.monotonic() - t0 < 1.0
        time.sleep(0.01)
    engine.delay = 0.0
    with BridgeClient(srv.socket_path) as c2:
        assert c2.separate(region(0.1), 8000)


def test_engine_failures_become_error_frames_and_the_server_lives(make_server: Any) -> None:
    engine = FractionEngine()
    srv = make_server(engine)
    with BridgeClient(srv.socket_path) as c:
        engine.fail = ZeroDivisionError("boom")
        with pytest.raises(BridgeError) as exc:
            c.separate(region(0.1), 8000)
        assert exc.value.code == "internal" and "ZeroDivisionError" in exc.value.message
        engine.fail = StemtokError("audio too short for this model")
        with pytest.raises(BridgeError) as exc:
            c.separate(region(0.1), 8000)
        assert exc.value.code == "bad_request" and "too short" in exc.value.message
        engine.fail = None
        assert c.separate(region(0.1), 8000)
        assert c.status()["done"] == 1


def test_engine_returning_a_wrong_shape_is_internal(make_server: Any) -> None:
    class Bad(FractionEngine):
        def separate(self, audio: Any, rate: int, **kw: Any) -> dict[str, Any]:
            return {n: a[:, :-1] for n, a in super().separate(audio, rate, **kw).items()}

    srv = make_server(Bad())
    with BridgeClient(srv.socket_path) as c:
        with pytest.raises(BridgeError) as exc:
            c.separate(region(0.1), 8000)
        assert exc.value.code == "internal"
        assert c.ping() < 1.0


def test_a_bug_in_a_handler_is_an_internal_error_not_a_crash(
    make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = make_server()

    def broken() -> dict[str, Any]:
        raise KeyError("oops")

    with BridgeClient(srv.socket_path) as c:
        monkeypatch.setattr(srv, "status", broken)
        c.send({"type": "status"})
        h, _ = c.recv()
        assert (h["type"], h["code"]) == ("error", "internal") and "KeyError" in h["message"]
        assert c.separate(region(0.1), 8000)  # same connection still served


def test_on_result_gets_the_request_and_the_stems(make_server: Any) -> None:
    got: list[tuple[dict, dict, int]] = []
    srv = make_server(on_result=lambda h, s, r: got.append((h, dict(s), r)))
    a = region(0.2, 16000, 1)
    with BridgeClient(srv.socket_path) as c:
        c.separate(a, 16000, stems=["drums"], mode="generative", seed=3)
    # on_result runs on the worker thread after the frames are queued: the client may be done
    # first, so wait for it (bounded) rather than assume an order
    deadline = time.monotonic() + 5.0
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    header, stems, rate = got[0]
    assert header["type"] == "separate" and header["stems"] == ["drums"] and header["seed"] == 3
    assert rate == 16000 and list(stems) == ["drums"]
    np.testing.assert_array_equal(stems["drums"], expected(a, "drums"))


def test_on_result_exception_is_logged_not_fatal(make_server: Any) -> None:
    def explode(*args: Any) -> None:
        raise RuntimeError("gui gone")

    srv = make_server(on_result=explode)
    with BridgeClient(srv.socket_path) as c:
        c.separate(region(0.1), 8000)
        assert c.separate(region(0.1), 8000)


# --------------------------------------------------------------------------- limits
def test_busy_per_connection_and_per_server(make_server: Any) -> None:
    engine = FractionEngine(delay=0.5)
    srv = make_server(engine, limits=Limits(max_client_jobs=2, max_clients=2))
    c = BridgeClient(srv.socket_path)
    ids = [c.submit(pcm(region(0.05)), 8000, 2) for _ in range(3)]
    with pytest.raises(BridgeError) as exc:
        c.wait(ids[2])
    assert exc.value.code == "busy"
    c2 = BridgeClient(srv.socket_path)
    with pytest.raises(BridgeError) as exc:
        BridgeClient(srv.socket_path)
    assert exc.value.code == "busy"
    c.wait(ids[0])
    c.wait(ids[1])
    c.close()
    c2.close()


def test_audio_queued_or_arriving_is_bounded(make_server: Any) -> None:
    from app.bridge.protocol import encode_frame

    one = region(0.1, 8000, 2)  # 6400 bytes of PCM
    srv = make_server(FractionEngine(delay=0.5), limits=Limits(max_queued_bytes=2 * 6400))
    a, b = BridgeClient(srv.socket_path), BridgeClient(srv.socket_path)
    running = a.submit(pcm(one), 8000, 2)
    while srv.status()["running"] == 0:
        time.sleep(0.01)
    queued = a.submit(pcm(one), 8000, 2)  # 6400 queued
    header = {"type": "separate", "id": "slow", "sample_rate": 8000, "channels": 2, "frames": 800}
    b.sock.sendall(encode_frame(header, pcm(one)))  # header only: its 6400 bytes are "arriving"
    time.sleep(0.2)
    with pytest.raises(BridgeError) as exc:
        a.wait(a.submit(pcm(one), 8000, 2))
    assert exc.value.code == "busy" and "too much audio" in exc.value.message
    b.sock.sendall(pcm(one))
    assert b.wait("slow").stems and a.wait(running).stems and a.wait(queued).stems
    a.close()
    b.close()


def test_a_client_that_stops_reading_is_dropped_without_stalling_others(
    make_server: Any,
) -> None:
    srv = make_server()
    slow = BridgeClient(srv.socket_path)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    big = region(2_000_000 / 8000, 8000, 2)  # 4 stems x 16 MB: far beyond the socket buffers
    slow.submit(pcm(big), 8000, 2)
    with BridgeClient(port=srv.port) as fast:
        t0 = time.monotonic()
        for _ in range(5):
            fast.separate(region(0.1), 8000)
        assert time.monotonic() - t0 < 2.0
        deadline = time.monotonic() + 10
        while fast.status()["clients"] > 1:  # the slow one is dropped after the write timeout
            assert time.monotonic() < deadline
            time.sleep(0.1)
    slow.sock.close()


# --------------------------------------------------------------------------- shutdown
def test_stop_lets_the_running_job_finish_and_refuses_the_queue(make_server: Any) -> None:
    srv = make_server(FractionEngine(delay=0.6))
    c = BridgeClient(srv.socket_path)
    running = c.submit(pcm(region(0.1)), 8000, 2)
    queued = c.submit(pcm(region(0.1)), 8000, 2)
    time.sleep(0.2)
    stopper = threading.Thread(target=srv.stop, kwargs={"grace": 5.0})
    stopper.start()
    assert c.wait(running).stems
    with pytest.raises(BridgeError) as exc:
        c.wait(queued)
    assert exc.value.code == "shutdown"
    stopper.join(10)
    assert not stopper.is_alive()
    assert not srv.socket_path.exists()  # type: ignore[union-attr]


def test_stop_without_grace_cancels_the_running_job(make_server: Any) -> None:
    srv = make_server(FractionEngine(delay=30.0))
    c = BridgeClient(srv.socket_path)
    rid = c.submit(pcm(region(0.1)), 8000, 2)
    time.sleep(0.2)
    t0 = time.monotonic()
    threading.Thread(target=srv.stop).start()
    with pytest.raises(BridgeError) as exc:
        c.wait(rid)
    assert exc.value.code == "shutdown"
    assert time.monotonic() - t0 < 2.0


SERVE_SCRIPT = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(message)s")
from app.bridge.server import BridgeConfig, BridgeServer
from app.bridge.testing import FractionEngine
from app.bridge import paths
cfg = BridgeConfig(port=0, socket_path=paths.default_socket_path(), state_file=paths.state_path())
BridgeServer(FractionEngine(delay=float(sys.argv[1])), cfg).serve_forever(grace=5.0)
print("exited cleanly")
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_server_gracefully(tmp_path: Path, sig: int) -> None:
    script = tmp_path / "serve.py"
    script.write_text(SERVE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), "1.0"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while paths.read_state() is None:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        c = BridgeClient()
        running = c.submit(pcm(region(0.1)), 8000, 2)
        queued = c.submit(pcm(region(0.1)), 8000, 2)
        time.sleep(0.3)
        proc.send_signal(sig)
        assert c.wait(running).stems  # finished within the grace period
        with pytest.raises(BridgeError):
            c.wait(queued)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "exited cleanly" in out and "separate" in out and "done in" in out  # request log
    assert paths.read_state() is None and not paths.default_socket_path().exists()


# --------------------------------------------------------------------------- files, auth
def test_token_is_created_once_user_only_and_reused(env: dict[str, Path]) -> None:
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(load_or_create_token())) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    path = paths.token_path()
    assert path == env["cfg"] / "stemtok" / "bridge-token"
    assert len(set(results)) == 1 and read_token() == results[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name != "bridge-token"]  # no temp left


def test_unsafe_or_missing_token_file_is_refused(env: dict[str, Path]) -> None:
    with pytest.raises(TokenError, match="start 'stemtok bridge'"):
        read_token()
    load_or_create_token()
    paths.token_path().chmod(0o644)
    with pytest.raises(StemtokError, match="chmod 600"):
        BridgeServer(FractionEngine(), BridgeConfig(port=0))
    paths.token_path().chmod(0o600)
    paths.token_path().write_text("short\n")
    with pytest.raises(TokenError, match="does not hold"):
        read_token()


def test_wrong_token_from_the_client(make_server: Any) -> None:
    srv = make_server()
    with pytest.raises(BridgeError) as exc:
        BridgeClient(srv.socket_path, token="x" * 43)
    assert exc.value.code == "unauthorized"


def test_tcp_listens_on_loopback_only(make_server: Any) -> None:
    srv = make_server()
    tcp = [
        s.getsockname() for lst in srv._listeners for s in lst.sockets if s.family == socket.AF_INET
    ]
    assert tcp == [("127.0.0.1", srv.port)]


def test_socket_files_stale_live_and_foreign(make_server: Any, env: dict[str, Path]) -> None:
    path = paths.default_socket_path()
    paths.private_dir(path.parent)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on: removed and replaced
    srv = make_server()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(StemtokError, match="another bridge"):
        BridgeServer(FractionEngine(), BridgeConfig(port=0, socket_path=path)).start()
    with pytest.raises(StemtokError, match="in use"):
        BridgeServer(FractionEngine(), BridgeConfig(port=srv.port, socket_path=None)).start()
    other = env["run"] / "plain-file"
    other.write_text("mine")
    with pytest.raises(StemtokError, match="not a socket"):
        BridgeServer(FractionEngine(), BridgeConfig(tcp=False, socket_path=other)).start()
    assert other.read_text() == "mine"


def test_runtime_dir_open_to_others_is_refused(env: dict[str, Path]) -> None:
    d = paths.runtime_dir()
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    with pytest.raises(StemtokError, match="open to other users"):
        BridgeServer(
            FractionEngine(), BridgeConfig(port=0, socket_path=paths.default_socket_path())
        ).start()


def test_fallback_runtime_dir_without_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert paths.runtime_dir().name == f"stemtok-{os.getuid()}"
    assert len(os.fsencode(paths.default_socket_path())) <= paths.MAX_SOCKET_PATH


# --------------------------------------------------------------------------- CLI
@pytest.fixture
def cli_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """``main()`` would replace (and close) the root log handlers, pytest's among them."""
    monkeypatch.setattr("app.cli._setup_logging", lambda verbose: None)


def test_send_and_status_commands(
    capsys: pytest.CaptureFixture[str], cli_logging: None, make_server: Any, tmp_path: Path
) -> None:
    from engine.audio import read_audio, write_audio

    srv = make_server(state_file=paths.state_path())
    a = region(0.5, 22050, 2)
    src = write_audio(tmp_path / "region.wav", a, 22050, bit_depth="32f")
    out = tmp_path / "stems"
    assert main(["send", str(src), "--out", str(out), "--quiet"]) == 0
    for name in ("vocals", "drums", "bass", "other"):
        got, rate = read_audio(out / "region" / f"{name}.wav")
        assert rate == 22050
        np.testing.assert_array_equal(got, expected(a, name))
    assert main(["send", str(src), "--out", str(out), "--quiet", "--stems", "bass"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        main(
            [
                "send",
                str(src),
                "-o",
                str(out),
                "--quiet",
                "--stems",
                "bass",
                "--overwrite",
                "--port",
                str(srv.port),
            ]
        )
        == 0
    )
    assert main(["send", str(src), "--out", str(out), "--quiet", "--karaoke"]) == 0
    got, _ = read_audio(out / "region" / "instrumental.wav")
    np.testing.assert_array_equal(got, sum(expected(a, n) for n in ("drums", "bass", "other")))
    capsys.readouterr()
    assert main(["bridge", "--status"]) == 0
    text = capsys.readouterr().out
    assert "up" in text and "stemtok 0.1.0" in text and "3 done" in text and "queued" in text


def test_status_and_send_when_no_bridge_runs(
    capsys: pytest.CaptureFixture[str], cli_logging: None, tmp_path: Path
) -> None:
    from engine.audio import write_audio

    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    assert main(["bridge", "--status", "--port", str(port)]) == 1
    assert "not running" in capsys.readouterr().out
    src = write_audio(tmp_path / "r.wav", region(0.1), 8000, bit_depth="32f")
    assert main(["send", str(src), "--out", str(tmp_path / "o"), "--port", str(port)]) == 2
    assert "no stemtok bridge answers" in capsys.readouterr().err


def test_bridge_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bridge", "--help"])
    text = capsys.readouterr().out
    for opt in ("--port", "--socket", "--status", "--no-tcp", "--grace", "--idle-timeout"):
        assert opt in text


# --------------------------------------------------------------------------- real model
@pytest.mark.slow
def test_real_model_round_trip(make_server: Any) -> None:
    from engine.audio import read_audio
    from engine.runtime.lm_separator import LMSeparator

    mix, rate = read_audio(ROOT / "resources" / "demo" / "demo.flac")
    a = np.ascontiguousarray(mix[:, 20 * rate : 23 * rate])  # 3 s, stereo
    srv = make_server(LMSeparator(threads=2))
    with BridgeClient(srv.socket_path) as c:
        t0 = time.monotonic()
        stems = c.separate(a, rate)
        took = time.monotonic() - t0
    assert list(stems) == ["vocals", "drums", "bass", "other"]
    assert all(s.shape == a.shape and s.dtype == np.float32 for s in stems.values())
    np.testing.assert_allclose(sum(stems.values()), a, atol=1e-4)  # aligned: sums to the mix
    energy = [float(np.mean(s**2)) for s in stems.values()]
    assert sum(e > 1e-3 * np.mean(a**2) for e in energy) >= 2  # not one stem taking it all
    print(f"3-s stereo region at {rate} Hz through the bridge: {took:.2f} s")


# --------------------------------------------------------------------------- stdlib WAV helpers
@pytest.mark.parametrize("depth", ["16", "24", "32f"])
def test_stdlib_wav_helpers_agree_with_the_engine(tmp_path: Path, depth: str) -> None:
    from app.bridge.wav import read_wav_f32, write_wav_f32
    from engine.audio import read_audio, write_audio

    a = np.clip(region(0.05, 11025, 2), -1, 1)
    src = write_audio(tmp_path / f"in{depth}.wav", a, 11025, bit_depth=depth)
    data, rate, channels = read_wav_f32(src)
    ref, _ = read_audio(src)
    assert (rate, channels) == (11025, 2)
    np.testing.assert_array_equal(np.frombuffer(data, "<f4").reshape(-1, 2).T, ref)
    out = write_wav_f32(tmp_path / "out.wav", data, rate, channels)
    back, back_rate = read_audio(out)
    assert back_rate == 11025
    np.testing.assert_array_equal(back, ref)


# --------------------------------------------------------------------------- the real command
@pytest.mark.slow
def test_stemtok_bridge_command_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("stemtok")
    sock = paths.default_socket_path()
    proc = subprocess.Popen(
        [str(exe), "bridge", "--port", "0", "--threads", "2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while paths.read_state() is None:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout
            time.sleep(0.1)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(paths.state_path().stat().st_mode) == 0o600
        with BridgeClient() as c:
            assert c.status()["port"] == paths.read_state()["port"]  # type: ignore[index]
            stems = c.separate(region(1.0, 16000, 1), 16000, stems=["vocals", "other"])
        assert {k: v.shape for k, v in stems.items()} == {"vocals": (1, 16000), "other": (1, 16000)}
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "listening on 127.0.0.1:" in out and "bridge-token" in out and "stopped" in out
    assert not sock.exists() and paths.read_state() is None
