"""The coordinator every node runs (CONTRACT: any node coordinates). Writes go to the acting node of the tweet's
partition (it gets elected), grouped so that a batch costs one call per node; reads ask R replicas of each partition
(this node first when it holds a copy), merge by version and repair stale copies in the background. A search is the
shell of the sans-I/O node/search/cursor.py: `drive` carries out the steps the cursor asks for (calls through
node/cluster/fanout.py) under one deadline, and feeds it the answers.

A cluster of one is the same code with every call local. It implements node.coordinator.Coordinator.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
import trio

from node.cluster import fanout, limits
from node.cluster.batching import WriteBatcher
from node.cluster.placement import Placement
from node.coordinator import Created, SearchRequest, SearchResult, Trend
from node.errors import Conflict, Deleted, InvalidField, MurmurError, NotFound, Unavailable
from node.ids import IdOutOfRange, SnowflakeGenerator, check_created_at
from node.model import Tweet, TweetIn, TweetPatch, render
from node.query.ast import terms_of
from node.replication import messages as m
from node.search.cursor import (
    Answer,
    Digest,
    DigestAnswer,
    Done,
    Hydrate,
    HydrateAnswer,
    Outcome,
    Plan,
    Probes,
    ProbesAnswer,
    Pushdown,
    PushdownAnswer,
    Repair,
    SearchCursor,
    Step,
    Windows,
    WindowsAnswer,
    copies_of,
    newest,
)
from node.search.digest import unknown_ids
from node.search.order import order_results
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


# explain's stages (and the stage histograms): a step's calls are timed under _STAGE, the cursor's work on its
# answer under _FED, the stage that work belongs to: after a digest, this node's confirmed copies made into hits
# ("hydrate", as the local plan's own reads); after a hydration, the exact checks ("verify").
_STAGE = {Windows: "windows", Probes: "probes", Pushdown: "query", Digest: "query", Hydrate: "hydrate"}
_FED = {Windows: "windows", Probes: "probes", Pushdown: "query", Digest: "hydrate", Hydrate: "verify"}


async def drive(cur: SearchCursor, run: Callable[[Step], Awaitable[Answer]]) -> Outcome:
    """Carry a search cursor (node/search/cursor.py) to its end within limits.SEARCH_DEADLINE_S: each step's calls
    (`run`), then its answer fed back. When the deadline runs out, what was found so far, `partial`."""
    ms: dict[str, float] = {}
    with trio.move_on_after(limits.SEARCH_DEADLINE_S) as scope:
        while not isinstance(step := cur.next_step(), Done):
            t0 = time.perf_counter()
            answer = await run(step)
            t1 = time.perf_counter()
            cur.feed(answer)
            t2 = time.perf_counter()
            kind = type(step)
            stage, fed = _STAGE[kind], _FED[kind]
            ms[stage] = ms.get(stage, 0.0) + (t1 - t0) * 1000
            ms[fed] = ms.get(fed, 0.0) + (t2 - t1) * 1000
    out = cur.outcome(timed_out=scope.cancelled_caught)
    out.stages = {k: round(v, 3) for k, v in ms.items()}
    return out


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
        *,
        service: Any = None,
        keeper: Any = None,
    ) -> None:
        """`service`: this node's NodeService (local-first searches read its copy; health figures); `keeper`:
        node.cluster.rebalance.Keeper, this node's topology for /health and /cluster. None: a coordinator
        without them (some tests)."""
        self.me = me
        self.placement = placement
        self.r = r
        self.peers = peers
        self.ids = ids
        self.clock_ms = clock_ms
        self.members = members
        self.cluster_info = cluster_info
        self.repairs = repairs
        self.service: Any = service
        self.keeper: Any = keeper
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

    async def _read(
        self, keys: list[Any], replicas_of: Callable[[Any], tuple[str, ...]], make: Callable[[list[Any]], Any]
    ) -> dict[Any, list[tuple[str, Any, int]]]:
        """R replicas of each key (node/cluster/fanout.py): -> key -> [(node, response, position of the key)]."""
        return await fanout.quorum_read(
            self.peers.call, keys, replicas_of, make,
            r=self.r, me=self.me, alive=self._alive(), timeout_s=limits.SEARCH_PEER_TIMEOUT_S,
        )

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

    def _digest_peers(self) -> list[str]:
        """The replicas a local-first search may ask, starting at a different one each time (never a fixed one:
        the load spreads and no node evaluates every query)."""
        others = [nd for nd in self.placement.ring.nodes if nd != self.me and self.peers.is_up(nd)]
        if not others:
            return []
        self._rotor += 1
        k = self._rotor % len(others)
        return others[k:] + others[:k]

    def _repair(self, node: str, recs: list[Record]) -> None:
        if self.repairs is None or not recs:
            return
        try:
            self.repairs.send_nowait((node, recs))
        except trio.WouldBlock:
            pass  # bounded: anti-entropy brings the copy up to date later

    async def _hydrate(self, ids: list[int]) -> HydrateAnswer:
        """Each replica's copy of each id, R replicas of its tweet partition."""
        got = await self._read(ids, lambda i: self.placement.tweet(i)[1], m.GetReq)
        return HydrateAnswer(copies_of(got))

    async def get_tweet(self, tweet_id: int) -> Tweet:
        ans = await self._hydrate([tweet_id])
        best, repairs = newest(ans.copies)
        for nd, recs in repairs.items():
            self._repair(nd, recs)  # stale replicas, in the background
        if len(ans.copies.get(tweet_id, ())) < self.r:  # fewer than R copies: the one that did may be stale
            raise Unavailable(f"tweet {tweet_id}: fewer than R={self.r} replicas answered")
        t = best.get(tweet_id)
        if not isinstance(t, Tweet):
            raise NotFound(f"no tweet with id {tweet_id}", "id")
        return t

    # ------------------------------------------------------------ search: the shell of node/search/cursor.py

    async def _run(self, step: Step) -> Answer:
        """Carry out one step of a search cursor: the calls it asks for, as its answer."""
        if isinstance(step, Digest):
            return await self._digest(step)
        if isinstance(step, Hydrate):
            if step.local:
                return self.service.hydrate_local(step)
            return await self._hydrate(step.ids)
        if isinstance(step, Windows):
            asks = step.asks
            got = await self._read(
                sorted(asks),
                lambda t: self.placement.term(t)[1],
                lambda ts: m.WindowReq([m.WindowItem(t, asks[t][0], asks[t][1] or None, asks[t][2]) for t in ts]),
            )
            return WindowsAnswer({t: [resp.items[pos] for _nd, resp, pos in row] for t, row in got.items()})
        if isinstance(step, Probes):
            asks_p = step.asks
            got = await self._read(
                sorted(asks_p),
                lambda t: self.placement.term(t)[1],
                lambda ts: m.ProbeReq([m.ProbeItem(t, asks_p[t]) for t in ts]),
            )
            return ProbesAnswer({t: [(resp.present[pos], resp.unsure) for _nd, resp, pos in row] for t, row in got.items()})
        assert isinstance(step, Pushdown), step
        req = m.QueryReq(step.query.root, step.hi, step.lo or None, step.limit)
        answers = await fanout.gather(self.peers.call, dict.fromkeys(step.nodes, req), limits.RPC_TIMEOUT_S)
        return PushdownAnswer({nd: resp.result for nd, resp in answers.items()})

    async def _digest(self, step: Digest) -> DigestAnswer:
        """This node's window of the query (unless the step carries it), and the peer's digest of its own."""
        svc = self.service
        store = svc.shard.store
        root = step.query.root
        mine, exhausted = step.mine, step.exhausted
        if mine is None:
            ids, exhausted = svc.local_window(root, step.hi, step.lo or None, step.limit)
            mine = list(zip(ids, store.versions(ids), strict=True))
        if step.peer is None:
            return DigestAnswer(mine, exhausted, None)
        try:
            resp = await self.peers.call(
                step.peer, m.DigestQueryReq(root, step.hi, step.lo or None, step.limit, mine),
                limits.SEARCH_PEER_TIMEOUT_S,
            )
        except MurmurError as e:
            log.info("digest_failed", to=step.peer, error=e.code)
            return DigestAnswer(mine, exhausted, None)
        unknown = unknown_ids(mine, resp.digest)
        versions = dict(zip(unknown, store.versions(unknown), strict=True)) if unknown else {}
        return DigestAnswer(mine, exhausted, resp.digest, versions)

    def _send_repairs(self, repairs: list[Repair]) -> None:
        for rep in repairs:
            recs = list(rep.records)
            if rep.ids:  # this node's copies, newer than the peer's
                recs += [r for r in map(self.service.record_of, rep.ids) if r is not None]
            self._repair(rep.node or self.me, recs)

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
        q = req.query
        if self.service is not None and self.service.local_index and self.r <= 2:  # R copies: ours + one digest
            peers = self._digest_peers()
            unsure = self.service.query_unsure(q.root)  # streamed postings here: check every candidate
            cur = SearchCursor(q, need, req.max_id, req.since_id, self.r, "local", peers, unsure)
        else:
            holders = self._holders(terms_of(q.root))
            plan: Plan = "pushdown" if len(holders) >= self.r else "terms"
            cur = SearchCursor(q, need, req.max_id, req.since_id, self.r, plan, holders)
        # this node's writers hold their next chunk back while the search runs (node/cluster/lanes.py)
        with self.service.replica.lane.searching() if self.service is not None else contextlib.nullcontext():
            out = await drive(cur, self._run)
        self._send_repairs(cur.repairs)
        if out.partial:  # why, for whoever reads the log (the answer says only `partial`)
            log.info("search_partial", plan=cur.plan, why=cur.why or ["rounds or the deadline ran out"],
                     stages=out.stages)
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
            got = await fanout.gather(
                self.peers.call,
                {nd: m.TrendsReq(window_s * 1000, now_ms, None if nd in whole else rs) for nd, rs in by_node.items()},
                limits.RPC_TIMEOUT_S,
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
            for j, k in enumerate(todo):
                if j and not j % limits.PLACE_EVERY:
                    await trio.lowlevel.checkpoint()
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
            ident = self.ids.id_for(t.created_at_ms) if t.created_at_ms is not None else self._new_id(now)
        except IdOutOfRange as e:
            raise InvalidField(str(e), "created_at") from None
        return m.CreateOp(t, ident, t.created_at_ms if t.created_at_ms is not None else now, True)

    def _new_id(self, now: int) -> int:
        """A new Snowflake id. When this node holds every partition (N = the number of nodes), it skips sequence
        numbers until the id's partition is one this node would route to itself (LOCAL_ID_TRIES at most): the
        write then needs no hop to another node's master, and every node still stores every tweet, so the data
        stays where it would be anyway. Ids stay unique and time-ordered; only the sequence numbers have gaps."""
        ident = self.ids.next_id(now)
        if self.service is None or not self.service.local_index:
            return ident
        for _ in range(limits.LOCAL_ID_TRIES):
            if self._acting_for(self.placement.tweet(ident)) == self.me:
                break
            ident = self.ids.next_id(now)
        return ident

    async def bulk_create(self, items: list[TweetIn]) -> list[Created | MurmurError]:
        now = self.clock_ms()
        out: list[Created | MurmurError | None] = [None] * len(items)
        ops: dict[int, m.CreateOp] = {}
        for k, t in enumerate(items):
            if k and not k % limits.PLACE_EVERY:
                await trio.lowlevel.checkpoint()  # searches interleave with a big bulk's id generation
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
            ("murmur_index_side_postings", "Postings of tweets that arrived out of id order (no word pairs)", {},
             float(ix.side_postings_count())),
            ("murmur_index_staged_tweets", "Tweets staged for id order, without docnos and word pairs yet", {},
             float(ix.staged_count())),
            ("murmur_index_pair_postings", "Word-pair postings that speed up phrases (-1: none kept, phrases use "
             "the words alone)", {}, float(ps[2] if (ps := ix.pairs_stats()) is not None else -1)),
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
