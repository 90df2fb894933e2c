"""Failover with real processes, black box over HTTP: 5 nodes (N=3 W=2 R=2) with a real corpus; one node killed
with SIGKILL. Once gossip has marked it dead, every write is acknowledged (its partitions elect new masters that
catch up first), every search is complete and exact on the four survivors (edits and deletes of tweets the dead
node mastered included), and after it restarts it answers exactly too."""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import pytest

from node.cluster.placement import Placement
from node.ring.ring import Ring
from tests.cluster.kit import bulk_load_docs, corpus, expected, pick_queries, search
from tests.support.oracle import doc_of
from tests.support.procs import running_nodes, write_config

pytestmark = pytest.mark.slow
NAMES = ["n1", "n2", "n3", "n4", "n5"]
FAST_GOSSIP = "[membership]\nprobe_interval_s = 0.2\nprobe_timeout_s = 0.1\ngossip_interval_s = 0.05\n"
DETECT_TIMEOUT_S = 30.0


def wait_state(clients: list[httpx.Client], node: str, states: set[str]) -> float:
    """Seconds until every client's /cluster shows `node` in one of `states`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < DETECT_TIMEOUT_S:
        seen = []
        for c in clients:
            members = {mb["name"]: mb["state"] for mb in c.get("/cluster").json()["members"]}
            seen.append(members.get(node))
        if all(s in states for s in seen):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"{node} not {states} everywhere after {DETECT_TIMEOUT_S}s: {seen}")


def check_exact(clients: list[httpx.Client], model: dict, queries: list[str]) -> None:  # type: ignore[type-arg]
    for c in clients:
        for q in queries:
            got = [t["id"] for t in search(c, q, count=100)["statuses"]]
            assert got == expected(model, q), (str(c.base_url), q)


def test_one_node_killed_leaves_writes_acknowledged_and_searches_exact(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, NAMES, n=3, w=2, r=2, extra=FAST_GOSSIP)
    bodies, _source = corpus(1500)
    with running_nodes(cfg, NAMES) as nodes:
        clients = [httpx.Client(base_url=nd.url, timeout=30) for nd in nodes]
        model = bulk_load_docs(clients[0], bodies)
        queries = pick_queries(model)
        nodes[4].kill()
        survivors = clients[:4]
        wait_state(survivors, "n5", {"dead"})
        rng = random.Random(5)
        placement = Placement(Ring.build(NAMES, 16), 3)
        # Writes: new tweets through every survivor, and edits/deletes of tweets whose master was n5.
        for k in range(60):
            c = survivors[k % 4]
            body = {"text": f"after the crash failover{k} words", "user": "fo"}
            r = c.post("/tweets", json=body)
            assert r.status_code == 201, r.text
            model[r.json()["id"]] = doc_of(body, r.json())
        orphans = [i for i in sorted(model) if placement.preferred_of_tweet(i) == "n5"]
        assert len(orphans) > 20
        for i in rng.sample(orphans, 10):
            patch = {"text": f"edited after the crash {i} failover"}
            r = rng.choice(survivors).patch(f"/tweets/{i}", json=patch)
            assert r.status_code == 200, r.text
            model[i] = model[i].edited(**patch)
        for i in rng.sample([i for i in orphans if "failover" not in model[i].text], 10):
            r = rng.choice(survivors).delete(f"/tweets/{i}")
            assert r.status_code in (200, 204), r.text
            del model[i]
        check_exact(survivors, model, [*queries, "failover", "crash", "edited failover"])
        for c in survivors:
            for i in rng.sample(sorted(model), 30):
                assert c.get(f"/tweets/{i}").json()["text"] == model[i].text
        nodes[4].start()
        wait_state(survivors, "n5", {"alive"})
        check_exact(clients, model, [*queries, "failover", "edited failover"])
        for c in clients:
            c.close()
