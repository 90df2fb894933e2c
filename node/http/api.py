"""The public HTTP API (CONTRACT §2): routes each request to the Coordinator and renders its answer or error.

It validates and translates, nothing more: it never touches an index, a file or another node, and it never lets a
client's input reach the Coordinator unvalidated. Every MurmurError becomes its status and JSON body here, once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
import trio
import trio.lowlevel

from node import reqid
from node.config import AuthConfig, HttpConfig
from node.coordinator import COUNT_MAX, Coordinator, ResultType, SearchRequest
from node.errors import (
    InvalidField,
    InvalidJSON,
    InvalidQuery,
    MissingField,
    MurmurError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from node.http.admission import Admission
from node.http.auth import Access, route_role
from node.http.openapi import build_openapi
from node.http.page import STATIC_FILES, static_response
from node.http.schema import (
    BulkItem,
    BulkResponse,
    ErrorDetail,
    SearchMetadata,
    SearchResponse,
    SearchResponseRendered,
    TrendOut,
    TrendsResponse,
)
from node.http.server import Handler, Request, Response, error_response
from node.http.stats import NodeFigures, build_stats, figures_from_samples
from node.metrics import HttpMetrics
from node.model import TweetIn, format_time, parse_id, parse_patch, parse_time, parse_tweet_in, render
from node.query.ast import Query
from node.query.parser import parse

_log = structlog.get_logger("murmur.http")

WINDOWS_S = {"5m": 300, "1h": 3600, "24h": 86400}
TRENDS_COUNT_MAX = 50
TRENDS_COUNT_DEFAULT = 10
RESULT_TYPES: tuple[ResultType, ...] = ("recent", "popular", "mixed")
SLOW_REQUEST_S = 1.0  # a request slower than this, or any 5xx, is logged at info; every other one at debug
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON_TYPES = frozenset({"application/json"})
BULK_TYPES = frozenset({"application/x-ndjson", "application/json", "text/plain"})
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
)  # metric labels stay bounded

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

Endpoint = Callable[[Request, int], Awaitable[Response]]


def _json(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, _encoder.encode(obj), "application/json", headers or [])


def _decode(body: bytes) -> Any:
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as e:
        raise InvalidJSON(f"the body is not valid JSON: {e}") from None
    except RecursionError:  # msgspec's answer to nesting past about 1,000 levels
        raise InvalidJSON("the body is nested too deeply") from None


def _check_type(req: Request, allowed: frozenset[str]) -> None:
    raw = req.header(b"content-type")
    if raw is None:
        return
    media = raw.split(b";", 1)[0].strip().lower().decode("latin-1")
    if media not in allowed:
        raise UnsupportedMediaType(
            f"Content-Type {media!r} is not accepted here; use {' or '.join(sorted(allowed))}"
        )


def _param(req: Request, name: str) -> str | None:
    values = req.query.get(name)
    return values[0] if values else None


def _int_param(req: Request, name: str, lo: int, hi: int, default: int) -> int:
    raw = _param(req, name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20 or not lo <= int(raw) <= hi:
        raise InvalidField(f"{name} must be an integer between {lo} and {hi}", name)
    return int(raw)


def _id_param(req: Request, name: str) -> int | None:
    raw = _param(req, name)
    return None if raw is None else parse_id(raw, name)


def _detail(e: MurmurError) -> ErrorDetail:
    return ErrorDetail(code=e.code, message=e.message, field=e.field)


def _parse(q: str) -> Query:
    try:
        return parse(q)
    except InvalidQuery as e:
        if e.field is None:
            raise InvalidQuery(e.message, "q") from None
        raise


class _Api:
    def __init__(
        self,
        coord: Coordinator,
        metrics: HttpMetrics,
        cfg: HttpConfig,
        node_name: str,
        auth: AuthConfig,
        admin_routes: dict[str, dict[str, Handler]],
        now_ms: Callable[[], int],
        figures: Callable[[], NodeFigures] | None,
    ) -> None:
        self.coord = coord
        self.metrics = metrics
        self.cfg = cfg
        self.node_name = node_name
        self.access = Access(auth)
        self.searches = Admission("search", cfg.search_inflight_max, cfg.search_queue_max, cfg.search_queue_timeout_s)
        self.now_ms = now_ms
        self.figures = figures
        self.started_s = time.monotonic()
        self.openapi = _encoder.encode(build_openapi())
        metrics.collect_from(coord.metrics_samples)
        # path -> (route label, method -> endpoint); /tweets/{id} is matched apart
        self.routes: dict[str, dict[str, Endpoint]] = {
            "/tweets": {"POST": self.create},
            "/tweets/bulk": {"POST": self.bulk},
            "/search": {"GET": self.search},
            "/trends": {"GET": self.trends},
            "/cluster": {"GET": self.cluster},
            "/health": {"GET": self.health},
            "/metrics": {"GET": self.prometheus},
            "/openapi.json": {"GET": self.openapi_json},
            "/stats": {"GET": self.stats},
            **{path: {"GET": self.page} for path in STATIC_FILES},  # the search page (node/http/static)
        }
        for path, handlers in admin_routes.items():  # cluster operations of the node (app.py): admin role
            assert path.startswith("/admin/"), path
            self.routes[path] = {m: _plain(h) for m, h in handlers.items()}
        self.tweet_routes: dict[str, Endpoint] = {"GET": self.get, "PATCH": self.patch, "DELETE": self.delete}

    async def handle(self, req: Request) -> Response:
        rid = reqid.from_header(req.header(b"x-request-id"))
        with reqid.bound(rid):
            response = await self._handle(req)
        response.headers.append(("x-request-id", rid))
        return response

    async def _handle(self, req: Request) -> Response:
        started = time.perf_counter()
        path = req.path
        tweet_id = 0
        methods = self.routes.get(path)
        route = path
        if methods is None:
            if path.startswith("/tweets/") and path[8:] and "/" not in path[8:]:
                route, methods = "/tweets/{id}", self.tweet_routes
            else:
                route = "unknown"
        method = req.method if req.method in _METHODS else "other"
        try:
            # the one place access is checked, before anything else: a caller without the role learns nothing
            self.access.check(route_role(route, req.method), req.header(b"authorization"), req.remote)
            if methods is None:
                raise NotFound(f"no such endpoint: {path}")
            endpoint = methods.get("GET" if method == "HEAD" else method)
            if endpoint is None:
                allow = ", ".join(sorted({*methods, "HEAD"} if "GET" in methods else methods))
                response = _json(
                    405,
                    {
                        "error": {
                            "code": "method_not_allowed",
                            "message": f"{path} accepts {allow}",
                            "field": None,
                        }
                    },
                    [("allow", allow)],
                )
            else:
                if route == "/tweets/{id}":
                    tweet_id = parse_id(path[8:], "id")
                response = await endpoint(req, tweet_id)
        except MurmurError as e:
            retry = [("retry-after", str(e.retry_after_s))] if isinstance(e, Overloaded) else None
            response = error_response(e, retry)
            self.metrics.error(e.code)
        except Exception:
            _log.exception("http_handler_failed", method=req.method, path=path)
            response = error_response(MurmurError("internal error: the node logged the details"))
            self.metrics.error("internal")
        elapsed = time.perf_counter() - started
        self.metrics.observe(route, method, response.status, elapsed)
        if response.status >= 500 or elapsed > SLOW_REQUEST_S:
            _log.info("http_request", method=method, route=route, status=response.status, ms=round(elapsed * 1000, 3))
        else:
            _log.debug("http_request", method=method, route=route, status=response.status, ms=round(elapsed * 1000, 3))
        return response

    # ------------------------------------------------------------ tweets

    async def create(self, req: Request, _: int) -> Response:
        _check_type(req, JSON_TYPES)
        tweet_in = parse_tweet_in(_decode(req.body))
        created = await self.coord.create_tweet(tweet_in)
        self.metrics.ingested()
        t = created.tweet
        if created.created:
            return _json(201, render(t), [("location", f"/tweets/{t.id}")])
        return _json(200, render(t))

    async def bulk(self, req: Request, _: int) -> Response:
        _check_type(req, BULK_TYPES)
        lines = [(i, raw) for i, raw in enumerate(req.body.split(b"\n"), 1) if raw.strip()]
        if len(lines) > self.cfg.bulk_lines_max:
            raise PayloadTooLarge(
                f"{len(lines)} lines is more than http.bulk_lines_max = {self.cfg.bulk_lines_max} per request"
            )
        items: list[BulkItem] = []
        valid: list[TweetIn] = []
        slots: list[int] = []  # index in items of each valid line
        for lineno, raw in lines:
            if lineno % 256 == 0:
                await trio.lowlevel.checkpoint()  # a big bulk does not hold the node's other requests up
            try:
                valid.append(parse_tweet_in(_decode(raw)))
                slots.append(len(items))
                items.append(BulkItem(line=lineno, status=0))
            except MurmurError as e:
                items.append(BulkItem(line=lineno, status=e.status, error=_detail(e)))
        results = await self.coord.bulk_create(valid) if valid else []
        assert len(results) == len(valid), "bulk_create must answer every item"
        ingested = 0
        for slot, res in zip(slots, results, strict=True):
            item = items[slot]
            if isinstance(res, MurmurError):
                item.status, item.error = res.status, _detail(res)
            else:
                item.status, item.id = (201 if res.created else 200), res.tweet.id
                ingested += 1
        self.metrics.ingested(ingested)
        return _json(200, BulkResponse(ingested=ingested, failed=len(items) - ingested, items=items))

    async def get(self, req: Request, tweet_id: int) -> Response:
        return _json(200, render(await self.coord.get_tweet(tweet_id)))

    async def patch(self, req: Request, tweet_id: int) -> Response:
        _check_type(req, JSON_TYPES)
        patch = parse_patch(_decode(req.body))
        return _json(200, render(await self.coord.patch_tweet(tweet_id, patch)))

    async def delete(self, req: Request, tweet_id: int) -> Response:
        await self.coord.delete_tweet(tweet_id)
        return Response(204, b"")

    # ------------------------------------------------------------ search and trends

    async def search(self, req: Request, _: int) -> Response:
        q = _param(req, "q")
        if q is None:
            raise MissingField("q is required", "q")
        if not q.strip():
            raise InvalidQuery("q must not be empty", "q")
        count = _int_param(req, "count", 1, COUNT_MAX, COUNT_MAX)
        max_id = _id_param(req, "max_id")
        since_id = _id_param(req, "since_id")
        result_type = _param(req, "result_type") or "recent"
        if result_type not in RESULT_TYPES:
            raise InvalidField("result_type must be recent, popular or mixed", "result_type")
        explain_raw = (_param(req, "explain") or "false").lower()
        if explain_raw not in ("true", "false", "1", "0"):
            raise InvalidField("explain must be true or false", "explain")
        explain = explain_raw in ("true", "1")
        query = _parse(q)
        started = time.perf_counter()
        async with self.searches.enter():  # its own bounded lane: 429 beyond it, writes never wait here
            result = await self.coord.search(
                SearchRequest(
                    query=query,
                    count=count,
                    max_id=max_id,
                    since_id=since_id,
                    result_type=result_type,  # type: ignore[arg-type]  # checked against RESULT_TYPES above
                    explain=True,  # stages are timed anyway: always kept for the stage histograms
                    render=True,
                )
            )
        if result.stages:
            self.metrics.search_stages(result.stages)
        nxt = result.next_max_id
        meta = SearchMetadata(
            query=q,
            count=count,
            result_type=result_type,
            next_max_id=nxt,
            partial=result.partial,
            completed_in_ms=round((time.perf_counter() - started) * 1000, 3),
            coordinator=self.node_name,
            next_max_id_str=None if nxt is None else str(nxt),
            stages=result.stages if explain else None,
        )
        if result.rendered is not None:
            return _json(200, SearchResponseRendered(statuses=result.rendered, search_metadata=meta))
        return _json(200, SearchResponse(statuses=[render(t) for t in result.tweets], search_metadata=meta))

    async def trends(self, req: Request, _: int) -> Response:
        window = _param(req, "window") or "1h"
        if window not in WINDOWS_S:
            raise InvalidField("window must be 5m, 1h or 24h", "window")
        count = _int_param(req, "count", 1, TRENDS_COUNT_MAX, TRENDS_COUNT_DEFAULT)
        as_of = _param(req, "as_of")
        now = self.now_ms() if as_of is None else parse_time(as_of, "as_of")
        trends = await self.coord.trends(WINDOWS_S[window], count, now)
        out = [TrendOut(hashtag=t.hashtag, count=t.count, score=t.score) for t in trends]
        return _json(200, TrendsResponse(trends=out, window=window, as_of=format_time(now)))

    # ------------------------------------------------------------ the node itself

    async def cluster(self, req: Request, _: int) -> Response:
        return _json(200, self.coord.cluster_view())

    async def health(self, req: Request, _: int) -> Response:
        return _json(200, self.coord.health())

    async def prometheus(self, req: Request, _: int) -> Response:
        return Response(200, self.metrics.render().encode(), METRICS_CONTENT_TYPE)

    async def openapi_json(self, req: Request, _: int) -> Response:
        return Response(200, self.openapi, "application/json")

    async def stats(self, req: Request, _: int) -> Response:
        figures = self.figures() if self.figures is not None else figures_from_samples(self.coord.metrics_samples())
        body = build_stats(self.node_name, time.monotonic() - self.started_s, self.metrics, figures)
        # read by the page of any other node of the cluster (a simple GET: no credentials, no preflight)
        return _json(200, body, [("access-control-allow-origin", "*")])

    async def page(self, req: Request, _: int) -> Response:
        return static_response(req.path)


def _plain(h: Handler) -> Endpoint:
    async def endpoint(req: Request, _: int) -> Response:
        return await h(req)

    return endpoint


def make_handler(
    coord: Coordinator,
    metrics: HttpMetrics,
    cfg: HttpConfig,
    node_name: str,
    *,
    auth: AuthConfig | None = None,
    admin_routes: dict[str, dict[str, Handler]] | None = None,
    now_ms: Callable[[], int] | None = None,
    figures: Callable[[], NodeFigures] | None = None,
) -> Handler:
    """The request handler for `serve_http`. `auth`: keys and roles (default: none, so loopback may do anything);
    `admin_routes`: path under /admin/ -> method -> handler, for the node's cluster operations (admin role);
    `now_ms` is the wall clock in milliseconds (for /trends), injectable for tests; `figures` gives this node's
    figures for /stats cheaply (default: read from coord.metrics_samples())."""
    clock = now_ms or (lambda: int(time.time() * 1000))
    return _Api(coord, metrics, cfg, node_name, auth or AuthConfig(), admin_routes or {}, clock, figures).handle
