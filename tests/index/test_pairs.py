"""InvertedIndex with next-word pairs (pairs.py) against a brute-force model: a seeded prefix of tweets makes words
frequent at different docnos, then random adds, removes (with or without words), edits and out-of-order adds,
sometimes an add without words (the index goes blind); phrase searches must still equal the model's.
The prefix goes through add_many or add one by one."""

from __future__ import annotations

import random

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from node.index.index import InvertedIndex
from node.index.pairs import LOOK_STEP, PairIndex, PairState, dump_pairs, load_pairs, pair_terms
from node.index.postings import PostingsTable
from node.query.ast import And, Node, Or, Phrase, Term
from node.query.match import matches_node

WORDS = ["a", "b", "c", "d", "e"]
words_st = st.lists(st.sampled_from(WORDS), max_size=6).map(tuple)
ids_st = st.integers(1, 400)

# ("add", id, words) | ("remove", id, with_words) | ("edit", id, words) | ("blind", id, words)
op_st = st.one_of(
    st.tuples(st.just("add"), ids_st, words_st),
    st.tuples(st.just("remove"), ids_st, st.booleans()),
    st.tuples(st.just("edit"), ids_st, words_st),
    st.tuples(st.just("blind"), ids_st, words_st),
)
phrase_st = st.lists(st.sampled_from(WORDS), min_size=2, max_size=3).map(lambda w: Phrase(tuple(w)))
node_st: st.SearchStrategy[Node] = st.one_of(
    phrase_st,
    st.lists(phrase_st, min_size=2, max_size=2).map(lambda c: Or(tuple(c))),
    st.sampled_from(WORDS).map(Term),
)
root_st = st.builds(
    lambda m, n: And(tuple(m), tuple(n)), st.lists(node_st, min_size=1, max_size=2), st.lists(node_st, max_size=1)
)
query_st = st.tuples(root_st, st.integers(1, 30), st.one_of(st.none(), st.integers(0, 420)))


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32),
    st.integers(33, 70),
    st.lists(op_st, max_size=40),
    st.lists(query_st, min_size=1, max_size=5),
)
def test_phrase_search_with_pairs_equals_brute_force(seed: int, df_min: int, ops: list[tuple], queries: list) -> None:
    rng = random.Random(seed)
    ix = InvertedIndex(
        PairIndex(df_min=df_min, docs_per_df=10**9, check_every=rng.choice([1, 7])), stage_keep=rng.choice([1, 5]), stage_step=1
    )
    model: dict[int, tuple[str, ...]] = {}
    for tid in range(1, 301, 2):  # odd ids ascending; even ones are free for out-of-order adds
        model[tid] = tuple(rng.choice(WORDS[: rng.randint(2, 5)]) for _ in range(rng.randint(0, 7)))
    prefix = [(tid, set(ws), ws) for tid, ws in model.items()]
    if seed % 2:
        ix.add_many(prefix)
    else:
        for item in prefix:
            ix.add(*item)
    for op in ops:
        kind, tid = op[0], op[1]
        if kind in ("add", "blind") and tid not in model:
            model[tid] = op[2]
            ix.add(tid, set(op[2]), op[2] if kind == "add" else None)
        elif kind == "remove" and tid in model:
            ws = model.pop(tid)
            ix.remove(tid, set(ws), ws if op[2] else None)
        elif kind == "edit" and tid in model:
            old, new = model[tid], op[2]
            model[tid] = new
            ix.remove(tid, set(old) - set(new), old)
            ix.add(tid, set(new) - set(old), new)
    stats = ix.pairs_stats()
    assert stats is None or stats[0] > 0  # the prefix always makes some word frequent
    for root, count, max_id in queries:

        def accept(tid: int, root: And = root) -> bool:
            return matches_node(root, set(model[tid]), model[tid])

        want = sorted((t for t in model if (max_id is None or t <= max_id) and accept(t)), reverse=True)
        got, next_max = ix.search(root, count, max_id, None, accept)
        assert got == want[:count]
        assert next_max == (want[count - 1] - 1 if len(want) > count else None)
        assert set(want) <= set(ix.iter_newest(root, max_id, None))


def test_pairs_cut_candidates_to_the_adjacent_ones() -> None:
    ix = InvertedIndex(PairIndex(df_min=40, docs_per_df=10**9, check_every=1), stage_keep=1, stage_step=1)
    for tid in range(1, 101):  # "a" and "b" in every tweet, adjacent only in every 10th after they got frequent
        ws = ("a", "b") if tid % 10 == 0 else ("a", f"x{tid}", "b")
        ix.add(tid, set(ws), ws)
    ix.settle()  # the last staged tweets get their docnos too
    assert ix.pairs_stats() == (2, 1, 6)  # frequent from about docno 40 on: "a b" at ids 50, 60, ..., 100
    phrase = And((Phrase(("a", "b")),))
    cands = list(ix.iter_newest(phrase))
    cut = cands[6]  # below the docno where the pair list starts, every tweet with both words is a candidate
    assert 40 <= cut < 50
    assert cands == [100, 90, 80, 70, 60, 50, *range(cut, 0, -1)]
    ix.add(101, {"a", "b"})  # no words: the pairs can no longer be trusted
    ix.settle()
    assert ix.pairs_stats() is None
    assert len(list(ix.iter_newest(phrase))) == 101


def test_add_many_equals_adds_in_order() -> None:
    rng = random.Random(5)
    items = []
    tids = sorted(rng.sample(range(1, 3000), 1500))
    for i in range(0, len(tids) - 1, 10):  # ascending runs broken by out-of-order ids
        tids[i], tids[i + 1] = tids[i + 1], tids[i]
    for tid in tids:
        ws = tuple(rng.choice(WORDS) for _ in range(rng.randint(0, 6)))
        items.append((tid, set(ws) | {f"from:u{tid % 7}"}, ws if tid < 2500 else None))
    one, many = InvertedIndex(stage_keep=64, stage_step=16), InvertedIndex(stage_keep=64, stage_step=16)
    for item in items:
        one.add(*item)
    many.add_many(items)
    one.settle()
    many.settle()
    assert one.pairs_stats() is None and many.pairs_stats() is None  # the last ones came without words
    for root in (And((Term("a"),)), And((Phrase(("a", "b")),), (Term("from:u3"),)), And((Or((Term("c"), Term("d"))),))):
        assert list(one.iter_newest(root)) == list(many.iter_newest(root))
    assert one.postings_count() == many.postings_count() and one.terms_count() == many.terms_count()


def test_pair_terms_and_a_fixed_frequent_set() -> None:
    assert pair_terms(("a", "b", "x", "b", "a", "a"), {"a", "b"}) == {"a b", "b a", "a a"}
    assert pair_terms(("a",), {"a"}) == set() and pair_terms((), {"a"}) == set()
    ix = InvertedIndex(PairIndex(frequent={"a", "b"}), stage_keep=1, stage_step=1)  # frequent from docno 0: no tweet below a cut
    for tid, ws in enumerate([("a", "b"), ("b", "a"), ("a", "x", "b"), ("x", "a", "b", "y")], 1):
        ix.add(tid, set(ws), ws)
    ix.settle()
    assert list(ix.iter_newest(And((Phrase(("a", "b")),)))) == [4, 1]
    assert list(ix.iter_newest(And((Phrase(("x", "a", "b")),)))) == [4]


def test_a_look_over_a_big_watch_is_spread_over_calls_and_survives_a_snapshot() -> None:
    asked: list[str] = []

    class Counting(PostingsTable):
        def df(self, term: str) -> int:
            asked.append(term)
            return super().df(term)

    main = Counting("I", track_promotions=True)
    words = [f"w{k}" for k in range(3 * LOOK_STEP + 10)]
    for w in words:  # every word's list is an array (watched); the even ones are frequent enough
        for d in range(40 if int(w[1:]) % 2 == 0 else 34):
            main.add_fresh([w], d)
    p = PairIndex(df_min=40, docs_per_df=10**9, check_every=1)
    p.maybe_promote(main, 100)
    assert len(asked) == LOOK_STEP  # one slice of the watch, not all of it
    assert p.frequent_count() == LOOK_STEP // 2
    state, parts = dump_pairs(p)  # mid-look: the rest of the look comes back with the snapshot
    q = load_pairs(msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=PairState), dict(_parts(parts)))
    for docs in range(101, 105):
        p.maybe_promote(main, docs)
        q.maybe_promote(main, docs)
    assert p.frequent_count() == q.frequent_count() == len(words) // 2
    assert p.plans(("w0", "w2")) and not p.plans(("w1", "w3"))
    assert p._start == q._start


def _parts(parts: list[tuple[str, bytes | memoryview]]) -> list[tuple[str, memoryview]]:
    return [(k, memoryview(bytes(v))) for k, v in parts]
