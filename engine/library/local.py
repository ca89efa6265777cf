"""The local engine: a pool of worker processes on this machine, each holding one loaded
separator for the whole run."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from engine.errors import StemtokError
from engine.library.jobs import Job, Settings, open_worker, process_song

_worker: dict[str, Any] = {}  # this worker process's separator and settings


def _start(settings: Settings, model_sha256: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    _worker["settings"] = settings
    try:
        _worker["sep"] = open_worker(settings, model_sha256)
    except StemtokError as exc:  # reported with the first song, as one line
        _worker["error"] = str(exc)


def _song(job: Job) -> dict[str, Any]:
    if "error" in _worker:
        raise StemtokError(_worker["error"])
    return process_song(_worker["sep"], job, _worker["settings"])


class LocalExecutor:
    """``workers`` processes (started fresh, not forked, so no state of the caller leaks in)."""

    def __init__(self, settings: Settings, model_sha256: str, workers: int) -> None:
        if workers < 1:
            raise StemtokError(f"--workers must be at least 1, not {workers}")
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(settings, model_sha256),
        )

    def run(self, jobs: Sequence[Job]) -> Iterator[dict[str, Any]]:
        futures = [self.pool.submit(_song, job) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BrokenProcessPool:
            raise StemtokError(
                "a worker process died; run the same command again to resume (finished songs "
                "are kept)"
            ) from None
        except BaseException:  # Ctrl-C, or the caller stopped: the songs in flight are dropped
            self._stop_workers()
            raise
        finally:
            for future in futures:
                future.cancel()

    def _stop_workers(self) -> None:
        """End the worker processes now (their unfinished songs leave only hidden folders)."""
        for process in list(getattr(self.pool, "_processes", {}).values()):
            process.terminate()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
