"""Hinted handoff with real processes: 3 nodes (N=3 W=2), one killed with SIGKILL. Writes made while it is down
are acknowledged by the other two, which keep hints for it (visible in /metrics); when it is back they replay
them: every hint is delivered (murmur_hints_replayed_total), none is left, and it holds every tweet again in its own
copy (its keys, read over the authenticated transport) - while anti-entropy and catch-up together moved far fewer
keys (murmur_synced_keys_total) than it missed, so the hints brought them. No timing is asserted: the wait only
bounds a hang."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from node.config import load_config
from tests.cluster.test_cluster_failover import FAST_GOSSIP, wait_state
from tests.support import replicas
from tests.support.procs import running_nodes, write_config

NAMES = ["n1", "n2", "n3"]
HANG_S = 120.0  # a bound on a hang, not a figure


def metric(c: httpx.Client, name: str, labels: str = "") -> float:
    """The value of one /metrics sample (0 when the family has no sample yet)."""
    m = re.search(rf"^{name}{re.escape(labels)} (\S+)$", c.get("/metrics").text, re.M)
    return float(m.group(1)) if m is not None else 0.0


def hints_pending(c: httpx.Client) -> float:
    assert re.search(r"^murmur_hints_pending_records ", c.get("/metrics").text, re.M)
    return metric(c, "murmur_hints_pending_records")


def held_by(cfg: Path, node: str) -> set[int]:
    conf = load_config(cfg)

    async def read(pool: replicas.PeerPool) -> set[int]:
        t = await replicas.topology(pool, [(n.host, n.gossip_port) for n in conf.nodes if n.name != node])
        got: set[int] = set()
        for start, end, reps in replicas.partitions(t, 3):
            if node in reps:
                got |= set(await replicas.holding(pool, replicas.addr_of(t, node), start, end))
        return got

    return replicas.run(conf.cluster.secret, read)


def counts(c: httpx.Client) -> dict[str, int | None]:
    return {mb["name"]: mb["tweets"] for mb in c.get("/cluster").json()["members"]}


def test_a_returning_replica_gets_the_writes_it_missed_from_hints(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, NAMES, n=3, w=2, r=2, extra=FAST_GOSSIP)
    with running_nodes(cfg, NAMES) as nodes:
        a, b, c = (httpx.Client(base_url=nd.url, timeout=30) for nd in nodes)
        nodes[2].kill()
        wait_state([a, b], "n3", {"dead"})
        missed: set[int] = set()
        for k in range(0, 200, 50):
            body = "\n".join(f'{{"text": "while n3 was away {i}", "user": "h"}}' for i in range(k, k + 50))
            r = a.post("/tweets/bulk", content=body, headers={"content-type": "application/x-ndjson"})
            assert r.status_code == 200 and r.json()["ingested"] == 50, r.text
            missed |= {it["id"] for it in r.json()["items"]}
        pending = hints_pending(a) + hints_pending(b)
        assert pending > 0
        synced = sum(metric(x, "murmur_synced_keys_total") for x in (a, b))
        nodes[2].start()
        wait_state([a, b], "n3", {"alive"})
        deadline = time.monotonic() + HANG_S
        while hints_pending(a) + hints_pending(b) > 0 or not missed <= held_by(cfg, "n3"):
            assert time.monotonic() < deadline, (hints_pending(a) + hints_pending(b), len(missed - held_by(cfg, "n3")))
            time.sleep(0.2)
        replayed = sum(metric(x, "murmur_hints_replayed_total", '{node="n3"}') for x in (a, b))
        assert replayed >= pending, (replayed, pending)  # every hint kept for n3 was delivered
        moved = sum(metric(x, "murmur_synced_keys_total") for x in (a, b, c)) - synced
        assert moved < len(missed), (moved, len(missed))  # anti-entropy and catch-up cannot account for them
        assert counts(c)["n3"] == 200, counts(c)
        for cl in (a, b, c):
            cl.close()
