"""The master side of a write, the Trio shell around node/replication/prepare.py: get elected for the ops'
partitions, check each op against this node's copy and stamp its version, replicate to W replicas under this
master's fences, then drive the index work (the outbox) to W replicas of every term partition before it answers.

Rules:
1. A node that does not replicate a partition, or loses its election, answers its ops with that error; a
   read-only master changes nothing (checked after the elections, which await).
2. Each op's check and its apply stay together on the write lane (no await between them), so the next op of the
   batch sees it.
3. A definite answer that writes nothing (not found, deleted, conflict) is given only once W replicas still
   accept this master's epoch; otherwise it is a 503 (a deposed master's copy may lack a newer master's writes).
4. An op is acknowledged only when W replicas hold it and its index work is done; otherwise it is a 503, safe to
   retry (versions make retries idempotent). An op refused for a stale epoch makes this node step down and win
   the partition again (with its catch-up), then it is retried once.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from node.cluster import limits
from node.cluster.drain import Drain
from node.cluster.outbox_driver import EnsureElected, OutboxDriver
from node.cluster.placement import Placement
from node.cluster.replica import Replica
from node.cluster.replicate import Caller, Replicator, rec_id
from node.errors import Conflict, Deleted, MurmurError, NotFound, NotOwner, StaleEpoch, Unavailable
from node.replication import election as el
from node.replication import messages as m
from node.replication.prepare import Versions, prepare_write
from node.shard import Record, Shard

_DEFINITE = (NotFound.code, Deleted.code, Conflict.code)  # answers that write nothing: confirmed with W first


class WritePath:
    def __init__(
        self,
        me: str,
        shard: Shard,
        placement: Placement,
        w: int,
        clock_ms: Callable[[], int],
        replica: Replica,
        election: el.ElectionCore,
        ensure_elected: EnsureElected,
        versions: Versions,
        replicator: Replicator,
        driver: OutboxDriver,
        drain: Drain,
        peers: Caller | None,
        is_up: Callable[[str], bool],
    ) -> None:
        """`versions`: the versions this node stamps as an elected master."""
        self.me, self.shard, self.placement, self.w, self.clock_ms = me, shard, placement, w, clock_ms
        self.replica = replica
        self.election = election
        self.ensure_elected = ensure_elected
        self.versions = versions
        self.replicator = replicator
        self.driver = driver
        self.drain = drain
        self.peers = peers
        self.is_up = is_up

    async def write(self, ops: list[m.WriteOp]) -> list[m.WriteResult]:
        if len(ops) > limits.WRITE_OPS_MAX:
            raise MurmurError("too many writes in one request")
        with self.drain.in_flight():
            results = await self._write(ops)
            # A tweet written in a newer epoch than this node's mastership: another node won the partition while
            # this one was away and still believed itself master. Step down, win it again (catching up), retry.
            again = [k for k, r in enumerate(results) if r.code == StaleEpoch.code]
            if again:
                for k in again:
                    pid = self.placement.tweet_partition(ops[k].id)[0]
                    self.replica.step_down(pid, self.election.elected.get(pid, 0))
                for k, r in zip(again, await self._write([ops[k] for k in again]), strict=True):
                    results[k] = r if r.code != StaleEpoch.code else m.WriteResult("error", code=Unavailable.code, message=r.message)
            return results

    async def _write(self, ops: list[m.WriteOp]) -> list[m.WriteResult]:
        results: list[m.WriteResult | None] = [None] * len(ops)
        parts = []
        for start in range(0, len(ops), limits.PLACE_EVERY):
            if start:
                await trio.lowlevel.checkpoint()
            parts += [self.placement.tweet_partition(op.id) for op in ops[start : start + limits.PLACE_EVERY]]
        epochs: dict[int, int] = {}
        failed: dict[int, MurmurError] = {}

        async def elect(pid: int, replicas: tuple[str, ...]) -> None:
            try:
                epochs[pid] = await self.ensure_elected(pid, replicas)
            except MurmurError as e:
                failed[pid] = e

        campaign: dict[int, tuple[str, ...]] = {}
        elected = self.election.elected
        for pid, replicas in dict(parts).items():
            if self.me not in replicas:
                failed[pid] = NotOwner(f"{self.me} does not replicate partition {pid}")
            elif (epoch := elected.get(pid)) is not None:
                epochs[pid] = epoch  # what ensure_elected answers at once: no task for it (most writes)
            else:
                campaign[pid] = replicas
        if campaign:
            async with trio.open_nursery() as n:
                for pid, replicas in campaign.items():
                    n.start_soon(elect, pid, replicas)
        # A read-only master changes nothing (its coordinator tries the next replica). Checked after the awaits
        # above: the mode may have changed during the elections. Should it change during the replication below,
        # this node's copy is in memory only; the answer then counts the other replicas' durable copies, and an
        # unacknowledged write may land (CONTRACT §2: a 503 is safe to retry, versions make retries idempotent).
        self.replica.mode.check()
        now = self.clock_ms()
        pending: list[tuple[int, Record]] = []
        fences: dict[int, int] = {}
        lane = self.replica.lane
        start = 0
        while start < len(ops):
            async with lane:  # between chunks of ops: each op's check and apply stay together
                end = min(len(ops), start + lane.chunk(limits.YIELD_EVERY))
                for i in range(start, end):
                    op = ops[i]
                    pid = parts[i][0]
                    if pid in failed:
                        e = failed[pid]
                        results[i] = m.WriteResult("error", code=e.code, message=e.message, field=e.field)
                        continue
                    try:
                        rec, res = prepare_write(
                            self.shard, op, now, epochs[pid], self.versions, self.replica.local_index
                        )
                    except MurmurError as e:
                        results[i] = m.WriteResult("error", code=e.code, message=e.message, field=e.field)
                        continue
                    results[i] = res
                    if rec is not None:
                        self.replica.apply_one(rec, now)  # visible to the next op's checks before any await
                        pending.append((i, rec))
                        fences[pid] = epochs[pid]
            start = end
        unconfirmed = {
            parts[i][0] for i, r in enumerate(results) if r is not None and r.code in _DEFINITE
        }
        if unconfirmed:
            lost = await self._confirm({p: epochs[p] for p in unconfirmed})
            for i, r in enumerate(results):
                if r is not None and r.code in _DEFINITE and parts[i][0] in lost:
                    results[i] = m.WriteResult("error", code="unavailable", message="mastership not confirmed; retry")
        writing = self.driver.writing
        mine = {rec_id(r) for _, r in pending} - writing
        writing |= mine
        try:
            acked = await self.replicator.replicate(pending, fences)
            ids = {rec_id(r) for i, r in pending if i in acked}
            indexed = await self.driver.drive_outbox(ids)
        finally:
            writing -= mine
        for i, rec in pending:
            tid = rec_id(rec)
            if i not in acked or (tid in self.shard.outbox and tid not in indexed):
                results[i] = m.WriteResult(
                    "error", code="unavailable", message=f"tweet {tid}: fewer than W={self.w} copies answered"
                )
        return [r if r is not None else m.WriteResult("error", code="internal") for r in results]

    async def _confirm(self, fences: dict[int, int]) -> set[int]:
        """Before a definite answer that writes nothing (not found, conflict), check that W replicas (this node
        included) still accept this master's epoch: a deposed master's copy may lack a newer master's writes.
        -> the partitions not confirmed."""
        lost: set[int] = set()

        async def one(pid: int, epoch: int) -> None:
            replicas = self.placement.ring.preference_list(pid, self.placement.n)
            others = [n for n in replicas if n != self.me and self.is_up(n)]
            others.sort(key=lambda n: self._suspect(n))  # a replica gossip suspects is asked last
            acks = 1
            for node in others:  # sequential: a confirmation is rare (error answers only) and needs W - 1 acks
                if acks >= self.w:
                    break
                try:
                    assert self.peers is not None
                    await self.peers.call(node, m.ApplyReq([], [(pid, epoch)]), limits.REPLICA_CALL_TIMEOUT_S)
                    acks += 1
                except MurmurError as e:
                    if e.code == NotOwner.code:
                        self.replica.step_down(pid, epoch)
            if acks < self.w:
                lost.add(pid)

        async with trio.open_nursery() as n:
            for pid, epoch in fences.items():
                n.start_soon(one, pid, epoch)
        return lost

    def _suspect(self, node: str) -> bool:
        """Whether gossip suspects `node` (still routed to, but asked last where another will do)."""
        state: dict[str, str] = getattr(self.peers, "state", None) or {}
        return state.get(node, "alive") != "alive"

