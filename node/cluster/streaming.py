"""Streaming for topology changes: a gaining node pulls the ranges it replicates on the new ring from their old
replicas (tweets through anti-entropy sessions, then postings page by page); a source answers those pages.

Rules:
1. A gainer pulls each group of ranges from enough of its old replicas (sources_needed) that every write
   acknowledged on the old ring arrives; fewer answering raises Unavailable (the change is aborted or retried).
2. A page is bounded (STREAM_IDS_MAX ids, STREAM_RANGES_MAX ranges) and starts after the cursor term, so a source
   that restarted (or evicted its term list) resumes right; a cursor that does not advance is given up.
3. A source keeps the term lists of a few streams at once at most, and drops them when the ring moves.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Awaitable, Callable

import structlog

from node.cluster import limits
from node.cluster.placement import Placement
from node.cluster.replicate import Caller
from node.errors import MurmurError, Unavailable
from node.replication import messages as m
from node.ring.ring import Ring, term_token
from node.ring.topology import gained, sources_needed
from node.shard import Record, Shard, StreamedPostings

log = structlog.get_logger("murmur.service")

Apply = Callable[[list[Record]], Awaitable[int]]  # this node's replica side (unfenced)
SyncWith = Callable[..., Awaitable[int]]  # AntiEntropy.sync_with(node, start, end, push=...)


class Streaming:
    def __init__(
        self,
        me: str,
        shard: Shard,
        placement: Placement,
        w: int,
        peers: Caller | None,
        is_up: Callable[[str], bool],
        sync_with: SyncWith,
        apply: Apply,
    ) -> None:
        self.me, self.shard, self.placement, self.w = me, shard, placement, w
        self.peers = peers
        self.is_up = is_up
        self.sync_with = sync_with
        self.apply = apply
        self.export: dict[tuple[tuple[int, int], ...], list[tuple[int, str]]] = {}  # streamed ranges -> (token, term)

    def postings_page(self, req: m.PostingsReq) -> m.PostingsResp:
        """One page of the postings of the term ranges a gaining node streams from this one. The term list of
        the ranges is made once per stream (a scan of every term here) and kept for its later pages; a page
        starts after the cursor term, so a list made anew (a restart, an evicted cache) resumes right."""
        if len(req.ranges) > limits.STREAM_RANGES_MAX:
            raise MurmurError("too many ranges in one postings request")
        key = tuple(sorted((a, b) for a, b in req.ranges))
        terms = self.export.get(key)
        if terms is None:
            if len(self.export) >= 4:  # bounded: a few streams at once at most
                self.export.clear()
            terms = self.export[key] = [(term_token(t), t) for t in self.shard.terms_in(list(key))]
        start = 0 if req.after is None else bisect.bisect_right(terms, (term_token(req.after), req.after))
        items, used = self.shard.postings_in(
            (t for _, t in itertools.islice(terms, start, None)), max(1, min(req.max_ids, limits.STREAM_IDS_MAX))
        )
        end = start + used
        if end >= len(terms):
            self.export.pop(key, None)
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
                    postings += await self.pull_postings(src, ranges)
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

    async def pull_postings(self, src: str, ranges: list[tuple[int, int]]) -> int:
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
