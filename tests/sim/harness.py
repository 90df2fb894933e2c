"""Deterministic simulation of many membership cores (node.membership.swim) over a simulated network: drops,
delays, reordering, partitions, crashes and restarts, all driven by one seed, so a failure replays exactly.
Checks invariants after every step and raises SimFailure naming the seed. Test code: never imported by `node`.

Invariants (checked after every event, on the node it touched):
  I1 views only move forward: each observer's (incarnation, ALIVE < SUSPECT < DEAD < LEFT) for a member strictly
     grows with every change it reports (no resurrection at the same incarnation, no lost refutation).
  I2 only a member mints its incarnations: every incarnation any view holds for X is one X itself has held (so
     rumours only repeat X's own numbers, and a live X can always out-bid them with max + 1).
  I3 a node's view of itself is ALIVE at its own incarnation until it leaves.
  I4 bounds: every UDP packet seals within PACKET_BYTES_MAX; members, queue and relays stay under their limits.
  I5 timers make progress: after tick(now), next_deadline() > now.
Convergence (checked by the scenarios, after the network heals): every running node sees every other running
node ALIVE, and no running node sees a crashed one ALIVE or SUSPECT (DEAD, or never heard of), within a bound.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from node.membership import messages as m
from node.membership.config import MembershipConfig
from node.membership.swim import RELAYS_MAX, Event, Membership, Outgoing, State

SECRET = b"sim-secret"
INF = float("inf")


class SimFailure(AssertionError):
    pass


@dataclass
class NetConfig:
    drop: float = 0.0  # probability a UDP packet is lost (streams are TCP: delayed, never dropped)
    delay_min_s: float = 0.001
    delay_max_s: float = 0.010
    reorder: float = 0.0  # probability a packet is held back up to reorder_extra_s more (later ones overtake it)
    reorder_extra_s: float = 0.2


@dataclass
class Stats:
    packets: int = 0
    dropped: int = 0
    false_suspicions: set[tuple[str, int]] = field(default_factory=set)  # (member, incarnation) suspected while up
    false_deaths: set[tuple[str, int]] = field(default_factory=set)  # (member, incarnation) declared dead while up
    suspect_views: int = 0  # view changes to SUSPECT of a running member (each observer counts)


class Sim:
    def __init__(self, seed: int, cfg: MembershipConfig, net: NetConfig, check_every_step: bool = True) -> None:
        self.seed = seed
        self.cfg = cfg
        self.net = net
        self.rng = random.Random(f"net/{seed}")
        self.check_every_step = check_every_step
        self.now = 0.0
        self.nodes: dict[str, Membership | None] = {}  # None: crashed
        self.lives: dict[str, int] = {}
        self.left: set[str] = set()
        self.held: dict[str, set[int]] = {}  # I2: the incarnations each member itself has held, over all lives
        self.groups: dict[str, int] | None = None  # partition: node -> side; None: everyone can talk
        self.stats = Stats()
        # the mirror of every running node's view, kept from drained events: (observer, member) -> (inc, state)
        self.view: dict[tuple[str, str], tuple[int, State]] = {}
        self.count: dict[str, list[int]] = {}  # member -> running observers per State
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self._wake_at: dict[str, float] = {}

    # -- the scenario's verbs --

    def fail(self, why: str) -> SimFailure:
        return SimFailure(f"seed={self.seed} t={self.now:.3f}: {why} (replay: SIM_SEED={self.seed})")

    def start(self, name: str, seeds: list[str]) -> None:
        assert self.nodes.get(name) is None
        life = self.lives[name] = self.lives.get(name, 0) + 1
        node = Membership(name, name, self.cfg, random.Random(f"{self.seed}/{name}/{life}"), self.now)
        self.nodes[name] = node
        self.left.discard(name)
        self.count.setdefault(name, [0, 0, 0, 0])
        self._after(name, node, node.join(seeds, self.now))

    def crash(self, name: str) -> None:
        node = self.nodes.get(name)
        assert node is not None
        self.nodes[name] = None
        self._wake_at.pop(name, None)
        for x in list(self.count):
            v = self.view.pop((name, x), None)
            if v is not None:
                self.count[x][v[1]] -= 1

    def leave(self, name: str) -> None:
        node = self.nodes[name]
        assert node is not None
        self.left.add(name)
        self._after(name, node, node.leave(self.now))

    def partition(self, sides: list[set[str]]) -> None:
        self.groups = {n: i for i, side in enumerate(sides) for n in side}

    def heal(self) -> None:
        self.groups = None

    def at(self, t: float, action: Callable[[], None]) -> None:
        self._push(t, "call", action)

    def running(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node is not None and n not in self.left]

    def crashed(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node is None]

    # -- the loop --

    def run_until(self, t_end: float, stop: Callable[[], bool] | None = None) -> bool:
        """Run events up to t_end; with `stop`, return True as soon as it holds after an event."""
        while self._heap and self._heap[0][0] <= t_end:
            t, _, kind, data = heapq.heappop(self._heap)
            self.now = t
            if kind == "call":
                data()
            elif kind == "wake":
                self._on_wake(*data)
            else:
                self._on_deliver(*data)
            if stop is not None and stop():
                return True
        self.now = t_end
        return stop is not None and stop()

    def _push(self, t: float, kind: str, data: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, data))

    def _on_wake(self, name: str, life: int) -> None:
        node = self.nodes.get(name)
        if node is None or life != self.lives[name] or self._wake_at.get(name) != self.now:
            return  # crashed, or superseded by an earlier wake
        self._wake_at[name] = INF
        out = node.tick(self.now)
        if not node.next_deadline() > self.now:
            raise self.fail(f"I5: {name}.next_deadline() {node.next_deadline()} not after tick({self.now})")
        self._after(name, node, out)

    def _on_deliver(self, to: str, sender: str, data: bytes, stream: bool) -> None:
        node = self.nodes.get(to)
        if node is None or not self._linked(sender, to):
            self.stats.dropped += 1
            return
        if stream:
            msg = m.decode(data)
        else:
            payload = m.open_sealed(SECRET, data)
            if payload is None:
                raise self.fail(f"a packet from {sender} to {to} did not open")
            msg = m.decode(payload)
        self._after(to, node, node.on_message(msg, sender, self.now))

    def _linked(self, a: str, b: str) -> bool:
        return self.groups is None or self.groups.get(a, -1) == self.groups.get(b, -2)

    def _after(self, name: str, node: Membership, out: list[Outgoing]) -> None:
        self.held.setdefault(name, set()).add(node.incarnation)
        self._check_events(name, node.drain_events())
        if self.check_every_step:
            self._check_node(name, node)
        for o in out:
            self._send(name, o)
        nd = node.next_deadline()
        if nd < self._wake_at.get(name, INF):
            t = max(nd, self.now)
            self._wake_at[name] = t
            self._push(t, "wake", (name, self.lives[name]))

    def _send(self, src: str, o: Outgoing) -> None:
        self.stats.packets += 1
        stream = isinstance(o.msg, m.PushPull)
        data = m.encode(o.msg)
        if not stream:
            data = m.seal(SECRET, data)  # raises past the bound: I4
            if len(data) > m.PACKET_BYTES_MAX:
                raise self.fail(f"I4: a {len(data)}-byte packet")
            if self.rng.random() < self.net.drop:
                self.stats.dropped += 1
                return
        delay = self.rng.uniform(self.net.delay_min_s, self.net.delay_max_s)
        if self.rng.random() < self.net.reorder:
            delay += self.rng.uniform(0, self.net.reorder_extra_s)
        self._push(self.now + delay, "deliver", (o.addr, src, data, stream))

    # -- invariants --

    def _check_events(self, observer: str, events: list[Event]) -> None:
        for e in events:
            if e.node == observer:
                continue  # our own entry: I3 checks it
            if e.incarnation not in self.held.get(e.node, ()):
                raise self.fail(f"I2: {observer} holds {e.node} at incarnation {e.incarnation}, never its own")
            key = (observer, e.node)
            old = self.view.get(key)
            if old is not None and (e.incarnation, e.state) <= old:
                raise self.fail(f"I1: {observer}'s view of {e.node} went from {old} to {e.incarnation, e.state}")
            if old is not None:
                self.count[e.node][old[1]] -= 1
            self.view[key] = (e.incarnation, e.state)
            self.count.setdefault(e.node, [0, 0, 0, 0])[e.state] += 1
            up = self.nodes.get(e.node) is not None and e.node not in self.left
            if up and e.state == State.SUSPECT:
                self.stats.suspect_views += 1
                self.stats.false_suspicions.add((e.node, e.incarnation))
            if up and e.state == State.DEAD:
                self.stats.false_deaths.add((e.node, e.incarnation))

    def _check_node(self, name: str, node: Membership) -> None:
        me = node.member(name)
        want = State.LEFT if node.left else State.ALIVE
        if me is None or me.state != want or me.incarnation != node.incarnation:
            raise self.fail(f"I3: {name} sees itself as {me}, incarnation {node.incarnation}")
        if len(node.members()) > m.MEMBERS_MAX or node.pending_broadcasts() > m.MEMBERS_MAX:
            raise self.fail(f"I4: {name} holds too many members or updates")
        if len(node._relays) > RELAYS_MAX:
            raise self.fail(f"I4: {name} relays {len(node._relays)} probes")

    def check_mirror(self) -> None:
        """The event mirror equals every running node's members(): events report every change."""
        for o, node in self.nodes.items():
            if node is None:
                continue
            for x, v in node.members().items():
                if x != o and self.view.get((o, x)) != (v.incarnation, v.state):
                    raise self.fail(f"mirror: {o} has {x} as {v}, events said {self.view.get((o, x))}")

    # -- convergence --

    def convergence_errors(self) -> list[str]:
        up = self.running()
        live_observers = len(up)
        errors = []
        for x in up:
            c = self.count[x]
            if c[State.ALIVE] != live_observers - 1:
                errors.append(f"{x} is up but ALIVE in {c[State.ALIVE]} of {live_observers - 1} views ({c})")
        for x in self.crashed():
            c = self.count[x]
            if c[State.ALIVE] or c[State.SUSPECT]:
                errors.append(f"{x} crashed but is still ALIVE/SUSPECT in views ({c})")
        return errors

    def converged(self) -> bool:
        return not self.convergence_errors()

    def convergence_bound_s(self) -> float:
        """After healing: a push-pull round to find the other side, a full suspicion, Lifeguard's awareness
        winding down from its maximum (period k * interval for k = max .. 1), and slack for gossip."""
        c = self.cfg
        n = max(2, len(self.nodes))
        amax = c.awareness_max_multiplier
        wind_down = amax * (amax + 1) / 2 * c.probe_interval_s
        gossip = 10 * math.ceil(math.log2(n)) * c.gossip_interval_s
        return c.push_pull_period_s(n) + c.suspicion_max_s(n) + wind_down + gossip + 5 * c.probe_interval_s
