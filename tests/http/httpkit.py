"""Test kit for the HTTP shell: an in-memory fake Coordinator, a runner that serves the real API on 127.0.0.1:0
inside trio.run, and a raw-socket client (h11 as parser) for what httpx will not send.

Only for tests of the HTTP layer; the fake answers like the protocol says, nothing more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, ClassVar

import h11
import msgspec
import trio
from prometheus_client.parser import text_string_to_metric_families

from node.config import HttpConfig
from node.coordinator import Created, SearchRequest, SearchResult, Trend
from node.errors import Conflict, MurmurError, NotFound
from node.http.api import make_handler
from node.http.server import Handler, serve_http
from node.metrics import HttpMetrics
from node.model import Tweet, TweetIn, TweetPatch, build_tweet, same_content
from node.text.analyzer import analyse

NOW_MS = 1_700_000_000_000


Key = tuple[str, frozenset[tuple[str, str]]]


def samples(text: str) -> dict[Key, float]:
    """Every sample of a scrape, parsed by prometheus_client's own parser (so the page is valid text format)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def types(text: str) -> dict[str, str]:
    return {fam.name: fam.type for fam in text_string_to_metric_families(text)}


def key(name: str, **labels: str) -> Key:
    return name, frozenset(labels.items())


class FakeCoordinator:
    def __init__(self) -> None:
        self.tweets: dict[int, Tweet] = {}
        self.next_id = 1000
        self.searches: list[SearchRequest] = []
        self.trend_calls: list[tuple[int, int, int]] = []
        self.delay_s = 0.0
        self.fail: Exception | None = None  # raised by the next search

    def _build(self, t: TweetIn) -> Tweet:
        a = analyse(t.text)
        tid = t.id if t.id is not None else self.next_id
        self.next_id += 1
        return build_tweet(t, tid, t.created_at_ms if t.created_at_ms is not None else NOW_MS, a)

    async def create_tweet(self, t: TweetIn) -> Created:
        if t.id is not None and t.id in self.tweets:
            if same_content(self.tweets[t.id], t):
                return Created(self.tweets[t.id], created=False)
            raise Conflict(f"tweet {t.id} exists with other content", "id")
        tweet = self._build(t)
        self.tweets[tweet.id] = tweet
        return Created(tweet, created=True)

    async def bulk_create(self, items: list[TweetIn]) -> list[Created | MurmurError]:
        out: list[Created | MurmurError] = []
        for t in items:
            try:
                out.append(await self.create_tweet(t))
            except MurmurError as e:
                out.append(e)
        return out

    async def get_tweet(self, tweet_id: int) -> Tweet:
        if tweet_id not in self.tweets:
            raise NotFound(f"no tweet {tweet_id}", "id")
        return self.tweets[tweet_id]

    async def patch_tweet(self, tweet_id: int, patch: TweetPatch) -> Tweet:
        t = await self.get_tweet(tweet_id)
        changes: dict[str, Any] = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not None}
        if "text" in changes:
            changes["edited_at_ms"] = NOW_MS + 1
        self.tweets[tweet_id] = msgspec.structs.replace(t, **changes)
        return self.tweets[tweet_id]

    async def delete_tweet(self, tweet_id: int) -> None:
        await self.get_tweet(tweet_id)
        del self.tweets[tweet_id]

    async def search(self, req: SearchRequest) -> SearchResult:
        self.searches.append(req)
        if self.delay_s:
            await trio.sleep(self.delay_s)
        if self.fail is not None:
            e, self.fail = self.fail, None
            raise e
        ids = sorted((i for i in self.tweets if req.max_id is None or i <= req.max_id), reverse=True)
        page = ids[: req.count]
        nxt = page[-1] - 1 if len(ids) > req.count else None
        stages = {"parse": 0.1, "fetch": 0.2} if req.explain else None
        return SearchResult([self.tweets[i] for i in page], nxt, partial=False, stages=stages)

    async def trends(self, window_s: int, count: int, now_ms: int) -> list[Trend]:
        self.trend_calls.append((window_s, count, now_ms))
        return [Trend("#python", 12, 3.5), Trend("#trio", 5, 1.25)][:count]

    def cluster_view(self) -> dict[str, object]:
        return {"members": [{"name": "n1", "state": "alive"}], "n": 1, "w": 1, "r": 1}

    def health(self) -> dict[str, object]:
        return {"status": "ok"}

    def metrics_samples(self) -> list[tuple[str, str, dict[str, str], float]]:
        return [
            ("murmur_index_tweets", "Tweets in the local index", {"partition": "p0"}, float(len(self.tweets)))
        ]


def serve(
    test: Callable[[int], Awaitable[None]],
    cfg: HttpConfig | None = None,
    coord: FakeCoordinator | None = None,
    handler: Handler | None = None,
    metrics: HttpMetrics | None = None,
    timeout_s: float = 20.0,
    clock: trio.abc.Clock | None = None,
) -> None:
    """Run the server on 127.0.0.1:0 and `await test(port)` against it, all inside one trio.run (on `clock`:
    give trio.testing.MockClock(autojump_threshold=0) to a test about timeouts, so that they are exact and instant;
    loopback I/O is ready as soon as it is sent, so the clock only jumps when every task waits on a timer)."""
    cfg = cfg or HttpConfig()
    metrics = metrics or HttpMetrics()
    handler = handler or make_handler(coord or FakeCoordinator(), metrics, cfg, "n1", now_ms=lambda: NOW_MS)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(serve_http, handler, "127.0.0.1", 0, cfg, metrics=metrics))
            try:
                with trio.fail_after(timeout_s):
                    await test(port)
            finally:
                for raw in Raw.opened:
                    await raw.aclose()
                Raw.opened.clear()
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock)


class Raw:
    """One client connection: send raw bytes, read responses parsed by an h11 client."""

    opened: ClassVar[list[Raw]] = []  # closed by serve() when the test ends

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        Raw.opened.append(self)

    @classmethod
    async def open(cls, port: int) -> Raw:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def request(
        self, method: str, target: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> None:
        hs = [("host", "t"), *(headers or [])]
        if body or method in ("POST", "PATCH"):
            hs.append(("content-length", str(len(body))))
        out = self.conn.send(h11.Request(method=method, target=target, headers=hs)) or b""
        if body:
            out += self.conn.send(h11.Data(data=body)) or b""
        out += self.conn.send(h11.EndOfMessage()) or b""
        await self.send(out)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response (status, headers, body); raises EOFError if the server closed first."""
        status = 0
        headers: dict[str, str] = {}
        body = b""
        while True:
            ev = self.conn.next_event()
            if ev is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(ev, h11.InformationalResponse):
                continue
            elif isinstance(ev, h11.Response):
                status = ev.status_code
                headers = {k.decode(): v.decode() for k, v in ev.headers}
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return status, headers, body
            else:
                raise EOFError("the server closed the connection")

    async def eof(self) -> bool:
        """True when the server has closed (reads and discards until EOF)."""
        try:
            while data := await self.stream.receive_some(65536):
                del data
        except trio.BrokenResourceError:
            pass
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


def error_of(body: bytes) -> dict[str, Any]:
    """The contract's error object, checking its exact shape."""
    doc = msgspec.json.decode(body)
    assert set(doc) == {"error"}, doc
    assert set(doc["error"]) == {"code", "message", "field"}, doc
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
    return dict(doc["error"])
