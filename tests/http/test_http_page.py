"""The page's routes over real sockets against the fake Coordinator: GET / and its static files (from the package,
with a CSP that allows no foreign script), GET /stats (counters, gauges, partitions; readable cross-origin), and
X-Request-Id on every answer."""

from __future__ import annotations

import httpx
import msgspec
from httpkit import FakeCoordinator, serve

from node.config import HttpConfig
from node.http.api import make_handler
from node.http.schema import PartitionHealth, StatsResponse
from node.http.stats import NodeFigures, partition_health
from node.metrics import HttpMetrics


def run_with(test, figures=None) -> None:  # type: ignore[no-untyped-def]
    cfg = HttpConfig()
    metrics = HttpMetrics()
    handler = make_handler(FakeCoordinator(), metrics, cfg, "n1", figures=figures)

    async def with_client(port: int) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            await test(c)

    serve(with_client, cfg=cfg, handler=handler, metrics=metrics)


def test_page_and_static_files_come_from_the_package() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        r = await c.get("/", params={"q": "<script>alert(1)</script>"})
        assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
        assert b'<script src="/static/app.js" defer></script>' in r.content
        assert b"alert(1)" not in r.content, "the page is static: nothing of the request is echoed into it"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        js = await c.get("/static/app.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert b"innerHTML" not in js.content, "the page builds elements with the DOM API only"
        css = await c.get("/static/style.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        for body in (r.content, js.content, css.content):
            assert b"//cdn" not in body and b"https://" not in body.replace(b"https?:", b"")
        head = await c.head("/")
        assert head.status_code == 200 and head.content == b""
        assert (await c.get("/static/nope.js")).status_code == 404
        assert (await c.post("/")).status_code == 405

    run_with(t)


def test_stats_counts_searches_and_ingest_and_is_readable_cross_origin() -> None:
    parts = PartitionHealth(total=48, all_replicas_up=32, under_replicated=16, below_write_quorum=0, below_read_quorum=0)

    async def t(c: httpx.AsyncClient) -> None:
        first = msgspec.json.decode((await c.get("/stats")).content, type=StatsResponse)
        assert first.node == "n1" and first.searches_total == 0 and first.ingested_total == 0 and first.tweets == 9
        await c.post("/tweets", json={"text": "hello", "user": "u"})
        await c.post("/tweets/bulk", content=b'{"text":"a","user":"u"}\n{"text":"b","user":"u"}\n')
        for q in ("hello", "a", "(("):
            await c.get("/search", params={"q": q})
        r = await c.get("/stats")
        assert r.headers["access-control-allow-origin"] == "*"
        s = msgspec.json.decode(r.content, type=StatsResponse)
        assert s.searches_total == 3 and s.ingested_total == 3
        assert s.uptime_s >= first.uptime_s and s.partitions == parts
        assert (s.tweets, s.replication_lag_records, s.hints_pending_records, s.index_bytes) == (9, 2, 1, 1000)

    run_with(t, figures=lambda: NodeFigures(9, 2, 1, 1000, parts))


def test_request_id_is_echoed_or_generated() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        r = await c.get("/health", headers={"x-request-id": "abc-1"})
        assert r.headers["x-request-id"] == "abc-1"
        r = await c.get("/nope", headers={"x-request-id": "bad id"})
        assert r.status_code == 404 and r.headers["x-request-id"] != "bad id"
        assert len(r.headers["x-request-id"]) == 16

    run_with(t)


def test_partition_health_counts_like_a_list() -> None:
    sets = [("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b"), ("a", "b", "d")]
    up = {"a", "b"}
    got = partition_health(sets, up.__contains__, w=2, r=2)
    assert got == PartitionHealth(total=4, all_replicas_up=0, under_replicated=4, below_write_quorum=0, below_read_quorum=0)
    got = partition_health(sets, {"c"}.__contains__, w=2, r=1)
    assert got.below_write_quorum == 4 and got.below_read_quorum == 1  # (a, b, d) has no replica up
    assert partition_health(sets, lambda _n: True, 2, 2).all_replicas_up == 4


def test_without_the_shells_figures_stats_reads_the_coordinators_samples() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        await c.post("/tweets", json={"text": "hello", "user": "u"})
        s = msgspec.json.decode((await c.get("/stats")).content, type=StatsResponse)
        assert s.partitions is None and s.tweets == 0  # the fake has no murmur_tweets gauge

    run_with(t)
