"""The search cursor (node/search/cursor.py) driven by an in-memory fetcher over three replicas' shards that
disagree (stale copies, missing copies, tombstones, replicas that do not answer), against the brute-force model
(node.query.match.matches over the newest copy of each tweet): every plan (local with digests, pushdown, terms)
gives exactly the model's newest `need` matches, at their newest versions, unless it says `partial`; it says
`partial` whenever fewer than R copies could be read. The replicas are real NodeServices' read methods over real
Shards (what the coordinator's calls reach); the fetcher plays the network, synchronously: no trio, no clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import node.search.cursor as cursor_mod
from node.cluster.placement import Placement
from node.cluster.service import NodeService
from node.errors import InvalidQuery
from node.model import Tweet
from node.query.ast import Query
from node.query.match import matches
from node.query.parser import parse
from node.records import DeleteTweet, PutTweet
from node.replication import messages as m
from node.ring.ring import Ring
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
    SearchCursor,
    Step,
    Windows,
    WindowsAnswer,
    copies_of,
)
from node.search.digest import unknown_ids
from node.shard import Shard
from tests.support.mempool import NOW_MS, MemLog

NAMES = ("a", "b", "c")
R = 2
ME = "a"  # the coordinator of the local plan (it always answers: it is this process)

WORDS = ["apple", "banana", "cherry", "date"]
word = st.sampled_from(WORDS)
tag = word.map(lambda w: "#" + w)
text = st.lists(st.one_of(word, word, tag, st.sampled_from(["@ann", "@bob", "!", "x"])), min_size=1, max_size=6).map(
    " ".join
)
# words mostly: a phrase (or a filter) makes every candidate checked, which hides what the postings decide
phrase = st.tuples(word, word).map(lambda p: f'"{p[0]} {p[1]}"')
atom = st.one_of(word, word, word, tag, phrase, st.just("from:ann"))
part = st.one_of(atom, atom, st.tuples(atom, atom).map(lambda p: f"{p[0]} OR {p[1]}"), atom.map(lambda a: "-" + a))
query = st.lists(part, min_size=1, max_size=3).map(" ".join)


@dataclass
class History:
    """One tweet's writes, oldest first (version k + 1 is texts[k]), then maybe its delete; which copy each
    replica holds: the newest on at least two replicas (W = 2), the third one any older state or none."""

    id: int
    user: str
    texts: list[str]
    deleted: bool
    lagging: str | None  # the replica that may not hold the newest state
    lag_to: int  # ... the number of writes it holds (0: none)

    def state(self, k: int) -> Tweet | DeleteTweet | None:
        """The tweet after its first k writes (the delete is the last write)."""
        if k == 0:
            return None
        if self.deleted and k == len(self.texts) + 1:
            return DeleteTweet(self.id, k, NOW_MS, local=True)
        return Tweet(id=self.id, created_at_ms=NOW_MS, user=self.user, text=self.texts[k - 1], version=k)

    def writes(self) -> int:
        return len(self.texts) + self.deleted

    def held_by(self, node: str) -> int:
        """How many of the writes `node` holds."""
        return self.lag_to if node == self.lagging else self.writes()

    def newest(self) -> Tweet | None:
        s = self.state(self.writes())
        return s if isinstance(s, Tweet) else None


@st.composite
def histories(draw: st.DrawFn) -> list[History]:
    n = draw(st.integers(1, 24))  # few: a disagreement elsewhere must not always hide the one that matters
    out = []
    for k in range(n):
        texts = draw(st.lists(text, min_size=1, max_size=3))
        h = History(1000 + 7 * k, draw(st.sampled_from(["ann", "bob"])), texts, draw(st.booleans()),
                    draw(st.sampled_from([None, *NAMES])), 0)
        h.lag_to = draw(st.integers(0, h.writes()))
        out.append(h)
    return out


def replicas(hist: list[History]) -> dict[str, NodeService]:
    """Three nodes, N = 3 (every partition everywhere, each node indexes its own copies), each holding its copies."""
    placement = Placement(Ring.build(list(NAMES), 8), 3)
    out = {}
    for x in NAMES:
        svc = out[x] = NodeService(x, Shard(), MemLog(), placement, 2, lambda: NOW_MS)
        for h in hist:
            for k in range(1, h.held_by(x) + 1):  # each write in turn: edits unindex what they remove
                c = h.state(k)
                assert c is not None
                svc.shard.apply(PutTweet(c, local=True) if isinstance(c, Tweet) else c)
    return out


class Fetcher:
    """The network of node/cluster/coordinator.py, in memory: R replicas of each key from `order` (a replica in
    `failing` never answers, and the next one is asked instead, as fanout.quorum_read does), the local plan's own
    copy from ME. Every step asked is kept in `steps`."""

    def __init__(self, svcs: dict[str, NodeService], order: list[str], failing: set[str]) -> None:
        self.svcs, self.order, self.failing = svcs, order, failing
        self.steps: list[Step] = []

    def quorum(self) -> list[NodeService]:
        return [self.svcs[x] for x in self.order if x not in self.failing][:R]

    def __call__(self, step: Step) -> Answer:
        self.steps.append(step)
        if isinstance(step, Windows):
            return WindowsAnswer({
                t: [s.window([m.WindowItem(t, hi, lo or None, limit)])[0] for s in self.quorum()]
                for t, (hi, lo, limit) in step.asks.items()
            })
        if isinstance(step, Probes):
            return ProbesAnswer({
                t: [(s.probe([m.ProbeItem(t, ids)])[0], s.probe_unsure([m.ProbeItem(t, ids)])) for s in self.quorum()]
                for t, ids in step.asks.items()
            })
        if isinstance(step, Pushdown):
            req = m.QueryReq(step.query.root, step.hi, step.lo or None, step.limit)
            return PushdownAnswer({x: self.svcs[x].query(req) for x in step.nodes if x not in self.failing})
        if isinstance(step, Digest):
            me = self.svcs[ME]
            mine, exhausted = step.mine, step.exhausted
            if mine is None:
                ids, exhausted = me.local_window(step.query.root, step.hi, step.lo or None, step.limit)
                mine = list(zip(ids, me.shard.store.versions(ids), strict=True))
            if step.peer is None or step.peer in self.failing:
                return DigestAnswer(mine, exhausted, None)
            peer = self.svcs[step.peer]
            digest = peer.digest_query(m.DigestQueryReq(step.query.root, step.hi, step.lo or None, step.limit, mine))
            unknown = unknown_ids(mine, digest)
            return DigestAnswer(mine, exhausted, digest, dict(zip(unknown, me.shard.store.versions(unknown),
                                                                  strict=True)))
        assert isinstance(step, Hydrate), step
        if step.local:
            return self.svcs[ME].hydrate_local(step)
        answers = {x: self.svcs[x].get(step.ids) for x in self.order if x not in self.failing}
        return HydrateAnswer(copies_of({i: [(x, resp, 0) for x, resp in list(answers.items())[:R]]
                                        for i in step.ids}))


def run(cur: SearchCursor, fetch: Fetcher) -> Outcome:
    for _ in range(10_000):
        step = cur.next_step()
        if isinstance(step, Done):
            return cur.outcome()
        cur.feed(fetch(step))
    raise AssertionError("the cursor never finished")


@pytest.fixture
def windows() -> Iterator[None]:
    yield
    cursor_mod.WINDOW_MIN, cursor_mod.PUSHDOWN_WINDOW_MIN = 128, 16


def _copy_version(svc: NodeService, i: int) -> int:
    t = svc.shard.tweets.get(i)
    if t is not None:
        return t.version
    d = svc.shard.tombstones.get(i)
    return d.version if d is not None else 0


@given(
    histories(),
    st.lists(query, min_size=1, max_size=4),
    st.sampled_from(["local", "pushdown", "terms"]),
    st.permutations(NAMES),
    st.sampled_from([(), (), (), ("a",), ("b",), ("c",), ("a", "b"), ("b", "c")]).map(set),  # never answer
    st.integers(1, 7),
    st.sampled_from([1, 2, 128]),
    st.tuples(st.one_of(st.none(), st.integers(1000, 1110)), st.one_of(st.none(), st.integers(990, 1060))),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_every_plan_gives_the_models_page_or_says_partial(
    windows: None,
    hist: list[History],
    queries: list[str],
    plan: Plan,
    order: list[str],
    failing: set[str],
    need: int,
    window: int,
    bounds: tuple[int | None, int | None],
) -> None:
    """`window`: the first window sizes; tiny ones force many rounds of window growth (and digests of them)."""
    cursor_mod.WINDOW_MIN = cursor_mod.PUSHDOWN_WINDOW_MIN = window
    svcs = replicas(hist)
    newest = {h.id: t for h in hist if (t := h.newest()) is not None}
    max_id, since_id = bounds
    if plan == "local":
        failing.discard(ME)
        order = [ME, *(x for x in order if x != ME)]
    for qs in queries:
        try:
            q: Query = parse(qs)
        except InvalidQuery:
            continue
        fetch = Fetcher(svcs, order, failing)
        nodes = order[1:] if plan == "local" else order
        cur = SearchCursor(q, need, max_id, since_id, R, plan, nodes)
        out = run(cur, fetch)
        hi, lo = max_id if max_id is not None else 2**64 - 1, since_id or 0
        want = sorted((i for i, t in newest.items() if lo < i <= hi and matches(q, t)), reverse=True)[:need]
        if plan == "local":
            assert out.hits is not None
            got = list(out.hits)
            shown = [t for i, t in out.fetched.items() if i in dict(got)]  # rendered from these, not our copy
        else:
            assert out.hits is None
            got = [(t.id, t.version) for t in out.tweets]
            shown = out.tweets
        assert got == sorted(got, reverse=True) and len(got) <= need
        copies = len(set(NAMES) - failing)
        if hi > lo and copies < R:
            assert out.partial, (qs, plan, failing)  # one copy: never presented as confirmed
            continue
        assert not out.partial, (qs, plan, failing)
        assert got == [(i, newest[i].version) for i in want], (qs, plan, order, failing)
        assert all(t == newest[t.id] for t in shown), qs
        for rep in cur.repairs:  # each read repair brings a copy that was read up to a newer state
            target = svcs[rep.node or ME]
            for rec in rep.records:
                assert isinstance(rec, PutTweet | DeleteTweet), rec
                rid = rec.tweet.id if isinstance(rec, PutTweet) else rec.id
                v = rec.tweet.version if isinstance(rec, PutTweet) else rec.version
                assert v > _copy_version(target, rid)
            for i in rep.ids:
                assert _copy_version(svcs[ME], i) > _copy_version(target, i)


SCENARIOS = [  # (the writes, oldest first; the query; whether the newest copy matches)
    (["apple banana", "banana"], "apple", False),  # the stale copy's posting was removed by the edit
    (["banana", "apple banana"], "apple", True),  # the stale copy has no posting yet
    (["apple banana", "banana"], "banana -apple", True),  # a stale posting must not exclude under a NOT
    (["banana", "apple banana"], "banana -apple", False),
    (["apple banana", "banana"], "apple OR cherry", False),
]


@pytest.mark.parametrize(("texts", "qs", "newest_matches"), SCENARIOS)
@pytest.mark.parametrize("plan", ["local", "pushdown", "terms"])
def test_a_stale_copy_among_those_read_never_decides(texts: list[str], qs: str, newest_matches: bool, plan: Plan) -> None:
    """One tweet edited, one replica still at the first version, every way round: whichever two copies are read,
    the newest decides (W = 2 and R = 2 overlap), the disagreement makes the cursor check the tweet itself."""
    for lagging in NAMES:
        svcs = replicas([History(1000, "ann", texts, False, lagging, 1)])
        # the local plan reads this node's own copy and one peer's; the others, any two replicas
        orders = [[ME, "b", "c"], [ME, "c", "b"]] if plan == "local" else [[ME, "b", "c"], ["b", "c", ME], ["c", ME, "b"]]
        for order in orders:
            fetch = Fetcher(svcs, order, set())
            cur = SearchCursor(parse(qs), 3, None, None, R, plan, order[1:] if plan == "local" else order)
            out = run(cur, fetch)
            got = [i for i, _v in out.hits] if out.hits is not None else [t.id for t in out.tweets]
            assert got == ([1000] if newest_matches else []) and not out.partial, (lagging, order)


def _two_replicas_agree() -> dict[str, NodeService]:
    hist = [History(1000 + k, "ann", [f"apple {k}"], False, None, 0) for k in range(30)]
    return replicas(hist)


def test_a_local_page_costs_one_digest_when_the_copies_agree() -> None:
    """The tuned path stays tuned: one local evaluation and one digest call, no hydration (this node's copy,
    confirmed by the digest, is what gets rendered), the page the newest `need`."""
    fetch = Fetcher(_two_replicas_agree(), [ME, "b", "c"], set())
    cur = SearchCursor(parse("apple"), 21, None, None, R, "local", ["b", "c"])
    out = run(cur, fetch)
    assert [type(s) for s in fetch.steps] == [Digest]
    assert out.hits == [(1029 - k, 1) for k in range(21)] and not out.partial and not cur.repairs


def test_a_pushed_down_page_costs_one_query_round_and_one_hydration() -> None:
    fetch = Fetcher(_two_replicas_agree(), ["b", "c", ME], set())
    cur = SearchCursor(parse("apple"), 5, None, None, R, "pushdown", ["b", "c", ME])
    out = run(cur, fetch)
    assert [type(s) for s in fetch.steps] == [Pushdown, Hydrate]
    assert isinstance(fetch.steps[0], Pushdown) and fetch.steps[0].nodes == ["b", "c"]
    assert [t.id for t in out.tweets] == [1029 - k for k in range(5)] and not out.partial


def test_a_failed_digest_peer_is_replaced_without_evaluating_again() -> None:
    fetch = Fetcher(_two_replicas_agree(), [ME, "b", "c"], {"b"})
    cur = SearchCursor(parse("apple"), 3, None, None, R, "local", ["b", "c"])
    out = run(cur, fetch)
    digests = [s for s in fetch.steps if isinstance(s, Digest)]
    assert [d.peer for d in digests] == ["b", "c"]
    assert digests[0].mine is None and digests[1].mine is not None  # this node's window, computed once
    assert [i for i, _v in out.hits or ()] == [1029, 1028, 1027] and not out.partial


def test_an_outcome_asked_before_the_end_is_what_was_found_so_far_and_partial() -> None:
    """What the shell takes when the request's deadline runs out in the middle of a step."""
    cur = SearchCursor(parse("apple"), 3, None, None, R, "pushdown", ["b", "c"])
    assert isinstance(cur.next_step(), Pushdown)
    out = cur.outcome(timed_out=True)
    assert out.partial and out.tweets == []
    fetch = Fetcher(_two_replicas_agree(), ["b", "c"], set())
    done = run(cur, fetch)
    assert not done.partial and len(done.tweets) == 3
    assert cur.outcome(timed_out=True).partial  # the deadline ran out as it finished: still said


def test_a_search_of_an_empty_range_asks_nothing() -> None:
    for plan in ("local", "pushdown", "terms"):
        cur = SearchCursor(parse("apple"), 3, 10, 10, R, plan, ["b", "c"])
        step = cur.next_step()
        assert isinstance(step, Done) and not step.outcome.partial
