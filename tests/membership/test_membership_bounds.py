"""Forged and replayed rumours against the SWIM core (swim.py): incarnations stay within the wire bound, so a
refutation always fits, and a node evicted by a forged Left is back within about one probe period.

Three cores on an instant, lossless network driven by their own deadlines; every packet goes through the real
seal and codec, so a message that would not fit the bounds fails the test."""

from __future__ import annotations

import random

from node.membership import messages as m
from node.membership.config import MembershipConfig
from node.membership.swim import Membership, Outgoing, State

CFG = MembershipConfig()
KEY = b"k" * 32


class Net:
    def __init__(self, names: tuple[str, ...] = ("a", "b", "c")) -> None:
        self.now = 0.0
        self.cores = {n: Membership(n, f"{n}:1", CFG, random.Random(n), 0.0) for n in names}
        for c in self.cores.values():
            c.on_message(m.Gossip("x", [m.Alive(p, 0, f"{p}:1") for p in names]), "x:1", 0.0)
        self.run(5.0)

    def deliver(self, sender: str, out: list[Outgoing]) -> None:
        todo = [(sender, o) for o in out]
        while todo:
            src, o = todo.pop(0)
            dst = o.addr.split(":")[0]
            if isinstance(o.msg, m.PushPull):
                msg = m.decode(m.encode(o.msg))
            else:  # UDP: sealed, bounded, decoded again exactly as the shell does
                payload = m.open_sealed(KEY, m.seal(KEY, m.encode(o.msg)))
                assert payload is not None
                msg = m.decode(payload)
            if dst in self.cores:
                todo += [(dst, r) for r in self.cores[dst].on_message(msg, f"{src}:1", self.now)]

    def run(self, until: float) -> None:
        while True:
            name, core = min(self.cores.items(), key=lambda kv: kv[1].next_deadline())
            d = core.next_deadline()
            if d > until:
                self.now = until
                return
            self.now = max(self.now, d)
            self.deliver(name, core.tick(self.now))

    def view(self, observer: str, member: str) -> tuple[State, int]:
        v = self.cores[observer].member(member)
        assert v is not None
        return v.state, v.incarnation

    def forge(self, to: str, *updates: m.Update) -> None:
        self.deliver("x", [Outgoing(f"{to}:1", m.Gossip("x", list(updates)))])


def test_a_forged_left_at_the_wire_maximum_is_not_believed() -> None:
    net = Net()
    for to in ("a", "b", "c"):  # also sent to the accused itself: it must not try to out-bid 2**63-1
        net.forge(to, m.Left("a", 2**63 - 1), m.Dead("a", 2**63 - 1, "x"), m.Suspect("a", 2**62, "x"))
    net.run(net.now + 0.01)
    assert net.view("b", "a") == (State.ALIVE, 0) and net.view("c", "a") == (State.ALIVE, 0)
    assert net.cores["a"].incarnation == 0
    net.forge("b", m.Alive("c", 2**63 - 1, "c:1"))  # nor an Alive nobody could ever out-bid
    assert net.view("b", "c") == (State.ALIVE, 0)


def test_a_forged_left_evicts_for_about_one_probe_period_and_the_refutation_fits() -> None:
    net = Net()
    accused = m.INCARNATION_MAX - 1  # the largest accusation believed
    t0 = net.now
    for to in ("b", "c"):  # everyone but the accused: it learns only from us
        net.forge(to, m.Left("a", accused))
    assert net.view("b", "a") == (State.LEFT, accused) and net.view("c", "a") == (State.LEFT, accused)
    # a probes one of b, c every period; the Ack tells it; its Alive reaches both with the next gossip
    period = CFG.probe_interval_s * CFG.awareness_max_multiplier  # the longest period a's health allows
    t = t0
    while t < t0 + 3 * period:
        t += 0.05
        net.run(t)
        if all(net.view(o, "a")[0] == State.ALIVE for o in ("b", "c")):
            break
    back = t - t0
    assert all(net.view(o, "a") == (State.ALIVE, m.INCARNATION_MAX) for o in ("b", "c")), back
    assert back <= 2 * CFG.probe_interval_s + 1.0, back
    assert net.cores["a"].incarnation == m.INCARNATION_MAX <= 2**63 - 1


def test_a_replayed_left_of_an_earlier_life_changes_nothing() -> None:
    net = Net()
    old = m.Left("a", 0)  # what a's graceful leave at incarnation 0 would have gossiped... then a refuted
    net.forge("b", m.Suspect("a", 0, "c"))
    net.run(net.now + 5.0)
    state, inc = net.view("b", "a")
    assert state == State.ALIVE and inc >= 1
    net.forge("b", old)
    assert net.view("b", "a") == (state, inc)
