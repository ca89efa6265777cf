"""The bridge server: listeners, the fair job queue and the one engine on a worker thread.

::

    TCP 127.0.0.1:port ─┐                       ┌─ FairQueue ─ dispatcher ─ worker thread:
    Unix socket (0600) ─┴─ Connection per client ┤                          engine.separate(...)
                                                 └─ outbox ◀─ progress / stems / done ─┘

Embedding (e.g. in the editor)::

    server = BridgeServer(LMSeparator(), BridgeConfig(port=0), on_result=callback)
    server.start()          # own thread and asyncio loop; returns once it is listening
    ...
    server.stop()           # queued jobs get error "shutdown", the running one is cancelled

``on_result(request_header, stems, rate)`` is called on the worker thread after each finished
job, once its frames are queued for the client: ``request_header`` is the client's ``separate``
header (a dict), ``stems`` maps name -> ``[C, N]`` float32. A GUI must hand it over to its own
thread (a Qt signal); the next job waits until it returns, and its exceptions are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.bridge import paths
from app.bridge import protocol as pr
from app.bridge.auth import TokenError, load_or_create_token
from app.bridge.connection import Connection, Timeouts
from app.bridge.jobs import FairQueue, Job
from app.bridge.listeners import bind_private, clear_stale_socket
from app.bridge.worker import OnResult, Worker
from engine import __version__
from engine.errors import StemtokError
from engine.runtime.separator import Separator

log = logging.getLogger("stemtok.bridge")


@dataclass(frozen=True)
class BridgeConfig:
    """Where to listen and what to accept.

    ``port`` 0 picks a free port (see :attr:`BridgeServer.port`); ``tcp=False`` or
    ``socket_path=None`` turns a listener off (at least one must stay on).
    """

    port: int = paths.DEFAULT_PORT
    tcp: bool = True
    socket_path: Path | None = None
    token: str | None = None  # None: read or create the user's token file
    state_file: Path | None = None  # written while serving, so clients find the server
    limits: pr.Limits = field(default_factory=pr.Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    progress_interval: float = 0.1  # seconds between progress frames of one job


class BridgeServer:
    """Serve ``engine`` to DAW clients (protocol v1, ``docs/bridge-protocol.md``)."""

    def __init__(
        self,
        engine: Separator,
        config: BridgeConfig | None = None,
        on_result: OnResult | None = None,
    ) -> None:
        self.engine, self.config, self.on_result = engine, config or BridgeConfig(), on_result
        self._worker = Worker(
            engine, self.config.progress_interval, on_result, lambda: self._stopping
        )
        if not self.config.tcp and self.config.socket_path is None:
            raise StemtokError("the bridge needs TCP or a Unix socket to listen on")
        try:
            self.token = self.config.token or load_or_create_token()
        except TokenError as exc:
            raise StemtokError(str(exc)) from None
        self.name = f"stemtok {__version__}"
        self.port: int | None = None
        self.socket_path: Path | None = None
        self.jobs_done = 0
        self.reading = 0  # payload bytes of separate frames being received now
        self._conns: dict[int, Connection] = {}
        self._next_cid = 0
        self._running: Job | None = None
        self._listeners: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._started_at = time.monotonic()
        self._socket_inode: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_request: asyncio.Future[float] | None = None

    # ================================================================== asyncio API
    async def start_async(self) -> None:
        """Open the listeners and start the dispatcher on the running loop."""
        self._loop = asyncio.get_running_loop()
        self.queue = FairQueue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="stemtok-bridge-worker")
        try:
            if self.config.tcp:
                await self._listen_tcp()
            if self.config.socket_path is not None:
                await self._listen_unix(self.config.socket_path)
        except BaseException:
            await self._close_listeners()
            raise
        self._dispatcher = asyncio.create_task(self._dispatch_loop())
        self._write_state()
        log.info("serving %s on %s", self.name, self.where())

    async def stop_async(self, grace: float = 0.0) -> None:
        """Stop: no new connections or jobs; queued jobs get ``error shutdown``; the running job
        may finish within ``grace`` seconds, else it is cancelled; connections are flushed and
        closed."""
        if self._stopping:
            return
        self._stopping = True
        log.info("stopping (grace %.1f s)", grace)
        await self._close_listeners()
        for job in self.queue.drain():
            self._refuse_queued(job, pr.SHUTDOWN, "the server is stopping")
        running = self._running
        if running is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
            if not self._idle.is_set():
                running.cancel_event.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), 5.0)
        self._dispatcher.cancel()
        await asyncio.gather(self._dispatcher, return_exceptions=True)
        for conn in list(self._conns.values()):
            if conn.task is not None:
                conn.task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.config.timeouts.flush + 1.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._remove_files()
        log.info("stopped")

    # ================================================================== thread API
    def start(self, timeout: float = 30.0) -> None:
        """Run the server on its own thread and asyncio loop; returns once it listens (or
        raises what kept it from starting)."""
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready, failure), name="stemtok-bridge", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout):
            raise StemtokError("the bridge did not start in time")
        if failure:
            raise failure[0]

    def stop(self, grace: float = 0.0, timeout: float = 30.0) -> None:
        """Stop a server started with :meth:`start` (thread-safe) and wait for its thread."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: already stopped
            self._loop.call_soon_threadsafe(self._request_stop, grace)
        self._thread.join(timeout)

    def serve_forever(self, grace: float = 5.0, ready: Callable[[], None] | None = None) -> None:
        """Serve on this thread until SIGINT/SIGTERM (the first one stops gracefully with
        ``grace`` seconds for the running job; a second one cancels it). ``ready()`` is called
        once the listeners are open."""
        asyncio.run(self._main(None, [], grace, ready))

    def _thread_main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        try:
            asyncio.run(self._main(ready, failure, None))
        except BaseException as exc:  # reported to start() when it happens before ready
            if not ready.is_set():
                failure.append(exc)
            else:
                log.exception("bridge thread failed")
        finally:
            ready.set()

    async def _main(
        self,
        ready: threading.Event | None,
        failure: list[BaseException],
        grace: float | None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self._stop_request = asyncio.get_running_loop().create_future()
        await self.start_async()
        if grace is not None:
            self._install_signals(grace)
        if ready is not None:
            ready.set()
        if on_ready is not None:
            on_ready()
        await self.stop_async(await self._stop_request)

    def _request_stop(self, grace: float) -> None:
        fut = self._stop_request
        if fut is not None and not fut.done():
            fut.set_result(grace)
        elif self._running is not None:  # asked again while stopping: cancel now
            self._running.cancel_event.set()

    def _install_signals(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._request_stop, grace)

    # ================================================================== listeners
    async def _listen_tcp(self) -> None:
        try:
            srv = await asyncio.start_server(self._accept, "127.0.0.1", self.config.port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StemtokError(
                    f"port {self.config.port} on 127.0.0.1 is in use (another bridge? "
                    "'stemtok bridge --status', or pick --port)"
                ) from None
            raise StemtokError(f"cannot listen on port {self.config.port}: {exc}") from None
        self._listeners.append(srv)
        self.port = int(srv.sockets[0].getsockname()[1])

    async def _listen_unix(self, path: Path) -> None:
        try:
            if path == paths.default_socket_path():
                paths.private_dir(path.parent)
            paths.check_socket_path(path)
            clear_stale_socket(path)
            sock = bind_private(path)
        except (OSError, paths.PathError) as exc:
            raise StemtokError(f"cannot listen on {path}: {exc}") from None
        self._socket_inode = os.lstat(path).st_ino
        self.socket_path = path
        self._listeners.append(await asyncio.start_unix_server(self._accept, sock=sock))

    async def _close_listeners(self) -> None:
        for srv in self._listeners:
            srv.close()
        self._listeners.clear()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def where(self) -> str:
        parts = [f"127.0.0.1:{self.port}"] if self.port is not None else []
        if self.socket_path is not None:
            parts.append(str(self.socket_path))
        return " and ".join(parts)

    def _write_state(self) -> None:
        path = self.config.state_file
        if path is None:
            return
        state = {
            "pid": os.getpid(),
            "port": self.port,
            "version": __version__,
            "socket": str(self.socket_path) if self.socket_path else None,
        }
        try:
            paths.private_dir(path.parent)
            paths.write_state(path, state)
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc)

    def _remove_files(self) -> None:
        p = self.socket_path
        with contextlib.suppress(OSError):
            if p is not None and os.lstat(p).st_ino == self._socket_inode:
                p.unlink()
        state = self.config.state_file
        with contextlib.suppress(OSError):
            if state is not None and (paths.read_state(state) or {}).get("pid") == os.getpid():
                state.unlink()

    # ================================================================== connections
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._next_cid += 1
        cid = self._next_cid
        try:
            peer = _peer(writer)
            if self._stopping or len(self._conns) >= self.config.limits.max_clients:
                if self._stopping:
                    await _refuse(writer, pr.SHUTDOWN, "the server is stopping")
                else:
                    await _refuse(writer, pr.BUSY, f"{len(self._conns)} clients are connected")
                return
            conn = Connection(
                self, reader, writer, cid, peer, self.config.timeouts, self.config.limits
            )
            self._conns[cid] = conn
            await conn.run()
        except Exception:  # never let one client take the server down
            log.exception("connection handler failed")
        finally:
            self._conns.pop(cid, None)
            self._tasks.discard(task)

    def welcome(self) -> dict[str, Any]:
        return pr.welcome_header(self.name, self.config.limits, pr.STEM_NAMES)

    def status(self) -> dict[str, Any]:
        run = self._running
        return {
            "type": "status",
            "version": pr.VERSION,
            "server": self.name,
            "pid": os.getpid(),
            "port": self.port,
            "socket": str(self.socket_path) if self.socket_path else None,
            "clients": len(self._conns),
            "queued": len(self.queue),
            "running": 0 if run is None else 1,
            "done": self.jobs_done,
            "uptime": round(time.monotonic() - self._started_at, 3),
        }

    def refusal(self, conn: Connection, req: pr.SeparateRequest) -> tuple[str, str] | None:
        """Why ``req`` cannot be queued now (code, message), or None."""
        lim = self.config.limits
        in_flight = len(self.queue) + (self._running is not None)
        if self._stopping:
            return pr.SHUTDOWN, "the server is stopping"
        if len(conn.active) >= lim.max_client_jobs:
            return pr.BUSY, f"this connection has {len(conn.active)} unfinished jobs"
        if in_flight >= lim.max_queue:
            return pr.BUSY, f"{in_flight} jobs are queued"
        if self.queue.bytes + self.reading + req.payload_bytes > lim.max_queued_bytes:
            return pr.BUSY, "the queue holds too much audio; try again later"
        return None

    def submit(self, conn: Connection, job: Job) -> None:
        ahead = self.queue.put(job) + (self._running is not None)
        r = job.request
        log.info(
            "#%d separate %s: %.2f s, %d ch, %d Hz, %s, %s -> queued (%d ahead)",
            conn.cid,
            r.id,
            r.seconds,
            r.channels,
            r.sample_rate,
            ",".join(r.stems),
            r.mode,
            ahead,
        )

    def cancel(self, conn: Connection, rid: str) -> bool:
        job = self.queue.remove(conn.cid, rid)
        if job is not None:
            self._refuse_queued(job, pr.CANCELLED, "cancelled before it started")
            return True
        run = self._running
        if run is not None and run.client == conn.cid and run.id == rid:
            run.cancel_event.set()
            log.info("#%d cancel %s (running)", conn.cid, rid)
            return True
        return False

    def drop_client(self, conn: Connection) -> None:
        """The connection is closing: forget its queued jobs, cancel its running one."""
        self.queue.drop_client(conn.cid)
        run = self._running
        if run is not None and run.client == conn.cid:
            run.cancel_event.set()
        conn.active.clear()
        conn.no_jobs.set()

    def _refuse_queued(self, job: Job, code: str, message: str) -> None:
        conn = self._conns.get(job.client)
        log.info("#%d %s %s: %s", job.client, code, job.id, message)
        if conn is not None:
            conn.post(pr.error_header(code, message, job.id))
            conn.job_finished(job.id)

    # ================================================================== the worker
    async def _dispatch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self.queue.get()
            conn = self._conns.get(job.client)
            if conn is None or job.cancelled():
                continue
            self._running, job.started_at = job, time.monotonic()
            self._idle.clear()
            try:
                frames, stems = await loop.run_in_executor(self._pool, self._worker.run, job)
            finally:
                self._running = None
                self._idle.set()
            for header, payload in frames:
                conn.post(header, payload)
            conn.job_finished(job.id)
            if stems is not None:
                self.jobs_done += 1
                if self.on_result is not None:
                    await loop.run_in_executor(self._pool, self._worker.notify, job, stems)


def _peer(writer: asyncio.StreamWriter) -> str:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return f"tcp {name[0]}:{name[1]}"
    return "unix"


async def _refuse(writer: asyncio.StreamWriter, code: str, message: str) -> None:
    writer.write(pr.encode_frame(pr.error_header(code, message)))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.drain(), 2.0)
    writer.close()
