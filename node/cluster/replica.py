"""The replica role of a node, the Trio shell around node/shard.py: it applies records and makes them durable
(`apply`), answers phase 1 of elections (`promise`), and answers the reads of its copies (posting windows,
probes, gets, local-first query windows, digests, trend counts). It never calls another node.

Rules:
1. Nothing changes before the storage mode is checked: a read-only node refuses with 503 and changes nothing
   (node/storage/mode.py). An acknowledgement follows the WAL's append.
2. A fenced batch (a master's new writes) is refused whole when a newer epoch was promised for one of its
   partitions; an epoch newer than the promise is learnt first (the master won it without this node).
3. A promise's check and state change happen before any await, so a fenced write that arrives while the promise
   is being logged is already refused. A promise this node makes ends its own mastership of older epochs.
4. Records are applied on the write lane, YIELD_EVERY at a time (see `lane`). Every read is bounded by the
   limits of node/cluster/limits.py and raises MurmurError beyond them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Protocol

import msgspec
import structlog

from node.cluster import limits
from node.cluster.lanes import WriteLane
from node.cluster.placement import Placement
from node.errors import MurmurError, NotOwner
from node.query.ast import And, Term, terms_of
from node.replication import election as el
from node.replication import messages as m
from node.search.cursor import Hydrate, HydrateAnswer
from node.search.digest import PeerDigest, peer_digest
from node.shard import DeleteTweet, Promise, PutTweet, Record, Shard, encode_record
from node.storage.mode import StorageMode

log = structlog.get_logger("murmur.service")


class Log(Protocol):
    async def append(self, payloads: list[bytes]) -> int: ...


class Replica:
    def __init__(
        self,
        shard: Shard,
        wal: Log,
        mode: StorageMode,
        election: el.ElectionCore,
        clock_ms: Callable[[], int],
        local_index: bool,
    ) -> None:
        """`election`: this node's masterships, which a promise it makes (or learns) may end. `local_index`: whether
        writes index locally (indexes_locally); the service sets it again when the ring moves."""
        self.shard = shard
        self.wal = wal
        # Whether `wal` can persist now: every write path asks it before it changes the shard.
        self.mode = mode
        self.election = election
        self.clock_ms = clock_ms
        self.local_index = local_index
        # The write lane: the chunks of records that writes apply (a replica's batch, a master's prepared ops)
        # take turns on it, YIELD_EVERY records at a time (SEARCH_CHUNK while a search is under way). trio runs
        # ready tasks first come, first served, with no priorities, so a search's every step used to wait behind
        # one chunk of EVERY write batch in flight (p50 ~180 ms during a bulk load); with the lane, the writers
        # wait on the lock, not in the run queue, and a search step waits for at most the one chunk that is
        # running. The lock is fair (FIFO), so the batches still share it evenly, and throughput is the same work
        # in another order.
        self.lane = WriteLane()  # one write chunk at a time; searches first (node/cluster/lanes.py)

    # ------------------------------------------------------------ writes to this copy

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
        start = 0
        while start < len(records):
            async with self.lane:  # a big batch does not hold searches up (snapshots: see _Snapshotter)
                end = start + self.lane.chunk(limits.YIELD_EVERY)
                for r in records[start:end]:
                    changed += self.apply_one(r, now)
            start = end
        await self.wal.append([e if e is not None else encode_record(r) for r, e in zip(records, encoded, strict=True)])
        return changed

    async def promise(self, pid: int, epoch: int) -> m.PromiseResp:
        """Phase 1 of an election, replica side. The check and the state change happen before any await, so a
        fenced write that arrives while the promise is being logged is already refused."""
        self.mode.check()  # a promise this node cannot log is no promise
        resp, rec = el.answer_promise(self.shard, pid, epoch)
        if rec is not None:
            self.apply_one(rec, 0)
            await self.wal.append([encode_record(rec)])
        return resp

    def apply_one(self, r: Record, now: int) -> bool:
        sh = self.shard
        if isinstance(r, Promise):
            ok = sh.apply(r)
            if ok and self.election.on_promised(r.pid, r.epoch):
                log.info("master_stepped_down", partition=r.pid, epoch=r.epoch - 1)
            return ok
        return sh.apply(r)

    def step_down(self, pid: int, stale: int) -> None:
        """Stop ordering partition `pid` if this node was elected for it in epoch `stale` or older."""
        if self.election.maybe_step_down(pid, stale):
            log.info("master_stepped_down", partition=pid, epoch=stale)

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

    def hydrate_local(self, step: Hydrate) -> HydrateAnswer:
        """A local search's read of this node's own copies (node/search/cursor.py Hydrate): the live tweets, or,
        for a step with a check, only which pass it and at what version (no Tweet is built for them)."""
        if step.check is not None:
            return HydrateAnswer(passed=self.shard.store.passing(step.ids, step.check))
        tweets = self.shard.tweets
        return HydrateAnswer(own={i: t for i in step.ids if (t := tweets.get(i)) is not None})

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


def indexes_locally(placement: Placement) -> bool:
    """Whether writes index locally (PutTweet.local): every partition is on every node, so the tweet's replicas
    hold every term partition it touches. Not while the ring moves (the moving writes need joint quorums on the
    term partitions of both rings, which the outbox gives) nor with more nodes than N."""
    return placement.next_ring is None and placement.n >= len(placement.ring.nodes)


def _localized(r: Record) -> Record:
    """A tweet record as a node that indexes locally applies it: every copy that arrives (a write, a repair, a
    catch-up, a hint) indexes the tweet from the difference with the copy held. The WAL keeps it so marked, so a
    replay indexes exactly as the first application did, whatever the ring is at restart."""
    if isinstance(r, PutTweet | DeleteTweet) and not r.local:
        return msgspec.structs.replace(r, local=True)
    return r
