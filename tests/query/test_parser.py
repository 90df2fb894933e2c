"""Golden tests of every query form and every error of `node.query.parser`, and Hypothesis properties that
the parser only ever answers a Query or an InvalidQuery, whose AST keeps the invariants the index relies on."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import InvalidQuery
from node.query.ast import And, Near, Node, Or, Phrase, Query, Term
from node.query.parser import QUERY_CHARS_MAX, QUERY_TERMS_MAX, parse

T = Term


def P(*ws: str) -> Phrase:
    return Phrase(ws)


def A(*must: Node, nots: tuple[Node, ...] = ()) -> And:
    return And(must, nots)


def O(*children: Node) -> Or:  # noqa: E743
    return Or(children)


DAY_MS = 86_400_000
D_2011_10_18 = 15265 * DAY_MS  # days from 1970-01-01

GOLDEN: list[tuple[str, And]] = [
    ("a", A(T("a"))),
    ("Loving  Python", A(T("loving"), T("python"))),
    ("a b OR c", A(T("a"), O(T("b"), T("c")))),
    ("a OR b c", A(O(T("a"), T("b")), T("c"))),
    ("a OR b OR c", A(O(T("a"), T("b"), T("c")))),
    ("a OR b c OR d", A(O(T("a"), T("b")), O(T("c"), T("d")))),
    ("a or b", A(T("a"), T("or"), T("b"))),  # only uppercase OR is the operator
    ("(a OR b) c", A(O(T("a"), T("b")), T("c"))),
    ("(a b) OR c", A(O(A(T("a"), T("b")), T("c")))),
    ("(a OR b) OR c", A(O(T("a"), T("b"), T("c")))),
    ("(a) b", A(T("a"), T("b"))),
    ("a (b c)", A(T("a"), T("b"), T("c"))),
    ("a (b -c)", A(T("a"), T("b"), nots=(T("c"),))),
    ("((a))", A(T("a"))),
    ("(a -b) OR c", A(O(A(T("a"), nots=(T("b"),)), T("c")))),
    ("a -b", A(T("a"), nots=(T("b"),))),
    ("-b a", A(T("a"), nots=(T("b"),))),
    ('a -"b c"', A(T("a"), nots=(P("b", "c"),))),
    ("a -#b -@c", A(T("a"), nots=(T("#b"), T("@c")))),
    ("a -from:Bob -lang:EN", A(T("a"), nots=(T("from:bob"), T("lang:en")))),
    ("a -(b OR c)", A(T("a"), nots=(O(T("b"), T("c")),))),
    ("a -(b)", A(T("a"), nots=(T("b"),))),
    ("a -(b c)", A(T("a"), nots=(A(T("b"), T("c")),))),
    ("a -OR", A(T("a"), nots=(T("or"),))),  # '-OR' excludes the word, it is not an operator
    ("a - b", A(T("a"), T("b"))),  # a lone '-' is punctuation
    ("e-mail", A(P("e", "mail"))),
    ('"A b  C"', A(P("a", "b", "c"))),
    ('"#Ice @cream"', A(P("ice", "cream"))),
    ('"one"', A(T("one"))),
    ('a "" "!!"', A(T("a"))),
    ('a"b c"', A(T("a"), P("b", "c"))),
    ("don't", A(P("don", "t"))),
    ("a !!!", A(T("a"))),
    ("a ! OR !!", A(T("a"))),
    ("a !!! OR b", A(T("a"), T("b"))),
    ("#Python", A(T("#python"))),
    ("＃Ｐython", A(T("#python"))),  # NFKC: fullwidth sign and letters
    ("@Bob", A(T("@bob"))),
    ("#Ice-Cream", A(T("#ice"), P("ice", "cream"))),
    ("@bob's", A(T("@bob"), P("bob", "s"))),
    ("#ice-cream OR x", A(O(A(T("#ice"), P("ice", "cream")), T("x")))),
    ("a # @ #!", A(T("a"))),
    ("x#tag", A(P("x", "tag"))),
    ("from:Bob", A(T("from:bob"))),
    ("from:@Bob", A(T("from:bob"))),
    ('from:"Bob Smith" x', A(T("from:bob smith"), T("x"))),
    ("lang:EN", A(T("lang:en"))),
    ("foo:bar", A(P("foo", "bar"))),
    ("From:bob", A(P("from", "bob"))),  # operators are lowercase
    ("http://t.co/x a", A(T("a"))),
    ("Straße", A(T("strasse"))),
    ("x" * 65 + " a", A(T("a"))),  # over-long terms are dropped, as in the analyser
    (":) a :(", A(T("a"))),
    ("a)", A(T("a"))),  # ')' inside a word, no group open: punctuation
    ("a(b)", A(P("a", "b"))),
]


@pytest.mark.parametrize(("q", "root"), GOLDEN)
def test_golden(q: str, root: And) -> None:
    got = parse(q)
    assert got.root == root
    assert got.text == q
    assert (got.since_ms, got.until_ms, got.near) == (None, None, None)


def test_filters() -> None:
    q = parse("since:2011-10-18 until:2011-10-19 a")
    assert (q.root, q.since_ms, q.until_ms) == (A(T("a")), D_2011_10_18, D_2011_10_18 + DAY_MS)
    assert parse("a since:1970-01-01").since_ms == 0
    assert parse("a until:1969-12-31").until_ms == -DAY_MS
    assert parse("a since:2024-02-29").since_ms is not None  # a leap day is real
    # several since/until narrow the window: the later since, the earlier until
    q = parse("a since:2011-10-18 since:2011-10-17 until:2011-10-20 until:2011-10-19")
    assert (q.since_ms, q.until_ms) == (D_2011_10_18, D_2011_10_18 + DAY_MS)
    assert parse("near:40.71,-74.01 within:10km a").near == Near(40.71, -74.01, 10.0)
    assert parse("a within:2mi near:-90,180").near == Near(-90.0, 180.0, 2 * 1.609344)
    assert parse("a near:+1.,.5 within:.5KM").near == Near(1.0, 0.5, 0.5)
    q = parse("near:0,0 within:1km a")
    assert q.needs_tweet() and not parse("a").needs_tweet()


def _pos(msg: str) -> int:
    m = re.search(r"at position (\d+)\)$", msg)
    assert m, msg
    return int(m.group(1))


ERRORS: list[tuple[str, str, int | None]] = [
    # (query, words the message must hold, 1-based position or None for a whole-query error)
    ("", "empty", None),
    ("  \t ", "empty", None),
    ('a "b c', "never closed", 3),
    ('"a" "b', "never closed", 5),
    ('from:"bob', "never closed", 6),
    ("OR", "lone OR", 1),
    ("(OR)", "lone OR", 2),
    ("OR a", "nothing before", 1),
    ("a OR", "nothing after", 3),
    ("(a OR) b", "nothing after", 4),
    ("a OR OR b", "follows another OR", 6),
    ("-a", "only negative", 1),
    ("-a -b", "only negative", 1),
    ("-a since:2020-01-01", "only negative", 1),
    ("b (-a)", "only negative", 3),
    ("!!!", "no searchable terms", None),
    ('"" !!', "no searchable terms", None),
    ("# @", "no searchable terms", None),
    ("since:2020-01-01", "no searchable terms", None),
    ("a OR -b", "cannot be negated", 6),
    ("-a OR b", "cannot be negated", 1),
    ("a OR -!!", "cannot be negated", 6),
    ("a --b", "double negation", 3),
    ("(a -)", "nothing after it to exclude", 4),
    ("a since:2020-02-30", "not a real date", 3),
    ("a since:2021-02-29", "not a real date", 3),
    ("a until:0000-01-01", "not a real date", 3),
    ("a since:2020-1-1", "YYYY-MM-DD", 3),
    ("a until:yesterday", "YYYY-MM-DD", 3),
    ("a since:２０２０-01-01", "YYYY-MM-DD", 3),
    ("a near:91,0 within:1km", "latitude", 3),
    ("a near:0,-180.5 within:1km", "longitude", 3),
    ("a near:nan,0 within:1km", "LAT,LON", 3),
    ("a near:1;2 within:1km", "LAT,LON", 3),
    ("a near:1,2", "needs a distance", 3),
    ("a within:5km", "needs a point", 3),
    ("a near:1,2 within:0km", "above 0", 12),
    ("a near:1,2 within:-3km", "distance like", 12),
    ("a near:1,2 within:inf km", "distance like", 12),
    ("a near:1,2 within:5 km", "distance like", 12),
    ("a near:1,2 within:" + "9" * 400 + "km", "finite", 12),
    ("a near:1,2 near:1,2 within:1km", "twice", 12),
    ("a near:1,2 within:1km within:2km", "twice", 23),
    ("a from:", "from: needs a value", 3),
    ("a from:@", "from: needs a value", 3),
    ('a from:""', "from: needs a value", 3),
    ("a lang:", "lang: needs a value", 3),
    ("a since:", "since: needs a value", 3),
    ("a until:", "until: needs a value", 3),
    ("a near: within:1km", "near: needs a value", 3),
    ("a -since:2020-01-01", "cannot be negated", 3),
    ("a (since:2020-01-01 b)", "inside parentheses", 4),
    ("a OR since:2020-01-01", "cannot be an OR alternative", 6),
    ("(a", "never closed", 1),
    ("a (b (c)", "never closed", 3),
    ("a )", "closes no", 3),
    ("(a OR b))", "closes no", 9),
    ("(a :)) b", "closes no", 6),  # inside a group a ')' ends the word: ':)' there needs quotes
    ("a ()", "empty parentheses", 3),
    ("(" * 17 + "a" + ")" * 17, "nested deeper", 17),
    ("x" * (QUERY_CHARS_MAX + 1), "1001 characters", QUERY_CHARS_MAX + 1),
    (" ".join(["a"] * (QUERY_TERMS_MAX + 1)), "more than 64 terms", 2 * QUERY_TERMS_MAX + 1),
    ('"' + " ".join(["w"] * (QUERY_TERMS_MAX + 1)) + '"', "more than 64 terms", 1),
]


@pytest.mark.parametrize(("q", "what", "pos"), ERRORS)
def test_errors(q: str, what: str, pos: int | None) -> None:
    with pytest.raises(InvalidQuery) as e:
        parse(q)
    err = e.value
    assert what in err.message
    assert err.field == "q" and err.status == 400 and err.code == "invalid_query"
    if pos is not None:
        assert _pos(err.message) == pos


def test_limits_are_inclusive() -> None:
    assert parse("a" * 64).root == A(T("a" * 64))
    parse("x" + " " * (QUERY_CHARS_MAX - 1))
    parse(" ".join(["a"] * QUERY_TERMS_MAX))
    parse("(" * 16 + "a" + ")" * 16)


def test_precedence_equals_explicit_groups() -> None:
    assert parse("a b OR c").root == parse("a (b OR c)").root
    assert parse("a OR b c").root == parse("(a OR b) c").root
    assert parse("a b OR c").root != parse("(a b) OR c").root


# -- properties ----------------------------------------------------------------------------------------------


def _check_invariants(q: Query) -> None:
    """What the index and planner rely on: a non-empty positive root, no trivial nodes, analysed terms."""
    assert isinstance(q.root, And) and q.root.must
    count = 0

    def walk(n: Node) -> None:
        nonlocal count
        if isinstance(n, Term):
            assert n.term and not n.term.isspace()
            count += 1
        elif isinstance(n, Phrase):
            assert len(n.words) >= 2 and all(re.fullmatch(r"\w+", w) for w in n.words)
            count += len(n.words)
        elif isinstance(n, Or):
            assert len(n.children) >= 2
            for c in n.children:
                assert not isinstance(c, Or)  # flattened
                walk(c)
        else:
            assert n.must, n  # every And, also nested ones, has a positive part
            for c in (*n.must, *n.must_not):
                walk(c)

    walk(q.root)
    assert count <= QUERY_TERMS_MAX
    if q.near is not None:
        assert -90 <= q.near.lat <= 90 and -180 <= q.near.lon <= 180 and 0 < q.near.km < float("inf")


def _parse_or_invalid(q: str) -> None:
    try:
        got = parse(q)
    except InvalidQuery as e:
        assert e.field == "q" and e.message
        return
    assert got.text == q
    _check_invariants(got)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_parses_or_is_invalid(q: str) -> None:
    _parse_or_invalid(q)


SOUP = [
    "a", "B", "OR", "or", "-", "--", "(", ")", "((", "))", '"', '"a b"', '""', "#", "#x", "#x-y", "@", "@y",
    "from:", "from:@Bob", 'from:"', "lang:", "lang:en", "since:2020-01-01", "since:2020-13-01", "until:",
    "until:2020-01-02", "near:1,2", "near:1", "within:5km", "within:-1mi", "!!!", ":)", ":(", "foo:bar",
    "don't", "x" * 70, "é", "\u0301", "ｆｒｏｍ:x", "http://x.y", "\t", "\n",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SOUP), st.sampled_from(["", " ", " ", "  "])), max_size=14))
def test_token_soup_parses_or_is_invalid(toks: list[tuple[str, str]]) -> None:
    _parse_or_invalid("".join(t + sep for t, sep in toks))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "#d", "@e", "from:f", "lang:g"]), min_size=1, max_size=6))
def test_implicit_and_keeps_every_part_in_order(words: list[str]) -> None:
    assert parse(" ".join(words)).root == A(*(T(w) for w in words))
    assert parse(" OR ".join(words)).root == (
        A(T(words[0])) if len(words) == 1 else A(O(*(T(w) for w in words)))
    )
