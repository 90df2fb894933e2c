"""Quorum and version properties: R/W overlap, window merging equals a brute-force union, version resolution picks
the newest copy (tombstones included) and names exactly the stale copies to repair, versions order by epoch first."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from node.model import Tweet
from node.replication.messages import GetResp, WindowResult
from node.replication.quorum import acked_by_every, merge_windows, read_set, resolve_tweets
from node.shard import DeleteTweet, PutTweet, make_version


@given(st.integers(1, 7), st.data())
def test_any_r_read_meets_any_w_write_when_r_plus_w_exceeds_n(n, data):
    w = data.draw(st.integers(1, n))
    r = data.draw(st.integers(n - w + 1, n))
    nodes = [f"n{i}" for i in range(n)]
    for write_set in itertools.combinations(nodes, w):
        for me in nodes:
            assert set(read_set(nodes, r, me)) & set(write_set) or r + w <= n


@given(st.lists(st.sampled_from("abcde"), min_size=1, max_size=5, unique=True), st.integers(1, 5), st.sampled_from("abcdez"))
def test_read_set_prefers_self_then_preference_order(replicas, r, me):
    got = read_set(replicas, r, me)
    assert len(got) == min(r, len(replicas)) and len(set(got)) == len(got)
    if me in replicas:
        assert got[0] == me
    rest = [x for x in got if x != me]
    assert rest == [x for x in replicas if x != me][: len(rest)]


@given(st.sets(st.integers(1, 300), max_size=120), st.lists(st.sets(st.integers(1, 300)), min_size=1, max_size=3), st.integers(1, 60))
@settings(max_examples=200)
def test_merged_windows_are_a_correct_prefix_of_the_union(truth, missing, limit):
    """Each replica holds `truth` minus some ids; the merge must be exactly the newest ids of the union that it
    claims to know, and `exhausted` only when nothing older is left."""
    replicas = [sorted(truth - m, reverse=True) for m in missing]
    results = [WindowResult(ids[:limit], len(ids) <= limit, len(ids)) for ids in replicas]
    merged, disagree = merge_windows(results, limit)
    union = sorted(set().union(*(set(ids) for ids in replicas)), reverse=True)
    assert merged.ids == union[: len(merged.ids)]
    if merged.exhausted:
        assert merged.ids == union
    assert len(merged.ids) <= limit
    if len({tuple(ids) for ids in replicas}) == 1:
        assert not disagree


def _tweet(i: int, v: int) -> Tweet:
    return Tweet(id=i, created_at_ms=0, user="u", text=f"v{v}", version=v)


@given(st.dictionaries(st.sampled_from("abc"), st.dictionaries(st.integers(1, 5), st.tuples(st.integers(1, 9), st.booleans()), max_size=5), min_size=1))
def test_resolution_takes_the_newest_copy_and_repairs_only_stale_ones(copies):
    answers = {}
    for node, held in copies.items():
        tweets = [_tweet(i, v) for i, (v, dead) in held.items() if not dead]
        tombs = [DeleteTweet(i, v, 0) for i, (v, dead) in held.items() if dead]
        answers[node] = GetResp(tweets, tombs)
    asked = {node: set(range(1, 6)) for node in copies}
    best, repairs = resolve_tweets(answers, asked)
    for i in range(1, 6):
        versions = [held[i][0] for held in copies.values() if i in held]
        if not versions:
            assert i not in best
            continue
        assert best[i].version == max(versions)
        for node, held in copies.items():
            stale = held.get(i, (0, False))[0] < max(versions)
            recs = [r for r in repairs.get(node, []) if (r.tweet.id if isinstance(r, PutTweet) else r.id) == i]
            assert bool(recs) == stale


@given(st.integers(0, 1000), st.integers(0, 2**40 - 1), st.integers(0, 1000), st.integers(0, 2**40 - 1))
def test_versions_order_by_epoch_then_sequence(e1, s1, e2, s2):
    assert (make_version(e1, s1) < make_version(e2, s2)) == ((e1, s1) < (e2, s2))


def test_acked_by_every_needs_w_distinct_nodes_in_every_set():
    assert acked_by_every({"a", "b", "c"}, [("a", "b", "x"), ("a", "c", "y")], 2)
    assert not acked_by_every({"a", "b"}, [("a", "b", "x"), ("a", "c", "y")], 2)
    assert not acked_by_every({"a", "b"}, [("a", "b", "x"), ("c", "d", "y")], 1)
