"""The search planner's pure parts: which query part drives candidate generation, and the superset test a
candidate must pass on posting membership alone before it is fetched and checked exactly.

The driver is the positive part of the root AND with the smallest estimated posting count; its driving terms
are the terms any match of it must contain one of (a term; the rarest word of a phrase; every alternative of
an OR; the driver of a nested AND). Every match of the query therefore appears in the postings of a driving term,
so walking those newest-first and probing the other terms finds every match, without shipping long lists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from node.query.ast import And, Node, Or, Phrase, Term


def positive_terms(n: Node) -> set[str]:
    """Terms of the parts that must match (not those under a NOT)."""
    if isinstance(n, Term):
        return {n.term}
    if isinstance(n, Phrase):
        return set(n.words)
    if isinstance(n, Or):
        return set().union(*(positive_terms(c) for c in n.children))
    return set().union(*(positive_terms(c) for c in n.must))


def estimate(n: Node, df: Mapping[str, int]) -> int:
    if isinstance(n, Term):
        return df.get(n.term, 0)
    if isinstance(n, Phrase):
        return min(df.get(w, 0) for w in n.words)
    if isinstance(n, Or):
        return sum(estimate(c, df) for c in n.children)
    return min(estimate(c, df) for c in n.must)


def driver(root: And, df: Mapping[str, int]) -> Node:
    return min(root.must, key=lambda c: estimate(c, df))


def driving_terms(n: Node, df: Mapping[str, int]) -> set[str]:
    if isinstance(n, Term):
        return {n.term}
    if isinstance(n, Phrase):
        return {min(n.words, key=lambda w: (df.get(w, 0), w))}
    if isinstance(n, Or):
        return set().union(*(driving_terms(c, df) for c in n.children))
    return driving_terms(driver(n, df), df)


def exact(n: Node) -> bool:
    """Whether posting membership decides this part exactly (phrases need the text)."""
    if isinstance(n, Term):
        return True
    if isinstance(n, Phrase):
        return False
    if isinstance(n, Or):
        return all(exact(c) for c in n.children)
    return all(exact(c) for c in (*n.must, *n.must_not))


def may_match(n: Node, has: Callable[[str], bool], prune_not: bool = True) -> bool:
    """A necessary condition for a match, from posting membership: never False for a real match.
    `prune_not=False` when replicas disagreed: `has` is then a union of copies, one of which may still hold a
    posting an acknowledged edit removed, so a NOT must not exclude on it (the tweet itself is checked instead)."""
    if isinstance(n, Term):
        return has(n.term)
    if isinstance(n, Phrase):
        return all(has(w) for w in n.words)
    if isinstance(n, Or):
        return any(may_match(c, has, prune_not) for c in n.children)
    if not all(may_match(c, has, prune_not) for c in n.must):
        return False
    if not prune_not:
        return True
    # A NOT can exclude only when membership decides it exactly (a phrase's words may be apart).
    return not any(exact(c) and may_match(c, has) for c in n.must_not)
