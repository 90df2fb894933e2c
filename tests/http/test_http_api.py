"""The public routes (CONTRACT §2) over real sockets against an in-memory fake Coordinator: happy paths,
validation (each error names its field), status codes and the exact JSON shapes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import msgspec
from httpkit import NOW_MS, FakeCoordinator, error_of, key, samples, serve, types

from node.config import HttpConfig
from node.http.api import make_handler
from node.http.server import Request, Response
from node.metrics import HttpMetrics

ID_MAX = 2**64 - 1
Test = Callable[[httpx.AsyncClient], Awaitable[None]]


def run(
    test: Test,
    cfg: HttpConfig | None = None,
    coord: FakeCoordinator | None = None,
    metrics: HttpMetrics | None = None,
) -> None:
    async def with_client(port: int) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            await test(c)

    serve(with_client, cfg=cfg, coord=coord, metrics=metrics)


def check_error(r: httpx.Response, status: int, code: str, field: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    err = error_of(r.content)
    assert err["code"] == code, err
    assert err["field"] == field, err


TWEET_KEYS = {
    "id",
    "id_str",
    "created_at",
    "user",
    "text",
    "hashtags",
    "mentions",
    "reply_to",
    "lang",
    "geo",
    "likes",
    "retweets",
    "edited_at",
}


# ---------------------------------------------------------------- tweets


def test_tweet_lifecycle() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        r = await c.post("/tweets", json={"text": "Loving #Python with @Bob", "user": "alice", "lang": "en"})
        assert r.status_code == 201, r.text
        tw = r.json()
        assert set(tw) == TWEET_KEYS
        assert tw["id_str"] == str(tw["id"]) and tw["hashtags"] == ["python"] and tw["mentions"] == ["bob"]
        assert tw["created_at"] == "2023-11-14T22:13:20Z"
        assert r.headers["location"] == f"/tweets/{tw['id']}"
        r = await c.get(f"/tweets/{tw['id']}")
        assert r.status_code == 200 and r.json() == tw
        r = await c.patch(f"/tweets/{tw['id']}", json={"text": "edited", "likes": 3})
        assert r.status_code == 200 and r.json()["text"] == "edited" and r.json()["likes"] == 3
        assert r.json()["edited_at"] is not None and r.json()["id"] == tw["id"]
        r = await c.delete(f"/tweets/{tw['id']}")
        assert r.status_code == 204 and r.content == b""
        check_error(await c.get(f"/tweets/{tw['id']}"), 404, "not_found", "id")
        check_error(await c.delete(f"/tweets/{tw['id']}"), 404, "not_found", "id")
        check_error(await c.patch(f"/tweets/{tw['id']}", json={"likes": 1}), 404, "not_found", "id")

    run(t)


def test_create_with_id_is_idempotent_and_conflicts() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        body = {"id": ID_MAX, "text": "hello", "user": "bob", "created_at": "2011-10-18T21:53:25Z"}
        r1 = await c.post("/tweets", json=body)
        assert r1.status_code == 201 and r1.json()["id"] == ID_MAX and r1.json()["id_str"] == str(ID_MAX)
        r2 = await c.post("/tweets", json=body)
        assert r2.status_code == 200 and r2.json() == r1.json()
        check_error(await c.post("/tweets", json={**body, "text": "other"}), 409, "conflict", "id")
        r = await c.get(f"/tweets/{ID_MAX}")
        assert r.status_code == 200 and r.json()["created_at"] == "2011-10-18T21:53:25Z"

    run(t)


def test_tweet_validation_names_the_field() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        hdr = {"content-type": "application/json"}
        check_error(await c.post("/tweets", content=b'{"text": "a",', headers=hdr), 400, "invalid_json")
        check_error(
            await c.post("/tweets", content=b'{"text": "\xff", "user": "u"}', headers=hdr),
            400,
            "invalid_json",
        )
        check_error(await c.post("/tweets", content=b'{"text": "\\ud800", "user": "u"}'), 400, "invalid_json")
        check_error(await c.post("/tweets", content=b""), 400, "invalid_json")
        check_error(
            await c.post("/tweets", json={"text": "a", "user": "u", "color": 1}),
            400,
            "unknown_field",
            "color",
        )
        check_error(await c.post("/tweets", json={"user": "u"}), 400, "missing_field", "text")
        check_error(await c.post("/tweets", json={"text": "a"}), 400, "missing_field", "user")
        check_error(
            await c.post("/tweets", json={"text": "x" * 281, "user": "u"}), 400, "invalid_field", "text"
        )
        check_error(await c.post("/tweets", json={"text": "", "user": "u"}), 400, "invalid_field", "text")
        check_error(
            await c.post("/tweets", json={"text": "a", "user": "u" * 65}), 400, "invalid_field", "user"
        )
        check_error(
            await c.post("/tweets", json={"text": "a", "user": "u", "id": 0}), 400, "invalid_field", "id"
        )
        check_error(
            await c.post("/tweets", json={"text": "a", "user": "u", "id": 2**64}), 400, "invalid_field", "id"
        )
        check_error(
            await c.post("/tweets", json={"text": "a", "user": "u", "id": -1}), 400, "invalid_field", "id"
        )
        check_error(
            await c.post("/tweets", content=b'{"text": "a", "user": "u", "id": 1e400}'), 400, "invalid_json"
        )
        check_error(await c.post("/tweets", json=[1, 2]), 400, "invalid_field")
        check_error(
            await c.post("/tweets", json={"text": "a", "user": "u", "created_at": "yesterday"}),
            400,
            "invalid_field",
            "created_at",
        )
        check_error(
            await c.post("/tweets", json={"text": "a", "user": "u", "geo": [91, 0]}),
            400,
            "invalid_field",
            "geo",
        )
        check_error(
            await c.post("/tweets", content=b'{"text":"a","user":"u"}', headers={"content-type": "text/xml"}),
            415,
            "unsupported_media_type",
        )
        # exactly 280 characters (astral ones count as one) is fine, with a charset parameter too
        text = "😀" * 280
        r = await c.post(
            "/tweets",
            content=msgspec.json.encode({"text": text, "user": "u"}),
            headers={"content-type": "application/json; charset=utf-8"},
        )
        assert r.status_code == 201 and r.json()["text"] == text

    run(t)


def test_tweet_path_ids() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        for bad in ("0", str(2**64), "-5", "abc", "1.5", "9" * 30):
            check_error(await c.get(f"/tweets/{bad}"), 400, "invalid_field", "id")
        check_error(await c.get(f"/tweets/{ID_MAX}"), 404, "not_found", "id")
        check_error(await c.get("/tweets/1/x"), 404, "not_found")
        check_error(await c.patch("/tweets/0", json={"likes": 1}), 400, "invalid_field", "id")
        check_error(await c.delete(f"/tweets/{2**64}"), 400, "invalid_field", "id")

    run(t)


def test_patch_validation() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        tid = (await c.post("/tweets", json={"text": "a", "user": "u"})).json()["id"]
        check_error(await c.patch(f"/tweets/{tid}", json={}), 400, "missing_field")
        check_error(await c.patch(f"/tweets/{tid}", json={"user": "x"}), 400, "unknown_field", "user")
        check_error(await c.patch(f"/tweets/{tid}", json={"likes": -1}), 400, "invalid_field", "likes")
        check_error(await c.patch(f"/tweets/{tid}", content=b"{"), 400, "invalid_json")

    run(t)


# ---------------------------------------------------------------- bulk


def test_bulk_good_and_bad_lines() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        lines = [
            b'{"text": "one #a", "user": "u1"}',
            b"",
            b'{"text": "two", "user": "u2", "id": 77}',
            b"{not json",
            b'{"text": "x", "user": "u", "bogus": 1}',
            b"   \r",
            b'{"text": "\xff", "user": "u"}',
            b'{"text": "two", "user": "u2", "id": 77}',
            b'{"text": "changed", "user": "u2", "id": 77}\r',
        ]
        body = b"\n".join(lines) + b"\n"
        r = await c.post("/tweets/bulk", content=body, headers={"content-type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["ingested"] == 3 and doc["failed"] == 4
        items = doc["items"]
        assert [i["line"] for i in items] == [1, 3, 4, 5, 7, 8, 9]
        assert [i["status"] for i in items] == [201, 201, 400, 400, 400, 200, 409]
        assert items[1]["id"] == 77 and "error" not in items[0]
        assert items[2]["error"]["code"] == "invalid_json"
        assert items[3]["error"] == {
            "code": "unknown_field",
            "message": "unknown field 'bogus'",
            "field": "bogus",
        }
        assert items[4]["error"]["code"] == "invalid_json"
        assert items[6]["error"]["code"] == "conflict" and "id" not in items[6]
        r = await c.get("/tweets/77")
        assert r.json()["text"] == "two"
        for ct in ("application/json", "text/plain; charset=utf-8"):
            r = await c.post(
                "/tweets/bulk", content=b'{"text": "t", "user": "u"}', headers={"content-type": ct}
            )
            assert r.status_code == 200 and r.json()["ingested"] == 1
        r = await c.post("/tweets/bulk", content=b"")
        assert r.status_code == 200 and r.json() == {"ingested": 0, "failed": 0, "items": []}
        check_error(
            await c.post("/tweets/bulk", content=b"{}", headers={"content-type": "image/png"}),
            415,
            "unsupported_media_type",
        )

    run(t)


def test_bulk_line_limit() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        line = b'{"text": "t", "user": "u"}\n'
        r = await c.post("/tweets/bulk", content=line * 5 + b"\n\n")
        assert r.status_code == 200 and r.json()["ingested"] == 5  # blank lines do not count
        check_error(await c.post("/tweets/bulk", content=line * 6), 413, "payload_too_large")
        r = await c.get("/search", params={"q": "t"})
        assert len(r.json()["statuses"]) == 5  # the rejected request applied nothing

    run(t, cfg=HttpConfig(bulk_lines_max=5))


def test_bulk_body_limit() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        check_error(
            await c.post("/tweets/bulk", content=b'{"text": "t", "user": "u"}\n' * 100),
            413,
            "payload_too_large",
        )
        assert (await c.get("/health")).status_code == 200

    run(t, cfg=HttpConfig(body_bytes_max=1000))


# ---------------------------------------------------------------- search and trends


def test_search() -> None:
    coord = FakeCoordinator()

    async def t(c: httpx.AsyncClient) -> None:
        for i in range(5):
            await c.post("/tweets", json={"text": f"hello {i}", "user": "u", "id": 100 + i})
        r = await c.get("/search", params={"q": "hello", "count": "2", "foo": "ignored"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert [s["id"] for s in doc["statuses"]] == [104, 103]
        meta = doc["search_metadata"]
        assert meta["query"] == "hello" and meta["count"] == 2 and meta["result_type"] == "recent"
        assert meta["next_max_id"] == 102 and meta["next_max_id_str"] == "102"
        assert meta["partial"] is False and meta["coordinator"] == "n1" and meta["completed_in_ms"] >= 0
        assert "stages" not in meta
        req = coord.searches[-1]
        assert req.count == 2 and req.max_id is None and req.result_type == "recent"
        assert req.explain, "stages are always asked for: they feed the stage histograms"
        assert req.query.text == "hello"
        r = await c.get(
            "/search",
            params={
                "q": "hello",
                "max_id": "102",
                "since_id": "1",
                "result_type": "popular",
                "explain": "true",
            },
        )
        meta = r.json()["search_metadata"]
        assert [s["id"] for s in r.json()["statuses"]] == [102, 101, 100]
        assert meta["next_max_id"] is None and "next_max_id_str" not in meta
        assert meta["stages"] == {"parse": 0.1, "fetch": 0.2} and meta["result_type"] == "popular"
        req = coord.searches[-1]
        assert (req.max_id, req.since_id, req.result_type, req.explain, req.count) == (
            102,
            1,
            "popular",
            True,
            100,
        )

    run(t, coord=coord)


def test_search_parameter_errors() -> None:
    coord = FakeCoordinator()

    async def t(c: httpx.AsyncClient) -> None:
        check_error(await c.get("/search"), 400, "missing_field", "q")
        check_error(await c.get("/search", params={"q": "  "}), 400, "invalid_query", "q")
        check_error(await c.get("/search", params={"q": '"unbalanced'}), 400, "invalid_query", "q")
        check_error(await c.get("/search", params={"q": "-only -negative"}), 400, "invalid_query", "q")
        for name, value in [
            ("count", "0"),
            ("count", "101"),
            ("count", "ten"),
            ("count", ""),
            ("max_id", "0"),
            ("max_id", str(2**64)),
            ("since_id", "x"),
            ("result_type", "best"),
            ("explain", "maybe"),
        ]:
            check_error(
                await c.get("/search", params={"q": "a", name: value}),
                400,
                "invalid_query" if name == "q" else "invalid_field",
                name,
            )
        assert coord.searches == []  # nothing invalid reached the coordinator

    run(t, coord=coord)


def test_trends() -> None:
    coord = FakeCoordinator()

    async def t(c: httpx.AsyncClient) -> None:
        r = await c.get("/trends")
        assert r.status_code == 200
        assert r.json() == {
            "trends": [
                {"hashtag": "#python", "count": 12, "score": 3.5},
                {"hashtag": "#trio", "count": 5, "score": 1.25},
            ],
            "window": "1h",
            "as_of": "2023-11-14T22:13:20Z",
        }
        assert coord.trend_calls[-1] == (3600, 10, NOW_MS)
        r = await c.get("/trends", params={"window": "5m", "count": "1"})
        assert r.json()["window"] == "5m" and len(r.json()["trends"]) == 1
        assert coord.trend_calls[-1] == (300, 1, NOW_MS)
        await c.get("/trends", params={"window": "24h", "count": "50"})
        assert coord.trend_calls[-1][:2] == (86400, 50)
        check_error(await c.get("/trends", params={"window": "2h"}), 400, "invalid_field", "window")
        check_error(await c.get("/trends", params={"count": "51"}), 400, "invalid_field", "count")
        check_error(await c.get("/trends", params={"count": "0"}), 400, "invalid_field", "count")

    run(t, coord=coord)


# ---------------------------------------------------------------- the node itself


def test_cluster_health_openapi() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        r = await c.get("/cluster")
        assert r.status_code == 200 and r.json()["members"][0]["name"] == "n1"
        r = await c.get("/health")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        r = await c.head("/health")
        assert (
            r.status_code == 200
            and r.content == b""
            and r.headers["content-length"] == str(len(b'{"status":"ok"}'))
        )
        doc = (await c.get("/openapi.json")).json()
        assert doc["openapi"].startswith("3.1")
        assert set(doc["paths"]) == {
            "/tweets",
            "/tweets/bulk",
            "/tweets/{id}",
            "/search",
            "/trends",
            "/cluster",
            "/health",
            "/metrics",
            "/openapi.json",
            "/admin/snapshot",
            "/admin/cleanup",
            "/admin/decommission",
            "/admin/topology",
            "/stats",
            "/",
        }
        schemas = doc["components"]["schemas"]
        assert set(schemas["TweetOut"]["required"]) == TWEET_KEYS
        assert schemas["TweetInput"]["additionalProperties"] is False
        assert {p["name"] for p in doc["paths"]["/search"]["get"]["parameters"]} == {
            "q",
            "count",
            "max_id",
            "since_id",
            "result_type",
            "explain",
        }

    run(t)


def test_metrics_endpoint() -> None:
    metrics = HttpMetrics()

    async def t(c: httpx.AsyncClient) -> None:
        await c.get("/health")
        await c.get("/health")
        await c.get("/nope")
        await c.get(f"/tweets/{2**70}")
        r = await c.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        got = samples(r.text)
        assert got[key("murmur_http_requests_total", route="/health", method="GET", status="200")] == 2
        assert got[key("murmur_http_requests_total", route="unknown", method="GET", status="404")] == 1
        assert got[key("murmur_http_requests_total", route="/tweets/{id}", method="GET", status="400")] == 1
        assert got[key("murmur_http_request_duration_seconds_count", route="/health", status="200")] == 2
        assert got[key("murmur_http_errors_total", code="not_found")] == 1
        assert got[key("murmur_index_tweets", partition="p0")] == 0
        assert types(r.text)["murmur_index_tweets"] == "gauge"
        assert got[key("murmur_http_connections_open")] == 1

    run(t, metrics=metrics)


def test_unknown_route_and_wrong_method() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        check_error(await c.get("/nope"), 404, "not_found")
        check_error(await c.get("/tweets/"), 404, "not_found")
        check_error(await c.get("/internal/replicate"), 404, "not_found")
        r = await c.delete("/search")
        check_error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == "GET, HEAD"
        r = await c.get("/tweets")
        check_error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == "POST"
        r = await c.post("/tweets/5", json={})
        assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, HEAD, PATCH"

    run(t)


def test_admin_routes_go_to_their_handlers_and_internal_paths_are_gone() -> None:
    seen: list[str] = []

    async def snapshot(req: Request) -> Response:
        seen.append(req.path)
        return Response(202, b"{}")

    async def t(port: int) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            assert (await c.post("/admin/snapshot")).status_code == 202
            r = await c.get("/admin/snapshot")
            assert r.status_code == 405 and r.headers["allow"] == "POST"
            check_error(await c.post("/internal/decommission", headers={"x-murmur-secret": "s"}), 404, "not_found")
            assert (await c.get("/health")).status_code == 200

    cfg = HttpConfig()
    handler = make_handler(FakeCoordinator(), HttpMetrics(), cfg, "n1", admin_routes={"/admin/snapshot": {"POST": snapshot}})
    serve(t, cfg=cfg, handler=handler)
    assert seen == ["/admin/snapshot"]
