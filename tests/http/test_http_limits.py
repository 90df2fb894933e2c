"""Issue 12, finding 5, over real sockets: silent and idle connections cannot hold the node's slots (header
timeout, idle connections closed first, a per-address cap), the body limit counts bytes on the wire, a flood of
one-byte chunks yields to the event loop, and a request with both Transfer-Encoding and Content-Length is refused."""

from __future__ import annotations

import h11
import trio
from httpkit import FakeCoordinator, Raw, error_of, serve

from node.config import HttpConfig
from node.http import server


async def get_health(port: int, source: str = "127.0.0.1") -> int:
    c = Raw(await trio.open_tcp_stream("127.0.0.1", port, local_address=source))
    await c.request("GET", "/health")
    return (await c.response())[0]


async def silent(port: int, n: int, source: str) -> list[trio.SocketStream]:
    return [await trio.open_tcp_stream("127.0.0.1", port, local_address=source) for _ in range(n)]


def test_1100_silent_sockets_never_keep_health_unanswered() -> None:
    """The default limits: 1,024 connections, 256 per address, 10 s to the first byte. Before, the silent ones
    held every slot for the 60 s idle timeout."""

    async def t(port: int) -> None:
        socks = await silent(port, 1100, "127.0.0.2")
        try:
            with trio.fail_after(5):  # well under the 10 s header timeout: nothing had to time out
                assert await get_health(port) == 200
                assert await get_health(port, "127.0.0.2") == 200  # the attacker's own address too
        finally:
            for s in socks:
                await s.aclose()

    serve(t, timeout_s=60)


def test_a_silent_connection_is_closed_at_the_header_timeout_and_a_slow_head_gets_408() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)  # never sends a byte
        started = trio.current_time()
        with trio.fail_after(3):
            assert await c.eof()
        assert trio.current_time() - started >= 0.2
        slow = await Raw.open(port)
        await slow.send(b"GET /health HTTP/1.1\r\n")

        async def drip() -> None:
            try:
                while True:
                    await slow.send(b"x")
                    await trio.sleep(0.05)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async with trio.open_nursery() as n:
            n.start_soon(drip)
            with trio.fail_after(3):
                status, _, body = await slow.response()
            assert status == 408 and error_of(body)["code"] == "request_timeout"
            n.cancel_scope.cancel()

    serve(t, cfg=HttpConfig(header_timeout_s=0.3, idle_timeout_s=60, request_timeout_s=60))


def test_idle_keep_alive_connections_are_closed_first_when_slots_run_out() -> None:
    async def t(port: int) -> None:
        a, b = await Raw.open(port), await Raw.open(port)
        for c in (a, b):
            await c.request("GET", "/health")
            assert (await c.response())[0] == 200  # now both idle, a the longer
        with trio.fail_after(2):
            assert await get_health(port) == 200  # served at once, not after the 60 s idle timeout
            assert await a.eof()  # the longest idle one made room
        await b.request("GET", "/health")
        assert (await b.response())[0] == 200

    serve(t, cfg=HttpConfig(connections_max=2, idle_timeout_s=60))


def test_one_address_is_capped_and_its_idle_connections_go_first() -> None:
    coord = FakeCoordinator()
    coord.delay_s = 2.0

    async def t(port: int) -> None:
        mine = [Raw(s) for s in await silent(port, 2, "127.0.0.3")]  # idle, at the cap of that address
        with trio.fail_after(2):
            assert await get_health(port, "127.0.0.3") == 200  # it closed one of them
            assert await mine[0].eof()
        busy = [Raw(s) for s in await silent(port, 2, "127.0.0.4")]
        for c in busy:
            await c.request("GET", "/search?q=x")  # 2 s each
        await trio.sleep(0.2)
        refused = Raw(await trio.open_tcp_stream("127.0.0.1", port, local_address="127.0.0.4"))
        await refused.request("GET", "/health")
        with trio.fail_after(1):
            try:
                await refused.response()
                raise AssertionError("a third connection of a capped address was served")
            except (EOFError, trio.BrokenResourceError, h11.RemoteProtocolError):
                pass
        with trio.fail_after(1):
            assert await get_health(port) == 200  # other addresses are not affected

    serve(t, cfg=HttpConfig(connections_per_address_max=2), coord=coord)


def test_the_body_limit_counts_chunk_framing() -> None:
    """1,000 one-byte chunks: 1,000 bytes of data (under body_bytes_max) but 6,000 on the wire (over head + body)."""

    async def t(port: int) -> None:
        c = await Raw.open(port)
        chunks = b"1\r\na\r\n" * 1000 + b"0\r\n\r\n"
        await c.send(b"POST /tweets HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n" + chunks)
        status, _, body = await c.response()
        assert status == 413 and error_of(body)["code"] == "payload_too_large"
        assert await get_health(port) == 200

    serve(t, cfg=HttpConfig(body_bytes_max=4000, header_bytes_max=1000))


def test_transfer_encoding_with_content_length_is_refused() -> None:
    async def t(port: int) -> None:
        c = await Raw.open(port)
        await c.send(
            b"POST /tweets HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: t\r\n\r\n"
        )
        status, headers, body = await c.response()
        assert status == 400 and headers.get("connection") == "close", body
        with trio.fail_after(3):
            assert await c.eof()

    serve(t)


class _StepWatch(trio.abc.Instrument):
    """The most body pieces the parser handed over within one task step (between two yields to the event loop)."""

    def __init__(self) -> None:
        self.events = 0
        self.most = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.events = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.most = max(self.most, self.events)


def test_a_flood_of_one_byte_chunks_yields_to_the_event_loop(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """400,000 one-byte chunks (2.4 MB on the wire, within the limit): the server never parses more than
    FEED_BYTES of them (~2,700 chunks) without a checkpoint, so /health and gossip keep running. A whole 64 KiB
    read is ~11,000 chunks. (Counted, not timed: timings flake on a shared box.)"""
    watch = _StepWatch()
    real = server._Conn.on_body

    def counting(self: server._Conn, data: bytes) -> None:
        watch.events += 1
        real(self, data)

    monkeypatch.setattr(server._Conn, "on_body", counting)

    async def t(port: int) -> None:
        trio.lowlevel.add_instrument(watch)
        c = await Raw.open(port)
        body = b"1\r\na\r\n" * 400_000 + b"0\r\n\r\n"

        async def attack() -> None:
            await c.send(b"POST /tweets HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n" + body)

        async with trio.open_nursery() as n:
            n.start_soon(attack)
            with trio.fail_after(60):
                status, _, _ = await c.response()
        trio.lowlevel.remove_instrument(watch)
        assert status == 400  # 400,000 'a's are not JSON: answered, not refused for size
        assert 0 < watch.most <= server.FEED_BYTES // 6 + 1, watch.most

    serve(t, cfg=HttpConfig(body_bytes_max=8 * 1024 * 1024), timeout_s=90)
