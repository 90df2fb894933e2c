"""The search page in a real browser (headless Debian Chromium through Selenium) against three real node processes:
typed queries show exactly the brute-force model's tweets, newest first, with the terms highlighted; paging; a
hashtag click; a parse error in place; /?q= on load; explain; tweet text that tries HTML injection stays text; the
cluster panel turns a node killed with -9 suspect or dead. A screenshot of the page is saved (MURMUR_PAGE_PNG names
a copy to keep, e.g. docs/page.png)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.chrome import available, chrome, wait_for
from tests.cluster.kit import bulk_load, corpus, expected, own_tweets, pick_queries
from tests.support.oracle import Doc, doc_of
from tests.support.procs import NodeProc, running_nodes, write_config

pytestmark = pytest.mark.slow
PAGE = 20  # the page's count per request (app.js PAGE_COUNT)
FAST = """
[membership]
probe_interval_s = 0.2
probe_timeout_s = 0.1
gossip_interval_s = 0.05
"""
NOW_TEXTS = [
    "Three nodes up, one killed with -9, searches still complete",
    "Loading the corpus with @ops: parallel bulks keep the disks busy",
    "Trends now come from the replicated data",
    "New search page: click a hashtag to search for it",
    "Watching replication lag drop to zero after a restart",
]
NOW_TAGS = ["ops", "search", "release", "python"]
NOW_USERS = ["alice", "bob", "carol"]
XSS = '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> zqxss & "quotes" #zqxsstag'


@dataclass
class Site:
    nodes: list[NodeProc]
    model: dict[int, Doc]
    queries: list[str]
    driver: WebDriver
    shots: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    why = available()
    if why is not None:
        pytest.fail(why)  # never a silent skip: `make test` installs the browser
    root = tmp_path_factory.mktemp("page")
    names = ["n1", "n2", "n3"]
    config = write_config(root, names, n=3, w=2, r=2, extra=FAST)
    with running_nodes(config, names) as nodes, httpx.Client(base_url=nodes[0].url, timeout=30.0) as c:
        bodies, _source = corpus(1500)
        ids = bulk_load(c, bodies + own_tweets())
        for i in range(30):  # tweets of "now", so that the trends of the last hour are not empty
            text = f"{NOW_TEXTS[i % len(NOW_TEXTS)]} #murmur #{NOW_TAGS[i % len(NOW_TAGS)]}"
            r = c.post("/tweets", json={"text": text, "user": NOW_USERS[i % len(NOW_USERS)]})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        for k, tid in enumerate(ids[-3:]):  # likes, retweets and an edit on the newest ones
            patch: dict[str, object] = {"likes": 40 - 9 * k, "retweets": 7 - 2 * k}
            if k == 1:
                patch["text"] = "Edited: the page shows likes, retweets and this edit #murmur #search"
            assert c.patch(f"/tweets/{tid}", json=patch).status_code == 200
        r = c.post("/tweets", json={"text": XSS, "user": "mallory<b>"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        model: dict[int, Doc] = {}
        for tid in ids:
            got = c.get(f"/tweets/{tid}")
            assert got.status_code == 200, got.text
            model[tid] = doc_of(got.json())  # as the node keeps it (edits included)
        with chrome() as driver:
            yield Site(nodes, model, pick_queries(model), driver, root)


# ---------------------------------------------------------------- helpers


def shown_ids(d: WebDriver) -> list[int]:
    return [int(e.get_attribute("data-id") or 0) for e in d.find_elements(By.CSS_SELECTOR, "#results li.tweet")]


def wait_results(d: WebDriver, q: str, shown: int | None = None) -> list[int]:
    def ready() -> bool:
        ol = d.find_element(By.ID, "results")
        if ol.get_attribute("data-query") != q:
            return False
        return shown is None or ol.get_attribute("data-shown") == str(shown)

    wait_for(ready, why=f"results of {q!r}")
    return shown_ids(d)


def type_query(d: WebDriver, q: str) -> None:
    box = d.find_element(By.ID, "q")
    box.clear()
    box.send_keys(q + Keys.ENTER)


def open_page(s: Site, path: str = "/") -> None:
    s.driver.get(s.nodes[0].url + path)
    wait_for(lambda: s.driver.find_elements(By.CSS_SELECTOR, "#members tbody tr"), why="the cluster panel")


# ---------------------------------------------------------------- tests


def test_typed_queries_show_the_model_results_newest_first(site: Site) -> None:
    open_page(site)
    for q in [*site.queries[:6], '"ice cream" zqcity', "zqcity -versailles", "from:amelie zqcity"]:
        type_query(site.driver, q)
        got = wait_results(site.driver, q)
        assert got == expected(site.model, q, count=PAGE), q
        assert site.driver.find_element(By.ID, "error").is_displayed() is False


def test_matched_terms_are_highlighted(site: Site) -> None:
    open_page(site)
    word = site.queries[0]  # the most frequent ASCII word of the corpus
    type_query(site.driver, word)
    got = wait_results(site.driver, word)
    assert got
    for li in site.driver.find_elements(By.CSS_SELECTOR, "#results li.tweet"):
        marks = [m.text.lower() for m in li.find_elements(By.CSS_SELECTOR, ".text mark")]
        assert marks and all(m.lstrip("#@") == word for m in marks), (li.text, marks)


def test_paging_with_next_max_id(site: Site) -> None:
    q = site.queries[0]
    everything = expected(site.model, q, count=len(site.model))
    assert len(everything) > 2 * PAGE, "the paging test needs a query with more than two pages"
    open_page(site, "/?q=" + quote(q))  # also: /?q= opens with the results
    assert wait_results(site.driver, q, PAGE) == everything[:PAGE]
    site.driver.find_element(By.ID, "more").click()
    assert wait_results(site.driver, q, 2 * PAGE) == everything[: 2 * PAGE]
    site.driver.find_element(By.ID, "more").click()
    assert wait_results(site.driver, q, 3 * PAGE) == everything[: 3 * PAGE]


def test_clicking_a_hashtag_searches_for_it(site: Site) -> None:
    open_page(site)
    type_query(site.driver, "iphone OR android OR zqcity OR murmur")
    wait_results(site.driver, "iphone OR android OR zqcity OR murmur")
    tag = site.driver.find_element(By.CSS_SELECTOR, "#results a.tag")
    q = tag.text.lower()
    assert q.startswith("#")
    tag.click()
    got = wait_results(site.driver, q)
    assert got == expected(site.model, q, count=PAGE) and got
    assert "q=" + quote(q, safe="") in site.driver.current_url
    assert site.driver.find_element(By.ID, "q").get_attribute("value") == q
    user = site.driver.find_element(By.CSS_SELECTOR, "#results a.user")
    name = user.text.removeprefix("@")
    user.click()
    assert wait_results(site.driver, f"from:{name}") == expected(site.model, f"from:{name}", count=PAGE)
    site.driver.back()  # history: back to the hashtag's results
    assert wait_results(site.driver, q) == expected(site.model, q, count=PAGE)


def test_a_parse_error_is_shown_in_place(site: Site) -> None:
    open_page(site)
    for bad in ('"unbalanced', "-only -negative", "a OR"):
        type_query(site.driver, bad)
        wait_results(site.driver, bad, 0)
        box = site.driver.find_element(By.ID, "error")
        assert box.is_displayed() and box.get_attribute("data-code") == "invalid_query", bad
        assert box.text.startswith("Invalid query: ") and len(box.text) > len("Invalid query: ") + 5
        assert shown_ids(site.driver) == []
    type_query(site.driver, "zqcity")
    assert wait_results(site.driver, "zqcity") == expected(site.model, "zqcity", count=PAGE)
    assert not site.driver.find_element(By.ID, "error").is_displayed()


def test_result_type_and_explain(site: Site) -> None:
    d = site.driver
    open_page(site, "/?q=zqcity&result_type=popular")
    ids = wait_results(d, "zqcity")
    assert sorted(ids) == sorted(expected(site.model, "zqcity", count=PAGE))
    assert d.find_element(By.ID, "result-type").get_attribute("value") == "popular"
    assert not d.find_element(By.ID, "stages").is_displayed()
    d.find_element(By.ID, "explain").click()
    wait_for(lambda: d.find_element(By.ID, "stages").is_displayed(), why="explain stages")
    stages = d.find_elements(By.CSS_SELECTOR, "#stages li")
    assert stages and all(s.text.endswith(" ms") for s in stages)


def test_tweet_text_is_never_html(site: Site) -> None:
    open_page(site)
    type_query(site.driver, "zqxss")
    got = wait_results(site.driver, "zqxss")
    assert len(got) == 1
    li = site.driver.find_element(By.CSS_SELECTOR, "#results li.tweet")
    assert li.find_element(By.CSS_SELECTOR, ".text").text == XSS
    assert li.find_element(By.CSS_SELECTOR, "a.user").text == "@mallory<b>"
    assert li.find_elements(By.CSS_SELECTOR, "img, script, b") == []
    assert site.driver.execute_script("return window.__pwned === undefined") is True


def test_trends_panel_and_screenshot(site: Site) -> None:
    d = site.driver
    open_page(site)
    wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#trend-list a.trend"), why="trends")
    tags = [a.text for a in d.find_elements(By.CSS_SELECTOR, "#trend-list a.trend")]
    assert tags[0] == "#murmur", tags
    d.find_element(By.CSS_SELECTOR, "#trend-list a.trend").click()
    assert wait_results(d, "#murmur") == expected(site.model, "#murmur", count=PAGE)
    type_query(d, "#murmur OR iphone")
    wait_results(d, "#murmur OR iphone")
    wait_for(lambda: "searches/s" in d.find_element(By.ID, "rates").text, why="rates after two polls")
    path = site.shots / "page.png"
    assert d.save_screenshot(str(path))
    keep = os.environ.get("MURMUR_PAGE_PNG")
    if keep:
        shutil.copyfile(path, keep)


def test_cluster_panel_shows_a_killed_node(site: Site) -> None:
    d = site.driver
    open_page(site)

    def states() -> dict[str, str]:
        rows = d.find_elements(By.CSS_SELECTOR, "#members tbody tr")
        return {str(r.get_attribute("data-node")): str(r.get_attribute("data-state")) for r in rows}

    wait_for(lambda: states() == {"n1": "alive", "n2": "alive", "n3": "alive"}, why="three live members")
    assert d.find_element(By.ID, "health-status").text == "ok"
    total = httpx.get(site.nodes[0].url + "/cluster", timeout=10).json()["partitions"]
    assert f"{total}/{total} with every replica up" in d.find_element(By.ID, "partition-health").text
    victim = site.nodes[2]
    victim.kill()  # kill -9
    t0 = time.monotonic()
    wait_for(lambda: states().get("n3") in ("suspect", "dead"), timeout_s=30.0, why="n3 suspect or dead")
    wait_for(lambda: states().get("n3") == "dead", timeout_s=30.0, why="n3 dead")
    assert states()["n1"] == "alive" and states()["n2"] == "alive"
    wait_for(lambda: d.find_element(By.ID, "health-status").text == "degraded", why="health degraded")
    assert "down: n3" in d.find_element(By.ID, "cluster-summary").text
    wait_for(lambda: "under-replicated" in d.find_element(By.ID, "partition-health").text, why="partition health")
    row = d.find_element(By.CSS_SELECTOR, '#members tbody tr[data-node="n3"]')
    assert row.find_element(By.CSS_SELECTOR, ".badge").text.startswith("dead")
    assert time.monotonic() - t0 < 60
