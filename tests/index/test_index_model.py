"""InvertedIndex against a brute-force model: the same adds, removes and edits, then random queries of the whole
language (Term, Phrase via accept, Or, nested And, must_not) with random count/max_id/since_id; ids and
next_max_id must equal filter + sort descending + take count, and pages walked by next_max_id the full list."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.index.index import InvertedIndex
from node.query.ast import And, Node, Or, Phrase, Term
from node.query.match import matches_node

VOCAB = ["a", "b", "c", "d", "e", "#a", "@b"]
WORDS = ["a", "b", "c", "d", "e"]
ID_TOP = 2**64 - 1

ids_st = st.one_of(st.integers(1, 60), st.integers(ID_TOP - 5, ID_TOP))
words_st = st.lists(st.sampled_from(WORDS), max_size=6).map(tuple)
tags_st = st.sets(st.sampled_from(["#a", "@b"]), max_size=2)

# ("add", id, words, tags) | ("remove", id) | ("edit", id, words, tags) | ("settle", k) | ("read", term); add of a
# present id and remove/edit of an absent one are skipped. A read checks the term's df against the model between
# writes: it puts the pending staged tweets into a staging table (and may rotate the tables), so later removes
# and edits meet staged tweets both in a table and still pending.
op_st = st.one_of(
    st.tuples(st.just("read"), st.sampled_from(VOCAB)),
    st.tuples(st.just("add"), ids_st, words_st, tags_st),
    st.tuples(st.just("add"), ids_st, words_st, tags_st),
    st.tuples(st.just("remove"), ids_st),
    st.tuples(st.just("edit"), ids_st, words_st, tags_st),
    st.tuples(st.just("settle"), st.integers(0, 3)),  # settle all (0) or the lowest 1..3 staged
)

leaf_st = st.one_of(
    st.sampled_from([*VOCAB, "missing"]).map(Term),
    st.lists(st.sampled_from(WORDS), min_size=2, max_size=3).map(lambda w: Phrase(tuple(w))),
)


def _extend(inner: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda c: Or(tuple(c))),
        st.builds(
            lambda m, n: And(tuple(m), tuple(n)),
            st.lists(inner, min_size=1, max_size=3),
            st.lists(inner, max_size=2),
        ),
    )


node_st = st.recursive(leaf_st, _extend, max_leaves=6)
root_st = st.builds(
    lambda m, n: And(tuple(m), tuple(n)), st.lists(node_st, min_size=1, max_size=3), st.lists(node_st, max_size=2)
)
bound_st = st.one_of(st.none(), st.integers(0, 65), st.integers(ID_TOP - 6, ID_TOP))
query_st = st.tuples(root_st, st.integers(1, 8), bound_st, bound_st, st.booleans())


def _has_phrase(n: Node) -> bool:
    if isinstance(n, Phrase):
        return True
    if isinstance(n, Term):
        return False
    if isinstance(n, Or):
        return any(map(_has_phrase, n.children))
    return any(map(_has_phrase, (*n.must, *n.must_not)))


def _terms(words: tuple[str, ...], tags: set[str]) -> set[str]:
    return set(words) | tags


def _build(
    ops: list[tuple], stage: tuple[int, int, int] = (8192, 256, 512)
) -> tuple[InvertedIndex, dict[int, tuple[set[str], tuple[str, ...]]]]:
    ix = InvertedIndex(stage_keep=stage[0], stage_step=stage[1], sync_every=stage[2])
    model: dict[int, tuple[set[str], tuple[str, ...]]] = {}
    for op in ops:
        kind, tid = op[0], op[1]
        if kind == "settle":
            ix.settle(None if tid == 0 else tid)
        elif kind == "read":
            assert ix.df(tid) == sum(tid in t for t, _ in model.values())
        elif kind == "add" and tid not in model:
            model[tid] = (_terms(op[2], op[3]), op[2])
            ix.add(tid, model[tid][0])
        elif kind == "remove" and tid in model:
            ix.remove(tid, model.pop(tid)[0])
        elif kind == "edit" and tid in model:
            ix.remove(tid, model[tid][0])
            model[tid] = (_terms(op[2], op[3]), op[2])
            ix.add(tid, model[tid][0])
    return ix, model


def _expected(model, root: And, max_id: int | None, since_id: int | None) -> list[int]:
    return sorted(
        (
            tid
            for tid, (terms, words) in model.items()
            if (max_id is None or tid <= max_id)
            and (since_id is None or tid > since_id)
            and matches_node(root, terms, words)
        ),
        reverse=True,
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(op_st, max_size=60),
    st.lists(query_st, min_size=1, max_size=6),
    st.sampled_from([(1, 1, 1), (2, 1, 2), (3, 2, 1), (5, 5, 2), (8, 3, 3), (8192, 256, 512)]),
)
def test_search_equals_brute_force(ops: list[tuple], queries: list[tuple], stage: tuple[int, int, int]) -> None:
    """Staging of 1..8 tweets (stage_keep, stage_step, sync_every) flushes and rotates often: ids in main, staged
    (live and dead entries in both staging tables, or pending) and on the side table at once; after a read the
    writes sync every 1..3 arrivals; the default keeps every tweet of a small test staged unless a settle op moves
    them."""
    ix, model = _build(ops, stage)
    assert ix.postings_count() == sum(len(t) for t, _ in model.values())
    assert ix.terms_count() == len(set().union(*(t for t, _ in model.values())))
    for term in VOCAB:
        assert ix.df(term) == sum(term in t for t, _ in model.values())

    for root, count, max_id, since_id, force_accept in queries:

        def accept(tid: int, root: And = root) -> bool:
            terms, words = model[tid]
            return matches_node(root, terms, words)

        use_accept = force_accept or _has_phrase(root)
        want = _expected(model, root, max_id, since_id)
        got, next_max = ix.search(root, count, max_id, since_id, accept if use_accept else None)
        assert got == want[:count]
        assert next_max == (want[count - 1] - 1 if len(want) > count else None)

        # iter_newest is a superset of the matches, newest first, within the bounds; exact without phrases
        cands = list(ix.iter_newest(root, max_id, since_id))
        assert cands == sorted(set(cands), reverse=True)
        assert set(want) <= set(cands)
        assert all((max_id is None or c <= max_id) and (since_id is None or c > since_id) for c in cands)
        if not _has_phrase(root):
            assert cands == want
        # window: the same candidates, the first `count` of them and whether that is all
        assert ix.window(root, max_id, since_id, count) == (cands[:count], len(cands) <= count)

        # pagination: following next_max_id walks exactly the whole list
        pages: list[int] = []
        cursor = max_id
        for _ in range(len(want) + 2):
            page, cursor = ix.search(root, count, cursor, since_id, accept if use_accept else None)
            pages += page
            if cursor is None:
                break
        assert pages == want


def test_negated_phrase_does_not_drop_tweets_with_the_words_apart() -> None:
    ix = InvertedIndex()
    ix.add(1, {"a", "b", "c"})  # words "a c b": holds a and b, not the phrase "a b"
    ix.add(2, {"a", "b", "c"})  # words "a b c": holds the phrase
    words = {1: ("a", "c", "b"), 2: ("a", "b", "c")}
    root = And((Term("c"),), (Phrase(("a", "b")),))

    def accept(tid: int) -> bool:
        return matches_node(root, {"a", "b", "c"}, words[tid])

    assert ix.search(root, 10, None, None, accept) == ([1], None)


def test_missing_term_empties_an_and_and_singletons_slice() -> None:
    ix = InvertedIndex()
    for tid in range(1, 200):
        ix.add(tid, {"x"} | ({"y"} if tid % 7 == 0 else set()))
    assert ix.search(And((Term("x"), Term("nope"))), 10) == ([], None)
    assert ix.search(And((Term("x"),)), 3) == ([199, 198, 197], 196)
    assert ix.search(And((Term("y"),), (Term("nope"),)), 2, max_id=100) == ([98, 91], 90)
    assert ix.search(And((Or((Term("y"), Term("nope"))),)), 2, since_id=189) == ([196], None)


def test_large_lists_cross_chunks_and_both_intersection_paths() -> None:
    # lists far longer than one chunk, with density ratios that take both the set path and the probe path
    import random

    rng = random.Random(3)
    ix = InvertedIndex()
    model: dict[int, set[str]] = {}
    for tid in rng.sample(range(1, 40_000), 20_000):  # mostly out of order: side table too
        terms = {t for t, p in (("x", 0.9), ("y", 0.3), ("z", 0.01), ("w", 0.2)) if rng.random() < p}
        model[tid] = terms
        ix.add(tid, terms)
    for tid in range(40_000, 60_000):
        terms = {t for t, p in (("x", 0.9), ("y", 0.3), ("z", 0.01), ("w", 0.2)) if rng.random() < p}
        model[tid] = terms
        ix.add(tid, terms)
    queries = [
        And((Term("x"), Term("y")), (Term("w"),)),
        And((Term("z"), Term("x")), (Term("y"),)),
        And((Term("y"), Term("w"), Term("x"))),
        And((Term("x"),), (Term("y"), Term("w"))),
    ]
    for root in queries:
        want = sorted((t for t, ts in model.items() if matches_node(root, ts, ())), reverse=True)
        for max_id in (None, 45_000, 12_345):
            w = [t for t in want if max_id is None or t <= max_id]
            assert list(ix.iter_newest(root, max_id, None)) == w
            assert ix.search(root, 100, max_id, None) == (w[:100], w[99] - 1 if len(w) > 100 else None)


def test_a_tweet_staged_through_many_rotations_stays_found() -> None:
    """An id far above the rest stays staged while the lower ones get docnos; each rotation re-adds it to the new
    staging table, and the dead entries the flushes leave behind are never answered."""
    ix = InvertedIndex(stage_keep=3, stage_step=1)
    ix.add(1000, {"x", "high"})
    for tid in range(1, 41):
        ix.add(tid, {"x"} | ({"y"} if tid % 2 else set()))
        assert ix.df("high") == 1  # a read after each add: the pending tweet joins a table, which rotate
    assert ix.staged_count() == 3 and ix.side_postings_count() == 0
    assert ix.search(And((Term("high"),)), 10) == ([1000], None)
    assert ix.search(And((Term("x"),)), 4) == ([1000, 40, 39, 38], 37)
    assert ix.df("x") == 41 and ix.df("y") == 20 and ix.postings_count() == 41 + 20 + 1
    assert ix.search(And((Term("y"),), (Term("high"),)), 3, max_id=1000) == ([39, 37, 35], 34)
    ix.add(20, {"y"})  # an edit's add to a tweet in main, not staging
    assert ix.search(And((Term("y"),)), 3, max_id=21) == ([21, 20, 19], 18)
    assert ix.settle() == 0
    assert ix.search(And((Term("x"),)), 3) == ([1000, 40, 39], 38) and ix.df("x") == 41


def test_a_staged_tweet_leaves_the_collector_one_object_to_walk() -> None:
    """A staged tweet's terms and words are tuples of strings, which a full pass untracks: a set or a list stays
    tracked, and every full pass walked each of their strings (README: "The collector and the term dict")."""
    import gc

    ix = InvertedIndex(stage_keep=10_000, stage_step=10_000)
    ix.add(1, {"x"}, ["x"])
    gc.collect()
    before = len(gc.get_objects())
    for tid in range(2, 1002):
        words = [f"w{tid % 20}", "x", f"v{tid % 7}"]  # few distinct terms: few staging arrays
        ix.add(tid, set(words), words)
    ix.df("x")  # a read: the pending tweets join a staging table
    gc.collect()
    assert ix.staged_count() == 1001
    assert len(gc.get_objects()) - before <= 1000 + 50  # the _Staged holders themselves, not their contents
