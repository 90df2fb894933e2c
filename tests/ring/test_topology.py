"""Topology changes (node/ring/topology.py): a fresh topology equals Ring.build, a join or leave is one version
step that keeps every other member's tokens, refusals say which node, and `gained` lists exactly the ranges a
node enters the preference list of (checked against Ring.preference_list at random and boundary points)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.ring.ring import RING_SIZE, Ring, allocate_tokens
from node.ring.topology import (
    Member,
    Topology,
    TopologyError,
    abort,
    begin_join,
    begin_leave,
    finish,
    gained,
    initial,
    ring_of,
    segments,
    sources_needed,
)

N = 3


def config(names: list[str]) -> list[tuple[str, str, int, int, int]]:
    return [(nm, "127.0.0.1", 8000 + i, 9000 + i, i + 1) for i, nm in enumerate(names)]


def within(token: int, start: int, end: int) -> bool:
    """(start, end] on the ring; start >= end wraps (the dumb version, written apart from node/shard.py's)."""
    if start < end:
        return start < token <= end
    return token > start or token <= end


def probe_points(old: Ring, new: Ring, rng: random.Random, count: int) -> list[int]:
    """Random tokens plus every ring token and its neighbours: the edges where an off-by-one would show."""
    pts = [rng.randrange(RING_SIZE) for _ in range(count)] + [0, RING_SIZE - 1]
    for t in set(old._tokens) | set(new._tokens):
        pts += [t, (t + 1) % RING_SIZE, (t - 1) % RING_SIZE]
    return pts


# ------------------------------------------------------------ initial and the steps


def test_initial_equals_ring_build_in_config_order() -> None:
    names = ["n3", "n1", "n2", "n5", "n4"]  # not sorted: the order of joining decides the tokens
    t = initial(config(names), 16)
    ring = Ring.build(names, 16)
    assert t.version == 1 and not t.moving and t.next is None
    assert [m.name for m in t.members] == names
    for m in t.members:
        assert list(m.tokens) == ring.tokens_of(m.name)
    assert [(m.host, m.http_port, m.gossip_port, m.machine_id) for m in t.members] == [
        c[1:] for c in config(names)
    ]
    # the order matters, so the test would see a sorted build
    other = Ring.build(sorted(names), 16)
    assert any(list(m.tokens) != other.tokens_of(m.name) for m in t.members)


def test_begin_join_keeps_tokens_and_adds_the_joiner() -> None:
    t = initial(config(["a", "b", "c"]), 8)
    j = begin_join(t, "d", "127.0.0.1", 8010, 9010, 7, 8)
    assert j.version == t.version + 1 and j.moving
    assert j.members == t.members  # reads stay on the old ring
    assert j.next is not None and j.next[:3] == t.members  # every existing member keeps its tokens
    joiner = j.next[3]
    assert joiner == Member(
        "d", "127.0.0.1", 8010, 9010, 7, tuple(allocate_tokens(ring_of(t.members), "d", 8))
    )
    assert len(joiner.tokens) == 8
    assert j.names() == ["a", "b", "c", "d"]
    assert j.member("d") == joiner and j.member("zz") is None
    assert "d" in j.change and j.change.startswith("join")
    f = finish(j)
    assert f == Topology(j.version + 1, j.next) and not f.moving
    a = abort(j)
    assert a == Topology(j.version + 1, t.members) and not a.moving


@pytest.mark.parametrize(
    ("ids", "asked", "got"),
    [
        ((1, 2, 3), 2, 4),
        ((1, 3, 4), 3, 2),
        ((5, 6, 7), 6, 1),
        ((1, 2, 3), 9, 9),  # free: kept as asked
    ],
)
def test_machine_id_collision_takes_the_lowest_free(ids: tuple[int, ...], asked: int, got: int) -> None:
    t = initial([(f"n{i}", "h", 80 + i, 90 + i, mid) for i, mid in enumerate(ids)], 4)
    j = begin_join(t, "new", "h", 70, 71, asked, 4)
    assert j.next is not None and j.next[-1].machine_id == got
    assert len({m.machine_id for m in j.next}) == len(j.next)


def test_begin_leave_drops_only_the_leaver() -> None:
    t = initial(config(["a", "b", "c", "d"]), 8)
    lv = begin_leave(t, "b", N)
    assert lv.version == t.version + 1 and lv.members == t.members
    assert lv.next == tuple(m for m in t.members if m.name != "b")
    assert "b" in lv.change and lv.change.startswith("leave")
    assert lv.names() == ["a", "b", "c", "d"]
    done = finish(lv)
    assert [m.name for m in done.members] == ["a", "c", "d"] and done.version == t.version + 2


def test_refusals_name_the_node() -> None:
    t = initial(config(["a", "b", "c"]), 8)
    with pytest.raises(TopologyError, match=r"\bb\b.*already on the ring"):
        begin_join(t, "b", "10.0.0.9", 1, 2, 9, 8)
    with pytest.raises(TopologyError, match=r"\bc\b.*address of x"):  # c's gossip address
        begin_join(t, "x", "127.0.0.1", 7777, 9002, 9, 8)
    with pytest.raises(TopologyError, match=r"\ba\b.*address of y"):  # a's http address
        begin_join(t, "y", "127.0.0.1", 8000, 7777, 9, 8)
    begin_join(t, "z", "10.0.0.9", 8000, 9000, 9, 8)  # the same ports on another host are fine
    moving = begin_join(t, "d", "127.0.0.1", 8010, 9010, 9, 8)
    with pytest.raises(TopologyError, match=r"in progress.*join d"):
        begin_join(moving, "e", "127.0.0.1", 8011, 9011, 10, 8)
    with pytest.raises(TopologyError, match=r"in progress.*join d"):
        begin_leave(moving, "a", N)
    with pytest.raises(TopologyError, match=r"\bq\b.*not on the ring"):
        begin_leave(t, "q", N)
    with pytest.raises(TopologyError, match=r"2 nodes would be left.*3"):
        begin_leave(t, "a", N)
    with pytest.raises(TopologyError, match="no change in progress"):
        finish(t)
    assert begin_leave(t, "a", 2).next is not None  # with N=2, two left is enough


# ------------------------------------------------------------ gained ranges


def check_segments(old: Ring, new: Ring) -> None:
    segs = segments(old, new)
    assert sum((e - s) % RING_SIZE or RING_SIZE for s, e in segs) == RING_SIZE  # they tile the ring once
    assert all(segs[i][1] == segs[(i + 1) % len(segs)][0] for i in range(len(segs)))


@given(st.integers(3, 7), st.integers(4, 16), st.integers(0, 10_000))
@settings(max_examples=30, deadline=None)
def test_join_gains_exactly_where_the_joiner_enters(count: int, vnodes: int, seed: int) -> None:
    names = [f"s{seed}-{i}" for i in range(count)]
    t = initial(config(names), vnodes)
    j = begin_join(t, "joiner", "127.0.0.1", 8100, 9100, 99, vnodes)
    assert j.next is not None
    old, new = ring_of(j.members), ring_of(j.next)
    check_segments(old, new)
    for nm in names:
        assert gained(old, new, N, nm) == []  # a join moves keys only to the joiner
    got = gained(old, new, N, "joiner")
    assert got
    for pt in probe_points(old, new, random.Random(seed), 300):
        hits = [g for g in got if within(pt, g[0], g[1])]
        assert len(hits) <= 1  # disjoint
        expect = "joiner" in new.preference_list(pt, N) and "joiner" not in old.preference_list(pt, N)
        assert bool(hits) == expect, pt
        if hits:
            assert hits[0][2] == old.preference_list(pt, N)  # the sources: the old replicas


@given(st.integers(4, 7), st.integers(4, 16), st.integers(0, 10_000), st.integers(0, 6))
@settings(max_examples=30, deadline=None)
def test_leave_gains_go_to_the_others_from_the_old_replicas(
    count: int, vnodes: int, seed: int, which: int
) -> None:
    names = [f"s{seed}-{i}" for i in range(count)]
    leaver = names[which % count]
    t = begin_leave(initial(config(names), vnodes), leaver, N)
    assert t.next is not None
    old, new = ring_of(t.members), ring_of(t.next)
    check_segments(old, new)
    assert gained(old, new, N, leaver) == []
    got = {nm: gained(old, new, N, nm) for nm in names if nm != leaver}
    assert any(got.values())
    pts = probe_points(old, new, random.Random(seed), 300)
    for nm, ranges in got.items():
        for pt in pts:
            hits = [g for g in ranges if within(pt, g[0], g[1])]
            assert len(hits) <= 1
            expect = nm in new.preference_list(pt, N) and nm not in old.preference_list(pt, N)
            assert bool(hits) == expect, (nm, pt)
            if hits:
                assert hits[0][2] == old.preference_list(pt, N)
                assert leaver in hits[0][2]  # only what the leaver held moves


# ------------------------------------------------------------ how many sources


@pytest.mark.parametrize(
    ("replicas", "w", "need"),
    [(3, 2, 2), (3, 1, 3), (1, 1, 1), (3, 3, 1), (2, 2, 1), (2, 1, 2), (5, 3, 3), (2, 3, 1)],
)
def test_sources_needed(replicas: int, w: int, need: int) -> None:
    assert sources_needed(replicas, w) == need


@pytest.mark.parametrize("replicas", [1, 2, 3, 4, 5])
def test_sources_needed_always_meet_every_write_quorum(replicas: int) -> None:
    nodes = range(replicas)
    for w in range(1, replicas + 1):
        k = sources_needed(replicas, w)
        assert k <= replicas
        for sources in itertools.combinations(nodes, k):
            assert all(set(sources) & set(acked) for acked in itertools.combinations(nodes, w))
        if k > 1:  # and it is the least that does
            assert any(
                not set(s) & set(a)
                for s in itertools.combinations(nodes, k - 1)
                for a in itertools.combinations(nodes, w)
            )
