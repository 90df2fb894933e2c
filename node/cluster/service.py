"""The node side of the cluster: what a node does for its peers (and for itself, without the network).

Roles: a replica stores records durably and applies them (`apply`); a term partition answers posting windows and
probes; a tweet partition answers reads (`get`); the master of a tweet partition orders its writes (`write`):
it checks them against its copy, stamps versions, replicates to the partition's replicas (W acknowledgements),
then drives the index work (the outbox) to W replicas of every term partition before it answers. The outbox
is durable with the tweet, so work interrupted by a crash is finished by the background driver after restart.

Mastership is earned per partition, not configured: the node a write is routed to (the partition's acting
node: the first of its preference list that is up) must be elected first (node/replication/election.py, carried
out by node/cluster/elector.py: promises, catch-up from the promisers) and keeps it in memory only, so a restarted
or outvoted node always has to win again. Roles: `preferred`, `acting`, `elected`, as election.py defines them.
Anti-entropy (`sync_with`) compares a partition's bucket digests with one peer and exchanges what differs.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import msgspec
import structlog
import trio
import trio.lowlevel

from node.cluster import limits
from node.cluster.elector import Elector
from node.cluster.placement import Placement
from node.errors import (
    Conflict,
    Deleted,
    InvalidRequest,
    MurmurError,
    NotFound,
    NotOwner,
    StaleEpoch,
    Unavailable,
)
from node.query.ast import And, Term, terms_of
from node.replication import election as el
from node.replication import messages as m
from node.replication import outbox as ob
from node.replication.hints import HintStore
from node.replication.prepare import Versions, prepare_write
from node.replication.quorum import acked_by_every
from node.replication.sync import SyncRound, SyncSession
from node.ring.ring import Ring, term_token
from node.ring.topology import gained, sources_needed
from node.search.digest import PeerDigest, peer_digest
from node.shard import (
    DeleteTweet,
    OutboxEntry,
    Promise,
    PutTweet,
    Record,
    Shard,
    StreamedPostings,
    decode_record,
    encode_record,
)
from node.storage.mode import StorageMode

log = structlog.get_logger("murmur.service")
_DEFINITE = (NotFound.code, Deleted.code, Conflict.code)  # answers that write nothing: confirmed with W first


class Log(Protocol):
    async def append(self, payloads: list[bytes]) -> int: ...


class Caller(Protocol):
    async def call(self, node: str, req: Any, timeout_s: float = limits.RPC_TIMEOUT_S) -> Any: ...


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
        """`peers`: calls to the other nodes and gossip's view of them (its `is_up`, when it has one); a node
        whose peer pool opens later passes None and sets `peers` and `is_up` then. `hints`: what a down replica
        missed, replayed later (None: nothing is hinted). `keeper` (the topology) is set after construction: it
        is made from this service (node/app.py)."""
        self.me = me
        self.shard = shard
        self.wal = wal
        # Whether `wal` can persist now: every write path asks it before it changes the shard (a read-only
        # node refuses with 503 and changes nothing; node/storage/mode.py).
        self.mode = mode if mode is not None else StorageMode(me)
        self.placement = placement
        self.w = w
        self.clock_ms = clock_ms
        # The write lane: the chunks of records that writes apply (a replica's batch, a master's prepared ops)
        # take turns on it, YIELD_EVERY records at a time. trio runs ready tasks first come, first served, with
        # no priorities, so a search's every step used to wait behind one chunk of EVERY write batch in flight
        # (p50 ~180 ms during a bulk load); with the lane, the writers wait on the lock, not in the run queue, and
        # a search step waits for at most the one chunk that is running. The lock is fair (FIFO), so the batches
        # still share it evenly, and throughput is the same work in another order.
        self.lane = trio.Lock()
        self.peers = peers
        self.is_up: Callable[[str], bool] = getattr(peers, "is_up", lambda node: True)  # gossip's view
        self.election = el.ElectionCore(me, w, limits.ELECTION_ATTEMPTS_MAX)  # partitions this node is elected for
        self.elector = Elector(
            self.election, self.promise, self._call, lambda node: self.is_up(node),
            lambda pid: el.known_epoch(self.shard, pid), self._catch_up_from,
        )
        self.synced_keys = 0  # keys pulled or pushed by catch-up and anti-entropy
        self.sync_round = SyncRound(me)  # anti-entropy's (partition, peer) round robin, listed again per ring
        self.hints = hints
        self.outbox = ob.OutboxPlanner(
            me, limits.OUTBOX_REPLICA_GRACE_S, limits.OUTBOX_BATCH_MAX, limits.OUTBOX_BATCH_MAX * 4
        )
        self.versions = Versions(shard.max_version)  # the versions this node stamps as an elected master
        self._driving: dict[int, trio.Event] = {}  # outbox entries being driven now -> set when that ends
        self._writing: set[int] = set()  # tweets of writes in flight: their own write drives their outbox
        self.keeper: Any = None  # node.cluster.rebalance.Keeper: topology messages go there
        self.topology_version = 0
        self._inflight: dict[int, int] = {}  # topology version -> writes/index drives started under it, running
        self._drained = trio.Event()  # set (and replaced) whenever a version's count drops to zero
        self._export: dict[tuple[tuple[int, int], ...], list[tuple[int, str]]] = {}  # streamed ranges -> (token, term)
        self.local_index = _local_index(placement)
        self._bg: trio.Nursery | None = None  # run()'s nursery: fan-out sends that outlive their write
        self._straggling = 0  # such sends under way (bounded by limits.STRAGGLERS_MAX)

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
            return m.ApplyResp(await self.apply(records, req.fence, [bytes(r) for r in req.records]))
        if isinstance(req, m.ApplyReq):
            if req.fence:
                self._check_member(peer)
            return m.ApplyResp(await self.apply(req.records, req.fence))
        if isinstance(req, m.WindowReq):
            return m.WindowResp(self.window(req.items))
        if isinstance(req, m.ProbeReq):
            return m.ProbeResp(self.probe(req.items), self.probe_unsure(req.items))
        if isinstance(req, m.GetReq):
            return self.get(req.ids)
        if isinstance(req, m.WriteReq):
            return m.WriteResp(await self.write(req.ops))
        if isinstance(req, m.TrendsReq):
            if req.ranges is not None and len(req.ranges) > limits.STREAM_RANGES_MAX:
                raise MurmurError("too many ranges in one trends request")
            return m.TrendsResp(self.trend_counts(req.window_ms, req.now_ms, req.ranges))
        if isinstance(req, m.QueryReq):
            return m.QueryResp(self.query(req))
        if isinstance(req, m.DigestQueryReq):
            return m.DigestQueryResp(self.digest_query(req))
        if isinstance(req, m.PingReq):
            return m.PingResp(self.me, len(self.shard.tweets), self.topology_version)
        if isinstance(req, m.PromiseReq):
            self._check_member(peer)
            return await self.promise(req.pid, req.epoch)
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
            return self.postings_page(req)
        if isinstance(req, m.TopologyReq | m.InstallReq | m.StreamReq):
            if self.keeper is None:
                raise Unavailable("this node is still starting")
            return await self.keeper.handle(req)
        raise MurmurError(f"unexpected message {type(req).__name__}")

    def _suspect(self, node: str) -> bool:
        """Whether gossip suspects `node` (still routed to, but asked last where another will do)."""
        state: dict[str, str] = getattr(self.peers, "state", None) or {}
        return state.get(node, "alive") != "alive"

    def _check_member(self, peer: str) -> None:
        """Only a node of this node's ring (either ring while it moves) may win or use a mastership here: a node
        with another idea of the ring (a misconfigured one) gets 503s, not acknowledgements nobody can read."""
        if self.keeper is not None and peer != self.me and self.keeper.topology.member(peer) is None:
            raise NotOwner(f"{peer} is not on {self.me}'s ring (topology {self.topology_version})")

    # ------------------------------------------------------------ replica role

    async def apply(
        self, records: list[Record], fence: list[tuple[int, int]] | None = None, raws: list[bytes] | None = None
    ) -> int:
        """Apply, then make durable; the caller's acknowledgement follows the WAL's. A fenced batch (a master's
        new writes) is refused whole when a newer epoch was promised for one of its partitions; an epoch newer
        than the promise is learnt (the master won it without this node). `raws`: the records' encodings, when
        the caller has them (logged as they are: each record is encoded once, by its master). A read-only node
        refuses before changing anything."""
        if len(records) > limits.APPLY_RECORDS_MAX:
            raise MurmurError("too many records in one apply")
        # Refused before anything changes. A big batch yields below, so the mode may turn read-only before its
        # append: then the append is refused and the records sit in memory unlogged and unacknowledged, as they
        # do between apply and fsync anyway; the master retries them (same versions, so idempotent).
        self.mode.check()
        encoded: list[bytes | None] = list(raws) if raws is not None else [None] * len(records)
        if fence:
            learnt, stale = el.check_fence(self.shard, fence)
            if stale is not None:
                pid, epoch, promised = stale
                raise NotOwner(f"partition {pid}: epoch {epoch} is stale, {promised} was promised")
            records = [*learnt, *records]
            none: list[bytes | None] = [None] * len(learnt)
            encoded = none + encoded
        if self.local_index:
            local = [_localized(r) for r in records]
            encoded = [e if a is b else None for a, b, e in zip(records, local, encoded, strict=True)]
            records = local
        now = self.clock_ms()
        changed = 0
        for start in range(0, len(records), limits.YIELD_EVERY):
            async with self.lane:  # a big batch does not hold searches up (snapshots: see _Snapshotter)
                for r in records[start : start + limits.YIELD_EVERY]:
                    changed += self._apply_one(r, now)
        await self.wal.append([e if e is not None else encode_record(r) for r, e in zip(records, encoded, strict=True)])
        return changed

    async def promise(self, pid: int, epoch: int) -> m.PromiseResp:
        """Phase 1 of an election, replica side. The check and the state change happen before any await, so a
        fenced write that arrives while the promise is being logged is already refused."""
        self.mode.check()  # a promise this node cannot log is no promise
        resp, rec = el.answer_promise(self.shard, pid, epoch)
        if rec is not None:
            self._apply_one(rec, 0)
            await self.wal.append([encode_record(rec)])
        return resp

    def _step_down(self, pid: int, stale: int) -> None:
        """Stop ordering partition `pid` if this node was elected for it in epoch `stale` or older."""
        if self.election.maybe_step_down(pid, stale):
            log.info("master_stepped_down", partition=pid, epoch=stale)

    def _apply_one(self, r: Record, now: int) -> bool:
        sh = self.shard
        if isinstance(r, Promise):
            ok = sh.apply(r)
            if ok and self.election.on_promised(r.pid, r.epoch):
                log.info("master_stepped_down", partition=r.pid, epoch=r.epoch - 1)
            return ok
        return sh.apply(r)

    # ------------------------------------------------------------ reads

    def trend_counts(self, window_ms: int, as_of_ms: int, ranges: list[tuple[int, int]] | None) -> list[tuple[str, int, int]]:
        """(hashtag, count in the window ending at as_of_ms, count in the window before) for the most counted
        hashtags of these tweet partitions: tweets created in (as_of - window, as_of], then the window before."""
        hi = as_of_ms + 1
        cur = self.shard.hashtag_counts(hi - window_ms, hi, ranges)
        top = sorted(cur.items(), key=lambda kv: (-kv[1], kv[0]))[: limits.TRENDS_TAGS_MAX]
        prev = self.shard.hashtag_counts(hi - 2 * window_ms, hi - window_ms, ranges)
        return [(tag, c, prev.get(tag, 0)) for tag, c in top]

    def window(self, items: list[m.WindowItem]) -> list[m.WindowResult]:
        if len(items) > limits.WINDOW_ITEMS_MAX:
            raise MurmurError("too many terms in one window request")
        ix = self.shard.index
        out = []
        for it in items:
            limit = max(1, min(it.limit, limits.WINDOW_LIMIT_MAX))
            ids = list(itertools.islice(ix.iter_newest(Term(it.term), it.max_id, it.since_id), limit + 1))
            exhausted = len(ids) <= limit
            out.append(m.WindowResult(ids[:limit], exhausted, ix.df(it.term), it.term in self.shard.unsure))
        return out

    def query(self, req: m.QueryReq) -> m.WindowResult:
        ids, exhausted = self.local_window(req.root, req.max_id, req.since_id, req.limit)
        return m.WindowResult(ids, exhausted, 0, self.query_unsure(req.root))

    def local_window(self, root: And, max_id: int | None, since_id: int | None, limit: int) -> tuple[list[int], bool]:
        """This node's own matches of `root` (a superset for phrases), newest first: (at most `limit`, exhausted)."""
        return self.shard.index.window(root, max_id, since_id, max(1, min(limit, limits.WINDOW_LIMIT_MAX)))

    def query_unsure(self, root: And) -> bool:
        return bool(self.shard.unsure) and any(t in self.shard.unsure for t in terms_of(root))

    def digest_query(self, req: m.DigestQueryReq) -> PeerDigest:
        """The replica side of a local-first search's digest read (node/search/digest.py)."""
        if len(req.mine) > limits.WINDOW_LIMIT_MAX:
            raise MurmurError("too many ids in one digest query")
        ids, exhausted = self.local_window(req.root, req.max_id, req.since_id, req.limit)
        store = self.shard.store
        return peer_digest(
            req.mine, ids, store.versions(ids), exhausted, store.version_of, self.record_of, self.query_unsure(req.root)
        )

    def record_of(self, tweet_id: int) -> Record | None:
        """This node's copy of a tweet as a record (its tombstone once deleted), for read repair."""
        t = self.shard.tweets.get(tweet_id)
        if t is not None:
            return PutTweet(t, local=self.local_index)
        return self.shard.tombstones.get(tweet_id)

    def probe_unsure(self, items: list[m.ProbeItem]) -> bool:
        return bool(self.shard.unsure) and any(it.term in self.shard.unsure for it in items)

    def probe(self, items: list[m.ProbeItem]) -> list[list[int]]:
        if len(items) > limits.WINDOW_ITEMS_MAX:
            raise MurmurError("too many terms in one probe request")
        ix = self.shard.index
        out = []
        for it in items:
            root = Term(it.term)
            present = []
            for i in it.ids[: limits.PROBE_IDS_MAX]:
                if next(ix.iter_newest(root, i, i - 1), None) == i:
                    present.append(i)
            out.append(present)
        return out

    def get(self, ids: list[int]) -> m.GetResp:
        if len(ids) > limits.GET_IDS_MAX:
            raise MurmurError("too many ids in one get")
        tw, tb = self.shard.tweets, self.shard.tombstones
        found = [tw[i] for i in ids if i in tw]
        gone = [tb[i] for i in ids if i in tb]
        return m.GetResp(found, gone)

    # ------------------------------------------------------------ master role

    @property
    def elected(self) -> dict[int, int]:
        """Partition token -> the epoch this node was elected for (and orders that partition's writes in)."""
        return self.election.elected

    @property
    def elections_won(self) -> int:
        return self.election.won

    async def ensure_elected(self, pid: int, replicas: tuple[str, ...]) -> int:
        """The epoch this node is elected for in partition `pid`, winning an election first when it is not."""
        return await self.elector.ensure_elected(pid, replicas)

    async def _call(self, node: str, req: Any) -> Any:
        assert self.peers is not None
        return await self.peers.call(node, req)

    async def _catch_up_from(self, node: str, pid: int) -> None:
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

    @contextmanager
    def _in_flight(self) -> Iterator[None]:
        """Count a write or index drive under the current topology version until it ends (see drain_before)."""
        v = self.topology_version
        self._inflight[v] = self._inflight.get(v, 0) + 1
        try:
            yield
        finally:
            self._inflight[v] -= 1
            if not self._inflight[v]:
                del self._inflight[v]
                self._drained.set()
                self._drained = trio.Event()

    async def drain_before(self, version: int, timeout_s: float) -> bool:
        """Wait until every write and index drive started under a topology older than `version` has ended.
        -> False if some still run after timeout_s."""
        with trio.move_on_after(timeout_s):
            while True:
                ev = self._drained
                if not any(v < version for v in self._inflight):
                    return True
                await ev.wait()
        return False

    def topology_changed(self, version: int) -> None:
        """The ring moved (placement already switched): partitions may have grown or split, so every mastership
        is won again (with its catch-up) and the anti-entropy round is listed again."""
        self.topology_version = version
        self.local_index = _local_index(self.placement)
        self.election.on_topology(version)
        self.sync_round.reset()
        self._export.clear()

    async def write(self, ops: list[m.WriteOp]) -> list[m.WriteResult]:
        if len(ops) > limits.WRITE_OPS_MAX:
            raise MurmurError("too many writes in one request")
        with self._in_flight():
            results = await self._write(ops)
            # A tweet written in a newer epoch than this node's mastership: another node won the partition while
            # this one was away and still believed itself master. Step down, win it again (catching up), retry.
            again = [k for k, r in enumerate(results) if r.code == StaleEpoch.code]
            if again:
                for k in again:
                    pid = self.placement.tweet_partition(ops[k].id)[0]
                    self._step_down(pid, self.elected.get(pid, 0))
                for k, r in zip(again, await self._write([ops[k] for k in again]), strict=True):
                    results[k] = r if r.code != StaleEpoch.code else m.WriteResult("error", code=Unavailable.code, message=r.message)
            return results

    async def _write(self, ops: list[m.WriteOp]) -> list[m.WriteResult]:
        results: list[m.WriteResult | None] = [None] * len(ops)
        parts = [self.placement.tweet_partition(op.id) for op in ops]
        epochs: dict[int, int] = {}
        failed: dict[int, MurmurError] = {}

        async def elect(pid: int, replicas: tuple[str, ...]) -> None:
            try:
                epochs[pid] = await self.ensure_elected(pid, replicas)
            except MurmurError as e:
                failed[pid] = e

        async with trio.open_nursery() as n:
            for pid, replicas in dict(parts).items():
                if self.me in replicas:
                    n.start_soon(elect, pid, replicas)
                else:
                    failed[pid] = NotOwner(f"{self.me} does not replicate partition {pid}")
        # A read-only master changes nothing (its coordinator tries the next replica). Checked after the awaits
        # above: the mode may have changed during the elections. Should it change during the replication below,
        # this node's copy is in memory only; the answer then counts the other replicas' durable copies, and an
        # unacknowledged write may land (CONTRACT §2: a 503 is safe to retry, versions make retries idempotent).
        self.mode.check()
        now = self.clock_ms()
        pending: list[tuple[int, Record]] = []
        fences: dict[int, int] = {}
        for start in range(0, len(ops), limits.YIELD_EVERY):
            async with self.lane:  # between chunks of ops: each op's check and apply stay together
                for i in range(start, min(len(ops), start + limits.YIELD_EVERY)):
                    op = ops[i]
                    pid = parts[i][0]
                    if pid in failed:
                        e = failed[pid]
                        results[i] = m.WriteResult("error", code=e.code, message=e.message, field=e.field)
                        continue
                    try:
                        rec, res = prepare_write(self.shard, op, now, epochs[pid], self.versions, self.local_index)
                    except MurmurError as e:
                        results[i] = m.WriteResult("error", code=e.code, message=e.message, field=e.field)
                        continue
                    results[i] = res
                    if rec is not None:
                        self._apply_one(rec, now)  # visible to the next op's checks before any await
                        pending.append((i, rec))
                        fences[pid] = epochs[pid]
        unconfirmed = {
            parts[i][0] for i, r in enumerate(results) if r is not None and r.code in _DEFINITE
        }
        if unconfirmed:
            lost = await self._confirm({p: epochs[p] for p in unconfirmed})
            for i, r in enumerate(results):
                if r is not None and r.code in _DEFINITE and parts[i][0] in lost:
                    results[i] = m.WriteResult("error", code="unavailable", message="mastership not confirmed; retry")
        mine = {_rec_id(r) for _, r in pending} - self._writing
        self._writing |= mine
        try:
            acked = await self.replicate(pending, fences)
            ids = {_rec_id(r) for i, r in pending if i in acked}
            indexed = await self.drive_outbox(ids)
        finally:
            self._writing -= mine
        for i, rec in pending:
            tid = _rec_id(rec)
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
                        self._step_down(pid, epoch)
            if acks < self.w:
                lost.add(pid)

        async with trio.open_nursery() as n:
            for pid, epoch in fences.items():
                n.start_soon(one, pid, epoch)
        return lost

    async def replicate(self, items: list[tuple[int, Record]], fences: dict[int, int]) -> set[int]:
        """Send each record to every replica of its tweet partition (this node included), fenced by this
        master's epochs; -> keys acked by W."""
        by_node: dict[str, list[tuple[int, Record]]] = {}
        node_pids: dict[str, set[int]] = {}
        need: dict[int, tuple[tuple[str, ...], ...]] = {}
        for key, rec in items:
            tid = _rec_id(rec)
            pid = self.placement.tweet_partition(tid)[0]
            need[key] = sets = self.placement.tweet_write_sets(tid)
            for node in _union(sets):
                by_node.setdefault(node, []).append((key, rec))
                node_pids.setdefault(node, set()).add(pid)
        node_fences = {nd: [(p, fences[p]) for p in sorted(pids) if p in fences] for nd, pids in node_pids.items()}
        acks = await self._fan_out(by_node, node_fences, need)
        return {k for k, nodes in acks.items() if acked_by_every(nodes, need[k], self.w)}

    async def _fan_out(
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
                    await self.apply(recs, fence, raws)
                elif not self.is_up(node):
                    raise Unavailable(f"{node} is down")
                else:
                    assert self.peers is not None
                    await self.peers.call(node, m.ApplyRaw([msgspec.Raw(b) for b in raws], fence or []))
            except MurmurError as e:
                log.warning("apply_failed", to=node, records=len(batch), error=e.code)
                if e.code == NotOwner.code:
                    for p, epoch in fence or ():
                        self._step_down(p, epoch)
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
        """The service's background work: the sends of fan-outs that answered at W (see _fan_out)."""
        async with trio.open_nursery() as n:
            self._bg = n
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._bg = None

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
        with self._in_flight():
            return await self._drive_entries(entries)

    async def _drive_entries(self, entries: list[OutboxEntry]) -> set[int]:
        ev = trio.Event()
        for e in entries:
            self._driving[e.tweet_id] = ev
        try:
            by_node, need = ob.plan_drive(entries, self.placement)
            acked_by = await self._fan_out(by_node, None, need)
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
        await self._fan_out(by_node, None, need)  # the write does not wait for a slow replica's copy of this

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
        due = self.outbox.due(
            self.shard.outbox, lambda i: i in self._driving or i in self._writing, self.acting_of,
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
        with self._in_flight():
            recs = self.shard.records_for(ids)
            acked = await self.replicate(list(enumerate(recs)), {pid: epoch})
            try:
                return await self.drive_outbox({_rec_id(recs[k]) for k in acked})
            except Unavailable:
                return set()


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

    # ------------------------------------------------------------ topology changes

    def postings_page(self, req: m.PostingsReq) -> m.PostingsResp:
        """One page of the postings of the term ranges a gaining node streams from this one. The term list of
        the ranges is made once per stream (a scan of every term here) and kept for its later pages; a page
        starts after the cursor term, so a list made anew (a restart, an evicted cache) resumes right."""
        if len(req.ranges) > limits.STREAM_RANGES_MAX:
            raise MurmurError("too many ranges in one postings request")
        key = tuple(sorted((a, b) for a, b in req.ranges))
        terms = self._export.get(key)
        if terms is None:
            if len(self._export) >= 4:  # bounded: a few streams at once at most
                self._export.clear()
            terms = self._export[key] = [(term_token(t), t) for t in self.shard.terms_in(list(key))]
        start = 0 if req.after is None else bisect.bisect_right(terms, (term_token(req.after), req.after))
        items, used = self.shard.postings_in(
            (t for _, t in itertools.islice(terms, start, None)), max(1, min(req.max_ids, limits.STREAM_IDS_MAX))
        )
        end = start + used
        if end >= len(terms):
            self._export.pop(key, None)
            return m.PostingsResp(items, None)
        return m.PostingsResp(items, terms[end - 1][1])

    async def stream_gained(self, old: Ring, new: Ring) -> tuple[int, int]:
        """Pull every range this node replicates on `new` but not on `old` (tweets, then postings) from enough of
        its old replicas that every write acknowledged on `old` arrives. -> (tweet keys, posting ids) pulled.
        Raises Unavailable when too few old replicas answer."""
        by_sources: dict[tuple[str, ...], list[tuple[int, int]]] = {}
        for start, end, was in gained(old, new, self.placement.n, self.me):
            by_sources.setdefault(was, []).append((start, end))
        tweets = postings = 0
        for was, ranges in by_sources.items():
            need = sources_needed(len(was), self.w)
            done = 0
            for src in [n for n in was if n != self.me and self.is_up(n)]:
                try:
                    for start, end in ranges:
                        tweets += await self.sync_with(src, start, end, push=False)
                    postings += await self._pull_postings(src, ranges)
                except MurmurError as e:
                    log.info("stream_source_failed", source=src, ranges=len(ranges), error=e.code)
                    continue
                done += 1
                if done >= need:
                    break
            if done < need:
                raise Unavailable(f"{len(ranges)} ranges: {done} of their old replicas streamed, {need} needed")
        log.info("streamed", tweets=tweets, postings=postings, ranges=sum(map(len, by_sources.values())))
        return tweets, postings

    async def _pull_postings(self, src: str, ranges: list[tuple[int, int]]) -> int:
        assert self.peers is not None
        got = 0
        after: str | None = None
        while True:
            req = m.PostingsReq(ranges, after, limits.STREAM_IDS_MAX)
            resp = await self.peers.call(src, req, timeout_s=limits.STREAM_PAGE_TIMEOUT_S)
            recs: list[Record] = [StreamedPostings(t, tuple(ids)) for t, ids in resp.items]
            for i in range(0, len(recs), limits.APPLY_RECORDS_MAX):
                await self.apply(recs[i : i + limits.APPLY_RECORDS_MAX])
            got += sum(len(ids) for _, ids in resp.items)
            if resp.next is None:
                return got
            if after is not None and (term_token(resp.next), resp.next) <= (term_token(after), after):
                raise MurmurError(f"{src} sent a postings page that does not advance")
            after = resp.next

    def acting_of(self, tweet_id: int) -> str | None:
        """The acting node of the tweet's partition: the first replica that is up as this node sees it (where
        writes go; it gets elected when it is not)."""
        return next((n for n in self.placement.tweet(tweet_id)[1] if n == self.me or self.is_up(n)), None)


def _localized(r: Record) -> Record:
    """A tweet record as a node that indexes locally applies it: every copy that arrives (a write, a repair, a
    catch-up, a hint) indexes the tweet from the difference with the copy held. The WAL keeps it so marked, so a
    replay indexes exactly as the first application did, whatever the ring is at restart."""
    if isinstance(r, PutTweet | DeleteTweet) and not r.local:
        return msgspec.structs.replace(r, local=True)
    return r


def _local_index(placement: Placement) -> bool:
    """Whether writes index locally (PutTweet.local): every partition is on every node, so the tweet's replicas
    hold every term partition it touches. Not while the ring moves (the moving writes need joint quorums on the
    term partitions of both rings, which the outbox gives) nor with more nodes than N."""
    return placement.next_ring is None and placement.n >= len(placement.ring.nodes)


def _union(sets: tuple[tuple[str, ...], ...]) -> list[str]:
    return list(dict.fromkeys(n for reps in sets for n in reps))


def _rec_id(r: Record) -> int:
    if isinstance(r, PutTweet):
        return r.tweet.id
    if isinstance(r, DeleteTweet):
        return r.id
    if isinstance(r, Promise | StreamedPostings):
        raise TypeError(f"a {type(r).__name__} names no tweet")
    return r.tweet_id
