"""node.index.matcher.phrase_checker(q) must equal node.query.match.matches(q, ·) on any query and tweet."""

from __future__ import annotations

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st

from node.index.matcher import phrase_checker, text_phrase_checker
from node.model import GeoPoint, Tweet
from node.query.ast import And, Near, Node, Or, Phrase, Query, Term
from node.query.match import index_terms, matches
from node.query.parser import parse
from node.records import DeleteTweet
from node.store.tweets import TweetStore
from node.text.analyzer import contains_phrase

WORDS = ["a", "b", "ice", "cream", "é", "_", "x" * 64, "x" * 65, "straße", "http", "t", "co", "١٢"]
_PIECES = st.sampled_from(
    [*WORDS, " ", "#", "@", "-", "'", "ﬁ", "Ǆ", "İ", "ＩＣＥ", "http://x.y/a b", "https://t.co/#ice", "://", "\n"]
)
text_st = st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=14).map("".join)

term_st = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(WORDS).map(lambda w: "#" + w),
    st.sampled_from(WORDS).map(lambda w: "@" + w),
    st.sampled_from(["from:bob", "from:straße", "lang:en", "lang:", "#", "a b", "", "from:"]),
)
leaf_st = st.one_of(
    term_st.map(Term),
    st.lists(st.sampled_from([*WORDS, "a-b", ""]), max_size=4).map(lambda w: Phrase(tuple(w))),
)


def _extend(inner: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda c: Or(tuple(c))),
        st.builds(lambda m, n: And(tuple(m), tuple(n)), st.lists(inner, min_size=1, max_size=2), st.lists(inner, max_size=2)),
    )


root_st = st.builds(
    lambda m, n: And(tuple(m), tuple(n)),
    st.lists(st.recursive(leaf_st, _extend, max_leaves=5), min_size=1, max_size=3),
    st.lists(leaf_st, max_size=2),
)
query_st = st.builds(
    Query,
    root_st,
    since_ms=st.one_of(st.none(), st.integers(0, 10)),
    until_ms=st.one_of(st.none(), st.integers(0, 10)),
    near=st.one_of(st.none(), st.just(Near(0.0, 0.0, 100.0))),
)
tweet_st = st.builds(
    Tweet,
    id=st.just(1),
    created_at_ms=st.integers(0, 10),
    user=st.sampled_from(["Bob", "bob", "STRASSE", "Straße", "ｂｏｂ"]),
    text=text_st,
    lang=st.one_of(st.none(), st.sampled_from(["EN", "en", "fr"])),
    geo=st.one_of(st.none(), st.just(GeoPoint(0.5, 0.5)), st.just(GeoPoint(10.0, 10.0))),
)


@settings(max_examples=1000, deadline=None)
@given(query_st, st.lists(tweet_st, min_size=1, max_size=4))
@example(Query(And((Phrase(("a", "b")),))), [Tweet(1, 0, "u", "a " + "x" * 65 + " b")])
@example(Query(And((Phrase(("a", "b")),))), [Tweet(1, 0, "u", "a " + "x" * 65 + "-" + "y" * 70 + "! b")])
@example(Query(And((Phrase(("a", "b")),))), [Tweet(1, 0, "u", "ba b"), Tweet(1, 0, "u", "a ba"), Tweet(1, 0, "u", "a_ b")])
@example(Query(And((Phrase(("ice", "cream")),))), [Tweet(1, 0, "u", "I love #ICE, @cream! http://a.b/ice-cream")])
def test_phrase_checker_equals_matches(q: Query, tweets: list[Tweet]) -> None:
    by_find, by_regex, switching = phrase_checker(q, 10**9), phrase_checker(q, 0), phrase_checker(q, 1)
    for t in tweets:
        want = matches(q, t)
        assert by_find(t) == want, (q, t)
        assert by_regex(t) == want, (q, t)
        assert switching(t) == want, (q, t)


@settings(max_examples=300, deadline=None)
@given(query_st, st.lists(tweet_st, min_size=1, max_size=6), st.sets(st.integers(1, 6)))
def test_stored_rows_pass_a_check_as_their_tweets_do(q: Query, tweets: list[Tweet], deleted: set[int]) -> None:
    """TweetStore.passing (a local search's verify) reads each row's fields for the check instead of building the
    Tweet: the same answer as the check of each tweet, none for a deleted or unknown id, at the stored version."""
    store = TweetStore()
    stored = [msgspec.structs.replace(t, id=k + 1, version=10 + k) for k, t in enumerate(tweets)]
    for t in stored:
        store.put(t, 0)
    for i in deleted:
        store.delete(DeleteTweet(i, 100 + i, 0), 0)
    want = {t.id: t.version for t in stored if t.id not in deleted and matches(q, t)}
    assert store.passing([*range(1, 8), 99], phrase_checker(q)) == want


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3), text_st)
def test_text_phrase_checker_equals_the_analyser(words: list[str], text: str) -> None:
    _, seq = index_terms(Tweet(1, 0, "u", text))
    want = contains_phrase(seq, words)
    assert text_phrase_checker(words, 10**9)(text) == want
    assert text_phrase_checker(words, 0)(text) == want


def test_parsed_queries_agree_on_examples() -> None:
    tweets = [Tweet(1, 0, "Bob", t, lang="EN") for t in ("Loving #Python, @Bob!", "don't stop", "ice-cream #ice cream")]
    for qs in ('"ice cream"', "don't", '"love python"', "#python bob", "from:bob -#ice", "lang:en OR cream"):
        q = parse(qs)
        check = phrase_checker(q)
        assert [check(t) for t in tweets] == [matches(q, t) for t in tweets], qs
