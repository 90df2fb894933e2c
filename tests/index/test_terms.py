"""node.index.terms must return exactly node.query.match.index_terms' term set and words, on any text."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from node.index.terms import analyse_fast, tweet_terms, tweet_terms_of, tweet_terms_words
from node.model import Tweet
from node.query.match import index_terms
from node.text.analyzer import analyse

_PIECES = st.sampled_from(
    ["#", "@", "##", "http://x.y/#a", "https://t.co/@b", " ", "-", "ﬁ", "Ǆ", "ß", "İ", "Straße", "_", "'", "é", "ｆｕｌｌ", "١٢"]
)
text_st = st.lists(
    st.one_of(st.text(max_size=8), _PIECES, st.just("w" * 64), st.just("x" * 65), st.just("-" * 65)), max_size=12
).map("".join)


@settings(max_examples=500, deadline=None)
@given(text_st, st.text(min_size=1, max_size=5), st.one_of(st.none(), st.text(max_size=3)))
@example("Loving #Python, @Bob! http://t.co/x #" + "a" * 64 + " #" + "b" * 65, "Bob", "EN")
@example("!" * 70, "Bob", None)  # long, yet no word at all
@example("http://t.co/" + "x" * 70, "Bob", None)
def test_same_terms_as_index_terms(text: str, user: str, lang: str | None) -> None:
    want, words = index_terms(Tweet(1, 0, user, text, lang=lang))
    assert tweet_terms(text, user, lang) == want
    assert tweet_terms_words(text, user, lang) == (want, list(words))


@settings(max_examples=500, deadline=None)
@given(text_st)
@example("#a #b #a @x @y @x #" + "c" * 64 + " @" + "d" * 65)
@example("#" + "e" * 65 + " #e")  # the long run is dropped; a short one of its prefix is another tag
def test_analyse_fast_is_analyse(text: str) -> None:
    assert analyse_fast(text) == analyse(text)


@settings(max_examples=500, deadline=None)
@given(text_st, st.text(min_size=1, max_size=5), st.one_of(st.none(), st.text(max_size=3)))
@example("Loving #Python, @Bob! http://t.co/x #" + "a" * 64 + " #" + "b" * 65 + " @" + "c" * 65, "Bob", "EN")
def test_terms_of_an_analysis_are_the_texts_terms(text: str, user: str, lang: str | None) -> None:
    """What a replica indexes from its master's words (PutTweet.words) and the tweet's hashtags and mentions."""
    a = analyse_fast(text)
    assert tweet_terms_of(a.words, a.hashtags, a.mentions, user, lang) == tweet_terms(text, user, lang)
