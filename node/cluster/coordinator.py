"""The coordinator every node runs (CONTRACT: any node coordinates). Writes go to the acting node of the tweet's
partition (it gets elected), grouped so that a batch costs one call per node; reads ask R replicas of each partition (this node
first when it holds a copy), merge by version and repair stale copies in the background.

A cluster of one is the same code with every call local. It implements node.coordinator.Coordinator.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
import structlog
import trio

from node.cluster import limits
from node.cluster.batching import WriteBatcher
from node.cluster.placement import Placement
from node.cluster.search import ID_MAX, PUSHDOWN_WINDOW_MIN, Outcome, run_pushdown, run_search
from node.coordinator import Created, SearchRequest, SearchResult, Trend
from node.errors import Conflict, Deleted, InvalidField, MurmurError, NotFound, Unavailable
from node.ids import IdOutOfRange, SnowflakeGenerator, check_created_at
from node.index.matcher import phrase_checker
from node.model import Tweet, TweetIn, TweetPatch, render
from node.query.ast import Query, terms_of
from node.replication import messages as m
from node.replication.quorum import merge_windows, read_set, resolve_tweets
from node.search.digest import alone, resolve
from node.search_order import order_results
from node.shard import Record
from node.trends import rank

log = structlog.get_logger("murmur.coordinator")
_json_enc = msgspec.json.Encoder()

POPULAR_POOL = 1000  # popular/mixed rank the newest this-many matches by engagement
_ERRORS = {c.code: c for c in (Conflict, NotFound, InvalidField, Unavailable)}
_ERRORS[Deleted.code] = NotFound  # a tombstone: to a client, not found


def _error(res: m.WriteResult) -> MurmurError:
    cls = _ERRORS.get(res.code or "", MurmurError)
    e = cls(res.message or res.code or "write failed", res.field)
    if cls is MurmurError:
        e.code = res.code or "internal"
    return e


class ClusterCoordinator:
    def __init__(
        self,
        me: str,
        placement: Placement,
        r: int,
        peers: Any,
        ids: SnowflakeGenerator,
        clock_ms: Callable[[], int],
        members: Callable[[], list[dict[str, Any]]],
        cluster_info: dict[str, Any],
        repairs: trio.MemorySendChannel[tuple[str, list[Record]]] | None = None,
    ) -> None:
        self.me = me
        self.placement = placement
        self.r = r
        self.peers = peers
        self.ids = ids
        self.clock_ms = clock_ms
        self.members = members
        self.cluster_info = cluster_info
        self.repairs = repairs
        self.service: Any = None  # the local NodeService, for health figures
        self.keeper: Any = None  # node.cluster.rebalance.Keeper: this node's topology, for /health and /cluster
        self._rotor = 0  # which replica a local-first search asks first
        self._render_cache: dict[int, tuple[int, msgspec.Raw]] = {}  # id -> (version, its JSON): bounded
        self._batcher = WriteBatcher(self._send_writes)  # concurrent writes to one master share calls

    # ------------------------------------------------------------ helpers

    def _alive(self) -> set[str] | None:
        """The nodes reads prefer: up, and not suspected by gossip (a suspect one is still asked, after them)."""
        state = getattr(self.peers, "state", {})
        live = {
            n for n in self.placement.ring.nodes
            if n == self.me or (self.peers.is_up(n) and state.get(n, "alive") == "alive")
        }
        return live or None

    def _acting_for(
        self, place: tuple[int, tuple[str, ...]], exclude: set[str] | frozenset[str] = frozenset()
    ) -> str | None:
        """Where a write goes: the first replica of the partition that gossip holds up and that has not been
        suspected for longer than limits.ROUTE_AROUND_SUSPECT_S (then a suspect one), not in `exclude` (tried
        already); it gets elected first when it is not (node/replication/election.py). None when none is left.

        Every coordinator must pick the same node from the same gossip view: a write to a replica that is not
        the elected one makes it campaign, so two coordinators that disagree move the mastership back and forth with
        every write (each move an election and a catch-up; at 1.77 M tweets, thousands per node during one load,
        when each coordinator kept its own idea of the acting master). So the choice is a function of the
        preference list and gossip only, and a brief suspicion (a node slow for a moment under load) changes
        nothing: a node paused or cut off is routed around once suspected for a while, before gossip declares
        it dead, and a call that fails moves that one write to the next replica at once (`_write`)."""
        reps = place[1]  # placement.tweet(id): (partition, replicas in preference order)
        cands = [n for n in reps if n not in exclude and (n == self.me or self.peers.is_up(n))]
        suspected = getattr(self.peers, "suspected_for", None)
        if suspected is not None:
            steady = [n for n in cands if n == self.me or suspected(n) <= limits.ROUTE_AROUND_SUSPECT_S]
        else:
            state = getattr(self.peers, "state", {})
            steady = [n for n in cands if n == self.me or state.get(n, "alive") == "alive"]
        pick = steady or cands
        return pick[0] if pick else None

    async def _gather(self, calls: dict[str, Any], timeout_s: float = limits.RPC_TIMEOUT_S) -> dict[str, Any]:
        """Send one request per node in parallel; -> answers of the nodes that answered in time."""
        out: dict[str, Any] = {}

        async def one(node: str, req: Any) -> None:
            try:
                out[node] = await self.peers.call(node, req, timeout_s)
            except MurmurError as e:
                log.info("call_failed", to=node, request=type(req).__name__, error=e.code)

        async with trio.open_nursery() as n:
            for node, req in calls.items():
                n.start_soon(one, node, req)
        return out

    async def _read(
        self, keys: list[Any], replicas_of: Callable[[Any], tuple[str, ...]], make: Callable[[list[Any]], Any]
    ) -> tuple[dict[Any, list[tuple[str, Any, int]]], bool]:
        """Ask R replicas for each key, batched per node; retry keys short of R on the replicas not yet asked.
        -> (key -> [(node, response, position of the key in that node's request)], partial)."""
        alive = self._alive()
        answers: dict[Any, list[tuple[str, Any, int]]] = {k: [] for k in keys}
        asked: dict[Any, set[str]] = {k: set() for k in keys}
        chosen: dict[tuple[str, ...], list[str]] = {}  # a few distinct replica lists per request: choose once each
        todo: dict[Any, list[str]] = {}
        for k in keys:
            reps = replicas_of(k)
            pick = chosen.get(reps)
            if pick is None:
                pick = chosen[reps] = read_set(reps, self.r, self.me, alive)
            todo[k] = pick
        for _attempt in range(2):
            per_node: dict[str, list[Any]] = {}
            for k, nodes in todo.items():
                for nd in nodes:
                    per_node.setdefault(nd, []).append(k)
                    asked[k].add(nd)
            got = await self._gather({nd: make(ks) for nd, ks in per_node.items()}, limits.SEARCH_PEER_TIMEOUT_S)
            for nd, ks in per_node.items():
                if nd in got:
                    for pos, k in enumerate(ks):
                        answers[k].append((nd, got[nd], pos))
            todo = {}
            for k in keys:
                short = self.r - len(answers[k])
                if short > 0:
                    spare = [nd for nd in replicas_of(k) if nd not in asked[k]][:short]
                    if spare:
                        todo[k] = spare
            if not todo:
                break
        partial = any(len(a) < self.r for a in answers.values())
        return answers, partial

    # ------------------------------------------------------------ reads

    async def _windows(
        self, asks: dict[str, tuple[int, int, int]]
    ) -> tuple[dict[str, m.WindowResult], bool, bool]:
        terms = sorted(asks)
        answers, partial = await self._read(
            terms,
            lambda t: self.placement.term(t)[1],
            lambda ts: m.WindowReq([m.WindowItem(t, asks[t][0], asks[t][1] or None, asks[t][2]) for t in ts]),
        )
        out = {}
        disagree = False
        for t, got in answers.items():
            if got:
                results = [resp.items[pos] for _nd, resp, pos in got]
                out[t], differ = merge_windows(results, asks[t][2])
                # streamed postings (a topology change) may hold a removed posting on every replica asked
                disagree = disagree or differ or any(r.unsure for r in results)
        return out, partial, disagree

    async def _probes(self, asks: dict[str, list[int]]) -> tuple[dict[str, set[int]], bool, bool]:
        answers, partial = await self._read(
            sorted(asks), lambda t: self.placement.term(t)[1], lambda ts: m.ProbeReq([m.ProbeItem(t, asks[t]) for t in ts])
        )
        out: dict[str, set[int]] = {}
        disagree = False
        for t, got in answers.items():
            if got:
                sets = [set(resp.present[pos]) for _nd, resp, pos in got]
                out[t] = set().union(*sets)
                disagree = disagree or any(x != sets[0] for x in sets[1:]) or any(resp.unsure for _n, resp, _p in got)
        return out, partial, disagree

    def _holders(self, terms: set[str]) -> list[str]:
        """Nodes that replicate the partition of every one of `terms`, in preference of this node first."""
        common: set[str] | None = None
        for t in terms:
            reps = set(self.placement.term(t)[1])
            common = reps if common is None else common & reps
            if not common:
                return []
        alive = self._alive() or set()
        up = [n for n in sorted(common or ()) if n == self.me or self.peers.is_up(n)]
        self._rotor += 1  # this node first, then the others from a rotating start (no fixed second holder)
        k = self._rotor % max(1, len(up))
        up = up[k:] + up[:k]
        return sorted(up, key=lambda n: (n != self.me, n not in alive))

    async def _pushdown(
        self, q: Query, holders: list[str], hi: int, lo: int, limit: int
    ) -> tuple[m.WindowResult | None, bool, bool]:
        """Ask R holders to evaluate the whole query; a holder that fails is replaced by a spare one."""
        answers: list[m.WindowResult] = []
        todo, spare = holders[: self.r], holders[self.r :]
        while todo and len(answers) < self.r:
            req = m.QueryReq(q.root, hi, lo or None, limit)
            got = await self._gather(dict.fromkeys(todo, req))
            answers.extend(resp.result for resp in got.values())
            need = self.r - len(answers)
            todo, spare = spare[:need], spare[need:]
        if len(answers) < self.r:
            return None, True, False
        merged, disagree = merge_windows(answers, limit)
        return merged, False, disagree or any(a.unsure for a in answers)

    async def _hydrate(self, ids: list[int]) -> tuple[dict[int, Tweet], bool]:
        """Live tweets by id, newest version of R replicas; stale replicas are repaired in the background."""
        answers, partial = await self._read(ids, lambda i: self.placement.tweet(i)[1], lambda ks: m.GetReq(ks))
        per_node: dict[str, m.GetResp] = {}
        wanted: dict[str, set[int]] = {}
        for i, got in answers.items():
            for nd, resp, _pos in got:
                per_node[nd] = resp
                wanted.setdefault(nd, set()).add(i)
        best, repairs = resolve_tweets(per_node, wanted)
        for nd, recs in repairs.items():
            self._repair(nd, recs)
        return {i: b for i, b in best.items() if isinstance(b, Tweet)}, partial

    def _repair(self, node: str, recs: list[Record]) -> None:
        if self.repairs is None:
            return
        try:
            self.repairs.send_nowait((node, recs))
        except trio.WouldBlock:
            pass  # bounded: anti-entropy brings the copy up to date later

    async def get_tweet(self, tweet_id: int) -> Tweet:
        found, partial = await self._hydrate([tweet_id])
        if partial:  # fewer than R copies answered: the one that did may be stale (or miss the tweet)
            raise Unavailable(f"tweet {tweet_id}: fewer than R={self.r} replicas answered")
        t = found.get(tweet_id)
        if t is None:
            raise NotFound(f"no tweet with id {tweet_id}", "id")
        return t

    def _digest_peers(self) -> list[str]:
        """The replicas a local-first search may ask, starting at a different one each time (never a fixed one:
        the load spreads and no node evaluates every query)."""
        others = [nd for nd in self.placement.ring.nodes if nd != self.me and self.peers.is_up(nd)]
        if not others:
            return []
        self._rotor += 1
        k = self._rotor % len(others)
        return others[k:] + others[:k]

    async def _search_local(self, q: Query, need: int, max_id: int | None, since_id: int | None) -> Outcome:
        """Every partition is on this node (local indexing): evaluate and hydrate here, and confirm each window
        with ONE other replica's digest (node/search/digest.py), which answers only where it differs; full
        tweets travel only for ids whose copies differ, and the stale copy is repaired. R = 2 throughout."""
        svc = self.service
        shard = svc.shard
        stages: dict[str, float] = {}
        hi = ID_MAX if max_id is None else max_id
        lo = 0 if since_id is None else since_id
        hits: list[tuple[int, int]] = []
        fetched: dict[int, Tweet] = {}
        partial = False
        if hi <= lo:
            return Outcome([], False, stages, hits, fetched)
        verify = q.needs_tweet() or svc.query_unsure(q.root)
        check = phrase_checker(q)
        limit = max(need + need // 2, PUSHDOWN_WINDOW_MIN)
        peers = self._digest_peers()
        with trio.move_on_after(limits.SEARCH_DEADLINE_S):
            for _round in range(limits.SEARCH_ROUNDS_MAX):
                t0 = time.perf_counter()
                ids, exhausted = svc.local_window(q.root, hi, lo or None, limit)
                mine = list(zip(ids, shard.store.versions(ids), strict=True))
                res = alone(mine, exhausted) if self.r <= 1 else None  # R = 1: this copy is the quorum
                while peers and res is None:
                    peer = peers[0]
                    try:
                        resp = await self.peers.call(
                            peer, m.DigestQueryReq(q.root, hi, lo or None, limit, mine), limits.SEARCH_PEER_TIMEOUT_S
                        )
                        res = resolve(mine, exhausted, resp.digest, shard.store.version_of)
                    except MurmurError as e:
                        log.info("digest_failed", to=peer, error=e.code)
                        peers.pop(0)
                if res is None:
                    partial = True  # no second copy answered: our own answer only
                    res = alone(mine, exhausted)
                stages["query"] = round(stages.get("query", 0.0) + (time.perf_counter() - t0) * 1000, 3)
                if res.repair_here:
                    self._repair(self.me, res.repair_here)
                if res.repair_peer:
                    recs = [r for r in map(svc.record_of, res.repair_peer) if r is not None]
                    if recs:
                        self._repair(peers[0], recs)
                t0 = time.perf_counter()
                ours = dict(mine)
                for i in res.ids:
                    tw = res.fetched.get(i)
                    if tw is not None:
                        fetched[i] = tw
                    elif verify or i in res.check:
                        tw = shard.tweets.get(i)
                    if verify or i in res.check:
                        if tw is None or not check(tw):
                            continue
                        fetched[i] = tw  # built for the check: rendered from it too
                    v = tw.version if tw is not None else ours.get(i) or shard.store.version_of(i)
                    if v:  # (0: gone here meanwhile)
                        hits.append((i, v))
                stages["hydrate"] = round(stages.get("hydrate", 0.0) + (time.perf_counter() - t0) * 1000, 3)
                if len(hits) >= need:
                    return Outcome([], partial, stages, hits[:need], fetched)
                if res.exhausted or res.floor - 1 <= lo:
                    return Outcome([], partial, stages, hits, fetched)
                hi = res.floor - 1
                limit = min(limits.WINDOW_LIMIT_MAX, limit * 4)
        # the deadline ran out (scope cancelled), or the rounds did: what was found, marked partial
        return Outcome([], True, stages, hits[:need], fetched)

    def _rendered(self, hits: list[tuple[int, int]], fetched: dict[int, Tweet]) -> list[msgspec.Raw]:
        """The JSON of each hit (id, version), from the render cache or rendered now from this node's copy (or
        the peer's newer one) and kept: a tweet's JSON changes only with its version."""
        cache = self._render_cache
        out: list[msgspec.Raw] = []
        for i, v in hits:
            got = cache.get(i)
            if got is None or got[0] != v:
                tw = fetched.get(i) or self.service.shard.tweets.get(i)
                if tw is None or tw.version != v:
                    continue  # changed since it was found: left out of this page rather than shown wrong
                if len(cache) >= limits.RENDER_CACHE_MAX:
                    for k in list(itertools.islice(cache, limits.RENDER_CACHE_MAX // 4)):  # the oldest quarter
                        del cache[k]
                got = cache[i] = (v, msgspec.Raw(_json_enc.encode(render(tw))))
            out.append(got[1])
        return out

    def _materialize(self, out: Outcome) -> list[Tweet]:
        """The tweets of a local search's hits (popular and mixed rank them by engagement)."""
        if out.hits is None:
            return out.tweets
        tweets = (out.fetched.get(i) or self.service.shard.tweets.get(i) for i, _v in out.hits)
        return [t for t in tweets if t is not None]

    async def search(self, req: SearchRequest) -> SearchResult:
        need = req.count + 1 if req.result_type == "recent" else POPULAR_POOL + 1
        deadline = time.monotonic() + limits.SEARCH_DEADLINE_S
        q = req.query
        out = None
        if self.service is not None and self.service.local_index and self.r <= 2:  # R copies: ours + one digest
            out = await self._search_local(q, need, req.max_id, req.since_id)
        holders = self._holders(terms_of(q.root)) if out is None else []
        if len(holders) >= self.r:
            out = await run_pushdown(
                q, need, req.max_id, req.since_id, partial(self._pushdown, q, holders), self._hydrate, deadline
            )
        if out is None:
            out = await run_search(q, need, req.max_id, req.since_id, self._windows, self._probes, self._hydrate, deadline)
        if req.render and req.result_type == "recent" and out.hits is not None:
            page_hits = out.hits[: req.count]
            nxt = page_hits[-1][0] - 1 if len(out.hits) > req.count and page_hits[-1][0] > 1 else None
            rendered = self._rendered(page_hits, out.fetched)
            return SearchResult([], nxt, out.partial, out.stages if req.explain else None, rendered)
        tweets = self._materialize(out)
        if req.result_type == "recent":
            page = tweets[: req.count]
            nxt = page[-1].id - 1 if len(tweets) > req.count and page[-1].id > 1 else None
        else:
            pool = tweets[:POPULAR_POOL]
            page, nxt = order_results(pool, req.result_type, req.count, len(tweets) > POPULAR_POOL)
        return SearchResult(page, nxt, out.partial, out.stages if req.explain else None)

    async def trends(self, window_s: int, count: int, now_ms: int) -> list[Trend]:
        """Hashtags rising fastest in the window ending at now_ms (the `as_of`), counted from the replicated
        tweets: each tweet partition by one live replica (this node first), so a dead node's share is counted by
        another copy; a partition none of whose replicas answers is left out (best effort, like Twitter's)."""
        ring, n = self.placement.ring, self.placement.n
        alive = self._alive()
        parts: dict[tuple[int, int], list[str]] = {}
        for start, end in ring.partitions():
            order = ring.preference_list(end, n)
            parts[(start, end)] = sorted(order, key=lambda nd: (nd != self.me, alive is not None and nd not in alive))
        cur: dict[str, int] = {}
        prev: dict[str, int] = {}
        for _attempt in range(n):
            if not parts:
                break
            by_node: dict[str, list[tuple[int, int]]] = {}
            for rng, cands in parts.items():
                if cands:
                    by_node.setdefault(cands[0], []).append(rng)
            if not by_node:
                break
            whole = {nd for nd, rs in by_node.items() if len(rs) == len(ring.partitions())}
            got = await self._gather(
                {nd: m.TrendsReq(window_s * 1000, now_ms, None if nd in whole else rs) for nd, rs in by_node.items()}
            )
            for nd, resp in got.items():
                for tag, c, p in resp.counts:
                    cur[tag] = cur.get(tag, 0) + c
                    prev[tag] = prev.get(tag, 0) + p
                for rng in by_node[nd]:
                    parts.pop(rng, None)
            for cands in parts.values():  # the next replica of what did not answer
                if cands:
                    cands.pop(0)
        ranked = rank([(t, c, prev.get(t, 0)) for t, c in cur.items()], count)
        return [Trend("#" + t, c, s) for t, c, s in ranked]

    # ------------------------------------------------------------ writes

    async def _write(self, ops: list[m.WriteOp]) -> list[m.WriteResult]:
        """Group by the acting node of each tweet's partition: one call per node. A node that does not answer
        in WRITE_CALL_TIMEOUT_S (dead, paused, cut off), or answers `unavailable` twice, is replaced by the next
        replica of the partition, which gets elected (catching up first), and the write is retried there with a
        bounded backoff, within WRITE_DEADLINE_S (CONTRACT §6: no write refused while W replicas live). Retrying
        is safe: a create carries its id (a generated one is fixed before the first try), an edit is idempotent,
        and a delete that answers not_found after a try that may have landed has done its work."""
        out: list[m.WriteResult | None] = [None] * len(ops)
        todo = list(range(len(ops)))
        tried: dict[int, set[str]] = {k: set() for k in todo}
        uncertain: set[int] = set()  # an earlier try of these may have landed
        again: dict[int, set[str]] = {}  # masters that answered `unavailable` once already
        last: dict[int, str] = {}
        place: dict[int, tuple[int, tuple[str, ...]]] = {}
        deadline = trio.current_time() + limits.WRITE_DEADLINE_S
        backoff = limits.WRITE_RETRY_MIN_S
        while todo:
            by_master: dict[str, list[int]] = {}
            for k in todo:
                place[k] = self.placement.tweet(ops[k].id)  # once per op and try (the ring may move between tries)
                nd = self._acting_for(place[k], tried[k])
                if nd is None and tried[k]:  # every replica tried: start over (one may be back by now)
                    tried[k].clear()
                    nd = self._acting_for(place[k])
                if nd is None:
                    out[k] = m.WriteResult("error", code="unavailable", message="no replica of its partition is up")
                    continue
                tried[k].add(nd)
                by_master.setdefault(nd, []).append(k)
            got: dict[str, list[m.WriteResult] | None] = {}
            with trio.move_on_after(max(0.05, deadline - trio.current_time())):
                if len(by_master) == 1:
                    ((nd, ks),) = by_master.items()
                    got[nd] = await self._batcher.submit(nd, [ops[k] for k in ks])
                else:
                    async with trio.open_nursery() as n:
                        for nd, ks in by_master.items():
                            n.start_soon(self._submit, got, nd, [ops[k] for k in ks])
            todo = []
            for nd, ks in by_master.items():
                results = got.get(nd)
                for pos, k in enumerate(ks):
                    r = results[pos] if results is not None else None
                    if r is None or r.code == Unavailable.code:
                        uncertain.add(k)
                        last[k] = (r.message or "unavailable") if r is not None else f"the master {nd} did not answer"
                        todo.append(k)
                        if r is not None and nd not in again.setdefault(k, set()):
                            # It answered: it is up, and was most likely outvoted while replicating (a newer
                            # master fenced it; it has stepped down). Ask it once more, so that it wins the
                            # partition back, rather than send the write on and make the next replica campaign:
                            # that would fence the in-flight writes of every other coordinator, which would
                            # move on in turn, and so on (duelling candidates). A second `unavailable` (a
                            # read-only disk, no quorum behind it) moves the write on.
                            again[k].add(nd)
                            tried[k].discard(nd)
                    else:
                        out[k] = r
            if not todo or trio.current_time() + backoff >= deadline:
                break
            await trio.sleep(backoff)
            backoff = min(2 * backoff, limits.WRITE_RETRY_MAX_S)
        for k in todo:
            out[k] = m.WriteResult("error", code="unavailable", message=last.get(k, "not acknowledged"))
        for k in uncertain:
            r = out[k]
            op = ops[k]
            if r is None:
                continue
            if isinstance(op, m.DeleteOp) and r.code == Deleted.code:
                out[k] = m.WriteResult("ok")  # an earlier try deleted it
            elif isinstance(op, m.CreateOp) and op.generated and r.status == "exists":
                out[k] = m.WriteResult("created", r.tweet)  # an earlier try created it: still a new tweet to the client
        return [r if r is not None else m.WriteResult("error", code="unavailable") for r in out]

    async def _submit(self, got: dict[str, list[m.WriteResult] | None], nd: str, ops: list[m.WriteOp]) -> None:
        got[nd] = await self._batcher.submit(nd, ops)

    async def _send_writes(self, master: str, ops: list[m.WriteOp]) -> list[m.WriteResult] | None:
        """One WriteReq of a batch (node/cluster/batching.py); None when the master did not answer in time."""
        try:
            resp = await self.peers.call(master, m.WriteReq(ops), limits.WRITE_CALL_TIMEOUT_S)
        except MurmurError as e:
            log.info("call_failed", to=master, request="WriteReq", ops=len(ops), error=e.code)
            return None
        results: list[m.WriteResult] = resp.results
        return results

    def _new_op(self, t: TweetIn, now: int) -> m.CreateOp:
        try:
            if t.created_at_ms is not None:
                check_created_at(t.created_at_ms, now)  # a client's time is data: bounded, never the id clock
            if t.id is not None:
                return m.CreateOp(t, t.id, t.created_at_ms if t.created_at_ms is not None else now, False)
            ident = self.ids.id_for(t.created_at_ms) if t.created_at_ms is not None else self.ids.next_id(now)
        except IdOutOfRange as e:
            raise InvalidField(str(e), "created_at") from None
        return m.CreateOp(t, ident, t.created_at_ms if t.created_at_ms is not None else now, True)

    async def bulk_create(self, items: list[TweetIn]) -> list[Created | MurmurError]:
        now = self.clock_ms()
        out: list[Created | MurmurError | None] = [None] * len(items)
        ops: dict[int, m.CreateOp] = {}
        for k, t in enumerate(items):
            try:
                ops[k] = self._new_op(t, now)
            except MurmurError as e:
                out[k] = e
        # Two lines of one batch with the same client id: the later one is checked after the earlier is stored.
        for _attempt in range(limits.ID_RETRIES_MAX):
            if not ops:
                break
            first: dict[int, int] = {}
            now_ops: dict[int, m.CreateOp] = {}
            for k, op in ops.items():
                if op.id in first:
                    continue
                first[op.id] = k
                now_ops[k] = op
            keys = list(now_ops)
            res = await self._write([now_ops[k] for k in keys])
            for k, r in zip(keys, res, strict=True):
                del ops[k]
                if r.status in ("created", "exists") and r.tweet is not None:
                    out[k] = Created(r.tweet, r.status == "created")
                elif r.code == "id_taken":
                    ops[k] = self._new_op(items[k], now)
                else:
                    out[k] = _error(r)
        for k in ops:
            out[k] = Unavailable("could not find a free id", "id")
        return [o if o is not None else Unavailable("not written") for o in out]

    async def create_tweet(self, t: TweetIn) -> Created:
        (res,) = await self.bulk_create([t])
        if isinstance(res, MurmurError):
            raise res
        return res

    async def patch_tweet(self, tweet_id: int, patch: TweetPatch) -> Tweet:
        (r,) = await self._write([m.PatchOp(tweet_id, patch)])
        if r.status != "ok" or r.tweet is None:
            raise _error(r)
        return r.tweet

    async def delete_tweet(self, tweet_id: int) -> None:
        (r,) = await self._write([m.DeleteOp(tweet_id)])
        if r.status != "ok":
            raise _error(r)

    # ------------------------------------------------------------ cluster

    def cluster_view(self) -> dict[str, object]:
        out: dict[str, object] = {**self.cluster_info, "coordinator": self.me}
        if self.keeper is not None:
            t = self.keeper.topology
            out.update(topology=t.version, change=t.change or None, partitions=len(self.placement.ring.partitions()))
        out["members"] = self.members()
        return out

    def health(self) -> dict[str, object]:
        members = self.members()
        down = [mb["name"] for mb in members if mb["name"] != self.me and not self.peers.is_up(mb["name"])]
        tweets = len(self.service.shard.tweets) if self.service is not None else 0
        mode = self.service.mode if self.service is not None else None
        status = "degraded" if down or (mode is not None and mode.read_only) else "ok"
        out: dict[str, object] = {"status": status, "node": self.me, "tweets": tweets}
        if down:
            out["down"] = down
        if mode is not None and mode.read_only:  # it cannot persist: writes 503, reads served (CONTRACT §2)
            out.update(storage="read_only", reason=mode.reason)
        if self.keeper is not None and self.keeper.state != "normal":
            out["ring"] = self.keeper.state  # joining: it serves no reads of its own ranges yet
        return out

    def metrics_samples(self) -> list[tuple[str, str, dict[str, str], float]]:
        if self.service is None:
            return []
        sh = self.service.shard
        ix = sh.index
        return [
            ("murmur_tweets", "Tweets stored on this node (all partitions it replicates)", {}, float(len(sh.tweets))),
            ("murmur_tombstones", "Delete tombstones kept on this node", {}, float(len(sh.tombstones))),
            ("murmur_index_terms", "Distinct terms in the local index", {}, float(ix.terms_count())),
            ("murmur_index_postings", "Postings in the local index", {}, float(ix.postings_count())),
            ("murmur_index_bytes", "Estimated memory of the local index", {}, float(ix.memory_bytes())),
            ("murmur_outbox_pending", "Index work not yet on W copies of its term partitions", {}, float(len(sh.outbox))),
            ("murmur_replication_lag_records", "Index records not yet acknowledged by W copies", {}, float(len(sh.outbox))),
            ("murmur_elections_won_total", "Partition master elections this node won", {}, float(self.service.elections_won)),
            ("murmur_synced_keys_total", "Keys exchanged by catch-up and anti-entropy", {}, float(self.service.synced_keys)),
            ("murmur_hints_pending_records", "Hinted-handoff records waiting, all down replicas together", {}, float(
                sum(self.service.hints.pending(n) for n in self.service.hints.nodes_with_hints())
                if self.service.hints is not None else 0
            )),
            *(self.service.hints.metrics_samples() if self.service.hints is not None else []),
        ]
