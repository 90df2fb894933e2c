"""Distributed search against the brute-force model, in one process (NodeServices on a direct in-memory caller):
every plan of node/search/cursor.py must give exactly the model's pages, with pagination, after random edits and
deletes. Three nodes (N = nodes): the local plan, confirmed by digests. Four nodes (N = 3 < nodes, postings through
the outbox): the whole query pushed down to replicas that hold every term, and (the `fallback` coordinator) the
term-by-term plan, driving terms walked in windows and the rest probed."""

from __future__ import annotations

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_service_sim import FOUR, NAMES, cluster

import node.search.cursor as search_mod
from node.coordinator import SearchRequest
from node.errors import InvalidQuery
from node.model import TweetIn, TweetPatch
from node.query.match import matches
from node.query.parser import parse

WORDS = ["apple", "banana", "cherry", "date"]
word = st.sampled_from(WORDS)
text = st.lists(st.one_of(word, word.map(lambda w: "#" + w), st.sampled_from(["@ann", "@bob", "!", "x"])), min_size=1, max_size=8).map(" ".join)
atom = st.one_of(word, word.map(lambda w: "#" + w), st.tuples(word, word).map(lambda p: f'"{p[0]} {p[1]}"'), st.just("from:ann"))
part = st.one_of(atom, st.tuples(atom, atom).map(lambda p: f"{p[0]} OR {p[1]}"), atom.map(lambda a: "-" + a))
query = st.lists(part, min_size=1, max_size=3).map(" ".join)


@pytest.mark.parametrize("names", [NAMES, FOUR], ids=["local", "pushdown-and-terms"])
@given(
    st.lists(st.tuples(text, st.sampled_from(["ann", "bob"])), min_size=1, max_size=80),
    st.lists(st.tuples(st.integers(0, 39), st.one_of(st.none(), text)), max_size=10),
    st.lists(query, min_size=1, max_size=6),
    st.integers(1, 7),
    st.sampled_from([1, 2, 128]),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_plan_equals_the_model(names, tweets, changes, queries, count, window):
    """`window`: the first window sizes; tiny ones force many rounds of window growth."""
    search_mod.WINDOW_MIN = search_mod.PUSHDOWN_WINDOW_MIN = window
    async def main() -> None:
        _net, coords, _ = cluster(names=names)
        made = await coords["a"].bulk_create([TweetIn(text=t, user=u, id=1000 + k * 7) for k, (t, u) in enumerate(tweets)])
        live = {c.tweet.id: c.tweet for c in made}  # type: ignore[union-attr]
        ids = sorted(live)
        for k, new_text in changes:
            i = ids[k % len(ids)]
            if i not in live:
                continue
            if new_text is None:
                await coords["b"].delete_tweet(i)
                del live[i]
            else:
                live[i] = await coords["c"].patch_tweet(i, TweetPatch(text=new_text))
        fallback = coords["b"]
        fallback._holders = lambda terms: []  # type: ignore[method-assign]
        for qs in queries:
            try:
                q = parse(qs)
            except InvalidQuery:
                continue
            want = sorted((i for i, t in live.items() if matches(q, t)), reverse=True)
            for coord in (coords["a"], fallback):
                got: list[int] = []
                max_id = None
                while True:
                    res = await coord.search(SearchRequest(q, count=count, max_id=max_id))
                    assert not res.partial
                    got += [t.id for t in res.tweets]
                    assert len(res.tweets) <= count
                    if res.next_max_id is None:
                        break
                    max_id = res.next_max_id
                assert got == want, (qs, coord.me)

    try:
        trio.run(main)
    finally:
        search_mod.WINDOW_MIN, search_mod.PUSHDOWN_WINDOW_MIN = 128, 16
