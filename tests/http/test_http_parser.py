"""The HTTP shell's request parsing (httptools under node/http/server.py) where it differs from a textbook
exchange: requests split at any byte, pipelined, chunked or not; HTTP/1.0; Upgrade; HEAD; and response headers
that would split the head. Properties feed a real _Conn from an in-memory stream; the rest go over sockets."""

from __future__ import annotations

import itertools

import trio
import trio.testing
from httpkit import Raw, serve
from hypothesis import given, settings
from hypothesis import strategies as st

from node.config import HttpConfig
from node.http import server
from node.http.server import Request, Response


class _Chunks(trio.abc.ReceiveStream):
    """A stream that hands out exactly the given pieces, then EOF."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return self.pieces.pop(0) if self.pieces else b""

    async def aclose(self) -> None:
        pass


def _wire(body: bytes, chunked: bool, target: str) -> bytes:
    if chunked:
        half = len(body) // 2
        framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]) if p) + b"0\r\n\r\n"
        return f"POST {target} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + framed
    return f"POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


@settings(max_examples=150, deadline=None)
@given(
    reqs=st.lists(
        st.tuples(st.binary(max_size=300), st.booleans(), st.sampled_from(["/a", "/b?x=1&y=%20z", "/c%2Fd"])),
        min_size=1,
        max_size=4,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_requests_cut_anywhere_parse_whole_and_in_order(reqs: list[tuple[bytes, bool, str]], cuts: list[int]) -> None:
    wire = b"".join(_wire(b, ch, t) for b, ch, t in reqs)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    pieces = [wire[a:b] for a, b in itertools.pairwise(points) if b > a]
    cfg = HttpConfig()

    async def main() -> list[Request]:
        c = server._Conn(_Chunks(pieces), "127.0.0.1", cfg.body_bytes_max)  # type: ignore[arg-type]
        got = []
        for _ in reqs:
            c.received = 0
            m = await server._read_head(c, cfg)
            got.append(await server._read_body(c, cfg, m))
            c.messages.popleft()
        return got

    got = trio.run(main)
    assert [(r.method, r.body) for r in got] == [("POST", b) for b, _, _ in reqs]
    assert [r.path for r in got] == [{"/a": "/a", "/b?x=1&y=%20z": "/b", "/c%2Fd": "/c/d"}[t] for _, _, t in reqs]
    assert all(r.header(b"host") == b"t" for r in got)  # names lower-cased, values as sent


async def _echo(req: Request) -> Response:
    return Response(200, req.body or b"hello", "text/plain", [("x-method", req.method)])


async def _read_all(c: Raw) -> bytes:
    raw = b""
    with trio.fail_after(3):
        while data := await c.stream.receive_some(65536):
            raw += data
    return raw


def test_http_10_is_answered_and_closed() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        await c.send(b"GET /x HTTP/1.0\r\n\r\n")  # no Host needed in 1.0
        raw = await _read_all(c)  # the server closes after answering
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b"\r\n\r\nhello"), raw
        assert b"connection: close\r\n" in raw

    serve(t, handler=_echo)


def test_an_upgrade_request_is_answered_as_a_plain_one_and_the_connection_closes() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        await c.send(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")
        raw = await _read_all(c)
        assert raw.startswith(b"HTTP/1.1 200 ") and raw.count(b"HTTP/1.1") == 1, raw

    serve(t, handler=_echo)


def test_head_gets_the_length_and_no_body_and_the_connection_stays_usable() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        await c.send(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\nGET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        raw = await _read_all(c)
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert b"content-length: 5" in head and b"x-method: HEAD" in head
        assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"hello") and b"x-method: GET" in rest

    serve(t, handler=_echo)


def test_a_response_header_with_a_line_break_is_dropped_not_sent() -> None:
    r = Response(200, b"ok", "text/plain", [("x-a", "1"), ("x-evil", "a\r\nset-cookie: b"), ("x-nul", "a\x00")])
    out = server._encode_response(r)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [b"HTTP/1.1 200 OK", b"content-type: text/plain", b"x-a: 1", b"content-length: 2"]
    assert body == b"ok"


def test_no_content_has_no_length_and_an_unknown_status_still_has_a_line() -> None:
    assert server._encode_response(Response(204)).startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"content-length" not in server._encode_response(Response(204))
    assert server._encode_response(Response(599, b"x")).startswith(b"HTTP/1.1 599 \r\n")
