"""The pure rules of tombstone collection and cleanup (node/replication/collection.py), against brute-force
statements of them."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from node.replication import collection as col
from node.replication.hints import HintQueue
from node.ring.ring import Ring, tweet_token
from node.shard import in_range

GRACE = 10_000
NAMES = ["a", "b", "c", "d", "e"]


@given(st.integers(0, 10**13), st.integers(0, 10**13), st.integers(1, 10**10))
def test_a_tombstone_expires_once_its_grace_has_passed_and_stays_expired(at: int, now: int, grace: int) -> None:
    assert col.expired(at, now, grace) == (now - at >= grace)
    if col.expired(at, now, grace):
        assert col.expired(at, now + 1, grace) and col.expired(at - 1, now, grace)
    assert col.expired(at, now, grace) == (at <= col.floor_ms(now, grace))


@given(st.one_of(st.none(), st.integers(0, 10**6)), st.integers(0, 10**6), st.integers(4, 10**6))
def test_hints_live_a_quarter_of_the_grace_and_unknown_ages_count_as_old(
    since: int | None, now: int, grace: int
) -> None:
    q = HintQueue(10, 10_000, next_lsn=2, sizes=[40], since_ms=since)
    dead = q.expired(now, col.hint_ttl_ms(grace))
    assert dead == (since is None or now - since > grace // 4)
    # a hint still replayed is far younger than the grace of any tombstone written after it
    if since is not None and not dead:
        assert not col.expired(since, now + grace // 2, grace)
    assert not HintQueue(10, 10_000, since_ms=since).expired(now, 0)  # nothing pending: nothing to drop


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(2, 10**6))
def test_posting_tombstones_rotate_every_half_grace(last: int, now: int, grace: int) -> None:
    assert col.rotation_due(last, now, grace) == (now - last >= grace // 2)


def ring_of(names: list[str], vnodes: int) -> Ring:
    return Ring.build(names, vnodes)


events = st.lists(
    st.tuples(st.sampled_from(NAMES), st.sampled_from(["synced", "empty"]), st.integers(0, 200)), max_size=30
)


@settings(max_examples=300, deadline=None)
@given(
    nodes=st.integers(1, 5),
    n=st.integers(1, 3),
    vnodes=st.integers(1, 4),
    listed=st.integers(0, 200),
    evs=events,
    which=st.integers(0, 1000),
)
def test_a_round_completes_exactly_when_every_other_member_was_heard_from_after_the_listing(
    nodes: int, n: int, vnodes: int, listed: int, evs: list[tuple[str, str, int]], which: int
) -> None:
    names = NAMES[:nodes]
    ring = ring_of(names, vnodes)
    start, end = ring.partitions()[which % len(ring.partitions())]
    replicas = ring.preference_list(end, n)
    me = replicas[which % len(replicas)]
    rnd = col.Round(start, end, replicas, tuple(ring.nodes), me, listed, [1])
    heard: dict[str, set[str]] = {"synced": set(), "empty": set()}
    was_complete = False
    for peer, kind, at in evs:
        if peer not in names:
            continue
        (rnd.on_synced if kind == "synced" else rnd.on_empty)(peer, at)
        if at >= listed:
            heard[kind].add(peer)
        # brute force: each other replica had a session that started at or after the listing, and each other
        # member said "empty" at or after it
        want = all(p in heard["synced"] for p in replicas if p != me) and all(
            p in heard["empty"] for p in names if p not in replicas and p != me
        )
        assert rnd.complete() == want
        assert rnd.complete() or not was_complete  # hearing more never undoes a complete round
        was_complete = rnd.complete()
    if nodes == 1:
        assert rnd.complete()  # nobody else to hear from


def test_a_round_needs_the_replicas_first_then_the_others_and_ignores_what_came_before_the_listing() -> None:
    ring = ring_of(NAMES, 4)
    start, end = ring.partitions()[0]
    replicas = ring.preference_list(end, 3)
    me = replicas[0]
    rnd = col.Round(start, end, replicas, tuple(ring.nodes), me, 100, [7])
    others = [x for x in NAMES if x not in replicas]
    assert rnd.replicas_needed() == list(replicas[1:]) and rnd.others_needed() == others
    rnd.on_synced(replicas[1], 99)  # before the listing: says nothing of the candidates
    assert replicas[1] in rnd.replicas_needed()
    for p in replicas[1:]:
        rnd.on_synced(p, 100)
    assert not rnd.complete()
    for p in others:
        rnd.on_empty(p, 150)
    assert rnd.complete()


@settings(max_examples=100, deadline=None)
@given(
    nodes=st.integers(1, 5),
    n=st.integers(1, 3),
    vnodes=st.integers(1, 8),
    ids=st.lists(st.integers(1, 2**63), max_size=60, unique=True),
    me_k=st.integers(0, 4),
)
def test_rounds_cover_exactly_the_candidates_of_the_partitions_this_node_replicates(
    nodes: int, n: int, vnodes: int, ids: list[int], me_k: int
) -> None:
    names = NAMES[:nodes]
    ring = ring_of(names, vnodes)
    me = names[me_k % nodes]
    rounds = col.plan_rounds(ids, ring, n, me, 5)
    placed: list[int] = []
    for r in rounds:
        assert me in r.replicas and r.replicas == ring.preference_list(r.end, n) and r.listed_at_ms == 5
        assert set(r.members) == set(names)
        assert all(in_range(tweet_token(i), r.start, r.end) for i in r.ids)
        placed += r.ids
    mine = [i for i in ids if me in ring.preference_list(tweet_token(i), n)]
    assert sorted(placed) == sorted(mine)
    owned = col.owned_ranges(ring, n, me)
    for i in ids:
        assert any(in_range(tweet_token(i), s, e) for s, e in owned) == (i in mine)
    if n >= nodes:
        assert len(owned) == len(ring.partitions())  # N = nodes: everything is everyone's


def test_cleanup_runs_only_on_one_settled_ring_everyone_answers_for() -> None:
    assert col.agreed(4, False, {"b": (4, False), "c": (4, False)}) is None
    assert col.agreed(4, False, {}) is None
    assert "moving" in str(col.agreed(4, True, {"b": (4, False)}))
    assert "moving on c" in str(col.agreed(4, False, {"b": (4, False), "c": (5, True)}))
    assert "version 5" in str(col.agreed(4, False, {"b": (5, False)}))
    assert "did not answer" in str(col.agreed(4, False, {"b": None}))
