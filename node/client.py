"""A Python client of Murmur's public HTTP API (CONTRACT §2), sync (`Client`) and async (`AsyncClient`, on anyio:
trio or asyncio), on httpx. Every answer is decoded into the msgspec structs the node encodes.

Retries are bounded and never duplicate a write: a request is resent after a 503 or a lost answer only when it is
idempotent (GET, PATCH, DELETE, a create that carries its `id`, bulk lines that carry theirs); a 429 is resent
after its Retry-After (the node changed nothing); a connection that could not be opened sent nothing, so any
request may be tried again. The retry decisions are pure functions; the two clients only do the I/O.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import httpx
import msgspec
from anyio.abc import ObjectReceiveStream

from node.http.schema import (
    BulkItem,
    ClusterView,
    ErrorDetail,
    Health,
    SearchResponse,
    StatsResponse,
    TrendsResponse,
)
from node.model import TweetOut

TIMEOUT = httpx.Timeout(connect=5.0, read=120.0, write=60.0, pool=None)
RETRIES_MAX = 6  # resends of one request at most (503, 429, connection failures)
BACKOFF_FIRST_S = 0.5  # wait before the first resend after a 503 or a connection failure; doubles each time ...
BACKOFF_MAX_S = 8.0  # ... up to this
RETRY_AFTER_MAX_S = 60.0  # a Retry-After longer than this is cut to it
BULK_BATCH = 1000  # tweets per POST /tweets/bulk in bulk_load
BULK_CONCURRENCY = 4  # bulks in flight in bulk_load
PAGES_MAX = 10_000  # search_pages stops after this many pages whatever the node says
NDJSON = {"content-type": "application/x-ndjson"}
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})

T = TypeVar("T")
S = TypeVar("S")
_encode = msgspec.json.Encoder().encode


class ApiError(Exception):
    """An error answer of the node ({"error": {code, message, field}}), or status 0 when none came."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, retry_after_s: float | None = None):
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status, self.code, self.message, self.field = status, code, message, field
        self.retry_after_s = retry_after_s


class Unreachable(ApiError):
    """No answer: the connection failed (code connection_failed) or broke after sending (transport_error)."""


class BulkResult(msgspec.Struct):
    """The outcome of one `bulk` call: `items[i]` answers `tweets[i]` (line i + 1) after every retry and split.
    An item with status 0 was never answered (its error says why)."""

    ingested: int
    failed: int
    items: list[BulkItem]
    responses: int  # HTTP answers received for it (0: nothing reached the node)


class BulkTotals(msgspec.Struct):
    ingested: int = 0
    failed: int = 0
    batches: int = 0
    responses: int = 0


# ---------------------------------------------------------------- the pure part: requests and retry decisions


class Call(msgspec.Struct):
    method: str
    path: str
    params: dict[str, str] | None = None
    content: bytes | None = None
    headers: dict[str, str] | None = None
    idempotent: bool = True  # may be resent after a 503 or a lost answer


def backoff_s(attempt: int, first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S) -> float:
    return min(first_s * 2**attempt, max_s)


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), capped at RETRY_AFTER_MAX_S; None when absent or bad."""
    if value is None:
        return None
    v = value.strip()
    if v.isdigit():
        return min(float(v), RETRY_AFTER_MAX_S)
    try:
        when = email.utils.parsedate_to_datetime(v).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, min(when - (time.time() if now is None else now), RETRY_AFTER_MAX_S))


def error_of(resp: httpx.Response) -> ApiError:
    ra = retry_after_s(resp.headers.get("retry-after"))
    try:
        err = msgspec.json.decode(resp.content)["error"]
        return ApiError(resp.status_code, str(err["code"]), str(err.get("message", "")), err.get("field"), ra)
    except (msgspec.DecodeError, KeyError, TypeError):
        return ApiError(resp.status_code, f"http_{resp.status_code}", resp.text[:300], None, ra)


def on_response(
    call: Call, resp: httpx.Response, attempt: int, retries: int, first_s: float = BACKOFF_FIRST_S
) -> float | None:
    """None: this answer is final (success or error); else the seconds to wait before sending `call` again."""
    if attempt >= retries:
        return None
    if resp.status_code == 429:  # shed before anything changed: always safe
        ra = retry_after_s(resp.headers.get("retry-after"))
        return backoff_s(attempt, first_s) if ra is None else ra
    if resp.status_code == 503 and call.idempotent:
        ra = retry_after_s(resp.headers.get("retry-after"))
        return backoff_s(attempt, first_s) if ra is None else ra
    return None


def on_transport_error(
    call: Call, err: httpx.TransportError, attempt: int, retries: int, first_s: float = BACKOFF_FIRST_S
) -> float | None:
    """None: give up (raise); else the seconds to wait. A failed connect sent nothing; a lost answer may have
    been applied, so only an idempotent call is sent again."""
    if attempt >= retries:
        return None
    if isinstance(err, httpx.ConnectError | httpx.ConnectTimeout) or call.idempotent:
        return backoff_s(attempt, first_s)
    return None


def unreachable(err: httpx.TransportError) -> Unreachable:
    code = "connection_failed" if isinstance(err, httpx.ConnectError | httpx.ConnectTimeout) else "transport_error"
    return Unreachable(0, code, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)


def _params(**kw: Any) -> dict[str, str]:
    out = {}
    for k, v in kw.items():
        if v is None or v is False:
            continue
        out[k] = "true" if v is True else str(v)
    return out


def _tweet_body(text: str, user: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {"text": text, "user": user, **{k: v for k, v in fields.items() if v is not None}}


def _line(tweet: Mapping[str, Any] | bytes) -> bytes:
    return tweet if isinstance(tweet, bytes) else _encode(tweet)


def _has_id(tweet: Mapping[str, Any] | bytes) -> bool:
    if isinstance(tweet, bytes):
        try:
            got = msgspec.json.decode(tweet)
        except msgspec.DecodeError:
            return False
        return isinstance(got, dict) and got.get("id") is not None
    return tweet.get("id") is not None


class _BulkPlan:
    """The state of one bulk call across retries and 413 splits (pure: fed answers, says what to send next)."""

    def __init__(self, tweets: Sequence[Mapping[str, Any] | bytes]) -> None:
        self.tweets = tweets
        self.items: list[BulkItem | None] = [None] * len(tweets)
        self.responses = 0

    def body(self, idx: Sequence[int]) -> bytes:
        return b"\n".join(_line(self.tweets[i]) for i in idx) + b"\n"

    def all_have_ids(self, idx: Sequence[int]) -> bool:
        return all(_has_id(self.tweets[i]) for i in idx)

    def fail(self, idx: Iterable[int], status: int, code: str, message: str, field: str | None = None) -> None:
        for i in idx:
            self.items[i] = BulkItem(line=i + 1, status=status, error=ErrorDetail(code, message, field))

    def answered(self, idx: Sequence[int], resp: httpx.Response) -> list[int]:
        """Record a 200 bulk answer; returns the lines to send again (503 and carrying an id)."""
        try:
            got = msgspec.json.decode(resp.content)["items"]
        except (msgspec.DecodeError, KeyError, TypeError):
            got = None
        if not isinstance(got, list):
            self.fail(idx, 0, "bad_response", "the node's answer has no items list")
            return []
        done = set()
        again = []
        for raw in got:
            line = raw.get("line") if isinstance(raw, dict) else None
            if not isinstance(line, int) or not 1 <= line <= len(idx) or line in done:
                continue
            done.add(line)
            i = idx[line - 1]
            try:
                item = msgspec.convert(raw, BulkItem)
            except msgspec.ValidationError:
                self.fail([i], 0, "bad_response", "an item of the node's answer is malformed")
                continue
            item.line = i + 1
            self.items[i] = item
            if item.status == 503 and _has_id(self.tweets[i]):
                again.append(i)
        missing = [idx[k] for k in range(len(idx)) if k + 1 not in done]
        self.fail(missing, 0, "no_answer", "the bulk answer has no item for this line")
        return again

    def result(self) -> BulkResult:
        items = [it if it is not None else BulkItem(line=k + 1, status=0) for k, it in enumerate(self.items)]
        ok = sum(1 for it in items if it.status in (200, 201))
        return BulkResult(ingested=ok, failed=len(items) - ok, items=items, responses=self.responses)


def _bulk_step(
    plan: _BulkPlan,
    idx: list[int],
    outcome: httpx.Response | httpx.TransportError,
    attempt: int,
    retries: int,
    first_s: float = BACKOFF_FIRST_S,
) -> tuple[list[int], float] | list[list[int]] | None:
    """After one attempt of lines `idx`: None (done), (lines, delay) to resend, or halves to send (413)."""
    last = attempt >= retries
    if isinstance(outcome, httpx.TransportError):
        sent_nothing = isinstance(outcome, httpx.ConnectError | httpx.ConnectTimeout)
        if not last and (sent_nothing or plan.all_have_ids(idx)):
            return idx, backoff_s(attempt, first_s)
        e = unreachable(outcome)
        plan.fail(idx, 0, e.code, e.message)
        return None
    plan.responses += 1
    resp = outcome
    if resp.status_code == 413 and len(idx) > 1:
        half = len(idx) // 2
        return [idx[:half], idx[half:]]
    if resp.status_code == 200:
        again = plan.answered(idx, resp)
        return (again, backoff_s(attempt, first_s)) if again and not last else None
    err = error_of(resp)
    if not last and resp.status_code == 429:
        return idx, err.retry_after_s if err.retry_after_s is not None else backoff_s(attempt, first_s)
    if not last and resp.status_code == 503:
        again = [i for i in idx if _has_id(plan.tweets[i])]
        plan.fail([i for i in idx if i not in set(again)], err.status, err.code, err.message, err.field)
        if again:
            return again, err.retry_after_s if err.retry_after_s is not None else backoff_s(attempt, first_s)
        return None
    plan.fail(idx, err.status, err.code, err.message, err.field)
    return None


def _decode(resp: httpx.Response, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(resp.content, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ApiError(resp.status_code, "bad_response", f"the node's answer does not decode: {e}") from None


def _itself(x: Any) -> Any:
    return x


def _headers(api_key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


# ---------------------------------------------------------------- the sync client


class Client:
    """`with Client("http://127.0.0.1:7001", api_key=...) as c: c.search("#python")`. Thread-safe as httpx is."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = TIMEOUT,
        retries: int = RETRIES_MAX,
        backoff_first_s: float = BACKOFF_FIRST_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.retries = retries
        self.backoff_first_s = backoff_first_s
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=_headers(api_key), transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call) -> httpx.Response:
        """The final answer to `call` after the retries its kind allows; raises Unreachable without one.
        Error statuses are returned, not raised (see `request`)."""
        attempt = 0
        while True:
            try:
                resp = self._http.request(
                    call.method, call.path, params=call.params, content=call.content, headers=call.headers
                )
            except httpx.TransportError as e:
                delay = on_transport_error(call, e, attempt, self.retries, self.backoff_first_s)
                if delay is None:
                    raise unreachable(e) from None
            else:
                delay = on_response(call, resp, attempt, self.retries, self.backoff_first_s)
                if delay is None:
                    return resp
            time.sleep(delay)
            attempt += 1

    def request(self, call: Call) -> httpx.Response:
        resp = self.send(call)
        if resp.status_code >= 400:
            raise error_of(resp)
        return resp

    # tweets
    def create(self, text: str, user: str, **fields: Any) -> TweetOut:
        """POST /tweets. Retried after a 503 only when `id` is given (the node assigns it otherwise)."""
        body = _tweet_body(text, user, fields)
        call = Call("POST", "/tweets", content=_encode(body), headers={"content-type": "application/json"},
                    idempotent=body.get("id") is not None)
        return _decode(self.request(call), TweetOut)

    def get(self, tweet_id: int) -> TweetOut:
        return _decode(self.request(Call("GET", f"/tweets/{tweet_id}")), TweetOut)

    def patch(self, tweet_id: int, **fields: Any) -> TweetOut:
        """PATCH /tweets/{id} with any of text, likes, retweets."""
        body = _encode({k: v for k, v in fields.items() if v is not None})
        call = Call("PATCH", f"/tweets/{tweet_id}", content=body, headers={"content-type": "application/json"})
        return _decode(self.request(call), TweetOut)

    def delete(self, tweet_id: int) -> None:
        self.request(Call("DELETE", f"/tweets/{tweet_id}"))

    def bulk(self, tweets: Sequence[Mapping[str, Any] | bytes]) -> BulkResult:
        """POST /tweets/bulk of `tweets` (dicts or encoded JSON lines): split on 413, lines with ids resent after
        503, the whole request after 429. Never raises for the node's answers: each item says its fate."""
        plan = _BulkPlan(tweets)
        todo: list[tuple[list[int], int]] = [(list(range(len(tweets))), 0)] if tweets else []
        while todo:
            idx, attempt = todo.pop()
            try:
                outcome: httpx.Response | httpx.TransportError = self._http.post(
                    "/tweets/bulk", content=plan.body(idx), headers=NDJSON
                )
            except httpx.TransportError as e:
                outcome = e
            step = _bulk_step(plan, idx, outcome, attempt, self.retries, self.backoff_first_s)
            if isinstance(step, tuple):
                time.sleep(step[1])
                todo.append((step[0], attempt + 1))
            elif isinstance(step, list):
                todo += [(part, attempt) for part in reversed(step)]
        return plan.result()

    # search and trends
    def search(
        self,
        q: str,
        *,
        count: int | None = None,
        max_id: int | str | None = None,
        since_id: int | str | None = None,
        result_type: str | None = None,
        explain: bool = False,
    ) -> SearchResponse:
        params = _params(q=q, count=count, max_id=max_id, since_id=since_id, result_type=result_type, explain=explain)
        return _decode(self.request(Call("GET", "/search", params)), SearchResponse)

    def search_pages(self, q: str, **kw: Any) -> Iterator[SearchResponse]:
        """Every page of `q`, following next_max_id, newest first."""
        max_id = kw.pop("max_id", None)
        for _ in range(PAGES_MAX):
            page = self.search(q, max_id=max_id, **kw)
            yield page
            max_id = page.search_metadata.next_max_id
            if max_id is None:
                return

    def trends(self, window: str = "1h", *, count: int | None = None, as_of: str | None = None) -> TrendsResponse:
        params = _params(window=window, count=count, as_of=as_of)
        return _decode(self.request(Call("GET", "/trends", params)), TrendsResponse)

    # the cluster
    def cluster(self) -> ClusterView:
        return _decode(self.request(Call("GET", "/cluster")), ClusterView)

    def health(self) -> Health:
        """GET /health: status "ok" or "degraded" (then `down`, `ring` or `storage` say why)."""
        return _decode(self.request(Call("GET", "/health")), Health)

    def ping(self) -> bool:
        """Whether the node answers /health with 200 now (no retry beyond the client's)."""
        try:
            return self.send(Call("GET", "/health")).status_code == 200
        except Unreachable:
            return False

    def stats(self) -> StatsResponse:
        return _decode(self.request(Call("GET", "/stats")), StatsResponse)

    def metrics(self) -> str:
        return self.request(Call("GET", "/metrics")).text

    def openapi(self) -> dict[str, Any]:
        return _decode(self.request(Call("GET", "/openapi.json")), dict[str, Any])

    def snapshot(self) -> dict[str, Any]:
        """POST /admin/snapshot (admin): the node starts writing a snapshot and answers 202 at once."""
        resp = self.request(Call("POST", "/admin/snapshot", idempotent=False))
        return _decode(resp, dict[str, Any]) if resp.content else {}

    def cleanup(self) -> dict[str, Any]:
        """POST /admin/cleanup (admin): the node drops the data of the ranges it no longer replicates. -> its
        figures (200), or {"status": "running"} (202) when it takes longer: then poll cleanup_status()."""
        resp = self.request(Call("POST", "/admin/cleanup", idempotent=False))
        return _decode(resp, dict[str, Any])

    def cleanup_status(self) -> dict[str, Any]:
        """GET /admin/cleanup (admin): {"running", "last": the last cleanup's figures, "last_error"}."""
        return _decode(self.request(Call("GET", "/admin/cleanup")), dict[str, Any])

    def decommission(self) -> dict[str, Any]:
        """POST /admin/decommission to THIS node (admin role): it starts leaving the ring (202). The cluster
        secret never travels over HTTP (CONTRACT §5)."""
        resp = self.request(Call("POST", "/admin/decommission", idempotent=False))
        return _decode(resp, dict[str, Any])

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """Any GET answer as plain JSON (for printing it as it came)."""
        return msgspec.json.decode(self.request(Call("GET", path, _params(**(params or {})))).content)

    def bulk_load(
        self,
        tweets: Iterable[Mapping[str, Any] | bytes],
        *,
        batch_size: int = BULK_BATCH,
        concurrency: int = BULK_CONCURRENCY,
        on_batch: Callable[[Sequence[Mapping[str, Any] | bytes], BulkResult], None] | None = None,
    ) -> BulkTotals:
        """AsyncClient.bulk_load from sync code (runs its own event loop: not from inside one)."""

        async def go() -> BulkTotals:
            async with AsyncClient(
                self.url, api_key=self.api_key, timeout=self._http.timeout, retries=self.retries,
                backoff_first_s=self.backoff_first_s, concurrency=concurrency,
            ) as ac:
                return await ac.bulk_load(batches(tweets, batch_size), concurrency=concurrency, on_batch=on_batch)

        return anyio.run(go)


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    out: list[T] = []
    for it in items:
        out.append(it)
        if len(out) >= size:
            yield out
            out = []
    if out:
        yield out


# ---------------------------------------------------------------- the async client


class AsyncClient:
    """`async with AsyncClient(url, api_key=...) as c: await c.search("#python")`; under trio or asyncio."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = TIMEOUT,
        retries: int = RETRIES_MAX,
        backoff_first_s: float = BACKOFF_FIRST_S,
        concurrency: int = BULK_CONCURRENCY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.retries = retries
        self.backoff_first_s = backoff_first_s
        limits = httpx.Limits(max_connections=max(concurrency, 10), max_keepalive_connections=max(concurrency, 10))
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=timeout, headers=_headers(api_key), limits=limits, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                resp = await self._http.request(
                    call.method, call.path, params=call.params, content=call.content, headers=call.headers
                )
            except httpx.TransportError as e:
                delay = on_transport_error(call, e, attempt, self.retries, self.backoff_first_s)
                if delay is None:
                    raise unreachable(e) from None
            else:
                delay = on_response(call, resp, attempt, self.retries, self.backoff_first_s)
                if delay is None:
                    return resp
            await anyio.sleep(delay)
            attempt += 1

    async def request(self, call: Call) -> httpx.Response:
        resp = await self.send(call)
        if resp.status_code >= 400:
            raise error_of(resp)
        return resp

    async def create(self, text: str, user: str, **fields: Any) -> TweetOut:
        body = _tweet_body(text, user, fields)
        call = Call("POST", "/tweets", content=_encode(body), headers={"content-type": "application/json"},
                    idempotent=body.get("id") is not None)
        return _decode(await self.request(call), TweetOut)

    async def get(self, tweet_id: int) -> TweetOut:
        return _decode(await self.request(Call("GET", f"/tweets/{tweet_id}")), TweetOut)

    async def patch(self, tweet_id: int, **fields: Any) -> TweetOut:
        body = _encode({k: v for k, v in fields.items() if v is not None})
        call = Call("PATCH", f"/tweets/{tweet_id}", content=body, headers={"content-type": "application/json"})
        return _decode(await self.request(call), TweetOut)

    async def delete(self, tweet_id: int) -> None:
        await self.request(Call("DELETE", f"/tweets/{tweet_id}"))

    async def bulk(self, tweets: Sequence[Mapping[str, Any] | bytes]) -> BulkResult:
        """As Client.bulk."""
        plan = _BulkPlan(tweets)
        todo: list[tuple[list[int], int]] = [(list(range(len(tweets))), 0)] if tweets else []
        while todo:
            idx, attempt = todo.pop()
            try:
                outcome: httpx.Response | httpx.TransportError = await self._http.post(
                    "/tweets/bulk", content=plan.body(idx), headers=NDJSON
                )
            except httpx.TransportError as e:
                outcome = e
            step = _bulk_step(plan, idx, outcome, attempt, self.retries, self.backoff_first_s)
            if isinstance(step, tuple):
                await anyio.sleep(step[1])
                todo.append((step[0], attempt + 1))
            elif isinstance(step, list):
                todo += [(part, attempt) for part in reversed(step)]
        return plan.result()

    async def bulk_load(
        self,
        batches: Iterable[Sequence[S]] | AsyncIterable[Sequence[S]],
        *,
        concurrency: int = BULK_CONCURRENCY,
        body: Callable[[S], Mapping[str, Any] | bytes] | None = None,
        on_batch: Callable[[Sequence[S], BulkResult], None] | None = None,
        via: Sequence[AsyncClient] = (),
    ) -> BulkTotals:
        """POST every batch to /tweets/bulk with `concurrency` bulks in flight (as Elasticsearch's parallel_bulk)
        and as many read ahead; `on_batch(batch, result)` after each (progress). `body` turns an element of a
        batch into its tweet (default: the element is the tweet). `via`: clients of other nodes of the cluster to
        spread the bulks over (sender k uses the k-th of this client and them, round robin), so that no single
        node coordinates the whole load."""
        assert concurrency >= 1
        senders: list[AsyncClient] = [self, *via]
        totals = BulkTotals()
        to_tweet = body or _itself
        send, recv = anyio.create_memory_object_stream[Sequence[S]](concurrency)

        async def produce() -> None:
            async with send:
                if isinstance(batches, AsyncIterable):
                    async for b in batches:
                        await send.send(b)
                else:
                    for b in batches:
                        await send.send(b)

        async def consume(r: ObjectReceiveStream[Sequence[S]], sender: AsyncClient) -> None:
            async with r:
                async for b in r:
                    res = await sender.bulk([to_tweet(x) for x in b])
                    totals.ingested += res.ingested
                    totals.failed += res.failed
                    totals.batches += 1
                    totals.responses += res.responses
                    if on_batch is not None:
                        on_batch(b, res)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            async with recv:
                for k in range(concurrency):
                    tg.start_soon(consume, recv.clone(), senders[k % len(senders)])
        return totals

    async def search(
        self,
        q: str,
        *,
        count: int | None = None,
        max_id: int | str | None = None,
        since_id: int | str | None = None,
        result_type: str | None = None,
        explain: bool = False,
    ) -> SearchResponse:
        params = _params(q=q, count=count, max_id=max_id, since_id=since_id, result_type=result_type, explain=explain)
        return _decode(await self.request(Call("GET", "/search", params)), SearchResponse)

    async def trends(self, window: str = "1h", *, count: int | None = None, as_of: str | None = None) -> TrendsResponse:
        params = _params(window=window, count=count, as_of=as_of)
        return _decode(await self.request(Call("GET", "/trends", params)), TrendsResponse)

    async def cluster(self) -> ClusterView:
        return _decode(await self.request(Call("GET", "/cluster")), ClusterView)

    async def health(self) -> Health:
        return _decode(await self.request(Call("GET", "/health")), Health)

    async def stats(self) -> StatsResponse:
        return _decode(await self.request(Call("GET", "/stats")), StatsResponse)

    async def metrics(self) -> str:
        return (await self.request(Call("GET", "/metrics"))).text

    async def snapshot(self) -> dict[str, Any]:
        resp = await self.request(Call("POST", "/admin/snapshot", idempotent=False))
        return _decode(resp, dict[str, Any]) if resp.content else {}

    async def cleanup(self) -> dict[str, Any]:
        resp = await self.request(Call("POST", "/admin/cleanup", idempotent=False))
        return _decode(resp, dict[str, Any])

    async def cleanup_status(self) -> dict[str, Any]:
        return _decode(await self.request(Call("GET", "/admin/cleanup")), dict[str, Any])


__all__ = [
    "ApiError",
    "AsyncClient",
    "BulkResult",
    "BulkTotals",
    "Client",
    "Unreachable",
    "batches",
]
