"""Issue 12: the RPC decoders fuzzed with Hypothesis. Whatever bytes arrive, the frame decoder, the message codec,
the session MAC and the replication and gossip decoders raise only their own errors (which close a connection or
answer 400), never anything else; and a live server fed random streams before the handshake never crashes.
Bounded for `make test` (MURMUR_FUZZ_EXAMPLES scales it; scripts/fuzz_http.py runs it longer)."""

from __future__ import annotations

import os
from functools import partial

import msgspec
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_transport_rpc import SECRET, Echo, _server

from node.membership import messages as gm
from node.replication import messages as rm
from node.transport.client import open_peer_pool
from node.transport.errors import FrameTooLarge, ProtocolError
from node.transport.messages import (
    HANDSHAKE_FRAME_BYTES_MAX,
    LENGTH_BYTES,
    FrameDecoder,
    Hello,
    Request,
    decode,
    encode,
)
from node.transport.session import Session

SCALE = max(1, int(os.environ.get("MURMUR_FUZZ_EXAMPLES", "60")) // 60)
FAST = settings(max_examples=400 * SCALE, deadline=None, suppress_health_check=list(HealthCheck))
VALID = [encode(m) for m in (Hello("n1", b"x" * 16), Request(1, "WindowReq", rm.encode(rm.TopologyReq()), 10))]


def mutated() -> st.SearchStrategy[bytes]:
    """Random bytes, and valid messages with bytes flipped, cut or appended (closer to the decoder's edges)."""
    flip = st.tuples(st.sampled_from(VALID), st.integers(0, 200), st.integers(0, 255)).map(
        lambda t: t[0][: t[1] % len(t[0])] + bytes([t[2]]) + t[0][t[1] % len(t[0]) + 1 :]
    )
    cut = st.tuples(st.sampled_from(VALID), st.integers(0, 200)).map(lambda t: t[0][: t[1] % len(t[0])])
    return st.one_of(st.binary(max_size=512), flip, cut, st.sampled_from(VALID).map(lambda v: v + b"\x00"))


@FAST
@given(mutated())
def test_the_message_codec_raises_only_protocol_errors(data: bytes) -> None:
    try:
        decode(data)
    except ProtocolError:
        pass


@FAST
@given(mutated())
def test_the_replication_and_gossip_decoders_raise_only_msgspec_errors(data: bytes) -> None:
    for dec in (rm.decode, gm.decode, gm.decode_update):
        try:
            dec(data)
        except msgspec.MsgspecError:
            pass


@FAST
@given(st.lists(st.binary(max_size=2048), max_size=20))
def test_the_frame_decoder_never_holds_more_than_its_bound(chunks: list[bytes]) -> None:
    d = FrameDecoder(HANDSHAKE_FRAME_BYTES_MAX)
    for c in chunks:
        d.feed(c)
        try:
            while d.next_frame() is not None:
                pass
        except FrameTooLarge:
            return
        assert d.buffered_bytes() <= LENGTH_BYTES + HANDSHAKE_FRAME_BYTES_MAX + len(c)


@FAST
@given(st.binary(max_size=256))
def test_the_session_refuses_every_frame_it_did_not_seal(data: bytes) -> None:
    s = Session(b"k" * 32, b"r" * 32)
    try:
        s.open(data)
        raise AssertionError("a random frame passed the MAC")
    except ProtocolError:
        pass


@settings(max_examples=40 * SCALE, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(mutated(), min_size=1, max_size=4))
def test_a_live_server_survives_random_streams_before_the_handshake(streams: list[bytes]) -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(partial(_server, trio.CancelScope(), e.dispatch(), handshake_timeout_s=0.5))
            for data in streams:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream:
                    try:
                        await stream.send_all(data)
                        with trio.move_on_after(1.0):
                            while await stream.receive_some(4096):
                                pass
                    except trio.BrokenResourceError:
                        pass
            async with open_peer_pool(SECRET, "cli") as pool:
                assert await pool.call(("127.0.0.1", port), "echo", b"still here", 2.0) == b"still here"
            assert e.calls == [("echo", b"still here", "cli")]
            n.cancel_scope.cancel()

    trio.run(t)
