"""The Ray engine: one actor per worker, each holding one loaded separator, on a running Ray
cluster (``address``) or on one started here.

A worker that dies (its process killed, its machine lost) is restarted by Ray and the song it
was on is sent again (``max_task_retries``); a song that kills its worker every time gives an
error record after :data:`TRIES` tries, and the others go on. The coordinator (this process)
writes every record, so a song is recorded once however often it was tried.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from engine.errors import StemtokError, install_hint
from engine.library.jobs import Job, Settings, open_worker, process_song, source_fields

TRIES = 3  # times a song is sent to a worker before it is recorded as failed


class SongWorker:
    """What each Ray actor is: a separator loaded once, then songs one at a time."""

    def __init__(self, settings: Settings, model_sha256: str) -> None:
        self.settings, self.error = settings, ""
        try:
            self.sep: Any = open_worker(settings, model_sha256)
        except StemtokError as exc:  # given back by ready(), as one line
            self.error = str(exc)

    def ready(self) -> str:
        """``""`` when the separator is loaded, else why not."""
        return self.error

    def pid(self) -> int:
        return os.getpid()

    def run(self, job: Job) -> dict[str, Any]:
        return process_song(self.sep, job, self.settings)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise StemtokError(f"--engine ray needs Ray ({install_hint('cluster')})") from None
    return ray


class RayExecutor:
    """``workers`` actors (default: one per CPU of the cluster, or per GPU with
    ``settings.device == "cuda"``) on the cluster at ``address`` (``None``: the one named by
    ``RAY_ADDRESS``, else a new local one with ``workers`` CPUs)."""

    def __init__(
        self,
        settings: Settings,
        model_sha256: str,
        workers: int | None = None,
        address: str | None = None,
    ) -> None:
        self.ray = ray = _import_ray()
        self.started = not ray.is_initialized()
        if self.started:
            self._init(address, workers)
        try:
            self._start_actors(settings, model_sha256, workers)
        except BaseException:
            self.close()
            raise

    def _start_actors(self, settings: Settings, model_sha256: str, workers: int | None) -> None:
        ray, gpu = self.ray, settings.device == "cuda"
        kind = "GPU" if gpu else "CPU"
        room = ray.cluster_resources().get(kind, 0)
        workers = int(room) if workers is None else workers
        if room < 1:
            raise StemtokError(f"the Ray cluster has no {kind}s for the workers")
        if workers > room:  # the others would wait for room forever
            raise StemtokError(f"--workers {workers}: the Ray cluster has room for {int(room)}")
        actor = ray.remote(
            num_cpus=0 if gpu else 1,
            num_gpus=1 if gpu else 0,
            max_restarts=-1,
            max_task_retries=TRIES - 1,
        )(SongWorker)
        self.actors = [actor.remote(settings, model_sha256) for _ in range(workers)]
        for error in ray.get([a.ready.remote() for a in self.actors]):
            if error:
                raise StemtokError(error)

    def _init(self, address: str | None, workers: int | None) -> None:
        local = address is None and not os.environ.get("RAY_ADDRESS")
        _check_reachable(address or os.environ.get("RAY_ADDRESS"))
        try:
            self.ray.init(
                address=address,
                num_cpus=(workers or os.cpu_count()) if local else None,
                include_dashboard=False if local else None,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise StemtokError(f"cannot reach the Ray cluster at {address}: {exc}") from None

    def pids(self) -> list[int]:
        """The process id of each worker (now)."""
        return list(self.ray.get([a.pid.remote() for a in self.actors]))

    def run(self, jobs: Sequence[Job]) -> Iterator[dict[str, Any]]:
        ray, pending, idle = self.ray, deque(jobs), list(self.actors)
        running: dict[Any, tuple[Job, Any]] = {}
        while pending or running:
            while idle and pending:
                actor, job = idle.pop(), pending.popleft()
                running[actor.run.remote(job)] = (job, actor)
            ready, _ = ray.wait(list(running), num_returns=1)
            job, actor = running.pop(ready[0])
            idle.append(actor)
            try:
                yield ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:
                yield _lost(job, f"its worker died {TRIES} times while separating it ({exc})")
            except ray.exceptions.RayTaskError as exc:
                yield _lost(job, f"internal error: {exc}")

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def _check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """A one-line error for a ``HOST:PORT`` (or ``ray://HOST:PORT``) that does not answer, where
    Ray itself would retry for minutes; ``auto`` and ``None`` are left to Ray."""
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise StemtokError(f"--address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise StemtokError(f"cannot reach the Ray cluster at {address} ({exc})") from None


def _lost(job: Job, why: str) -> dict[str, Any]:
    first = next((line for line in why.splitlines() if line.strip()), why)
    return source_fields(job) | {"status": "error", "error": first}
