"""The product's query model (node.query.parser + node.query.match, which the index and every search verify with)
against the independent oracle of tests/support/oracle.py, in one process: the real corpus with every query form
the cluster tests use, the oracle's golden documents and queries, and Hypothesis queries built from their words.
A difference is a misreading of CONTRACT §3 on one side or the other: it names the query and the tweet."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from node.model import build_tweet, parse_tweet_in
from node.query.match import matches
from node.query.parser import parse
from node.text.analyzer import analyse
from tests.cluster.kit import corpus, own_tweets, pick_queries
from tests.support import oracle
from tests.support.test_oracle import BODIES, GOLDEN

_CORPUS: list[tuple[dict[str, Any], int]] = []


def product_tweet(body: dict[str, Any], tid: int) -> Any:
    t = parse_tweet_in(body)
    doc = oracle.doc_of(body, tweet_id=tid)
    return build_tweet(t, tid, doc.created_at_ms, analyse(t.text))


def corpus_pairs() -> list[tuple[dict[str, Any], int]]:
    if not _CORPUS:
        bodies, _ = corpus(2400)
        for k, b in enumerate([*bodies, *own_tweets()]):
            _CORPUS.append((b, int(b.get("id", 10**12 + k))))
    return _CORPUS


def disagreements(pairs: list[tuple[dict[str, Any], int]], queries: list[str]) -> list[str]:
    docs = [oracle.doc_of(b, tweet_id=i) for b, i in pairs]
    tweets = [product_tweet(b, i) for b, i in pairs]
    out = []
    for q in queries:
        pq = parse(q)
        mine = {t.id for t in tweets if matches(pq, t)}
        theirs = {d.id for d in oracle.matching(docs, q)}
        for tid in sorted(mine ^ theirs)[:3]:
            text = next(d.text for d in docs if d.id == tid)
            out.append(f"{q!r}: tweet {tid} {text!r}: product {tid in mine}, oracle {tid in theirs}")
    return out


def test_corpus_and_the_cluster_tests_queries_agree() -> None:
    pairs = corpus_pairs()
    docs = {i: oracle.doc_of(b, tweet_id=i) for b, i in pairs}
    queries = pick_queries(docs) + pick_queries(docs, seed=11)
    assert disagreements(pairs, queries) == []


def test_golden_documents_and_queries_agree() -> None:
    pairs = [(b, int(k[1:])) for k, b in BODIES.items()]
    assert disagreements(pairs, [q for q, _ in GOLDEN]) == []


_WORDS = ["python", "ice", "cream", "#ice", "#icecream", "@bob", "bob", "don't", "zqall", "truck", "fullwidth",
          "ＦＵＬＬＷＩＤＴＨ", "strasse", "Straße", "東京", "#東京", "from:bob", "from:@BOB", "lang:en", "lang:EN-GB",
          "lang:ja", "#ice-cream", "not", "snake", "!!!", "love", "tail", "i", "a" * 64, "b" * 65, "http://x.y/python"]
_FILTERS = ["since:2019-05-02", "until:2019-05-03", "near:48.8566,2.3522 within:20km", "near:40.7,-74 within:9mi"]


@st.composite
def _queries(draw: st.DrawFn) -> str:
    def part() -> str:
        kind = draw(st.sampled_from(["word", "word", "phrase", "or", "group", "not"]))
        if kind == "phrase":
            return '"' + " ".join(draw(st.lists(st.sampled_from(_WORDS[:12]), min_size=1, max_size=3))) + '"'
        if kind == "or":
            return " OR ".join(draw(st.lists(st.sampled_from(_WORDS), min_size=2, max_size=3)))
        if kind == "group":
            return "(" + " ".join(draw(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=3))) + ")"
        if kind == "not":
            return "-" + draw(st.sampled_from(_WORDS[:20]))
        return draw(st.sampled_from(_WORDS))

    parts = [draw(st.sampled_from(_WORDS[:18]))] + [part() for _ in range(draw(st.integers(0, 3)))]
    parts += draw(st.lists(st.sampled_from(_FILTERS), max_size=2, unique=True))
    return " ".join(draw(st.permutations(parts)))


@settings(max_examples=300, deadline=None)
@given(_queries())
def test_generated_queries_agree_or_are_refused_by_both(q: str) -> None:
    pairs = [(b, int(k[1:])) for k, b in BODIES.items()]
    try:
        parse(q)
        product_ok = True
    except Exception:
        product_ok = False
    try:
        oracle.compile_query(q)
        oracle_ok = True
    except (oracle.QueryError, ValueError):
        oracle_ok = False
    if not (product_ok and oracle_ok):
        return  # refusals are the parser tests' business (tests/query/test_parser.py); answers are compared here
    assert disagreements(pairs, [q]) == []
