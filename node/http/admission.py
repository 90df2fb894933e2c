"""Bounded admission for one kind of request (searches): at most `inflight_max` run, at most `queue_max` wait,
none waits longer than `queue_timeout_s`; beyond that the request is shed with 429 overloaded before any work,
as Elasticsearch's bounded thread-pool queues answer. The thin Trio shell of one semaphore and one counter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from node.errors import Overloaded

RETRY_AFTER_S = 1  # what a shed request is told to wait (seconds, the Retry-After header)


class Admission:
    def __init__(self, kind: str, inflight_max: int, queue_max: int, queue_timeout_s: float) -> None:
        self.kind = kind
        self._slots = trio.Semaphore(inflight_max)
        self.queue_max = queue_max
        self.queue_timeout_s = queue_timeout_s
        self.waiting = 0
        self.shed = 0  # requests answered 429 so far (for tests and metrics)

    @asynccontextmanager
    async def enter(self) -> AsyncIterator[None]:
        """Run the block within the bounds, or raise Overloaded (nothing was done)."""
        if self._slots.value == 0 and self.waiting >= self.queue_max:
            self._shed(f"{self.waiting} {self.kind}es are already waiting")
        acquired = False
        self.waiting += 1
        try:
            with trio.move_on_after(self.queue_timeout_s):
                await self._slots.acquire()
                acquired = True
        finally:
            self.waiting -= 1
        if not acquired:
            self._shed(f"no {self.kind} place freed within {self.queue_timeout_s} s")
        try:
            yield
        finally:
            self._slots.release()

    def _shed(self, why: str) -> None:
        self.shed += 1
        raise Overloaded(f"this node is at its {self.kind} limit ({why}); retry later", retry_after_s=RETRY_AFTER_S)
