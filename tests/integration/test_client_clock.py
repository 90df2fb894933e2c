"""Issue 12, finding 3, against a real node: a client's created_at is data, never the node's id clock. A bulk whose
first line is in 2075 followed by 1,024 id-less lines, or one four minutes ahead, leaves the ids the node makes
for later tweets at its own clock, also after a restart (recovery must not take those ids as its clock)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from node.ids import decompose
from node.model import format_time
from tests.support.procs import NodeProc, write_config

SLACK_MS = 60_000  # the node's clock and ours are the same machine's; a minute covers any scheduling delay


def ndjson(lines: list[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def assert_id_at_now(c: httpx.Client) -> None:
    r = c.post("/tweets", json={"text": "made after the import", "user": "u"})
    assert r.status_code == 201, r.text
    ms = decompose(r.json()["id"])[0]
    assert abs(ms - time.time() * 1000) < SLACK_MS, (format_time(ms), r.json())


def test_a_client_time_never_moves_the_id_clock(tmp_path: Path) -> None:
    nd = NodeProc(write_config(tmp_path, ["n1"]), "n1").start()
    try:
        with httpx.Client(base_url=nd.url, timeout=60.0) as c:
            rest = [{"text": f"line {i}", "user": "u"} for i in range(1024)]
            body = ndjson([{"text": "x", "user": "u", "created_at": "2075-09-07T15:47:35.551Z"}, *rest])
            r = c.post("/tweets/bulk", content=body, headers={"content-type": "application/x-ndjson"})
            assert r.status_code == 200, r.text
            first, *others = r.json()["items"]
            assert first["status"] == 400 and first["error"]["field"] == "created_at", first
            assert all(it["status"] == 201 for it in others)
            assert_id_at_now(c)
            single = c.post("/tweets", json={"text": "x", "user": "u", "created_at": "2070-01-01T00:00:00Z"})
            assert single.status_code == 400 and single.json()["error"]["field"] == "created_at", single.text

            ahead = format_time(int(time.time() * 1000) + 4 * 60_000)  # within the bound: accepted
            r = c.post("/tweets/bulk", content=ndjson([{"text": "soon", "user": "u", "created_at": ahead}, *rest]),
                       headers={"content-type": "application/x-ndjson"})
            items = r.json()["items"]
            assert items[0]["status"] == 201 and decompose(items[0]["id"])[0] > time.time() * 1000 + 3 * 60_000
            assert all(it["status"] == 201 for it in items[1:])
            assert_id_at_now(c)
        assert nd.stop() == 0
        nd.start()  # recovery reads the stored ids, the one four minutes ahead among them
        with httpx.Client(base_url=nd.url, timeout=60.0) as c:
            assert c.get("/health").json()["tweets"] == 2 * 1024 + 3
            assert_id_at_now(c)
    finally:
        nd.kill()
