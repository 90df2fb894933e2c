"""The HTTP shell's limits over raw sockets: body and head size, request and idle time, open connections,
malformed HTTP, keep-alive, handler failures, port binding. After every abuse the server must still answer."""

from __future__ import annotations

import socket
from functools import partial

import h11
import pytest
import trio
import trio.testing
from httpkit import FakeCoordinator, Raw, error_of, serve

from node.config import HttpConfig
from node.http.server import Request, Response, serve_http


def virtual() -> trio.testing.MockClock:
    """trio's clock for the timeout tests: exact, instant, and indifferent to the load on this machine."""
    return trio.testing.MockClock(autojump_threshold=0)


async def health_ok(port: int) -> None:
    """The server still answers on a fresh connection."""
    c = await Raw.open(port)
    await c.request("GET", "/health")
    status, _, body = await c.response()
    assert (status, body) == (200, b'{"status":"ok"}')
    await c.aclose()


async def expect_error(c: Raw, status: int, code: str, closes: bool = True) -> None:
    got, headers, body = await c.response()
    assert got == status, (got, body)
    assert headers["content-type"] == "application/json"
    assert error_of(body)["code"] == code
    if closes:
        assert headers.get("connection") == "close"
        with trio.fail_after(3):
            assert await c.eof()


def test_keep_alive_reuses_one_connection_and_pipelines() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        for _ in range(3):
            await c.request("GET", "/health")
            assert (await c.response())[0] == 200
        # two requests in one write: answered in order on the same connection
        body = b'{"text": "hi", "user": "u", "id": 5}'
        await c.send(
            b"POST /tweets HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n%s"
            b"GET /tweets/5 HTTP/1.1\r\nhost: t\r\n\r\n" % (len(body), body)
        )
        # the requests went out raw: walk the client parser through them without sending anything
        c.conn = h11.Connection(h11.CLIENT)
        c.conn.send(
            h11.Request(method="POST", target="/tweets", headers=[("host", "t"), ("content-length", "0")])
        )
        c.conn.send(h11.EndOfMessage())
        s1, _, _ = await c.response()
        c.conn.send(h11.Request(method="GET", target="/tweets/5", headers=[("host", "t")]))
        c.conn.send(h11.EndOfMessage())
        s2, _, b2 = await c.response()
        assert (s1, s2) == (201, 200) and b'"id":5' in b2
        await c.request("GET", "/health", headers=[("connection", "close")])
        assert (await c.response())[0] == 200
        with trio.fail_after(2):
            assert await c.eof()

    serve(t)


def test_huge_content_length_is_refused_without_reading_the_body() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        body_len = 50 * 1024 * 1024
        head = f"POST /tweets HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {body_len}\r\n\r\n"
        await c.send(head.encode())
        # answered from the head alone: nothing of the body is ever sent, so a server that waited for it would
        # answer 408 at the request timeout instead (virtual time: it would come at once)
        await expect_error(c, 413, "payload_too_large")
        await health_ok(port)

    serve(t, clock=virtual())


def test_50mb_body_sent_anyway_gets_413_and_the_node_stays_up() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        body_len = 50 * 1024 * 1024
        await c.send(f"POST /tweets/bulk HTTP/1.1\r\nhost: t\r\ncontent-length: {body_len}\r\n\r\n".encode())

        async def push() -> None:
            chunk = b"x" * (1024 * 1024)
            try:
                for _ in range(50):
                    await c.stream.send_all(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the server closed after answering: expected

        async with trio.open_nursery() as n:
            n.start_soon(push)
            await expect_error(c, 413, "payload_too_large")  # not 408: answered before the 50 MB were read
        await health_ok(port)

    serve(t, clock=virtual())


def test_chunked_body_growing_past_the_limit_gets_413() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        await c.send(b"POST /tweets/bulk HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(5):
            await c.send(b"12c\r\n" + b"a" * 300 + b"\r\n")
        await expect_error(c, 413, "payload_too_large")
        # a chunked body within the limit is fine
        c = await Raw.open(port)
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b'{"text":"a",', b'"user":"bob"}', b""))
        await c.send(b"POST /tweets HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n" + chunks)
        status, _, _ = await c.response()
        assert status == 201
        await health_ok(port)

    serve(t, cfg=HttpConfig(body_bytes_max=1000))


def test_head_too_large_gets_431() -> None:
    async def t(port: int) -> None:
        # sent whole, in one write
        c = await Raw.open(port)
        await c.send(b"GET /health HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 2000 + b"\r\n\r\n")
        await expect_error(c, 431, "headers_too_large")
        # trickled and never finished: h11's incomplete-event bound
        c = await Raw.open(port)
        await c.send(b"GET /health HTTP/1.1\r\nhost: t\r\n")
        for _ in range(30):
            try:
                await c.send(b"x-h: " + b"b" * 100 + b"\r\n")
            except trio.BrokenResourceError:
                break
        await expect_error(c, 431, "headers_too_large")
        # a long target counts too
        c = await Raw.open(port)
        await c.request("GET", "/search?q=" + "a" * 1500)
        await expect_error(c, 431, "headers_too_large")
        await health_ok(port)

    serve(t, cfg=HttpConfig(header_bytes_max=1024))


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /health HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"POST /tweets HTTP/1.1\r\nhost: t\r\ncontent-length: abc\r\n\r\n",
        b"POST /tweets HTTP/1.1\r\nhost: t\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        b"POST /tweets HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"GET /health HTTP/1.1\r\nhost: t\r\nbad header\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ],
)
def test_malformed_http_gets_400_and_close(data: bytes) -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        await c.send(data)
        await expect_error(c, 400, "invalid_request")
        await health_ok(port)

    serve(t)


def test_too_many_query_parameters_gets_400() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        await c.request("GET", "/search?" + "&".join(f"p{i}=1" for i in range(150)))
        await expect_error(c, 400, "invalid_request")

    serve(t)


def test_slowloris_is_cut_off_at_the_request_timeout() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        started = trio.current_time()
        await c.send(b"GET /health HTTP/1.1\r\n")

        async def drip() -> None:
            try:
                while True:
                    await c.send(b"x")
                    await trio.sleep(0.05)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async with trio.open_nursery() as n:
            n.start_soon(drip)
            await expect_error(c, 408, "request_timeout")
            n.cancel_scope.cancel()
        assert 0.5 <= trio.current_time() - started < 0.5 + 0.05 + 0.01  # the timeout, not an idle one (virtual)
        # a slow body counts as well
        c = await Raw.open(port)
        await c.send(b"POST /tweets HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n{")
        await expect_error(c, 408, "request_timeout")
        await health_ok(port)

    serve(t, cfg=HttpConfig(request_timeout_s=0.5), clock=virtual())


def test_idle_keep_alive_connection_is_closed() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        await c.request("GET", "/health")
        assert (await c.response())[0] == 200
        started = trio.current_time()
        with trio.fail_after(3):
            assert await c.eof()
        assert 0.3 <= trio.current_time() - started < 0.31  # exactly the idle timeout (virtual time)
        silent = await Raw.open(port)  # never sends a byte: closed at the header timeout
        started = trio.current_time()
        with trio.fail_after(3):
            assert await silent.eof()
        assert trio.current_time() - started < 3

    serve(t, cfg=HttpConfig(idle_timeout_s=0.3, header_timeout_s=0.3), clock=virtual())


def test_slow_handler_gets_503_at_the_request_timeout() -> None:
    coord = FakeCoordinator()
    coord.delay_s = 5.0

    async def t(port: int) -> None:
        c = await Raw.open(port)
        started = trio.current_time()
        await c.request("GET", "/search?q=a")
        await expect_error(c, 503, "unavailable", closes=False)
        assert 0.5 <= trio.current_time() - started < 0.51  # at the request timeout, not the handler's 5 s
        await c.request("GET", "/health")  # the connection is still usable
        assert (await c.response())[0] == 200

    serve(t, cfg=HttpConfig(request_timeout_s=0.5), coord=coord, clock=virtual())


def test_handler_exception_is_a_500_and_the_server_survives() -> None:
    coord = FakeCoordinator()

    async def t(port: int) -> None:
        c = await Raw.open(port)
        coord.fail = RuntimeError("boom")
        await c.request("GET", "/search?q=a")
        await expect_error(c, 500, "internal", closes=False)
        await c.request("GET", "/health")
        assert (await c.response())[0] == 200

    serve(t, coord=coord)


def test_raw_handler_errors_are_json() -> None:
    async def handler(req: Request) -> Response:
        if req.path == "/crash":
            raise ZeroDivisionError
        return Response(200, req.body, "application/octet-stream", [("x-method", req.method)])

    async def t(port: int) -> None:
        c = await Raw.open(port)
        await c.request("GET", "/crash")
        await expect_error(c, 500, "internal", closes=False)
        await c.request("POST", "/echo", b"abc")
        status, headers, body = await c.response()
        assert (status, body, headers["x-method"]) == (200, b"abc", "POST")

    serve(t, handler=handler)


def test_expect_100_continue() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        body = b'{"text": "hi", "user": "u"}'
        await c.send(
            b"POST /tweets HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\n"
            b"content-length: %d\r\n\r\n" % len(body)
        )
        with trio.fail_after(2):
            first = await c.stream.receive_some(100)
        assert first.startswith(b"HTTP/1.1 100 ")
        await c.send(body)
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += await c.stream.receive_some(65536)
        assert raw.startswith(b"HTTP/1.1 201 ")

    serve(t)


def test_connection_limit_makes_excess_connections_wait_while_all_are_busy() -> None:
    coord = FakeCoordinator()
    coord.delay_s = 0.8

    async def t(port: int) -> None:
        a, b = await Raw.open(port), await Raw.open(port)
        for c in (a, b):
            await c.request("GET", "/search?q=x")  # both busy for 0.8 s
        await trio.sleep(0.1)
        third = await Raw.open(port)  # the kernel accepts it; the server does not serve it yet
        started = trio.current_time()
        await third.request("GET", "/health")
        with trio.fail_after(5):
            assert (await third.response())[0] == 200
        assert trio.current_time() - started >= 0.4, "a third connection was served while two were busy"
        for c in (a, b):
            assert (await c.response())[0] == 200

    serve(t, cfg=HttpConfig(connections_max=2), coord=coord, clock=virtual())


def test_started_reports_the_port_and_a_taken_port_is_a_clear_oserror() -> None:
    async def main() -> None:
        handler = partial(_echo)
        async with trio.open_nursery() as n:
            port = await n.start(partial(serve_http, handler, "127.0.0.1", 0, HttpConfig()))
            assert isinstance(port, int) and port > 0
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
            with pytest.raises(OSError, match=f"127.0.0.1:{port}.*already in use"):
                await n.start(partial(serve_http, handler, "127.0.0.1", port, HttpConfig()))
            n.cancel_scope.cancel()

    trio.run(main)


async def _echo(req: Request) -> Response:
    return Response(200, req.body)
