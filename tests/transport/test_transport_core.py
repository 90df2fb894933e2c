"""Unit tests of the transport's pure cores: message codec and framing, the handshake state machines, the
reconnect backoff and the mapping of remote error codes. No sockets, no clock."""

from __future__ import annotations

import hashlib
import hmac

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import MurmurError, NotFound, NotOwner, Unavailable
from node.transport.backoff import Backoff
from node.transport.errors import FrameTooLarge, HandshakeFailed, ProtocolError, RpcError, remote_error
from node.transport.handshake import ClientHandshake, ServerHandshake, State, mac
from node.transport.messages import (
    FRAME_BYTES_MAX,
    Challenge,
    FrameDecoder,
    Hello,
    Message,
    Proof,
    Request,
    Response,
    Welcome,
    decode,
    encode,
    encode_frame,
)

NC = b"c" * 16
NS = b"s" * 16


def _raw(obj: object) -> bytes:
    return msgspec.msgpack.encode(obj)

# ---------------------------------------------------------------- codec and frames


def test_messages_round_trip_with_their_tags() -> None:
    msgs: list[Message] = [
        Hello("n1", NC),
        Challenge("n2", NS),
        Proof(b"m" * 32),
        Welcome(b"w" * 32),
        Request(7, "postings", b"\x00body", 1500),
        Response(7, b"answer"),
        Response(8, None, "not_found", "no such tweet", "id"),
    ]
    for m in msgs:
        assert decode(encode(m)) == m
    assert encode(Request(1, "m", b"", 5))[1] == 5  # array-like: [tag, ...]; tags are protocol


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"garbage", _raw([99, 1, 2]), _raw([5, -1, "m", b"", 1]), _raw([1, "n", b"short"])],
)
def test_garbage_and_invalid_messages_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(payload)


def test_an_oversized_length_prefix_is_refused_before_its_bytes_arrive() -> None:
    d = FrameDecoder(frame_bytes_max=1000)
    d.feed((1001).to_bytes(4, "big") + b"x" * 10)
    with pytest.raises(FrameTooLarge):
        d.next_frame()
    d = FrameDecoder()
    d.feed((FRAME_BYTES_MAX + 1).to_bytes(4, "big"))
    with pytest.raises(FrameTooLarge):
        d.next_frame()


def test_encode_frame_refuses_a_message_over_the_limit() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame(Request(1, "m", b"x" * FRAME_BYTES_MAX, 10))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(max_size=300), max_size=20),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=10),
)
def test_frames_survive_any_split_of_the_stream(bodies: list[bytes], cuts: list[int]) -> None:
    msgs = [Request(i, "m", b, 10) for i, b in enumerate(bodies)]
    stream = b"".join(bytes(encode_frame(m)) for m in msgs)
    d = FrameDecoder()
    got = []
    pos, k = 0, 0
    while pos < len(stream):
        step = cuts[k % len(cuts)]
        d.feed(stream[pos : pos + step])
        pos, k = pos + step, k + 1
        while (p := d.next_frame()) is not None:
            got.append(decode(p))
    assert got == msgs
    assert d.buffered_bytes() == 0


# ---------------------------------------------------------------- handshake


def _pair(cs: str = "secret", ss: str = "secret") -> tuple[ClientHandshake, ServerHandshake]:
    return ClientHandshake(cs, "n1", NC), ServerHandshake(ss, "n2", NS)


def test_handshake_with_the_same_secret_establishes_both_sides() -> None:
    c, s = _pair()
    challenge = s.on_message(c.start())
    assert challenge == Challenge("n2", NS) and s.state is State.SENT_CHALLENGE
    proof = c.on_message(challenge)
    assert isinstance(proof, Proof) and c.state is State.SENT_PROOF
    welcome = s.on_message(proof)
    assert isinstance(welcome, Welcome) and s.state is State.ESTABLISHED and s.peer == "n1"
    assert c.on_message(welcome) is None and c.state is State.ESTABLISHED and c.peer == "n2"


def test_the_proof_is_an_hmac_sha256_over_both_nonces_and_names() -> None:
    c, s = _pair()
    proof = c.on_message(s.on_message(c.start()))
    assert proof is not None
    assert proof.mac == mac(b"secret", "client", NC, NS, "n1", "n2")
    assert len(proof.mac) == hashlib.sha256().digest_size
    assert not hmac.compare_digest(proof.mac, mac(b"secret", "server", NC, NS, "n1", "n2"))


def test_a_client_with_a_wrong_secret_is_refused_and_learns_no_server_mac() -> None:
    c, s = _pair(cs="wrong")
    challenge = s.on_message(c.start())
    assert isinstance(challenge, Challenge)  # name and nonce only: nothing keyed by the secret
    proof = c.on_message(challenge)
    assert proof is not None
    with pytest.raises(HandshakeFailed):
        s.on_message(proof)
    assert s.state is State.FAILED
    with pytest.raises(HandshakeFailed):  # FAILED accepts nothing, not even a correct proof afterwards
        s.on_message(Proof(mac(b"secret", "client", NC, NS, "n1", "n2")))


def test_a_server_with_a_wrong_welcome_is_refused_by_the_client() -> None:
    c, s = _pair()
    c.on_message(s.on_message(c.start()))
    with pytest.raises(HandshakeFailed):
        c.on_message(Welcome(mac(b"other", "server", NC, NS, "n1", "n2")))
    assert c.state is State.FAILED


def test_a_reflected_client_proof_is_not_a_server_welcome() -> None:
    c, s = _pair()
    proof = c.on_message(s.on_message(c.start()))
    assert proof is not None
    with pytest.raises(HandshakeFailed):
        c.on_message(Welcome(proof.mac))


def test_a_proof_replayed_on_a_connection_with_a_fresh_nonce_is_refused() -> None:
    c, s = _pair()
    proof = c.on_message(s.on_message(c.start()))
    assert proof is not None
    s2 = ServerHandshake("secret", "n2", b"t" * 16)
    s2.on_message(Hello("n1", NC))
    with pytest.raises(HandshakeFailed):
        s2.on_message(proof)


@pytest.mark.parametrize(
    "script",
    [
        [Request(1, "m", b"", 10)],  # no call before the handshake
        [Proof(b"m" * 32)],  # proof before hello
        [Hello("n1", NC), Hello("n1", NC)],
        [Hello("n1", NC, version=1)],  # the MAC-less protocol of before
        [Hello("n1", NC, version=3)],
    ],
)
def test_the_server_refuses_messages_out_of_order(script: list[object]) -> None:
    s = ServerHandshake("secret", "n2", NS)
    with pytest.raises(HandshakeFailed):
        for m in script:
            s.on_message(m)  # type: ignore[arg-type]
    assert s.state is State.FAILED


def test_the_client_refuses_a_welcome_before_the_challenge() -> None:
    c = ClientHandshake("secret", "n1", NC)
    c.start()
    with pytest.raises(HandshakeFailed):
        c.on_message(Welcome(b"w" * 32))


# ---------------------------------------------------------------- backoff


def test_backoff_doubles_from_min_to_max_and_resets_on_success() -> None:
    b = Backoff(0.05, 2.0)
    assert b.may_attempt(0.0)
    delays = [b.on_failure(10.0, 0.0) for _ in range(8)]
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert not b.may_attempt(11.99) and b.may_attempt(12.0)
    b.on_success()
    assert b.may_attempt(0.0) and b.on_failure(0.0, 0.0) == 0.05


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0, max_value=0.999))
def test_backoff_delay_stays_within_its_bounds(failures: int, jitter: float) -> None:
    b = Backoff(0.05, 2.0)
    d = b.delay_s(failures, jitter)
    assert 0.05 <= d <= 2.0
    assert d >= b.delay_s(max(1, failures - 1), 0.0)


# ---------------------------------------------------------------- remote errors


def test_known_remote_codes_raise_the_matching_murmur_error() -> None:
    e = remote_error("not_found", "no tweet 5", "id")
    assert isinstance(e, RpcError) and isinstance(e, NotFound)
    assert (e.code, e.status, e.message, e.field) == ("not_found", 404, "no tweet 5", "id")
    assert isinstance(remote_error("not_owner", "x"), NotOwner)
    u = remote_error("unavailable", "x")
    assert isinstance(u, Unavailable) and u.status == 503
    odd = remote_error("something_new", "x")
    assert type(odd) is RpcError and odd.code == "something_new" and isinstance(odd, MurmurError)
