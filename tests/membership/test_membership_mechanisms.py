"""Unit tests of the membership mechanisms one by one: codec and seal, config formulas, Lifeguard's suspicion
timer and awareness, and the bounded broadcast queue. Pure: time is an argument, nothing sleeps."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import ConfigError
from node.membership import messages as m
from node.membership.awareness import Awareness
from node.membership.broadcast import BroadcastQueue
from node.membership.config import MembershipConfig
from node.membership.suspicion import Suspicion

SECRET = b"s3cret"
SAMPLES: list[m.Message] = [
    m.Ping(1, "a", "b", [m.Alive("c", 2, "10.0.0.3:7101"), m.Suspect("d", 1, "a"), m.Dead("e", 0, "b"), m.Left("f", 4)]),
    m.Ack(1, "b", []),
    m.PingReq(7, "a", "b", "10.0.0.2:7101"),
    m.IndirectAck(7, "c", "b"),
    m.Nack(7, "c", "b"),
    m.Gossip("a", [m.Alive("a", 0, "x")]),
    m.PushPull("a", "x", [m.MemberState("a", 0, "x", 0)], False),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda x: type(x).__name__)
def test_every_message_round_trips_through_the_one_codec(msg: m.Message) -> None:
    assert m.decode(m.encode(msg)) == msg


def test_tags_are_unique() -> None:
    tags = [t.__struct_config__.tag for t in (m.Alive, m.Suspect, m.Dead, m.Left, *(type(x) for x in SAMPLES))]
    assert len(tags) == len(set(tags))


def test_the_decoder_enforces_the_bounds() -> None:
    with pytest.raises(msgspec.ValidationError):
        m.decode(m.encode(m.Ack(1, "x" * (m.NAME_CHARS_MAX + 1), [])))
    with pytest.raises(msgspec.ValidationError):
        m.decode(m.encode(m.Gossip("a", [m.Left("b", 1)] * (m.PIGGYBACK_MAX + 1))))
    with pytest.raises(msgspec.ValidationError):
        m.decode(m.encode(m.Ack(-1, "a", [])))


def test_seal_opens_only_intact_packets_with_the_right_secret() -> None:
    payload = m.encode(SAMPLES[0])
    sealed = m.seal(SECRET, payload)
    assert len(sealed) == len(payload) + m.SEAL_OVERHEAD_BYTES
    assert m.open_sealed(SECRET, sealed) == payload
    assert m.open_sealed(b"other", sealed) is None
    for i in (0, 1, 20, len(sealed) - 1):
        tampered = bytearray(sealed)
        tampered[i] ^= 1
        assert m.open_sealed(SECRET, bytes(tampered)) is None
    assert m.open_sealed(SECRET, sealed[:10]) is None
    assert m.open_sealed(SECRET, b"") is None


def test_seal_bounds_the_packet_size() -> None:
    assert len(m.seal(SECRET, bytes(m.PAYLOAD_BYTES_MAX))) == m.PACKET_BYTES_MAX
    with pytest.raises(ValueError):
        m.seal(SECRET, bytes(m.PAYLOAD_BYTES_MAX + 1))
    assert m.open_sealed(SECRET, bytes([m.SEAL_VERSION]) + bytes(m.PACKET_BYTES_MAX)) is None


def test_config_defaults_are_memberlists_and_validate() -> None:
    c = MembershipConfig().validate()
    assert (c.probe_interval_s, c.probe_timeout_s, c.indirect_checks, c.suspicion_mult) == (1.0, 0.5, 3, 4)


@pytest.mark.parametrize(
    ("field", "value"),
    [("probe_interval_s", 0.0), ("probe_timeout_s", 2.0), ("indirect_checks", -1), ("awareness_max_multiplier", 0)],
)
def test_a_bad_config_value_names_its_key(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"membership.{field}"):
        msgspec.structs.replace(MembershipConfig(), **{field: value}).validate()


def test_config_formulas() -> None:
    c = MembershipConfig()
    assert c.suspicion_min_s(1) == c.suspicion_min_s(10) == 4.0  # max(1, log10 n) * 4 * 1 s
    assert c.suspicion_min_s(100) == pytest.approx(8.0)
    assert c.suspicion_max_s(100) == pytest.approx(48.0)
    assert [c.retransmit_limit(n) for n in (1, 9, 10, 99, 100)] == [4, 4, 8, 8, 12]  # 4 * ceil(log10(n + 1))
    assert (c.suspicion_k(3), c.suspicion_k(4), c.suspicion_k(50)) == (0, 2, 2)  # K = 4 - 2, 0 when n - 2 < K
    assert c.push_pull_period_s(32) == 30.0 and c.push_pull_period_s(64) == 60.0 and c.push_pull_period_s(500) == 150.0


def test_suspicion_starts_at_max_and_falls_to_min_with_k_independent_confirmations() -> None:
    s = Suspicion("a", k=3, min_s=2.0, max_s=30.0, start=100.0)
    assert s.deadline() == 130.0
    assert not s.confirm("a")  # the first suspecter is not its own confirmation
    assert s.confirm("b") and not s.confirm("b")
    assert s.timeout_s() == pytest.approx(30 - 28 * math.log(2) / math.log(4))
    assert s.confirm("c") and s.confirm("d")
    assert s.deadline() == 102.0
    assert not s.confirm("e")  # bounded at k


def test_suspicion_without_confirmations_wanted_is_min() -> None:
    assert Suspicion("a", k=0, min_s=4.0, max_s=24.0, start=0.0).deadline() == 4.0


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8), st.lists(st.sampled_from("abcdefghij"), max_size=20))
def test_suspicion_timeout_only_falls_and_stays_within_min_max(k: int, confirmers: list[str]) -> None:
    s = Suspicion("a", k=k, min_s=3.0, max_s=18.0, start=0.0)
    last = s.timeout_s()
    assert last == 18.0
    for c in confirmers:
        s.confirm(c)
        assert 3.0 <= s.timeout_s() <= last
        last = s.timeout_s()
    assert (s.timeout_s() == 3.0) == (s.confirmations == k)


def test_awareness_scales_and_clamps() -> None:
    a = Awareness(max_multiplier=8)
    a.apply_delta(-1)
    assert a.score == 0 and a.scale(1.0) == 1.0
    a.apply_delta(3)
    assert a.scale(0.5) == 2.0
    a.apply_delta(100)
    assert a.score == 7 and a.scale(1.0) == 8.0


def test_broadcast_queue_replaces_per_node_and_sends_least_sent_first() -> None:
    q = BroadcastQueue(max_items=10)
    q.queue(m.Alive("a", 1, "x"))
    q.queue(m.Suspect("a", 1, "b"))  # newer news of a replaces the older
    assert q.pending() == [m.Suspect("a", 1, "b")]
    assert q.get(1000, limit=3) == [m.Suspect("a", 1, "b")]
    q.queue(m.Alive("b", 0, "y"))
    assert q.get(1000, limit=3) == [m.Alive("b", 0, "y"), m.Suspect("a", 1, "b")]  # never-sent first
    assert q.get(1000, limit=3) == [m.Alive("b", 0, "y"), m.Suspect("a", 1, "b")]
    assert q.get(1000, limit=3) == [m.Alive("b", 0, "y")]  # a reached its 3 sends and is gone
    assert q.get(1000, limit=3) == [] and len(q) == 0


def test_broadcast_queue_is_bounded() -> None:
    q = BroadcastQueue(max_items=3)
    for i in range(10):
        q.queue(m.Alive(f"n{i}", 0, "x"))
    assert len(q) == 3


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5)), max_size=40), st.integers(0, 400))
def test_broadcast_get_fits_the_budget(items: list[tuple[int, int]], budget: int) -> None:
    q = BroadcastQueue(max_items=100)
    for node, inc in items:
        q.queue(m.Alive(f"node-{node}", inc, "10.0.0.1:7101"))
    got = q.get(budget, limit=5)
    assert sum(len(m.encode(u)) for u in got) <= budget
    assert len({u.node for u in got}) == len(got)
