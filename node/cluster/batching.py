"""Coalescing concurrent writes to one master into shared calls (group commit, one level up).

While a WriteReq to a master is in flight, the writes that arrive for that master wait and then go together in
the next call, so 64 clients posting one tweet each cost a few calls per round trip, not 64; the master then
replicates and logs them as one batch too. No background task: the writer that finds its lane idle leads: it
sends one batch from the head of the queue (its own ops among them, or it sends again), and on its way out hands
the lead to the first writer still waiting. Every wait is bounded by the caller's own deadline (its cancel
scope); a writer cancelled before its ops went out is taken off the queue; a batch holds at most `ops_max` ops.
A call without an answer fails every writer then waiting for that master too (without sending their ops).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from node.cluster import limits
from node.replication import messages as m

Send = Callable[[str, list[m.WriteOp]], Awaitable[list[m.WriteResult] | None]]


class _Waiter:
    __slots__ = ("done", "ops", "results", "turn")

    def __init__(self, ops: list[m.WriteOp]) -> None:
        self.ops = ops
        self.results: list[m.WriteResult] | None = None
        self.done = False
        self.turn = trio.Event()  # set when its results are in, or when it is to lead


class _Lane:
    __slots__ = ("busy", "queue")

    def __init__(self) -> None:
        self.queue: list[_Waiter] = []
        self.busy = False


class WriteBatcher:
    """`await submit(master, ops)` -> the master's results for `ops`, or None when the call got no answer."""

    def __init__(self, send: Send, ops_max: int = limits.WRITE_OPS_MAX) -> None:
        self._send = send
        self._ops_max = ops_max
        self._lanes: dict[str, _Lane] = {}

    async def submit(self, master: str, ops: list[m.WriteOp]) -> list[m.WriteResult] | None:
        lane = self._lanes.get(master)
        if lane is None:
            lane = self._lanes[master] = _Lane()
        me = _Waiter(ops)
        lane.queue.append(me)
        try:
            while not me.done:
                if lane.busy:
                    await me.turn.wait()
                    me.turn = trio.Event()
                    continue
                lane.busy = True
                try:
                    await self._send_one(master, lane)
                finally:
                    lane.busy = False
                    if lane.queue:
                        lane.queue[0].turn.set()  # the next writer waiting leads
        finally:
            if not me.done:
                if me in lane.queue:
                    lane.queue.remove(me)  # cancelled before its ops went out: nothing of it was sent
                if lane.queue and not lane.busy:
                    lane.queue[0].turn.set()
        return me.results

    async def _send_one(self, master: str, lane: _Lane) -> None:
        batch: list[_Waiter] = []
        count = 0
        while lane.queue and (not batch or count + len(lane.queue[0].ops) <= self._ops_max):
            w = lane.queue.pop(0)
            batch.append(w)
            count += len(w.ops)
        try:
            results = await self._send(master, [op for w in batch for op in w.ops])
        except BaseException:
            for w in batch:  # cancelled mid-call: the batch's fate is unknown to every writer in it
                w.done = True
                w.turn.set()
            raise
        if results is None:
            # No answer: the writers still queued for this master would each wait out one more call to it (a
            # paused master: one call timeout after another, 6 s for the third in line). Fail them now, unsent,
            # so their coordinators move on to the next replica at once.
            batch += lane.queue
            lane.queue.clear()
        pos = 0
        for w in batch:
            if results is not None:
                w.results = results[pos : pos + len(w.ops)]
            pos += len(w.ops)
            w.done = True
            w.turn.set()
