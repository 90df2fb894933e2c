"""The public HTTP API against a real node process on loopback: every endpoint and every error path.
A rejected write must leave nothing behind (checked by count and by search)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.procs import NodeProc, write_config


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProc]:
    root: Path = tmp_path_factory.mktemp("api")
    nd = NodeProc(write_config(root, ["n1"]), "n1").start()
    try:
        yield nd
    finally:
        nd.stop()


@pytest.fixture()
def c(node: NodeProc) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=30.0) as client:
        yield client


def tweet_count(c: httpx.Client) -> int:
    return int(c.get("/health").json()["tweets"])


def assert_error(r: httpx.Response, status: int, code: str, field: str | None = "?") -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    if code != "?":
        assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    if field != "?":
        assert err["field"] == field, err


def test_create_get_and_idempotent_retry(c: httpx.Client) -> None:
    r = c.post("/tweets", json={"text": "Loving #Python, @Bob! https://x.co/1", "user": "alice", "lang": "en"})
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["id_str"] == str(t["id"]) and t["hashtags"] == ["python"] and t["mentions"] == ["bob"]
    assert t["edited_at"] is None and t["likes"] == 0 and t["created_at"].endswith("Z")
    assert c.get(f"/tweets/{t['id']}").json() == t
    body = {"id": 4242, "text": "imported tweet", "user": "carol", "created_at": "2011-10-18T21:53:25Z"}
    assert c.post("/tweets", json=body).status_code == 201
    again = c.post("/tweets", json=body)
    assert again.status_code == 200 and again.json()["id"] == 4242
    assert again.json()["created_at"] == "2011-10-18T21:53:25Z"
    assert_error(c.post("/tweets", json={**body, "text": "other"}), 409, "conflict")


def test_generated_ids_sort_by_time(c: httpx.Client) -> None:
    a = c.post("/tweets", json={"text": "old one", "user": "u", "created_at": "2012-01-01T00:00:00Z"}).json()
    b = c.post("/tweets", json={"text": "new one", "user": "u", "created_at": "2013-01-01T00:00:00Z"}).json()
    now = c.post("/tweets", json={"text": "now one", "user": "u"}).json()
    assert a["id"] < b["id"] < now["id"]


def test_search_edit_delete(c: httpx.Client) -> None:
    ids = []
    for i in range(5):
        r = c.post("/tweets", json={"text": f"zebra crossing number {i}", "user": "zed"})
        ids.append(r.json()["id"])
    s = c.get("/search", params={"q": "zebra"}).json()
    assert [t["id"] for t in s["statuses"]] == sorted(ids, reverse=True)
    md = s["search_metadata"]
    assert md["count"] == 100 and md["result_type"] == "recent" and md["partial"] is False and md["coordinator"] == "n1"
    page = c.get("/search", params={"q": "zebra", "count": 2}).json()
    assert [t["id"] for t in page["statuses"]] == sorted(ids, reverse=True)[:2]
    nxt = c.get("/search", params={"q": "zebra", "count": 2, "max_id": page["search_metadata"]["next_max_id"]})
    assert [t["id"] for t in nxt.json()["statuses"]] == sorted(ids, reverse=True)[2:4]
    assert len(c.get("/search", params={"q": '"crossing number"'}).json()["statuses"]) == 5
    assert len(c.get("/search", params={"q": "zebra -crossing"}).json()["statuses"]) == 0
    assert len(c.get("/search", params={"q": "from:ZED number OR nothing"}).json()["statuses"]) == 5
    # edit: old terms stop matching, new ones match, the id stays, edited_at is set
    r = c.patch(f"/tweets/{ids[0]}", json={"text": "giraffe walking", "likes": 3})
    assert r.status_code == 200 and r.json()["id"] == ids[0] and r.json()["edited_at"] is not None
    assert r.json()["likes"] == 3
    assert ids[0] not in [t["id"] for t in c.get("/search", params={"q": "zebra"}).json()["statuses"]]
    assert [t["id"] for t in c.get("/search", params={"q": "giraffe"}).json()["statuses"]] == [ids[0]]
    # delete: gone from GET and search, a second delete is 404, the id cannot come back
    assert c.delete(f"/tweets/{ids[1]}").status_code == 204
    assert_error(c.get(f"/tweets/{ids[1]}"), 404, "not_found")
    assert_error(c.delete(f"/tweets/{ids[1]}"), 404, "not_found")
    assert ids[1] not in [t["id"] for t in c.get("/search", params={"q": "zebra"}).json()["statuses"]]
    assert c.post("/tweets", json={"id": ids[1], "text": "zebra again", "user": "zed"}).status_code == 409
    assert ids[1] not in [t["id"] for t in c.get("/search", params={"q": "zebra"}).json()["statuses"]]


def test_bulk(c: httpx.Client) -> None:
    lines = [
        b'{"text": "bulk one #bulky", "user": "b1"}',
        b"{not json",
        b'{"text": "bulk two #bulky", "user": "b2", "color": "red"}',
        b"",
        b'{"text": "bulk three #bulky", "user": "b3"}',
    ]
    r = c.post("/tweets/bulk", content=b"\n".join(lines), headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ingested"] == 2 and out["failed"] == 2
    by_line = {it["line"]: it for it in out["items"]}
    assert by_line[1]["status"] == 201 and by_line[5]["status"] == 201
    assert by_line[2]["status"] == 400 and by_line[3]["error"]["field"] == "color"
    assert len(c.get("/search", params={"q": "#bulky"}).json()["statuses"]) == 2


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b'{"text": "x", "user": ', 400, "invalid_json", "?"),
        (b'{"text": "\xff\xfe", "user": "u"}', 400, "invalid_json", "?"),
        (b'{"text": "rejectme1", "user": "u", "colour": 1}', 400, "unknown_field", "colour"),
        (b'{"user": "u"}', 400, "missing_field", "text"),
        (b'{"text": "rejectme2"}', 400, "missing_field", "user"),
        (('{"text": "' + "r" * 281 + '", "user": "u"}').encode(), 400, "invalid_field", "text"),
        (b'{"text": "rejectme3", "user": "u", "id": 0}', 400, "invalid_field", "id"),
        (b'{"text": "rejectme4", "user": "u", "id": 18446744073709551616}', 400, "?", "?"),
        (b'{"text": "rejectme5", "user": "u", "created_at": "yesterday"}', 400, "invalid_field", "created_at"),
        (b'[1, 2]', 400, "?", "?"),
        (b'{"text": "", "user": "u"}', 400, "invalid_field", "text"),
    ],
)
def test_rejected_writes_leave_nothing(c: httpx.Client, body: bytes, status: int, code: str, field: str) -> None:
    before = tweet_count(c)
    r = c.post("/tweets", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    if code != "?":
        assert_error(r, status, code, field)
    assert tweet_count(c) == before
    for word in ("rejectme1", "rejectme2", "rejectme3", "rejectme4", "rejectme5"):
        assert c.get("/search", params={"q": word}).json()["statuses"] == []


def test_ids_in_paths(c: httpx.Client) -> None:
    assert c.get("/tweets/0").status_code == 400
    assert c.get(f"/tweets/{2**64}").status_code == 400
    assert c.get("/tweets/abc").status_code == 400
    assert_error(c.get(f"/tweets/{2**64 - 1}"), 404, "not_found")
    assert_error(c.patch("/tweets/123456", json={"text": "x"}), 404, "not_found")
    assert_error(c.patch("/tweets/123456", json={"nope": 1}), 400, "unknown_field", "nope")


def test_huge_body_is_refused_and_the_node_stays_up(c: httpx.Client, node: NodeProc) -> None:
    before = tweet_count(c)
    big = b'{"text": "' + b"a" * (50 * 1024 * 1024) + b'", "user": "u"}'
    try:
        r = c.post("/tweets", content=big, headers={"content-type": "application/json"})
        assert_error(r, 413, "payload_too_large")
    except httpx.TransportError:
        pass  # the server may answer 413 and close before the client finished sending: also a refusal
    assert node.alive()
    assert c.get("/health").status_code == 200 and tweet_count(c) == before
    r = c.post("/tweets/bulk", content=big, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 413


def test_bad_queries(c: httpx.Client) -> None:
    for q in ['"unbalanced', "OR", "a OR", "-a", "since:2011-13-45 a", "near:100,0 within:5km a", ""]:
        r = c.get("/search", params={"q": q})
        assert_error(r, 400, "invalid_query", "q")
    assert_error(c.get("/search"), 400, "?", "q")
    assert_error(c.get("/search", params={"q": "a", "count": 0}), 400, "?", "count")
    assert_error(c.get("/search", params={"q": "a", "count": 101}), 400, "?", "count")
    assert_error(c.get("/search", params={"q": "a", "result_type": "best"}), 400, "?", "result_type")
    assert_error(c.get("/search", params={"q": "a", "max_id": "-3"}), 400, "?", "max_id")


def test_service_endpoints(c: httpx.Client) -> None:
    assert c.get("/health").json()["status"] == "ok"
    cl = c.get("/cluster").json()
    assert cl["n"] == 1 and [m["name"] for m in cl["members"]] == ["n1"]
    m = c.get("/metrics")
    assert m.status_code == 200 and "murmur_tweets" in m.text and "text/plain" in m.headers["content-type"]
    spec = c.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/search" in spec["paths"] and "/tweets/{id}" in spec["paths"]
    for tag in ("trendy", "trendy", "trendy", "other"):
        c.post("/tweets", json={"text": f"#{tag} now", "user": "t"})
    tr = c.get("/trends", params={"window": "5m"}).json()
    assert tr["trends"][0]["hashtag"] == "#trendy" and tr["trends"][0]["count"] == 3
    assert_error(c.get("/nope"), 404, "not_found")
    assert c.put("/tweets").status_code == 405


def _metric(c: httpx.Client, name: str) -> float:
    for ln in c.get("/metrics").text.splitlines():
        if ln.startswith(name + " "):
            return float(ln.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def test_wal_group_commits_are_counted(c: httpx.Client) -> None:
    """/metrics counts the WAL's group commits and records: a bulk of many lines is few commits of many records,
    one tweet one more record."""
    before = {k: _metric(c, f"murmur_wal_{k}_total") for k in ("batches", "records", "fsyncs")}
    lines = [f'{{"text": "group commit {i}", "user": "g"}}'.encode() for i in range(200)]
    r = c.post("/tweets/bulk", content=b"\n".join(lines), headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200 and r.json()["ingested"] == 200, r.text
    assert c.post("/tweets", json={"text": "one more", "user": "g"}).status_code == 201
    after = {k: _metric(c, f"murmur_wal_{k}_total") for k in ("batches", "records", "fsyncs")}
    records, batches = after["records"] - before["records"], after["batches"] - before["batches"]
    assert records >= 201, (before, after)
    assert 2 <= batches < records / 4, (before, after)  # the bulk went in shared commits, the POST in its own
    assert after["fsyncs"] > before["fsyncs"]  # this fixture's node logs with fsync = always (the default)


def test_staged_tweets_are_settled_when_writes_pause(c: httpx.Client) -> None:
    """Fewer tweets than the index stages get their docnos and word pairs anyway once writes pause (node/app.py
    _settle_index): nothing else would flush them."""
    lines = [f'{{"text": "settle me now number {i}", "user": "s{i % 3}"}}'.encode() for i in range(300)]
    r = c.post("/tweets/bulk", content=b"\n".join(lines), headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200 and r.json()["ingested"] == 300, r.text
    deadline = time.monotonic() + 20
    while _metric(c, "murmur_index_staged_tweets") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _metric(c, "murmur_index_staged_tweets") == 0
    assert len(c.get("/search", params={"q": '"settle me"', "count": 100}).json()["statuses"]) == 100


def test_malformed_http_does_not_hurt(node: NodeProc, c: httpx.Client) -> None:
    host, port = node.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        data = s.recv(4096)
        assert data.startswith(b"HTTP/1.1 400")
    assert c.get("/health").status_code == 200
