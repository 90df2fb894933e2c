"""Reading a running cluster's OWN replica state, as an operator tool would: over the authenticated node-to-node
transport (node.transport.client with the cluster secret) with the existing read-only messages TopologyReq,
DigestReq and KeysReq. Used by the chaos checker (scripts/chaos.py) and the join/leave test, where answers through
coordinators are not enough: an R=2 read repairs as it goes, so it shows what a quorum returns, not what each
replica holds. Never writes anything and never goes through a node's HTTP API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from node.cluster.limits import SYNC_BUCKETS_MAX
from node.errors import MurmurError
from node.replication import messages as m
from node.ring import topology as tp
from node.ring.ring import tweet_token
from node.ring.topology import Topology
from node.transport.client import PeerPool, open_peer_pool

CALL_TIMEOUT_S = 10.0  # one call to one node
OPERATOR = "murmur-operator-check"  # the name this tool gives in the handshake (not a member: it only reads)
T = TypeVar("T")

Addr = tuple[str, int]


async def call(pool: PeerPool, addr: Addr, req: Any) -> Any:
    return m.decode(await pool.call(addr, type(req).__name__, m.encode(req), CALL_TIMEOUT_S))


async def topology(pool: PeerPool, addrs: Iterable[Addr]) -> Topology:
    """The newest topology any of these nodes reports (the first that answers, then the highest version)."""
    found: list[Topology] = []
    errors: list[str] = []
    for addr in addrs:
        try:
            resp = await call(pool, addr, m.TopologyReq())
        except MurmurError as e:
            errors.append(f"{addr}: {e}")
            continue
        if resp.topology is not None:
            found.append(resp.topology)
    if not found:
        raise MurmurError("no node answered TopologyReq: " + "; ".join(errors))
    return max(found, key=lambda t: t.version)


def addr_of(t: Topology, name: str) -> Addr:
    mb = t.member(name)
    assert mb is not None, name
    return mb.host, mb.gossip_port


def partitions(t: Topology, n: int) -> list[tuple[int, int, tuple[str, ...]]]:
    """(start, end, replicas) of every tweet partition of the settled ring (the old one while it moves)."""
    ring = tp.ring_of(t.members)
    return [(s, e, ring.preference_list(e, n)) for s, e in ring.partitions()]


async def keys(pool: PeerPool, addr: Addr, start: int, end: int, buckets: Sequence[int]) -> dict[int, int]:
    """id -> version (tombstones included) held in these buckets of partition (start, end]."""
    out: dict[int, int] = {}
    bs = sorted(buckets)
    for i in range(0, len(bs), SYNC_BUCKETS_MAX):
        resp = await call(pool, addr, m.KeysReq(start, end, bs[i : i + SYNC_BUCKETS_MAX]))
        out.update(resp.keys)
    return out


async def holding(pool: PeerPool, addr: Addr, start: int, end: int) -> dict[int, int]:
    """Every key a node holds in partition (start, end]: its digest names its non-empty buckets."""
    digest = await call(pool, addr, m.DigestReq(start, end))
    return await keys(pool, addr, start, end, [b for b, _h in digest.buckets])


@dataclass
class Divergence:
    start: int
    end: int
    replicas: tuple[str, ...]
    keys: dict[int, dict[str, int]] = field(default_factory=dict)  # id -> node -> version (0: absent), differing

    def describe(self, limit: int = 3) -> str:
        ex = "; ".join(f"{i}: {v}" for i, v in list(self.keys.items())[:limit])
        return f"partition ({self.start}, {self.end}] on {list(self.replicas)}: {len(self.keys)} keys differ ({ex})"


async def compare_replicas(pool: PeerPool, t: Topology, n: int) -> list[Divergence]:
    """The tweet partitions whose replicas' digests differ, with the keys (and versions) that differ.
    Raises MurmurError when a replica cannot be asked."""
    out: list[Divergence] = []
    for start, end, reps in partitions(t, n):
        digests: dict[str, dict[int, int]] = {}
        for nd in reps:
            digests[nd] = dict((await call(pool, addr_of(t, nd), m.DigestReq(start, end))).buckets)
        if all(d == digests[reps[0]] for d in digests.values()):
            continue
        buckets = {b for d in digests.values() for b in d}
        differ = sorted(b for b in buckets if len({d.get(b) for d in digests.values()}) > 1)
        held = {nd: await keys(pool, addr_of(t, nd), start, end, differ) for nd in reps}
        div = Divergence(start, end, reps)
        for i in sorted(set().union(*held.values())):
            vs = {nd: held[nd].get(i, 0) for nd in reps}
            if len(set(vs.values())) > 1:
                div.keys[i] = vs
        out.append(div)
    return out


async def holdings(pool: PeerPool, t: Topology, n: int) -> dict[str, dict[int, int]]:
    """node -> every key (id -> version) it holds in the partitions it replicates on the settled ring."""
    out: dict[str, dict[int, int]] = {nd: {} for nd in t.names()}
    for start, end, reps in partitions(t, n):
        for nd in reps:
            out[nd].update(await holding(pool, addr_of(t, nd), start, end))
    return out


async def leftovers(pool: PeerPool, t: Topology, n: int) -> dict[str, int]:
    """node -> how many keys it holds in partitions it does not replicate on the settled ring (what a join or a
    leave left behind until `murmur cleanup`)."""
    out: dict[str, int] = dict.fromkeys(t.names(), 0)
    for start, end, reps in partitions(t, n):
        for nd in t.names():
            if nd not in reps:
                out[nd] += len(await holding(pool, addr_of(t, nd), start, end))
    return out


def replicas_of(t: Topology, n: int, tweet_id: int) -> tuple[str, ...]:
    return tp.ring_of(t.members).preference_list(tweet_token(tweet_id), n)


def run(secret: str, fn: Callable[[PeerPool], Awaitable[T]]) -> T:
    """fn(pool) in a trio run of its own, with a peer pool authenticated by the cluster secret (for sync callers)."""

    async def main() -> T:
        async with open_peer_pool(secret, OPERATOR) as pool:
            return await fn(pool)

    return trio.run(main)
