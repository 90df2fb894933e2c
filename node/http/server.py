"""The thin HTTP/1.1 shell: h11 parses, trio moves bytes, `handler(Request) -> Response` decides everything else.

It enforces the limits of HttpConfig (bytes on the wire, head, first byte and request times, idle keep-alive, open
connections overall and per client address) and turns every protocol failure into the contract's JSON error.
It must never know a route, never let a client crash the node, and never parse for long without a checkpoint.
Slots: a connection waiting for the first byte of a request (new or kept alive) is idle; when the node or one
client address is at its connection limit, a new connection closes the longest-idle one (of that address, for
the per-address limit) instead of waiting behind it, as nginx reuses keep-alive connections under pressure.
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

import h11
import msgspec
import structlog
import trio

from node.config import HttpConfig
from node.errors import (
    HeadersTooLarge,
    InvalidRequest,
    MurmurError,
    PayloadTooLarge,
    RequestTimeout,
    Unavailable,
)

_log = structlog.get_logger("murmur.http")

RECEIVE_BYTES = 64 * 1024  # one socket read at most
CHECKPOINT_EVENTS = 256  # h11 events parsed between two yields to the event loop (about 1.5 ms of one-byte chunks)
QUERY_FIELDS_MAX = 100  # parameters in one query string (more: 400)
LINGER_S = 1.0  # after an error that closes the connection, unread input is drained this long (no RST)
LINGER_BYTES_MAX = 64 * 1024 * 1024  # ... and at most this much of it
JSON = "application/json"

_encoder = msgspec.json.Encoder()


class Request(msgspec.Struct, gc=False):
    method: str  # upper case, e.g. "GET"
    path: str  # percent-decoded, without the query string
    query: dict[str, list[str]]  # parse_qs of the query string (blank values kept)
    headers: list[tuple[bytes, bytes]]  # names lower-cased by h11
    body: bytes
    remote: str = ""  # the client's IP address ("" when unknown)

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower case), or None."""
        for k, v in self.headers:
            if k == name:
                return v
        return None


class Response(msgspec.Struct, gc=False):
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: list[tuple[str, str]] = msgspec.field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


class ServerMetrics(Protocol):
    """What the shell reports; node.metrics.HttpMetrics implements it."""

    def connection_opened(self) -> None: ...
    def connection_closed(self) -> None: ...
    def protocol_error(self, status: int) -> None: ...


def error_response(err: MurmurError, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(err.status, _encoder.encode(err.to_dict()), JSON, headers or [])


class _Close(Exception):
    """Internal: stop serving this connection, after sending `response` when it is not None."""

    def __init__(self, response: Response | None) -> None:
        self.response = response


# ---------------------------------------------------------------- slots


class _Slot:
    __slots__ = ("addr", "held", "idle_scope")

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.held = True  # False once released or evicted: counted once either way
        self.idle_scope: trio.CancelScope | None = None  # set while waiting for a request's first byte


class _Slots:
    """Open connections, overall and per client address, and which are idle (oldest first)."""

    def __init__(self, total_max: int, per_address_max: int) -> None:
        self.total_max = total_max
        self.per_address_max = per_address_max
        self.open = 0
        self.by_addr: dict[str, int] = {}
        self.idle: dict[_Slot, None] = {}  # insertion order = idle since
        self._lot = trio.lowlevel.ParkingLot()

    async def wait_for_room(self) -> None:
        """Until a connection may be admitted: a free slot, or an idle connection to close for it."""
        while self.open >= self.total_max and not self.idle:
            await self._lot.park()

    def admit(self, addr: str) -> _Slot | None:
        """A slot for a new connection from `addr`, closing the longest-idle connection where a limit is reached;
        None when `addr` is at its limit with no idle connection (the caller closes the new one)."""
        if self.by_addr.get(addr, 0) >= self.per_address_max:
            victim = next((sl for sl in self.idle if sl.addr == addr), None)
            if victim is None:
                return None
            self._evict(victim)
        if self.open >= self.total_max and self.idle:
            self._evict(next(iter(self.idle)))
        self.open += 1
        self.by_addr[addr] = self.by_addr.get(addr, 0) + 1
        return _Slot(addr)

    def set_idle(self, slot: _Slot, scope: trio.CancelScope) -> None:
        if slot.held:
            slot.idle_scope = scope
            self.idle[slot] = None
            self._lot.unpark_all()  # a waiting accept may now close this one

    def set_busy(self, slot: _Slot) -> None:
        slot.idle_scope = None
        self.idle.pop(slot, None)

    def release(self, slot: _Slot) -> None:
        if slot.held:
            slot.held = False
            self.idle.pop(slot, None)
            self.open -= 1
            left = self.by_addr[slot.addr] - 1
            if left:
                self.by_addr[slot.addr] = left
            else:
                del self.by_addr[slot.addr]
            self._lot.unpark_all()

    def _evict(self, slot: _Slot) -> None:
        scope = slot.idle_scope
        self.release(slot)
        if scope is not None:
            scope.cancel()  # its connection closes quietly, as after an idle timeout


# ---------------------------------------------------------------- entry point


async def serve_http(
    handler: Handler,
    host: str,
    port: int,
    cfg: HttpConfig,
    *,
    metrics: ServerMetrics | None = None,
    ssl_context: ssl.SSLContext | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled (HTTPS with `ssl_context`). Calls `task_status.started(bound_port)` once listening;
    a taken port raises OSError."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as e:
        why = "the port is already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise OSError(e.errno, f"cannot listen for HTTP on {host}:{port}: {why}") from e
    bound = listeners[0].socket.getsockname()[1]
    slots = _Slots(cfg.connections_max, cfg.connections_per_address_max)
    _log.info("http_listening", host=host, port=bound, tls=ssl_context is not None)
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, handler, cfg, slots, metrics, ssl_context)
        task_status.started(bound)


def make_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context with Python's secure defaults (TLS 1.2+); raises OSError / ssl.SSLError on bad files."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


async def _accept_loop(
    listener: trio.SocketListener,
    handler: Handler,
    cfg: HttpConfig,
    slots: _Slots,
    metrics: ServerMetrics | None,
    ssl_context: ssl.SSLContext | None,
) -> None:
    async with listener, trio.open_nursery() as nursery:
        while True:
            # Past the limit with every connection busy, new ones wait in the kernel's accept backlog.
            await slots.wait_for_room()
            try:
                stream = await listener.accept()
            except OSError as e:  # EMFILE and friends: back off instead of spinning; the node stays up
                _log.warning("http_accept_failed", error=str(e))
                await trio.sleep(0.1)
                continue
            addr = _peer_host(stream)
            await slots.wait_for_room()  # the idle connection seen before accept may have become busy
            slot = slots.admit(addr)
            if slot is None:  # this address has connections_per_address_max open, all busy: refused
                await trio.aclose_forcefully(stream)
                continue
            nursery.start_soon(_connection, stream, handler, cfg, slots, slot, metrics, ssl_context)


def _peer_host(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except (OSError, IndexError):
        return ""


# ---------------------------------------------------------------- one connection


class _Conn:
    """What one connection's request loop carries: the h11 state, the stream and this request's wire bytes."""

    __slots__ = ("conn", "received", "remote", "stream")

    def __init__(self, stream: trio.abc.Stream, conn: h11.Connection, remote: str) -> None:
        self.stream, self.conn, self.remote = stream, conn, remote
        self.received = 0  # bytes read from the socket since this request began (head, body, chunk framing)

    async def read(self) -> bytes:
        data = await self.stream.receive_some(RECEIVE_BYTES)
        if not isinstance(data, bytes):
            data = bytes(data)
        self.received += len(data)
        self.conn.receive_data(data)
        return data


async def _connection(
    sock: trio.SocketStream,
    handler: Handler,
    cfg: HttpConfig,
    slots: _Slots,
    slot: _Slot,
    metrics: ServerMetrics | None,
    ssl_context: ssl.SSLContext | None,
) -> None:
    if metrics is not None:
        metrics.connection_opened()
    stream: trio.abc.Stream = sock
    if ssl_context is not None:  # the TLS handshake runs inside the first read, under the header timeout
        stream = trio.SSLStream(sock, ssl_context, server_side=True, https_compatible=True)
    c = _Conn(stream, h11.Connection(h11.SERVER, max_incomplete_event_size=cfg.header_bytes_max), slot.addr)
    try:
        await _serve(c, handler, cfg, slots, slot, metrics)
    except _Close as close:
        if close.response is not None:
            await _send_and_linger(stream, c.conn, close.response, metrics)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the client went away (or broke TLS): nothing to answer
    except Exception:
        _log.exception("http_connection_failed")
    finally:
        slots.release(slot)
        if metrics is not None:
            metrics.connection_closed()
        with trio.move_on_after(1) as cs:
            cs.shield = True
            await trio.aclose_forcefully(stream) if ssl_context is not None else await stream.aclose()


async def _serve(
    c: _Conn,
    handler: Handler,
    cfg: HttpConfig,
    slots: _Slots,
    slot: _Slot,
    metrics: ServerMetrics | None,
) -> None:
    conn = c.conn
    first = True
    while True:
        c.received = 0
        # Idle: wait for the first byte of the next request (a pipelined one may already be buffered). A new
        # connection gets header_timeout_s for it, a kept-alive one idle_timeout_s; either may be closed sooner
        # for a new connection when slots run out.
        if not conn.trailing_data[0]:
            with trio.move_on_after(cfg.header_timeout_s if first else cfg.idle_timeout_s) as idle:
                slots.set_idle(slot, idle)
                data = await c.read()
            slots.set_busy(slot)
            if idle.cancelled_caught or not data:
                return  # idle for too long, evicted, or closed by the client: close quietly
        first = False
        # One deadline covers reading the request and answering it; the head has header_timeout_s at most (one
        # cancel scope whose deadline moves once the head is in: a scope costs the loop, per request).
        head: h11.Request | None = None
        request: Request | None = None
        response: Response | None = None
        began = trio.current_time()
        with trio.CancelScope(deadline=began + min(cfg.header_timeout_s, cfg.request_timeout_s)) as scope:
            head = await _read_head(c, cfg)
            scope.deadline = began + cfg.request_timeout_s
            request = await _read_body(c, cfg, head)
            response = await _call(handler, request)
        if head is None:
            raise _Close(error_response(RequestTimeout(
                f"the request head was not received within {min(cfg.header_timeout_s, cfg.request_timeout_s)} s"
            )))
        if request is None:
            timeout = RequestTimeout(f"the request was not received within {cfg.request_timeout_s} s")
            raise _Close(error_response(timeout))
        if response is None:
            response = error_response(
                Unavailable(f"the request was not answered within {cfg.request_timeout_s} s")
            )
        with trio.move_on_after(cfg.request_timeout_s) as sending:  # a client that never reads holds no slot
            await c.stream.send_all(_encode_response(conn, response, head_only=request.method == "HEAD"))
        if sending.cancelled_caught:
            return
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()


async def _call(handler: Handler, request: Request) -> Response:
    try:
        return await handler(request)
    except MurmurError as e:
        return error_response(e)
    except Exception:
        _log.exception("http_handler_failed", method=request.method, path=request.path)
        return error_response(MurmurError("internal error: the node logged the details"))


async def _next_event(c: _Conn) -> Any:
    while True:
        try:
            event = c.conn.next_event()
        except h11.RemoteProtocolError as e:
            status = e.error_status_hint
            err: MurmurError = (
                HeadersTooLarge("the request head is larger than http.header_bytes_max")
                if status == 431
                else InvalidRequest(f"malformed HTTP request: {e}")
            )
            raise _Close(error_response(err)) from None
        if event is not h11.NEED_DATA:
            return event
        await c.read()


async def _read_head(c: _Conn, cfg: HttpConfig) -> h11.Request:
    event = await _next_event(c)
    if isinstance(event, h11.ConnectionClosed):
        raise _Close(None)
    if not isinstance(event, h11.Request):
        raise _Close(error_response(InvalidRequest("malformed HTTP request")))
    # h11 bounds only a head still incomplete in its buffer; one that arrived whole is measured here.
    if len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers) > cfg.header_bytes_max:
        raise _Close(error_response(HeadersTooLarge("the request head is larger than http.header_bytes_max")))
    names = {k for k, _ in event.headers}
    if b"transfer-encoding" in names and b"content-length" in names:  # the classic smuggling shape (RFC 9112 6.1)
        raise _Close(error_response(InvalidRequest("a request must not carry both Transfer-Encoding and Content-Length")))
    return event


async def _read_body(c: _Conn, cfg: HttpConfig, event: h11.Request) -> Request:
    length = _content_length(event.headers)
    if length is not None and length > cfg.body_bytes_max:
        # Answered before a byte of the body is read; the connection closes so the body is never parsed.
        raise _Close(_too_large(cfg))
    if c.conn.they_are_waiting_for_100_continue:
        await c.stream.send_all(c.conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
    body = bytearray()
    wire_max = cfg.header_bytes_max + cfg.body_bytes_max  # chunk framing counts: 1-byte chunks cost 6 bytes
    events = 0
    while True:
        ev = await _next_event(c)
        events += 1
        if events % CHECKPOINT_EVENTS == 0:
            await trio.lowlevel.checkpoint()  # a flood of tiny chunks never holds the loop (nor gossip) for long
        if isinstance(ev, h11.Data):
            body += ev.data
            if len(body) > cfg.body_bytes_max or c.received > wire_max:
                raise _Close(_too_large(cfg))
        elif isinstance(ev, h11.EndOfMessage):
            break
        else:  # ConnectionClosed mid-body
            raise _Close(None)
    target = event.target.decode("latin-1")
    raw_path, _, raw_query = target.partition("?")
    try:
        query = (
            parse_qs(raw_query, keep_blank_values=True, max_num_fields=QUERY_FIELDS_MAX) if raw_query else {}
        )
    except ValueError:
        raise _Close(
            error_response(InvalidRequest(f"more than {QUERY_FIELDS_MAX} query parameters"))
        ) from None
    return Request(
        method=event.method.decode("ascii", "replace"),
        path=unquote(raw_path) if "%" in raw_path else raw_path,
        query=query,
        headers=list(event.headers),
        body=bytes(body),
        remote=c.remote,
    )


def _content_length(headers: Any) -> int | None:
    for k, v in headers:
        if k == b"content-length":
            return int(v)  # h11 has already checked it is a decimal number
    return None


def _too_large(cfg: HttpConfig) -> Response:
    return error_response(
        PayloadTooLarge(f"the request body is larger than http.body_bytes_max = {cfg.body_bytes_max} bytes")
    )


def _encode_response(conn: h11.Connection, r: Response, head_only: bool = False) -> bytes:
    headers = [("content-type", r.content_type), *r.headers]
    if r.status not in (204, 304):
        headers.append(("content-length", str(len(r.body))))
    out = conn.send(h11.Response(status_code=r.status, headers=headers)) or b""
    if r.body and not head_only:
        out += conn.send(h11.Data(data=r.body)) or b""
    return out + (conn.send(h11.EndOfMessage()) or b"")


async def _send_and_linger(
    stream: trio.abc.Stream, conn: h11.Connection, r: Response, metrics: ServerMetrics | None
) -> None:
    """Send an error that ends the connection, then drain what the client is still sending for a moment:
    closing with unread input would reset the connection and the client could lose the answer."""
    if metrics is not None:
        metrics.protocol_error(r.status)
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return  # a response is already under way: nothing valid can be added
    r.headers.append(("connection", "close"))
    with trio.move_on_after(LINGER_S):
        await stream.send_all(_encode_response(conn, r))
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()  # TLS has no half-close: its reader sees the close after the drain instead
        drained = 0
        while drained < LINGER_BYTES_MAX:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                break
            drained += len(data)
