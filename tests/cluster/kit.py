"""Helpers for the black-box cluster tests: cluster shapes, a real corpus as API bodies, bulk loading over HTTP,
and the expectation of a search: tests/support/oracle.py (an independent statement of CONTRACT §3) over the
documents as they were SENT, so the cluster tests check that answers are right, not only that nodes agree.

Speaks to nodes only over public HTTP (CONTRACT §2); never reads a node's files or imports its internals.
"""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import oracle
from tests.support.oracle import Doc, doc_of
from tests.support.procs import running_nodes, write_config

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ACCEPTED = ("id", "created_at", "user", "text", "lang", "geo", "reply_to", "likes", "retweets")
BULK_BATCH = 1000  # lines per POST /tweets/bulk (the node takes up to http.bulk_lines_max)
TIMEOUT_S = 30.0

# (node names, N, W, R): a cluster of one works today; the ring shapes need the replicated cluster.
SHAPES = [
    pytest.param((["n1"], 1, 1, 1), id="1node-N1"),
    pytest.param((["n1", "n2", "n3"], 3, 2, 2), id="3nodes-N3W2R2"),
    pytest.param((["n1", "n2", "n3", "n4", "n5"], 3, 2, 2), id="5nodes-N3W2R2"),
]
Shape = tuple[list[str], int, int, int]


@contextmanager
def cluster(root: Path, shape: Shape) -> Iterator[list[httpx.Client]]:
    """Start every node of the shape; yield one keep-alive client per node; stop them (only our PIDs)."""
    names, n, w, r = shape
    config = write_config(root, names, n=n, w=w, r=r)
    with running_nodes(config, names) as nodes:
        clients = [httpx.Client(base_url=nd.url, timeout=TIMEOUT_S) for nd in nodes]
        try:
            yield clients
        finally:
            for c in clients:
                c.close()


def node_name(c: httpx.Client) -> str:
    return str(c.base_url)


# ---------------------------------------------------------------- corpus


def read_bodies(name: str, limit: int) -> list[dict[str, Any]]:
    """The first `limit` records of ../shared/data/`name` as POST /tweets bodies."""
    out: list[dict[str, Any]] = []
    if limit <= 0:
        return out
    with gzip.open(DATA / name, "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            body = {k: rec[k] for k in ACCEPTED if rec.get(k) is not None}
            body["user"] = rec.get("user") or "unknown"  # sanders has no authors
            out.append(body)
            if len(out) >= limit:
                break
    return out


def corpus(limit: int = 4800) -> tuple[list[dict[str, Any]], str]:
    """About `limit` POST bodies from the real corpora (topics with no author, many authors, many languages),
    or synthetic tweets when /work/shared/data is absent."""
    if (DATA / "sanders.jsonl.gz").exists():
        parts = [("sanders.jsonl.gz", limit * 6 // 10), ("sentiment140_sample.jsonl.gz", limit * 25 // 100)]
        parts.append(("ira_troll_tweets.jsonl.gz", limit - sum(k for _, k in parts)))
        recs = [r for name, k in parts for r in read_bodies(name, k)]
        return recs, "real: " + ", ".join(f"{name} (first {k})" for name, k in parts)
    from node.gen.synth import generate

    return list(generate(limit, seed=7, with_ids=True)), "synthetic (node.gen.synth, seed 7)"


def own_tweets() -> list[dict[str, Any]]:
    """Hand-written tweets for what the corpora lack: lang in odd cases, geo, dates around day boundaries,
    node-assigned ids, phrases across #tags, words that analyse into several terms."""
    paris, london, nyc = (48.8566, 2.3522), (51.5074, -0.1278), (40.7128, -74.0060)
    rows: list[tuple[str, str, str | None, tuple[float, float] | None, str]] = [
        ("zqcity croissant morning in paris", "amelie", "fr", paris, "2019-05-01T08:00:00Z"),
        (
            "zqcity coffee near the louvre #ice cream",
            "amelie",
            "FR",
            (48.8606, 2.3376),
            "2019-05-01T23:59:59Z",
        ),
        ("zqcity rainy london afternoon", "bob_uk", "en", london, "2019-05-02T00:00:00Z"),
        ("zqcity big apple pizza don't stop", "nyc_pat", "en", nyc, "2019-05-03T12:00:00Z"),
        ("zqcity tea time #Ice Cream @Amelie", "bob_uk", "en-GB", london, "2019-05-04T10:00:00Z"),
        ("zqcity versailles trip", "amelie", "fr", (48.8049, 2.1204), "2019-05-05T09:30:00Z"),
        ("zqcity 東京 ラーメン", "kenji", "ja", (35.6762, 139.6503), "2019-05-06T03:00:00Z"),
        ("zqcity sem geo nenhum", "joana", "pt-BR", None, "2019-05-07T15:00:00Z"),
        ("zqcity no lang at all don't", "nolang", None, None, "2019-05-08T15:00:00Z"),
        (
            "zqcity Brooklyn bridge walk #ICE cream",
            "nyc_pat",
            "EN",
            (40.7061, -73.9969),
            "2019-04-30T23:59:59Z",
        ),
    ]
    out: list[dict[str, Any]] = []
    for i, (text, user, lang, geo, created) in enumerate(rows):
        body: dict[str, Any] = {"text": text, "user": user, "created_at": created}
        if lang is not None:
            body["lang"] = lang
        if geo is not None:
            body["geo"] = {"lat": geo[0], "lon": geo[1]}
        if i % 2:
            body["id"] = 9_000_000_000_000_000_000 + i  # client ids near the top of the range
        out.append(body)
    return out


def ndjson(bodies: list[dict[str, Any]]) -> bytes:
    return b"\n".join(json.dumps(b, ensure_ascii=False).encode() for b in bodies)


def bulk(c: httpx.Client, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    r = c.post("/tweets/bulk", content=ndjson(bodies), headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200, r.text[:500]
    out: dict[str, Any] = r.json()
    return out


def bulk_load_docs(c: httpx.Client, bodies: list[dict[str, Any]]) -> dict[int, Doc]:
    """Loads in batches through one node; -> id -> the document each acknowledged (201/200) line SENT (the id and,
    for a body without one, the creation time from the answer), in input order."""
    docs: dict[int, Doc] = {}
    for i in range(0, len(bodies), BULK_BATCH):
        batch = bodies[i : i + BULK_BATCH]
        out = bulk(c, batch)
        assert out["ingested"] + out["failed"] == len(batch)
        for it in out["items"]:  # a real corpus may hold lines the API refuses: only ever with a 4xx
            assert it["status"] in (200, 201) or 400 <= it["status"] < 500, it
            if it["status"] in (200, 201):
                body = batch[it["line"] - 1]
                answer = None if "created_at" in body else c.get(f"/tweets/{it['id']}").json()
                docs[it["id"]] = doc_of(body, answer, tweet_id=it["id"])
    return docs


def bulk_load(c: httpx.Client, bodies: list[dict[str, Any]]) -> list[int]:
    """Loads in batches through one node; -> the ids acknowledged (201/200), in input order."""
    return list(bulk_load_docs(c, bodies))


# ---------------------------------------------------------------- the model


def expected(
    model: dict[int, Doc],
    q: str,
    count: int = 100,
    max_id: int | None = None,
    since_id: int | None = None,
    result_type: str = "recent",
) -> list[int]:
    """The ids a search must answer, in order, by the oracle over the documents that were sent."""
    return oracle.page(model.values(), q, count, max_id, since_id, result_type)


def search(c: httpx.Client, q: str, **params: Any) -> dict[str, Any]:
    r = c.get("/search", params={"q": q, **params})
    assert r.status_code == 200, f"{node_name(c)} {q!r}: {r.status_code} {r.text[:300]}"
    body: dict[str, Any] = r.json()
    assert body["search_metadata"]["partial"] is False, (node_name(c), q, body["search_metadata"])
    return body


# ---------------------------------------------------------------- queries from the corpus


def pick_queries(model: dict[int, Doc], seed: int = 3) -> list[str]:
    """Every form of CONTRACT §3, with words chosen by document frequency (frequent, medium, rare)."""
    rng = random.Random(seed)
    df: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    ments: Counter[str] = Counter()
    bigrams: Counter[tuple[str, str]] = Counter()
    users: Counter[str] = Counter()
    for t in model.values():
        a = oracle.analyse(t.text)
        df.update({w for w in a.words if w.isalpha() and w.isascii() and len(w) > 2})
        tags.update(a.tags)
        ments.update(a.names)
        bigrams.update({p for p in zip(a.words, a.words[1:], strict=False) if all(w.isalpha() for w in p)})
        users[t.user] += 1
    by_df = [w for w, _ in df.most_common()]
    frequent, medium = by_df[:10], by_df[len(by_df) // 50 : len(by_df) // 10]
    rare = sorted(w for w, k in df.items() if 2 <= k <= 3)
    f1, f2, f3, f4 = frequent[0], frequent[1], frequent[5], frequent[9]
    m1, m2, m3 = rng.sample(medium, 3)
    r1, r2, r3 = rng.sample(rare, 3)
    b1, b2 = bigrams.most_common(1)[0][0]
    b3, b4 = rng.choice(sorted(p for p, k in bigrams.items() if 3 <= k <= 10) or [(b1, b2)])
    tri = next((a.words[1:4] for t in model.values() if len((a := oracle.analyse(t.text)).words) >= 5), None)
    t1 = tags.most_common(1)[0][0]
    t2 = rng.choice(sorted(h for h, k in tags.items() if 2 <= k <= 5) or [t1])
    u1 = ments.most_common(1)[0][0]
    u2 = rng.choice(sorted(m for m, k in ments.items() if 2 <= k <= 5) or [u1])
    author = rng.choice(sorted(u for u, k in users.items() if 2 <= k <= 5 and u.isascii()) or ["unknown"])
    qs = [
        f1,
        m1,
        r1,
        "zzzneverseen",  # words
        f"{f1} {f2}",
        f"{m1} {f3}",
        f"{r2} {f1}",
        f"{f1} {f2} {f3}",  # AND
        f"{f1} OR {m2}",
        f"{r1} OR {r2} OR {r3}",  # OR
        f"{f3} {f4} OR {m3}",
        f"{f4} OR {m3} {f3}",
        f"({f3} {f4}) OR {m3}",  # OR binds tighter than AND
        f"{f1} -{f2}",
        f"{f2} -{f1} -{f3}",
        f"({f1} OR {f2}) -{f3}",  # exclusion
        f'"{b1} {b2}"',
        f'"{b3} {b4}"',
        f'"{b2} {b1}"',  # phrases, both orders
        f"#{t1}",
        f"#{t2}",
        f"#{t1} {f1}",
        f"@{u1}",
        f"@{u2} OR #{t2}",  # tags and mentions
        f"from:{author}",
        f"from:{author.upper()} OR from:unknown {f2}",
        f"from:unknown {m1}",
        f"lang:ru {f1} OR lang:en",
        "lang:RU",
        "lang:en zqcity",
        "lang:fr zqcity",
        "lang:pt-br zqcity",
        f"({f1} OR {f2}) ({f3} OR {f4})",
        f"(({m1} OR {r1}) -{f2}) OR {r3}",  # parentheses
        "since:2019-05-02 zqcity",
        "until:2019-05-02 zqcity",
        "since:2019-05-01 until:2019-05-04 zqcity",
        f"since:2011-10-17 until:2011-10-18 {f1}",
        f"until:2010-01-01 {f1} OR {m1} OR {f2}",
        "near:48.8566,2.3522 within:20km zqcity",
        "near:51.5,-0.12 within:5km zqcity",
        "near:40.71,-74.0 within:3mi zqcity OR pizza",
        "zqcity don't",
        '"ice cream" zqcity',
        "#ice zqcity",
        "zqcity @amelie",
        "from:Amelie zqcity -versailles",
    ]
    if tri is not None:
        qs.append('"' + " ".join(tri) + '"')
    return qs
