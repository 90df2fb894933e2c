"""The outbox driver, the Trio shell of node/replication/outbox.py's planner: it brings the index work of tweet
versions (the shard's outbox) to W replicas of every term partition, for the write path at once and in the
background for what is left over (a crash mid-write, W not reached then).

Rules:
1. An entry is driven by one task at a time; the others wait for it (bounded by the RPC deadline). An entry a
   write in flight will drive itself (`writing`) is left to that write.
2. In the background, only an elected master drives index work, and only for a version it has just replicated
   to W copies under its fence (the write path does the same), so every posting ever applied belongs to a
   version W replicas held in a live epoch (issue 11 §0b). Any other replica hands an entry it kept past the
   grace to the acting node (the first replica up).
3. A drive is counted under its topology version (node/cluster/drain.py) until it ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
import trio

from node.cluster import limits
from node.cluster.drain import Drain
from node.cluster.placement import Placement
from node.cluster.replicate import Caller, Replicator, rec_id
from node.errors import MurmurError, Unavailable
from node.replication import messages as m
from node.replication import outbox as ob
from node.shard import OutboxEntry, Shard

log = structlog.get_logger("murmur.service")

EnsureElected = Callable[[int, tuple[str, ...]], Awaitable[int]]  # (pid, replicas) -> epoch; raises MurmurError


class OutboxDriver:
    def __init__(
        self,
        me: str,
        shard: Shard,
        placement: Placement,
        w: int,
        replicator: Replicator,
        ensure_elected: EnsureElected,
        drain: Drain,
        peers: Caller | None,
        is_up: Callable[[str], bool],
    ) -> None:
        self.me, self.shard, self.placement, self.w = me, shard, placement, w
        self.replicator = replicator
        self.ensure_elected = ensure_elected
        self.drain = drain
        self.peers = peers
        self.is_up = is_up
        self.planner = ob.OutboxPlanner(
            me, limits.OUTBOX_REPLICA_GRACE_S, limits.OUTBOX_BATCH_MAX, limits.OUTBOX_BATCH_MAX * 4
        )
        self._driving: dict[int, trio.Event] = {}  # outbox entries being driven now -> set when that ends
        self.writing: set[int] = set()  # tweets of writes in flight: their own write drives their outbox

    async def drive_outbox(self, tweet_ids: set[int]) -> set[int]:
        """Bring the index work of these tweets to W replicas of each term partition. -> ids now done.
        Entries another task is driving are waited for (bounded by the RPC deadline), not driven twice."""
        others = [self._driving[i] for i in tweet_ids if i in self._driving]
        entries = [self.shard.outbox[i] for i in tweet_ids if i in self.shard.outbox and i not in self._driving]
        done_ids = await self._drive(entries) if entries else set()
        with trio.move_on_after(limits.RPC_TIMEOUT_S):
            for ev in others:
                await ev.wait()
        return done_ids | {i for i in tweet_ids if i not in self.shard.outbox}

    async def _drive(self, entries: list[OutboxEntry]) -> set[int]:
        with self.drain.in_flight():
            return await self._drive_entries(entries)

    async def _drive_entries(self, entries: list[OutboxEntry]) -> set[int]:
        ev = trio.Event()
        for e in entries:
            self._driving[e.tweet_id] = ev
        try:
            by_node, need = ob.plan_drive(entries, self.placement, self.shard.store.never_edited)
            acked_by = await self.replicator.fan_out(by_node, None, need)
            done = ob.done_entries(entries, acked_by, need, self.w)
            if done:
                await self._finish(done)
            return {e.tweet_id for e in done}
        finally:
            for e in entries:
                del self._driving[e.tweet_id]
            ev.set()

    async def _finish(self, done: list[OutboxEntry]) -> None:
        """Record OutboxDone here, durably, and tell the other replicas of each tweet (best effort)."""
        by_node, need = ob.plan_done(done, self.placement)
        await self.replicator.fan_out(by_node, None, need)  # the write does not wait for a slow replica's copy of this

    async def outbox_loop(self) -> None:
        """Finish index work left over (a crash mid-write, or W not reached then) of partitions this node is acting for."""
        while True:
            await trio.sleep(limits.OUTBOX_SCAN_INTERVAL_S)
            await self.drive_pending()

    async def drive_pending(self) -> int:
        """One pass of the outbox driver. -> entries completed.

        Only an elected master drives index work, and only for a version it has just replicated to W copies under
        its fence (the write path does the same: it drives only what W acknowledged). So every posting ever applied
        belongs to a version W replicas held in a live epoch, which any later master's catch-up brings back, and
        that master's removal set covers its words (issue 11 §0b: an unacknowledged edit's leftover work, driven
        after a newer master's edit, left its words matching for good). The acting node (the first live replica)
        gets elected for the partition first when it must. A replica that still holds an entry after
        OUTBOX_REPLICA_GRACE_S (it missed the OutboxDone, or the master that had the work died) hands it to the
        acting node, whose copy merges it (node/shard.py) or, being newer, supersedes it."""
        due = self.planner.due(
            self.shard.outbox, lambda i: i in self._driving or i in self.writing, self.acting_of,
            lambda i: self.placement.tweet_partition(i)[0], trio.current_time(),
        )
        done = 0
        for pid, ids in due.mine.items():
            done += len(await self._drive_as_elected(pid, ids))
        for node, ids in due.hand.items():
            recs = self.shard.records_for(ids[: limits.APPLY_RECORDS_MAX])
            try:
                assert self.peers is not None
                await self.peers.call(node, m.ApplyReq(recs))
            except MurmurError as e:
                log.info("outbox_handover_failed", to=node, entries=len(recs), error=e.code)
        if done:
            log.info("outbox_driven", entries=sum(map(len, due.mine.values())), done=done)
        return done

    async def _drive_as_elected(self, pid: int, ids: list[int]) -> set[int]:
        """Get (or stay) elected for partition `pid`, replicate these tweets' records to W copies under its fence,
        then drive their index work. -> ids done."""
        try:
            epoch = await self.ensure_elected(pid, self.placement.tweet_partition(ids[0])[1])
        except MurmurError as e:
            log.info("outbox_master_unavailable", partition=pid, error=e.code)
            return set()
        with self.drain.in_flight():
            recs = self.shard.records_for(ids)
            acked = await self.replicator.replicate(list(enumerate(recs)), {pid: epoch})
            try:
                return await self.drive_outbox({rec_id(recs[k]) for k in acked})
            except Unavailable:
                return set()

    def acting_of(self, tweet_id: int) -> str | None:
        """The acting node of the tweet's partition: the first replica that is up as this node sees it (where
        writes go; it gets elected when it is not)."""
        return next((n for n in self.placement.tweet(tweet_id)[1] if n == self.me or self.is_up(n)), None)
