"""The worker side of the bridge: one job through the engine, on the worker thread.

::

    job ─ engine.separate(audio [C, N], rate, stems, mode, seed, progress, cancel)
        ├─ stems {name: [C, N]} ─ frames: stem x S (interleaved f32le), done
        └─ Cancelled / StemtokError / anything else ─ one error frame: cancelled|shutdown,
           bad_request, internal
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from app.bridge import protocol as pr
from app.bridge.jobs import Job
from engine.errors import StemtokError
from engine.runtime.separator import Separator

log = logging.getLogger("stemtok.bridge")
OnResult = Callable[[dict[str, Any], Mapping[str, np.ndarray], int], None]
Frames = list[tuple[dict[str, Any], bytes]]
Outcome = tuple[Frames, Mapping[str, np.ndarray] | None]  # frames to send, stems on success


class Worker:
    """Runs jobs on ``engine`` (call from one thread at a time: the engine is not shared)."""

    def __init__(
        self,
        engine: Separator,
        progress_interval: float,
        on_result: OnResult | None,
        stopping: Callable[[], bool],
    ) -> None:
        self.engine, self.progress_interval = engine, progress_interval
        self.on_result, self.stopping = on_result, stopping

    def run(self, job: Job) -> Outcome:
        """Separate one job -> (frames to send, stems or None)."""
        r = job.request
        try:
            stems = self.engine.separate(
                job.audio,
                r.sample_rate,
                stems=list(r.stems),
                mode=r.mode,
                seed=r.seed,
                progress=self._progress(job),
                cancel=job.cancelled,
            )
            if job.cancelled():
                raise _Cancelled
            frames = [
                (
                    pr.stem_header(r.id, n, r.sample_rate, r.channels, r.frames),
                    _encode_pcm(stems[n], r),
                )
                for n in r.stems
            ]
        except Exception as exc:
            return [self._failure(job, exc)], None
        started = job.started_at if job.started_at is not None else job.queued_at
        took, waited = time.monotonic() - started, started - job.queued_at
        log.info("#%d %s done in %.2f s (waited %.2f s)", job.client, r.id, took, waited)
        done = {"type": "done", "id": r.id, "seconds": round(took, 4), "queued": round(waited, 4)}
        return [*frames, (done, b"")], stems

    def _failure(self, job: Job, exc: Exception) -> tuple[dict[str, Any], bytes]:
        if job.cancelled():
            code, message = pr.CANCELLED, "cancelled"
            if self.stopping():
                code, message = pr.SHUTDOWN, "cancelled: the server is stopping"
        elif isinstance(exc, StemtokError):
            code, message = pr.BAD_REQUEST, str(exc)
        else:
            log.exception("#%d %s: engine failed", job.client, job.id)
            code, message = pr.INTERNAL, f"{type(exc).__name__}: {exc}"[:200]
        log.info("#%d %s %s: %s", job.client, job.id, code, message)
        return pr.error_header(code, message, job.id), b""

    def _progress(self, job: Job) -> Callable[[float], None]:
        last = [0.0, -1]  # time of the last frame, its `done`
        total, every = job.request.frames, self.progress_interval

        def report(fraction: float) -> None:
            now, done = time.monotonic(), int(min(max(fraction, 0.0), 1.0) * total)
            if done != last[1] and (now - last[0] >= every or done == total):
                last[:] = [now, done]
                job.post({"type": "progress", "id": job.id, "done": done, "total": total}, b"")

        return report

    def notify(self, job: Job, stems: Mapping[str, np.ndarray]) -> None:
        assert self.on_result is not None
        try:
            self.on_result(dict(job.request.header), stems, job.request.sample_rate)
        except Exception:
            log.exception("on_result callback failed for %s", job.id)


class _Cancelled(Exception):
    """The job was cancelled while the engine ignored the request."""


def _encode_pcm(x: np.ndarray, r: pr.SeparateRequest) -> bytes:
    """Stem ``[C, N]`` -> interleaved f32le bytes (checked against the request's shape)."""
    a = np.asarray(x)
    if a.shape != (r.channels, r.frames):
        raise RuntimeError(f"engine returned shape {a.shape}, expected {(r.channels, r.frames)}")
    return np.ascontiguousarray(a.T, dtype="<f4").tobytes()
