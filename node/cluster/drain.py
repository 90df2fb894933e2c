"""The topology drain: which topology version this node's writes and index drives started under, so that an
install can wait for the older ones to end before a stream reads what they wrote (node/cluster/rebalance.py).

Rules:
1. Every write and index drive is counted under the version current when it starts (`in_flight`), until it ends.
2. `drain_before(v)` returns once no count older than `v` is left, or False after its timeout: it never waits
   unbounded, and a write under the current version never holds it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


class Drain:
    def __init__(self) -> None:
        self.version = 0  # the topology version this node uses now
        self.inflight: dict[int, int] = {}  # topology version -> writes/index drives started under it, running
        self._drained = trio.Event()  # set (and replaced) whenever a version's count drops to zero

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a write or index drive under the current topology version until it ends (see drain_before)."""
        v = self.version
        self.inflight[v] = self.inflight.get(v, 0) + 1
        try:
            yield
        finally:
            self.inflight[v] -= 1
            if not self.inflight[v]:
                del self.inflight[v]
                self._drained.set()
                self._drained = trio.Event()

    async def drain_before(self, version: int, timeout_s: float) -> bool:
        """Wait until every write and index drive started under a topology older than `version` has ended.
        -> False if some still run after timeout_s."""
        with trio.move_on_after(timeout_s):
            while True:
                ev = self._drained
                if not any(v < version for v in self.inflight):
                    return True
                await ev.wait()
        return False
