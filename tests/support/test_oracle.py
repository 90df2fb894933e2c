"""The test oracle (tests/support/oracle.py) against answers computed by hand from CONTRACT §3, one row per rule:
analysis (NFKC, casefold, URLs, \\w runs, #/@, the 64-character cut), the operators and their precedence, phrases,
from:/lang:/since:/until:/near:, the body forms it reads, and the result_type orders. Nothing here runs the
product: the rows are the contract's words worked out on paper."""

from __future__ import annotations

import pytest

from tests.support import oracle as o

A64, B65 = "a" * 64, "b" * 65
PARIS, VERSAILLES, LONDON, NYC, TOKYO = (48.8566, 2.3522), (48.8049, 2.1204), (51.5074, -0.1278), (40.7128, -74.0060), (
    35.6762,
    139.6503,
)
BODIES = {  # label -> the body as a client sends it (three geo forms; lang in odd cases; one without lang)
    "d1": {"text": "Loving #Python, @Bob! zqall", "user": "Alice", "lang": "en", "created_at": "2019-05-01T23:59:59Z",
           "geo": {"lat": PARIS[0], "lon": PARIS[1]}, "likes": 5},
    "d2": {"text": "I love ice cream https://t.co/xyz #IceCream zqall", "user": "bob", "lang": "EN-gb",
           "created_at": "2019-05-02T00:00:00Z", "geo": list(LONDON), "retweets": 2},
    "d3": {"text": "#Ice Cream truck don't stop zqall", "user": "Carol_K", "created_at": "2019-05-03T12:00:00Z",
           "likes": 4},
    "d4": {"text": "ｆｕｌｌｗｉｄｔｈ Straße ﬁne zqall", "user": "ÅSA", "lang": "de", "created_at": "2019-04-30T23:59:59Z",
           "geo": {"type": "Point", "coordinates": list(VERSAILLES)}},
    "d5": {"text": "python is not a snake @alice zqall", "user": "dave", "lang": "en",
           "created_at": "2019-05-02T12:00:00+02:00", "geo": {"lat": NYC[0], "lon": NYC[1]}, "likes": 1, "retweets": 1},
    "d6": {"text": f"{A64} {B65} tail zqall", "user": "eve", "lang": "ja", "created_at": "2019-05-05T00:00:00Z",
           "geo": list(TOKYO)},
    "d7": {"text": "東京 ラーメン #東京 zqall", "user": "kenji", "lang": "ja", "created_at": "2019-05-06T03:00:00Z"},
    "d8": {"text": "visit http://example.com/python now #ice-cream zqall", "user": "BOB", "lang": "en",
           "created_at": "2019-05-07T09:00:00Z"},
}
DOCS = [o.doc_of(b, tweet_id=int(k[1:])) for k, b in BODIES.items()]

GOLDEN: list[tuple[str, set[str]]] = [
    # analysis
    ("python", {"d1", "d5"}),  # `#Python` gives the word too; the URL of d8 gives nothing
    ("#python", {"d1"}),
    ("@bob", {"d1"}),
    ("bob", {"d1"}),  # the user is not a word
    ("example", set()),  # inside a URL
    ("https", set()),
    ("fullwidth", {"d4"}),  # NFKC of the full-width letters
    ("FULLWIDTH", {"d4"}),
    ("strasse", {"d4"}),  # casefold of ß
    ("fine", {"d4"}),  # NFKC of the ligature
    (A64, {"d6"}),  # 64 characters: kept
    ("b" * 64, set()),  # the 65-character run was dropped, not cut
    (f"tail {B65}", {"d6"}),  # a query word over 64 characters is ignored
    ("東京", {"d7"}),
    ("#東京", {"d7"}),
    ("ラーメン", {"d7"}),
    # operators
    ("ice cream", {"d2", "d3", "d8"}),
    ("python OR snake", {"d1", "d5"}),
    ("not python OR cream", {"d5"}),  # = not AND (python OR cream)
    ("(not python) OR cream", {"d2", "d3", "d5", "d8"}),
    ("python -snake", {"d1"}),
    ("cream -#icecream", {"d3", "d8"}),
    ("ice -(truck OR now)", {"d2"}),
    ("zqall -from:bob -lang:ja -lang:en", {"d3", "d4"}),
    ("-OR zqall", {"d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8"}),  # `-OR` excludes the word "or"
    ("zqall !!! ...", {"d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8"}),  # words without terms are ignored
    # phrases
    ('"ice cream"', {"d2", "d3", "d8"}),  # `#Ice Cream` and `#ice-cream` hold it too
    ('"cream ice"', set()),
    ('"#ice cream"', {"d2", "d3", "d8"}),  # a sign inside quotes is ignored
    ('"love ice cream"', {"d2"}),
    ("don't", {"d3"}),  # one word, two runs: their phrase
    ("dont", set()),
    ('"truck don t stop"', {"d3"}),
    # signed terms
    ("#ice", {"d3", "d8"}),
    ("#icecream", {"d2"}),
    ("#ice-cream", {"d3", "d8"}),  # #ice AND "ice cream"
    ("@alice", {"d5"}),
    ("alice", {"d5"}),
    # fields
    ("from:BOB", {"d2", "d8"}),
    ("from:@bob zqall", {"d2", "d8"}),
    ("from:åsa", {"d4"}),
    ("from:carol_k OR from:kenji", {"d3", "d7"}),
    ('from:"carol_k"', {"d3"}),
    ("lang:en", {"d1", "d5", "d8"}),  # not EN-gb
    ("lang:en-GB", {"d2"}),
    ("lang:JA zqall", {"d6", "d7"}),
    # time: UTC days; d5 is 10:00 UTC on 05-02
    ("since:2019-05-02 zqall", {"d2", "d3", "d5", "d6", "d7", "d8"}),
    ("until:2019-05-02 zqall", {"d1", "d4"}),
    ("since:2019-05-02 until:2019-05-03 zqall", {"d2", "d5"}),
    ("since:2019-05-01 since:2019-05-05 zqall", {"d6", "d7", "d8"}),  # both hold: the later wins
    # geo: Versailles is ~18 km from Paris; no geo never matches
    ("near:48.8566,2.3522 within:20km zqall", {"d1", "d4"}),
    ("near:48.8566,2.3522 within:10km zqall", {"d1"}),
    ("near:51.5,-0.12 within:5km zqall", {"d2"}),
    ("near:40.71,-74.0 within:3mi zqall", {"d5"}),
    ("near:40.71,-74.0 within:0.1mi zqall", set()),
    ("near:48.8566,2.3522 within:20000km zqall", {"d1", "d2", "d4", "d5", "d6"}),
]


@pytest.mark.parametrize(("q", "want"), GOLDEN, ids=[q for q, _ in GOLDEN])
def test_golden(q: str, want: set[str]) -> None:
    got = {f"d{d.id}" for d in o.matching(DOCS, q)}
    assert got == want


@pytest.mark.parametrize("q", ["-python", "python OR", "OR python", "a OR -b", '"open', "(a", ") a", "()",
                               "since:2019-5-1 a", "near:1,2 a", "!!!"])
def test_bad_syntax_is_refused(q: str) -> None:
    with pytest.raises(o.QueryError):
        o.compile_query(q)


def test_body_forms_and_times() -> None:
    d5 = DOCS[4]
    assert d5.created_at_ms == o.iso_ms("2019-05-02T10:00:00Z")
    assert [d.geo for d in DOCS[:4]] == [PARIS, LONDON, None, VERSAILLES]
    assert (DOCS[0].likes, DOCS[1].retweets, DOCS[2].lang) == (5, 2, None)
    # what the client did not send comes from the answer: the id, and the time of a body without one
    d = o.doc_of({"text": "x", "user": "u"}, {"id": 42, "created_at": "2020-01-01T00:00:00.5Z"})
    assert (d.id, d.created_at_ms) == (42, o.iso_ms("2020-01-01T00:00:00Z") + 500)
    assert round(o.great_circle_km(*PARIS, *VERSAILLES), 1) == 17.9  # by hand: 0.0517° N and 0.2318° E at 48.8° N: √(5.75² + 16.98²) km
    assert round(o.great_circle_km(0, 0, 0, 180)) == round(3.141592653589793 * o.EARTH_RADIUS_KM)


def test_orders_recent_popular_mixed() -> None:
    # engagement: d1 5, d2 4, d3 4, d5 3, others 0; ties newest (highest id) first
    assert o.page(DOCS, "zqall") == [8, 7, 6, 5, 4, 3, 2, 1]
    assert o.page(DOCS, "zqall", count=3, max_id=6, since_id=2) == [6, 5, 4]
    assert o.page(DOCS, "zqall", result_type="popular") == [1, 3, 2, 5, 8, 7, 6, 4]
    assert o.page(DOCS, "zqall", count=2, result_type="popular") == [1, 3]
    # mixed, count 8: a quarter of the page (2) of the engaged ones first, then the newest of the rest
    assert o.page(DOCS, "zqall", count=8, result_type="mixed") == [1, 3, 8, 7, 6, 5, 4, 2]
    assert o.page(DOCS, "zqall", count=4, result_type="mixed") == [1, 8, 7, 6]
    assert o.page(DOCS, "zqall", count=3, result_type="mixed") == [8, 7, 6]  # a quarter of 3 is none
    assert o.page(DOCS, "#東京", result_type="mixed") == [7]  # nothing engaged: the newest
    edited = [d.edited(likes=0) if d.id == 1 else d for d in DOCS]
    assert o.page(edited, "zqall", count=2, result_type="popular") == [3, 2]
