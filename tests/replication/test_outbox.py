"""The outbox planner (node/replication/outbox.py): who drives or hands over which entry and when, what each term
replica is sent (against a term-by-term brute force, on a settled and on a moving ring), and when an entry is
done."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.cluster.placement import Placement
from node.replication import outbox as ob
from node.ring.ring import Ring
from node.shard import OutboxDone, OutboxEntry, PostingOps

RING = Ring.build(["a", "b", "c", "d", "e"], 8)
MOVING = Placement(RING, 3, Ring.build(["a", "b", "c", "d", "e", "f"], 8))
TERMS = st.lists(st.sampled_from([f"w{i}" for i in range(30)]), unique=True, max_size=6)


def planner() -> ob.OutboxPlanner:
    return ob.OutboxPlanner("a", grace_s=30.0, batch_max=2, scan_max=8)


def test_the_acting_node_drives_and_others_hand_over_after_the_grace_then_every_grace() -> None:
    p = planner()
    acting = {1: "a", 2: "b", 3: None, 4: "a"}.get
    due = p.due([1, 2, 3, 4], lambda i: i == 4, acting, lambda i: i % 2, now=100.0)
    assert due == ob.Due({1: [1]}, {})  # 4 is busy (a write in flight drives it); 3 has nobody up to act
    assert p.due([1, 2, 3], lambda i: False, acting, lambda i: 0, now=129.9).hand == {}
    assert p.due([1, 2, 3], lambda i: False, acting, lambda i: 0, now=130.0).hand == {"b": [2]}
    assert p.due([1, 2, 3], lambda i: False, acting, lambda i: 0, now=159.0).hand == {}
    assert p.due([1, 2, 3], lambda i: False, acting, lambda i: 0, now=160.0).hand == {"b": [2]}


def test_a_pass_is_bounded() -> None:
    p = planner()
    due = p.due(list(range(20)), lambda i: False, lambda i: "a", lambda i: i % 3, now=0.0)
    assert sum(map(len, due.mine.values())) <= 2 * 2 and len(due.mine) == 2  # batch_max partitions, batch_max each
    assert all(i < 8 for ids in due.mine.values() for i in ids)  # scan_max entries looked at


def test_first_seen_times_are_pruned_when_they_outgrow_the_outbox() -> None:
    p = planner()
    p.seen = {i: 0.0 for i in range(2000)}
    p.due([5], lambda i: False, lambda i: "b", lambda i: 0, now=1.0)
    assert set(p.seen) == {5}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(TERMS, TERMS), min_size=1, max_size=5), st.booleans())
def test_each_replica_gets_exactly_the_terms_of_its_partitions(work: list[tuple[list[str], list[str]]], moving: bool) -> None:
    placement = MOVING if moving else Placement(RING, 3)
    entries = [OutboxEntry(100 + k, 7, tuple(add), tuple(t for t in rem if t not in add)) for k, (add, rem) in enumerate(work)]
    by_node, need = ob.plan_drive(entries, placement)
    for k, e in enumerate(entries):
        for node in {n for t in (*e.add, *e.remove) for reps in placement.term_write_sets(t) for n in reps} | set(by_node):
            held = {t for t in (*e.add, *e.remove) if any(node in reps for reps in placement.term_write_sets(t))}
            ops = [op for key, op in by_node.get(node, []) if key == k]
            assert isinstance(ops[0], PostingOps) if ops else not held
            if ops:
                assert len(ops) == 1 and (ops[0].tweet_id, ops[0].version) == (e.tweet_id, e.version)
                assert set(ops[0].add) == held & set(e.add) and set(ops[0].remove) == held & set(e.remove)
        assert set(need[k]) == {reps for t in (*e.add, *e.remove) for reps in placement.term_write_sets(t)}


def test_ops_are_marked_edited_unless_the_held_tweet_was_never_edited_and_nothing_is_removed() -> None:
    entries = [OutboxEntry(1, 7, ("x",), ()), OutboxEntry(2, 7, ("x",), ("y",)), OutboxEntry(3, 7, ("x",), ())]
    by_node, _ = ob.plan_drive(entries, Placement(RING, 3), lambda i, v: i in (1, 2) and v == 7)
    marks = {op.tweet_id: op.edited for ops in by_node.values() for _, op in ops if isinstance(op, PostingOps)}
    assert marks == {1: False, 2: True, 3: True}
    by_node, _ = ob.plan_drive(entries, Placement(RING, 3))  # nothing known of the tweets: the safe mark
    assert all(op.edited for ops in by_node.values() for _, op in ops if isinstance(op, PostingOps))


def test_an_entry_is_done_with_w_acks_in_every_replica_set_and_done_goes_to_every_tweet_replica() -> None:
    entries = [OutboxEntry(1, 7, ("x",), ()), OutboxEntry(2, 7, ("y",), ())]
    need = {0: (("a", "b", "c"),), 1: (("a", "b", "c"), ("b", "c", "d"))}
    acked = {0: {"a", "c"}, 1: {"a", "c", "d"}}
    assert ob.done_entries(entries, acked, need, 2) == entries
    acked[1] = {"a", "b"}  # only one of the second ring's replicas
    assert ob.done_entries(entries, acked, need, 2) == entries[:1]
    by_node, need_done = ob.plan_done(entries, MOVING)
    for k, e in enumerate(entries):
        reps = {n for s in MOVING.tweet_write_sets(e.tweet_id) for n in s}
        assert {n for n, items in by_node.items() if any(key == k for key, _ in items)} == reps
        assert need_done[k] == MOVING.tweet_write_sets(e.tweet_id)
    assert all(isinstance(r, OutboxDone) for items in by_node.values() for _, r in items)
