"""One node's SWIM + Lifeguard membership as a pure state machine: packets and `now` in, packets out.
It never reads a clock, sleeps, or touches a socket; its only randomness is the seeded `random.Random` it is given.

Transition rules (the only place they live). A member's view is (incarnation, state), ordered by incarnation and
then ALIVE < SUSPECT < DEAD < LEFT; only the member itself ever raises its incarnation, so a live member can always
out-bid any rumour about itself.
  Merge:            an update about a known member replaces its view iff it is greater in that order; so the view
                    is always the maximum of everything heard (Alive(i) needs i > inc: Suspect(i) and Dead(i) beat
                    Alive(i); Left beats Dead, as a graceful leave is the more precise news). An unknown member
                    enters only by Alive (and only while the table has room); other news of strangers is dropped.
  Suspicion:        becoming SUSPECT starts a Lifeguard timer with the sender as first suspecter; a Suspect at the
                    same incarnation from another sender is a confirmation (shortens it, re-gossiped if new); the
                    timer's expiry is Dead(inc, us); leaving SUSPECT cancels it.
  About ourselves:  Suspect/Dead/Left(i >= ours), or Alive(i > ours), while we have not left -> refute: our
                    incarnation becomes max(ours, i) + 1 (at most INCARNATION_MAX), Alive is gossiped, and our
                    awareness score rises by 1.
  Bounds:           a received update above INCARNATION_MAX, or an accusation at it, is dropped unheard: so a
                    refutation always fits the wire, and a forged Left(x, 2**63-1) changes nothing.
  Tell the accused: a Ping from a member we hold DEAD or LEFT is answered with that accusation first in the Ack's
                    piggyback: a node evicted by a forged or replayed rumour hears it at its next probe of any of us
                    and refutes, so it is out for about one probe period, not until the next full-state exchange.
  Tell the suspect: a Ping to a member we hold SUSPECT carries that Suspect first, and a Ping that accuses its
                    target is answered with the target's Alive at its incarnation (raised by the refutation, or
                    already above the stale rumour): a suspicion ends at our next probe of the suspect, even when
                    its gossip (or the refutation's) was spent while the two could not talk.
  Resync on return: a node that refutes its own death (Dead or Left about itself) was out of the gossip while it
                    was held dead, so its view of the others is stale too: it runs a full-state exchange at once
                    with the node that told it (at most one per probe_interval_s).
  Probe the rumour: a member that becomes SUSPECT on another's word is the next one we probe: it hears the
                    suspicion and refutes, or our failed probe confirms it.
  Reconnect:        every probe_interval_s, a full-state exchange with one member dead for less than
                    gossip_to_dead_s (round robin): a node paused or cut off that is back meets us within about a
                    second, even when it holds us all dead and probes no one. One member in flight per period.
  Remote full state (PushPull) is merged entry by entry through the same rules, except that a remote SUSPECT or
  DEAD is taken as a Suspect from the sender (we do not trust another node's timer), as memberlist does.
  Every accepted change is queued for gossip; ignored ones are not. A state never moves backwards at one
  incarnation: (incarnation, ALIVE < SUSPECT < DEAD < LEFT) only grows.
Probing: each period (probe_interval_s * (awareness + 1)) pings the next member of a shuffled round-robin order;
no ack after the (scaled) probe timeout -> PingReq to k others; none by the end of the period -> on_suspect(target,
its incarnation, us). Suspicion timers expire into on_dead. Deadlines: next_deadline(); tick(now) runs what is due.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from node.membership import messages as m
from node.membership.awareness import Awareness
from node.membership.broadcast import BroadcastQueue
from node.membership.config import MembershipConfig
from node.membership.suspicion import Suspicion

RELAYS_MAX = 64  # indirect probes we run for others at once; more PingReqs are dropped (the asker nacks-out)
SEEDS_MAX = 16  # seed addresses one join contacts
EVENTS_MAX = 4 * m.MEMBERS_MAX  # undrained state-change events kept (oldest dropped)
_ARRAY_HEADER_SLACK = 2  # msgpack array header grows from 1 to 3 bytes past 15 elements


class State(enum.IntEnum):
    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class MemberView(NamedTuple):
    state: State
    incarnation: int
    addr: str


class Outgoing(NamedTuple):
    """Send `msg` to `addr`: a PushPull over the node transport (a stream), anything else as a sealed UDP packet.
    A PushPull with reply=True answers the request the shell just handed in: return it on that stream."""

    addr: str
    msg: m.Message


class Event(NamedTuple):
    node: str
    state: State
    incarnation: int


class _Member:
    __slots__ = ("addr", "incarnation", "name", "since", "state")

    def __init__(self, name: str, addr: str, incarnation: int, state: State, since: float) -> None:
        self.name = name
        self.addr = addr
        self.incarnation = incarnation
        self.state = state
        self.since = since  # time of the last state change


class _Probe:
    __slots__ = ("acked", "indirect_sent", "nacks", "nacks_expected", "seq", "target", "timeout_at")

    def __init__(self, target: str, seq: int, timeout_at: float) -> None:
        self.target = target
        self.seq = seq
        self.timeout_at = timeout_at
        self.acked = False
        self.indirect_sent = False
        self.nacks_expected = 0
        self.nacks: set[str] = set()


class _Relay(NamedTuple):
    requester_addr: str
    requester_seq: int
    target: str
    nack_at: float


class _NameSet:
    """Names with O(1) add, remove and random choice (swap-remove); deterministic order for a seeded rng."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._pos: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, name: str) -> None:
        if name not in self._pos:
            self._pos[name] = len(self.items)
            self.items.append(name)

    def discard(self, name: str) -> None:
        i = self._pos.pop(name, None)
        if i is not None:
            last = self.items.pop()
            if i < len(self.items):
                self.items[i] = last
                self._pos[last] = i


class Membership:
    def __init__(self, name: str, addr: str, config: MembershipConfig, rng: random.Random, now: float) -> None:
        self.name = name
        self.addr = addr
        self.cfg = config.validate()
        self.rng = rng
        self.incarnation = 0
        self.left = False
        self.awareness = Awareness(config.awareness_max_multiplier)
        self.queue = BroadcastQueue(m.MEMBERS_MAX)
        self._members: dict[str, _Member] = {name: _Member(name, addr, 0, State.ALIVE, now)}
        self._live = _NameSet()  # ALIVE or SUSPECT, not us: probe, gossip and relay candidates
        self._gone = _NameSet()  # DEAD or LEFT: reconnect candidates, reaped after dead_keep_s
        self._suspicions: dict[str, Suspicion] = {}
        self._relays: dict[int, _Relay] = {}
        self._events: deque[Event] = deque(maxlen=EVENTS_MAX)
        self._seq = rng.randrange(2**32)  # a restarted node must not match acks meant for its last life
        self._probe: _Probe | None = None
        self._order: list[str] = []
        self._order_i = 0
        self._seeds: list[str] = []
        # random phases, so that nodes started together do not probe and gossip in lockstep
        self._probe_at = now + rng.random() * config.probe_interval_s
        self._gossip_at = now + rng.random() * config.gossip_interval_s
        self._push_pull_at = now + rng.random() * config.push_pull_interval_s
        self._reconnect_at = now + config.probe_interval_s
        self._reconnect_i = 0
        self._evicted = False  # set by a refutation of our own death: resync with whoever told us (on_message)
        self._resync_at = now  # no resync before this (bounded: one per probe_interval_s)
        self.queue.queue(m.Alive(name, 0, addr))

    # -- the shell's API --

    def members(self) -> dict[str, MemberView]:
        return {n: MemberView(mb.state, mb.incarnation, mb.addr) for n, mb in self._members.items()}

    def member(self, name: str) -> MemberView | None:
        mb = self._members.get(name)
        return None if mb is None else MemberView(mb.state, mb.incarnation, mb.addr)

    def drain_events(self) -> list[Event]:
        """State changes since the last drain, oldest first (for the ring, /cluster and logs)."""
        out = list(self._events)
        self._events.clear()
        return out

    def pending_broadcasts(self) -> int:
        """Updates still to gossip: after leave(), the shell keeps ticking until this is 0 (or a deadline)."""
        return len(self.queue)

    def join(self, seeds: list[str], now: float) -> list[Outgoing]:
        """Full-state exchanges with the seed addresses; their answers (on_message) bring the whole table."""
        self._seeds = [a for a in seeds[:SEEDS_MAX] if a != self.addr]
        pp = self._push_pull(reply=False)
        return [Outgoing(a, pp) for a in self._seeds]

    def leave(self, now: float) -> list[Outgoing]:
        """Graceful leave: Left at a new incarnation, gossiped at once; we stop probing and refuting."""
        if self.left:
            return []
        self.left = True
        self.incarnation = min(self.incarnation + 1, m.INCARNATION_MAX)
        me = self._members[self.name]
        me.incarnation, me.state, me.since = self.incarnation, State.LEFT, now
        self._event(me)
        self._suspicions.clear()  # no longer our business: we neither probe nor declare anyone dead
        self._probe = None
        self.queue.queue(m.Left(self.name, self.incarnation))
        self._gossip_at = now
        return self.tick(now)

    def next_deadline(self) -> float:
        d = self._push_pull_at if not self.left else float("inf")
        if not self.left:
            d = min(d, self._probe_at, self._reconnect_at)
            if self._probe is not None and not self._probe.acked and not self._probe.indirect_sent:
                d = min(d, self._probe.timeout_at)
        if len(self.queue):
            d = min(d, self._gossip_at)
        for r in self._relays.values():
            d = min(d, r.nack_at)
        for s in self._suspicions.values():
            d = min(d, s.deadline())
        return d

    def tick(self, now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        self._maybe_nack(now, out)
        if not self.left:
            self._maybe_probe_indirect(now, out)
            if now >= self._probe_at:
                self._maybe_conclude_probe(now)
                self._maybe_reap(now)
                self._maybe_probe(now, out)
            # after the probe: our own failed probe may be the confirmation that brings a deadline forward
            self._maybe_expire_suspicions(now)
            if now >= self._push_pull_at:
                self._maybe_push_pull(now, out)
            if now >= self._reconnect_at:
                self._maybe_reconnect(now, out)
        if now >= self._gossip_at:
            self._maybe_gossip(now, out)
        return out

    def on_message(self, msg: m.Message, sender: str, now: float) -> list[Outgoing]:
        """`sender`: the address the packet (or stream) came from; answers to pings and requests go there."""
        out: list[Outgoing] = []
        match msg:
            case m.Ping():
                if msg.target != self.name:
                    return out  # meant for whoever had this address before us
                self._merge(msg.piggyback, now)
                first = self._accusation(msg.src)
                if any(u.node == self.name and not isinstance(u, m.Alive) for u in msg.piggyback):
                    first += (m.Alive(self.name, self.incarnation, self.addr),)  # refuted now, or already: say so
                ack = self._with_piggyback(lambda p: m.Ack(msg.seq, self.name, p), first)
                out.append(Outgoing(sender, ack))
            case m.Ack():
                self._merge(msg.piggyback, now)
                self._on_ack(msg.seq, msg.src, now, out)
            case m.PingReq():
                self._on_ping_req(msg, sender, now, out)
            case m.IndirectAck():
                p = self._probe
                if p is not None and msg.seq == p.seq and msg.target == p.target:
                    self._probe_succeeded(p)
            case m.Nack():
                p = self._probe
                if p is not None and msg.seq == p.seq and msg.target == p.target and len(p.nacks) < p.nacks_expected:
                    p.nacks.add(msg.src)
            case m.Gossip():
                self._merge(msg.piggyback, now)
            case m.PushPull():
                self._merge_state(msg, now)
                self._evicted = False  # a full state is what a resync would bring
                if not msg.reply:
                    out.append(Outgoing(sender, self._push_pull(reply=True)))
        if self._evicted:
            self._evicted = False
            if now >= self._resync_at:
                self._resync_at = now + self.cfg.probe_interval_s
                out.append(Outgoing(sender, self._push_pull(reply=False)))
        return out

    # -- transitions: the rules of the header, nowhere else --

    def _apply(self, u: m.Update, now: float) -> None:
        if not _believable(u):
            return
        match u:
            case m.Alive():
                self.on_alive(u, now)
            case m.Suspect():
                self.on_suspect(u, now)
            case m.Dead():
                self.on_dead(u, now)
            case m.Left():
                self.on_left(u, now)

    def on_alive(self, u: m.Alive, now: float) -> None:
        if u.node == self.name:
            if u.incarnation > self.incarnation:
                self._refute(u.incarnation, now)
            return
        mb = self._members.get(u.node)
        if mb is None:
            if len(self._members) >= m.MEMBERS_MAX:
                return
            mb = self._members[u.node] = _Member(u.node, u.addr, u.incarnation, State.ALIVE, now)
            self._live.add(u.node)
            self._event(mb)
            self.queue.queue(u)
        elif u.incarnation > mb.incarnation:
            mb.addr = u.addr
            self._become(mb, State.ALIVE, u.incarnation, now)
            self.queue.queue(u)

    def on_suspect(self, u: m.Suspect, now: float) -> None:
        if u.node == self.name:
            if u.incarnation >= self.incarnation:
                self._refute(u.incarnation, now)
            return
        mb = self._members.get(u.node)
        if mb is None:
            return
        if mb.state == State.SUSPECT and u.incarnation == mb.incarnation:
            s = self._suspicions.get(u.node)
            if s is not None and s.confirm(u.src):
                self.queue.queue(u)  # re-gossip: others count the confirmation too
            return
        if (u.incarnation, State.SUSPECT) <= (mb.incarnation, mb.state):
            return
        self._become(mb, State.SUSPECT, u.incarnation, now)
        n = len(self._live) + 1
        cfg = self.cfg
        self._suspicions[u.node] = Suspicion(
            u.src, cfg.suspicion_k(n), cfg.suspicion_min_s(n), cfg.suspicion_max_s(n), now
        )
        self.queue.queue(u)
        if u.src != self.name and u.node not in self._order[self._order_i : self._order_i + 1]:
            self._order.insert(self._order_i, u.node)  # heard, not seen: probed next (it refutes, or we confirm)

    def on_dead(self, u: m.Dead, now: float) -> None:
        if u.node == self.name:
            if u.incarnation >= self.incarnation:
                self._refute(u.incarnation, now, evicted=True)
            return
        mb = self._members.get(u.node)
        if mb is None or (u.incarnation, State.DEAD) <= (mb.incarnation, mb.state):
            return
        self._become(mb, State.DEAD, u.incarnation, now)
        self.queue.queue(u)

    def on_left(self, u: m.Left, now: float) -> None:
        if u.node == self.name:
            if u.incarnation >= self.incarnation:
                self._refute(u.incarnation, now, evicted=True)
            return
        mb = self._members.get(u.node)
        if mb is None or (u.incarnation, State.LEFT) <= (mb.incarnation, mb.state):
            return
        self._become(mb, State.LEFT, u.incarnation, now)
        self.queue.queue(u)

    def _refute(self, accused: int, now: float, evicted: bool = False) -> None:
        if self.left:
            return  # we are going: let the rumour stand
        self._evicted = self._evicted or evicted
        self.incarnation = min(max(self.incarnation, accused) + 1, m.INCARNATION_MAX)
        me = self._members[self.name]
        me.incarnation = self.incarnation
        self._event(me)
        self.awareness.apply_delta(1)  # being suspected hints that we are the slow one (Lifeguard)
        self.queue.queue(m.Alive(self.name, self.incarnation, self.addr))

    def _become(self, mb: _Member, state: State, incarnation: int, now: float) -> None:
        assert (incarnation, state) > (mb.incarnation, mb.state), "a view never moves backwards"
        if state != State.SUSPECT:
            self._suspicions.pop(mb.name, None)
        if state in (State.ALIVE, State.SUSPECT):
            self._gone.discard(mb.name)
            self._live.add(mb.name)
        else:
            self._live.discard(mb.name)
            self._gone.add(mb.name)
        mb.state, mb.incarnation, mb.since = state, incarnation, now
        self._event(mb)

    def _event(self, mb: _Member) -> None:
        self._events.append(Event(mb.name, mb.state, mb.incarnation))

    def _merge(self, updates: list[m.Update], now: float) -> None:
        for u in updates:
            self._apply(u, now)

    def _merge_state(self, pp: m.PushPull, now: float) -> None:
        for e in pp.members:
            if e.incarnation > m.INCARNATION_MAX or (e.state != State.ALIVE and e.incarnation >= m.INCARNATION_MAX):
                continue
            match e.state:
                case State.ALIVE:
                    self.on_alive(m.Alive(e.node, e.incarnation, e.addr), now)
                case State.LEFT:
                    self.on_left(m.Left(e.node, e.incarnation), now)
                case State.SUSPECT | State.DEAD:
                    self.on_suspect(m.Suspect(e.node, e.incarnation, pp.src), now)

    # -- actions --

    def _maybe_probe(self, now: float, out: list[Outgoing]) -> None:
        period = self.awareness.scale(self.cfg.probe_interval_s)
        self._probe_at = now + period
        target = self._next_probe_target()
        if target is None:
            self._probe = None
            return
        self._seq += 1
        self._probe = _Probe(target.name, self._seq, now + self.awareness.scale(self.cfg.probe_timeout_s))
        seq, name = self._seq, target.name
        first = (m.Suspect(name, target.incarnation, self.name),) if target.state == State.SUSPECT else ()
        out.append(Outgoing(target.addr, self._with_piggyback(lambda p: m.Ping(seq, self.name, name, p), first)))

    def _next_probe_target(self) -> _Member | None:
        for _ in range(2 * len(self._live) + 2):  # bounded: a fresh order holds only live names
            if self._order_i >= len(self._order):
                self._order = list(self._live.items)
                self.rng.shuffle(self._order)
                self._order_i = 0
                if not self._order:
                    return None
            mb = self._members.get(self._order[self._order_i])
            self._order_i += 1
            if mb is not None and mb.state in (State.ALIVE, State.SUSPECT):
                return mb
        return None

    def _maybe_probe_indirect(self, now: float, out: list[Outgoing]) -> None:
        p = self._probe
        if p is None or p.acked or p.indirect_sent or now < p.timeout_at:
            return
        p.indirect_sent = True
        target = self._members.get(p.target)
        if target is None:
            return
        relays = [n for n in self._live.items if n != p.target]
        for n in self.rng.sample(relays, min(self.cfg.indirect_checks, len(relays))):
            out.append(Outgoing(self._members[n].addr, m.PingReq(p.seq, self.name, p.target, target.addr)))
            p.nacks_expected += 1

    def _maybe_conclude_probe(self, now: float) -> None:
        p, self._probe = self._probe, None
        if p is None or p.acked:
            return
        # Lifeguard: with relays we blame ourselves only for the nacks that never came (a relay we cannot hear);
        # without relays any failed probe counts against us
        missed = p.nacks_expected - len(p.nacks)
        self.awareness.apply_delta(missed if p.nacks_expected > 0 else 1)
        mb = self._members.get(p.target)
        if mb is not None and mb.state in (State.ALIVE, State.SUSPECT):
            self.on_suspect(m.Suspect(mb.name, mb.incarnation, self.name), now)

    def _probe_succeeded(self, p: _Probe) -> None:
        if not p.acked:
            p.acked = True
            self.awareness.apply_delta(-1)

    def _on_ack(self, seq: int, src: str, now: float, out: list[Outgoing]) -> None:
        p = self._probe
        if p is not None and seq == p.seq and src == p.target:
            self._probe_succeeded(p)
            return
        r = self._relays.pop(seq, None)
        if r is not None and src == r.target:
            out.append(Outgoing(r.requester_addr, m.IndirectAck(r.requester_seq, self.name, r.target)))

    def _on_ping_req(self, req: m.PingReq, sender: str, now: float, out: list[Outgoing]) -> None:
        if self.left or len(self._relays) >= RELAYS_MAX or req.target == self.name:
            return
        self._seq += 1
        seq = self._seq
        self._relays[seq] = _Relay(sender, req.seq, req.target, now + self.cfg.probe_timeout_s)
        out.append(Outgoing(req.target_addr, self._with_piggyback(lambda p: m.Ping(seq, self.name, req.target, p))))

    def _maybe_nack(self, now: float, out: list[Outgoing]) -> None:
        for seq in [s for s, r in self._relays.items() if r.nack_at <= now]:
            r = self._relays.pop(seq)
            out.append(Outgoing(r.requester_addr, m.Nack(r.requester_seq, self.name, r.target)))

    def _maybe_expire_suspicions(self, now: float) -> None:
        for name in [n for n, s in self._suspicions.items() if s.deadline() <= now]:
            mb = self._members[name]
            self.on_dead(m.Dead(name, mb.incarnation, self.name), now)

    def _maybe_gossip(self, now: float, out: list[Outgoing]) -> None:
        self._gossip_at = now + self.cfg.gossip_interval_s
        targets = [*self._live.items, *self._recently_dead(now)]
        if not len(self.queue) or not targets:
            return
        for n in self.rng.sample(targets, min(self.cfg.gossip_nodes, len(targets))):
            msg = self._with_piggyback(lambda p: m.Gossip(self.name, p))
            assert isinstance(msg, m.Gossip)
            if not msg.piggyback:
                break
            out.append(Outgoing(self._members[n].addr, msg))

    def _maybe_push_pull(self, now: float, out: list[Outgoing]) -> None:
        self._push_pull_at = now + self.cfg.push_pull_period_s(len(self._live) + 1)
        pp = self._push_pull(reply=False)
        # one live peer for anti-entropy, and one dead one: the only way a healed partition meets again
        for names in (self._live.items, self._gone.items):
            if names:
                out.append(Outgoing(self._members[self.rng.choice(names)].addr, pp))
        if not self._live and self._seeds:  # alone (a join that never got through): try a seed again
            out.append(Outgoing(self.rng.choice(self._seeds), pp))

    def _maybe_reconnect(self, now: float, out: list[Outgoing]) -> None:
        self._reconnect_at = now + self.cfg.probe_interval_s
        recent = self._recently_dead(now)
        if recent:
            self._reconnect_i += 1
            name = sorted(recent)[self._reconnect_i % len(recent)]
            out.append(Outgoing(self._members[name].addr, self._push_pull(reply=False)))

    def _recently_dead(self, now: float) -> list[str]:
        """Members declared dead (not left) less than gossip_to_dead_s ago: maybe only paused or cut off."""
        keep = self.cfg.gossip_to_dead_s
        return [n for n in self._gone.items if self._members[n].state == State.DEAD and now - self._members[n].since <= keep]

    def _maybe_reap(self, now: float) -> None:
        for name in [n for n in self._gone.items if self._members[n].since + self.cfg.dead_keep_s <= now]:
            self._gone.discard(name)
            del self._members[name]

    def _push_pull(self, reply: bool) -> m.PushPull:
        states = [m.MemberState(n, mb.incarnation, mb.addr, int(mb.state)) for n, mb in self._members.items()]
        return m.PushPull(self.name, self.addr, states, reply)

    def _accusation(self, name: str) -> tuple[m.Update, ...]:
        """Our DEAD or LEFT view of `name` as an update (empty if we hold it alive or suspect, or not at all)."""
        mb = self._members.get(name)
        if mb is None or name == self.name:
            return ()
        if mb.state == State.LEFT:
            return (m.Left(name, mb.incarnation),)
        if mb.state == State.DEAD:
            return (m.Dead(name, mb.incarnation, self.name),)
        return ()

    def _with_piggyback(
        self, make: Callable[[list[m.Update]], m.Message], first: tuple[m.Update, ...] = ()
    ) -> m.Message:
        """The message with `first` and as many queued updates as fit in one sealed packet."""
        budget = m.PAYLOAD_BYTES_MAX - len(m.encode(make(list(first)))) - _ARRAY_HEADER_SLACK
        limit = self.cfg.retransmit_limit(len(self._live) + 1)
        return make([*first, *self.queue.get(budget, limit)])


def _believable(u: m.Update) -> bool:
    """The bounds rule of the header: nothing above INCARNATION_MAX, no accusation at it."""
    if isinstance(u, m.Alive):
        return u.incarnation <= m.INCARNATION_MAX
    return u.incarnation < m.INCARNATION_MAX
