"""Hinted handoff with real processes: 3 nodes (N=3 W=2), one killed with SIGKILL. Writes made while it is down
are acknowledged by the other two, which keep hints for it (visible in /metrics); when it is back they replay
them, so it holds every tweet again within seconds - long before anti-entropy (one partition per interval) could
have visited all its partitions - and the hints are gone."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from tests.cluster.test_cluster_failover import FAST_GOSSIP, wait_state
from tests.support.procs import running_nodes, write_config

NAMES = ["n1", "n2", "n3"]


def hints_pending(c: httpx.Client) -> float:
    m = re.search(r"^murmur_hints_pending_records (\S+)$", c.get("/metrics").text, re.M)
    assert m is not None
    return float(m.group(1))


def counts(c: httpx.Client) -> dict[str, int | None]:
    return {mb["name"]: mb["tweets"] for mb in c.get("/cluster").json()["members"]}


def test_a_returning_replica_gets_the_writes_it_missed_from_hints(tmp_path: Path) -> None:
    # anti-entropy visits one partition per node every 2 s: only the hints explain a catch-up of all 48 in 20 s
    cfg = write_config(tmp_path, NAMES, n=3, w=2, r=2, extra=FAST_GOSSIP)
    with running_nodes(cfg, NAMES) as nodes:
        a, b, c = (httpx.Client(base_url=nd.url, timeout=30) for nd in nodes)
        nodes[2].kill()
        wait_state([a, b], "n3", {"dead"})
        for k in range(0, 200, 50):
            body = "\n".join(f'{{"text": "while n3 was away {i}", "user": "h"}}' for i in range(k, k + 50))
            r = a.post("/tweets/bulk", content=body, headers={"content-type": "application/x-ndjson"})
            assert r.status_code == 200 and r.json()["ingested"] == 50, r.text
        assert hints_pending(a) + hints_pending(b) > 0
        nodes[2].start()
        wait_state([a, b], "n3", {"alive"})
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20:
            seen = counts(c)
            if hints_pending(a) + hints_pending(b) == 0 and seen["n3"] == 200:
                break
            time.sleep(0.2)
        assert hints_pending(a) + hints_pending(b) == 0
        assert counts(a)["n3"] == 200 or counts(c)["n3"] == 200, counts(c)
        for cl in (a, b, c):
            cl.close()
