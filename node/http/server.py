"""The thin HTTP/1.1 shell: h11 parses, trio moves bytes, `handler(Request) -> Response` decides everything else.

It enforces the limits of HttpConfig (body, head, request time, idle keep-alive, open connections) and turns every
protocol failure into the contract's JSON error. It must never know a route, and never let a client crash the node.
"""

from __future__ import annotations

import errno
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


# ---------------------------------------------------------------- entry point


async def serve_http(
    handler: Handler,
    host: str,
    port: int,
    cfg: HttpConfig,
    *,
    metrics: ServerMetrics | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled. Calls `task_status.started(bound_port)` once listening; a taken port raises OSError."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as e:
        why = "the port is already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise OSError(e.errno, f"cannot listen for HTTP on {host}:{port}: {why}") from e
    bound = listeners[0].socket.getsockname()[1]
    # Excess connections stay in the kernel's accept backlog until a slot frees: they wait, nobody is reset.
    slots = trio.Semaphore(cfg.connections_max)
    _log.info("http_listening", host=host, port=bound)
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, handler, cfg, slots, metrics)
        task_status.started(bound)


async def _accept_loop(
    listener: trio.SocketListener,
    handler: Handler,
    cfg: HttpConfig,
    slots: trio.Semaphore,
    metrics: ServerMetrics | None,
) -> None:
    async with listener, trio.open_nursery() as nursery:
        while True:
            await slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as e:  # EMFILE and friends: back off instead of spinning; the node stays up
                slots.release()
                _log.warning("http_accept_failed", error=str(e))
                await trio.sleep(0.1)
                continue
            except BaseException:
                slots.release()
                raise
            nursery.start_soon(_connection, stream, handler, cfg, slots, metrics)


# ---------------------------------------------------------------- one connection


async def _connection(
    stream: trio.SocketStream,
    handler: Handler,
    cfg: HttpConfig,
    slots: trio.Semaphore,
    metrics: ServerMetrics | None,
) -> None:
    if metrics is not None:
        metrics.connection_opened()
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=cfg.header_bytes_max)
    try:
        await _serve(stream, conn, handler, cfg, metrics)
    except _Close as c:
        if c.response is not None:
            await _send_and_linger(stream, conn, c.response, metrics)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the client went away: nothing to answer
    except Exception:
        _log.exception("http_connection_failed")
    finally:
        slots.release()
        if metrics is not None:
            metrics.connection_closed()
        with trio.move_on_after(1) as cs:
            cs.shield = True
            await stream.aclose()


async def _serve(
    stream: trio.SocketStream,
    conn: h11.Connection,
    handler: Handler,
    cfg: HttpConfig,
    metrics: ServerMetrics | None,
) -> None:
    while True:
        # Idle: wait for the first byte of the next request (a pipelined one may already be buffered).
        if not conn.trailing_data[0]:
            with trio.move_on_after(cfg.idle_timeout_s):
                data = await stream.receive_some(RECEIVE_BYTES)
                conn.receive_data(data)
                if not data:
                    return
            if not conn.trailing_data[0] and not conn.trailing_data[1]:
                return  # idle for too long: close quietly, as every keep-alive server does
        # One deadline covers reading the request and answering it; where it struck decides the error.
        request: Request | None = None
        response: Response | None = None
        with trio.move_on_after(cfg.request_timeout_s):
            request = await _read_request(stream, conn, cfg)
            response = await _call(handler, request)
        if request is None:
            timeout = RequestTimeout(f"the request was not received within {cfg.request_timeout_s} s")
            raise _Close(error_response(timeout))
        if response is None:
            response = error_response(
                Unavailable(f"the request was not answered within {cfg.request_timeout_s} s")
            )
        with trio.move_on_after(cfg.request_timeout_s) as sending:  # a client that never reads holds no slot
            await stream.send_all(_encode_response(conn, response, head_only=request.method == "HEAD"))
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


async def _next_event(stream: trio.SocketStream, conn: h11.Connection) -> Any:
    while True:
        try:
            event = conn.next_event()
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
        conn.receive_data(await stream.receive_some(RECEIVE_BYTES))


async def _read_request(stream: trio.SocketStream, conn: h11.Connection, cfg: HttpConfig) -> Request:
    event = await _next_event(stream, conn)
    if isinstance(event, h11.ConnectionClosed):
        raise _Close(None)
    if not isinstance(event, h11.Request):
        raise _Close(error_response(InvalidRequest("malformed HTTP request")))
    # h11 bounds only a head still incomplete in its buffer; one that arrived whole is measured here.
    if len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers) > cfg.header_bytes_max:
        raise _Close(error_response(HeadersTooLarge("the request head is larger than http.header_bytes_max")))
    length = _content_length(event.headers)
    if length is not None and length > cfg.body_bytes_max:
        # Answered before a byte of the body is read; the connection closes so the body is never parsed.
        raise _Close(_too_large(cfg))
    if conn.they_are_waiting_for_100_continue:
        await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
    chunks: list[bytes] = []
    size = 0
    while True:
        ev = await _next_event(stream, conn)
        if isinstance(ev, h11.Data):
            size += len(ev.data)
            if size > cfg.body_bytes_max:
                raise _Close(_too_large(cfg))
            chunks.append(ev.data)
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
        body=b"".join(chunks),
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
    stream: trio.SocketStream, conn: h11.Connection, r: Response, metrics: ServerMetrics | None
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
        await stream.send_eof()
        drained = 0
        while drained < LINGER_BYTES_MAX:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                break
            drained += len(data)
