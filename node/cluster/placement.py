"""Where data lives (pure): the partition and replicas of a tweet id or a term on the ring, and the grouping of
work by destination node so that a batch costs one call per node, not one per item.

While the ring moves (node/ring/topology.py), `ring` is the one reads use and `next_ring` the one being moved
to: writes go to the replicas of both (`*_write_sets`) and need W acknowledgements in each.
"""

from __future__ import annotations

from collections.abc import Iterable

from node.ring.ring import Ring, term_token, tweet_token


class Placement:
    def __init__(self, ring: Ring, n: int, next_ring: Ring | None = None) -> None:
        self.ring = ring
        self.n = n
        self.next_ring = next_ring
        self._term_cache: dict[str, tuple[int, tuple[str, ...]]] = {}

    def install(self, ring: Ring, next_ring: Ring | None) -> None:
        """Switch to another ring (a topology change); every cached lookup is dropped."""
        self.ring, self.next_ring = ring, next_ring
        self._term_cache = {}

    def member(self, node: str) -> bool:
        """Whether `node` is on either ring (the topology's members and, while the ring moves, its next ones)."""
        return node in self.ring.nodes or (self.next_ring is not None and node in self.next_ring.nodes)

    def tweet_write_sets(self, tweet_id: int) -> tuple[tuple[str, ...], ...]:
        """The replica sets a write of this tweet must reach W of each: one, or two while the ring moves."""
        reps = self.tweet(tweet_id)[1]
        if self.next_ring is None:
            return (reps,)
        return reps, self.next_ring.preference_list(tweet_token(tweet_id), self.n)

    def term_write_sets(self, term: str) -> tuple[tuple[str, ...], ...]:
        reps = self.term(term)[1]
        if self.next_ring is None:
            return (reps,)
        return reps, self.next_ring.preference_list(term_token(term), self.n)

    def tweet(self, tweet_id: int) -> tuple[int, tuple[str, ...]]:
        """(partition index, replicas in preference order; the first is the preferred node)."""
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

    def preferred_of_tweet(self, tweet_id: int) -> str:
        """The first of the preference list: where the tweet's writes go while every replica is up."""
        return self.tweet(tweet_id)[1][0]

    def terms_by_node(self, terms: Iterable[str]) -> dict[str, list[str]]:
        """node -> the terms (of `terms`) whose partitions it replicates (on either ring while the ring moves)."""
        out: dict[str, list[str]] = {}
        for t in terms:
            for node in dict.fromkeys(n for reps in self.term_write_sets(t) for n in reps):
                out.setdefault(node, []).append(t)
        return out

    def partitions_held(self, node: str) -> int:
        return sum(1 for i in range(len(self.ring.partitions())) if node in self._replicas_of_index(i))

    def _replicas_of_index(self, i: int) -> tuple[str, ...]:
        _start, end = self.ring.partitions()[i]
        return self.ring.preference_list(end, self.n)
