"""Logs you can follow: one search through n1 of a 3-node cluster leaves log lines with its request id in n1's log
and in the log of at least one other node (the id rides in the node-to-node calls); the id is echoed in
X-Request-Id, taken from the request when it is sane, generated when not."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support.procs import running_nodes, write_config


def lines_with(path: Path, rid: str) -> list[dict[str, object]]:
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("request_id") == rid:
            out.append(rec)
    return out


def test_one_search_can_be_followed_across_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MURMUR_LOG_LEVEL", "debug")
    names = ["n1", "n2", "n3"]
    config = write_config(tmp_path, names, n=3, w=2, r=2)
    with running_nodes(config, names) as nodes, httpx.Client(base_url=nodes[0].url, timeout=30.0) as c:
        for i in range(20):
            assert c.post("/tweets", json={"text": f"follow me {i} #trace", "user": "u"}).status_code == 201
        r = c.get("/search", params={"q": "follow"}, headers={"x-request-id": "trace-abc.1"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-abc.1"
        assert len(r.json()["statuses"]) == 20
        fresh = c.get("/health", headers={"x-request-id": "not sane!"}).headers["x-request-id"]
        assert fresh != "not sane!" and len(fresh) == 16
        assert c.get("/health").headers["x-request-id"] != fresh
        mine = lines_with(nodes[0].log_path, "trace-abc.1")
        assert any(rec.get("event") == "http_request" and rec.get("route") == "/search" for rec in mine), mine
        others = {nd.name: lines_with(nd.log_path, "trace-abc.1") for nd in nodes[1:]}
        assert any(others.values()), "no other node logged the request id"
        for recs in others.values():
            assert all(rec.get("event") == "rpc_request" and rec.get("peer") == "n1" for rec in recs), recs
