"""Digest reads for a local-first search, as Cassandra's digest read but over a window of the index: the
coordinator evaluates the query on its own index and copy, another replica evaluates it on its own and answers
only where the two differ, as (id, version, in its window), with its full record where its copy is newer.

Pure: no I/O, no clock. Rules (each replica's index is a function of its own tweets, node/shard.py):
- Two copies at the same version hold the same tweet, so their indexes agree on it; where they still disagree
  (a posting streamed in a ring change, `unsure`), the tweet itself decides (`check`).
- Where the versions differ, the newer copy decides whether the id matches, and the older copy is repaired
  with the newer record (read repair, both ways).
- Only the range both windows cover is decided: ids at or above the higher of their lowest ids (for a window
  that was not exhausted). What lies below is the next round's.
So every id returned is confirmed by two copies (R = 2), and a coordinator with a stale copy still answers
from the newer one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from node.model import Tweet
from node.records import DeleteTweet, PutTweet, Record


class PeerDigest(msgspec.Struct, frozen=True, array_like=True):
    """The other replica's answer to the coordinator's window (the body of DigestQueryResp)."""

    exhausted: bool  # its window holds every match below the bound
    last: int  # the lowest id of its window; 0 when it is empty
    differ: list[tuple[int, int, bool]]  # (id, its version, in its window) wherever it differs from ours
    records: list[Record]  # its copies of the ids where its version is newer than ours (or ours is unknown)
    unsure: bool = False  # some term of the query holds streamed postings there: check every candidate


def _rec_id(r: Record) -> int:
    if isinstance(r, PutTweet):
        return r.tweet.id
    assert isinstance(r, DeleteTweet), r
    return r.id


def peer_digest(
    mine: Sequence[tuple[int, int]],
    window: Sequence[int],
    versions: Sequence[int],
    exhausted: bool,
    version_of: Callable[[int], int],
    record_of: Callable[[int], Record | None],
    unsure: bool = False,
) -> PeerDigest:
    """The replica side: `window` its matches (newest first) with their `versions`; `mine` the coordinator's
    (id, version) pairs."""
    theirs = dict(mine)
    here = set(window)
    differ: list[tuple[int, int, bool]] = []
    newer: list[int] = []
    for i, v in zip(window, versions, strict=True):
        cv = theirs.get(i)
        if cv != v:
            differ.append((i, v, True))
            if cv is None or v > cv:
                newer.append(i)
    for i, cv in mine:
        if i not in here:
            v = version_of(i)
            differ.append((i, v, False))
            if v > cv:
                newer.append(i)
    records = [r for r in map(record_of, newer) if r is not None]
    return PeerDigest(exhausted, window[-1] if window else 0, differ, records, unsure)


class Resolution(msgspec.Struct):
    ids: list[int]  # the matches both copies confirm (candidates, for a query that needs the tweet), newest first
    fetched: dict[int, Tweet]  # the peer's newer copies of some of them: use these, not ours
    repair_here: list[Record]  # the peer's records newer than ours: apply them here
    repair_peer: list[int]  # ids where our copy is newer: send ours to the peer
    check: set[int]  # same version, different answers: the tweet decides
    floor: int  # the range decided is [floor, the bound]; below it, ask again
    exhausted: bool  # nothing matches below `floor` either


def resolve(
    mine: Sequence[tuple[int, int]], mine_exhausted: bool, peer: PeerDigest, my_version: Callable[[int], int]
) -> Resolution:
    """Merge our window (id, version) with the peer's digest of its own."""
    floor = 0
    if not mine_exhausted and mine:
        floor = mine[-1][0]
    if not peer.exhausted and peer.last:
        floor = max(floor, peer.last)
    ours = dict(mine)
    keep = set(ours)
    records = {_rec_id(r): r for r in peer.records}
    fetched: dict[int, Tweet] = {}
    repair_here: list[Record] = []
    repair_peer: list[int] = []
    check: set[int] = set()
    for i, pv, in_peer in peer.differ:
        cv = ours.get(i)
        if cv is None:
            cv = my_version(i)
        if pv > cv:  # the peer's copy is newer: its index decides
            rec = records.get(i)
            if rec is not None:
                repair_here.append(rec)
            if in_peer and isinstance(rec, PutTweet):
                keep.add(i)
                fetched[i] = rec.tweet
            else:
                keep.discard(i)
        elif pv < cv:  # ours is newer: ours decides
            repair_peer.append(i)
        elif in_peer != (i in ours):
            keep.add(i)
            check.add(i)
    ids = sorted((i for i in keep if i >= floor), reverse=True)
    check = set(ids) if peer.unsure else check.intersection(ids)  # below the floor, windows just stopped apart
    return Resolution(ids, fetched, repair_here, repair_peer, check, floor, mine_exhausted and peer.exhausted)


def alone(mine: Sequence[tuple[int, int]], mine_exhausted: bool) -> Resolution:
    """No other replica answered: our own window, undecided by a second copy (the search is then partial)."""
    floor = 0 if mine_exhausted or not mine else mine[-1][0]
    return Resolution([i for i, _ in mine], {}, [], [], set(), floor, mine_exhausted)


def unknown_ids(mine: Sequence[tuple[int, int]], peer: PeerDigest) -> list[int]:
    """The ids `resolve` asks `my_version` about: in the peer's window, not in ours (so the caller can look
    their versions up in one batch, before resolving)."""
    if not peer.differ:  # the common case: the copies agree
        return []
    ours = {i for i, _v in mine}
    return [i for i, _pv, in_peer in peer.differ if in_peer and i not in ours]
