"""`make demo`: start the repo's cluster, load a sample of tweets, show a few searches and where to go next.

Runs the `murmur` CLI through the current interpreter (`python -m node.cli.main`), so it works from a checkout
without the console script on PATH. Never stops the cluster: the user does, with `murmur down`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a plain script: make the checkout's `node` importable

from node.client import ApiError, Client  # noqa: E402
from node.config import load_config  # noqa: E402

CONFIG = REPO / "cluster.toml"
DATA = REPO.parent / "shared" / "data"
IRA_LINES = 50_000
SYNTH_TWEETS = 50_000
REAL_QUERIES = ["iphone", "happy birthday", '"good morning"', "#news"]
SYNTH_QUERIES = ["coffee", "love today", '"de la"', "#news"]
SHOWN = 3
# Words nearly every English tweet has: the newest of their matches before today is (nearly) the newest tweet of
# the samples, whose time is the `as_of` of the demo's trends (the samples are years old: trends "now" would be
# empty; tweets posted by hand today are left out).
NEWEST_PROBE = "(the OR a OR i OR to OR you OR and OR is OR de) until:{today}"


def murmur(*args: str, stdin: int | None = None) -> int:
    cmd = [sys.executable, "-m", "node.cli.main", *args]
    print(f"\n$ murmur {' '.join(args)}", flush=True)
    return subprocess.run(cmd, stdin=stdin, cwd=REPO, check=False).returncode


def load_sample() -> int:
    cfg = ["--config", str(CONFIG)]
    if DATA.is_dir():
        rc = murmur("load", *cfg, str(DATA / "sentiment140_sample.jsonl.gz"), str(DATA / "sanders.jsonl.gz"))
        if rc == 0:
            rc = murmur("load", *cfg, "--limit", str(IRA_LINES), str(DATA / "ira_troll_tweets.jsonl.gz"))
        return rc
    print(f"\n(no {DATA}: loading {SYNTH_TWEETS:,} generated tweets instead)")
    gen = subprocess.Popen(
        [sys.executable, "-m", "node.gen.synth", str(SYNTH_TWEETS), "--seed", "1"],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    assert gen.stdout is not None
    try:
        return murmur("load", *cfg, "-", stdin=gen.stdout.fileno())
    finally:
        gen.stdout.close()
        gen.wait()


def show_search(url: str, q: str) -> None:
    t0 = time.perf_counter()
    print(f"\n== search {q}")
    try:
        with Client(url, timeout=30.0) as c:
            body = c.search(q, count=100)
    except ApiError as e:
        print(f"   error {e.status}: {e.code}: {e.message}")
        return
    wall_ms = (time.perf_counter() - t0) * 1000
    meta = body.search_metadata
    more = "+ (first page)" if meta.next_max_id is not None else ""
    print(f"   {len(body.statuses)}{more} results, completed_in_ms={meta.completed_in_ms}, wall {wall_ms:.1f} ms")
    for t in body.statuses[:SHOWN]:
        text = " ".join(t.text.split())
        print(f"   {t.id_str}  {t.created_at}  @{t.user}  {text[:100]}")


def newest_time(url: str) -> str | None:
    """created_at of the newest sample tweet loaded (one search: results are newest first)."""
    try:
        with Client(url, timeout=30.0) as c:
            today = time.strftime("%Y-%m-%d", time.gmtime())
            hits = c.search(NEWEST_PROBE.format(today=today), count=1).statuses
    except ApiError:
        return None
    return hits[0].created_at if hits else None


def show_trends(url: str, as_of: str) -> None:
    print(f"\n== trends of the loaded data: the 24 h up to its newest tweet ({as_of})")
    try:
        with Client(url, timeout=30.0) as c:
            got = c.trends("24h", count=8, as_of=as_of).trends
    except ApiError as e:
        print(f"   error {e.status}: {e.code}: {e.message}")
        return
    if not got:
        print("   (no hashtag rose in that window)")
    for t in got:
        print(f"   {t.hashtag:<28} {t.count:>6} tweets  score {t.score:.2f}")


def main() -> int:
    cfg = load_config(CONFIG)
    url = cfg.url(cfg.nodes[0].name)
    rc = murmur("up", "--config", str(CONFIG))
    if rc != 0:
        return rc
    rc = load_sample()
    if rc != 0:
        return rc
    queries = REAL_QUERIES if DATA.is_dir() else SYNTH_QUERIES
    for q in queries:
        show_search(url, q)
    as_of = newest_time(url)
    if as_of is not None:
        show_trends(url, as_of)
    trends = f"/trends?{urlencode({'window': '24h', 'as_of': as_of})}" if as_of else "/trends?window=24h"
    print("\nTry:")
    for path in ("/health", "/cluster", "/stats", "/metrics", "/openapi.json", trends):
        print(f"   curl '{url}{path}'")
    for q in queries:
        print(f"   curl '{url}/search?{urlencode({'q': q, 'count': 5})}'")
    cli = ".venv/bin/murmur" if (REPO / ".venv/bin/murmur").exists() else f"{sys.executable} -m node.cli.main"
    print(f"   {cli} search '{queries[-1]}' --count 5")
    print(f"   {cli} status")
    print(f"\nStop the cluster with:  {cli} down")
    print("\nThe search page (results, trends and the live cluster view), on every node:")
    print(f"   {url}/?{urlencode({'q': queries[0]})}")
    print(f"   {url}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
