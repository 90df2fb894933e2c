"""The node side of the cluster: what a node does for its peers (and for itself, without the network). This file
is the entry point: `NodeService` builds the parts from the collaborators it is given and dispatches the RPC
messages to them; `node_handler` adds the topology messages (the keeper's) to make this node's one dispatch.

Roles: a replica stores records durably and applies them and answers reads (node/cluster/replica.py); the master
of a tweet partition orders its writes (node/cluster/writes.py): it checks them against its copy, stamps
versions, replicates to the partition's replicas (W acknowledgements, node/cluster/replicate.py), then drives the
index work (the outbox, node/cluster/outbox_driver.py) to W replicas of every term partition before it answers.
The outbox is durable with the tweet, so work interrupted by a crash is finished by the background driver after
restart. Anti-entropy (node/cluster/anti_entropy.py) compares a partition's bucket digests with one peer and
exchanges what differs; streaming (node/cluster/streaming.py) moves ranges to a gaining node; the drain
(node/cluster/drain.py) lets a topology install wait for the writes started under older versions.

Mastership is earned per partition, not configured: the node a write is routed to (the partition's acting
node: the first of its preference list that is up) must be elected first (node/replication/election.py, carried
out by node/cluster/elector.py: promises, catch-up from the promisers) and keeps it in memory only, so a restarted
or outvoted node always has to win again. Roles: `preferred`, `acting`, `elected`, as election.py defines them.

Only a node of this node's ring (either ring while it moves) may win or use a mastership here: a node with
another idea of the ring (a misconfigured one) gets 503s, not acknowledgements nobody can read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from node.cluster import limits
from node.cluster.anti_entropy import AntiEntropy
from node.cluster.drain import Drain
from node.cluster.elector import Elector
from node.cluster.outbox_driver import OutboxDriver
from node.cluster.placement import Placement
from node.cluster.replica import Log, Replica, indexes_locally
from node.cluster.replicate import Caller, Replicator
from node.cluster.streaming import Streaming
from node.cluster.writes import WritePath
from node.errors import InvalidRequest, MurmurError, NotOwner
from node.replication import election as el
from node.replication import messages as m
from node.replication.hints import HintStore
from node.replication.prepare import Versions
from node.shard import Shard, decode_record
from node.storage.mode import StorageMode

Handler = Callable[[Any, str], Awaitable[Any]]  # (request, calling node) -> answer; raises MurmurError
TOPOLOGY_MESSAGES = (m.TopologyReq, m.InstallReq, m.StreamReq)  # the keeper's (node/cluster/rebalance.py)


class TopologyHandler(Protocol):
    async def handle(self, req: Any) -> Any: ...


class NodeService:
    def __init__(
        self,
        me: str,
        shard: Shard,
        wal: Log,
        placement: Placement,
        w: int,
        clock_ms: Callable[[], int],
        mode: StorageMode | None = None,
        *,
        peers: Caller | None = None,
        hints: HintStore | None = None,
    ) -> None:
        """`peers`: calls to the other nodes and gossip's view of them (its `is_up` and `state`, when it has
        them; None: a service that never calls out, as some unit tests use). `hints`: what a down replica missed,
        replayed later (None: nothing is hinted). `mode`: whether `wal` can persist now (a read-only node refuses
        writes with 503 and changes nothing; node/storage/mode.py)."""
        self.me, self.shard, self.placement, self.w = me, shard, placement, w
        self.mode = mode if mode is not None else StorageMode(me)
        self.peers = peers
        self.hints = hints
        self.is_up: Callable[[str], bool] = getattr(peers, "is_up", lambda node: True)  # gossip's view
        self.election = el.ElectionCore(me, w, limits.ELECTION_ATTEMPTS_MAX)  # partitions this node is elected for
        self.versions = Versions(shard.max_version)  # the versions this node stamps as an elected master
        self.drain = Drain()
        self.replica = Replica(shard, wal, self.mode, self.election, clock_ms, indexes_locally(placement))
        self.anti_entropy = AntiEntropy(me, shard, placement, peers, self.is_up, self.replica.apply)
        self.elector = Elector(
            self.election, self.replica.promise, self._call, self.is_up,
            lambda pid: el.known_epoch(self.shard, pid), self.anti_entropy.catch_up_from,
        )
        self.replicator = Replicator(me, placement, w, self.replica, peers, self.is_up, hints)
        self.driver = OutboxDriver(
            me, shard, placement, w, self.replicator, self.elector.ensure_elected, self.drain, peers, self.is_up
        )
        self.writes = WritePath(
            me, shard, placement, w, clock_ms, self.replica, self.election, self.elector.ensure_elected,
            self.versions, self.replicator, self.driver, self.drain, peers, self.is_up,
        )
        self.streaming = Streaming(
            me, shard, placement, w, peers, self.is_up, self.anti_entropy.sync_with, self.replica.apply
        )
        # The entry points other modules and tests use, carried out by the part each belongs to.
        self.apply, self.promise, self.get = self.replica.apply, self.replica.promise, self.replica.get
        self.window, self.probe, self.probe_unsure = self.replica.window, self.replica.probe, self.replica.probe_unsure
        self.query, self.local_window, self.query_unsure = (
            self.replica.query, self.replica.local_window, self.replica.query_unsure
        )
        self.digest_query, self.record_of = self.replica.digest_query, self.replica.record_of
        self.hydrate_local = self.replica.hydrate_local
        self.trend_counts = self.replica.trend_counts
        self.ensure_elected = self.elector.ensure_elected
        self.write = self.writes.write
        self.replicate, self.run = self.replicator.replicate, self.replicator.run
        self.drive_outbox, self.drive_pending = self.driver.drive_outbox, self.driver.drive_pending
        self.outbox_loop, self.acting_of = self.driver.outbox_loop, self.driver.acting_of
        self.sync_with = self.anti_entropy.sync_with
        self.anti_entropy_loop, self.anti_entropy_step = (
            self.anti_entropy.anti_entropy_loop, self.anti_entropy.anti_entropy_step
        )
        self.drain_before = self.drain.drain_before
        self.postings_page, self.stream_gained = self.streaming.postings_page, self.streaming.stream_gained

    # ------------------------------------------------------------ state others read

    @property
    def topology_version(self) -> int:
        return self.drain.version

    @property
    def local_index(self) -> bool:
        """Whether writes index locally (see replica.indexes_locally)."""
        return self.replica.local_index

    @property
    def elected(self) -> dict[int, int]:
        """Partition token -> the epoch this node was elected for (and orders that partition's writes in)."""
        return self.election.elected

    @property
    def elections_won(self) -> int:
        return self.election.won

    @property
    def synced_keys(self) -> int:
        """Keys pulled or pushed by catch-up and anti-entropy."""
        return self.anti_entropy.synced_keys

    def topology_changed(self, version: int) -> None:
        """The ring moved (placement already switched): partitions may have grown or split, so every mastership
        is won again (with its catch-up) and the anti-entropy round is listed again."""
        self.drain.version = version
        self.replica.local_index = indexes_locally(self.placement)
        self.election.on_topology(version)
        self.anti_entropy.sync_round.reset()
        self.streaming.export.clear()

    # ------------------------------------------------------------ dispatch

    async def handle(self, req: Any, peer: str) -> Any:
        if isinstance(req, m.ApplyRaw):
            if req.fence:
                self._check_member(peer)
            if len(req.records) > limits.APPLY_RECORDS_MAX:
                raise MurmurError("too many records in one apply")
            try:
                records = [decode_record(r) for r in req.records]
            except msgspec.MsgspecError as e:
                raise InvalidRequest(f"undecodable record in an apply: {e}") from None
            return m.ApplyResp(await self.replica.apply(records, req.fence, [bytes(r) for r in req.records]))
        if isinstance(req, m.ApplyReq):
            if req.fence:
                self._check_member(peer)
            return m.ApplyResp(await self.replica.apply(req.records, req.fence))
        if isinstance(req, m.WindowReq):
            return m.WindowResp(self.replica.window(req.items))
        if isinstance(req, m.ProbeReq):
            return m.ProbeResp(self.replica.probe(req.items), self.replica.probe_unsure(req.items))
        if isinstance(req, m.GetReq):
            return self.replica.get(req.ids)
        if isinstance(req, m.WriteReq):
            return m.WriteResp(await self.writes.write(req.ops))
        if isinstance(req, m.TrendsReq):
            if req.ranges is not None and len(req.ranges) > limits.STREAM_RANGES_MAX:
                raise MurmurError("too many ranges in one trends request")
            return m.TrendsResp(self.replica.trend_counts(req.window_ms, req.now_ms, req.ranges))
        if isinstance(req, m.QueryReq):
            return m.QueryResp(self.replica.query(req))
        if isinstance(req, m.DigestQueryReq):
            return m.DigestQueryResp(self.replica.digest_query(req))
        if isinstance(req, m.PingReq):
            return m.PingResp(self.me, len(self.shard.tweets), self.topology_version)
        if isinstance(req, m.PromiseReq):
            self._check_member(peer)
            return await self.replica.promise(req.pid, req.epoch)
        if isinstance(req, m.DigestReq):
            return m.DigestResp(list(self.shard.digest(req.start, req.end).items()))
        if isinstance(req, m.KeysReq):
            if len(req.buckets) > limits.SYNC_BUCKETS_MAX:
                raise MurmurError("too many buckets in one keys request")
            return m.KeysResp(self.shard.keys(req.start, req.end, set(req.buckets)))
        if isinstance(req, m.FetchReq):
            if len(req.ids) > limits.GET_IDS_MAX:
                raise MurmurError("too many ids in one fetch")
            return m.FetchResp(self.shard.records_for(req.ids))
        if isinstance(req, m.PostingsReq):
            return self.streaming.postings_page(req)
        raise MurmurError(f"unexpected message {type(req).__name__}")

    def _check_member(self, peer: str) -> None:
        """Only a node of this node's ring (either ring while it moves) may win or use a mastership here: a node
        with another idea of the ring (a misconfigured one) gets 503s, not acknowledgements nobody can read."""
        if peer != self.me and not self.placement.member(peer):
            raise NotOwner(f"{peer} is not on {self.me}'s ring (topology {self.topology_version})")

    async def _call(self, node: str, req: Any) -> Any:
        assert self.peers is not None
        return await self.peers.call(node, req)


def node_handler(service: NodeService, topology: TopologyHandler) -> Handler:
    """This node's one dispatch (what node/cluster/peers.py serves): the topology messages to the keeper, which
    is made from the service, every other message to the service."""

    async def handle(req: Any, peer: str) -> Any:
        if isinstance(req, TOPOLOGY_MESSAGES):
            return await topology.handle(req)
        return await service.handle(req, peer)

    return handle
