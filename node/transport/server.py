"""The RPC listener (TCP on the node's gossip_port): authenticates each connection, then runs every Request as its
own task under the caller's deadline and answers it with a Response, errors included.

It must never run a method for a peer that has not proven the cluster secret, never let a client or a handler
crash it, and never hold more than its bounds: connections, requests in flight per connection and overall.
Unauthenticated connections are counted apart (HANDSHAKES_MAX, each for HANDSHAKE_TIMEOUT_S at most, the oldest
closed for a new one when full) and read at most HANDSHAKE_FRAME_BYTES_MAX per frame: silent or flooding
strangers can neither take the slots of peers reconnecting after a restart nor make the node buffer big frames.
"""

from __future__ import annotations

import errno
import secrets
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from node import reqid
from node.errors import MurmurError, PayloadTooLarge, RequestTimeout
from node.transport.errors import ConnectionClosed, ProtocolError, UnknownMethod
from node.transport.handshake import ServerHandshake, State
from node.transport.messages import NONCE_BYTES, Request, Response, encode_frame
from node.transport.wire import Wire, write_loop

_log = structlog.get_logger("murmur.rpc")

Dispatch = Callable[[str, bytes, str], Awaitable[bytes]]  # (method, body, authenticated peer name) -> answer body
Handler = Callable[[bytes, str], Awaitable[bytes]]  # (body, peer name) -> answer body

CONNECTIONS_MAX = 256  # authenticated RPC connections at most; one more is closed after its handshake
HANDSHAKES_MAX = 64  # connections not yet authenticated; a new one closes the oldest of them when full
INFLIGHT_PER_CONNECTION_MAX = 64  # requests of one connection running at once; more wait (unread) in TCP buffers
INFLIGHT_MAX = 1024  # requests running at once on this node, all connections together
HANDSHAKE_TIMEOUT_S = 3.0  # a connection that has not authenticated within this is closed
CLOSE_TIMEOUT_S = 1.0  # closing a socket never waits longer than this


def route(handlers: Mapping[str, Handler]) -> Dispatch:
    """A Dispatch that calls handlers[method]; an unknown method raises UnknownMethod (the caller gets the error)."""
    table = dict(handlers)

    async def dispatch(method: str, body: bytes, peer: str) -> bytes:
        handler = table.get(method)
        if handler is None:
            raise UnknownMethod(f"no RPC method {method!r} on this node", "method")
        return await handler(body, peer)

    return dispatch


# method -> a context to hold from the request's arrival until its answer is queued (None: nothing to hold): how
# the node lets its writers know that a search's call is under way here (node/cluster/lanes.py).
Urgent = Callable[[str], AbstractContextManager[None] | None]


@dataclass
class _Server:
    dispatch: Dispatch
    secret: bytes
    node_name: str
    inflight: trio.Semaphore  # INFLIGHT_MAX across connections
    inflight_per_connection_max: int
    handshake_timeout_s: float
    connections_max: int
    handshakes_max: int
    established: int = 0
    handshakes: dict[object, trio.CancelScope] | None = None  # pending handshakes, oldest first
    refused: int = 0  # connections refused so far; logged at 1, 2, 4, 8...: a flood cannot flood the log
    urgent: Urgent | None = None

    def log_refused(self, remote: str, claimed: str | None, error: str) -> None:
        self.refused += 1
        if self.refused & (self.refused - 1) == 0:
            _log.warning("rpc_refused", remote=remote, claimed=claimed, error=error, total=self.refused)

    def begin_handshake(self, key: object, scope: trio.CancelScope) -> None:
        assert self.handshakes is not None
        if len(self.handshakes) >= self.handshakes_max:
            oldest = next(iter(self.handshakes))
            self.handshakes.pop(oldest).cancel()  # its connection closes, unauthenticated, like a timeout
        self.handshakes[key] = scope

    def end_handshake(self, key: object) -> None:
        assert self.handshakes is not None
        self.handshakes.pop(key, None)


async def serve_rpc(
    dispatch: Dispatch,
    host: str,
    port: int,
    secret: str,
    node_name: str,
    *,
    connections_max: int = CONNECTIONS_MAX,
    handshakes_max: int = HANDSHAKES_MAX,
    inflight_per_connection_max: int = INFLIGHT_PER_CONNECTION_MAX,
    inflight_max: int = INFLIGHT_MAX,
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
    urgent: Urgent | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled. Calls `task_status.started(bound_port)` once listening; a taken port raises OSError."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as e:
        why = "the port is already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise OSError(e.errno, f"cannot listen for RPC on {host}:{port}: {why}") from e
    bound = listeners[0].socket.getsockname()[1]
    server = _Server(
        dispatch=dispatch,
        secret=secret.encode(),
        node_name=node_name,
        inflight=trio.Semaphore(inflight_max),
        inflight_per_connection_max=inflight_per_connection_max,
        handshake_timeout_s=handshake_timeout_s,
        connections_max=connections_max,
        handshakes_max=handshakes_max,
        handshakes={},
        urgent=urgent,
    )
    _log.info("rpc_listening", host=host, port=bound)
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, server)
        task_status.started(bound)


async def _accept_loop(listener: trio.SocketListener, server: _Server) -> None:
    """Never waits for a slot: open connections stay bounded by HANDSHAKES_MAX + CONNECTIONS_MAX anyway."""
    async with listener, trio.open_nursery() as nursery:
        while True:
            try:
                stream = await listener.accept()
            except OSError as e:  # EMFILE and friends: back off instead of spinning; the node stays up
                _log.warning("rpc_accept_failed", error=str(e))
                await trio.sleep(0.1)
                continue
            nursery.start_soon(_connection, stream, server)


async def _connection(stream: trio.SocketStream, server: _Server) -> None:
    try:
        host, port = stream.socket.getpeername()[:2]
        remote = f"{host}:{port}"
    except OSError:
        remote = "?"
    wire = Wire(stream)  # handshake limits until secured
    counted = False
    try:
        peer = await _authenticate(wire, server, remote)
        if peer is not None:
            if server.established >= server.connections_max:
                _log.warning("rpc_refused", remote=remote, peer=peer, error="connections_max reached")
                return
            server.established += 1
            counted = True
            await _serve(wire, peer, server)
    except ConnectionClosed:
        pass
    except ProtocolError as e:
        _log.warning("rpc_protocol_error", remote=remote, error=str(e))
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the peer went away: nobody to answer
    except Exception:
        _log.exception("rpc_connection_failed", remote=remote)
    finally:
        if counted:
            server.established -= 1
        with trio.move_on_after(CLOSE_TIMEOUT_S) as cs:
            cs.shield = True
            await stream.aclose()


async def _authenticate(wire: Wire, server: _Server, remote: str) -> str | None:
    """The peer's proven name, or None (logged) when it failed: then nothing of it may run."""
    hs = ServerHandshake(server.secret, server.node_name, secrets.token_bytes(NONCE_BYTES))
    key = object()
    with trio.move_on_after(server.handshake_timeout_s) as scope:
        server.begin_handshake(key, scope)
        try:
            while hs.state is not State.ESTABLISHED:
                await wire.send(hs.on_message(await wire.receive()))
        except ProtocolError as e:  # HandshakeFailed, an oversized frame, or bytes that are not our protocol
            server.log_refused(remote, hs.peer, str(e))
            return None
        finally:
            server.end_handshake(key)
        wire.secure(hs.session())  # every frame from now on carries the session's MAC
        return hs.peer
    why = "handshake timed out" if scope.deadline <= trio.current_time() else "closed for a newer handshake"
    server.log_refused(remote, hs.peer, why)
    return None


async def _serve(wire: Wire, peer: str, server: _Server) -> None:
    per_conn = trio.Semaphore(server.inflight_per_connection_max)
    # Each running request holds a slot until its Response is queued, so this buffer can never fill.
    out_send, out_recv = trio.open_memory_channel[bytearray](server.inflight_per_connection_max)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_write_or_cancel, wire, out_recv, nursery.cancel_scope)
        try:  # errors are caught in here: the nursery would wrap them in an ExceptionGroup
            while True:
                msg = await wire.receive()
                if not isinstance(msg, Request):
                    raise ProtocolError(f"unexpected {type(msg).__name__} after the handshake")
                # Waiting here stops reading: a peer that sends too much is slowed by TCP, not by our memory.
                await _acquire(per_conn)
                await _acquire(server.inflight)
                hold = server.urgent(msg.method) if server.urgent is not None else None
                if hold is not None:
                    hold.__enter__()  # left by _run, after its answer is queued
                nursery.start_soon(_run, msg, peer, server, out_send, per_conn, hold)
        except ProtocolError as e:
            _log.warning("rpc_protocol_error", peer=peer, error=str(e))
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the peer went away
        finally:
            nursery.cancel_scope.cancel()  # answers can no longer be delivered


async def _acquire(sem: trio.Semaphore) -> None:
    """sem.acquire() without its checkpoint when a slot is free: under load every checkpoint is a wait for the
    whole batch of runnable tasks (the writers' steps) to run, and a request used to pay two of them before its
    handler was even started."""
    try:
        sem.acquire_nowait()
    except trio.WouldBlock:
        await sem.acquire()


async def _write_or_cancel(wire: Wire, frames: trio.MemoryReceiveChannel[bytearray], scope: trio.CancelScope) -> None:
    try:
        await write_loop(wire, frames)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    scope.cancel()


async def _run(
    req: Request,
    peer: str,
    server: _Server,
    out: trio.MemorySendChannel[bytearray],
    per_conn: trio.Semaphore,
    hold: AbstractContextManager[None] | None = None,
) -> None:
    try:
        resp = await _answer(req, peer, server.dispatch)
        try:
            frame = encode_frame(resp)
        except ProtocolError:  # too big for one frame: the caller gets an error instead of a dead connection
            err = PayloadTooLarge(f"the answer to {req.method!r} exceeds the RPC frame limit")
            frame = encode_frame(Response(req.req_id, None, err.code, err.message))
        try:
            out.send_nowait(frame)  # no checkpoint when there is room (nearly always)
        except trio.WouldBlock:
            await out.send(frame)  # the writer is behind (a peer that does not read): wait for room
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the connection is going away
    finally:
        server.inflight.release()
        per_conn.release()
        if hold is not None:
            hold.__exit__(None, None, None)


async def _answer(req: Request, peer: str, dispatch: Dispatch) -> Response:
    with trio.move_on_after(req.deadline_ms / 1000), reqid.bound(reqid.sane(req.request_id)):
        _log.debug("rpc_request", method=req.method, peer=peer)
        try:
            body = await dispatch(req.method, req.body, peer)
            if not isinstance(body, bytes | bytearray | memoryview):  # would break the caller's decoder
                raise TypeError(f"the handler of {req.method!r} returned {type(body).__name__}, not bytes")
            return Response(req.req_id, body)
        except MurmurError as e:
            return Response(req.req_id, None, e.code, e.message, e.field)
        except Exception as e:
            _log.exception("rpc_handler_failed", method=req.method, peer=peer)
            return Response(req.req_id, None, MurmurError.code, f"{type(e).__name__}: {e}")
    err = RequestTimeout(f"{req.method!r} was not answered within its deadline of {req.deadline_ms} ms")
    return Response(req.req_id, None, err.code, err.message)
