"""The search path as a pure cursor, sans-I/O in the way of h11's Connection: `SearchCursor` says what to fetch
next as data, `next_step() -> Windows | Probes | Pushdown | Digest | Hydrate | Done`, and is fed what came back,
`feed(answer)`. No trio, no clock, no awaits. The coordinator (node/cluster/coordinator.py `drive`) carries the
steps out under the request's deadline, times them by type, and sends the read repairs listed in `repairs`.

One cursor, three plans (the coordinator picks one from the placement):
- local: every partition is on this node (N = the number of nodes). A round evaluates the query on this node's
  index and copy, and confirms the window with ONE other replica's digest (node/search/digest.py): the peers
  come in a rotating order, and the next one is asked when one fails. R = 1 needs no second copy.
- pushdown: R nodes hold the partition of every term of the query. Each evaluates the whole query; the windows
  merge. A holder that fails is replaced by a spare one for that round; when fewer than R answer, the search
  starts over on the terms plan.
- terms: candidates newest first from the driving terms' postings (node/search/plan.py), fetched in windows
  that grow x4 a round from the newest end; the other terms are probed for those candidates only.
Every round's candidates go through the ONE chunked hydrate-and-verify loop (`_hydrate_and_verify`): on the
terms plan, probe the chunk and keep what may match; hydrate what needs its tweet (R replicas, the newest version
wins; the local plan reads its own copy, already confirmed by the digest); check each against the query where
the postings cannot decide. Chunks grow from what the page still needs (at least 8) x2 up to CHUNK.

Rules:
- Exact unless `partial`: some key was answered by fewer than R replicas, a local search found no second copy,
  the rounds ran out (limits.SEARCH_ROUNDS_MAX), or the caller's deadline did (`outcome(timed_out=True)`).
- `verify` (check every candidate against its tweet): the query needs the text (phrases, filters), or replicas
  disagreed, or some copy holds streamed postings of the query's terms (`unsure`: from each answer, and for the
  local plan's own copy from the caller): a union of copies may hold a posting that an acknowledged edit
  removed, so a NOT must not exclude on it either.
- A result is (id, version) of a copy the R copies agree is the newest; the page is the `need` newest.
- Read repairs are collected in `repairs` as the answers show them (a stale or missing copy among those read),
  for the shell to send once the search is over, whatever its outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from node.cluster import limits
from node.index.matcher import Fields, phrase_checker
from node.model import Tweet
from node.query.ast import Query, terms_of
from node.records import DeleteTweet, PutTweet, Record
from node.replication.messages import GetResp, WindowResult
from node.replication.quorum import merge_windows
from node.search.digest import PeerDigest, Resolution, alone, resolve
from node.search.plan import driver, driving_terms, may_match, positive_terms

ID_MAX = 2**64 - 1
CHUNK = 512  # candidates probed and hydrated per batch, at most
WINDOW_MIN = 128  # the first window of each driving term (it grows x4 per round)
PUSHDOWN_WINDOW_MIN = 16  # the first window of a pushed-down (or local) query

Plan = Literal["local", "pushdown", "terms"]
Copy = Tweet | DeleteTweet


# ------------------------------------------------------------------ what the cursor asks for


class Windows(msgspec.Struct, frozen=True):
    """The next window of these driving terms, from R replicas of each term's partition:
    term -> (max_id inclusive, since_id exclusive (0: none), limit)."""

    asks: dict[str, tuple[int, int, int]]


class Probes(msgspec.Struct, frozen=True):
    """Which of these candidate ids each term's postings hold, from R replicas of the term's partition."""

    asks: dict[str, list[int]]


class Pushdown(msgspec.Struct, frozen=True):
    """Ask each of `nodes` (holders of every term) to evaluate the whole query (a QueryReq)."""

    nodes: list[str]
    query: Query
    hi: int  # max_id, inclusive
    lo: int  # since_id, exclusive (0: none)
    limit: int


class Digest(msgspec.Struct, frozen=True):
    """A local-first round: evaluate the query on this node's index (unless `mine` is given: the same round again,
    for the next peer), then, when `peer` is set, ask it for its digest of the same window (DigestQueryReq)."""

    peer: str | None
    query: Query
    hi: int
    lo: int
    limit: int
    mine: list[tuple[int, int]] | None = None
    exhausted: bool = False


class Hydrate(msgspec.Struct, frozen=True):
    """The tweets of these ids: from R replicas of their partitions, or (local) from this node's own copy. A local
    one with a `check` wants no tweets: only which of the ids this node holds live and pass it, at what version
    (HydrateAnswer.passed; TweetStore.passing reads a row's fields as the check needs them)."""

    ids: list[int]
    local: bool
    check: Callable[[Fields], bool] | None = None


@dataclass
class Outcome:
    tweets: list[Tweet]
    partial: bool
    stages: dict[str, float]
    # A local search's results as (id, version), newest first, instead of `tweets`: rendered from the node's own
    # copy (or from `fetched`, the other replica's newer copies and those built for a check) for the page only.
    hits: list[tuple[int, int]] | None = None
    fetched: dict[int, Tweet] = field(default_factory=dict)


class Done(msgspec.Struct, frozen=True):
    outcome: Outcome


Step = Windows | Probes | Pushdown | Digest | Hydrate | Done


# ------------------------------------------------------------------ what it is fed


class WindowsAnswer(msgspec.Struct):
    replies: dict[str, list[WindowResult]]  # term -> the window of each replica that answered


class ProbesAnswer(msgspec.Struct):
    replies: dict[str, list[tuple[list[int], bool]]]  # term -> (ids present, unsure) of each replica that answered


class PushdownAnswer(msgspec.Struct):
    replies: dict[str, WindowResult]  # node -> its window, for the nodes that answered


class DigestAnswer(msgspec.Struct):
    mine: list[tuple[int, int]]  # this node's window as (id, version), newest first
    exhausted: bool  # ... and nothing of this node's matches below it
    digest: PeerDigest | None  # the peer's answer; None: it failed, or none was asked
    versions: dict[int, int] = {}  # this node's versions of digest.unknown_ids(mine, digest) (0: no copy)


class HydrateAnswer(msgspec.Struct):
    # id -> (node, its copy; None: none) of each replica that answered (a quorum read)
    copies: dict[int, list[tuple[str, Copy | None]]] = {}
    own: dict[int, Tweet] = {}  # a local Hydrate: this node's live copies of the ids it holds
    passed: dict[int, int] = {}  # a local Hydrate with a check: id -> version of the copies here that pass it


Answer = WindowsAnswer | ProbesAnswer | PushdownAnswer | DigestAnswer | HydrateAnswer


class Repair(msgspec.Struct, frozen=True):
    """A read repair for the shell to send: `records` to `node` (None: this node), and this node's own copies of
    `ids` (ids where this node's copy is the newer one)."""

    node: str | None
    records: list[Record]
    ids: list[int] = []


def copies_of(answers: Mapping[int, Sequence[tuple[str, GetResp, int]]]) -> dict[int, list[tuple[str, Copy | None]]]:
    """A quorum read of tweets (node/cluster/fanout.py quorum_read of GetReqs: id -> (node, its GetResp, the
    id's position in it)) as each replica's copy of each id."""
    look: dict[int, dict[int, Copy]] = {}  # id(GetResp) -> its copies by tweet id
    out: dict[int, list[tuple[str, Copy | None]]] = {}
    for i, got in answers.items():
        row: list[tuple[str, Copy | None]] = []
        for nd, resp, _pos in got:
            by_id = look.get(id(resp))
            if by_id is None:
                by_id = look[id(resp)] = {t.id: t for t in resp.tweets}
                by_id.update((d.id, d) for d in resp.tombstones)
            row.append((nd, by_id.get(i)))
        out[i] = row
    return out


def newest(copies: Mapping[int, Sequence[tuple[str, Copy | None]]]) -> tuple[dict[int, Copy], dict[str, list[Record]]]:
    """Per id the highest version among the copies (a tombstone included), and the repairs: each node that holds
    an older copy, or none, gets the newest record."""
    best: dict[int, Copy] = {}
    repairs: dict[str, list[Record]] = {}
    for i, row in copies.items():
        top: Copy | None = None
        for _nd, c in row:
            if c is not None and (top is None or c.version > top.version):
                top = c
        if top is None:
            continue
        best[i] = top
        for nd, c in row:
            if c is None or c.version < top.version:
                repairs.setdefault(nd, []).append(PutTweet(top) if isinstance(top, Tweet) else top)
    return best, repairs


@dataclass
class _TermState:
    ids: list[int] = field(default_factory=list)  # newest first, complete from the top down to `floor`
    floor: int = ID_MAX
    exhausted: bool = False
    df: int = 0
    limit: int = 0
    members: set[int] = field(default_factory=set)


_NONE: frozenset[int] = frozenset()
_Gen = Generator[Step, Answer, bool]


class SearchCursor:
    """The newest `need` tweets matching q with since_id < id <= max_id, newest first.

    `nodes`: the local plan's peers, in the order to ask them; the pushdown plan's holders, in preference order.
    `unsure`: this node holds streamed postings of a term of the query (the local plan's own copy; the other
    plans learn it from each answer).
    """

    def __init__(
        self,
        q: Query,
        need: int,
        max_id: int | None,
        since_id: int | None,
        r: int,
        plan: Plan,
        nodes: Sequence[str] = (),
        unsure: bool = False,
    ) -> None:
        self.q, self.need, self.r, self.plan = q, need, r, plan
        self.local = plan == "local"  # the plan chosen first decides the outcome's shape (hits for a local one)
        self.hi = ID_MAX if max_id is None else max_id
        self.lo = 0 if since_id is None else since_id
        self.nodes = list(nodes)
        self.partial = False
        self.why: list[str] = []  # what made it partial (the first few): for the coordinator's log
        self.verify = q.needs_tweet() or unsure
        self._check: Callable[[Fields], bool] | None = None  # built on first use: most searches check nothing
        self.hits: list[tuple[int, int]] = []
        self.tweets: dict[int, Tweet] = {}
        self.repairs: list[Repair] = []
        self._st: dict[str, _TermState] = {}
        self._dterms: list[str] = []
        self._others: list[str] = []
        self._gen = self._search()
        self._step = self._advance(None)

    # ------------------------------------------------------------ the interface

    def next_step(self) -> Step:
        return self._step

    def feed(self, answer: Answer) -> None:
        if isinstance(self._step, Done):
            raise RuntimeError("the search is done")
        self._step = self._advance(answer)

    def outcome(self, timed_out: bool = False) -> Outcome:
        """The answer: once Done, the cursor's own; before that (the caller's deadline ran out), what was found
        so far, partial."""
        if isinstance(self._step, Done) and not timed_out:
            return self._step.outcome
        return self._outcome(True)

    def _advance(self, answer: Answer | None) -> Step:
        try:
            return self._gen.send(answer)  # type: ignore[arg-type]  # None only starts the generator
        except StopIteration as stop:
            return Done(self._outcome(self.partial or not stop.value))

    def _outcome(self, partial: bool) -> Outcome:
        hits = self.hits[: self.need]
        if self.local:
            return Outcome([], partial, {}, hits, self.tweets)
        return Outcome([self.tweets[i] for i, _v in hits], partial, {})

    # ------------------------------------------------------------ the plans

    def _search(self) -> _Gen:
        """-> True when the search finished within its rounds (exact unless `partial`)."""
        if self.hi <= self.lo:
            return True
        if self.plan == "local":
            return (yield from self._local())
        if self.plan == "pushdown":
            done = yield from self._pushdown()
            if done is not None:
                return done
            # fewer than R holders answered: start over, term by term
            self.plan, self.partial, self.verify = "terms", False, self.q.needs_tweet()
            self.why = []
            self.hits, self.tweets = [], {}
        return (yield from self._terms())

    def _local(self) -> _Gen:
        hi, lo = self.hi, self.lo
        limit = max(self.need + self.need // 2, PUSHDOWN_WINDOW_MIN)
        peers = self.nodes
        for _round in range(limits.SEARCH_ROUNDS_MAX):
            mine: list[tuple[int, int]] | None = None
            exhausted = False
            res: Resolution | None = None
            while res is None:
                peer = peers[0] if self.r > 1 and peers else None
                ans = yield Digest(peer, self.q, hi, lo, limit, mine, exhausted)
                assert isinstance(ans, DigestAnswer)
                mine, exhausted = ans.mine, ans.exhausted
                if ans.digest is not None:
                    res = resolve(mine, exhausted, ans.digest, _version_in(ans.versions))
                    if res.repair_here:
                        self.repairs.append(Repair(None, res.repair_here))
                    if res.repair_peer and peer is not None:
                        self.repairs.append(Repair(peer, [], res.repair_peer))
                elif peer is None:
                    if self.r > 1:  # no second copy answered: our own answer only
                        self._short("local: no peer's digest")
                    res = alone(mine, exhausted)
                else:
                    peers.pop(0)  # failed: the next one, this round and the next
            done = yield from self._hydrate_and_verify(res.ids, res.fetched, dict(mine or ()), res.check)
            if done:
                return True
            if res.exhausted or res.floor - 1 <= lo:
                return True
            hi = res.floor - 1
            limit = min(limits.WINDOW_LIMIT_MAX, limit * 4)
        return False

    def _pushdown(self) -> Generator[Step, Answer, bool | None]:
        """-> None when fewer than R holders answered a round."""
        hi, lo, r = self.hi, self.lo, self.r
        limit = max(self.need + self.need // 2, PUSHDOWN_WINDOW_MIN)
        for _round in range(limits.SEARCH_ROUNDS_MAX):
            answers: list[WindowResult] = []
            todo, spare = self.nodes[:r], self.nodes[r:]  # each round: the preferred holders first again
            while todo and len(answers) < r:
                ans = yield Pushdown(todo, self.q, hi, lo, limit)
                assert isinstance(ans, PushdownAnswer)
                answers.extend(ans.replies[nd] for nd in todo if nd in ans.replies)
                k = r - len(answers)
                todo, spare = spare[:k], spare[k:]
            if len(answers) < r:
                return None
            merged, differ = merge_windows(answers, limit)
            self.verify = self.verify or differ or any(a.unsure for a in answers)
            ids = merged.ids
            if (yield from self._hydrate_and_verify(ids, {}, {}, _NONE)):
                return True
            if merged.exhausted or not ids or ids[-1] - 1 <= lo:
                return True
            hi = ids[-1] - 1
            limit = min(limits.WINDOW_LIMIT_MAX, limit * 4)
        return False

    def _terms(self) -> _Gen:
        root, hi, lo = self.q.root, self.hi, self.lo
        pos = positive_terms(root)
        st = self._st = {t: _TermState() for t in pos}
        yield from self._windows(sorted(pos))
        df = {t: s.df for t, s in st.items()}
        dterms = self._dterms = sorted(driving_terms(driver(root, df), df))
        self._others = sorted(terms_of(root) - set(dterms))
        top = hi  # candidates above `top` are done
        seen: set[int] = set()
        for _round in range(limits.SEARCH_ROUNDS_MAX):
            floor = max(max((st[t].floor for t in dterms), default=lo + 1), lo + 1)
            cands = sorted({i for t in dterms for i in st[t].ids if floor <= i <= top} - seen, reverse=True)
            seen.update(cands)
            if (yield from self._hydrate_and_verify(cands, {}, {}, _NONE, probe=True)):
                return True
            top = floor - 1
            if top <= lo or all(st[t].exhausted for t in dterms):
                return True
            yield from self._windows([t for t in dterms if not st[t].exhausted and st[t].floor >= floor])
        return False

    # ------------------------------------------------------------ the one loop

    def _hydrate_and_verify(
        self,
        cands: list[int],
        given: Mapping[int, Tweet],
        versions: Mapping[int, int],
        checks: set[int] | frozenset[int],
        probe: bool = False,
    ) -> _Gen:
        """Take `cands` (newest first) in chunks: (probe: keep those that may match), hydrate those whose tweet is
        needed and not `given`, keep those that pass the check. A local search needs a tweet only to check it
        (`verify`, or `checks`: copies at one version that answered differently); otherwise its hit is
        (id, its confirmed version from `versions`). -> True once the page is full."""
        local = self.plan == "local"
        start, size = 0, max(8, self.need - len(self.hits))  # the first chunk is what the page needs
        while start < len(cands):
            chunk = cands[start : start + size]
            start, size = start + size, min(CHUNK, size * 2)
            if probe:
                chunk = yield from self._probe(chunk)
                if not chunk:
                    continue
            verify = self.verify
            if local and not verify:  # the digest confirmed this node's copy: a tweet only for the checks
                want = [i for i in chunk if i in checks and i not in given] if checks else []
            else:
                want = [i for i in chunk if i not in given]
            got: Mapping[int, Copy] = {}
            passed: dict[int, int] = {}
            check = self._checker() if verify or checks else None
            if want:
                if local and check is not None:  # every id wanted here is one to check: no Tweet needed
                    ans = yield Hydrate(want, True, check)
                    assert isinstance(ans, HydrateAnswer)
                    passed = ans.passed
                else:
                    ans = yield Hydrate(want, local)
                    assert isinstance(ans, HydrateAnswer)
                    got = self._hydrated(want, ans, local)
            if local and check is None and not given:  # the common case: this node's copies, confirmed
                self.hits += [(i, v) for i in chunk if (v := versions.get(i, 0))]  # (0: gone here meanwhile)
                if len(self.hits) >= self.need:
                    return True
                continue
            for i in chunk:
                if (pv := passed.get(i)) is not None:  # this node's copy, checked where it lies
                    self.hits.append((i, pv))
                    continue
                tw = given.get(i) or got.get(i)
                if tw is not None and not isinstance(tw, Tweet):
                    tw = None  # a tombstone: deleted
                if check is not None and (verify or i in checks):
                    if tw is None or not check(tw):
                        continue
                if tw is not None:
                    self.tweets[i] = tw
                    self.hits.append((i, tw.version))
                elif local:
                    v = versions.get(i, 0)
                    if v:
                        self.hits.append((i, v))
            if len(self.hits) >= self.need:
                return True
        return False

    def _short(self, why: str) -> None:
        self.partial = True
        if len(self.why) < 4:
            self.why.append(why)

    def _checker(self) -> Callable[[Fields], bool]:
        if self._check is None:
            self._check = phrase_checker(self.q)  # exactly node.query.match.matches(q, .), faster on phrases
        return self._check

    def _hydrated(self, want: list[int], ans: HydrateAnswer, local: bool) -> Mapping[int, Copy]:
        if local:  # this node's own copy, which the digest confirmed
            return ans.own
        best, repairs = newest(ans.copies)
        for nd, recs in repairs.items():
            self.repairs.append(Repair(nd, recs))
        if any(len(ans.copies.get(i, ())) < self.r for i in want):
            # fewer than R copies: the one that answered may be stale, or miss the tweet
            self._short(f"hydrate: {sum(len(ans.copies.get(i, ())) < self.r for i in want)} of {len(want)} ids short of R")
        return best

    # ------------------------------------------------------------ the terms plan's fetches

    def _windows(self, terms: list[str]) -> Generator[Step, Answer, None]:
        st, hi, lo = self._st, self.hi, self.lo
        first = max(2 * self.need, WINDOW_MIN)
        asks = {}
        for t in terms:
            s = st[t]
            s.limit = min(limits.WINDOW_LIMIT_MAX, max(first, s.limit * 4))
            asks[t] = (min(hi, s.floor - 1) if s.ids else hi, lo, s.limit)
        ans = yield Windows(asks)
        assert isinstance(ans, WindowsAnswer)
        for t in terms:
            got = ans.replies.get(t) or []
            if len(got) < self.r:
                self._short(f"window {t!r}: {len(got)} of R={self.r} replicas")
            s = st[t]
            if not got:  # no replica answered: nothing known, nothing more to learn this time
                s.exhausted, s.floor = True, lo + 1
                continue
            w, differ = merge_windows(got, asks[t][2])
            # streamed postings (a topology change) may hold a removed posting on every replica asked
            self.verify = self.verify or differ or any(x.unsure for x in got)
            s.ids.extend(w.ids)
            s.members.update(w.ids)
            s.df = max(s.df, w.df)
            s.exhausted = w.exhausted
            s.floor = w.ids[-1] if w.ids else s.floor
            if w.exhausted:
                s.floor = lo + 1

    def _probe(self, chunk: list[int]) -> Generator[Step, Answer, list[int]]:
        """The candidates of `chunk` that may match, from posting membership: the driving terms' windows, the
        other terms' windows where they reach that low, and probes for the rest."""
        st = self._st
        known: dict[str, set[int]] = {}
        ask: dict[str, list[int]] = {}
        for t in self._others:
            s = st.get(t)
            if s is not None and chunk[-1] >= s.floor:
                known[t] = s.members
            else:
                ask[t] = chunk
        if ask:
            ans = yield Probes(ask)
            assert isinstance(ans, ProbesAnswer)
            for t in ask:
                got = ans.replies.get(t) or []
                if len(got) < self.r:
                    self._short(f"probe {t!r}: {len(got)} of R={self.r} replicas")
                if got:
                    copies = [set(p) for p, _u in got]
                    known[t] = set().union(*copies)
                    self.verify = self.verify or any(x != copies[0] for x in copies[1:]) or any(u for _p, u in got)
        sets = {t: st[t].members for t in self._dterms}
        sets.update(known)
        prune_not = not self.verify
        return [i for i in chunk if may_match(self.q.root, _member(sets, i), prune_not=prune_not)]


def _version_in(versions: dict[int, int]) -> Callable[[int], int]:
    return lambda i: versions.get(i, 0)


def _member(sets: dict[str, set[int]], i: int) -> Callable[[str], bool]:
    empty: set[int] = set()
    return lambda term: i in sets.get(term, empty)
