"""Jobs and the fair queue that feeds the one engine.

The queue keeps a FIFO per connection and serves next the connection that was served least
recently (ties: the oldest head job), so a client that queues ten regions does not make another
client's single region wait behind all ten. It lives
on the event loop (not thread-safe); the worker thread only sees one :class:`Job` at a time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.bridge.protocol import SeparateRequest


@dataclass(eq=False)
class Job:
    """One region to separate. ``audio`` is ``[C, N]`` float32 at ``request.sample_rate``."""

    client: int
    request: SeparateRequest
    audio: Any
    post: Callable[[dict[str, Any], bytes], None]  # thread-safe: queue a frame to the client
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    @property
    def id(self) -> str:
        return self.request.id

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class FairQueue:
    """Least-recently-served connection first, FIFO within one."""

    def __init__(self) -> None:
        self._by_client: dict[int, deque[Job]] = {}
        self._served: dict[int, int] = {}  # client -> turn it was last served
        self._turn = 0
        self._wakeup = asyncio.Event()
        self.bytes = 0

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_client.values())

    def count(self, client: int) -> int:
        return len(self._by_client.get(client, ()))

    def put(self, job: Job) -> int:
        """Queue ``job``; returns how many jobs are ahead of it in the queue."""
        ahead = len(self)
        self._by_client.setdefault(job.client, deque()).append(job)
        self.bytes += job.request.payload_bytes
        self._wakeup.set()
        return ahead

    def pop(self) -> Job | None:
        """The next job: the head of the client that was served least recently."""
        if not self._by_client:
            return None
        client = min(
            self._by_client,
            key=lambda c: (self._served.get(c, -1), self._by_client[c][0].queued_at),
        )
        job = self._by_client[client].popleft()
        self._turn += 1
        self._served[client] = self._turn
        self._forget(client, job)
        return job

    async def get(self) -> Job:
        while True:
            job = self.pop()
            if job is not None:
                return job
            self._wakeup.clear()
            await self._wakeup.wait()

    def remove(self, client: int, rid: str) -> Job | None:
        q = self._by_client.get(client)
        for job in q or ():
            if job.id == rid:
                q.remove(job)  # type: ignore[union-attr]
                self._forget(client, job)
                return job
        return None

    def drop_client(self, client: int) -> list[Job]:
        jobs = list(self._by_client.pop(client, ()))
        self._served.pop(client, None)
        self.bytes -= sum(j.request.payload_bytes for j in jobs)
        return jobs

    def drain(self) -> list[Job]:
        jobs = [j for q in self._by_client.values() for j in q]
        self._by_client.clear()
        self.bytes = 0
        return jobs

    def _forget(self, client: int, job: Job) -> None:
        self.bytes -= job.request.payload_bytes
        if not self._by_client[client]:
            del self._by_client[client]
