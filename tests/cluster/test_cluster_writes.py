"""Writes on a real cluster, black box over HTTP: any node takes writes and every node then reads them; a retry of
the same id through another node is idempotent (200), the same id with other content is a conflict (409) and
leaves the first tweet as it was; a bulk of 1,000 through one node is found through all. Parametrized by shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from node.gen.synth import generate
from tests.cluster.kit import SHAPES, Shape, bulk, cluster, node_name, search

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=SHAPES)
def clients(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[httpx.Client]]:
    shape: Shape = request.param
    with cluster(tmp_path_factory.mktemp("writes"), shape) as cs:
        yield cs


def other(cs: list[httpx.Client], i: int) -> httpx.Client:
    """The node after node i (itself in a cluster of one)."""
    return cs[(i + 1) % len(cs)]


def all_pages(c: httpx.Client, q: str, limit: int = 5000) -> list[int]:
    ids: list[int] = []
    params: dict[str, Any] = {"count": 100}
    while len(ids) < limit:
        body = search(c, q, **params)
        ids += [t["id"] for t in body["statuses"]]
        nxt = body["search_metadata"]["next_max_id"]
        if nxt is None or not body["statuses"]:
            return ids
        params["max_id"] = nxt
    raise AssertionError(f"{q!r} pages past {limit} results")


def test_writes_through_every_node_are_read_by_every_node(clients: list[httpx.Client]) -> None:
    made: list[dict[str, Any]] = []
    for i, c in enumerate(clients):
        for k in range(4):
            r = c.post("/tweets", json={"text": f"zqwrite via node{i} item{k} #zqw{i}", "user": f"writer{i}"})
            assert r.status_code == 201, (node_name(c), r.text)
            made.append(r.json())
    assert len({t["id"] for t in made}) == len(made)  # generated ids never collide across nodes
    newest_first = sorted(made, key=lambda t: t["id"], reverse=True)
    for c in clients:
        for t in made:
            r = c.get(f"/tweets/{t['id']}")
            assert r.status_code == 200 and r.json() == t, (node_name(c), t["id"], r.text)
        assert search(c, "zqwrite")["statuses"] == newest_first, node_name(c)
        for i in range(len(clients)):
            got = [t["id"] for t in search(c, f"#zqw{i} from:writer{i}")["statuses"]]
            assert got == [t["id"] for t in newest_first if t["user"] == f"writer{i}"], (node_name(c), i)


def test_retry_through_another_node_is_idempotent(clients: list[httpx.Client]) -> None:
    for i, c in enumerate(clients):
        body = {
            "id": 7_000_000_000 + i,
            "text": f"zqretry imported number{i}",
            "user": "importer",
            "created_at": "2016-02-29T12:00:00Z",
            "lang": "en",
            "geo": {"lat": 1.5, "lon": -2.25},
        }
        first = c.post("/tweets", json=body)
        assert first.status_code == 201, first.text
        again = other(clients, i).post("/tweets", json=body)
        assert again.status_code == 200, (node_name(other(clients, i)), again.text)
        assert again.json() == first.json()
        # a retry of a node-assigned id, with the content the client sent, through a third node
        made = c.post("/tweets", json={"text": f"zqretry generated number{i}", "user": "gen"}).json()
        retry = {"id": made["id"], "text": made["text"], "user": "gen"}
        again = clients[(i + 2) % len(clients)].post("/tweets", json=retry)
        assert again.status_code == 200 and again.json() == made, again.text
    for c in clients:
        assert len(search(c, "zqretry")["statuses"]) == 2 * len(clients), node_name(c)


def test_same_id_other_content_is_a_conflict_everywhere(clients: list[httpx.Client]) -> None:
    for i, c in enumerate(clients):
        body = {"id": 8_000_000_000 + i, "text": f"zqconflict original number{i}", "user": "orig"}
        first = c.post("/tweets", json=body)
        assert first.status_code == 201, first.text
        for change in ({"text": f"zqclash changed number{i}"}, {"user": "someone_else"}, {"lang": "fr"}):
            r = other(clients, i).post("/tweets", json=body | change)
            assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", (change, r.text)
        for d in clients:  # the original stands, the rival left nothing behind
            assert d.get(f"/tweets/{body['id']}").json() == first.json(), node_name(d)
            assert search(d, "zqclash")["statuses"] == [], node_name(d)
            assert search(d, f"zqconflict number{i}")["statuses"] == [first.json()], node_name(d)


def test_bulk_of_1000_through_one_node(clients: list[httpx.Client]) -> None:
    bodies = []
    for t in generate(1000, seed=11, with_ids=True):
        t["text"] = (t["text"][:260] + " #zqbulk").strip()
        bodies.append(t)
    out = bulk(clients[-1], bodies)
    assert out["ingested"] == 1000 and out["failed"] == 0, {k: out[k] for k in ("ingested", "failed")}
    assert [it["status"] for it in out["items"]] == [201] * 1000
    assert [it["id"] for it in out["items"]] == [b["id"] for b in bodies]
    want = sorted((b["id"] for b in bodies), reverse=True)
    for c in clients:
        assert all_pages(c, "#zqbulk") == want, node_name(c)
        for b in bodies[::50]:
            d = c.get(f"/tweets/{b['id']}").json()
            assert (d["id"], d["text"], d["user"], d["lang"]) == (b["id"], b["text"], b["user"], b["lang"])
    again = bulk(clients[0], bodies)  # the whole batch retried through another node: every line a 200
    assert again["ingested"] == 1000 and [it["status"] for it in again["items"]] == [200] * 1000
    for c in clients:
        assert all_pages(c, "#zqbulk") == want, node_name(c)
