"""Where data lives (pure): the partition and replicas of a tweet id or a term on the ring, and the grouping of
work by destination node so that a batch costs one call per node, not one per item."""

from __future__ import annotations

from collections.abc import Iterable

from node.ring.ring import Ring, term_token, tweet_token


class Placement:
    def __init__(self, ring: Ring, n: int) -> None:
        self.ring = ring
        self.n = n
        self._term_cache: dict[str, tuple[int, tuple[str, ...]]] = {}

    def tweet(self, tweet_id: int) -> tuple[int, tuple[str, ...]]:
        """(partition index, replicas in preference order; the first is the master)."""
        tok = tweet_token(tweet_id)
        return self.ring.partition_index(tok), self.ring.preference_list(tok, self.n)

    def term(self, term: str) -> tuple[int, tuple[str, ...]]:
        hit = self._term_cache.get(term)
        if hit is None:
            tok = term_token(term)
            hit = (self.ring.partition_index(tok), self.ring.preference_list(tok, self.n))
            if len(self._term_cache) < 1_000_000:
                self._term_cache[term] = hit
        return hit

    def tweet_partition(self, tweet_id: int) -> tuple[int, tuple[str, ...]]:
        """(the partition's name: the ring token ending its range, its replicas in preference order)."""
        tok = tweet_token(tweet_id)
        return self.ring.partition_id(tok), self.ring.preference_list(tok, self.n)

    def master_of_tweet(self, tweet_id: int) -> str:
        return self.tweet(tweet_id)[1][0]

    def terms_by_node(self, terms: Iterable[str]) -> dict[str, list[str]]:
        """node -> the terms (of `terms`) whose partitions it replicates."""
        out: dict[str, list[str]] = {}
        for t in terms:
            for node in self.term(t)[1]:
                out.setdefault(node, []).append(t)
        return out

    def partitions_held(self, node: str) -> int:
        return sum(1 for i in range(len(self.ring.partitions())) if node in self._replicas_of_index(i))

    def _replicas_of_index(self, i: int) -> tuple[str, ...]:
        _start, end = self.ring.partitions()[i]
        return self.ring.preference_list(end, self.n)
