"""Protocol v1 conformance, with a client written only from docs/bridge-protocol.md.

The client half of this file (``RawClient`` and helpers) uses raw sockets, ``struct`` and
``json`` only and imports nothing from ``app.bridge``. The server under test is the real
``BridgeServer`` run in a thread with a stand-in engine (the fixture is the only place that
imports ``app.bridge``); the end-to-end test with the shipped model is in test_bridge_server.py.
"""

from __future__ import annotations

import json
import math
import os
import socket
import stat
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# =========================================================================== doc-only client
STEM_ORDER = ["vocals", "drums", "bass", "other"]


def frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    body = json.dumps(header).encode("utf-8")
    return struct.pack(">IQ", len(body), len(payload)) + body + payload


def raw_frame(header_bytes: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">IQ", len(header_bytes), len(payload)) + header_bytes + payload


def pcm(samples: list[float]) -> bytes:
    return struct.pack(f"<{len(samples)}f", *samples)


def unpcm(data: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(data) // 4}f", data))


class RawClient:
    """Blocking frames over TCP or the Unix socket (section 1-2 of the spec)."""

    def __init__(self, where: str | int, timeout: float = 10.0) -> None:
        if isinstance(where, int):
            self.sock = socket.create_connection(("127.0.0.1", where), timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(where)

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        self.sock.sendall(frame(header, payload))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exact(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def recv(self) -> tuple[dict[str, Any], bytes] | None:
        """The next frame, or None when the server closed the connection."""
        prefix = self._exact(12)
        if prefix is None:
            return None
        h, p = struct.unpack(">IQ", prefix)
        header = self._exact(h)
        payload = self._exact(p) if p else b""
        assert header is not None and payload is not None, "connection closed inside a frame"
        obj = json.loads(header.decode("utf-8"))
        assert isinstance(obj, dict) and isinstance(obj["type"], str)
        return obj, payload

    def expect(self, kind: str) -> dict[str, Any]:
        got = self.recv()
        assert got is not None, f"closed while waiting for {kind}"
        assert got[0]["type"] == kind, got[0]
        return got[0]

    def expect_error(self, code: str) -> dict[str, Any]:
        h = self.expect("error")
        assert h["code"] == code, h
        assert isinstance(h["message"], str) and h["message"]
        return h

    def closed(self) -> bool:
        """True when the server closed the connection (no further frame)."""
        try:
            return self.recv() is None
        except (ConnectionResetError, BrokenPipeError):
            return True

    def hello(self, token: str) -> dict[str, Any]:
        self.send({"type": "hello", "version": 1, "token": token})
        return self.expect("welcome")

    def close(self) -> None:
        self.sock.close()


def read_token(config_home: Path) -> str:
    path = config_home / "stemtok" / "bridge-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path.read_text().strip()


def separate_header(rid: str, rate: int, channels: int, frames: int, **kw: Any) -> dict[str, Any]:
    return {
        "type": "separate",
        "id": rid,
        "sample_rate": rate,
        "channels": channels,
        "frames": frames,
        "format": "f32le",
        **kw,
    }


def collect(c: RawClient, rid: str) -> tuple[list[dict], dict[str, tuple[dict, bytes]], dict]:
    """Frames of job ``rid`` until done: (progress headers, name -> (stem header, PCM), done)."""
    progress: list[dict] = []
    stems: dict[str, tuple[dict, bytes]] = {}
    while True:
        got = c.recv()
        assert got is not None
        h, p = got
        assert h.get("id") == rid, h
        if h["type"] == "progress":
            assert not stems, "progress after a stem"
            progress.append(h)
        elif h["type"] == "stem":
            assert h["name"] not in stems, "a stem sent twice"
            stems[h["name"]] = (h, p)
        else:
            assert h["type"] == "done", h
            return progress, stems, h


# =========================================================================== server fixture
@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    cfg, run = tmp_path / "cfg", tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(cfg))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    return {"cfg": cfg, "run": run}


@pytest.fixture
def server(env: dict[str, Path]) -> Iterator[Any]:
    from app.bridge.connection import Timeouts
    from app.bridge.paths import default_socket_path
    from app.bridge.server import BridgeConfig, BridgeServer
    from app.bridge.testing import FractionEngine

    t = Timeouts(hello=1.0, idle=1.0, frame=0.6, write=5.0, flush=1.0)
    config = BridgeConfig(port=0, socket_path=default_socket_path(), timeouts=t)
    srv = BridgeServer(FractionEngine(), config)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Any, env: dict[str, Path]) -> Iterator[RawClient]:
    c = RawClient(server.port)
    c.hello(read_token(env["cfg"]))
    yield c
    c.close()


# =========================================================================== tests
@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_welcome_states_version_stems_and_limits(
    server: Any, env: dict[str, Path], transport: str
) -> None:
    sock = str(env["run"] / "stemtok" / "bridge.sock")
    c = RawClient(server.port if transport == "tcp" else sock)
    w = c.hello(read_token(env["cfg"]))
    assert w["version"] == 1 and w["server"].startswith("stemtok ")
    assert w["stems"] == STEM_ORDER
    assert w["max_frames"] > 0 and w["max_channels"] >= 2 and w["format"] == "f32le"
    c.send({"type": "ping", "id": "x"})
    assert c.expect("pong")["id"] == "x"
    c.close()


def test_unix_socket_and_state_file_are_user_only(server: Any, env: dict[str, Path]) -> None:
    sock = env["run"] / "stemtok" / "bridge.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE((env["run"] / "stemtok").stat().st_mode) == 0o700


def test_separate_returns_each_stem_once_in_order_aligned_to_the_sample(
    client: RawClient,
) -> None:
    frames, channels = 4410, 2
    samples = [math.sin(0.01 * i) * (0.5 if i % 2 else -0.75) for i in range(frames * channels)]
    client.send(separate_header("job-1", 44100, channels, frames), pcm(samples))
    progress, stems, done = collect(client, "job-1")
    assert list(stems) == STEM_ORDER
    assert done["seconds"] >= 0 and done["queued"] >= 0
    assert all(0 <= p["done"] <= p["total"] == frames for p in progress)
    total = [0.0] * len(samples)
    for _, data in stems.values():
        assert len(data) == frames * channels * 4
        for i, v in enumerate(unpcm(data)):
            total[i] += v
    x = unpcm(pcm(samples))
    assert max(abs(a - b) for a, b in zip(total, x, strict=True)) < 1e-6  # stems sum to the mix


def test_stem_headers_repeat_the_region_format(client: RawClient) -> None:
    h = separate_header("s", 22050, 1, 100, stems=["bass", "vocals"], mode="generative", seed=7)
    client.send(h, pcm([0.25] * 100))
    _, stems, _ = collect(client, "s")
    assert list(stems) == ["vocals", "bass"]  # spec order, requested ones only
    for head, data in stems.values():
        assert (head["sample_rate"], head["channels"], head["frames"]) == (22050, 1, 100)
        assert head["format"] == "f32le" and len(data) == 400


def test_pipelined_requests_all_complete(client: RawClient) -> None:
    for k in range(3):
        client.send(separate_header(f"p{k}", 8000, 1, 80), pcm([0.5 * k] * 80))
    done = set()
    while len(done) < 3:
        got = client.recv()
        assert got is not None
        if got[0]["type"] == "done":
            done.add(got[0]["id"])
        elif got[0]["type"] == "stem" and got[0]["name"] == "bass":
            assert unpcm(got[1])[0] == pytest.approx(0.5 * 0.5 * int(got[0]["id"][1]))
    assert done == {"p0", "p1", "p2"}


@pytest.mark.parametrize(
    "first",
    [
        {"type": "ping"},
        {"type": "hello", "version": 1, "token": "wrong" * 10},
        {"type": "hello", "version": 1},
        {"type": "separate", "id": "a", "sample_rate": 8000, "channels": 1, "frames": 1},
    ],
)
def test_no_or_wrong_hello_is_unauthorized_and_closed(server: Any, first: dict) -> None:
    c = RawClient(server.port)
    c.send(first)
    c.expect_error("unauthorized")
    assert c.closed()


def test_payload_before_hello_is_refused_unread(server: Any, env: dict[str, Path]) -> None:
    c = RawClient(server.port)
    token = read_token(env["cfg"])
    c.send_raw(
        raw_frame(json.dumps({"type": "hello", "version": 1, "token": token}).encode(), b"x" * 10)
    )
    c.expect_error("unauthorized")
    assert c.closed()


def test_other_protocol_version_is_unsupported(server: Any, env: dict[str, Path]) -> None:
    c = RawClient(server.port)
    c.send({"type": "hello", "version": 2, "token": read_token(env["cfg"])})
    c.expect_error("unsupported")
    assert c.closed()


@pytest.mark.parametrize(
    "header_bytes",
    [
        b"\xff\xfe not utf-8",
        b"{not json",
        b"[1, 2]",
        b'{"no_type": 1}',
        b'{"type": 5}',
        b'{"type": "ping", "type": "ping"}',
        b'{"type": "ping", "x": NaN}',
        b"",
    ],
)
def test_broken_headers_are_bad_frame_and_the_connection_goes_on(
    client: RawClient, header_bytes: bytes
) -> None:
    client.send_raw(raw_frame(header_bytes, b"ignored payload"))
    client.expect_error("bad_frame")
    client.send({"type": "ping"})
    client.expect("pong")


def test_unknown_type_is_unsupported(client: RawClient) -> None:
    client.send({"type": "render_video", "id": "z"})
    client.expect_error("unsupported")
    client.send({"type": "ping"})
    client.expect("pong")


def test_payload_length_disagreeing_with_the_header_is_bad_frame(client: RawClient) -> None:
    client.send(separate_header("m", 8000, 2, 10), pcm([0.0] * 19))  # 19 samples, not 20
    assert client.expect_error("bad_frame")["id"] == "m"
    client.send(separate_header("ok", 8000, 2, 10), pcm([0.0] * 20))
    assert collect(client, "ok")[2]["type"] == "done"


def test_nan_or_infinite_pcm_is_refused(client: RawClient) -> None:
    for rid, bad in (("nan", float("nan")), ("inf", float("inf"))):
        client.send(separate_header(rid, 8000, 1, 4), pcm([0.0, bad, 0.0, 0.0]))
        assert client.expect_error("bad_audio")["id"] == rid


@pytest.mark.parametrize(
    "change, code",
    [
        ({"sample_rate": 7999}, "bad_request"),
        ({"sample_rate": 192001}, "bad_request"),
        ({"sample_rate": "44100"}, "bad_request"),
        ({"channels": 0}, "bad_request"),
        ({"channels": 9}, "bad_request"),
        ({"frames": 0}, "bad_request"),
        ({"frames": True}, "bad_request"),
        ({"stems": ["vocals", "cowbell"]}, "bad_request"),
        ({"stems": []}, "bad_request"),
        ({"mode": "creative"}, "bad_request"),
        ({"seed": -1}, "bad_request"),
        ({"id": ""}, "bad_request"),
        ({"id": "x" * 65}, "bad_request"),
        ({"format": "s16le"}, "unsupported"),
    ],
)
def test_out_of_range_fields_are_refused_and_the_payload_skipped(
    client: RawClient, change: dict, code: str
) -> None:
    h = separate_header("r", 8000, 1, 4)
    h.update(change)
    channels = h["channels"] if isinstance(h["channels"], int) and h["channels"] > 0 else 1
    frames = h["frames"] if type(h["frames"]) is int and h["frames"] > 0 else 1
    client.send(h, pcm([0.1] * (frames * channels)))
    client.expect_error(code)
    client.send({"type": "ping", "id": "after"})
    assert client.expect("pong")["id"] == "after"


def test_too_large_header_or_payload_is_refused_before_reading(
    server: Any, env: dict[str, Path]
) -> None:
    token = read_token(env["cfg"])
    for h, p in ((10**9, 0), (20, 2**40)):
        c = RawClient(server.port)
        c.hello(token)
        c.send_raw(struct.pack(">IQ", h, p))  # nothing follows: the answer cannot wait for it
        c.expect_error("too_large")
        assert c.closed()


def test_cancel_stops_a_running_job_within_a_second(server: Any, client: RawClient) -> None:
    server.engine.delay = 20.0
    client.send(separate_header("long", 8000, 1, 8000), pcm([0.0] * 8000))
    client.expect("progress")  # the job is running
    t0 = time.monotonic()
    client.send({"type": "cancel", "id": "long"})
    while True:
        h = client.recv()
        assert h is not None
        if h[0]["type"] == "error":
            break
        assert h[0]["type"] == "progress"
    assert h[0]["code"] == "cancelled" and h[0]["id"] == "long"
    assert time.monotonic() - t0 < 1.0
    client.send({"type": "cancel", "id": "long"})
    client.expect_error("not_found")


def test_ping_and_status_are_answered_while_a_job_runs(server: Any, client: RawClient) -> None:
    server.engine.delay = 2.0
    client.send(separate_header("bg", 8000, 1, 800), pcm([0.0] * 800))
    t0 = time.monotonic()
    client.send({"type": "status"})
    while (got := client.recv()) is not None and got[0]["type"] == "progress":
        pass
    assert got is not None and got[0]["type"] == "status"
    assert got[0]["running"] + got[0]["queued"] == 1 and got[0]["clients"] >= 1
    assert time.monotonic() - t0 < 0.5
    client.send({"type": "cancel", "id": "bg"})


def test_slow_trickle_of_a_frame_times_out(client: RawClient) -> None:
    data = frame({"type": "ping"})
    t0 = time.monotonic()
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        for b in data:
            client.send_raw(bytes([b]))
            time.sleep(0.2)
    assert time.monotonic() - t0 < 3.0


def test_idle_connection_times_out(client: RawClient) -> None:
    t0 = time.monotonic()
    client.expect_error("timeout")
    assert client.closed()
    assert 0.8 < time.monotonic() - t0 < 3.0


def test_truncated_frame_then_end_of_stream(client: RawClient) -> None:
    client.send_raw(frame({"type": "ping"})[:-3])
    client.sock.shutdown(socket.SHUT_WR)
    client.expect_error("bad_frame")
    assert client.closed()


def test_half_close_after_a_request_still_delivers_it(client: RawClient) -> None:
    client.send(separate_header("hc", 8000, 1, 40), pcm([0.5] * 40))
    client.sock.shutdown(socket.SHUT_WR)
    assert collect(client, "hc")[2]["type"] == "done"
    assert client.closed()


def test_bye_closes_the_connection(client: RawClient) -> None:
    client.send({"type": "bye"})
    assert client.closed()


def test_token_file_is_user_only(server: Any, env: dict[str, Path]) -> None:
    path = env["cfg"] / "stemtok" / "bridge-token"
    token = read_token(env["cfg"])
    assert len(token) >= 32 and all(ch.isalnum() or ch in "-_" for ch in token)
    assert path.stat().st_uid == os.getuid()
