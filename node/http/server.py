"""The thin HTTP/1.1 shell: httptools (llhttp, the parser of Node.js and uvicorn) parses, trio moves bytes, and
`handler(Request) -> Response` decides everything else.

It enforces the limits of HttpConfig (bytes on the wire, head, first byte and request times, idle keep-alive, open
connections overall and per client address) and turns every protocol failure into the contract's JSON error.
It must never know a route, never let a client crash the node, and never parse for long without a checkpoint.
Slots: a connection waiting for the first byte of a request (new or kept alive) is idle; when the node or one
client address is at its connection limit, a new connection closes the longest-idle one (of that address, for
the per-address limit) instead of waiting behind it, as nginx reuses keep-alive connections under pressure.
"""

from __future__ import annotations

import errno
import re
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

import httptools
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
FEED_BYTES = 16 * 1024  # bytes given to the parser between two yields to the event loop (~0.6 ms of one-byte chunks)
QUERY_FIELDS_MAX = 100  # parameters in one query string (more: 400)
LINGER_S = 1.0  # after an error that closes the connection, unread input is drained this long (no RST)
LINGER_BYTES_MAX = 64 * 1024 * 1024  # ... and at most this much of it
JSON = "application/json"

_encoder = msgspec.json.Encoder()


class Request(msgspec.Struct, gc=False):
    method: str  # upper case, e.g. "GET"
    path: str  # percent-decoded, without the query string
    query: dict[str, list[str]]  # parse_qs of the query string (blank values kept)
    headers: list[tuple[bytes, bytes]]  # names lower-cased
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


class _Message:
    """One request as httptools' callbacks build it: the head, then the body (or that it was too large)."""

    __slots__ = ("body", "chunked", "done", "head_done", "headers", "keep_alive", "method", "target", "too_large",
                 "version")

    def __init__(self) -> None:
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.method = ""
        self.version = "1.1"
        self.keep_alive = True
        self.head_done = False
        self.body = bytearray()
        self.too_large = False  # the body passed body_bytes_max: no more of it is kept
        self.chunked = False
        self.done = False


class _Conn:
    """One connection's parser state (httptools calls the on_* methods from feed_data), its stream, the requests
    parsed so far (pipelined ones queue up) and this request's wire bytes."""

    __slots__ = ("body_max", "error", "head_bytes", "messages", "parser", "received", "remote", "stream",
                 "upgrade")

    def __init__(self, stream: trio.abc.Stream, remote: str, body_max: int) -> None:
        self.stream, self.remote, self.body_max = stream, remote, body_max
        self.parser = httptools.HttpRequestParser(self)
        self.messages: deque[_Message] = deque()  # the oldest is the one being served
        self.received = 0  # bytes read from the socket since this request began (head, body, chunk framing)
        self.head_bytes = 0  # bytes read while the newest request's head was still incomplete
        self.error: str | None = None  # the parser's reason, once the stream is malformed (nothing more parses)
        self.upgrade = False  # an Upgrade request: answered as a plain one, then the connection closes

    # httptools' callbacks
    def on_message_begin(self) -> None:
        self.messages.append(_Message())

    def on_url(self, url: bytes) -> None:
        m = self.messages[-1]
        m.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.messages[-1].headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        m = self.messages[-1]
        p = self.parser
        m.method = p.get_method().decode("ascii", "replace")
        m.version = p.get_http_version()
        m.keep_alive = p.should_keep_alive() and m.version == "1.1"
        m.head_done = True
        self.head_bytes = 0

    def on_body(self, data: bytes) -> None:
        m = self.messages[-1]
        if not m.too_large:
            m.body += data
            if len(m.body) > self.body_max:
                m.too_large = True
                m.body = bytearray()

    def on_chunk_header(self) -> None:
        self.messages[-1].chunked = True

    def on_message_complete(self) -> None:
        self.messages[-1].done = True

    async def read(self) -> bytes:
        """One socket read, fed to the parser FEED_BYTES at a time with a checkpoint between (a flood of tiny
        chunks never holds the loop, nor gossip, for long). b"" at EOF."""
        data = await self.stream.receive_some(RECEIVE_BYTES)
        if not isinstance(data, bytes):
            data = bytes(data)
        self.received += len(data)
        if self.error is not None or not data:
            return data
        for at in range(0, len(data), FEED_BYTES):
            if at:
                await trio.lowlevel.checkpoint()
            piece = data[at:at + FEED_BYTES] if len(data) > FEED_BYTES else data
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                self.upgrade = True  # what follows the head is not HTTP: nothing more is parsed
                self.error = "an Upgrade request: the protocol switch is not supported"
                break
            except httptools.HttpParserError as e:
                self.error = str(e) or type(e).__name__
                break
            m = self.messages[-1] if self.messages else None
            if m is None or not m.head_done:
                self.head_bytes += len(piece)
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
    c = _Conn(stream, slot.addr, cfg.body_bytes_max)
    try:
        await _serve(c, handler, cfg, slots, slot, metrics)
    except _Close as close:
        if close.response is not None:
            await _send_and_linger(stream, close.response, metrics)
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
    first = True
    while True:
        c.received = 0
        # Idle: wait for the first byte of the next request (a pipelined one may already be parsed). A new
        # connection gets header_timeout_s for it, a kept-alive one idle_timeout_s; either may be closed sooner
        # for a new connection when slots run out.
        if not c.messages and c.error is None:
            with trio.move_on_after(cfg.header_timeout_s if first else cfg.idle_timeout_s) as idle:
                slots.set_idle(slot, idle)
                data = await c.read()
            slots.set_busy(slot)
            if idle.cancelled_caught or not data:
                return  # idle for too long, evicted, or closed by the client: close quietly
        first = False
        # One deadline covers reading the request and answering it; the head has header_timeout_s at most (one
        # cancel scope whose deadline moves once the head is in: a scope costs the loop, per request).
        msg: _Message | None = None
        request: Request | None = None
        response: Response | None = None
        began = trio.current_time()
        with trio.CancelScope(deadline=began + min(cfg.header_timeout_s, cfg.request_timeout_s)) as scope:
            msg = await _read_head(c, cfg)
            scope.deadline = began + cfg.request_timeout_s
            request = await _read_body(c, cfg, msg)
            response = await _call(handler, request)
        if msg is None:
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
        c.messages.popleft()
        keep = msg.keep_alive and not c.upgrade
        with trio.move_on_after(cfg.request_timeout_s) as sending:  # a client that never reads holds no slot
            await c.stream.send_all(_encode_response(response, head_only=request.method == "HEAD", close=not keep))
        if sending.cancelled_caught or not keep:
            return


async def _call(handler: Handler, request: Request) -> Response:
    try:
        return await handler(request)
    except MurmurError as e:
        return error_response(e)
    except Exception:
        _log.exception("http_handler_failed", method=request.method, path=request.path)
        return error_response(MurmurError("internal error: the node logged the details"))


async def _more(c: _Conn) -> None:
    """Read more of the request; raises _Close on a malformed stream or when the client closed mid-request."""
    data = await c.read() if c.error is None else b""
    if c.error is not None:
        raise _Close(error_response(InvalidRequest(f"malformed HTTP request: {c.error}")))
    if not data:
        raise _Close(None)  # EOF mid-request: nobody to answer


async def _read_head(c: _Conn, cfg: HttpConfig) -> _Message:
    while not (c.messages and c.messages[0].head_done):
        if c.head_bytes > cfg.header_bytes_max:
            raise _Close(error_response(HeadersTooLarge("the request head is larger than http.header_bytes_max")))
        await _more(c)
    m = c.messages[0]
    # The bound above is of a head still arriving; one that arrived whole is measured here.
    if len(m.target) + sum(len(k) + len(v) + 4 for k, v in m.headers) > cfg.header_bytes_max:
        raise _Close(error_response(HeadersTooLarge("the request head is larger than http.header_bytes_max")))
    names = {k for k, _ in m.headers}
    if b"transfer-encoding" in names and b"content-length" in names:  # the classic smuggling shape (RFC 9112 6.1)
        raise _Close(error_response(InvalidRequest("a request must not carry both Transfer-Encoding and Content-Length")))
    if m.version == "1.1" and b"host" not in names:  # RFC 9112 3.2
        raise _Close(error_response(InvalidRequest("malformed HTTP request: an HTTP/1.1 request needs a Host header")))
    return m


async def _read_body(c: _Conn, cfg: HttpConfig, m: _Message) -> Request:
    length = _content_length(m.headers)
    if length is not None and length > cfg.body_bytes_max:
        # Answered before a byte of the body is read; the connection closes so the body is never parsed.
        raise _Close(_too_large(cfg))
    if not m.done and not m.body and m.version == "1.1" and _header(m.headers, b"expect") == b"100-continue":
        await c.stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
    wire_max = cfg.header_bytes_max + cfg.body_bytes_max  # chunk framing counts: 1-byte chunks cost 6 bytes
    while not m.done:
        if m.too_large or c.received > wire_max:
            raise _Close(_too_large(cfg))
        await _more(c)
    if m.too_large or (m.chunked and c.received > wire_max):
        raise _Close(_too_large(cfg))
    target = m.target.decode("latin-1")
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
        method=m.method,
        path=unquote(raw_path) if "%" in raw_path else raw_path,
        query=query,
        headers=m.headers,
        body=bytes(m.body),
        remote=c.remote,
    )


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header `name` (lower case), lower-cased, or None."""
    for k, v in headers:
        if k == name:
            return v.lower()
    return None


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    v = _header(headers, b"content-length")
    return None if v is None else int(v)  # the parser has already checked it is one decimal number


def _too_large(cfg: HttpConfig) -> Response:
    return error_response(
        PayloadTooLarge(f"the request body is larger than http.body_bytes_max = {cfg.body_bytes_max} bytes")
    )


_STATUS_LINES: dict[int, bytes] = {}
_BAD_HEADER_CHARS = re.compile(r"[\r\n\x00]")


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")
    return line


def _encode_response(r: Response, head_only: bool = False, close: bool = False) -> bytes:
    """The response's bytes on the wire. Header names and values come from the node, never raw from a client;
    one with a line break or NUL in it is dropped (it would split the head)."""
    parts = [f"content-type: {r.content_type}\r\n"]
    for k, v in r.headers:
        line = f"{k}: {v}\r\n"
        if _BAD_HEADER_CHARS.search(line, 0, len(line) - 2) is None:
            parts.append(line)
    if r.status not in (204, 304) and r.status >= 200:
        parts.append(f"content-length: {len(r.body)}\r\n")
    if close and not any(k.lower() == "connection" for k, _ in r.headers):
        parts.append("connection: close\r\n")
    head = _status_line(r.status) + "".join(parts).encode("latin-1", "replace") + b"\r\n"
    return head if head_only or not r.body else head + r.body


async def _send_and_linger(stream: trio.abc.Stream, r: Response, metrics: ServerMetrics | None) -> None:
    """Send an error that ends the connection, then drain what the client is still sending for a moment:
    closing with unread input would reset the connection and the client could lose the answer."""
    if metrics is not None:
        metrics.protocol_error(r.status)
    with trio.move_on_after(LINGER_S):
        await stream.send_all(_encode_response(r, close=True))
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()  # TLS has no half-close: its reader sees the close after the drain instead
        drained = 0
        while drained < LINGER_BYTES_MAX:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                break
            drained += len(data)
