"""The end of the data's life (pure): when a node may forget a deleted tweet (tombstone collection, Cassandra's
gc_grace_seconds), and what it drops of the ranges it no longer replicates (cleanup, Cassandra's nodetool
cleanup). The shell is node/cluster/collector.py; the state it changes is node/shard.py's. Times are ms of the
wall clock, passed in; nothing here reads a clock, a file or a socket.

A tombstone exists so that an older copy of the tweet, wherever one survives, loses to it. Dropping it is safe
only once no older copy can ever reach a node again. The rules:

1. Candidates. A tombstone is a candidate once its grace has passed since its delete (`expired`: at_ms + grace
   <= now; DeleteTweet.at_ms is the delete's time at its master) and its index work is done (no outbox entry:
   its postings still have to be removed).
2. A round (`Round`). The candidates of one partition of the settled ring, listed at time t, are dropped only
   when, after t:
   a. every other replica of the partition completed a two-way anti-entropy session with this node that started
      at or after t. Everything this node held at t, the candidates included, is then on that replica, durably
      (the session pushes what the peer lacks) - or that replica holds nothing for the id (rule 3);
   b. every member of the ring that does not replicate the partition answered, at or after t, that it holds no
      key of it (an empty digest). A member keeps the data of ranges it gave away in a join or leave until
      `murmur cleanup`; that leftover may hold an older copy, and would bring it back were the range ever to
      come back to it;
   c. the ring did not move (no round while it moves, and a round that saw it move drops nothing): replica sets
      change, so a round is started again on the new ring.
   A replica away - down, paused, cut off, for any time - fails (a): nothing a replica may lack is ever dropped.
   That is Cassandra's "a replica away longer than gc_grace must be repaired before it serves", made
   unnecessary rather than assumed: the away replica's old copy meets the tombstone on every other replica
   (the highest version wins: in reads, read repair and anti-entropy alike), and when it is back, its own
   anti-entropy and the next round bring it the tombstone before anyone drops it.
3. Convergence. Replicas drop a tombstone at their own pace, and anti-entropy would carry it back from one that
   has not yet dropped it to one that has, forever. So a node never stores a tombstone whose grace has passed
   for an id it does not hold (`Shard.tombstone_floor_ms`): holding nothing for the id, it has nothing to hide.
   The sender's round then completes (2a: nothing older is held here) and collection converges.
4. Every other path that could carry an old version to a node that dropped the tombstone:
   - hinted handoff: a hint is never replayed once older than `hint_ttl_ms` (a quarter of the grace); it was
     written when a send failed, within seconds of the write it carries, so a hint of any version older than a
     tombstone is delivered or dropped long before that tombstone is collected (node/replication/hints.py);
   - read repair, a fan-out still under way, an outbox handover, an election's catch-up, a join's stream: each
     carries what some replica held at most seconds before (RPC deadlines), never older than what rule 2 saw;
   - the WAL: collection is not logged; a restart from a snapshot taken before it brings the tombstone back,
     and it is collected again.
   So the grace must exceed by far the time a write can be in flight (seconds) and the clocks' disagreement;
   the default is Cassandra's 10 days. After collection the id is unknown: a client may create a tweet with it
   again (as in Cassandra); within the grace such a create is refused (409).
5. Posting versions ((term, id) -> version, where postings go through the outbox: tombstones, and the adds of
   edited tweets) only stop an op of an older version that arrives after a newer one (a late fan-out or a
   hint): they are kept by age, in two generations rotated every half grace (`rotation_due`), so each lives
   between half the grace and the whole grace, longer than any hint.

Cleanup (`murmur cleanup`, POST /admin/cleanup), on a settled ring every member agrees on (else 409): a node
drops the tweets and tombstones whose partition it does not replicate, the postings and posting tombstones of
the terms whose partition it does not replicate, and the outbox entries of those tweets. Safe because the ring
settled only after every node gaining a range had pulled it from enough of its old replicas
(node/ring/topology.py): nothing acknowledged exists only in what is dropped. With N equal to the number of nodes
every node replicates everything and cleanup drops nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from node.ring.ring import Ring, tweet_token

HINT_TTL_SHARE = 4  # a hint lives at most grace / this
ROTATIONS_PER_GRACE = 2  # posting tombstones move to the older generation every grace / this


def expired(at_ms: int, now_ms: int, grace_ms: int) -> bool:
    """Whether a tombstone deleted at `at_ms` has outlived its grace at `now_ms`."""
    return at_ms + grace_ms <= now_ms


def floor_ms(now_ms: int, grace_ms: int) -> int:
    """The newest delete time whose tombstone has expired at `now_ms` (rule 1, rule 3)."""
    return now_ms - grace_ms


def hint_ttl_ms(grace_ms: int) -> int:
    """How old a hint may be when it is replayed (rule 4; node/replication/hints.py drops older ones)."""
    return grace_ms // HINT_TTL_SHARE


def rotation_due(last_ms: int, now_ms: int, grace_ms: int) -> bool:
    """Whether the posting tombstones are due to move one generation older (rule 5)."""
    return now_ms - last_ms >= grace_ms // ROTATIONS_PER_GRACE


class Round(msgspec.Struct):
    """One partition's collection round (rule 2): the candidates listed at `listed_at_ms`, and what has been
    heard since from the other members."""

    start: int  # the partition (start, end] of the settled ring
    end: int
    replicas: tuple[str, ...]
    members: tuple[str, ...]  # every member of the ring
    me: str
    listed_at_ms: int
    ids: list[int]
    synced: dict[str, int] = msgspec.field(default_factory=dict)  # replica -> start of a completed session
    empty: dict[str, int] = msgspec.field(default_factory=dict)  # other member -> when it said it holds nothing

    def on_synced(self, peer: str, started_at_ms: int) -> None:
        """A two-way anti-entropy session with `peer` over this partition, started at `started_at_ms`, ended well."""
        if started_at_ms >= self.listed_at_ms:
            self.synced[peer] = max(started_at_ms, self.synced.get(peer, started_at_ms))

    def on_empty(self, peer: str, at_ms: int) -> None:
        """`peer` answered at `at_ms` that it holds no key of this partition."""
        if at_ms >= self.listed_at_ms:
            self.empty[peer] = max(at_ms, self.empty.get(peer, at_ms))

    def replicas_needed(self) -> list[str]:
        return [p for p in self.replicas if p != self.me and p not in self.synced]

    def others_needed(self) -> list[str]:
        return [p for p in self.members if p not in self.replicas and p != self.me and p not in self.empty]

    def complete(self) -> bool:
        """Rule 2 a and b (c is the shell's: it drops nothing from a round that saw the ring move)."""
        return not self.replicas_needed() and not self.others_needed()


def plan_rounds(ids: Iterable[int], ring: Ring, n: int, me: str, listed_at_ms: int) -> list[Round]:
    """The rounds for these candidates (rule 1), one per partition of `ring` that `me` replicates, in ring order.
    Candidates of partitions `me` does not replicate are left out: they are leftover, for cleanup."""
    by_end: dict[int, list[int]] = {}
    for i in ids:
        by_end.setdefault(ring.partition_id(tweet_token(i)), []).append(i)
    members = tuple(ring.nodes)
    out = []
    for start, end in ring.partitions():
        got = by_end.get(end)
        if not got:
            continue
        replicas = ring.preference_list(end, n)
        if me in replicas:
            out.append(Round(start, end, replicas, members, me, listed_at_ms, got))
    return out


def owned_ranges(ring: Ring, n: int, me: str) -> list[tuple[int, int]]:
    """The partitions (start, end] of `ring` that `me` replicates: what cleanup keeps."""
    return [(s, e) for s, e in ring.partitions() if me in ring.preference_list(e, n)]


def agreed(me_version: int, moving: bool, versions: Mapping[str, tuple[int, bool] | None]) -> str | None:
    """Whether cleanup may run: None when this node and every member (name -> (topology version, moving), or None
    when it did not answer) are on one settled ring; else why not."""
    if moving:
        return "the ring is moving"
    for node, v in sorted(versions.items()):
        if v is None:
            return f"{node} did not answer"
        if v[1]:
            return f"the ring is moving on {node}"
        if v[0] != me_version:
            return f"{node} has topology version {v[0]}, this node {me_version}"
    return None
