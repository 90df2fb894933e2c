"""Join and leave with real processes, black box over HTTP (N=3 W=2 R=2), while clients keep writing:
- a node added to cluster.toml takes its tokens, streams the ranges it gains, and only then serves them;
- `murmur decommission NAME` streams the leaver's ranges to the others and takes it off the ring; it stops, and
  refuses to start again by accident;
- a node started with --join and a seed (its own config naming only itself) joins with a machine id of its own;
  `murmur cleanup` then drops, on every old member, the ranges it gave the newcomer, and nothing else.
Every acknowledged write is then found by id and by search on every node, and every search is exact (the oracle
over the tweets as sent). While the ring moves, every search is counted: one that is not a complete 200 counts
against SEARCH_FAILURES_MAX (only the leaver, once stopped, may refuse connections). Holdings are each replica's
own keys, read over the authenticated node-to-node transport, compared id by id with what it must hold."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from node.config import load_config
from node.ids import decompose
from tests.cluster.kit import bulk_load_docs, corpus, expected, pick_queries, search
from tests.support import replicas
from tests.support.oracle import Doc, doc_of
from tests.support.procs import NodeProc, free_port, running_nodes, write_config

pytestmark = pytest.mark.slow
FAST_GOSSIP = "[membership]\nprobe_interval_s = 0.2\nprobe_timeout_s = 0.1\ngossip_interval_s = 0.05\n"
SETTLE_TIMEOUT_S = 120.0
# Searches during a join or a leave that may be other than a complete 200 (every member stays alive and R=2 of
# N=3 replicas answer from the old ring until the settle, so none should be).
SEARCH_FAILURES_MAX = 0
HOLDINGS_TIMEOUT_S = 30.0  # a write acknowledged by W during the move reaches its last replica by then


@pytest.fixture
def opened() -> Iterator[list[httpx.Client]]:
    """HTTP clients a test opens, closed whatever happens (an unclosed socket would fail a later test)."""
    out: list[httpx.Client] = []
    yield out
    for c in out:
        c.close()


class Writer:
    """Creates tweets (and deletes some) through the given nodes until stopped; records what was acknowledged, and
    the writes that got no definite answer (a 503 or no answer may still have been applied: `resolve` settles them
    once the ring is still)."""

    def __init__(self, urls: list[str], model: dict[int, Doc], tag: str) -> None:
        self.urls, self.model, self.tag = urls, model, tag
        self.stop = threading.Event()
        self.acked = self.refused = 0
        self.unsure_creates: list[dict[str, object]] = []  # bodies
        self.unsure_deletes: list[int] = []
        self.wrong: list[str] = []  # answers no write may get
        self.resolved: set[int] = set()  # unacknowledged creates found applied: maybe on fewer than W replicas
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        clients = [httpx.Client(base_url=u, timeout=30) for u in self.urls]
        k = 0
        while not self.stop.is_set():
            c = clients[k % len(clients)]
            body = {"text": f"{self.tag} zqmoving zqring{self.tag}{k}", "user": "mover"}  # the last word: one tweet only
            k += 1
            try:
                r = c.post("/tweets", json=body)
            except httpx.HTTPError:
                self.refused += 1
                self.unsure_creates.append(body)
                continue
            if r.status_code != 201:
                self.refused += 1
                if r.status_code >= 500:
                    self.unsure_creates.append(body)
                else:
                    self.wrong.append(f"create {r.status_code} {r.text[:200]}")
                continue
            self.model[r.json()["id"]] = doc_of(body, r.json())
            self.acked += 1
            if k % 7 == 0:  # delete an earlier one of ours (not one whose delete may have landed already)
                victim = next(i for i in self.model if self.tag in self.model[i].text and i not in self.unsure_deletes)
                try:
                    d = c.delete(f"/tweets/{victim}")
                except httpx.HTTPError:
                    self.unsure_deletes.append(victim)
                    continue
                if d.status_code == 204:
                    del self.model[victim]
                elif d.status_code >= 500:
                    self.unsure_deletes.append(victim)
                else:  # a 404 here is an acknowledged create lost
                    self.wrong.append(f"delete of {victim}: {d.status_code} {d.text[:200]}")
                    del self.model[victim]
        for c in clients:
            c.close()

    def resolve(self, c: httpx.Client) -> None:
        """Settle the writes without a definite answer by reading them back (the ring is still): a create whose
        unique word is found landed (once at most), a delete whose tweet is gone landed. check_all then checks
        every node against the model so resolved."""
        assert self.wrong == [], self.wrong[:5]
        for body in self.unsure_creates:
            word = str(body["text"]).split()[-1]  # zqring<tag><k>: one tweet at most carries it
            hits = search(c, word)["statuses"]
            assert len(hits) <= 1, (word, hits)
            if hits:
                assert hits[0]["text"] == body["text"], hits
                self.model[hits[0]["id"]] = doc_of(body, hits[0])
                self.resolved.add(hits[0]["id"])
        for victim in self.unsure_deletes:
            if victim in self.model and c.get(f"/tweets/{victim}").status_code == 404:
                del self.model[victim]

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


class Searcher:
    """Runs fixed searches through every node while the ring moves; their answers must never change (the
    writers' tweets use words of their own). Every answer that is not a complete 200 is kept in `failed`, except
    a broken or refused connection to `leaver`, or its 503 "stopping" (it stops once it has left)."""

    def __init__(self, urls: list[str], want: dict[str, list[int]], leaver: str | None = None) -> None:
        self.urls, self.want, self.leaver = urls, want, leaver
        self.stop = threading.Event()
        self.checked = 0
        self.wrong: list[tuple[str, str, list[int]]] = []
        self.failed: list[tuple[str, str, str]] = []  # (node, query, what went wrong)
        self.leaver_gone = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        clients = [httpx.Client(base_url=u, timeout=30) for u in self.urls]
        k = 0
        while not self.stop.is_set():
            c = clients[k % len(clients)]
            q = sorted(self.want)[k % len(self.want)]
            k += 1
            url = str(c.base_url).rstrip("/")
            try:
                r = c.get("/search", params={"q": q, "count": 100})
            except httpx.TransportError as e:
                if url == self.leaver:
                    self.leaver_gone += 1
                else:
                    self.failed.append((url, q, repr(e)))
                continue
            if url == self.leaver and r.status_code == 503 and "is stopping" in r.text:
                self.leaver_gone += 1  # it refuses new requests once it has left (it answers those under way)
                continue
            if r.status_code != 200 or r.json()["search_metadata"]["partial"]:
                self.failed.append((url, q, f"{r.status_code} {r.text[:200]}"))
                continue
            self.checked += 1
            got = [t["id"] for t in r.json()["statuses"]]
            if got != self.want[q]:
                self.wrong.append((url, q, got))
        for c in clients:
            c.close()

    def __enter__(self) -> Searcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)

    def verdict(self) -> None:
        assert self.checked > 20 and self.wrong == [], (self.checked, self.wrong[:3])
        assert len(self.failed) <= SEARCH_FAILURES_MAX, (len(self.failed), self.checked, self.failed[:5])


def settled(clients: list[httpx.Client], members: set[str]) -> None:
    """Wait until every client's /cluster shows exactly `members`, all normal and alive, and no change."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    seen: list[object] = []
    while time.monotonic() < deadline:
        seen = []
        for c in clients:
            view = c.get("/cluster").json()
            seen.append((view.get("change"), {mb["name"]: (mb["ring"], mb["state"]) for mb in view["members"]}))
        if all(ch is None and mbs == dict.fromkeys(members, ("normal", "alive")) for ch, mbs in seen):
            return
        time.sleep(0.2)
    raise AssertionError(f"ring did not settle on {sorted(members)}: {seen}")


def check_holdings(cfg: Path, model: dict[int, Doc], gone: list[int]) -> None:
    """Each replica of the settled ring holds, among its own keys (read over the node-to-node transport with the
    cluster secret), every live tweet of the partitions it replicates and the tombstone of every deleted one:
    what it gained was streamed to it, not just reachable through the other replicas. (More is fine: a node keeps
    what it no longer replicates, and a refused write may sit on some replicas.)"""
    conf = load_config(cfg)
    seeds = [(nd.host, nd.gossip_port) for nd in conf.nodes]
    missing: dict[str, list[int]] = {}
    deadline = time.monotonic() + HOLDINGS_TIMEOUT_S
    while True:

        async def read(pool: replicas.PeerPool) -> tuple[replicas.Topology, dict[str, dict[int, int]]]:
            t = await replicas.topology(pool, seeds)
            return t, await replicas.holdings(pool, t, 3)

        topo, held = replicas.run(conf.cluster.secret, read)
        assert topo.next is None, topo
        missing = {}
        for i in [*model, *gone]:
            for nd in replicas.replicas_of(topo, 3, i):
                if i not in held[nd]:
                    missing.setdefault(nd, []).append(i)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not missing, {nd: (len(ids), ids[:5]) for nd, ids in missing.items()}
    assert all(held[nd] for nd in topo.names()), {nd: len(h) for nd, h in held.items()}


def check_all(clients: list[httpx.Client], model: dict[int, Doc], queries: list[str], gone: list[int]) -> None:
    for c in clients:
        for q in queries:
            got = [t["id"] for t in search(c, q, count=100)["statuses"]]
            assert got == expected(model, q), (str(c.base_url), q)
        for i in sorted(model)[::7]:
            r = c.get(f"/tweets/{i}")
            assert r.status_code == 200 and r.json()["text"] == model[i].text, (str(c.base_url), i, r.text)
        for i in gone:
            assert c.get(f"/tweets/{i}").status_code == 404, (str(c.base_url), i)


def test_join_by_config_then_decommission_with_writes_in_flight(tmp_path: Path, opened: list[httpx.Client]) -> None:
    names = ["n1", "n2", "n3", "n4"]
    cfg = write_config(tmp_path, names, n=3, w=2, r=2, extra=FAST_GOSSIP)
    bodies, _source = corpus(1200)
    with running_nodes(cfg, names) as nodes:
        clients = [httpx.Client(base_url=nd.url, timeout=30) for nd in nodes]
        opened.extend(clients)
        model = bulk_load_docs(clients[0], bodies)
        ids = list(model)
        gone = [ids[3], ids[50], ids[400]]
        for i in gone:
            assert clients[2].delete(f"/tweets/{i}").status_code == 204
            del model[i]
        queries = [*pick_queries(model), "zqmoving", "mover zqmoving"]
        fixed = {q: expected(model, q) for q in pick_queries(model, seed=11)}
        # n5 is added to cluster.toml; the running nodes never read it again: n5 finds them through it and joins
        with open(cfg, "a") as f:
            f.write(f'[[nodes]]\nname = "n5"\nhost = "127.0.0.1"\nhttp_port = {free_port()}\ngossip_port = {free_port()}\n')
        with Writer([nd.url for nd in nodes], model, "joinwrite") as w, Searcher([nd.url for nd in nodes], fixed) as s1:
            n5 = NodeProc(cfg, "n5").start()
            nodes.append(n5)  # stopped with the others
            c5 = httpx.Client(base_url=n5.url, timeout=30)
            opened.append(c5)
            clients.append(c5)
            settled(clients, {"n1", "n2", "n3", "n4", "n5"})
            time.sleep(1.0)  # writes after the settle, too
        assert w.acked > 20, (w.acked, w.refused)
        w.resolve(clients[0])
        s1.verdict()
        view = c5.get("/cluster").json()
        mine = next(mb for mb in view["members"] if mb["name"] == "n5")
        assert mine["ring_share"] > 0.1 and mine["tweets"] > 100, mine
        check_holdings(cfg, {i: d for i, d in model.items() if i not in w.resolved}, gone)
        check_all(clients, model, queries, gone)

        # decommission n2 through the CLI while writes go on through the others
        stay = [nodes[i] for i in (0, 2, 3, 4)]
        urls = [nd.url for nd in stay]
        with Writer(urls, model, "leavewrite") as w2, Searcher([*urls, nodes[1].url], fixed, leaver=nodes[1].url) as s2:
            out = subprocess.run(
                [sys.executable, "-m", "node.cli.main", "decommission", "n2", "--config", str(cfg), "--url", stay[0].url],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert out.returncode == 0, out.stdout + out.stderr
            assert "left the ring" in out.stdout
            time.sleep(1.0)
        assert w2.acked > 10, (w2.acked, w2.refused)
        s2.verdict()
        assert nodes[1].proc is not None and nodes[1].proc.wait(30) == 0  # it stopped by itself
        rest = [clients[i] for i in (0, 2, 3, 4)]
        settled(rest, {"n1", "n3", "n4", "n5"})
        w2.resolve(rest[0])
        check_holdings(cfg, {i: d for i, d in model.items() if i not in w.resolved | w2.resolved}, gone)
        check_all(rest, model, [*queries, "leavewrite"], gone)
        # a decommissioned node does not rejoin by accident
        again = subprocess.run(
            [sys.executable, "-m", "node.cli.main", "node", "--config", str(cfg), "--name", "n2"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode != 0 and "decommissioned" in again.stderr, again.stderr[-500:]


def test_join_with_seed_and_own_config(tmp_path: Path, opened: list[httpx.Client]) -> None:
    names = ["n1", "n2", "n3"]
    cfg = write_config(tmp_path, names, n=3, w=2, r=2, extra=FAST_GOSSIP)
    bodies, _source = corpus(600)
    with running_nodes(cfg, names) as nodes:
        clients = [httpx.Client(base_url=nd.url, timeout=30) for nd in nodes]
        opened.extend(clients)
        model = bulk_load_docs(clients[0], bodies)
        queries = pick_queries(model)
        # with N=3 on 3 nodes none may leave; the endpoint wants a POST (and the admin role: tests/http/test_auth*)
        r = clients[0].post("/admin/decommission")
        assert r.status_code == 409 and "fewer than the replication factor" in r.json()["error"]["message"], r.text
        assert clients[0].get("/admin/decommission").status_code == 405
        # the cluster secret opens nothing over HTTP any more
        assert clients[0].post("/internal/decommission", headers={"x-murmur-secret": "test-secret"}).status_code == 404
        seed = cfg.read_text().split("gossip_port = ")[1].split()[0]  # n1's gossip port
        own = tmp_path / "own"
        own.mkdir()
        # x9's own config lists itself first (machine id 1 by position: n1's too), its own data dir, the others after
        text = cfg.read_text()
        head, first, rest = text.partition("[[nodes]]")
        x9_table = f'[[nodes]]\nname = "x9"\nhost = "127.0.0.1"\nhttp_port = {free_port()}\ngossip_port = {free_port()}\n'
        own_cfg = own / "cluster.toml"
        own_cfg.write_text(head + x9_table + first + rest)
        x9 = NodeProc(own_cfg, "x9", ("--join", f"127.0.0.1:{seed}")).start()
        nodes.append(x9)
        cx = httpx.Client(base_url=x9.url, timeout=30)
        opened.append(cx)
        clients.append(cx)
        settled(clients, {"n1", "n2", "n3", "x9"})
        body = {"text": "written through the joiner", "user": "x9"}
        r = cx.post("/tweets", json=body)
        assert r.status_code == 201, r.text
        model[r.json()["id"]] = doc_of(body, r.json())
        machines = set()
        for c in clients[:3]:
            body2 = {"text": "written through an old member", "user": "old"}
            r2 = c.post("/tweets", json=body2)
            assert r2.status_code == 201, r2.text
            model[r2.json()["id"]] = doc_of(body2, r2.json())
            machines.add(decompose(r2.json()["id"])[2])
        assert len(machines) == 3 and decompose(r.json()["id"])[2] not in machines
        check_all(clients, model, [*queries, "joiner"], [])
        # `murmur cleanup` on every node: the old members drop the ranges they gave x9, nothing else changes
        conf = load_config(cfg)
        seeds = [(nd.host, nd.gossip_port) for nd in conf.nodes]

        async def left(pool: replicas.PeerPool) -> dict[str, int]:
            return await replicas.leftovers(pool, await replicas.topology(pool, seeds), 3)

        before = replicas.run(conf.cluster.secret, left)
        assert all(before[nd] > 0 for nd in names) and before["x9"] == 0, before
        def own_counts() -> dict[str, int]:  # each node's count of its own tweets, from itself
            out = {}
            for c in clients:
                view = c.get("/cluster").json()
                out.update({mb["name"]: mb["tweets"] for mb in view["members"] if mb["name"] == view["coordinator"]})
            return out

        held = own_counts()
        for nd in nodes:
            out = subprocess.run(
                [sys.executable, "-m", "node.cli.main", "cleanup", "--url", nd.url],
                capture_output=True, text=True, timeout=120,
            )
            assert out.returncode == 0 and "cleanup done: dropped" in out.stdout, out.stdout + out.stderr
        assert replicas.run(conf.cluster.secret, left) == dict.fromkeys([*names, "x9"], 0)
        status = clients[0].get("/admin/cleanup").json()
        assert status["running"] is False and status["last"]["tweets_dropped"] > 0, status
        after = own_counts()
        assert all(after[nd] < held[nd] for nd in names) and after["x9"] == held["x9"], (held, after)
        check_holdings(cfg, model, [])
        check_all(clients, model, [*queries, "joiner"], [])


def test_joiner_killed_while_streaming_finishes_after_restart(tmp_path: Path, opened: list[httpx.Client]) -> None:
    """kill -9 of the joining node as soon as the ring shows it joining; restarted, it resumes its own move from
    the topology it persisted, and the ring settles with every range streamed."""
    names = ["n1", "n2", "n3"]
    cfg = write_config(tmp_path, names, n=3, w=2, r=2, extra=FAST_GOSSIP)
    bodies, _source = corpus(4000)
    with running_nodes(cfg, names) as nodes:
        clients = [httpx.Client(base_url=nd.url, timeout=30) for nd in nodes]
        opened.extend(clients)
        model = bulk_load_docs(clients[0], bodies)
        queries = pick_queries(model)
        with open(cfg, "a") as f:
            f.write(f'[[nodes]]\nname = "n4"\nhost = "127.0.0.1"\nhttp_port = {free_port()}\ngossip_port = {free_port()}\n')
        n4 = NodeProc(cfg, "n4").start()
        nodes.append(n4)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            view = clients[0].get("/cluster").json()
            if view.get("change") == "join n4":
                break
            time.sleep(0.02)
        n4.kill()
        view = clients[0].get("/cluster").json()
        assert view["change"] == "join n4", view  # killed mid-move: the others keep the moving ring
        body = {"text": "written while the joiner was down", "user": "w"}
        r = clients[1].post("/tweets", json=body)
        assert r.status_code == 201, r.text  # joint quorum: W of the new replicas without n4 still answer
        model[r.json()["id"]] = doc_of(body, r.json())
        n4.start()
        c4 = httpx.Client(base_url=n4.url, timeout=30)
        opened.append(c4)
        clients.append(c4)
        settled(clients, {"n1", "n2", "n3", "n4"})
        check_holdings(cfg, model, [])
        check_all(clients, model, [*queries, "joiner"], [])
