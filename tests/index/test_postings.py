"""Unit and property tests of PostingsTable: order, idempotence, compact forms and the memory estimate."""

from __future__ import annotations

import gc
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.index.postings import SMALL_MAX, SMALL_MIN, PostingsTable, _Long


def _kind(t: PostingsTable, term: str) -> type:
    return type(t._d[term])


@pytest.mark.parametrize("tc", ["I", "Q"])
def test_forms_follow_size_and_shrink_back(tc: str) -> None:
    t = PostingsTable(tc)
    assert t.add("w", 10)
    assert _kind(t, "w") is int  # a singleton is the bare value
    assert t.add("w", 5)
    assert _kind(t, "w") is bytes
    for x in range(100, 100 + SMALL_MAX - 2):
        t.add("w", x)
    assert _kind(t, "w") is bytes and t.df("w") == SMALL_MAX
    t.add("w", 1)  # out of order, at the border
    assert _kind(t, "w") is _Long and t.df("w") == SMALL_MAX + 1
    vals = t.get("w")
    assert vals is not None
    for x in list(vals)[: SMALL_MAX + 1 - SMALL_MIN]:
        assert t.remove("w", x)
    assert _kind(t, "w") is bytes and t.df("w") == SMALL_MIN
    for x in list(t.get("w") or [])[:-1]:
        t.remove("w", x)
    assert _kind(t, "w") is int and t.df("w") == 1
    assert t.remove("w", 100 + SMALL_MAX - 3)
    assert "w" not in t and t.terms_count() == 0 and t.postings_count() == 0
    assert t.memory_bytes() == t.exact_memory_bytes()


@pytest.mark.parametrize("tc", ["I", "Q"])
def test_the_collector_does_not_walk_the_term_dict(tc: str) -> None:
    """Long lists are arrays, which the collector tracks; the term dict must still be untracked after a full
    pass, or every full pass walks every term (the module header)."""
    t = PostingsTable(tc)
    for x in range(1, 3 * SMALL_MAX):
        t.add_fresh(["long", f"w{x}"], x)
    t.add("long", 0)  # out of order: the slow path's array too
    t.add("other", 5)
    for x in range(6, 6 + 2 * SMALL_MAX):
        t.add_all(["other"], x)
    assert _kind(t, "long") is _Long and _kind(t, "other") is _Long
    gc.collect()
    assert not gc.is_tracked(t._d)
    t.add_fresh(["long", "new"], 10**6)
    t.add("third", 1)
    for x in range(2, 2 + 2 * SMALL_MAX):
        t.add("third", x)  # promoted by add
    assert _kind(t, "third") is _Long and not gc.is_tracked(t._d)
    loaded = PostingsTable.load_parts({k: memoryview(v) for k, v in t.dump_parts("p")}, "p", tc)
    gc.collect()
    assert not gc.is_tracked(loaded._d) and list(loaded.get("long") or []) == list(t.get("long") or [])


def test_out_of_order_insert_and_idempotence() -> None:
    t = PostingsTable("Q")
    for x in [50, 10, 30, 10, 2**64 - 1, 20, 30]:
        t.add("w", x)
    assert list(t.get("w") or []) == [10, 20, 30, 50, 2**64 - 1]
    assert t.postings_count() == 5
    assert not t.add("w", 20)
    assert not t.remove("w", 21)
    assert not t.remove("nope", 1)
    assert t.get("nope") is None and t.df("nope") == 0


def test_value_range_is_checked() -> None:
    t = PostingsTable("I")
    t.add("w", 2**32 - 1)
    with pytest.raises(AssertionError):
        t.add("w", 2**32)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from("abc"), st.integers(0, 80)),
        max_size=300,
    )
)
def test_table_equals_a_dict_of_sets(ops: list[tuple[bool, str, int]]) -> None:
    t = PostingsTable("Q")
    model: dict[str, set[int]] = {}
    for is_add, term, x in ops:
        s = model.setdefault(term, set())
        if is_add:
            assert t.add(term, x) == (x not in s)
            s.add(x)
        else:
            assert t.remove(term, x) == (x in s)
            s.discard(x)
    model = {k: v for k, v in model.items() if v}
    assert t.terms_count() == len(model)
    assert t.postings_count() == sum(map(len, model.values()))
    for term in "abc":
        got = t.get(term)
        assert (list(got) if got is not None else []) == sorted(model.get(term, ()))
        assert t.df(term) == len(model.get(term, ()))


def test_memory_estimate_is_close_to_the_walk_and_compact() -> None:
    rng = random.Random(7)
    t = PostingsTable("I")
    for doc in range(20_000):  # Zipf-ish: a few frequent terms, many rare ones
        for _ in range(8):
            t.add(f"t{int(rng.paretovariate(0.8))}", doc)
    est, exact = t.memory_bytes(), t.exact_memory_bytes()
    assert abs(est - exact) / exact < 0.05, (est, exact)
    assert exact / t.postings_count() < 12


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sets(st.sampled_from([f"t{i}" for i in range(12)])), max_size=120), st.sampled_from(["I", "Q"]))
def test_fresh_paths_equal_add_one_by_one(docs: list[set[str]], tc: str) -> None:
    # the inlined fresh path crosses every form (int -> bytes -> array) and must keep the counters exact
    fast, slow = PostingsTable(tc), PostingsTable(tc)
    for x, terms in enumerate(docs):
        fast.add_all(terms, x, fresh=True)
        for term in terms:
            slow.add(term, x)
    assert fast._d == slow._d
    assert (fast.postings_count(), fast.terms_count()) == (slow.postings_count(), slow.terms_count())
    assert fast.memory_bytes() == slow.memory_bytes()
