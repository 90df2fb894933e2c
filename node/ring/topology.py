"""Who is on the ring, with which tokens, and the move from one ring to the next (pure).

A Topology is versioned and changed one step at a time by the node that joins or leaves (node/cluster/rebalance.py):
1. settled: `members` is the ring every read and write uses;
2. moving: `next` is the ring being moved to. Reads still use `members`; a write is acknowledged only when W
   replicas of the old ring AND W of the new one hold it (joint quorum, as Raft's joint consensus), so whatever
   ring a later read uses, it meets W copies. Meanwhile every node that gains ranges pulls them from enough
   old replicas (`sources_needed`) to hold every write acknowledged before the move;
3. settled again on `next`, one version later.
Tokens of a joining node are allocated against the ring it joins and never move; a leave only drops the
leaver's tokens. So a join moves keys only to the new node and a leave only away from the leaver.
Never reads a clock, a socket or a file.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from node.ring.ring import Ring, allocate_tokens


class Member(msgspec.Struct, frozen=True, array_like=True):
    name: str
    host: str
    http_port: int
    gossip_port: int
    machine_id: int  # the Snowflake machine id: unique on the ring
    tokens: tuple[int, ...]


class Topology(msgspec.Struct, frozen=True, array_like=True):
    version: int
    members: tuple[Member, ...]  # the ring reads use (and writes, with `next`)
    next: tuple[Member, ...] | None = None  # the ring being moved to; None when settled
    change: str = ""  # what the move is ("join n6", "leave n3"), for status pages

    @property
    def moving(self) -> bool:
        return self.next is not None

    def member(self, name: str) -> Member | None:
        for m in (*self.members, *(self.next or ())):
            if m.name == name:
                return m
        return None

    def role(self, name: str) -> str:
        """`name`'s part in the ring: normal, joining (only in `next`), leaving (not in `next`), or left (neither)."""
        in_now = any(m.name == name for m in self.members)
        in_next = self.next is None or any(m.name == name for m in self.next)
        if in_now:
            return "normal" if in_next else "leaving"
        return "joining" if self.next is not None and in_next else "left"

    def names(self) -> list[str]:
        """Every node of either ring, in ring order then joiners."""
        out = [m.name for m in self.members]
        out += [m.name for m in self.next or () if m.name not in out]
        return out


class TopologyError(ValueError):
    """A change that cannot be made (the message says why)."""


def ring_of(members: Sequence[Member]) -> Ring:
    return Ring({m.name: m.tokens for m in members})


def initial(nodes: Sequence[tuple[str, str, int, int, int]], vnodes: int) -> Topology:
    """The topology of a fresh cluster: (name, host, http_port, gossip_port, machine_id) in config order, tokens as
    if each joined in that order (Ring.build)."""
    ring = Ring.build([n[0] for n in nodes], vnodes)
    return Topology(1, tuple(Member(n, h, hp, gp, mid, tuple(ring.tokens_of(n))) for n, h, hp, gp, mid in nodes))


def begin_join(t: Topology, name: str, host: str, http_port: int, gossip_port: int, machine_id: int, vnodes: int) -> Topology:
    """The moving topology that adds `name` (its tokens allocated against the current ring). A machine id
    already taken is replaced by the lowest free one."""
    if t.moving:
        raise TopologyError(f"a change is already in progress ({t.change}); retry when it is done")
    if t.member(name) is not None:
        raise TopologyError(f"{name} is already on the ring")
    for m in t.members:
        if (m.host, m.gossip_port) == (host, gossip_port) or (m.host, m.http_port) == (host, http_port):
            raise TopologyError(f"{m.name} already uses the address of {name}")
    taken = {m.machine_id for m in t.members}
    if machine_id in taken:
        machine_id = min(set(range(1, len(taken) + 2)) - taken)
    tokens = allocate_tokens(ring_of(t.members), name, vnodes)
    joiner = Member(name, host, http_port, gossip_port, machine_id, tuple(tokens))
    return Topology(t.version + 1, t.members, (*t.members, joiner), f"join {name}")


def begin_leave(t: Topology, name: str, n: int) -> Topology:
    """The moving topology that removes `name`; refused when fewer than N nodes would be left."""
    if t.moving:
        raise TopologyError(f"a change is already in progress ({t.change}); retry when it is done")
    if all(m.name != name for m in t.members):
        raise TopologyError(f"{name} is not on the ring")
    if len(t.members) - 1 < n:
        raise TopologyError(
            f"{name} cannot leave: {len(t.members) - 1} nodes would be left, fewer than the replication factor {n}"
        )
    return Topology(t.version + 1, t.members, tuple(m for m in t.members if m.name != name), f"leave {name}")


def finish(t: Topology) -> Topology:
    """Settle on the ring being moved to."""
    if t.next is None:
        raise TopologyError("no change in progress")
    return Topology(t.version + 1, t.next)


def abort(t: Topology) -> Topology:
    """Give up a move: settle back on the current ring (the joiner's copies become unused)."""
    if t.next is None:
        raise TopologyError("no change in progress")
    return Topology(t.version + 1, t.members)


def segments(old: Ring, new: Ring) -> list[tuple[int, int]]:
    """The token ranges (start exclusive, end inclusive) cut by the tokens of both rings, in ring order: within
    one, each ring has a single preference list."""
    toks = sorted(set(old._tokens) | set(new._tokens))
    return [(toks[i - 1], toks[i]) for i in range(len(toks))]


def gained(old: Ring, new: Ring, n: int, node: str) -> list[tuple[int, int, tuple[str, ...]]]:
    """The ranges `node` replicates on `new` but not on `old`, each with its old replicas (where to pull from)."""
    out = []
    for start, end in segments(old, new):
        if node in new.preference_list(end, n) and node not in (was := old.preference_list(end, n)):
            out.append((start, end, was))
    return out


def sources_needed(replicas: int, w: int) -> int:
    """How many old replicas a gainer pulls from: every acknowledged write is on W of them, so any
    replicas - W + 1 of them hold all of it together."""
    return max(1, replicas - w + 1)
