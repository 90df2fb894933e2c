"""Request ids across the RPC transport: a call made while a request id is bound carries it, and the handler on
the other side runs with it bound (structlog lines included); a call made without one carries nothing; an id
from an older peer that does not send the field decodes as None."""

from __future__ import annotations

import msgspec
import structlog
import trio

from node import reqid
from node.transport.client import open_peer_pool
from node.transport.messages import Request, decode
from node.transport.server import route
from tests.transport.test_transport_rpc import SECRET, _server, run


def test_request_id_travels_with_the_call_and_is_bound_over_there() -> None:
    seen: list[tuple[str | None, object]] = []

    async def who(body: bytes, peer: str) -> bytes:
        seen.append((reqid.current(), structlog.contextvars.get_contextvars().get("request_id")))
        return b""

    async def t() -> None:
        scope = trio.CancelScope()
        async with trio.open_nursery() as n:
            port = await n.start(_server, scope, route({"who": who}))
            async with open_peer_pool(SECRET, "cli") as pool:
                with reqid.bound("req-1"):
                    await pool.call(("127.0.0.1", port), "who", b"", 5.0)
                await pool.call(("127.0.0.1", port), "who", b"", 5.0)
            scope.cancel()

    run(t)
    assert seen == [("req-1", "req-1"), (None, None)]


def test_request_id_is_the_last_field_and_optional() -> None:
    old = msgspec.msgpack.encode((5, 7, "m", b"x", 100))  # a Request as a peer without the field sends it
    got = decode(old)
    assert isinstance(got, Request) and got.request_id is None and got.deadline_ms == 100


def test_from_header_keeps_sane_ids_and_replaces_others() -> None:
    assert reqid.from_header(b"abc-123") == "abc-123"
    assert reqid.from_header(b" trace:9/x ") == "trace:9/x"
    for bad in (None, b"", b"x" * 65, b"a b", b"<script>", "é".encode()):
        got = reqid.from_header(bad)
        assert len(got) == 16 and all(c in "0123456789abcdef" for c in got)
    assert reqid.from_header(None) != reqid.from_header(None)
    assert reqid.sane("ok.1") == "ok.1" and reqid.sane("no way") is None and reqid.sane(None) is None
