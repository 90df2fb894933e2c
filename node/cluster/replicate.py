"""Replication fan-out, the Trio shell that sends records to their replicas: `replicate` (a master's records to
every replica of their tweet partitions, fenced by its epochs) and `fan_out` (any per-node batches: index work,
OutboxDone). It decides nothing about what to send; the write path and the outbox driver do.

Rules:
1. Batches are at most APPLY_RECORDS_MAX records; every node is sent its batches in parallel; this node applies
   its own without the network. Each record is encoded once, for every replica and the WAL.
2. A node gossip holds down is not waited for: what it misses goes straight to its hints (bounded), as does what
   a failed send missed. A replica that refuses a fence has promised a newer master: this node steps down.
3. With `need` and `run` going, the answer comes as soon as every key has W acknowledgements of each of its
   replica sets; the sends still under way finish in run's nursery (at most STRAGGLERS_MAX at once; beyond that
   a fan-out waits for all its sends), so a slow or paused replica delays no write (CONTRACT §6).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
import structlog
import trio

from node.cluster import limits
from node.cluster.placement import Placement
from node.cluster.replica import Replica
from node.errors import MurmurError, NotOwner, Unavailable
from node.replication import messages as m
from node.replication.hints import HintStore
from node.replication.quorum import acked_by_every
from node.shard import DeleteTweet, Promise, PutTweet, Record, StreamedPostings, encode_record

log = structlog.get_logger("murmur.service")


class Caller(Protocol):
    async def call(self, node: str, req: Any, timeout_s: float = limits.RPC_TIMEOUT_S) -> Any: ...


class Replicator:
    def __init__(
        self,
        me: str,
        placement: Placement,
        w: int,
        replica: Replica,
        peers: Caller | None,
        is_up: Callable[[str], bool],
        hints: HintStore | None,
    ) -> None:
        self.me, self.placement, self.w = me, placement, w
        self.replica = replica
        self.peers = peers
        self.is_up = is_up
        self.hints = hints
        self._bg: trio.Nursery | None = None  # run()'s nursery: fan-out sends that outlive their write
        self._straggling = 0  # such sends under way (bounded by limits.STRAGGLERS_MAX)

    async def replicate(self, items: list[tuple[int, Record]], fences: dict[int, int]) -> set[int]:
        """Send each record to every replica of its tweet partition (this node included), fenced by this
        master's epochs; -> keys acked by W."""
        by_node: dict[str, list[tuple[int, Record]]] = {}
        node_pids: dict[str, set[int]] = {}
        need: dict[int, tuple[tuple[str, ...], ...]] = {}
        for j, (key, rec) in enumerate(items):
            if j and not j % limits.PLACE_EVERY:
                await trio.lowlevel.checkpoint()  # a big batch's grouping does not hold the node's searches up
            tid = rec_id(rec)
            pid = self.placement.tweet_partition(tid)[0]
            need[key] = sets = self.placement.tweet_write_sets(tid)
            for node in _union(sets):
                by_node.setdefault(node, []).append((key, rec))
                node_pids.setdefault(node, set()).add(pid)
        node_fences = {nd: [(p, fences[p]) for p in sorted(pids) if p in fences] for nd, pids in node_pids.items()}
        acks = await self.fan_out(by_node, node_fences, need)
        return {k for k, nodes in acks.items() if acked_by_every(nodes, need[k], self.w)}

    async def fan_out(
        self,
        by_node: dict[str, list[tuple[int, Record]]],
        fences: dict[str, list[tuple[int, int]]] | None = None,
        need: dict[int, tuple[tuple[str, ...], ...]] | None = None,
    ) -> dict[int, set[str]]:
        """Apply each node's records there (here, for this node), in bounded batches, all nodes in parallel.
        `fences`: per node, the (partition, epoch) of this master for the partitions of its records.
        -> key -> the nodes that acknowledged it (durably stored). A replica that refuses a fence has promised
        a newer master: this node stops ordering those partitions.

        A node gossip holds down is not waited for: what it misses goes straight to its hints. With `need` (key ->
        the replica sets it must reach W of each) and the service running, the answer comes as soon as every key
        has W acknowledgements; the sends still under way finish in the background (hinted if they fail), so a
        slow or paused replica delays no write (CONTRACT §6)."""
        acks: dict[int, set[str]] = {}
        enough = trio.Event()
        pending = [0]

        def satisfied() -> bool:
            return need is not None and all(acked_by_every(acks.get(k, set()), sets, self.w) for k, sets in need.items())

        encoded: dict[int, bytes] = {}  # id(record) -> its encoding: once for every replica and the WAL

        def enc(r: Record) -> bytes:
            b = encoded.get(id(r))
            if b is None:
                b = encoded[id(r)] = encode_record(r)
            return b

        async def send(node: str, batch: list[tuple[int, Record]]) -> None:
            recs = [r for _, r in batch]
            raws = [enc(r) for r in recs]
            fence = (fences or {}).get(node)
            try:
                if node == self.me:
                    await self.replica.apply(recs, fence, raws)
                elif not self.is_up(node):
                    raise Unavailable(f"{node} is down")
                else:
                    assert self.peers is not None
                    await self.peers.call(node, m.ApplyRaw([msgspec.Raw(b) for b in raws], fence or []))
            except MurmurError as e:
                log.warning("apply_failed", to=node, records=len(batch), error=e.code)
                if e.code == NotOwner.code:
                    for p, epoch in fence or ():
                        self.replica.step_down(p, epoch)
                elif node != self.me and self.hints is not None:
                    await self.hints.add(node, raws)  # bounded; replayed when it is up
                return
            else:
                for k, _ in batch:
                    acks.setdefault(k, set()).add(node)
            finally:
                pending[0] -= 1
                if not pending[0] or satisfied():
                    enough.set()

        batches = [
            (node, items[start : start + limits.APPLY_RECORDS_MAX])
            for node, items in by_node.items()
            for start in range(0, len(items), limits.APPLY_RECORDS_MAX)
        ]
        pending[0] = len(batches)
        bg = self._bg
        if need is None or bg is None or self._straggling + len(batches) > limits.STRAGGLERS_MAX:
            async with trio.open_nursery() as n:
                for node, batch in batches:
                    n.start_soon(send, node, batch)
            return acks
        for node, batch in batches:
            bg.start_soon(self._straggle, send, node, batch)
        if batches:
            await enough.wait()
        return {k: set(v) for k, v in acks.items()}

    async def _straggle(self, send: Callable[[str, list[tuple[int, Record]]], Awaitable[None]], node: str,
                        batch: list[tuple[int, Record]]) -> None:
        """One send of a fan-out in the service's own nursery: it may outlive the write that started it."""
        self._straggling += 1
        try:
            await send(node, batch)
        finally:
            self._straggling -= 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The background work: the sends of fan-outs that answered at W (see fan_out)."""
        async with trio.open_nursery() as n:
            self._bg = n
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._bg = None


def _union(sets: tuple[tuple[str, ...], ...]) -> list[str]:
    return list(dict.fromkeys(n for reps in sets for n in reps))


def rec_id(r: Record) -> int:
    """The tweet a record is about."""
    if isinstance(r, PutTweet):
        return r.tweet.id
    if isinstance(r, DeleteTweet):
        return r.id
    if isinstance(r, Promise | StreamedPostings):
        raise TypeError(f"a {type(r).__name__} names no tweet")
    return r.tweet_id
