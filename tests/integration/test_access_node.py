"""CONTRACT §5 and the search lane against a real node with [[auth.keys]]: writes need a write key, cluster
operations an admin key, reads and /health work as configured; `murmur decommission` sends its --api-key; searches
past the lane get 429 with Retry-After while writes go on."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from node.cli.keygen import key_table, new_api_key
from tests.support.procs import running_nodes, write_config

READ, WRITE, ADMIN = new_api_key(), new_api_key(), new_api_key()
EXTRA = (
    "\n[http]\nsearch_inflight_max = 1\nsearch_queue_max = 0\n"
    '\n[auth]\nanonymous = "read"\n\n'
    + key_table("reader", "read", READ) + key_table("ingest", "write", WRITE) + key_table("ops", "admin", ADMIN)
)


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_a_node_with_keys_refuses_writes_and_cluster_operations_without_the_role(tmp_path: Path) -> None:
    conf = write_config(tmp_path, ["n1", "n2"], n=2, extra=EXTRA)
    with running_nodes(conf, ["n1", "n2"]) as (nd, _n2):
        with httpx.Client(base_url=nd.url, timeout=30) as c:
            body = {"text": "keys and roles", "user": "u"}
            assert c.get("/health").status_code == 200
            assert c.post("/tweets", json=body).status_code == 401
            assert c.post("/tweets", json=body, headers=auth("wrong")).status_code == 401
            assert c.post("/tweets", json=body, headers=auth(READ)).status_code == 403
            r = c.post("/tweets", json=body, headers=auth(WRITE))
            assert r.status_code == 201, r.text
            tid = r.json()["id"]
            assert c.get(f"/tweets/{tid}").status_code == 200  # anonymous = read
            assert c.delete(f"/tweets/{tid}").status_code == 401
            assert c.post("/tweets/bulk", content=b'{"text":"a","user":"u"}\n', headers=auth(READ)).status_code == 403
            for key, status in ((None, 401), (WRITE, 403)):
                assert c.post("/admin/decommission", headers=auth(key) if key else {}).status_code == status
                assert c.post("/admin/snapshot", headers=auth(key) if key else {}).status_code == status
                assert c.get("/admin/topology", headers=auth(key) if key else {}).status_code == status
            r = c.post("/admin/decommission", headers=auth(ADMIN))  # admitted; with N=2 on two nodes none may leave
            assert r.status_code == 409 and "replication factor" in r.json()["error"]["message"], r.text
            assert c.post("/admin/snapshot", headers=auth(ADMIN)).status_code == 202
            assert c.get("/admin/topology", headers=auth(ADMIN)).json()["version"] >= 1

            cli = [sys.executable, "-m", "node.cli.main", "decommission", "n1", "--config", str(conf), "--timeout", "5"]
            env = {k: v for k, v in os.environ.items() if k != "MURMUR_API_KEY"}
            p = subprocess.run(cli, capture_output=True, text=True, timeout=60, env=env)
            assert p.returncode == 1 and "(401)" in p.stderr, p.stderr
            p = subprocess.run([*cli, "--api-key", ADMIN], capture_output=True, text=True, timeout=60, env=env)
            assert p.returncode == 1 and "(409)" in p.stderr and "replication factor" in p.stderr, p.stderr
            p = subprocess.run(cli, capture_output=True, text=True, timeout=60, env={**env, "MURMUR_API_KEY": ADMIN})
            assert "(409)" in p.stderr, p.stderr

            # the search lane: one running, none waiting; 64 at once cannot all get in, writes are not affected
            codes: list[int] = []
            retry: set[str | None] = set()

            def search() -> None:
                with httpx.Client(base_url=nd.url, timeout=30) as own:
                    q = " OR ".join(f"w{i}" for i in range(60))
                    r = own.get("/search", params={"q": q, "result_type": "popular"})
                    codes.append(r.status_code)
                    if r.status_code == 429:
                        retry.add(r.headers.get("retry-after"))

            threads = [threading.Thread(target=search) for _ in range(64)]
            for t in threads:
                t.start()
            w = c.post("/tweets", json={"text": "written while searches are shed", "user": "u"}, headers=auth(WRITE))
            for t in threads:
                t.join(60)
            assert w.status_code == 201
            assert set(codes) <= {200, 429} and len(codes) == 64, codes
            assert codes.count(429) >= 1 and codes.count(200) >= 1, codes
            assert retry == {"1"}
