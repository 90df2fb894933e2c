"""Calling other nodes: one persistent, authenticated connection per peer address, multiplexed by req_id.

Every call has a deadline covering everything (waiting for a slot, connecting, the answer); a stalled peer costs a
caller no more than that. A dead connection fails all its pending calls at once; reconnects back off (backoff.py)
and calls fail fast with PeerUnavailable meanwhile. A call is never retried here: the caller knows if it may be.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
import trio

from node import reqid
from node.errors import RequestTimeout
from node.transport.backoff import Backoff
from node.transport.errors import (
    ConnectionClosed,
    HandshakeFailed,
    PeerUnavailable,
    ProtocolError,
    RpcTimeout,
    remote_error,
)
from node.transport.handshake import ClientHandshake, State
from node.transport.messages import NONCE_BYTES, Request, Response, encode_frame
from node.transport.wire import Wire, write_loop

_log = structlog.get_logger("murmur.rpc")

Addr = tuple[str, int]

CONNECT_TIMEOUT_S = 2.0  # TCP connect + handshake of one attempt, at most
INFLIGHT_MAX = 64  # calls in flight to one peer at once; more wait for a slot (within their deadline)
BACKOFF_MIN_S = 0.05  # wait after the first failed connect attempt; doubles per failure ...
BACKOFF_MAX_S = 2.0  # ... up to this
CLOSE_TIMEOUT_S = 1.0  # closing a socket never waits longer than this


class _Pending:
    """One call waiting for its Response (or for the connection's death)."""

    __slots__ = ("done", "error", "response")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.response: Response | None = None
        self.error: Exception | None = None


class _Conn:
    """One live connection: callers queue frames for the writer; the reader routes Responses by req_id."""

    def __init__(self, wire: Wire, addr: Addr, inflight_max: int) -> None:
        self.wire = wire
        self.addr = addr
        self.closed = False
        self._next_id = 0
        self._pending: dict[int, _Pending] = {}
        # Bounded. A caller holds a peer slot while it waits, but a call that times out gives its slot back while
        # its frame may still wait here (a peer that stopped reading): later callers then wait for room within
        # their own deadline (back-pressure), never past it, and never fail anyone else.
        self._out_send, self._out_recv = trio.open_memory_channel[bytearray](inflight_max)

    async def call(self, method: str, body: bytes, deadline: float) -> bytes:
        if self.closed:
            raise PeerUnavailable(f"the connection to {_fmt(self.addr)} was lost")
        req_id = self._next_id
        self._next_id += 1
        left_ms = max(0, int((deadline - trio.current_time()) * 1000))
        frame = encode_frame(Request(req_id, method, body, left_ms, reqid.current()))  # FrameTooLarge: raised, nothing sent
        p = _Pending()
        self._pending[req_id] = p
        try:
            try:
                try:
                    self._out_send.send_nowait(frame)  # no checkpoint when there is room (nearly always)
                except trio.WouldBlock:
                    await self._out_send.send(frame)  # waits for room in the queue under the caller's deadline
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise PeerUnavailable(f"the connection to {_fmt(self.addr)} was lost") from None
            await p.done.wait()
        finally:
            self._pending.pop(req_id, None)  # a late answer after a timeout is then dropped
        if p.error is not None:
            raise p.error
        resp = p.response
        assert resp is not None
        if resp.error_code == RequestTimeout.code:  # the deadline ran out over there first: same thing to us
            raise RpcTimeout(f"{_fmt(self.addr)}: {resp.error_message}")
        if resp.error_code is not None:
            raise remote_error(resp.error_code, resp.error_message or "", resp.error_field)
        if resp.body is None:
            raise remote_error("internal", f"{_fmt(self.addr)} answered {method!r} with neither body nor error")
        return resp.body

    async def run(self) -> None:
        """Read and route Responses until the connection dies; then fail every pending call."""
        reason = "closed"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, nursery.cancel_scope)
                try:
                    while True:
                        msg = await self.wire.receive()
                        if not isinstance(msg, Response):
                            raise ProtocolError(f"unexpected {type(msg).__name__} from the server")
                        p = self._pending.pop(msg.req_id, None)
                        if p is not None:
                            p.response = msg
                            p.done.set()
                except (ConnectionClosed, ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                    reason = str(e) or type(e).__name__
                    nursery.cancel_scope.cancel()
        finally:
            self.closed = True
            self._out_send.close()
            err = PeerUnavailable(f"the connection to {_fmt(self.addr)} was lost ({reason})")
            for p in self._pending.values():
                p.error = err
                p.done.set()
            self._pending.clear()

    async def _write(self, scope: trio.CancelScope) -> None:
        try:
            await write_loop(self.wire, self._out_recv)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        scope.cancel()


class _Peer:
    def __init__(self, addr: Addr, inflight_max: int, backoff: Backoff) -> None:
        self.addr = addr
        self.slots = trio.Semaphore(inflight_max)
        self.conn: _Conn | None = None
        self.attempt: trio.Event | None = None  # set when the running connect attempt ends
        self.backoff = backoff
        self.last_error = ""
        self.connects = 0  # successful connects so far (1 + reconnects)


class PeerPool:
    """Use through `open_peer_pool`. Safe to share between any number of tasks."""

    def __init__(
        self,
        nursery: trio.Nursery,
        secret: str,
        node_name: str,
        connect_timeout_s: float,
        inflight_max: int,
        backoff_min_s: float,
        backoff_max_s: float,
    ) -> None:
        self._nursery = nursery
        self._secret = secret.encode()
        self._node_name = node_name
        self._connect_timeout_s = connect_timeout_s
        self._inflight_max = inflight_max
        self._backoff = (backoff_min_s, backoff_max_s)
        self._peers: dict[Addr, _Peer] = {}  # bounded by the cluster's membership: one per peer address

    async def call(self, addr: Addr, method: str, body: bytes, timeout_s: float) -> bytes:
        """The answer body of `method` at `addr`. Raises RpcTimeout past `timeout_s` (everything included),
        PeerUnavailable when the peer cannot be reached, RpcError (a subclass for known codes) for remote errors,
        FrameTooLarge (nothing sent) for a body over the frame limit."""
        peer = self._peer(addr)
        try:
            with trio.fail_after(timeout_s) as scope:
                async with peer.slots:
                    conn = await self._connected(peer)
                    return await conn.call(method, body, scope.deadline)
        except trio.TooSlowError:
            raise RpcTimeout(f"{method!r} to {_fmt(addr)} was not answered within {timeout_s} s") from None

    def connected(self, addr: Addr) -> bool:
        """Whether a live connection to `addr` exists now."""
        peer = self._peers.get(addr)
        return peer is not None and peer.conn is not None and not peer.conn.closed

    def retry_now(self, addr: Addr) -> None:
        """Forget the connect backoff of `addr` (membership just saw it come alive): the next call connects
        at once instead of failing fast until the backoff expires."""
        peer = self._peers.get(addr)
        if peer is not None and (peer.conn is None or peer.conn.closed):
            peer.backoff.on_success()

    def connect_count(self, addr: Addr) -> int:
        """Successful connects to `addr` so far (1 + reconnects); for metrics and tests."""
        peer = self._peers.get(addr)
        return 0 if peer is None else peer.connects

    def _peer(self, addr: Addr) -> _Peer:
        peer = self._peers.get(addr)
        if peer is None:
            peer = self._peers[addr] = _Peer(addr, self._inflight_max, Backoff(*self._backoff))
        return peer

    async def _connected(self, peer: _Peer) -> _Conn:
        if peer.conn is not None and not peer.conn.closed:
            return peer.conn
        if peer.attempt is None:
            now = trio.current_time()
            if not peer.backoff.may_attempt(now):
                raise PeerUnavailable(
                    f"{_fmt(peer.addr)} is unreachable ({peer.last_error}); "
                    f"next attempt in {peer.backoff.retry_at - now:.3f} s"
                )
            peer.attempt = trio.Event()
            # The attempt runs in the pool's nursery: a caller that gives up does not abort it for the others.
            self._nursery.start_soon(self._run_peer, peer, peer.attempt)
        await peer.attempt.wait()
        if peer.conn is None or peer.conn.closed:
            raise PeerUnavailable(f"{_fmt(peer.addr)} is unreachable ({peer.last_error})")
        return peer.conn

    async def _run_peer(self, peer: _Peer, attempt: trio.Event) -> None:
        """One connect attempt; if it succeeds, the connection's whole life."""
        try:
            try:
                wire = await self._connect(peer.addr)
            except (OSError, trio.TooSlowError, ConnectionClosed, ProtocolError, trio.BrokenResourceError) as e:
                delay = peer.backoff.on_failure(trio.current_time(), random.random())
                peer.last_error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                _log.warning(
                    "rpc_connect_failed", peer=_fmt(peer.addr), error=peer.last_error, retry_in_s=round(delay, 3)
                )
                return
            conn = peer.conn = _Conn(wire, peer.addr, self._inflight_max)
            peer.backoff.on_success()
            peer.connects += 1
        finally:
            peer.attempt = None
            attempt.set()  # waiters then look at peer.conn
        try:
            await conn.run()
        finally:
            if peer.conn is conn:
                peer.conn = None
            with trio.move_on_after(CLOSE_TIMEOUT_S) as cs:
                cs.shield = True
                await wire.stream.aclose()

    async def _connect(self, addr: Addr) -> Wire:
        with trio.fail_after(self._connect_timeout_s):
            stream = await trio.open_tcp_stream(*addr)
            try:
                wire = Wire(stream)
                hs = ClientHandshake(self._secret, self._node_name, secrets.token_bytes(NONCE_BYTES))
                await wire.send(hs.start())
                while hs.state is not State.ESTABLISHED:
                    try:
                        got = await wire.receive()
                    except ConnectionClosed:
                        raise HandshakeFailed(
                            f"{_fmt(addr)} closed the connection during the handshake (a different cluster secret?)"
                        ) from None
                    reply = hs.on_message(got)
                    if reply is not None:
                        await wire.send(reply)
                wire.secure(hs.session())  # every frame from now on carries the session's MAC
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            return wire


def _fmt(addr: Addr) -> str:
    return f"{addr[0]}:{addr[1]}"


@asynccontextmanager
async def open_peer_pool(
    secret: str,
    node_name: str,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    inflight_max: int = INFLIGHT_MAX,
    backoff_min_s: float = BACKOFF_MIN_S,
    backoff_max_s: float = BACKOFF_MAX_S,
) -> AsyncIterator[PeerPool]:
    """A PeerPool whose connections live until the block ends (then every pending call fails)."""
    async with trio.open_nursery() as nursery:
        pool = PeerPool(nursery, secret, node_name, connect_timeout_s, inflight_max, backoff_min_s, backoff_max_s)
        try:
            yield pool
        finally:
            nursery.cancel_scope.cancel()
