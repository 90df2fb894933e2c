"""node.client against a scripted node on a real socket (node.http.server in a thread): which requests are resent
after 503, 429 (Retry-After) and lost connections and which never are, bulk lines retried by id and split on 413,
several bulks in flight with a progress callback, API keys; and the pure retry decisions."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import msgspec
import pytest
import trio

from node.client import (
    RETRY_AFTER_MAX_S,
    ApiError,
    AsyncClient,
    BulkResult,
    Call,
    Client,
    Unreachable,
    backoff_s,
    on_response,
    on_transport_error,
    retry_after_s,
)
from node.http.server import Request, Response
from tests.support.procs import free_port
from tests.support.stub import serving

FAST = {"backoff_first_s": 0.01}


def tweet_json(tid: int, text: str = "hi", user: str = "u") -> bytes:
    return msgspec.json.encode(
        {"id": tid, "id_str": str(tid), "created_at": "2011-10-18T21:53:25Z", "user": user, "text": text,
         "hashtags": [], "mentions": [], "reply_to": None, "lang": None, "geo": None, "likes": 0, "retweets": 0,
         "edited_at": None}
    )


def err(status: int, code: str, headers: list[tuple[str, str]] | None = None) -> Response:
    body = msgspec.json.encode({"error": {"code": code, "message": f"{code} said the stub", "field": None}})
    return Response(status, body, "application/json", headers or [])


class Script:
    """Answers each request with the next scripted answer for its path (a function of the request, or a fixed
    Response); records every request it saw."""

    def __init__(self, answers: dict[str, list[Response | Callable[[Request], Response]]]) -> None:
        self.answers = answers
        self.seen: list[Request] = []
        self.inflight = 0
        self.inflight_max = 0
        self.delay_s = 0.0

    async def __call__(self, req: Request) -> Response:
        self.seen.append(req)
        self.inflight += 1
        self.inflight_max = max(self.inflight_max, self.inflight)
        try:
            if self.delay_s:
                await trio.sleep(self.delay_s)
            queue = self.answers.get(req.path) or []
            if not queue:
                return err(500, "unscripted")
            a = queue.pop(0) if len(queue) > 1 else queue[0]
            return a(req) if callable(a) else a
        finally:
            self.inflight -= 1

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.seen]


@contextmanager
def stub(answers: dict[str, list[Any]]) -> Iterator[tuple[Script, str]]:
    script = Script(answers)
    with serving(script) as url:
        yield script, url


# ---------------------------------------------------------------- retries of single requests


def test_a_create_without_id_is_never_resent_after_503() -> None:
    with stub({"/tweets": [err(503, "unavailable")]}) as (s, url), Client(url, **FAST) as c:
        with pytest.raises(ApiError) as e:
            c.create("hello", "u")
        assert e.value.status == 503 and e.value.code == "unavailable"
        assert s.paths() == ["POST /tweets"]


def test_a_create_with_id_is_resent_with_the_same_body_until_acknowledged() -> None:
    answers = {"/tweets": [err(503, "unavailable"), err(503, "unavailable"), Response(201, tweet_json(7, "hello"))]}
    with stub(answers) as (s, url), Client(url, **FAST) as c:
        t = c.create("hello", "u", id=7)
        assert t.id == 7 and t.text == "hello"
        assert s.paths() == ["POST /tweets"] * 3
        assert len({r.body for r in s.seen}) == 1 and msgspec.json.decode(s.seen[0].body)["id"] == 7


def test_429_is_resent_after_retry_after_even_for_a_create_without_id() -> None:
    answers = {"/tweets": [err(429, "overloaded", [("retry-after", "0")]), Response(201, tweet_json(9))]}
    with stub(answers) as (s, url), Client(url, **FAST) as c:
        assert c.create("hi", "u").id == 9
        assert s.paths() == ["POST /tweets"] * 2


def test_reads_patches_and_deletes_are_resent_after_503_and_give_up_after_the_bound() -> None:
    answers: dict[str, list[Any]] = {
        "/tweets/5": [err(503, "unavailable"), Response(200, tweet_json(5))],
        "/search": [err(503, "unavailable")],
    }
    with stub(answers) as (s, url), Client(url, retries=3, **FAST) as c:
        assert c.get(5).id == 5
        with pytest.raises(ApiError) as e:
            c.search("x")
        assert e.value.status == 503
        assert s.paths().count("GET /search") == 4  # the first try and 3 resends
    for method in ("PATCH", "DELETE"):
        first: list[Any] = [err(503, "unavailable"), Response(200, tweet_json(5)) if method == "PATCH" else Response(204)]
        with stub({"/tweets/5": first}) as (s, url), Client(url, **FAST) as c:
            if method == "PATCH":
                assert c.patch(5, likes=3).id == 5
            else:
                c.delete(5)
            assert s.paths() == [f"{method} /tweets/5"] * 2


def test_errors_are_typed_and_the_api_key_is_a_bearer_token() -> None:
    bad = Response(400, msgspec.json.encode({"error": {"code": "invalid_query", "message": "lone OR", "field": "q"}}))
    with stub({"/search": [bad]}) as (s, url), Client(url, api_key="k-1", **FAST) as c:
        with pytest.raises(ApiError) as e:
            c.search("OR")
        assert (e.value.status, e.value.code, e.value.field, e.value.message) == (400, "invalid_query", "q", "lone OR")
        assert s.seen[0].header(b"authorization") == b"Bearer k-1"
        assert s.seen[0].query == {"q": ["OR"]}


def test_an_unreachable_node_raises_unreachable() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", retries=2, **FAST) as c:
        with pytest.raises(Unreachable) as e:
            c.get(1)
        assert e.value.code == "connection_failed" and e.value.status == 0
        assert c.ping() is False


def test_snapshot_posts_once_and_returns_the_answer() -> None:
    ok = Response(202, b'{"status":"started","lsn":12}')
    with stub({"/admin/snapshot": [ok]}) as (s, url), Client(url, api_key="admin", **FAST) as c:
        assert c.snapshot() == {"status": "started", "lsn": 12}
        assert s.paths() == ["POST /admin/snapshot"] and s.seen[0].header(b"authorization") == b"Bearer admin"
    with stub({"/admin/snapshot": [err(503, "unavailable")]}) as (s, url), Client(url, **FAST) as c:
        with pytest.raises(ApiError):
            c.snapshot()
        assert s.paths() == ["POST /admin/snapshot"], "a snapshot request is not resent"


# ---------------------------------------------------------------- bulk


def bulk_answer(statuses: list[int]) -> Callable[[Request], Response]:
    """A bulk answer giving line k of the request the status statuses[k] (503s as errors)."""

    def answer(req: Request) -> Response:
        lines = [ln for ln in req.body.split(b"\n") if ln.strip()]
        items = []
        for k, _ln in enumerate(lines):
            st = statuses[k] if k < len(statuses) else 201
            item: dict[str, Any] = {"line": k + 1, "status": st}
            if st in (200, 201):
                item["id"] = 100 + k
            else:
                item["error"] = {"code": "unavailable" if st == 503 else "invalid_field", "message": "m", "field": None}
            items.append(item)
        ok = sum(1 for it in items if it["status"] in (200, 201))
        return Response(200, msgspec.json.encode({"ingested": ok, "failed": len(items) - ok, "items": items}))

    return answer


def test_bulk_resends_only_the_503_lines_that_carry_an_id() -> None:
    tweets = [{"text": "a", "user": "u", "id": 1}, {"text": "b", "user": "u"}, {"text": "c", "user": "u", "id": 3},
              {"text": "d", "user": "u"}]
    answers = {"/tweets/bulk": [bulk_answer([503, 503, 201, 400]), bulk_answer([201])]}
    with stub(answers) as (s, url), Client(url, **FAST) as c:
        res = c.bulk(tweets)
    assert [r.body.count(b"\n") for r in s.seen] == [4, 1]
    assert msgspec.json.decode(s.seen[1].body.strip()) == tweets[0]
    assert [(it.line, it.status) for it in res.items] == [(1, 201), (2, 503), (3, 201), (4, 400)]
    assert (res.ingested, res.failed, res.responses) == (2, 2, 2)


def test_bulk_splits_on_413_and_keeps_lines_aligned() -> None:
    def too_big_over_two(req: Request) -> Response:
        n = len([ln for ln in req.body.split(b"\n") if ln.strip()])
        return err(413, "payload_too_large") if n > 2 else bulk_answer([201, 400])(req)

    tweets = [{"text": str(k), "user": "u"} for k in range(5)]
    with stub({"/tweets/bulk": [too_big_over_two]}) as (s, url), Client(url, **FAST) as c:
        res = c.bulk(tweets)
    sent = [msgspec.json.decode(ln)["text"] for r in s.seen if r.body.count(b"\n") <= 2 for ln in r.body.split(b"\n") if ln]
    assert sorted(sent) == ["0", "1", "2", "3", "4"]
    assert [it.line for it in res.items] == [1, 2, 3, 4, 5]
    assert all(it.status in (201, 400) for it in res.items)


def test_a_whole_bulk_503_resends_only_lines_with_ids_and_a_dead_node_fails_every_line() -> None:
    tweets = [{"text": "a", "user": "u", "id": 1}, {"text": "b", "user": "u"}]
    with stub({"/tweets/bulk": [err(503, "unavailable"), bulk_answer([201])]}) as (s, url), Client(url, **FAST) as c:
        res = c.bulk(tweets)
    assert [r.body.count(b"\n") for r in s.seen] == [2, 1]
    assert [it.status for it in res.items] == [201, 503]
    with Client(f"http://127.0.0.1:{free_port()}", retries=1, **FAST) as c:
        res = c.bulk(tweets)
    assert res.responses == 0 and [it.error.code for it in res.items if it.error] == ["connection_failed"] * 2


def test_bulk_load_keeps_several_bulks_in_flight_and_reports_each() -> None:
    answers = {"/tweets/bulk": [bulk_answer([])]}
    with stub(answers) as (s, url):
        s.delay_s = 0.2
        done: list[tuple[int, BulkResult]] = []
        batches = [[{"text": f"{b}-{k}", "user": "u"} for k in range(3)] for b in range(9)]

        async def main() -> None:
            async with AsyncClient(url, **FAST) as c:
                totals = await c.bulk_load(batches, concurrency=3, on_batch=lambda b, r: done.append((len(b), r)))
            assert (totals.ingested, totals.failed, totals.batches, totals.responses) == (27, 0, 9, 9)

        t0 = time.monotonic()
        trio.run(main)
        elapsed = time.monotonic() - t0
    assert s.inflight_max == 3
    assert len(done) == 9 and all(n == 3 and r.ingested == 3 for n, r in done)
    assert elapsed < 9 * 0.2, "batches were not sent in parallel"


def test_the_sync_bulk_load_runs_the_async_one() -> None:
    with stub({"/tweets/bulk": [bulk_answer([])]}) as (_s, url), Client(url, **FAST) as c:
        seen: list[int] = []
        totals = c.bulk_load(({"text": str(k), "user": "u"} for k in range(10)), batch_size=4, concurrency=2,
                             on_batch=lambda b, r: seen.append(len(b)))
    assert totals.ingested == 10 and sorted(seen) == [2, 4, 4]


# ---------------------------------------------------------------- the pure decisions


def test_retry_after_parsing() -> None:
    assert retry_after_s("3") == 3.0
    assert retry_after_s(" 0 ") == 0.0
    assert retry_after_s("100000") == RETRY_AFTER_MAX_S
    now = 1_800_000_000.0
    assert retry_after_s(email.utils.formatdate(now + 5, usegmt=True), now=now) == pytest.approx(5.0)
    assert retry_after_s(email.utils.formatdate(now - 5, usegmt=True), now=now) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None and retry_after_s("-1") is None


def test_retry_decisions() -> None:
    post = Call("POST", "/tweets", idempotent=False)
    get = Call("GET", "/search")

    def resp(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.Response(status, headers=headers)

    assert on_response(post, resp(503), 0, 6) is None
    assert on_response(get, resp(503), 0, 6) == backoff_s(0)
    assert on_response(get, resp(503), 6, 6) is None  # the bound
    assert on_response(post, resp(429, {"retry-after": "2"}), 0, 6) == 2.0
    assert on_response(get, resp(500), 0, 6) is None and on_response(get, resp(200), 0, 6) is None
    connect = httpx.ConnectError("refused")
    lost = httpx.ReadTimeout("no answer")
    assert on_transport_error(post, connect, 0, 6) == backoff_s(0)  # nothing was sent
    assert on_transport_error(post, lost, 0, 6) is None  # maybe applied: never resent without an id
    assert on_transport_error(get, lost, 2, 6) == backoff_s(2)
    assert [backoff_s(k) for k in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
