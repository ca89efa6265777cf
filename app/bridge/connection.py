"""One client connection: read frames under deadlines, answer them, write with back-pressure.

::

    reader task (this class)                       writer task
      first byte: idle / hello deadline              outbox (FIFO) -> write -> await drain()
      rest of the frame: frame deadline + P/rate     (a reader that stops reading is dropped
      hello -> welcome, ping -> pong, status,         after ``write`` seconds)
      separate -> validate, read PCM -> queue
      cancel -> queue / running job

The worker thread posts progress and results into the outbox through the event loop, so every
frame of a job is written in order: progress..., stem x S, done (or one error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.bridge import protocol as pr
from app.bridge.auth import same_token
from app.bridge.jobs import Job

log = logging.getLogger("stemtok.bridge")
_SKIP_CHUNK = 1 << 20
_MAX_PENDING_PROGRESS = 4  # progress frames are dropped while the outbox holds more than this


@dataclass(frozen=True)
class Timeouts:
    """Seconds; ``min_rate`` (bytes/s) extends the frame deadline for large payloads."""

    hello: float = 10.0  # from connect to a complete hello
    idle: float = 300.0  # no frame and no job in flight
    frame: float = 10.0  # from a frame's first byte to its last, plus P / min_rate
    min_rate: float = 1024 * 1024
    write: float = 60.0  # one drain() of the outbox (a client that stopped reading)
    flush: float = 2.0  # writing what is left when a connection closes


class Hub(Protocol):
    """What a connection asks of the server that accepted it (the
    :class:`~app.bridge.server.BridgeServer`)."""

    token: str
    reading: int  # payload bytes of separate frames being received now, on all connections

    @property
    def stopping(self) -> bool: ...

    def welcome(self) -> dict[str, Any]: ...

    def status(self) -> dict[str, Any]: ...

    def refusal(self, conn: Connection, req: pr.SeparateRequest) -> tuple[str, str] | None: ...

    def submit(self, conn: Connection, job: Job) -> None: ...

    def cancel(self, conn: Connection, rid: str) -> bool: ...

    def drop_client(self, conn: Connection) -> None: ...


class Connection:
    """A client of ``server`` (the reader side runs in :meth:`run`)."""

    def __init__(
        self,
        server: Hub,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cid: int,
        peer: str,
        timeouts: Timeouts,
        limits: pr.Limits,
    ) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        self.cid, self.peer = cid, peer
        self.t, self.limits = timeouts, limits
        self.loop = asyncio.get_running_loop()
        self.outbox: asyncio.Queue[tuple[dict[str, Any], bytes] | None] = asyncio.Queue()
        self.active: dict[str, Job] = {}  # queued or running
        self.no_jobs = asyncio.Event()
        self.no_jobs.set()
        self.authed = False
        self.task: asyncio.Task[None] | None = None
        self._hello_deadline = self.loop.time() + self.t.hello
        self._handlers: dict[str, Callable[[pr.Frame, int, float], Awaitable[bool]]] = {
            "ping": self._ping,
            "status": self._status,
            "separate": self._separate,
            "cancel": self._cancel,
            "bye": self._bye,
            "hello": self._hello_again,
        }

    # ------------------------------------------------------------------ outbox
    def post(self, header: dict[str, Any], payload: bytes = b"") -> None:
        """Queue a frame (event-loop thread only)."""
        if header["type"] == "progress" and self.outbox.qsize() > _MAX_PENDING_PROGRESS:
            return
        self.outbox.put_nowait((header, payload))

    def post_threadsafe(self, header: dict[str, Any], payload: bytes = b"") -> None:
        self.loop.call_soon_threadsafe(self.post, header, payload)

    def job_finished(self, rid: str) -> None:
        self.active.pop(rid, None)
        if not self.active:
            self.no_jobs.set()

    async def _write_loop(self) -> None:
        try:
            while (item := await self.outbox.get()) is not None:
                header, payload = item
                self.writer.write(pr.encode_frame(header, payload))
                if payload:
                    self.writer.write(payload)
                await asyncio.wait_for(self.writer.drain(), self.t.write)
        except (TimeoutError, ConnectionError, OSError) as exc:
            log.info("#%d write failed (%s): dropping the client", self.cid, type(exc).__name__)
            if self.task is not None:
                self.task.cancel()

    # ------------------------------------------------------------------ lifetime
    async def run(self) -> None:
        self.task = asyncio.current_task()
        writer = asyncio.create_task(self._write_loop())
        log.info("#%d connected (%s)", self.cid, self.peer)
        eof = False
        try:
            eof = await self._read_loop()
            if eof and self.active:  # half-closed: finish its jobs, then close
                await self.no_jobs.wait()
        except asyncio.CancelledError:
            pass
        finally:
            self.server.drop_client(self)
            await self._close(writer)

    async def _close(self, writer: asyncio.Task[None]) -> None:
        self.outbox.put_nowait(None)
        wait = self.t.flush if self.server.stopping else self.t.write  # results still owed
        try:
            await asyncio.wait_for(asyncio.shield(writer), wait)
        except (TimeoutError, asyncio.CancelledError):
            writer.cancel()
        self.writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError, asyncio.CancelledError):
            await asyncio.wait_for(self.writer.wait_closed(), self.t.flush)
        log.info("#%d closed", self.cid)

    async def _read_loop(self) -> bool:
        """Serve frames until the client leaves; True on a clean end of stream."""
        while True:
            try:
                got = await self._read_frame()
                if got is None:
                    return True
                if not await self._dispatch(*got):
                    return False
            except pr.ProtocolError as exc:
                log.info("#%d error %s: %s", self.cid, exc.code, exc.message)
                self.post(pr.error_header(exc.code, exc.message, exc.id))
                if exc.fatal or not self.authed:  # before hello, any error ends it
                    return False
            except asyncio.IncompleteReadError:
                self.post(pr.error_header(pr.BAD_FRAME, "truncated frame"))
                return False
            except (ConnectionError, OSError):
                return False

    async def _dispatch(self, frame: pr.Frame, p: int, deadline: float) -> bool:
        """Answer one frame whose payload (``p`` bytes) is still unread."""
        if not self.authed:
            return await self._hello(frame)
        handler = self._handlers.get(frame.type)
        if handler is None:
            await self._skip(p, deadline)
            raise pr.ProtocolError(pr.UNSUPPORTED, f"unknown frame type {frame.type!r}"[:200])
        if frame.type != "separate" and p:
            await self._skip(p, deadline)
            raise pr.ProtocolError(pr.BAD_FRAME, f"a {frame.type} frame carries no payload")
        try:
            return await handler(frame, p, deadline)
        except (pr.ProtocolError, asyncio.IncompleteReadError, ConnectionError, OSError):
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: say so, keep the connection and the server
            log.exception("#%d internal error on %s", self.cid, frame.type)
            rid = frame.header.get("id") if isinstance(frame.header.get("id"), str) else None
            self.post(pr.error_header(pr.INTERNAL, f"{type(exc).__name__}: {exc}"[:200], rid))
            return True

    # ------------------------------------------------------------------ reading
    async def _read_frame(self) -> tuple[pr.Frame, int, float] | None:
        """A frame's header (the payload is left unread), or None at a clean end of stream."""
        first = await self._first_byte()
        if not first:
            return None
        deadline = self.loop.time() + self.t.frame
        if not self.authed:
            deadline = min(deadline, self._hello_deadline)
        h, p = pr.PREFIX.unpack(first + await self._exact(pr.PREFIX.size - 1, deadline))
        pr.check_prefix(h, p, self.limits, self.authed)
        deadline += p / self.t.min_rate
        raw = await self._exact(h, deadline)
        try:
            header = pr.parse_header(raw)
        except pr.ProtocolError:
            await self._skip(p, deadline)
            raise
        return pr.Frame(header), p, deadline

    async def _first_byte(self) -> bytes:
        while True:
            if self.authed:
                timeout = self.t.idle
            else:
                timeout = max(0.0, self._hello_deadline - self.loop.time())
            try:
                return await asyncio.wait_for(self.reader.read(1), timeout)
            except TimeoutError:
                if self.authed and (self.active or not self.outbox.empty()):
                    continue  # waiting for results is not idling
                what = f"idle for {self.t.idle:g} s" if self.authed else "no hello in time"
                raise pr.ProtocolError(pr.TIMEOUT, what, fatal=True) from None

    async def _exact(self, n: int, deadline: float) -> bytes:
        if n == 0:
            return b""
        timeout = deadline - self.loop.time()
        try:
            if timeout <= 0:
                raise TimeoutError
            return await asyncio.wait_for(self.reader.readexactly(n), timeout)
        except TimeoutError:
            raise pr.ProtocolError(pr.TIMEOUT, "frame incomplete in time", fatal=True) from None

    async def _skip(self, n: int, deadline: float) -> None:
        while n > 0:
            n -= len(await self._exact(min(n, _SKIP_CHUNK), deadline))

    # ------------------------------------------------------------------ handlers
    async def _hello(self, frame: pr.Frame) -> bool:
        h = frame.header
        if frame.type != "hello":
            raise pr.ProtocolError(pr.UNAUTHORIZED, "send hello first", fatal=True)
        if h.get("version") != pr.VERSION or isinstance(h.get("version"), bool):
            msg = f"this server speaks protocol version {pr.VERSION}"
            raise pr.ProtocolError(pr.UNSUPPORTED, msg, fatal=True)
        if not same_token(h.get("token"), self.server.token):
            raise pr.ProtocolError(pr.UNAUTHORIZED, "wrong token", fatal=True)
        self.authed = True
        self.post(self.server.welcome())
        return True

    async def _hello_again(self, frame: pr.Frame, p: int, deadline: float) -> bool:
        raise pr.ProtocolError(pr.BAD_REQUEST, "hello was already accepted")

    async def _ping(self, frame: pr.Frame, p: int, deadline: float) -> bool:
        pong: dict[str, Any] = {"type": "pong"}
        if isinstance(frame.header.get("id"), str):
            pong["id"] = frame.header["id"][: pr.MAX_ID]
        self.post(pong)
        return True

    async def _status(self, frame: pr.Frame, p: int, deadline: float) -> bool:
        self.post(self.server.status())
        return True

    async def _bye(self, frame: pr.Frame, p: int, deadline: float) -> bool:
        return False

    async def _cancel(self, frame: pr.Frame, p: int, deadline: float) -> bool:
        rid = pr.request_id(frame.header)
        if not self.server.cancel(self, rid):
            raise pr.ProtocolError(pr.NOT_FOUND, "no such job queued or running", id=rid)
        return True

    async def _separate(self, frame: pr.Frame, p: int, deadline: float) -> bool:
        try:
            req = pr.parse_separate(frame.header, p, self.limits)
            self._admit(req)
        except pr.ProtocolError:
            await self._skip(p, deadline)
            raise
        self.server.reading += p  # counted against the queue's byte budget while it arrives
        try:
            audio = _decode_pcm(await self._exact(p, deadline), req)
        finally:
            self.server.reading -= p
        job = Job(self.cid, req, audio, self.post_threadsafe)
        self.active[req.id] = job
        self.no_jobs.clear()
        self.server.submit(self, job)
        return True

    def _admit(self, req: pr.SeparateRequest) -> None:
        """Refuse a request (before its payload is read) that the server cannot take now."""
        if req.id in self.active:
            raise pr.ProtocolError(pr.BAD_REQUEST, "a job with this id is unfinished", id=req.id)
        reason = self.server.refusal(self, req)
        if reason is not None:
            code, message = reason
            raise pr.ProtocolError(code, message, id=req.id)


def _decode_pcm(payload: bytes, req: pr.SeparateRequest) -> np.ndarray:
    """Interleaved f32le ``[N * C]`` -> ``[C, N]`` float32 (finite samples only)."""
    x = np.frombuffer(payload, dtype="<f4").reshape(req.frames, req.channels)
    if not np.isfinite(x).all():
        raise pr.ProtocolError(pr.BAD_AUDIO, "the PCM holds NaN or infinite samples", id=req.id)
    return np.ascontiguousarray(x.T, dtype=np.float32)
