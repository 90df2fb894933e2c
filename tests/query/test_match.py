"""Tests of the brute-force model `node.query.match` and, through it, of the parser's semantics: a query built
from random AND/OR/NOT trees of atoms must mean exactly the boolean combination of what each atom means."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import InvalidQuery
from node.model import GeoPoint, Tweet
from node.query.match import EARTH_RADIUS_KM, distance_km, index_terms, matches
from node.query.parser import parse

DAY_MS = 86_400_000
D_2011_10_18 = 15265 * DAY_MS


def tw(text: str, user: str = "bob", lang: str | None = None, at: int = D_2011_10_18,
       geo: GeoPoint | None = None) -> Tweet:  # fmt: skip
    return Tweet(id=1, created_at_ms=at, user=user, text=text, lang=lang, geo=geo)


def test_index_terms() -> None:
    terms, words = index_terms(tw("Loving #Python, @Bob! http://x.y/z Straße", user="Ｂob", lang="EN"))
    assert terms == {"loving", "python", "#python", "bob", "@bob", "strasse", "from:bob", "lang:en"}
    assert words == ("loving", "python", "bob", "strasse")
    terms, words = index_terms(tw("", user="Bob Smith"))
    assert (terms, words) == ({"from:bob smith"}, ())


MATCHES: list[tuple[str, Tweet, bool]] = [
    ("python", tw("Loving #Python"), True),
    ("#python", tw("Loving #Python"), True),
    ("#python", tw("Loving Python"), False),  # the hashtag term only
    ("#loving", tw("Loving #Python"), False),
    ("@bob", tw("hi @Bob"), True),
    ("@bob", tw("hi bob"), False),
    ('"ice cream"', tw("#Ice Cream"), True),  # '#' takes no position of its own
    ('"ice cream"', tw("cream ice"), False),
    ('"ice cream"', tw("ice, cold cream"), False),
    ("#ice-cream", tw("I love #ice-cream"), True),
    ("#ice-cream", tw("#ice and cream"), False),
    ("don't", tw("Don't stop"), True),
    ("don't", tw("t don"), False),
    ("a -b", tw("a c"), True),
    ("a -b", tw("a b"), False),
    ("a b OR c", tw("a c"), True),
    ("a b OR c", tw("b c"), False),
    ("a -(b OR c)", tw("a c"), False),
    ("from:BOB", tw("x", user="Bob"), True),
    ("from:@bob x", tw("x", user="bobby"), False),
    ('from:"bob smith"', tw("x", user="Bob Smith"), True),
    ("lang:en x", tw("x", lang="EN"), True),
    ("lang:en x", tw("x", lang="fr"), False),
    ("lang:en x", tw("x"), False),
    ("foo:bar", tw("foo bar"), True),
    ("foo:bar", tw("bar foo"), False),
    ("x since:2011-10-18", tw("x", at=D_2011_10_18), True),  # on or after the day
    ("x since:2011-10-18", tw("x", at=D_2011_10_18 - 1), False),
    ("x until:2011-10-19", tw("x", at=D_2011_10_18 + DAY_MS - 1), True),  # before the day
    ("x until:2011-10-19", tw("x", at=D_2011_10_18 + DAY_MS), False),
    ("x near:0,0 within:111.2km", tw("x", geo=GeoPoint(1.0, 0.0)), True),  # one degree = 111.195 km
    ("x near:0,0 within:111.1km", tw("x", geo=GeoPoint(1.0, 0.0)), False),
    ("x near:0,0 within:69.1mi", tw("x", geo=GeoPoint(0.0, -1.0)), True),
    ("x near:0,0 within:20000km", tw("x"), False),  # no geo never matches near
    ("x near:0,179.9 within:50km", tw("x", geo=GeoPoint(0.0, -179.9)), True),  # across the antimeridian
]


@pytest.mark.parametrize(("q", "t", "want"), MATCHES)
def test_matches(q: str, t: Tweet, want: bool) -> None:
    assert matches(parse(q), t) is want


def test_distance() -> None:
    assert distance_km(10.0, 20.0, 10.0, 20.0) == 0.0
    assert distance_km(0.0, 0.0, 1.0, 0.0) == pytest.approx(EARTH_RADIUS_KM * math.pi / 180, rel=1e-12)
    assert distance_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(EARTH_RADIUS_KM * math.pi, rel=1e-12)
    assert distance_km(90.0, 0.0, -90.0, 0.0) == pytest.approx(EARTH_RADIUS_KM * math.pi, rel=1e-12)
    # Paris - London, about 343.5 km
    assert distance_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343.5, abs=1.0)


# -- semantics: random boolean trees of atoms -----------------------------------------------------------------

ATOMS = ["a", "b", "c", "ice", "Cream", "#ice", "@bob", '"ice cream"', '"a b"', "don't", "#Ice-Cream",
         "from:bob", "from:ALICE", "lang:en", "lang:fr", "foo:bar", "e-mail"]  # fmt: skip
VOCAB = ["a", "b", "c", "A", "ice", "cream", "#ice", "#Ice", "@bob", "@Bob's", "don't", "don", "t", "foo",
         "bar", "foo:bar", "e", "mail", "#ice-cream", "x", "CREAM", "http://a.b", "!!"]  # fmt: skip

tweets = st.builds(
    tw,
    text=st.lists(st.sampled_from(VOCAB), max_size=8).map(" ".join),
    user=st.sampled_from(["bob", "Bob", "ALICE", "carol"]),
    lang=st.sampled_from([None, "en", "EN", "fr", "de"]),
)

Expr = Any  # ("atom", text) | ("and", [(negated, Expr), ...]) | ("or", [Expr, ...])


def _and(parts: list[tuple[bool, Expr]]) -> Expr:
    return ("and", parts)


exprs = st.recursive(
    st.sampled_from(ATOMS).map(lambda a: ("atom", a)),
    lambda kids: st.one_of(
        st.lists(st.tuples(st.booleans(), kids), min_size=1, max_size=3)
        .filter(lambda ps: any(not neg for neg, _ in ps))
        .map(_and),
        st.lists(kids, min_size=2, max_size=3).map(lambda alts: ("or", alts)),
    ),
    max_leaves=8,
)


def render(e: Expr) -> str:
    kind, body = e
    if kind == "atom":
        return str(body)
    if kind == "or":  # OR binds tighter than AND: a group alternative needs parentheses
        return " OR ".join(render(a) if a[0] == "atom" else f"({render(a)})" for a in body)
    out = []
    for neg, sub in body:
        s = render(sub)
        if neg:
            out.append("-" + (s if sub[0] == "atom" else f"({s})"))
        else:
            out.append(f"({s})" if sub[0] == "and" else s)  # a bare `b OR c` is one part of the AND
    return " ".join(out)


def meaning(e: Expr, t: Tweet) -> bool:
    kind, body = e
    if kind == "atom":
        return matches(parse(body), t)
    if kind == "or":
        return any(meaning(a, t) for a in body)
    return all(meaning(s, t) for neg, s in body if not neg) and not any(
        meaning(s, t) for neg, s in body if neg
    )


@settings(max_examples=300, deadline=None)
@given(exprs, st.lists(tweets, min_size=1, max_size=4))
def test_query_means_the_boolean_combination_of_its_atoms(e: Expr, ts: list[Tweet]) -> None:
    q = parse(render(e))
    for t in ts:
        assert matches(q, t) is meaning(e, t), (render(e), t.text)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ATOMS), st.sampled_from(ATOMS), st.sampled_from(ATOMS), tweets)
def test_small_laws(x: str, y: str, z: str, t: Tweet) -> None:
    def m(q: str) -> bool:
        return matches(parse(q), t)

    assert m(f"{x} -{y}") is (m(x) and not m(y))
    assert m(f"{x} {y}") is (m(x) and m(y)) is m(f"{y} {x}")
    assert m(f"{x} OR {y}") is (m(x) or m(y))
    assert m(f"{x} {y} OR {z}") is (m(x) and (m(y) or m(z)))
    assert m(f"{x} OR {y} {z}") is ((m(x) or m(y)) and m(z))
    assert m(f"{x} !!! ???") is m(x)  # parts without terms are ignored


@settings(max_examples=200, deadline=None)
@given(tweets)
def test_every_word_of_a_tweet_finds_it(t: Tweet) -> None:
    for word in t.text.split():
        try:
            q = parse(word)
        except InvalidQuery:
            continue  # e.g. 'http://a.b' or '!!' have no term
        assert matches(q, t), word
    words = index_terms(t)[1]
    assert matches(parse(f'from:"{t.user}" x OR y'), t) is ("x" in words or "y" in words)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(10**13), 10**13), st.dates().map(str).filter(lambda d: len(d) == 10))
def test_since_until_split_time_at_the_day(at: int, day: str) -> None:
    t = tw("x", at=at)
    since, until = matches(parse(f"x since:{day}"), t), matches(parse(f"x until:{day}"), t)
    assert since is not until  # every instant is either on/after the day's start or before it
    since_ms = parse(f"x since:{day}").since_ms
    assert since_ms is not None and since is (at >= since_ms)


@settings(max_examples=200, deadline=None)
@given(st.floats(-90, 90), st.floats(-180, 180), st.floats(-90, 90), st.floats(-180, 180),
       st.floats(0.001, 25000))  # fmt: skip
def test_near_is_symmetric_and_bounded(lat1: float, lon1: float, lat2: float, lon2: float, km: float) -> None:
    d = distance_km(lat1, lon1, lat2, lon2)
    assert 0.0 <= d <= EARTH_RADIUS_KM * math.pi + 1e-6
    assert d == pytest.approx(distance_km(lat2, lon2, lat1, lon1), abs=1e-9)
    q = parse(f"x near:{lat1:.6f},{lon1:.6f} within:{km:.6f}km")
    t = tw("x", geo=GeoPoint(lat2, lon2))
    assert q.near is not None
    assert matches(q, t) is (distance_km(q.near.lat, q.near.lon, lat2, lon2) <= q.near.km)
