"""Anti-entropy, the Trio shell of node/replication/sync.py's session: compare one tweet partition's bucket
digests with one peer, list the keys of the buckets that differ, pull what is newer there and push what is newer
here. Elections' catch-up (pull only) and streaming use the same session.

Rules:
1. The calls are made in the order the session returns them, each bounded by the RPC deadline and the session's
   limits (SYNC_BUCKETS_MAX buckets, GET_IDS_MAX ids, APPLY_RECORDS_MAX records per call).
2. A peer that cannot be reached raises MurmurError out of `sync_with` (a catch-up that fails loses its election);
   the background loop logs it and moves on.
3. The loop has a bounded rate: one (partition, peer) pair per ANTI_ENTROPY_INTERVAL_S, round robin over the pairs
   of the ring (listed again when the ring moves).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
import trio

from node.cluster import limits
from node.cluster.placement import Placement
from node.cluster.replicate import Caller
from node.errors import MurmurError
from node.replication import messages as m
from node.replication.sync import SyncRound, SyncSession
from node.shard import Record, Shard

log = structlog.get_logger("murmur.service")

Apply = Callable[[list[Record]], Awaitable[int]]  # this node's replica side (unfenced)


class AntiEntropy:
    def __init__(
        self, me: str, shard: Shard, placement: Placement, peers: Caller | None, is_up: Callable[[str], bool], apply: Apply
    ) -> None:
        self.shard, self.placement = shard, placement
        self.peers = peers
        self.is_up = is_up
        self.apply = apply
        self.synced_keys = 0  # keys pulled or pushed by catch-up and anti-entropy
        self.sync_round = SyncRound(me)  # anti-entropy's (partition, peer) round robin, listed again per ring

    async def catch_up_from(self, node: str, pid: int) -> None:
        """An election's catch-up: pull every key of partition `pid` that `node` holds newer (no push)."""
        await self.sync_with(node, *self.placement.ring.range_of(pid), False)

    async def sync_with(self, node: str, start: int, end: int, push: bool = True) -> int:
        """Anti-entropy for one tweet partition with one peer: compare bucket digests, list the keys of the
        buckets that differ, pull what is newer there (and push what is newer here). -> keys exchanged.
        Raises MurmurError when the peer cannot be reached (a catch-up that fails loses its election)."""
        assert self.peers is not None
        s = SyncSession(start, end, push, limits.SYNC_BUCKETS_MAX, limits.GET_IDS_MAX, limits.APPLY_RECORDS_MAX)
        theirs = (await self.peers.call(node, s.begin())).buckets
        for keys_req in s.on_digest(self.shard.digest(start, end), theirs):
            keys = (await self.peers.call(node, keys_req)).keys
            fetches, pushes = s.on_keys(dict(self.shard.keys(start, end, set(keys_req.buckets))), keys)
            for fetch in fetches:
                await self.apply((await self.peers.call(node, fetch)).records)
            for ids in pushes:
                await self.peers.call(node, m.ApplyReq(self.shard.records_for(ids)))
        if s.moved:
            self.synced_keys += s.moved
            log.info("synced", peer=node, start=start, end=end, keys=s.moved, buckets=s.buckets)
        return s.moved

    async def anti_entropy_loop(self) -> None:
        """Compare one tweet partition with one peer every interval, round robin, so that replicas converge
        even for data nobody reads (a bounded rate: a full pass takes partitions x interval)."""
        while True:
            await trio.sleep(limits.ANTI_ENTROPY_INTERVAL_S)
            await self.anti_entropy_step()

    async def anti_entropy_step(self) -> int:
        """Sync the next (partition, peer) pair of this node's round robin. -> keys exchanged."""
        pair = self.sync_round.next_pair(self.placement.ring, self.placement.n, self.is_up)
        if pair is None:
            return 0
        start, end, peer = pair
        try:
            return await self.sync_with(peer, start, end)
        except MurmurError as e:
            log.info("anti_entropy_failed", peer=peer, error=e.code)
            return 0
