"""Hypothesis over hostile byte streams: the bridge answers with well-formed frames, never
crashes, and keeps serving a valid client afterwards."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bridge import paths
from app.bridge.client import BridgeClient
from app.bridge.connection import Timeouts
from app.bridge.protocol import Limits
from app.bridge.server import BridgeConfig, BridgeServer
from app.bridge.testing import FractionEngine, expected

CODES = {
    "bad_frame",
    "bad_request",
    "bad_audio",
    "too_large",
    "unauthorized",
    "unsupported",
    "busy",
    "cancelled",
    "not_found",
    "timeout",
    "shutdown",
    "internal",
}
REPLIES = {"welcome", "error", "pong", "status", "progress", "stem", "done"}
TYPES = ["hello", "separate", "cancel", "ping", "status", "bye", "stem", "welcome", "", "x"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeServer]:
    base = tmp_path_factory.mktemp("fuzz")
    (base / "run").mkdir(mode=0o700)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CONFIG_HOME", str(base / "cfg"))
        mp.setenv("XDG_RUNTIME_DIR", str(base / "run"))
        t = Timeouts(hello=0.5, idle=0.5, frame=0.5, write=2.0, flush=0.5)
        limits = Limits(max_header=4096, max_payload=1 << 20, max_frames=100_000)
        config = BridgeConfig(
            port=0, socket_path=paths.default_socket_path(), timeouts=t, limits=limits
        )
        srv = BridgeServer(FractionEngine(), config)
        srv.start()
        yield srv
        srv.stop()


def frame(header: bytes, payload: bytes, h: int | None = None, p: int | None = None) -> bytes:
    h = len(header) if h is None else h
    p = len(payload) if p is None else p
    return struct.pack(">IQ", h, p) + header + payload


def hello(token: str) -> bytes:
    return frame(json.dumps({"type": "hello", "version": 1, "token": token}).encode(), b"")


def exchange(srv: BridgeServer, data: bytes) -> list[dict[str, Any]]:
    """Send ``data``, half-close, read every frame until the server closes."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5.0)
    headers: list[dict[str, Any]] = []
    try:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close first (e.g. too_large): what it said is still readable
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
        pos = 0
        while pos < len(buf):
            assert len(buf) - pos >= 12, "the server sent a truncated frame prefix"
            h, p = struct.unpack(">IQ", buf[pos : pos + 12])
            assert pos + 12 + h + p <= len(buf), "the server sent a truncated frame"
            header = json.loads(buf[pos + 12 : pos + 12 + h].decode("utf-8"))
            assert isinstance(header, dict) and header.get("type") in REPLIES, header
            if header["type"] == "error":
                assert header["code"] in CODES and isinstance(header["message"], str)
            pos += 12 + h + p
            headers.append(header)
    finally:
        s.close()
    return headers


def assert_still_serving(srv: BridgeServer) -> None:
    a = np.linspace(-0.5, 0.5, 160, dtype=np.float32).reshape(2, 80)
    with BridgeClient(port=srv.port, token=srv.token, timeout=5.0) as c:
        stems = c.separate(a, 8000)
    np.testing.assert_array_equal(stems["bass"], expected(a, "bass"))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    """Mostly plausible JSON headers with random members, sometimes raw garbage."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64))
    h: dict[str, Any] = {"type": draw(st.sampled_from(TYPES))}
    for key in draw(
        st.lists(
            st.sampled_from(
                [
                    "id",
                    "sample_rate",
                    "channels",
                    "frames",
                    "format",
                    "stems",
                    "mode",
                    "seed",
                    "version",
                    "token",
                    "zz",
                ]
            ),
            max_size=6,
        )
    ):
        h[key] = draw(json_values)
    if h["type"] == "separate" and draw(st.booleans()):
        h.update(
            id="f",
            sample_rate=8000,
            channels=draw(st.integers(1, 3)),
            frames=draw(st.integers(1, 50)),
        )
    return json.dumps(h).encode()


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    header = draw(headers())
    payload = draw(st.binary(max_size=256))
    lie = draw(st.sampled_from(["none", "none", "h", "p", "truncate"]))
    h = draw(st.integers(0, 2**32 - 1)) if lie == "h" else None
    p = draw(st.integers(0, 2**64 - 1)) if lie == "p" else None
    data = frame(header, payload, h, p)
    if lie == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    return data


@settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=512))
def test_random_bytes_before_hello(server: BridgeServer, data: bytes) -> None:
    for h in exchange(server, data):
        assert h["type"] == "error"  # nothing but refusals before a hello


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(frames(), min_size=1, max_size=6), st.booleans())
def test_random_frames_after_hello(server: BridgeServer, stream: list[bytes], authed: bool) -> None:
    data = (hello(server.token) if authed else b"") + b"".join(stream)
    replies = exchange(server, data)
    if authed:
        assert replies and replies[0]["type"] == "welcome"
    done = [h["id"] for h in replies if h["type"] == "done"]
    assert len(done) == len(set(done))  # a job never finishes twice
    assert_still_serving(server)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.integers(1, 4), st.integers(1, 40), st.sampled_from(["nan", "inf", "short", "long", "ok"])
)
def test_separate_payload_variants(server: BridgeServer, ch: int, n: int, kind: str) -> None:
    samples = np.zeros(ch * n, "<f4")
    if kind in ("nan", "inf"):
        samples[-1] = np.nan if kind == "nan" else -np.inf
    payload = samples.tobytes()
    payload = (
        payload[:-4] if kind == "short" else payload + b"\0" * 4 if kind == "long" else payload
    )
    h = {"type": "separate", "id": "v", "sample_rate": 8000, "channels": ch, "frames": n}
    replies = exchange(server, hello(server.token) + frame(json.dumps(h).encode(), payload))
    last = replies[-1]
    want = {"nan": "bad_audio", "inf": "bad_audio", "short": "bad_frame", "long": "bad_frame"}
    if kind == "ok":
        assert last["type"] == "done"
        assert [r["name"] for r in replies if r["type"] == "stem"] == [
            "vocals",
            "drums",
            "bass",
            "other",
        ]
    else:
        assert last["type"] == "error" and last["code"] == want[kind]


def test_server_survived_the_fuzzing(server: BridgeServer) -> None:
    assert_still_serving(server)
    with BridgeClient(port=server.port, token=server.token) as c:
        st_ = c.status()
    assert st_["clients"] == 1  # every fuzz connection was cleaned up
