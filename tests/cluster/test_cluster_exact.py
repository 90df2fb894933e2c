"""Exact search on a real cluster, black box over HTTP: a real corpus loaded through ONE node must be found by
EVERY node exactly as the oracle (tests/support/oracle.py, CONTRACT §3 restated without the product's code) finds it
in the tweets that were SENT, for every query form of CONTRACT §3, with paging (max_id / next_max_id, since_id) and
the result_type orders; every tweet reads back as it was sent (geo included); edits and deletes made through one
node must be seen through all of them. Parametrized by cluster shape; a cluster of one must pass on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.kit import (
    SHAPES,
    Shape,
    bulk_load_docs,
    cluster,
    corpus,
    expected,
    node_name,
    own_tweets,
    pick_queries,
    search,
)
from tests.support.oracle import Doc, doc_of, geo_of, iso_ms

pytestmark = pytest.mark.slow
PAGE_WALK_MAX = 200  # pages: a walk that never ends is a failure, not a hang


@dataclass
class Loaded:
    clients: list[httpx.Client]
    returned: dict[int, dict[str, Any]]  # id -> the tweet as GET returned it
    model: dict[int, Doc]  # id -> the tweet as it was sent (and edited)
    queries: list[str]
    source: str
    _memo: dict[str, list[int]] = field(default_factory=dict)
    popular: list[int] = field(default_factory=list)  # the engaged tweets of engaged_tweets(), once made

    def all_ids(self, q: str) -> list[int]:
        """Every match of q in the model, newest first (memoised until the model changes)."""
        if q not in self._memo:
            self._memo[q] = expected(self.model, q, count=len(self.model) + 1)
        return self._memo[q]

    def put(self, d: dict[str, Any], doc: Doc) -> None:
        """A write's answer `d`, and the document the client's request made of it."""
        self.returned[d["id"]] = d
        self.model[d["id"]] = doc
        self._memo.clear()

    def remove(self, tid: int) -> None:
        del self.returned[tid], self.model[tid]
        self._memo.clear()


@pytest.fixture(scope="module", params=SHAPES)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    shape: Shape = request.param
    root: Path = tmp_path_factory.mktemp("exact")
    with cluster(root, shape) as clients:
        bodies, source = corpus()
        bodies += own_tweets()
        model = bulk_load_docs(clients[0], bodies)  # everything through ONE node
        assert len(model) >= 0.95 * len(bodies), (len(model), len(bodies))
        returned: dict[int, dict[str, Any]] = {}
        for i, (tid, doc) in enumerate(model.items()):  # GET every tweet, round robin over the nodes
            c = clients[i % len(clients)]
            r = c.get(f"/tweets/{tid}")
            assert r.status_code == 200, (node_name(c), tid, r.text)
            d = r.json()
            got = (d["text"], d["user"], iso_ms(d["created_at"]), d["lang"], geo_of(d["geo"]), d["likes"], d["retweets"])
            assert got == (doc.text, doc.user, doc.created_at_ms, doc.lang, doc.geo, doc.likes, doc.retweets), tid
            returned[tid] = d
        yield Loaded(clients, returned, model, pick_queries(model), source)


def results_everywhere(ld: Loaded, q: str, **params: Any) -> list[dict[str, Any]]:
    """The statuses of the same request to every node; asserts they are identical and that each is the tweet
    as GET returns it."""
    pages = [search(c, q, **params)["statuses"] for c in ld.clients]
    for c, page in zip(ld.clients[1:], pages[1:], strict=True):
        assert page == pages[0], f"{q!r} {params}: {node_name(c)} differs from {node_name(ld.clients[0])}"
    for t in pages[0]:
        assert t == ld.returned.get(t["id"]), (q, t)
    return pages[0]


def check_all_queries(ld: Loaded) -> None:
    for q in ld.queries:
        want = ld.all_ids(q)
        got = [t["id"] for t in results_everywhere(ld, q)]
        assert got == want[:100], f"{q!r}: got {len(got)} ids, model {len(want[:100])}; first diff at " + str(
            next(
                (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                min(len(got), len(want)),
            )
        )


def test_corpus_and_queries_are_meaningful(loaded: Loaded) -> None:
    """Guards the test itself: the queries must include empty, small and large (more than a page) results."""
    sizes = [len(loaded.all_ids(q)) for q in loaded.queries]
    assert sizes.count(0) >= 1 and sum(1 for s in sizes if 0 < s <= 20) >= 8
    assert sum(1 for s in sizes if s > 100) >= 5, (
        loaded.source,
        list(zip(loaded.queries, sizes, strict=True)),
    )


def test_every_tweet_readable_on_every_node(loaded: Loaded) -> None:
    sample = sorted(loaded.returned)[:: max(1, len(loaded.returned) // 150)]
    for c in loaded.clients:
        for tid in sample:
            r = c.get(f"/tweets/{tid}")
            assert r.status_code == 200 and r.json() == loaded.returned[tid], (node_name(c), tid, r.text)


def test_every_query_form_equals_the_model_on_every_node(loaded: Loaded) -> None:
    check_all_queries(loaded)
    for q in loaded.queries[::4]:  # a small count takes the newest of the same list
        got = [t["id"] for t in results_everywhere(loaded, q, count=7)]
        assert got == loaded.all_ids(q)[:7], q


def test_pages_walk_to_the_end(loaded: Loaded) -> None:
    walked = [q for q in loaded.queries if len(loaded.all_ids(q)) > 100][:2]
    walked += [q for q in loaded.queries if 5 < len(loaded.all_ids(q)) <= 100][:1]
    for q, count in zip(walked, (100, 37, 2), strict=False):
        want = loaded.all_ids(q)
        for c in loaded.clients:
            seen: list[int] = []
            max_id: int | None = None
            for _ in range(PAGE_WALK_MAX):
                params: dict[str, Any] = {"count": count} | ({} if max_id is None else {"max_id": max_id})
                body = search(c, q, **params)
                page = [t["id"] for t in body["statuses"]]
                assert page == [i for i in want if max_id is None or i <= max_id][:count], (
                    node_name(c),
                    q,
                    max_id,
                )
                seen += page
                max_id = body["search_metadata"]["next_max_id"]
                if max_id is None or not page:
                    break
                assert max_id < page[-1], (q, max_id, page[-1])  # it moves past the page, never back
            else:
                pytest.fail(f"{q!r}: more than {PAGE_WALK_MAX} pages of {count}")
            assert seen == want, (node_name(c), q, len(seen), len(want))


def test_since_id_and_max_id(loaded: Loaded) -> None:
    for q in [q for q in loaded.queries if len(loaded.all_ids(q)) > 10][:6]:
        want = loaded.all_ids(q)
        since = want[len(want) // 2]
        top = want[len(want) // 4]
        got = [t["id"] for t in results_everywhere(loaded, q, since_id=since)]
        assert got == [i for i in want if i > since][:100], q
        got = [t["id"] for t in results_everywhere(loaded, q, since_id=since, max_id=top)]
        assert got == [i for i in want if since < i <= top][:100], q
        assert results_everywhere(loaded, q, since_id=want[0]) == [], q  # nothing newer than the newest


def engaged_tweets(ld: Loaded) -> list[int]:
    """40 tweets written through every node with engagement in many ties (some none), one of them then PATCHed
    to the top; made once per cluster. -> their ids, in creation order."""
    if ld.popular:
        return ld.popular
    made: list[int] = []
    for k in range(40):
        c = ld.clients[k % len(ld.clients)]
        body = {"text": f"zqpop zqrank{k} #zqpop", "user": f"pop{k % 3}", "likes": (k * 7) % 5, "retweets": k % 3}
        if k % 4 == 0:
            body["likes"] = body["retweets"] = 0
        r = c.post("/tweets", json=body)
        assert r.status_code == 201, r.text
        ld.put(r.json(), doc_of(body, r.json()))
        made.append(r.json()["id"])
    patch = {"likes": 100}
    r = ld.clients[-1].patch(f"/tweets/{made[5]}", json=patch)
    assert r.status_code == 200, r.text
    ld.put(r.json(), ld.model[made[5]].edited(**patch))
    ld.popular = made
    return made


def test_popular_and_mixed_follow_the_readme_order(loaded: Loaded) -> None:
    """result_type=popular ranks the newest matches by likes + 2 x retweets (ties newest first); mixed puts up to
    a quarter of a page of the engaged ones first, then the newest: the oracle's order, on every node, with tweets
    written through every node (their engagement in many ties, some none, one changed by a PATCH)."""
    ld = loaded
    made = engaged_tweets(ld)
    busy = max(ld.queries[:3], key=lambda q: len(ld.all_ids(q)))  # corpus tweets: no engagement at all
    for q in ("zqpop", "#zqpop from:pop1", "zqpop OR zqrank3", busy):
        for rt, count in [("popular", 100), ("popular", 12), ("popular", 3), ("mixed", 100), ("mixed", 12)]:
            got = [t["id"] for t in results_everywhere(ld, q, result_type=rt, count=count)]
            assert got == expected(ld.model, q, count=count, result_type=rt), (q, rt, count)
    top = [t["id"] for t in results_everywhere(ld, "zqpop", result_type="popular", count=1)]
    assert top == [made[5]]  # the PATCHed engagement counts


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="README: mixed puts 'up to a quarter of a page' of "
                   "engaged tweets first (none on a page of 3); node/search/order.py puts max(1, count // 4), so one: "
                   "the README or the code must change (reported to the lead)")
def test_mixed_on_a_page_smaller_than_four(loaded: Loaded) -> None:
    engaged_tweets(loaded)
    got = [t["id"] for t in results_everywhere(loaded, "zqpop", result_type="mixed", count=3)]
    assert got == expected(loaded.model, "zqpop", count=3, result_type="mixed")


def test_edits_and_deletes_through_one_node_seen_by_all(loaded: Loaded) -> None:
    ld = loaded
    first, last = ld.clients[0], ld.clients[-1]
    busy = max(ld.queries[:3], key=lambda q: len(ld.all_ids(q)))
    visible = ld.all_ids(busy)[:6]  # in the first page: a change shows at once
    city = ld.all_ids("zqcity")[:3]
    to_edit, to_delete = visible[:3] + city[:1], visible[3:] + city[1:2]
    old_words = {tid: ld.model[tid].text for tid in to_edit}
    for n, tid in enumerate(to_edit):
        patch = {"text": f"zqedited number{n} replaced #zqnew", "likes": n}
        r = first.patch(f"/tweets/{tid}", json=patch)
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["id"] == tid and d["edited_at"] is not None and d["likes"] == n
        assert d["hashtags"] == ["zqnew"] and d["created_at"] == ld.returned[tid]["created_at"]
        ld.put(d, ld.model[tid].edited(**patch))
    for tid in to_delete:
        r = last.delete(f"/tweets/{tid}")
        assert r.status_code == 204, r.text
        ld.remove(tid)
    for c in ld.clients:
        for tid in to_edit:
            assert c.get(f"/tweets/{tid}").json() == ld.returned[tid], (node_name(c), tid)
        for tid in to_delete:
            r = c.get(f"/tweets/{tid}")
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (node_name(c), tid)
    assert [t["id"] for t in results_everywhere(ld, "#zqnew")] == sorted(to_edit, reverse=True)
    assert [t["id"] for t in results_everywhere(ld, "zqedited number2")] == [to_edit[2]]
    assert results_everywhere(ld, "zqedited -zqnew") == []
    for tid, text in old_words.items():  # the old text's exact phrase no longer finds the edited tweet
        words = [w for w in text.split() if w.isalpha()][:2]
        if len(words) == 2:
            q = f'"{words[0]} {words[1]}"'
            assert tid not in [t["id"] for t in results_everywhere(ld, q)], q
    ld.queries += ["zqedited", "number0 OR number1", '"number3 replaced"']
    check_all_queries(ld)  # every query again against the edited model, on every node
