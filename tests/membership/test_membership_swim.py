"""Unit tests of the SWIM core (node/membership/swim.py): messages in, messages out, time passed in. The merge
rule is checked against a dumb model: the view is the maximum (incarnation, state) of everything heard."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from node.membership import messages as m
from node.membership.config import MembershipConfig
from node.membership.swim import Membership, Outgoing, State

CFG = MembershipConfig()


def core(name: str = "a", peers: tuple[str, ...] = ("b", "c", "d", "e"), now: float = 0.0) -> Membership:
    c = Membership(name, f"{name}:1", CFG, random.Random(1), now)
    c.on_message(m.Gossip("x", [m.Alive(p, 0, f"{p}:1") for p in peers]), "x:1", now)
    c.drain_events()
    return c


def sent(out: list[Outgoing], kind: type) -> list[Outgoing]:
    return [o for o in out if isinstance(o.msg, kind)]


def run_to(c: Membership, until: float, ack: bool = False) -> list[Outgoing]:
    """Tick at every deadline up to `until`, as the shell would (with `ack`, every peer answers our pings at
    once); everything sent."""
    out: list[Outgoing] = []
    while (d := c.next_deadline()) <= until:
        sends = c.tick(d)
        out += sends
        for o in sends:
            if ack and isinstance(o.msg, m.Ping):
                c.on_message(m.Ack(o.msg.seq, o.msg.target, []), o.addr, d)
    return out


def first_probe(c: Membership) -> tuple[float, Outgoing]:
    while True:
        d = c.next_deadline()
        pings = sent(c.tick(d), m.Ping)
        if pings:
            return d, pings[0]


def test_a_ping_is_acked_with_its_seq_and_a_ping_for_another_name_is_ignored() -> None:
    c = core()
    out = c.on_message(m.Ping(42, "b", "a", []), "b:1", 1.0)
    assert len(out) == 1 and out[0].addr == "b:1"
    assert isinstance(out[0].msg, m.Ack) and out[0].msg.seq == 42 and out[0].msg.src == "a"
    assert c.on_message(m.Ping(43, "b", "zz", []), "b:1", 1.0) == []


def test_an_acked_probe_suspects_no_one_and_lowers_awareness() -> None:
    c = core()
    c.awareness.apply_delta(2)
    t, ping = first_probe(c)
    assert isinstance(ping.msg, m.Ping)
    c.on_message(m.Ack(ping.msg.seq, ping.msg.target, []), ping.addr, t + 0.01)
    run_to(c, t + 3 * CFG.probe_interval_s)
    assert all(v.state == State.ALIVE for v in c.members().values())
    assert c.awareness.score < 2


def test_an_unanswered_probe_goes_indirect_then_suspects_and_blames_itself_for_missing_nacks() -> None:
    c = core()
    t, ping = first_probe(c)
    assert isinstance(ping.msg, m.Ping)
    target = ping.msg.target
    assert c.next_deadline() == t + CFG.probe_timeout_s
    reqs = sent(c.tick(t + CFG.probe_timeout_s), m.PingReq)
    assert len(reqs) == CFG.indirect_checks and all(isinstance(r.msg, m.PingReq) for r in reqs)
    assert {r.msg.target for r in reqs if isinstance(r.msg, m.PingReq)} == {target}
    assert target not in {r.addr.split(":")[0] for r in reqs}
    c.tick(t + CFG.probe_interval_s)
    assert c.members()[target].state == State.SUSPECT
    assert c.awareness.score == CFG.indirect_checks  # no relay nacked: probably our own network


def test_nacks_from_every_relay_spare_our_awareness() -> None:
    c = core()
    t, ping = first_probe(c)
    assert isinstance(ping.msg, m.Ping)
    for r in sent(c.tick(t + CFG.probe_timeout_s), m.PingReq):
        c.on_message(m.Nack(ping.msg.seq, r.addr.split(":")[0], ping.msg.target), r.addr, t + 0.7)
    c.tick(t + CFG.probe_interval_s)
    assert c.awareness.score == 0
    assert c.members()[ping.msg.target].state == State.SUSPECT


def test_an_indirect_ack_saves_the_target() -> None:
    c = core()
    t, ping = first_probe(c)
    assert isinstance(ping.msg, m.Ping)
    c.tick(t + CFG.probe_timeout_s)
    c.on_message(m.IndirectAck(ping.msg.seq, "c", ping.msg.target), "c:1", t + 0.8)
    c.tick(t + CFG.probe_interval_s)
    assert c.members()[ping.msg.target].state == State.ALIVE


def test_a_relay_pings_for_the_asker_and_answers_ack_or_nack() -> None:
    c = core()
    out = c.on_message(m.PingReq(9, "b", "d", "d:1"), "b:1", 5.0)
    assert len(out) == 1 and out[0].addr == "d:1" and isinstance(out[0].msg, m.Ping)
    back = c.on_message(m.Ack(out[0].msg.seq, "d", []), "d:1", 5.1)
    assert back == [Outgoing("b:1", m.IndirectAck(9, "a", "d"))]
    out = c.on_message(m.PingReq(10, "b", "e", "e:1"), "b:1", 6.0)
    assert c.next_deadline() <= 6.0 + CFG.probe_timeout_s
    nacks = sent(c.tick(6.0 + CFG.probe_timeout_s), m.Nack)
    assert nacks == [Outgoing("b:1", m.Nack(10, "a", "e"))]


def test_a_suspicion_expires_into_death_at_its_deadline_not_before() -> None:
    c = core()
    c.on_message(m.Gossip("b", [m.Suspect("e", 0, "b")]), "b:1", 10.0)
    n = len(c.members())
    deadline = 10.0 + CFG.suspicion_max_s(n)
    assert c.members()["e"].state == State.SUSPECT
    run_to(c, deadline - 0.001, ack=True)
    assert c.members()["e"].state == State.SUSPECT  # an ack does not clear a suspicion: only a refutation does
    run_to(c, deadline, ack=True)
    assert c.members()["e"] == (State.DEAD, 0, "e:1")


def test_confirmations_bring_death_forward() -> None:
    c = core(peers=("b", "c", "d", "e", "f", "g"))
    c.on_message(m.Gossip("b", [m.Suspect("e", 0, "b")]), "b:1", 10.0)
    c.on_message(m.Gossip("c", [m.Suspect("e", 0, "c"), m.Suspect("e", 0, "d")]), "c:1", 11.0)
    run_to(c, 10.0 + CFG.suspicion_min_s(7))
    assert c.members()["e"].state == State.DEAD


def test_a_suspected_node_refutes_with_a_higher_incarnation_and_raises_its_awareness() -> None:
    c = core()
    c.on_message(m.Gossip("b", [m.Suspect("a", 0, "b")]), "b:1", 1.0)
    assert c.incarnation == 1 and c.awareness.score == 1
    assert m.Alive("a", 1, "a:1") in c.queue.pending()
    c.on_message(m.Gossip("b", [m.Dead("a", 5, "b")]), "b:1", 2.0)  # a rumour from our last life
    assert c.incarnation == 6 and c.members()["a"] == (State.ALIVE, 6, "a:1")
    c.on_message(m.Gossip("b", [m.Suspect("a", 3, "b")]), "b:1", 3.0)  # stale: ignored
    assert c.incarnation == 6


def test_leave_gossips_left_and_stops_probing() -> None:
    c = core()
    out = c.leave(1.0)
    assert c.incarnation == 1 and c.members()["a"].state == State.LEFT
    assert any(isinstance(o.msg, m.Gossip) and m.Left("a", 1) in o.msg.piggyback for o in out)
    assert not sent(run_to(c, 60.0), m.Ping)
    c.on_message(m.Gossip("b", [m.Dead("a", 1, "b")]), "b:1", 61.0)
    assert c.incarnation == 1  # no refuting once gone


def test_push_pull_answers_with_our_state_and_takes_remote_death_as_suspicion() -> None:
    c = core()
    req = m.PushPull("b", "b:1", [m.MemberState("b", 0, "b:1", 0), m.MemberState("c", 0, "c:1", int(State.DEAD)),
                                   m.MemberState("z", 3, "z:1", 0)], False)
    out = c.on_message(req, "b:1", 1.0)
    assert len(out) == 1 and out[0].addr == "b:1" and isinstance(out[0].msg, m.PushPull) and out[0].msg.reply
    assert c.members()["c"].state == State.SUSPECT and c.members()["z"] == (State.ALIVE, 3, "z:1")
    assert {e.node for e in out[0].msg.members} == {"a", "b", "c", "d", "e", "z"}
    assert c.on_message(msgspec_replace_reply(req), "b:1", 1.0) == []  # a reply is not answered


def msgspec_replace_reply(pp: m.PushPull) -> m.PushPull:
    return m.PushPull(pp.src, pp.src_addr, pp.members, True)


def test_join_asks_each_seed_for_its_state() -> None:
    c = Membership("a", "a:1", CFG, random.Random(0), 0.0)
    out = c.join(["s1:1", "a:1", "s2:1"], 0.0)
    assert [o.addr for o in out] == ["s1:1", "s2:1"] and all(isinstance(o.msg, m.PushPull) for o in out)


def test_piggyback_never_overflows_a_packet() -> None:
    c = core(peers=tuple(f"peer-with-a-long-name-{i:03d}-" + "x" * 30 for i in range(200)))
    for i in range(200):
        c.on_message(m.Gossip("b", [m.Suspect(f"peer-with-a-long-name-{i:03d}-" + "x" * 30, 0, "b")]), "b:1", 1.0)
    out = c.tick(c.next_deadline()) + c.on_message(m.Ping(1, "b", "a", []), "b:1", 1.0)
    assert out
    for o in out:
        data = m.seal(b"k", m.encode(o.msg))  # raises past PACKET_BYTES_MAX
        assert len(data) <= m.PACKET_BYTES_MAX
        if isinstance(o.msg, m.Ack | m.Gossip | m.Ping):
            assert len(o.msg.piggyback) > 5  # and the budget is used


def test_next_deadline_is_in_the_future_after_every_tick() -> None:
    c = core()
    t = 0.0
    for _ in range(200):
        t = c.next_deadline()
        c.tick(t)
        assert c.next_deadline() > t


RANK = {m.Alive: State.ALIVE, m.Suspect: State.SUSPECT, m.Dead: State.DEAD, m.Left: State.LEFT}
updates = st.one_of(
    st.builds(m.Alive, st.just("x"), st.integers(0, 4), st.just("x:1")),
    st.builds(m.Suspect, st.just("x"), st.integers(0, 4), st.sampled_from(["b", "c", "d"])),
    st.builds(m.Dead, st.just("x"), st.integers(0, 4), st.sampled_from(["b", "c"])),
    st.builds(m.Left, st.just("x"), st.integers(0, 4)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(updates, max_size=25))
def test_the_view_is_the_maximum_of_everything_heard(seq: list[m.Update]) -> None:
    c = core(peers=("b", "c", "d"))
    model: tuple[int, State] | None = None  # the dumb model: unknown until an Alive, then the max
    for i, u in enumerate(seq):
        c.on_message(m.Gossip("b", [u]), "b:1", float(i))
        heard = (u.incarnation, RANK[type(u)])
        if model is None:
            model = heard if isinstance(u, m.Alive) else None
        else:
            model = max(model, heard)
        v = c.member("x")
        assert (None if v is None else (v.incarnation, v.state)) == model


# -- coming back after a cut longer than detection (swim.py: tell the suspect, resync, probe the rumour, reconnect)


def test_a_ping_to_a_suspect_carries_the_suspicion_and_the_ack_carries_the_refutation() -> None:
    a, b = core("a", ("b",)), core("b", ("a",))
    a.on_message(m.Gossip("x", [m.Suspect("b", 0, "x")]), "x:1", 1.0)  # hearsay: b never heard it
    _t, ping = first_probe(a)
    assert isinstance(ping.msg, m.Ping) and ping.msg.target == "b"
    assert ping.msg.piggyback[0] == m.Suspect("b", 0, "a")
    (ack,) = b.on_message(ping.msg, "a:1", 2.0)
    assert b.incarnation == 1 and m.Alive("b", 1, "b:1") in ack.msg.piggyback
    a.on_message(ack.msg, "b:1", 2.0)
    assert a.member("b").state == State.ALIVE and a.member("b").incarnation == 1


def test_a_stale_accusation_is_answered_with_the_current_alive() -> None:
    b = core("b", ("a",))
    b.on_message(m.Gossip("x", [m.Suspect("b", 0, "x")]), "x:1", 1.0)
    run_to(b, 30.0, ack=True)  # the refutation's own gossip is spent
    assert b.incarnation == 1 and not len(b.queue)
    (ack,) = b.on_message(m.Ping(7, "a", "b", [m.Suspect("b", 0, "a")]), "a:1", 31.0)  # a still holds b suspect at 0
    assert ack.msg.piggyback[:1] == [m.Alive("b", 1, "b:1")]


def test_refuting_its_own_death_resyncs_with_the_teller_at_once_and_at_most_once_a_period() -> None:
    b = core("b", ("a", "c"))
    out = b.on_message(m.Ack(1, "a", [m.Dead("b", 0, "a")]), "a:1", 5.0)
    assert [o.addr for o in sent(out, m.PushPull)] == ["a:1"] and not out[0].msg.reply
    out = b.on_message(m.Ack(2, "c", [m.Dead("b", 1, "c")]), "c:1", 5.5)
    assert not sent(out, m.PushPull)  # within probe_interval_s of the last one
    out = b.on_message(m.Ack(3, "c", [m.Suspect("b", 2, "c")]), "c:1", 9.0)
    assert b.incarnation == 3 and not sent(out, m.PushPull)  # a suspicion is no eviction: no resync


def test_a_suspicion_heard_second_hand_is_probed_next() -> None:
    c = core("a", ("b", "c", "d", "e"))
    _t, p1 = first_probe(c)
    c.on_message(m.Ack(p1.msg.seq, p1.msg.target, []), p1.addr, _t)
    other = next(n for n in "bcde" if n != p1.msg.target)
    c.on_message(m.Gossip("x", [m.Suspect(other, 0, "x")]), "x:1", _t + 0.1)
    _t2, p2 = first_probe(c)
    assert p2.msg.target == other


def test_members_dead_for_less_than_gossip_to_dead_get_a_reconnect_each_period() -> None:
    c = core("a", ("b", "c"))
    c.on_message(m.Gossip("x", [m.Dead("b", 0, "x")]), "x:1", 1.0)
    out = run_to(c, 1.0 + CFG.gossip_to_dead_s, ack=True)
    to_b = [o for o in sent(out, m.PushPull) if o.addr == "b:1"]
    assert len(to_b) >= CFG.gossip_to_dead_s / CFG.probe_interval_s - 2  # about one a period
    later = run_to(c, 1.0 + 3 * CFG.gossip_to_dead_s, ack=True)
    pp_b = [o for o in sent(later, m.PushPull) if o.addr == "b:1"]
    assert len(pp_b) <= 3  # past the window: the ordinary push-pull with one dead member only
