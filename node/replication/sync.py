"""Anti-entropy (pure): the round robin of (partition, peer) pairs a node compares, and one session that brings a
tweet partition of two replicas to the max of each key. Never sends, sleeps or reads a clock: the shell
(node/cluster/anti_entropy.py) makes the calls in the order a session returns them.

Rules of a session (one partition (start, end] with one peer):
1. Compare the bucket digests (DigestReq); a bucket absent on one side counts as empty.
2. For each chunk of at most `buckets_max` differing buckets, list the peer's keys (KeysReq); against this
   node's keys of the same buckets *at that moment*, pull every id newer there (FetchReq, at most `fetch_max`
   ids each) and, unless the session only pulls (an election's catch-up, a stream), push every id newer here
   (at most `push_max` records per ApplyReq). The higher version wins on both sides.
3. Keys moved (pulled plus pushed) are counted; a session ends after its last chunk. A failed call ends it (the
   shell raises), and the next round compares again from scratch.
Rules of the round robin: the pairs are this node's partitions times their other replicas, listed once per ring
(`reset` when the ring moves); each step takes the next pair whose peer is up, looking at each pair once at most.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from node.replication import mastership as ms
from node.replication.messages import DigestReq, FetchReq, KeysReq
from node.ring.ring import Ring


class SyncSession:
    def __init__(self, start: int, end: int, push: bool, buckets_max: int, fetch_max: int, push_max: int) -> None:
        self.start, self.end, self.push = start, end, push
        self.buckets_max, self.fetch_max, self.push_max = buckets_max, fetch_max, push_max
        self.buckets = 0  # buckets that differed
        self.moved = 0  # keys pulled or pushed

    def begin(self) -> DigestReq:
        return DigestReq(self.start, self.end)

    def on_digest(self, mine: Mapping[int, int], theirs: Iterable[tuple[int, int]]) -> list[KeysReq]:
        """The peer's digest arrived: the key listings to ask for, one per chunk of differing buckets."""
        diff = ms.differing_buckets(mine, dict(theirs))
        self.buckets = len(diff)
        return [KeysReq(self.start, self.end, diff[i : i + self.buckets_max]) for i in range(0, len(diff), self.buckets_max)]

    def on_keys(self, mine: Mapping[int, int], theirs: Iterable[tuple[int, int]]) -> tuple[list[FetchReq], list[list[int]]]:
        """The peer's keys of one chunk arrived (`mine`: this node's keys of the same buckets, now).
        -> (the fetches to pull with, the id batches to push: empty when the session only pulls)."""
        pull, push = ms.exchange(mine, theirs)
        self.moved += len(pull)
        fetches = [FetchReq(pull[j : j + self.fetch_max]) for j in range(0, len(pull), self.fetch_max)]
        if not self.push:
            return fetches, []
        self.moved += len(push)
        return fetches, [push[j : j + self.push_max] for j in range(0, len(push), self.push_max)]


class SyncRound:
    """This node's round robin over (partition start, end, peer)."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.cursor = 0
        self.pairs: list[tuple[int, int, str]] | None = None

    def reset(self) -> None:
        self.pairs = None

    def next_pair(self, ring: Ring, n: int, up: Callable[[str], bool]) -> tuple[int, int, str] | None:
        if self.pairs is None:
            self.pairs = [
                (start, end, peer)
                for start, end in ring.partitions()
                if self.me in (replicas := ring.preference_list(end, n))
                for peer in replicas
                if peer != self.me
            ]
        for _ in range(len(self.pairs)):
            pair = self.pairs[self.cursor % len(self.pairs)]
            self.cursor += 1
            if up(pair[2]):
                return pair
        return None
