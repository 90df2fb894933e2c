"""The brute-force query model: does one tweet match one parsed query? Also the one definition of a tweet's
index terms (`index_terms`), which the inverted index must use as it is.

Keep it dumb and obviously right: the fast index is tested against it and verifies candidates with it.
Pure: no I/O, no clock, no caching.
"""

from __future__ import annotations

import math

from node.model import Tweet
from node.query.ast import And, Node, Or, Phrase, Query, Term
from node.text.analyzer import Analysis, analyse, contains_phrase, normalise

EARTH_RADIUS_KM = 6371.0088  # the mean radius (IUGG)


def index_terms(t: Tweet) -> tuple[set[str], tuple[str, ...]]:
    """(every index term of the tweet, its word sequence for phrases): the analyser's terms of the text,
    'from:' + the casefolded user, and 'lang:' + the casefolded lang when the tweet has one."""
    a = analyse(t.text)
    return analysed_terms(a, t.user, t.lang), a.words


def analysed_terms(a: Analysis, user: str, lang: str | None) -> set[str]:
    """The index terms of an analysed text written by `user` in `lang` (the part of index_terms after analysis)."""
    terms = a.terms()
    terms.add("from:" + normalise(user))
    if lang is not None:
        terms.add("lang:" + normalise(lang))
    return terms


def matches_node(n: Node, terms: set[str], words: tuple[str, ...]) -> bool:
    if isinstance(n, Term):
        return n.term in terms
    if isinstance(n, Phrase):
        return contains_phrase(words, list(n.words))
    if isinstance(n, Or):
        return any(matches_node(c, terms, words) for c in n.children)
    assert isinstance(n, And), n
    return all(matches_node(c, terms, words) for c in n.must) and not any(
        matches_node(c, terms, words) for c in n.must_not
    )


def matches(q: Query, t: Tweet) -> bool:
    if q.since_ms is not None and t.created_at_ms < q.since_ms:
        return False
    if q.until_ms is not None and t.created_at_ms >= q.until_ms:
        return False
    if q.near is not None:
        if t.geo is None or distance_km(q.near.lat, q.near.lon, t.geo.lat, t.geo.lon) > q.near.km:
            return False
    terms, words = index_terms(t)
    return matches_node(q.root, terms, words)


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance by the haversine formula (well-conditioned for short distances)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
