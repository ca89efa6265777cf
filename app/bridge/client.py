"""A blocking bridge client for DAW scripts (standard library only; numpy optional).

::

    from app.bridge.client import BridgeClient

    with BridgeClient() as bridge:                 # finds the running server, says hello
        stems = bridge.separate(audio, 44100)      # numpy [C, N] -> {"vocals": [C, N], ...}
        # or, without numpy: PCM as interleaved little-endian float32 bytes
        result = bridge.separate_pcm(pcm, 44100, 2, stems=["vocals"], progress=print)
        result.stems["vocals"]                     # bytes, same layout as the input

Without ``socket_path`` or ``port`` it connects to what the running server wrote to its state
file, else the default Unix socket, else ``127.0.0.1:47321``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.bridge import paths
from app.bridge import protocol as pr
from app.bridge.auth import TokenError, read_token

ProgressFn = Callable[[int, int], None]  # (done, total) sample frames
_ids = itertools.count(1)


class BridgeError(Exception):
    """An ``error`` frame from the server (``code``, ``message``, ``id``) or a failed connection
    (code ``connect``)."""

    def __init__(self, code: str, message: str, id: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.id = code, message, id


@dataclass(frozen=True)
class Result:
    """The stems of one region: name -> interleaved f32le PCM (``frames * channels * 4`` bytes)."""

    id: str
    stems: dict[str, bytes]
    sample_rate: int
    channels: int
    frames: int
    seconds: float  # separation time on the server
    queued: float  # time the job waited in the queue


class BridgeClient:
    """One connection to the bridge; not thread-safe (use one client per thread)."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        port: int | None = None,
        *,
        token: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.timeout = timeout
        self.sock = _connect(socket_path, port, timeout)
        self._frames: list[tuple[dict[str, Any], bytes]] = []  # read ahead, not yet wanted
        try:
            self.token = token if token is not None else read_token()
            self.welcome = self._hello()
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> BridgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ frames
    def send(self, header: dict[str, Any], payload: bytes | memoryview = b"") -> None:
        """Send one frame; when the server has closed, raise the error it sent before closing."""
        try:
            self.sock.sendall(pr.encode_frame(header, payload))
            if payload:
                self.sock.sendall(payload)
        except OSError as exc:
            raise self._last_words(exc) from None

    def _last_words(self, exc: OSError) -> BridgeError:
        """The error frame a closing server left in the socket, if any."""
        try:
            self.sock.settimeout(1.0)
            while True:
                h, _ = self.recv()
                if h.get("type") == "error":
                    return BridgeError(str(h.get("code")), str(h.get("message")), h.get("id"))
        except (OSError, ValueError, BridgeError):
            return BridgeError("closed", f"the connection was closed ({exc.strerror or exc})")

    def recv(self) -> tuple[dict[str, Any], bytes]:
        """The next frame (header, payload); raises :class:`BridgeError` when the server closes."""
        h, p = pr.PREFIX.unpack(self._exact(pr.PREFIX.size))
        header = json.loads(self._exact(h).decode("utf-8"))
        return header, self._exact(p)

    def _exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], min(n - got, 1 << 22))
            except ConnectionResetError:
                k = 0
            if k == 0:
                raise BridgeError("closed", "the server closed the connection")
            got += k
        return bytes(buf)

    def _next(self, want: Callable[[dict[str, Any]], bool]) -> tuple[dict[str, Any], bytes]:
        """The first frame (read ahead or new) that ``want`` accepts; others are kept."""
        for i, (h, p) in enumerate(self._frames):
            if want(h):
                del self._frames[i]
                return h, p
        while True:
            h, p = self.recv()
            if h.get("type") == "error" and "id" not in h:
                raise BridgeError(str(h.get("code")), str(h.get("message")))
            if want(h):
                return h, p
            if h.get("type") in ("progress", "stem", "done", "error"):
                self._frames.append((h, p))

    # ------------------------------------------------------------------ requests
    def _hello(self) -> dict[str, Any]:
        self.send({"type": "hello", "version": pr.VERSION, "token": self.token})
        h, _ = self._next(lambda h: h.get("type") in ("welcome", "error"))
        if h["type"] == "error":
            raise BridgeError(str(h.get("code")), str(h.get("message")))
        return h

    def ping(self) -> float:
        """Round trip in seconds."""
        t0, tag = time.perf_counter(), f"ping-{next(_ids)}"
        self.send({"type": "ping", "id": tag})
        self._next(lambda h: h.get("type") == "pong" and h.get("id") == tag)
        return time.perf_counter() - t0

    def status(self) -> dict[str, Any]:
        self.send({"type": "status"})
        return self._next(lambda h: h.get("type") == "status")[0]

    def submit(
        self,
        pcm: bytes | memoryview,
        sample_rate: int,
        channels: int,
        *,
        stems: Sequence[str] | None = None,
        mode: str = "aligned",
        seed: int | None = None,
        id: str | None = None,
        client: str | None = None,
    ) -> str:
        """Queue a region (interleaved f32le PCM); returns its id (see :meth:`wait`).
        ``client`` names the sender (e.g. "REAPER") for logs and the editor's region list."""
        rid = id or f"r{os.getpid()}-{next(_ids)}"
        frames = len(pcm) // (4 * channels)
        header: dict[str, Any] = {
            "type": "separate",
            "id": rid,
            "sample_rate": sample_rate,
            "channels": channels,
            "frames": frames,
            "format": pr.FORMAT,
            "stems": list(stems or pr.STEM_NAMES),
            "mode": mode,
        }
        if seed is not None:
            header["seed"] = seed
        if client:
            header["client"] = client
        self.send(header, pcm)
        return rid

    def wait(self, rid: str, progress: ProgressFn | None = None) -> Result:
        """Collect the stems of job ``rid``; raises :class:`BridgeError` on its error frame."""
        stems: dict[str, bytes] = {}
        first: dict[str, Any] = {}
        while True:
            h, p = self._next(lambda h: h.get("id") == rid and h.get("type") != "pong")
            kind = h.get("type")
            if kind == "progress" and progress is not None:
                progress(int(h["done"]), int(h["total"]))
            elif kind == "stem":
                stems[str(h["name"])], first = p, first or h
            elif kind == "error":
                raise BridgeError(str(h.get("code")), str(h.get("message")), rid)
            elif kind == "done":
                return Result(
                    rid,
                    stems,
                    int(first.get("sample_rate", 0)),
                    int(first.get("channels", 0)),
                    int(first.get("frames", 0)),
                    float(h.get("seconds", 0.0)),
                    float(h.get("queued", 0.0)),
                )

    def separate_pcm(
        self,
        pcm: bytes | memoryview,
        sample_rate: int,
        channels: int,
        *,
        stems: Sequence[str] | None = None,
        mode: str = "aligned",
        seed: int | None = None,
        progress: ProgressFn | None = None,
        client: str | None = None,
    ) -> Result:
        """Separate one region and wait for it; Ctrl-C cancels the job on the server."""
        rid = self.submit(
            pcm, sample_rate, channels, stems=stems, mode=mode, seed=seed, client=client
        )
        try:
            return self.wait(rid, progress)
        except KeyboardInterrupt:
            self.cancel(rid)
            raise

    def separate(
        self,
        audio: Any,
        sample_rate: int,
        *,
        stems: Sequence[str] | None = None,
        mode: str = "aligned",
        seed: int | None = None,
        progress: ProgressFn | None = None,
        client: str | None = None,
    ) -> dict[str, Any]:
        """numpy ``[C, N]`` -> {name: ``[C, N]`` float32} (needs numpy)."""
        import numpy as np

        a = np.asarray(audio, dtype=np.float32)
        a = a[None] if a.ndim == 1 else a
        pcm = np.ascontiguousarray(a.T, dtype="<f4").tobytes()
        res = self.separate_pcm(
            pcm,
            sample_rate,
            a.shape[0],
            stems=stems,
            mode=mode,
            seed=seed,
            progress=progress,
            client=client,
        )
        c = a.shape[0]
        return {
            n: np.frombuffer(b, "<f4").reshape(-1, c).T.astype(np.float32)
            for n, b in res.stems.items()
        }

    def cancel(self, rid: str) -> None:
        """Ask the server to cancel ``rid`` (its ``error cancelled`` ends :meth:`wait`)."""
        self.send({"type": "cancel", "id": rid})

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send({"type": "bye"})
        self.sock.close()


# --------------------------------------------------------------------------- connecting
def _connect(socket_path: Any, port: int | None, timeout: float) -> socket.socket:
    for kind, where in _candidates(socket_path, port):
        try:
            if kind == "unix":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(timeout)
                s.connect(str(where))
            else:
                s = socket.create_connection(("127.0.0.1", int(where)), timeout=timeout)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except OSError as exc:
            last = f"{where}: {exc.strerror or exc}"
            if socket_path is not None or port is not None:
                break
    raise BridgeError("connect", f"no stemtok bridge answers ({last}); start 'stemtok bridge'")


def _candidates(socket_path: Any, port: int | None) -> list[tuple[str, Any]]:
    if socket_path is not None:
        return [("unix", socket_path)]
    if port is not None:
        return [("tcp", port)]
    out: list[tuple[str, Any]] = []
    state = paths.read_state() or {}
    if state.get("socket") and hasattr(socket, "AF_UNIX"):
        out.append(("unix", state["socket"]))
    if isinstance(state.get("port"), int):
        out.append(("tcp", state["port"]))
    if hasattr(socket, "AF_UNIX") and paths.default_socket_path().exists():
        out.append(("unix", paths.default_socket_path()))
    out.append(("tcp", paths.DEFAULT_PORT))
    return out


__all__ = ["BridgeClient", "BridgeError", "Result", "TokenError"]
