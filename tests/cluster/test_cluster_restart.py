"""Whole-cluster restart: kill -9 every node right after acknowledged writes, start them all again; every
acknowledged tweet is back (by id and by search, through every node) and no deleted one."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.procs import running_nodes, write_config

NAMES = ["n1", "n2", "n3"]


def test_kill_9_all_nodes_then_restart(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, NAMES, n=3, w=2, r=2)
    with running_nodes(cfg, NAMES) as nodes:
        with httpx.Client(base_url=nodes[0].url, timeout=30) as c:
            body = "\n".join(
                f'{{"text": "restart survivor {i} #phoenix", "user": "r{i % 5}"}}' for i in range(600)
            )
            r = c.post("/tweets/bulk", content=body, headers={"content-type": "application/x-ndjson"})
            assert r.status_code == 200 and r.json()["ingested"] == 600
            ids = sorted(it["id"] for it in r.json()["items"])
        with httpx.Client(base_url=nodes[1].url, timeout=30) as c:
            for i in ids[:50]:
                assert c.delete(f"/tweets/{i}").status_code == 204
            for i in ids[50:80]:
                assert c.patch(f"/tweets/{i}", json={"text": f"reborn {i} #phoenix"}).status_code == 200
        for nd in nodes:
            nd.kill()
        for nd in nodes:
            nd.start()
        live = set(ids[50:])
        for nd in nodes:
            with httpx.Client(base_url=nd.url, timeout=30) as c:
                found: set[int] = set()
                max_id = None
                while True:
                    params: dict[str, object] = {"q": "#phoenix", "count": 100}
                    if max_id is not None:
                        params["max_id"] = max_id
                    s = c.get("/search", params=params).json()
                    assert s["search_metadata"]["partial"] is False
                    found |= {t["id"] for t in s["statuses"]}
                    max_id = s["search_metadata"]["next_max_id"]
                    if max_id is None:
                        break
                assert found == live
                assert {
                    t["id"] for t in c.get("/search", params={"q": "reborn", "count": 100}).json()["statuses"]
                } == set(ids[50:80])
                for i in ids[:50:7]:
                    assert c.get(f"/tweets/{i}").status_code == 404
                for i in ids[50::37]:
                    assert c.get(f"/tweets/{i}").status_code == 200
