"""The Trio shell of this node's partition elections: it feeds node/replication/election.py's ElectionCore and
carries out what it returns (promise here, ask the other replicas, catch up from the promisers). It decides
nothing itself, and runs at most one campaign per partition at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import trio

from node.errors import MurmurError, Unavailable
from node.replication import election as el
from node.replication import messages as m

log = structlog.get_logger("murmur.service")

PromiseHere = Callable[[int, int], Awaitable[m.PromiseResp]]  # (pid, epoch): this node's replica side
Call = Callable[[str, Any], Awaitable[Any]]  # (node, request) -> answer; raises MurmurError
CatchUpFrom = Callable[[str, int], Awaitable[None]]  # (promiser, pid): pull its newer keys; raises MurmurError


class Elector:
    def __init__(
        self,
        core: el.ElectionCore,
        promise_here: PromiseHere,
        call: Call,
        is_up: Callable[[str], bool],
        known_epoch: Callable[[int], int],
        catch_up_from: CatchUpFrom,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.core = core
        self.me = core.me
        self.promise_here = promise_here
        self.call = call
        self.is_up = is_up
        self.known_epoch = known_epoch
        self.catch_up_from = catch_up_from
        self.clock = clock
        self._locks: dict[int, trio.Lock] = {}  # one campaign per partition at a time

    async def ensure_elected(self, pid: int, replicas: tuple[str, ...]) -> int:
        """The epoch this node is elected for in partition `pid`, campaigning first when it is not.
        Raises Unavailable (or the error of its own promise) when it loses."""
        epoch = self.core.elected.get(pid)
        if epoch is not None:
            return epoch
        lock = self._locks.setdefault(pid, trio.Lock())
        async with lock:
            epoch = self.core.elected.get(pid)
            if epoch is None:
                epoch = await self._campaign(pid, replicas)
            return epoch

    async def _campaign(self, pid: int, replicas: tuple[str, ...]) -> int:
        core = self.core
        up = [n for n in replicas if n != self.me and self.is_up(n)]
        step = core.campaign(pid, replicas, up, self.known_epoch(pid), self.clock())
        try:
            while True:
                if isinstance(step, el.PromiseHere):
                    resp = await self.promise_here(step.pid, step.epoch)
                    step = core.on_promise(pid, step.epoch, self.me, resp, self.clock())
                elif isinstance(step, el.AskPromises):
                    step = await self._ask(step)
                elif isinstance(step, el.CatchUp):
                    step = await self._catch_up(step)
                elif isinstance(step, el.Won):
                    log.info("master_elected", partition=pid, epoch=step.epoch, promisers=list(step.promisers))
                    return step.epoch
                elif isinstance(step, el.Lost):
                    raise Unavailable(step.why)
                else:
                    raise AssertionError(f"partition {pid}: the election core stopped without a decision")
        finally:
            core.abandon(pid)

    async def _ask(self, step: el.AskPromises) -> el.Step:
        """PromiseReq to every node at once; the calls still out are cancelled once the core has decided."""
        decided: list[el.Step] = []
        async with trio.open_nursery() as nursery:

            async def one(node: str) -> None:
                req = m.PromiseReq(step.pid, step.epoch)
                try:
                    resp: m.PromiseResp | None = await self.call(node, req)
                except MurmurError as e:
                    log.info("call_failed", to=node, request=type(req).__name__, error=e.code)
                    resp = None
                s = self.core.on_promise(step.pid, step.epoch, node, resp, self.clock())
                if s is not None:
                    decided.append(s)
                    nursery.cancel_scope.cancel()

            for node in step.nodes:
                nursery.start_soon(one, node)
        return decided[0] if decided else None

    async def _catch_up(self, step: el.CatchUp) -> el.Step:
        decided: list[el.Step] = []
        async with trio.open_nursery() as nursery:

            async def one(node: str) -> None:
                try:
                    await self.catch_up_from(node, step.pid)
                    ok = True
                except MurmurError as e:
                    log.info("catch_up_failed", partition=step.pid, peer=node, error=e.code)
                    ok = False
                s = self.core.on_caught_up(step.pid, step.epoch, node, ok, self.clock())
                if s is not None:
                    decided.append(s)

            for node in step.nodes:
                nursery.start_soon(one, node)
        return decided[0] if decided else None
