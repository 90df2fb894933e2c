"""Admission between a node's searches and its writes, on its one event loop (issue 9 §4: one kind must not
starve the other).

The write lane: every chunk of records that a write applies (limits.YIELD_EVERY of them) runs under
`async with lane:`, one chunk at a time on the node, so a search step waits behind at most one chunk, not one per
batch in flight. Searches go first: while a search is under way on this node (`with lane.searching():`, from its
parsed request to its answer), a writer waits before its next chunk until no search is left, but at most
SEARCH_FIRST_MAX_S per chunk, so that a stream of searches slows the writes and never stops them, and its chunks
are SEARCH_CHUNK records instead of YIELD_EVERY (`chunk`). A search's call from another node's search marks a search
here too (node/transport/server.py's `urgent` hook). Trio runs ready tasks first come first served; this is the only
priority a node has.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import trio

SEARCH_FIRST_MAX_S = 0.025  # a writer's wait for searches before one chunk, at most
# Records (or ops) of one chunk while a search is under way on the node (else limits.YIELD_EVERY): a search's every
# step waits for the chunk running when it became ready. bench_scale --limit 300000, chunks of 16 against 64 for
# every write: searches during the load p50 91 / 110 -> 44 / 42 ms, p99 301 / 321 -> 246 / 233, and the load
# 4,564 / 3,973 -> 3,515 / 3,539 tweets/s; hence small chunks only while searches wait.
SEARCH_CHUNK = 16


class WriteLane:
    def __init__(self, search_first_max_s: float = SEARCH_FIRST_MAX_S) -> None:
        self.search_first_max_s = search_first_max_s
        self.searches = 0  # under way on this node now
        self.deferred = 0  # chunks that waited for searches (tests read it)
        self._lock = trio.Lock()
        self._no_search = trio.Event()
        self._no_search.set()

    @contextmanager
    def searching(self) -> Iterator[None]:
        """Mark a search under way: writers hold their next chunk back until it is done (bounded)."""
        if not self.searches:
            self._no_search = trio.Event()
        self.searches += 1
        try:
            yield
        finally:
            self.searches -= 1
            if not self.searches:
                self._no_search.set()

    def chunk(self, full: int) -> int:
        """How many records the writer that holds the lane handles before it lets go: `full`, or SEARCH_CHUNK while a
        search is under way."""
        return min(full, SEARCH_CHUNK) if self.searches else full

    async def __aenter__(self) -> None:
        if self.searches:
            self.deferred += 1
            with trio.move_on_after(self.search_first_max_s):
                await self._no_search.wait()
        await self._lock.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()
