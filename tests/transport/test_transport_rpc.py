"""The RPC transport over real sockets on 127.0.0.1 (port 0), each test inside its own trio.run with a deadline:
round trips, multiplexing, authentication, hostile clients, stalled and dying peers, remote errors, reconnects.
The tests about deadlines run on trio's MockClock (autojump): loopback I/O is ready as soon as it is sent, so the
clock only jumps when every task waits on a timer, and a deadline is checked exactly, whatever the machine's load."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from node.errors import NotFound
from node.transport.client import PeerPool, open_peer_pool
from node.transport.errors import FrameTooLarge, PeerUnavailable, RpcError, RpcTimeout
from node.transport.handshake import ClientHandshake, State
from node.transport.messages import FRAME_BYTES_MAX, FRAME_TAG_BYTES, Request, Response
from node.transport.server import Dispatch, route, serve_rpc
from node.transport.wire import Wire

SECRET = "cluster-secret"
SLACK_S = 0.01  # virtual time (MockClock) a deadline may be overrun by: none but the run loop's own steps


def virtual() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def run(test: Callable[[], Awaitable[None]], timeout_s: float = 20.0, clock: trio.abc.Clock | None = None) -> None:
    async def main() -> None:
        with trio.fail_after(timeout_s):
            await test()

    trio.run(main, clock=clock)


async def _server(
    scope: trio.CancelScope,
    dispatch: Dispatch,
    port: int = 0,
    secret: str = SECRET,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
    **kw: Any,
) -> None:
    with scope:
        await serve_rpc(dispatch, "127.0.0.1", port, secret, "srv", task_status=task_status, **kw)


class Echo:
    """A dispatch that records its calls; `echo` answers the body, the others misbehave on purpose."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, str]] = []
        self.release = trio.Event()
        self.all_in = trio.Event()  # set by the 10th call
        self.cancelled_at: list[float] = []

    async def echo(self, body: bytes, peer: str) -> bytes:
        self.calls.append(("echo", body, peer))
        return body

    async def slow(self, body: bytes, peer: str) -> bytes:
        self.calls.append(("slow", body, peer))
        await trio.sleep(int(body) / 1000)  # answers arrive in another order than the calls
        return b"slow:" + body

    async def block(self, body: bytes, peer: str) -> bytes:
        self.calls.append(("block", body, peer))
        if len(self.calls) == 10:
            self.all_in.set()
        try:
            await self.release.wait()
        except trio.Cancelled:
            self.cancelled_at.append(trio.current_time())
            raise
        return body

    async def not_found(self, body: bytes, peer: str) -> bytes:
        raise NotFound(f"no tweet {body.decode()}", "id")

    async def crash(self, body: bytes, peer: str) -> bytes:
        raise ValueError("boom")

    async def wrong_type(self, body: bytes, peer: str) -> bytes:
        return "not bytes"  # type: ignore[return-value]

    def dispatch(self) -> Dispatch:
        names = ("echo", "slow", "block", "not_found", "crash", "wrong_type")
        return route({n: getattr(self, n) for n in names})


async def _eof_within(stream: trio.SocketStream, seconds: float) -> bool:
    """Whether the server closed `stream` (EOF or reset) within `seconds`, reading whatever it sent first."""
    with trio.move_on_after(seconds):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


def test_round_trip_carries_body_and_authenticated_peer_name() -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(_server, trio.CancelScope(), e.dispatch())
            async with open_peer_pool(SECRET, "cli") as pool:
                assert await pool.call(("127.0.0.1", port), "echo", b"hello", 2.0) == b"hello"
                assert await pool.call(("127.0.0.1", port), "echo", b"", 2.0) == b""
            assert e.calls[0] == ("echo", b"hello", "cli")
            n.cancel_scope.cancel()

    run(t)


def test_an_urgent_method_is_held_from_its_arrival_until_its_answer_and_then_let_go() -> None:
    """serve_rpc(urgent=...): the context it gives for a method is held while that request runs (the node's
    writers hold back meanwhile), and left afterwards, also when the handler fails; other methods hold nothing."""
    held: list[str] = []
    seen: list[tuple[str, list[str]]] = []

    class Hold:
        def __init__(self, method: str) -> None:
            self.method = method

        def __enter__(self) -> None:
            held.append(self.method)

        def __exit__(self, *exc: object) -> None:
            held.remove(self.method)

    async def handler(method: str, body: bytes, peer: str) -> bytes:
        seen.append((method, list(held)))
        if body == b"fail":
            raise NotFound("no such thing")
        return body

    async def t() -> None:
        async with trio.open_nursery() as n:
            port = await n.start(
                partial(_server, urgent=lambda method: Hold(method) if method == "read" else None),
                trio.CancelScope(), handler,
            )
            async with open_peer_pool(SECRET, "cli") as pool:
                addr = ("127.0.0.1", port)
                assert await pool.call(addr, "read", b"x", 2.0) == b"x"
                assert await pool.call(addr, "write", b"y", 2.0) == b"y"
                with pytest.raises(RpcError):
                    await pool.call(addr, "read", b"fail", 2.0)
                assert held == []
            n.cancel_scope.cancel()

    run(t)
    assert seen == [("read", ["read"]), ("write", []), ("read", ["read"])]


def test_200_concurrent_calls_share_one_connection_and_get_their_own_answers() -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(_server, trio.CancelScope(), e.dispatch())
            addr = ("127.0.0.1", port)
            got: dict[int, bytes] = {}
            async with open_peer_pool(SECRET, "cli", inflight_max=256) as pool:

                async def one(i: int) -> None:
                    got[i] = await pool.call(addr, "slow", str((i * 7) % 23).encode(), 10.0)

                async with trio.open_nursery() as calls:
                    for i in range(200):
                        calls.start_soon(one, i)
                assert got == {i: b"slow:" + str((i * 7) % 23).encode() for i in range(200)}
                assert pool.connect_count(addr) == 1
            n.cancel_scope.cancel()

    run(t)


def test_a_peer_with_a_wrong_secret_is_refused_and_runs_nothing() -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(_server, trio.CancelScope(), e.dispatch())
            addr = ("127.0.0.1", port)
            async with open_peer_pool("not-the-secret", "intruder") as bad:
                with pytest.raises(PeerUnavailable):
                    await bad.call(addr, "echo", b"x", 2.0)
                assert not bad.connected(addr)
            # hand-made clients that send a call anyway, after a wrong proof or none: closed, nothing runs
            for send_proof in (True, False):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream:
                    wire = Wire(stream)
                    hs = ClientHandshake("guess", "intruder", b"n" * 16)
                    await wire.send(hs.start())
                    proof = hs.on_message(await wire.receive())  # the Challenge
                    if send_proof and proof is not None:
                        await wire.send(proof)
                    await wire.send(Request(1, "echo", b"x", 1000))
                    assert await _eof_within(stream, 2.0)
            assert e.calls == []
            async with open_peer_pool(SECRET, "cli") as good:  # and the server still serves the others
                assert await good.call(addr, "echo", b"ok", 2.0) == b"ok"
            n.cancel_scope.cancel()

    run(t)


@pytest.mark.parametrize(
    "junk",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # its first 4 bytes read as a ~1.2 GB length
        (FRAME_BYTES_MAX + 1).to_bytes(4, "big"),
        b"\x00\x00\x00\x05hello",  # a well-framed payload that is not a message
        b"\x00\x00\x00\x00",
    ],
)
def test_garbage_or_oversized_frames_close_the_connection_and_the_server_goes_on(junk: bytes) -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(_server, trio.CancelScope(), e.dispatch())
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(junk)
                assert await _eof_within(stream, 2.0)
            async with open_peer_pool(SECRET, "cli") as pool:
                assert await pool.call(("127.0.0.1", port), "echo", b"ok", 2.0) == b"ok"
            n.cancel_scope.cancel()

    run(t)


def test_an_oversized_frame_after_authentication_closes_that_connection_only() -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(_server, trio.CancelScope(), e.dispatch())
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                wire = Wire(stream)
                hs = ClientHandshake(SECRET, "cli", b"n" * 16)
                await wire.send(hs.start())
                while hs.state is not State.ESTABLISHED:
                    reply = hs.on_message(await wire.receive())
                    if reply is not None:
                        await wire.send(reply)
                wire.secure(hs.session())
                await wire.send(Request(1, "echo", b"fine", 1000))
                assert await wire.receive() == Response(1, b"fine")
                await stream.send_all((FRAME_BYTES_MAX + FRAME_TAG_BYTES + 1).to_bytes(4, "big") + b"x" * 1000)
                assert await _eof_within(stream, 2.0)
            async with open_peer_pool(SECRET, "cli") as pool:
                assert await pool.call(("127.0.0.1", port), "echo", b"ok", 2.0) == b"ok"
            n.cancel_scope.cancel()

    run(t)


def test_a_stalled_peer_costs_a_caller_no_more_than_its_deadline() -> None:
    async def t() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        held: list[trio.SocketStream] = []

        async def accept_and_ignore() -> None:
            while True:
                held.append(await listeners[0].accept())

        async with trio.open_nursery() as n:
            n.start_soon(accept_and_ignore)
            async with open_peer_pool(SECRET, "cli", connect_timeout_s=5.0) as pool:

                async def one(timeout_s: float) -> None:
                    t0 = trio.current_time()
                    with pytest.raises(RpcTimeout):
                        await pool.call(("127.0.0.1", port), "echo", b"x", timeout_s)
                    assert timeout_s <= trio.current_time() - t0 <= timeout_s + SLACK_S

                async with trio.open_nursery() as calls:
                    calls.start_soon(one, 0.3)
                    calls.start_soon(one, 0.5)
            n.cancel_scope.cancel()
        for s in held:
            await s.aclose()
        await listeners[0].aclose()

    run(t, clock=virtual())


def test_a_handler_that_never_answers_times_out_and_is_cancelled_at_the_callers_deadline() -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(_server, trio.CancelScope(), e.dispatch())
            addr = ("127.0.0.1", port)
            async with open_peer_pool(SECRET, "cli") as pool:
                await pool.call(addr, "echo", b"warm", 2.0)
                t0 = trio.current_time()
                with pytest.raises(RpcTimeout):
                    await pool.call(addr, "block", b"x", 0.4)
                assert trio.current_time() - t0 <= 0.4 + SLACK_S
                await trio.sleep(0.1)
                assert len(e.cancelled_at) == 1 and e.cancelled_at[0] - t0 <= 0.4 + SLACK_S  # the deadline travelled
                assert await pool.call(addr, "echo", b"after", 2.0) == b"after"  # the connection survived
                assert pool.connect_count(addr) == 1
            n.cancel_scope.cancel()

    run(t, clock=virtual())


def test_waiting_for_a_slot_counts_against_the_deadline() -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(_server, trio.CancelScope(), e.dispatch())
            addr = ("127.0.0.1", port)
            async with open_peer_pool(SECRET, "cli", inflight_max=1) as pool:
                n.start_soon(_swallow, pool.call(addr, "block", b"x", 5.0))
                await trio.sleep(0.2)
                t0 = trio.current_time()
                with pytest.raises(RpcTimeout):
                    await pool.call(addr, "echo", b"y", 0.3)
                assert trio.current_time() - t0 <= 0.3 + SLACK_S
                assert [c[0] for c in e.calls] == ["block"]  # the second call never left this node
                e.release.set()
            n.cancel_scope.cancel()

    run(t, clock=virtual())


async def _swallow(call: Awaitable[bytes]) -> None:
    try:
        await call
    except (RpcError, PeerUnavailable, RpcTimeout):
        pass


def test_remote_errors_come_back_with_their_code_and_do_not_hurt_the_connection() -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(_server, trio.CancelScope(), e.dispatch())
            addr = ("127.0.0.1", port)
            async with open_peer_pool(SECRET, "cli") as pool:
                with pytest.raises(NotFound) as nf:
                    await pool.call(addr, "not_found", b"42", 2.0)
                assert isinstance(nf.value, RpcError)
                assert (nf.value.code, nf.value.message, nf.value.field) == ("not_found", "no tweet 42", "id")
                for method, code in [("crash", "internal"), ("wrong_type", "internal"), ("nope", "unknown_method")]:
                    with pytest.raises(RpcError) as err:
                        await pool.call(addr, method, b"", 2.0)
                    assert err.value.code == code, method
                assert "boom" in str(await _error_of(pool, addr, "crash"))
                with pytest.raises(FrameTooLarge):  # refused before sending: the connection stays
                    await pool.call(addr, "echo", b"x" * (FRAME_BYTES_MAX + 1), 2.0)
                assert await pool.call(addr, "echo", b"still", 2.0) == b"still"
                assert pool.connect_count(addr) == 1
            n.cancel_scope.cancel()

    run(t)


async def _error_of(pool: PeerPool, addr: tuple[str, int], method: str) -> RpcError:
    try:
        await pool.call(addr, method, b"", 2.0)
    except RpcError as e:
        return e
    raise AssertionError("no error")


def test_a_dead_connection_fails_all_its_pending_calls_at_once() -> None:
    async def t() -> None:
        e = Echo()
        scope = trio.CancelScope()
        async with trio.open_nursery() as n:
            port = await n.start(_server, scope, e.dispatch())
            addr = ("127.0.0.1", port)
            failed: list[float] = []
            async with open_peer_pool(SECRET, "cli") as pool:

                async def one() -> None:
                    with pytest.raises(PeerUnavailable):
                        await pool.call(addr, "block", b"x", 10.0)
                    failed.append(trio.current_time())

                async with trio.open_nursery() as calls:
                    for _ in range(10):
                        calls.start_soon(one)
                    with trio.fail_after(5):
                        await e.all_in.wait()
                    t0 = trio.current_time()
                    scope.cancel()  # the server dies with 10 calls in flight
                assert len(failed) == 10 and max(failed) - t0 < SLACK_S  # at once, not at their 10 s deadlines

    run(t, clock=virtual())


def test_the_client_reconnects_after_a_server_restart_with_backoff() -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            first = trio.CancelScope()
            port = await n.start(_server, first, e.dispatch())
            addr = ("127.0.0.1", port)
            async with open_peer_pool(SECRET, "cli", backoff_min_s=0.05, backoff_max_s=0.4) as pool:
                assert await pool.call(addr, "echo", b"1", 2.0) == b"1"
                first.cancel()
                await trio.sleep(0.05)
                with pytest.raises(PeerUnavailable):  # the connection is gone, a reconnect is refused
                    await pool.call(addr, "echo", b"2", 2.0)
                t0 = trio.current_time()
                with pytest.raises(PeerUnavailable, match="next attempt in"):  # backing off: fails fast
                    await pool.call(addr, "echo", b"3", 2.0)
                assert trio.current_time() - t0 < 0.05
                await n.start(_server, trio.CancelScope(), e.dispatch(), port)  # back, on the same port
                answer = None
                t0 = trio.current_time()
                while answer is None:
                    try:
                        answer = await pool.call(addr, "echo", b"4", 2.0)
                    except PeerUnavailable:
                        await trio.sleep(0.02)
                assert answer == b"4" and trio.current_time() - t0 <= 0.4 * 1.2 + SLACK_S
                assert pool.connect_count(addr) == 2
            n.cancel_scope.cancel()

    run(t, clock=virtual())


def test_the_server_holds_a_connection_that_never_authenticates_only_briefly() -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(partial(_server, trio.CancelScope(), e.dispatch(), handshake_timeout_s=0.3))
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                t0 = trio.current_time()
                assert await _eof_within(stream, 2.0)
                assert trio.current_time() - t0 <= 0.3 + SLACK_S
            n.cancel_scope.cancel()

    run(t, clock=virtual())


def test_a_peer_that_stops_reading_fails_calls_and_never_crashes_the_caller() -> None:
    """Issue 11 §0: a peer that stops reading (SIGSTOP, or a server whose handlers all block) fills the
    connection's TCP buffers and then its outgoing queue. Calls that time out give their slots back while their
    frames still wait in the queue, so later calls used to find the queue full and raise trio.WouldBlock out of
    `call`, which took down the caller's nursery (the whole node). Each call must fail on its own instead."""

    async def t() -> None:
        e = Echo()
        scope = trio.CancelScope()
        async with trio.open_nursery() as n:
            # one request per connection at a time, and every handler blocks: the server stops reading at once
            port = await n.start(partial(_server, scope, e.dispatch(), inflight_per_connection_max=1))
            async with open_peer_pool(SECRET, "cli", inflight_max=4) as pool:
                outcomes: list[str] = []

                async def one() -> None:
                    try:
                        await pool.call(("127.0.0.1", port), "block", b"x" * 1_000_000, 0.2)
                        outcomes.append("answered")
                    except (RpcTimeout, PeerUnavailable) as err:
                        outcomes.append(type(err).__name__)

                for _wave in range(12):  # ~12 MB queued behind a reader that never reads: buffers fill
                    async with trio.open_nursery() as calls:
                        for _ in range(4):
                            calls.start_soon(one)
                assert len(outcomes) == 48
                assert "answered" not in outcomes
                e.release.set()
                # once the peer reads again, the same pool serves calls on a connection that works
                got = None
                for _ in range(50):
                    try:
                        got = await pool.call(("127.0.0.1", port), "echo", b"back", 2.0)
                        break
                    except (RpcTimeout, PeerUnavailable):
                        await trio.sleep(0.05)
                assert got == b"back"
            scope.cancel()

    run(t, timeout_s=60.0)
