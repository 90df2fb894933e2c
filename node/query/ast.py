"""The parsed form of a search query (CONTRACT §3). Produced by `node.query.parser.parse`, consumed by the index
executor, the coordinator's planner and the brute-force model in `node.query.match`.

Pure data. Every term here is already analysed (NFKC + casefold): words, '#tag', '@name', and the two
indexed pseudo-terms 'from:<user casefolded>' and 'lang:<code casefolded>' (':' can never occur in a \\w+ term).
"""

from __future__ import annotations

from msgspec import Struct


class Term(Struct, frozen=True, tag="term"):
    """One index term: a word, '#tag', '@name', 'from:user' or 'lang:xx'."""

    term: str


class Phrase(Struct, frozen=True, tag="phrase"):
    """Two or more word terms that must appear consecutively, in order, in the tweet's word sequence.
    Candidates come from the AND of its words; each candidate is verified against the tweet's text."""

    words: tuple[str, ...]


class Or(Struct, frozen=True, tag="or"):
    children: tuple[Node, ...]  # at least two, each positive


class And(Struct, frozen=True, tag="and"):
    must: tuple[Node, ...]  # at least one
    must_not: tuple[Node, ...] = ()


Node = Term | Phrase | Or | And


class Near(Struct, frozen=True):
    lat: float
    lon: float
    km: float


class Query(Struct, frozen=True):
    """A whole query: `root` selects tweets through the index; the filters are checked on each candidate."""

    root: And
    since_ms: int | None = None  # created_at >= since_ms (start of the day, UTC)
    until_ms: int | None = None  # created_at < until_ms (start of the day, UTC)
    near: Near | None = None
    text: str = ""  # the query as the user wrote it

    def needs_tweet(self) -> bool:
        """True when candidates must be checked against the stored tweet (phrases or filters)."""
        return self.since_ms is not None or self.until_ms is not None or self.near is not None or _has_phrase(
            self.root
        )


def _has_phrase(n: Node) -> bool:
    if isinstance(n, Phrase):
        return True
    if isinstance(n, Term):
        return False
    if isinstance(n, Or):
        return any(_has_phrase(c) for c in n.children)
    return any(_has_phrase(c) for c in n.must) or any(_has_phrase(c) for c in n.must_not)


def terms_of(n: Node) -> set[str]:
    """Every index term a node mentions (positive or negative): what a coordinator must fetch postings for."""
    if isinstance(n, Term):
        return {n.term}
    if isinstance(n, Phrase):
        return set(n.words)
    if isinstance(n, Or):
        return set().union(*(terms_of(c) for c in n.children))
    out: set[str] = set()
    for c in (*n.must, *n.must_not):
        out |= terms_of(c)
    return out
