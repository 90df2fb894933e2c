"""Benchmark: a local 3-node Murmur cluster (N=3 W=2 R=2) against a single node (N=1) and SQLite FTS5, same run.

A program, not a test: prints figures with their units, the machine and the targets, and never fails on a timing.
    .venv/bin/python scripts/bench_cluster.py [--limit 300000] [--seconds 3]
Corpus: ../shared/data/ira_troll_tweets.jsonl.gz next to the repository when present (or --corpus FILE), else
synthetic tweets (node.gen.synth). Murmur: bulk ingest through POST /tweets/bulk (a few batches in flight, spread over
the nodes), then GET /search at 1, 8 and 32 concurrent clients, each client round-robin over every node with one
keep-alive HTTP/1.1 connection per node (raw trio sockets: an HTTP library would be the bottleneck). This process
is only the load generator; the nodes are child processes (data under a temp dir, stopped in a finally).
FTS5: in-process, a file database (WAL, synchronous=FULL, one transaction per batch); queries from threads, one
connection each; it pays no HTTP or JSON, so it is a floor for the engine cost, not a like-for-like server.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import platform
import random
import re
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.text.analyzer import word_terms
from tests.support.procs import NodeProc, write_config

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_CORPUS = DATA / "ira_troll_tweets.jsonl.gz"
# ~10 minutes for the three systems on 2 shared cores with the ring code of 5ccb67d (the whole 1.77 M corpus took
# 2 min 40 s for one node + FTS5 before the ring, but the single node alone took 5 min after it).
DEFAULT_LIMIT = 300_000
ACCEPTED = ("id", "created_at", "user", "text", "lang", "geo", "reply_to", "likes", "retweets")
BATCH_LINES = 2000  # per bulk request (the node takes up to http.bulk_lines_max = 10,000)
IN_FLIGHT = 4  # bulk requests at once
CONCURRENCY = (1, 8, 32)
KINDS = ("term", "and", "or", "phrase")
TARGET_INGEST = 10_000  # tweets/s
TARGET_P99_MS = 50.0  # at 32 clients
TARGET_QPS = 1_000  # across the cluster
_PLAIN = re.compile(r"[a-z]{2,}")  # query words FTS5 tokenises as Murmur does


class Rec(msgspec.Struct, gc=False, omit_defaults=True):
    id: int
    text: str
    created_at: str
    user: str | None = None
    lang: str | None = None


# ---------------------------------------------------------------- corpus and queries


def load(corpus: Path, limit: int, seed: int) -> tuple[list[Rec], str]:
    if corpus.exists():
        dec = msgspec.json.Decoder(Rec)
        out: list[Rec] = []
        with gzip.open(corpus, "rb") if corpus.suffix == ".gz" else open(corpus, "rb") as f:
            for line in itertools.islice(f, limit):
                r = dec.decode(line)
                r.user = r.user or "unknown"
                out.append(r)
        return out, str(corpus)
    from node.gen.synth import generate

    recs = [
        Rec(t["id"], t["text"], t["created_at"], t["user"], t["lang"])
        for t in generate(limit, seed, with_ids=True)
    ]
    return recs, f"synthetic (node.gen.synth, seed {seed})"


def batches(recs: list[Rec]) -> list[tuple[int, bytes]]:
    enc = msgspec.json.Encoder()
    return [
        (len(chunk), b"\n".join(enc.encode(r) for r in chunk))
        for chunk in (recs[i : i + BATCH_LINES] for i in range(0, len(recs), BATCH_LINES))
    ]


def pick_queries(recs: list[Rec], n: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """(murmur query, fts5 query) per kind; words by document frequency in a sample: frequent, medium, rare."""
    rng = random.Random(seed)
    df: dict[str, int] = {}
    bigrams: list[tuple[str, str]] = []
    for r in rng.sample(recs, min(len(recs), 20_000)):
        ws = word_terms(r.text)
        for w in set(ws):
            if _PLAIN.fullmatch(w):
                df[w] = df.get(w, 0) + 1
        bigrams += [(a, b) for a, b in itertools.pairwise(ws) if _PLAIN.fullmatch(a) and _PLAIN.fullmatch(b)]
    by_df = sorted(df, key=df.__getitem__, reverse=True)
    k = len(by_df)
    buckets = (by_df[: max(1, k // 100)], by_df[k // 100 : k // 5], by_df[k // 5 :])
    out: dict[str, list[tuple[str, str]]] = {kind: [] for kind in KINDS}
    for i in range(n):
        w = rng.choice(buckets[i % 3])
        out["term"].append((w, f'"{w}"'))
        a, b = rng.choice(bigrams) if i % 2 else (w, rng.choice(buckets[0]))
        out["and"].append((f"{a} {b}", f'"{a}" AND "{b}"'))
        a, b = rng.choice(buckets[(i + 1) % 3]), rng.choice(buckets[(i + 2) % 3])
        out["or"].append((f"{a} OR {b}", f'"{a}" OR "{b}"'))
        a, b = rng.choice(bigrams)
        out["phrase"].append((f'"{a} {b}"', f'"{a} {b}"'))
    return out


# ---------------------------------------------------------------- a minimal keep-alive HTTP/1.1 client


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.stream: trio.SocketStream | None = None
        self.buf = bytearray()

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream(self.host, self.port)
        await self.stream.send_all(data)
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[:end]).lower()
                i = head.find(b"content-length:")
                length = (
                    int(head[i + 15 : head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None])
                    if i >= 0
                    else 0
                )
                if len(self.buf) >= end + 4 + length:
                    status = int(head[9:12])
                    body = bytes(self.buf[end + 4 : end + 4 + length])
                    del self.buf[: end + 4 + length]
                    return status, body
            chunk = await self.stream.receive_some(262_144)
            if not chunk:
                raise ConnectionError("the node closed the connection")
            self.buf += chunk

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n".encode()


def post(path: str, body: bytes, ctype: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


class Stats(msgspec.Struct):
    ok: int = 0
    errors: int = 0
    partial: int = 0
    hits: int = 0  # statuses returned, summed: shows the answers were not empty
    client_cpu: float = 0.0  # CPU seconds the load generator used per second of wall time
    lat_ms: list[float] = msgspec.field(default_factory=list)


# ---------------------------------------------------------------- Murmur over HTTP


async def ingest(addrs: list[tuple[str, int]], work: list[tuple[int, bytes]]) -> tuple[int, int, float]:
    """-> (ingested, failed, seconds). IN_FLIGHT workers take the next batch; worker i posts to node i % nodes."""
    todo = iter(work)
    totals = [0, 0]
    dec = msgspec.json.Decoder(dict[str, Any])

    async def worker(i: int) -> None:
        conn = Conn(*addrs[i % len(addrs)])
        try:
            for _, body in todo:
                status, resp = await conn.request(post("/tweets/bulk", body, "application/x-ndjson"))
                if status != 200:
                    raise RuntimeError(f"bulk answered {status}: {resp[:300]!r}")
                out = dec.decode(resp)
                totals[0] += out["ingested"]
                totals[1] += out["failed"]
        finally:
            await conn.aclose()

    t0 = time.perf_counter()
    async with trio.open_nursery() as n:
        for i in range(IN_FLIGHT):
            n.start_soon(worker, i)
    return totals[0], totals[1], time.perf_counter() - t0


async def query_load(
    addrs: list[tuple[str, int]], reqs: list[bytes], clients: int, seconds: float
) -> tuple[Stats, float]:
    """`clients` closed-loop clients for `seconds`; each cycles over every node (its own keep-alive connection each)."""
    stats = Stats()
    warm_until = trio.current_time() + min(0.5, seconds / 4)
    stop = warm_until + seconds

    async def client(c: int) -> None:
        conns = [Conn(*a) for a in addrs]
        k = c * 7919
        try:
            while (now := trio.current_time()) < stop:
                conn = conns[k % len(conns)]
                t0 = time.perf_counter()
                status, body = await conn.request(reqs[k % len(reqs)])
                dt = (time.perf_counter() - t0) * 1000
                k += 1
                if now < warm_until:
                    continue
                if status != 200:
                    stats.errors += 1
                    continue
                stats.ok += 1
                stats.partial += b'"partial":true' in body
                stats.hits += body.count(b'"id_str":')
                stats.lat_ms.append(dt)
        finally:
            for conn in conns:
                await conn.aclose()

    cpu0 = time.process_time()
    async with trio.open_nursery() as n:
        for c in range(clients):
            n.start_soon(client, c)
    stats.client_cpu = (time.process_time() - cpu0) / (seconds + min(0.5, seconds / 4))
    return stats, seconds


def bench_murmur(
    label: str,
    names: list[str],
    nwr: tuple[int, int, int],
    work: list[tuple[int, bytes]],
    queries: dict[str, list[tuple[str, str]]],
    seconds: float,
    tmp: Path,
) -> None:
    root = tmp / label.split()[0]
    root.mkdir()
    n, w, r = nwr
    config = write_config(root, names, n=n, w=w, r=r)
    nodes: list[NodeProc] = []
    print(f"\n== Murmur {label} (N={n} W={w} R={r}); data under {root}", flush=True)
    try:
        for name in names:
            nodes.append(NodeProc(config, name).start())
        addrs = [(nd.url.split("//")[1].split(":")[0], int(nd.url.rsplit(":", 1)[1])) for nd in nodes]
        total = sum(k for k, _ in work)
        ok, failed, secs = trio.run(ingest, addrs, work)
        mark = "meets" if ok / secs >= TARGET_INGEST else "below"
        print(
            f"ingest: {ok:,} of {total:,} tweets ({failed:,} refused) in {secs:.1f} s = {ok / secs:,.0f} tweets/s "
            f"({BATCH_LINES} lines per request, {IN_FLIGHT} in flight; {mark} the target >= {TARGET_INGEST:,})"
        )
        for nd in nodes:
            print(f"  {nd.name} /health: {trio.run(_health, addrs[nodes.index(nd)])}")
        sample = [get("/search?count=100&q=" + quote(m, safe="")) for k in KINDS for m, _ in queries[k][:25]]
        same = trio.run(agreement, addrs, sample)
        print(f"agreement: {same} of {len(sample)} sampled queries return identical statuses from every node")
        print(
            f"queries: GET /search, count=100, {seconds:.0f} s per row, requests spread over {len(nodes)} node(s)"
        )
        print(
            f"  {'kind':7} {'clients':>7} {'queries/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'partial':>7} {'hits/q':>6} {'loadgen CPU':>11}"
        )
        for kind in KINDS:
            reqs = [get("/search?count=100&q=" + quote(m, safe="")) for m, _ in queries[kind]]
            for c in CONCURRENCY:
                st, dur = trio.run(query_load, addrs, reqs, c, seconds)
                print(
                    f"  {kind:7} {c:7d} {st.ok / dur:10,.0f} {pct(st.lat_ms, 50):8.2f} {pct(st.lat_ms, 99):8.2f} "
                    f"{st.errors:7d} {st.partial:7d} {st.hits / max(1, st.ok):6.1f} {st.client_cpu:10.0%}",
                    flush=True,
                )
    except Exception:
        print(f"Murmur {label} FAILED:\n{traceback.format_exc()}")
        for nd in nodes:
            print(f"--- last log lines of {nd.name}:\n{nd.log_tail(15)}")
    finally:
        stop_all(nodes)


def stop_all(nodes: list[NodeProc]) -> None:
    """Stops only the processes started here, by their handles; a Ctrl-C during a slow graceful stop still
    kills every node before it propagates."""
    interrupted: BaseException | None = None
    for nd in nodes:
        try:
            nd.stop()
        except BaseException as e:
            nd.kill()
            interrupted = interrupted or (None if isinstance(e, Exception) else e)
    if interrupted is not None:
        raise interrupted


async def _health(addr: tuple[str, int]) -> str:
    conn = Conn(*addr)
    try:
        return (await conn.request(get("/health")))[1].decode()
    finally:
        await conn.aclose()


async def agreement(addrs: list[tuple[str, int]], reqs: list[bytes]) -> int:
    """How many of `reqs` get identical statuses from every node (the contract: identical requests to different
    nodes at the same moment return identical results). Flags a ring that is not one cluster yet."""
    conns = [Conn(*a) for a in addrs]
    same = 0
    try:
        for req in reqs:
            bodies = [(await c.request(req))[1] for c in conns]
            heads = [b[: b.find(b'"search_metadata"')] for b in bodies]
            same += all(h == heads[0] for h in heads)
    finally:
        for c in conns:
            await c.aclose()
    return same


# ---------------------------------------------------------------- SQLite FTS5 in-process


def bench_fts5(recs: list[Rec], queries: dict[str, list[tuple[str, str]]], seconds: float, tmp: Path) -> None:
    path = tmp / "fts5.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE VIRTUAL TABLE t USING fts5(text, user UNINDEXED, created_at UNINDEXED, tokenize='unicode61')"
    )
    print(f"\n== SQLite {sqlite3.sqlite_version} FTS5, in-process, {path}", flush=True)
    t0 = time.perf_counter()
    for i in range(0, len(recs), BATCH_LINES):
        with db:
            db.executemany(
                "INSERT INTO t(rowid, text, user, created_at) VALUES (?, ?, ?, ?)",
                ((r.id, r.text, r.user, r.created_at) for r in recs[i : i + BATCH_LINES]),
            )
    secs = time.perf_counter() - t0
    db.close()
    print(
        f"ingest: {len(recs):,} tweets in {secs:.1f} s = {len(recs) / secs:,.0f} tweets/s "
        f"(one transaction per {BATCH_LINES} rows, fsync per commit)"
    )
    print(f"queries: top 100 newest with text, {seconds:.0f} s per row, one thread and connection per client")
    print(f"  {'kind':7} {'clients':>7} {'queries/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    sql = "SELECT rowid, user, created_at, text FROM t WHERE t MATCH ? ORDER BY rowid DESC LIMIT 100"
    for kind in KINDS:
        qs = [f for _, f in queries[kind]]
        for c in CONCURRENCY:
            lat: list[list[float]] = [[] for _ in range(c)]
            stop = time.perf_counter() + seconds

            def run(j: int, lat: list[list[float]] = lat, qs: list[str] = qs, stop: float = stop) -> None:
                con = sqlite3.connect(path, check_same_thread=False)
                k = j * 7919
                while time.perf_counter() < stop:
                    t = time.perf_counter()
                    con.execute(sql, (qs[k % len(qs)],)).fetchall()
                    lat[j].append((time.perf_counter() - t) * 1000)
                    k += 1
                con.close()

            threads = [threading.Thread(target=run, args=(j,)) for j in range(c)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            flat = [x for xs in lat for x in xs]
            print(
                f"  {kind:7} {c:7d} {len(flat) / seconds:10,.0f} {pct(flat, 50):8.2f} {pct(flat, 99):8.2f}",
                flush=True,
            )


# ---------------------------------------------------------------- main


def machine() -> str:
    model = ""
    try:
        model = next(
            ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        kb = int(next(ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")))
        mem = f", {kb / 2**20:.1f} GiB RAM"
    except (OSError, StopIteration):
        pass
    return (
        f"{os.cpu_count()} cpus {model or platform.machine()}{mem}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, trio {trio.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="JSON lines (.gz ok)")
    ap.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help=f"tweets to load (default {DEFAULT_LIMIT:,})"
    )
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per query row (default 3)")
    ap.add_argument("--queries", type=int, default=300, help="distinct queries per kind")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--only", choices=("cluster", "single", "fts5"), action="append", help="run only these systems"
    )
    args = ap.parse_args(argv)
    only = set(args.only or ("cluster", "single", "fts5"))

    print(
        f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} (other work on the machine skews every figure)"
    )
    print(
        f"targets: ingest >= {TARGET_INGEST:,} tweets/s; p99 < {TARGET_P99_MS:.0f} ms at 32 clients; "
        f">= {TARGET_QPS:,} queries/s across the cluster"
    )
    t0 = time.perf_counter()
    recs, source = load(args.corpus, args.limit, args.seed)
    work = batches(recs)
    queries = pick_queries(recs, args.queries, args.seed)
    print(
        f"corpus: {source}: {len(recs):,} tweets (--limit {args.limit:,}) read and encoded in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    print(
        "queries per kind: 1/3 frequent, 1/3 medium, 1/3 rare words; e.g. "
        + "; ".join(f"{k}: {queries[k][0][0]}" for k in KINDS)
    )
    with tempfile.TemporaryDirectory(prefix="murmur-bench-") as d:
        tmp = Path(d)
        if "single" in only:
            bench_murmur("single node", ["n1"], (1, 1, 1), work, queries, args.seconds, tmp)
        if "cluster" in only:
            bench_murmur("3-node cluster", ["n1", "n2", "n3"], (3, 2, 2), work, queries, args.seconds, tmp)
        if "fts5" in only:
            bench_fts5(recs, queries, args.seconds, tmp)
    print(
        "\n(p50/p99 are client-side latencies in ms, HTTP included for Murmur; queries/s are completed 200s per "
        "second of the measured window; 'partial' counts answers with partial=true; hits/q = statuses per answer;\n"
        " FTS5 threads share the GIL, so its p99 at 8 and 32 clients is mostly waiting for it)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
