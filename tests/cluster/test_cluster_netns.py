"""A cluster across real interfaces (issue 11 §3): 3 nodes (N=3 W=2 R=2), each in a network namespace of its own
with its own address, every link delayed 20 ms each way and losing 1 % of its frames (tests/support/netns.py: the
userspace switch stands in for `tc netem`, which this kernel lacks). Writes through every node are acknowledged and
read back as sent, searches are exact (the oracle) everywhere. Then one node is cut off from everyone, both ways:
once the others see it dead, reads and searches stay complete and exact on them; healed, a refused write retried
with its id is acknowledged, every replica's own copy of every partition agrees (digests over the authenticated
transport) and every node answers exactly. Writes are acknowledged while the node is cut off (issue 11 §1,
CONTRACT §6): the masters answer at W, and the coordinators move to a live replica. Skipped, visibly, without root or /dev/net/tun; the lab (namespaces,
TAPs, the switch) is removed whatever happens, by the fixture's finalizer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.cluster.kit import bulk, bulk_load_docs, corpus, expected, pick_queries
from tests.support import netns, replicas
from tests.support.oracle import Doc, doc_of, geo_of, iso_ms
from tests.support.procs import running_nodes

pytestmark = pytest.mark.slow
NAMES = ["n1", "n2", "n3"]
SECRET = "netns-test-secret-" + "x" * 24  # CONTRACT §5: non-loopback hosts need 32+ characters
FAST_GOSSIP = "[membership]\nprobe_interval_s = 0.2\nprobe_timeout_s = 0.1\ngossip_interval_s = 0.05\n"
DELAY_MS, LOSS = 20.0, 0.01
STATE_TIMEOUT_S = 60.0
CONVERGE_TIMEOUT_S = 90.0  # hinted handoff (and anti-entropy) bring the cut-off node what it missed


@dataclass
class Net:
    lab: netns.Lab
    clients: list[httpx.Client]
    model: dict[int, Doc]
    queries: list[str]
    next_id: int = 7_000_000_000_000


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    why = netns.why_unavailable()
    if why is not None:
        pytest.skip(f"no network namespaces here: {why}")
    root = tmp_path_factory.mktemp("netns")
    with netns.Lab(NAMES, seed=3) as lab:  # closed (namespaces, TAPs, the switch) even when a test fails
        lab.link("*", "*", delay_ms=DELAY_MS, loss=LOSS)
        cfg = netns.write_config(root, lab, NAMES, n=3, w=2, r=2, secret=SECRET, extra=FAST_GOSSIP)
        with running_nodes(cfg, NAMES, {n: lab.exec_prefix(n) for n in NAMES}) as nodes:
            assert all(lab.addr(n) in nd.url for n, nd in zip(NAMES, nodes, strict=True))
            clients = [httpx.Client(base_url=nd.url, timeout=30) for nd in nodes]
            try:
                bodies, _ = corpus(600)
                model = bulk_load_docs(clients[0], bodies)
                assert len(model) >= 0.95 * len(bodies)
                queries = [*pick_queries(model)[:12], "zqnet3", "#zqlab before", "near:48.85,2.35 within:2km zqlab"]
                yield Net(lab, clients, model, queries)
            finally:
                for c in clients:
                    c.close()


def states(c: httpx.Client) -> dict[str, str]:
    return {mb["name"]: mb["state"] for mb in c.get("/cluster").json()["members"]}


def wait_state(clients: list[httpx.Client], node: str, state: str) -> None:
    deadline = time.monotonic() + STATE_TIMEOUT_S
    seen: list[str | None] = []
    while time.monotonic() < deadline:
        seen = [states(c).get(node) for c in clients]
        if all(s == state for s in seen):
            return
        time.sleep(0.2)
    raise AssertionError(f"{node} not {state} everywhere after {STATE_TIMEOUT_S}s: {seen}")


def search_ids(c: httpx.Client, q: str) -> list[int]:
    r = c.get("/search", params={"q": q, "count": 100})
    assert r.status_code == 200, (str(c.base_url), q, r.text[:300])
    assert r.json()["search_metadata"]["partial"] is False, (str(c.base_url), q)
    return [t["id"] for t in r.json()["statuses"]]


def check_exact(clients: list[httpx.Client], model: dict[int, Doc], queries: list[str]) -> None:
    for c in clients:
        for q in queries:
            assert search_ids(c, q) == expected(model, q), (str(c.base_url), q)


def bodies(net: Net, tag: str, k: int) -> list[dict[str, Any]]:
    out = []
    for i in range(k):
        net.next_id += 1
        out.append({"id": net.next_id, "text": f"{tag} zqnet{i} over real links #zqlab", "user": f"lab{i % 4}",
                    "geo": {"lat": 48.85 + i / 1000, "lon": 2.35}, "lang": "en"})
    return out


REFUSED: list[tuple[int, str]] = []  # (id, why) of every 503 a retrying write got (issue 11 §1), for the report


def write_each(net: Net, clients: list[httpx.Client], bs: list[dict[str, Any]], retries: int = 0) -> dict[int, int]:
    """POST each body through the clients in turn, retrying a 503 with the same id (CONTRACT: safe) up to
    `retries` times, 1 s apart. -> id -> last status; acknowledged ones join the model."""
    out = {}
    for i, b in enumerate(bs):
        for attempt in range(retries + 1):
            r = clients[(i + attempt) % len(clients)].post("/tweets", json=b)
            out[b["id"]] = r.status_code
            if r.status_code != 503:
                break
            REFUSED.append((b["id"], r.json()["error"]["message"]))
            time.sleep(1.0)
        if r.status_code in (200, 201):
            net.model[b["id"]] = doc_of(b, r.json())
    return out


def test_writes_and_exact_searches_over_delayed_lossy_links(net: Net) -> None:
    got = write_each(net, net.clients, bodies(net, "before", 12))
    assert set(got.values()) == {201}, got
    for i, (tid, doc) in enumerate(list(net.model.items())[::20]):
        d = net.clients[i % 3].get(f"/tweets/{tid}").json()
        assert (d["text"], d["user"], iso_ms(d["created_at"]), geo_of(d["geo"])) == (
            doc.text, doc.user, doc.created_at_ms, doc.geo), tid
    check_exact(net.clients, net.model, net.queries)
    st = net.lab.stats()
    assert st.get("lost", 0) > 0 and st.get("delayed", 0) > 1000, st  # the links really were slow and lossy


def test_a_cut_off_node_leaves_reads_exact_and_catches_up_after_the_heal(net: Net) -> None:
    survivors = net.clients[:2]
    net.lab.cut("n3", "*")  # n3 alone: no frame to or from it, the clients' included
    try:
        wait_state(survivors, "n3", "dead")
        check_exact(survivors, net.model, net.queries)  # R=2 of n1, n2
        for tid in list(net.model)[::50]:
            assert survivors[tid % 2].get(f"/tweets/{tid}").json()["text"] == net.model[tid].text
        during = bodies(net, "during", 10)
        res = bulk(survivors[0], during)  # acknowledged or not (issue 11 §1): each line answers, none is lost
        assert all(it["status"] in (201, 503) for it in res["items"]), res["items"]
    finally:
        net.lab.heal()
    wait_state(net.clients, "n3", "alive")
    # a retry with the same id is safe, and acknowledged now (refusals just after the heal are issue 11 §1's: the
    # retries here only make sure the data path heals; the contract's "never refused" is the test below)
    got = write_each(net, net.clients, during, retries=10)
    assert set(got.values()) <= {200, 201}, (got, REFUSED)
    got = write_each(net, net.clients, bodies(net, "after", 9), retries=10)
    assert set(got.values()) == {201}, (got, REFUSED)
    print(f"writes refused after the heal, then acknowledged on a retry: {REFUSED}")

    async def divergent(pool: replicas.PeerPool) -> list[replicas.Divergence]:
        t = await replicas.topology(pool, [(net.lab.addr(n), 7101) for n in NAMES])
        return await replicas.compare_replicas(pool, t, 3)

    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while (diff := replicas.run(SECRET, divergent)) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert not diff, [d.describe() for d in diff[:3]]  # each replica's own copy, not a coordinator's answer
    check_exact(net.clients, net.model, [*net.queries, "during zqlab", "after OR during"])
    assert net.lab.stats().get("cut", 0) > 0


def test_no_write_is_refused_while_a_node_is_cut_off(net: Net) -> None:
    survivors = net.clients[:2]
    net.lab.cut("n3", "*")
    try:
        wait_state(survivors, "n3", "dead")
        got = write_each(net, survivors, bodies(net, "cutoff", 2))
    finally:
        net.lab.heal()
        wait_state(net.clients, "n3", "alive")
    assert set(got.values()) == {201}, got  # CONTRACT §6: W=2 of n1, n2 live and reachable
