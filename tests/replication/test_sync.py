"""Anti-entropy cores (node/replication/sync.py): a session between two real Shards, its calls answered in memory,
leaves both with the max version of every key of the partition (the puller only, when it only pulls) and
nothing else changed, in bounded calls; the round robin visits every (partition, peer) pair once per cycle."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.model import Tweet
from node.replication.sync import SyncRound, SyncSession
from node.ring.ring import Ring, tweet_token
from node.shard import DeleteTweet, PutTweet, Record, Shard, in_range

RING = Ring.build(["a", "b", "c", "d"], 4)
START, END = RING.partitions()[1]
INSIDE = [i for i in range(1, 20_000) if in_range(tweet_token(i), START, END)][:40]
OUTSIDE = [i for i in range(1, 100) if not in_range(tweet_token(i), START, END)][:10]  # must not move
KEYS = st.dictionaries(st.sampled_from(INSIDE + OUTSIDE), st.tuples(st.integers(1, 5), st.booleans()), max_size=40)


def shard_of(keys: dict[int, tuple[int, bool]]) -> Shard:
    sh = Shard()
    for i, (v, dead) in keys.items():
        rec: Record = DeleteTweet(i, v, 1) if dead else PutTweet(Tweet(id=i, created_at_ms=i, user="u", text="t", version=v))
        sh.apply(rec)
    return sh


def versions(sh: Shard) -> dict[int, int]:
    return {i: sh.version_of(i) for i in [*sh.tweets, *sh.tombstones]}


def run(here: Shard, there: Shard, push: bool) -> tuple[int, int]:
    """The shell's calls, answered by `there` directly. -> (keys moved, calls made)."""
    s = SyncSession(START, END, push, buckets_max=3, fetch_max=4, push_max=5)
    calls = 1
    for req in s.on_digest(here.digest(START, END), there.digest(s.begin().start, s.begin().end).items()):
        assert len(req.buckets) <= 3
        calls += 1
        fetches, pushes = s.on_keys(dict(here.keys(START, END, set(req.buckets))), there.keys(START, END, set(req.buckets)))
        for f in fetches:
            assert len(f.ids) <= 4
            calls += 1
            for r in there.records_for(f.ids):
                here.apply(r)
        for ids in pushes:
            assert len(ids) <= 5
            calls += 1
            for r in here.records_for(ids):
                there.apply(r)
    return s.moved, calls


@settings(max_examples=100, deadline=None)
@given(KEYS, KEYS, st.booleans())
def test_a_session_leaves_the_max_of_each_key_of_the_partition(a: dict[int, tuple[int, bool]], b: dict[int, tuple[int, bool]],
                                                               push: bool) -> None:
    here, there = shard_of(a), shard_of(b)
    before_here, before_there = versions(here), versions(there)
    moved, _calls = run(here, there, push)
    inside = {i for i in {*before_here, *before_there} if in_range(tweet_token(i), START, END)}
    best = {i: max(before_here.get(i, 0), before_there.get(i, 0)) for i in inside}
    for i in {*before_here, *before_there}:
        want_here = best[i] if i in inside else before_here.get(i, 0)
        want_there = best[i] if i in inside and push else before_there.get(i, 0)
        assert (here.version_of(i), there.version_of(i)) == (want_here, want_there)
    pulled = sum(1 for i in inside if before_there.get(i, 0) > before_here.get(i, 0))
    pushed = sum(1 for i in inside if before_here.get(i, 0) > before_there.get(i, 0)) if push else 0
    assert moved == pulled + pushed
    assert run(here, there, push) == (0, 1) or not push  # converged: one digest call, nothing else


def test_the_round_robin_visits_each_pair_once_per_cycle_and_skips_peers_down() -> None:
    rr = SyncRound("a")
    mine = [(s, e, p) for s, e in RING.partitions() if "a" in (reps := RING.preference_list(e, 3)) for p in reps if p != "a"]
    got = [rr.next_pair(RING, 3, lambda p: True) for _ in range(len(mine))]
    assert got == mine
    assert rr.next_pair(RING, 3, lambda p: False) is None
    assert {x for x in (rr.next_pair(RING, 3, lambda p: p == "b") for _ in range(5)) if x} <= {q for q in mine if q[2] == "b"}
    rr.reset()
    assert rr.pairs is None
