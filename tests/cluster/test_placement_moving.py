"""Placement while the ring moves (node/cluster/placement.py): one write set when settled, the old and the new
ring's preference lists while moving, terms_by_node over both, and install() forgetting cached lookups."""

from __future__ import annotations

from node.cluster.placement import Placement
from node.ring.ring import Ring, allocate_tokens, term_token, tweet_token

N = 3
OLD = Ring.build(["a", "b", "c", "d"], 8)
NEW = OLD.with_node("e", allocate_tokens(OLD, "e", 8))
TERMS = [f"term{i}" for i in range(400)]
IDS = [(i * 2654435761) % (1 << 62) + 1 for i in range(400)]


def test_settled_has_one_write_set() -> None:
    p = Placement(OLD, N)
    for i in IDS:
        assert p.tweet_write_sets(i) == (OLD.preference_list(tweet_token(i), N),)
    for t in TERMS:
        assert p.term_write_sets(t) == (OLD.preference_list(term_token(t), N),)


def test_moving_has_both_rings_write_sets() -> None:
    p = Placement(OLD, N, NEW)
    differ = 0
    for i in IDS:
        tok = tweet_token(i)
        assert p.tweet_write_sets(i) == (OLD.preference_list(tok, N), NEW.preference_list(tok, N))
        assert p.tweet(i)[1] == OLD.preference_list(tok, N)  # reads stay on the old ring
    for t in TERMS:
        tok = term_token(t)
        sets = p.term_write_sets(t)
        assert sets == (OLD.preference_list(tok, N), NEW.preference_list(tok, N))
        assert p.term(t)[1] == sets[0]
        differ += sets[0] != sets[1]
    assert 0 < differ < len(TERMS)  # the join moved some terms, not all


def test_terms_by_node_covers_both_rings() -> None:
    for p in (Placement(OLD, N), Placement(OLD, N, NEW)):
        by = p.terms_by_node(TERMS)
        for t in TERMS:
            holders = {n for n, ts in by.items() if t in ts}
            assert holders == {n for reps in p.term_write_sets(t) for n in reps}
        assert all(len(ts) == len(set(ts)) for ts in by.values())  # a node shared by both rings: once
    assert "e" not in Placement(OLD, N).terms_by_node(TERMS)
    assert "e" in Placement(OLD, N, NEW).terms_by_node(TERMS)


def test_install_drops_cached_lookups() -> None:
    p = Placement(OLD, N)
    before = {t: p.term(t) for t in TERMS}  # fills the term cache
    p.install(OLD, NEW)
    assert p.next_ring is NEW
    assert all(p.term_write_sets(t)[1] == NEW.preference_list(term_token(t), N) for t in TERMS)
    p.install(NEW, None)
    changed = 0
    for t in TERMS:
        tok = term_token(t)
        assert p.term(t) == (NEW.partition_index(tok), NEW.preference_list(tok, N))
        assert p.term_write_sets(t) == (NEW.preference_list(tok, N),)
        changed += p.term(t) != before[t]
    assert changed > 0
    assert p.preferred_of_tweet(IDS[0]) == NEW.preference_list(tweet_token(IDS[0]), N)[0]
