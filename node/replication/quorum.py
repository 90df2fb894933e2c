"""Quorum arithmetic and read resolution (pure): which replicas to ask, whether W acknowledgements were reached
per partition, how R answers merge (highest version wins, a tombstone included) and which copies need repair.
Never sends anything: the caller carries out the repairs it returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from node.model import Tweet
from node.replication.messages import GetResp, WindowResult
from node.shard import DeleteTweet, PutTweet, Record


def read_set(replicas: Sequence[str], r: int, me: str, alive: set[str] | None = None) -> list[str]:
    """The R replicas a read asks: this node first when it holds a copy (no network), then in preference order,
    skipping nodes known to be down while enough others are left. Deterministic."""
    order = sorted(replicas, key=lambda n: (n != me, alive is not None and n not in alive, replicas.index(n)))
    return order[:r]


def acked_by_every(acks: set[str], replica_sets: Iterable[Sequence[str]], w: int) -> bool:
    """True when W of the nodes that acknowledged are in every one of the replica sets (one set when the ring is
    settled; the old and the new ring's while it moves: joint quorum)."""
    return all(len(acks.intersection(reps)) >= w for reps in replica_sets)


def merge_windows(results: Sequence[WindowResult], limit: int) -> tuple[WindowResult, bool]:
    """Union of the windows R replicas returned for one term (or query). The union is complete down to the
    highest 'lowest id' among the replicas that were not exhausted; ids below that are dropped (a later window
    fetches them again). -> (merged, whether the replicas disagreed within the range they all cover)."""
    if len(results) == 1:
        return results[0], False
    floor = 0
    exhausted = True
    for r in results:
        if not r.exhausted:
            exhausted = False
            if r.ids:
                floor = max(floor, r.ids[-1])
    kept = [{i for i in r.ids if i >= floor} for r in results]
    disagree = any(k != kept[0] for k in kept[1:])
    ids = sorted(set().union(*kept), reverse=True)
    if len(ids) > limit:
        ids, exhausted = ids[:limit], False
    return WindowResult(ids, exhausted, max(r.df for r in results)), disagree


Best = Tweet | DeleteTweet


def _version(x: Best) -> int:
    return x.version


def resolve_tweets(
    answers: dict[str, GetResp], wanted_by: dict[str, set[int]]
) -> tuple[dict[int, Best], dict[str, list[Record]]]:
    """Merge R answers: per id the highest version (tweet or tombstone). Returns (best per id, repairs per node):
    a node that was asked for an id and answered an older version, or nothing, gets the newest record."""
    best: dict[int, Best] = {}
    have: dict[str, dict[int, int]] = {}
    for node, resp in answers.items():
        seen = have.setdefault(node, {})
        found: list[Best] = [*resp.tweets, *resp.tombstones]
        for x in found:
            seen[x.id] = x.version
            cur = best.get(x.id)
            if cur is None or _version(x) > _version(cur):
                best[x.id] = x
    repairs: dict[str, list[Record]] = {}
    for node, asked in wanted_by.items():
        if node not in answers:
            continue
        seen = have.get(node, {})
        for i in asked:
            b = best.get(i)
            if b is not None and seen.get(i, 0) < b.version:
                rec: Record = PutTweet(b) if isinstance(b, Tweet) else b
                repairs.setdefault(node, []).append(rec)
    return best, repairs
