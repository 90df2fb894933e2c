"""Distributed search: candidates newest first from the driving terms' postings (fetched in growing windows from
the newest end), other terms probed only for those candidates (the short side is sent to the long one), then
the survivors hydrated from their tweet partitions and checked exactly against the query (node.query.match).

The control flow is Blender's: stages (windows -> probes -> hydrate) run as batches of parallel calls, one per
node, each with a deadline; `stages` records the time of each for explain=true. Fetching is injected (the
coordinator does R-replica reads), so this module never touches a socket itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from node.cluster import limits
from node.cluster.plan import driver, driving_terms, may_match, positive_terms
from node.index.matcher import phrase_checker
from node.model import Tweet
from node.query.ast import Query, terms_of
from node.replication.messages import WindowResult

ID_MAX = 2**64 - 1
CHUNK = 512  # candidates probed and hydrated per batch
WINDOW_MIN = 128  # the first window of each driving term (it grows x4 per round)
PUSHDOWN_WINDOW_MIN = 16  # the first window of a pushed-down query

# Fetchers return (answer, partial: some partition had fewer than R answers, disagree: its replicas differed).
Windows = Callable[[dict[str, tuple[int, int, int]]], Awaitable[tuple[dict[str, WindowResult], bool, bool]]]
Probes = Callable[[dict[str, list[int]]], Awaitable[tuple[dict[str, set[int]], bool, bool]]]
Pushdown = Callable[[int, int, int], Awaitable[tuple[WindowResult | None, bool, bool]]]
Hydrate = Callable[[list[int]], Awaitable[tuple[dict[int, Tweet], bool]]]


@dataclass
class _TermState:
    ids: list[int] = field(default_factory=list)  # newest first, complete from the top down to `floor`
    floor: int = ID_MAX
    exhausted: bool = False
    df: int = 0
    limit: int = 0
    members: set[int] = field(default_factory=set)


@dataclass
class Outcome:
    tweets: list[Tweet]
    partial: bool
    stages: dict[str, float]
    # A local-first search's results as (id, version), newest first, instead of `tweets`: rendered from the
    # node's own copy (or from `fetched`, the other replica's newer copies) only for the page returned.
    hits: list[tuple[int, int]] | None = None
    fetched: dict[int, Tweet] = field(default_factory=dict)


async def run_search(
    q: Query,
    need: int,
    max_id: int | None,
    since_id: int | None,
    windows: Windows,
    probes: Probes,
    hydrate: Hydrate,
    deadline: float,
) -> Outcome:
    """The newest `need` tweets matching q with since_id < id <= max_id, newest first."""
    stages: dict[str, float] = {}

    def lap(name: str, t0: float) -> None:
        stages[name] = round(stages.get(name, 0.0) + (time.perf_counter() - t0) * 1000, 3)

    hi = ID_MAX if max_id is None else max_id
    lo = 0 if since_id is None else since_id
    if hi <= lo:
        return Outcome([], False, stages)
    partial = False
    # Candidates are checked against the tweet itself when the postings cannot decide (phrases, filters) or when
    # R replicas of a term disagreed (one may hold a posting an acknowledged edit removed on the others).
    verify = q.needs_tweet()
    check = phrase_checker(q)  # exactly node.query.match.matches(q, .), faster on phrases
    pos = positive_terms(q.root)
    st: dict[str, _TermState] = {t: _TermState() for t in pos}
    first = max(2 * need, WINDOW_MIN)

    async def fetch(terms: list[str]) -> None:
        nonlocal partial, verify
        t0 = time.perf_counter()
        asks = {}
        for t in terms:
            s = st[t]
            s.limit = min(limits.WINDOW_LIMIT_MAX, max(first, s.limit * 4))
            asks[t] = (min(hi, s.floor - 1) if s.ids else hi, lo, s.limit)
        got, part, disagree = await windows(asks)
        partial, verify = partial or part, verify or disagree
        for t, r in got.items():
            s = st[t]
            s.ids.extend(r.ids)
            s.members.update(r.ids)
            s.df = max(s.df, r.df)
            s.exhausted = r.exhausted
            s.floor = r.ids[-1] if r.ids else s.floor
            if r.exhausted:
                s.floor = lo + 1
        for t in terms:
            if t not in got:  # no replica answered: nothing known, nothing more to learn this time
                st[t].exhausted, st[t].floor = True, lo + 1
        lap("windows", t0)

    await fetch(sorted(pos))
    df = {t: s.df for t, s in st.items()}
    dterms = sorted(driving_terms(driver(q.root, df), df))
    others = sorted(terms_of(q.root) - set(dterms))
    results: list[Tweet] = []
    top = hi  # candidates above `top` are done
    seen: set[int] = set()
    for _round in range(limits.SEARCH_ROUNDS_MAX):
        floor = max((st[t].floor for t in dterms), default=lo + 1)
        floor = max(floor, lo + 1)
        cands = sorted({i for t in dterms for i in st[t].ids if floor <= i <= top} - seen, reverse=True)
        start, size = 0, max(8, need - len(results))  # the first batch is what the page needs; later ones grow
        while start < len(cands):
            if time.monotonic() > deadline:
                return Outcome(results[:need], True, stages)
            chunk = cands[start : start + size]
            start, size = start + size, min(CHUNK, size * 2)
            seen.update(chunk)
            known: dict[str, set[int]] = {}
            ask: dict[str, list[int]] = {}
            for t in others:
                s = st.get(t)
                if s is not None and chunk[-1] >= s.floor:
                    known[t] = s.members
                else:
                    ask[t] = chunk
            if ask:
                t0 = time.perf_counter()
                got, part, disagree = await probes(ask)
                partial, verify = partial or part, verify or disagree
                known.update(got)
                lap("probes", t0)
            sets = {t: st[t].members for t in dterms}
            sets.update(known)
            survivors = [i for i in chunk if may_match(q.root, _member(sets, i), prune_not=not verify)]
            if not survivors:
                continue
            t0 = time.perf_counter()
            tweets, part = await hydrate(survivors)
            partial = partial or part
            lap("hydrate", t0)
            t0 = time.perf_counter()
            for i in survivors:
                tw = tweets.get(i)
                if tw is not None and (not verify or check(tw)):
                    results.append(tw)
            lap("verify", t0)
            if len(results) >= need:
                return Outcome(results[:need], partial, stages)
        top = floor - 1
        if top <= lo or all(st[t].exhausted for t in dterms):
            return Outcome(results, partial, stages)
        if time.monotonic() > deadline:
            return Outcome(results, True, stages)
        await fetch([t for t in dterms if not st[t].exhausted and st[t].floor >= floor])
    return Outcome(results, True, stages)


def _member(sets: dict[str, set[int]], i: int) -> Callable[[str], bool]:
    empty: set[int] = set()
    return lambda term: i in sets.get(term, empty)


async def run_pushdown(
    q: Query,
    need: int,
    max_id: int | None,
    since_id: int | None,
    pushdown: Pushdown,
    hydrate: Hydrate,
    deadline: float,
) -> Outcome | None:
    """The same answer as run_search, when R replicas each hold every term of the query: each evaluates the whole
    query on its own index (fast local AND/OR/NOT), the windows merge, and the ids are hydrated. None when no R
    holders answered (the caller falls back to run_search)."""
    stages: dict[str, float] = {}
    hi = ID_MAX if max_id is None else max_id
    lo = 0 if since_id is None else since_id
    if hi <= lo:
        return Outcome([], False, stages)
    verify = q.needs_tweet()
    check = phrase_checker(q)
    partial = False
    limit = max(need + need // 2, PUSHDOWN_WINDOW_MIN)
    results: list[Tweet] = []
    for _round in range(limits.SEARCH_ROUNDS_MAX):
        t0 = time.perf_counter()
        res, part, disagree = await pushdown(hi, lo, limit)
        stages["query"] = round(stages.get("query", 0.0) + (time.perf_counter() - t0) * 1000, 3)
        if res is None:
            return None
        partial, verify = partial or part, verify or disagree
        ids = res.ids
        start, size = 0, max(8, need - len(results))
        while start < len(ids):
            if time.monotonic() > deadline:
                return Outcome(results[:need], True, stages)
            chunk = ids[start : start + size]
            start, size = start + size, min(CHUNK, size * 2)
            t0 = time.perf_counter()
            tweets, part = await hydrate(chunk)
            partial = partial or part
            stages["hydrate"] = round(stages.get("hydrate", 0.0) + (time.perf_counter() - t0) * 1000, 3)
            for i in chunk:
                tw = tweets.get(i)
                if tw is not None and (not verify or check(tw)):
                    results.append(tw)
            if len(results) >= need:
                return Outcome(results[:need], partial, stages)
        if res.exhausted or not ids or ids[-1] - 1 <= lo:
            return Outcome(results, partial, stages)
        hi = ids[-1] - 1
        limit = min(limits.WINDOW_LIMIT_MAX, limit * 4)
    return Outcome(results, True, stages)
