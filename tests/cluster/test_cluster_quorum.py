"""Quorums with real processes: 3 nodes, N=3 W=2 R=2. With one replica killed (SIGKILL) writes are acknowledged
by W=2 (once gossip has marked the node dead, its partitions' writes go to a newly elected master) and every
search stays complete (R=2 reads use the spare replica); with two nodes killed no election can be won and a
write gets 503; once they are back, retrying the same id is safe and the tweet is found through every node."""

from __future__ import annotations

from pathlib import Path

import httpx

from node.cluster.placement import Placement
from node.ring.ring import Ring
from tests.cluster.test_cluster_failover import FAST_GOSSIP, wait_state
from tests.support.procs import running_nodes, write_config


def test_w_and_r_with_nodes_down(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ["n1", "n2", "n3"], n=3, w=2, r=2, extra=FAST_GOSSIP)
    with running_nodes(cfg, ["n1", "n2", "n3"]) as nodes:
        a, b, c = (httpx.Client(base_url=nd.url, timeout=30) for nd in nodes)
        for i in range(20):
            assert a.post("/tweets", json={"id": 500 + i, "text": f"before kill {i}", "user": "q"}).status_code == 201
        nodes[2].kill()
        wait_state([a, b], "n3", {"dead"})
        placement = Placement(Ring.build(["n1", "n2", "n3"], 16), 3)
        alive_master = [i for i in range(600, 700) if placement.preferred_of_tweet(i) != "n3"][:20]
        dead_master = next(i for i in range(800, 900) if placement.preferred_of_tweet(i) == "n3")
        for k, i in enumerate(alive_master):
            r = b.post("/tweets", json={"id": i, "text": f"one down {k}", "user": "q"})
            assert r.status_code == 201, r.text
        r = b.post("/tweets", json={"id": dead_master, "text": "a new master", "user": "q"})
        assert r.status_code == 201, r.text
        for client in (a, b):
            for q, want in (("before kill", 20), ("one down", 20)):
                body = client.get("/search", params={"q": q}).json()
                assert len(body["statuses"]) == want and body["search_metadata"]["partial"] is False
        nodes[1].kill()
        lonely = next(i for i in range(700, 800) if placement.preferred_of_tweet(i) == "n1")
        r = a.post("/tweets", json={"id": lonely, "text": "two down lonely", "user": "q"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        nodes[1].start()
        nodes[2].start()
        retry = c.post("/tweets", json={"id": lonely, "text": "two down lonely", "user": "q"})
        assert retry.status_code in (200, 201), retry.text
        for client in (a, b, c):
            assert [t["id"] for t in client.get("/search", params={"q": "lonely"}).json()["statuses"]] == [lonely]
            assert client.get(f"/tweets/{lonely}").status_code == 200
            body = client.get("/search", params={"q": "one down", "count": 100}).json()
            assert len(body["statuses"]) == 20
        for cl in (a, b, c):
            cl.close()


