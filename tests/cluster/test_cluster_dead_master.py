"""Writes to a master that died but is still believed alive (issue 11 §1, CONTRACT §6), with real processes:
5 nodes (N=3 W=2 R=2, the default gossip timings, so a crash is known only after ~4-5 s). Tweets whose partition
n5 masters are created; n5 is killed with SIGKILL and, at once, while every survivor still routes to it, new
tweets of its partitions are created and its tweets edited and deleted through the survivors. W=2 replicas of every
partition live, so the contract wants every one of those writes acknowledged (the coordinator moving to the next
live replica), and each then found exactly on every survivor. (Before the fix they were answered 503 until gossip
declared n5 dead.)"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.cluster.kit import expected
from tests.support import replicas
from tests.support.oracle import Doc, doc_of
from tests.support.procs import running_nodes, write_config

pytestmark = pytest.mark.slow
NAMES = ["n1", "n2", "n3", "n4", "n5"]
VICTIM = "n5"


def ids_mastered_by(cfg: Path, node: str, k: int, start: int) -> list[int]:
    from node.config import load_config

    conf = load_config(cfg)
    topo = replicas.run(conf.cluster.secret,
                        lambda pool: replicas.topology(pool, [(n.host, n.gossip_port) for n in conf.nodes]))
    out: list[int] = []
    i = start
    while len(out) < k:
        i += 1
        if replicas.replicas_of(topo, 3, i)[0] == node:
            out.append(i)
    return out


def believed_up(c: httpx.Client, node: str) -> bool:
    return {mb["name"]: mb["state"] for mb in c.get("/cluster").json()["members"]}[node] in ("alive", "suspect")


def test_writes_to_a_dead_master_still_believed_alive_are_acknowledged(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, NAMES, n=3, w=2, r=2)
    with running_nodes(cfg, NAMES) as nodes:
        clients = [httpx.Client(base_url=nd.url, timeout=30) for nd in nodes]
        survivors = clients[:4]
        try:
            ids = ids_mastered_by(cfg, VICTIM, 30, 5_000_000)
            old, new = ids[:10], ids[10:]
            model: dict[int, Doc] = {}
            for i in old:
                body = {"id": i, "text": f"zqorphan{i} mastered by the victim", "user": "orph"}
                r = survivors[i % 4].post("/tweets", json=body)
                assert r.status_code == 201, r.text
                model[i] = doc_of(body, r.json())
            time.sleep(1.0)  # the victim has mastered them, and everyone routes to it
            nodes[4].kill()  # SIGKILL: connections to it are refused from now on
            statuses: list[tuple[str, int, int, float]] = []  # (op, id, status, seconds)

            def timed(op: str, tid: int, r_fn: object) -> httpx.Response:
                t0 = time.monotonic()
                r = r_fn()  # type: ignore[operator]
                statuses.append((op, tid, r.status_code, round(time.monotonic() - t0, 3)))
                return r  # type: ignore[no-any-return]

            first_up = believed_up(survivors[0], VICTIM)
            for k, i in enumerate(new):
                body = {"id": i, "text": f"zqorphan{i} written in the window", "user": "orph"}
                r = timed("create", i, lambda b=body, c=survivors[k % 4]: c.post("/tweets", json=b))
                if r.status_code == 201:
                    model[i] = doc_of(body, r.json())
            for k, i in enumerate(old[:5]):
                patch = {"text": f"zqorphan{i} edited in the window"}
                r = timed("edit", i, lambda i=i, p=patch, c=survivors[k % 4]: c.patch(f"/tweets/{i}", json=p))
                if r.status_code == 200:
                    model[i] = model[i].edited(**patch)
            for k, i in enumerate(old[5:]):
                r = timed("delete", i, lambda i=i, c=survivors[k % 4]: c.delete(f"/tweets/{i}"))
                if r.status_code == 204:
                    del model[i]
            still_up = believed_up(survivors[0], VICTIM)
            assert first_up, "gossip declared the victim dead before the first write: the window was missed"
            refused = [s for s in statuses if s[2] >= 500]
            assert not refused, (f"{len(refused)} of {len(statuses)} writes refused while W replicas lived "
                                 f"(victim still believed up after them: {still_up}): {refused[:5]}")
            for c in survivors:
                assert [t["id"] for t in c.get("/search", params={"q": "zqorphan", "count": 100}).json()[
                    "statuses"]] == expected(model, "zqorphan")
        finally:
            for c in clients:
                c.close()
