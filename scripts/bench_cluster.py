"""Benchmark (issue 10): a local 3-node Murmur cluster (N=3 W=2 R=2, fsync=always), a single node (N=1) and
SQLite FTS5 in-process, on the same tweets and queries, in one run.

A program, not a test: prints figures with their units, the machine, the targets and the baselines of the same
run, and never fails on a timing.
    .venv/bin/python scripts/bench_cluster.py [--limit 300000] [--seconds 5] [--only 3node|1node|fts5]
                                              [--loadgen wrk|trio] [--profile] [--json FILE]
For each system:
  1. bulk ingest: 2/3 of the corpus through POST /tweets/bulk, 4 clients, 1,000 lines a request (tweets/s);
  2. the last third the same way while ONE client searches (the fixed list, every node in turn, back to back):
     that client's p50/p99/max and the ingest rate meanwhile;
  3. single POST /tweets at 64 connections (acknowledged tweets/s, p50/p99): corpus texts without ids;
  4. agreement: a sample of queries asked of every node, their id lists compared (only 200s, not partial);
  5. GET /search?count=100 at 32 connections for each kind (term, AND, OR, phrase, hashtag, NOT) and two mixes:
     the fixed list (16 typical queries, repeated) and >= 2,000 distinct queries drawn from the corpus with the
     seed (benchlib.random_mix): q/s, p50, p99, max, failed requests (non-200, socket errors, timeouts), partial
     answers, the load generator's and the nodes' CPU;
  6. one client's p50/p99 per kind (this process's raw trio client, one connection per node, in turn).
The load generator is wrk (Debian's package; installed when missing), with a Lua script that spreads its
connections over the nodes (connection i to node i mod n) and draws each request from the query list; or
--loadgen trio, this process's raw keep-alive client (see scripts/bench_loadgen.py for which one is the
bottleneck). This process is only the load generator; the nodes are child processes (tests/support/procs.py),
data under a temp dir, stopped in a finally.
FTS5: a file database (WAL, synchronous=FULL) with the hashtags in a `tags` column; bulk ingest one transaction
per 1,000 rows, single inserts from 64 threads (a transaction each), queries from threads with a connection
each. It pays no HTTP or JSON: a floor for the engine cost, not a like-for-like server.
--profile: py-spy on every node during the first --profile-seconds of the bulk ingest (that ingest figure then
carries py-spy's cost) and during an extra, separately printed 32-connection run of the random mix.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_loadgen import LoadResult, TrioLoad, Wrk, ensure_wrk, node_cores
from bench_profile import Profile, ensure_pyspy, report
from benchlib import (
    DEFAULT_CORPUS,
    FIXED,
    KINDS,
    Conn,
    Q,
    Rec,
    addr_of,
    cpu_seconds,
    get,
    hashtags_of,
    load_corpus,
    machine,
    pct,
    pick_queries,
    post,
    random_mix,
    side_share,
)

from tests.support.procs import NodeProc, write_config

DEFAULT_LIMIT = 300_000
BATCH_LINES = 1000  # per bulk request (the node takes up to http.bulk_lines_max = 10,000)
BULK_CLIENTS = 4  # bulk requests in flight
SEARCH_CONNS = 32
POST_CONNS = 64
POST_BODIES = 20_000  # distinct POST /tweets bodies (corpus texts), cycled: each POST makes a new tweet anyway
COUNT = 100
VNODES = 64  # as the repository's cluster.toml
AGREEMENT_RETRY_S = 2.0  # a query whose answers differed is asked again after this
BULK_RETRIES = 5  # a bulk answered 429/503 is sent again this often, 0.2 s apart, before its lines count as failed
TARGETS = {
    "bulk": 10_000,  # tweets/s, 3 nodes
    "post": 3_000,  # acknowledged tweets/s at 64 connections
    "qps": 1_000,  # searches/s at 32 connections
    "p99_ms": 50.0,  # at 32 connections
    "single_p50_ms": 2.0,  # one client, each kind
    "ingest_search_p99_ms": 100.0,  # one client while the bulk ingest runs
}
SYSTEMS = ("3node", "1node", "fts5")


def search_path(q: Q) -> str:
    return f"/search?count={COUNT}&q=" + quote(q.murmur(), safe="")


def tweet_bodies(recs: list[Rec], n: int) -> list[str]:
    """POST /tweets bodies from the corpus texts, without ids (the node gives each a new one). Texts the API
    refuses (empty or over 280 characters: the corpus has a few) are left out, so every POST should be a 201."""
    enc = msgspec.json.Encoder()
    valid = [r for r in recs if 1 <= len(r.text) <= 280]
    return [
        enc.encode({"text": r.text, "user": r.user or "unknown", **({"lang": r.lang} if r.lang else {})}).decode()
        for r in itertools.islice(itertools.cycle(valid), n)
    ]


def batches(recs: list[Rec]) -> list[tuple[int, bytes]]:
    enc = msgspec.json.Encoder()
    return [
        (len(chunk), b"\n".join(enc.encode(r) for r in chunk))
        for chunk in (recs[i : i + BATCH_LINES] for i in range(0, len(recs), BATCH_LINES))
    ]


def fmt_row(label: str, r: LoadResult, conns: int) -> str:
    hits = f"{r.hits:6.1f}" if r.hits is not None else f"{'-':>6}"
    return (
        f"  {label:14} {conns:5d} {r.rate:10,.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.max_ms:8.1f} {r.failed:7d} "
        f"{r.partial:7d} {hits} {r.loadgen_cores:7.2f} {r.node_cores:6.2f} "
        f"{(r.node_cores * r.seconds / r.ok * 1e6) if r.ok else float('nan'):8,.0f}"
    )


ROW_HEAD = (
    f"  {'':14} {'conns':>5} {'per s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'failed':>7} "
    f"{'partial':>7} {'hits':>6} {'gen CPU':>7} {'nodes':>6} {'node µs':>8}"
)
ROW_NOTE = (
    "  (per s: answered 200/201 per second; failed: other statuses, socket errors, timeouts; hits: statuses per "
    "answer;\n   gen CPU / nodes: cores used by the load generator / all nodes; node µs: node CPU per answer)"
)


# ---------------------------------------------------------------- Murmur over HTTP


async def ingest(
    addrs: list[tuple[str, int]], work: list[tuple[int, bytes]], searcher_reqs: list[bytes] | None
) -> dict[str, Any]:
    """BULK_CLIENTS workers take the next batch; worker i posts to node i mod n. With `searcher_reqs`, one more
    client searches back to back (every node in turn) until the ingest ends."""
    todo = iter(work)
    out: dict[str, Any] = {"ingested": 0, "failed": 0, "retries": 0, "lat_ms": [], "s_failed": 0, "s_partial": 0}
    dec = msgspec.json.Decoder(dict[str, Any])
    done = trio.Event()

    async def worker(i: int) -> None:
        conn = Conn(*addrs[i % len(addrs)])
        try:
            for lines, body in todo:
                for attempt in range(BULK_RETRIES + 1):
                    status, resp = await conn.request(post("/tweets/bulk", body, "application/x-ndjson"))
                    if status not in (429, 503) or attempt == BULK_RETRIES:
                        break
                    out["retries"] += 1
                    await trio.sleep(0.2)
                if status != 200:
                    out["failed"] += lines
                    continue
                d = dec.decode(resp)
                out["ingested"] += d["ingested"]
                out["failed"] += d["failed"]
                if d["failed"] and "first_error" not in out:
                    out["first_error"] = next((it for it in d.get("items", []) if it.get("error")), None)
        finally:
            await conn.aclose()

    async def searcher() -> None:
        assert searcher_reqs is not None
        conns = [Conn(*a) for a in addrs]
        try:
            for k in itertools.count():
                if done.is_set():
                    return
                t0 = time.perf_counter()
                try:
                    status, body = await conns[k % len(conns)].request(searcher_reqs[k % len(searcher_reqs)])
                except (OSError, ConnectionError):
                    await conns[k % len(conns)].aclose()
                    status, body = 0, b""
                out["lat_ms"].append((time.perf_counter() - t0) * 1000)
                out["s_failed"] += status != 200
                out["s_partial"] += b'"partial":true' in body
        finally:
            for c in conns:
                await c.aclose()

    t0 = time.perf_counter()
    async with trio.open_nursery() as n:
        if searcher_reqs is not None:
            n.start_soon(searcher)
        async with trio.open_nursery() as w:
            for i in range(BULK_CLIENTS):
                w.start_soon(worker, i)
        out["seconds"] = time.perf_counter() - t0
        done.set()
    return out


async def agreement(addrs: list[tuple[str, int]], qs: list[Q]) -> dict[str, Any]:
    """Each query asked of every node: 'agree' when every answer is a complete 200 with the same id list.
    Identical error bodies are not agreement: they count as 'error' (and partial answers as 'partial').
    The queries that differed are asked again after AGREEMENT_RETRY_S: 'differ_again' are those still differing
    (not writes still on their way), with each node's count of ids and the first position where they part."""
    conns = [Conn(*a) for a in addrs]
    res: dict[str, Any] = {"agree": 0, "differ": 0, "error": 0, "partial": 0, "queries": len(qs), "examples": []}
    dec = msgspec.json.Decoder(dict[str, Any])

    async def ask(q: Q) -> tuple[str, list[list[int]]]:
        answers = [await c.request(get(search_path(q))) for c in conns]
        if any(st != 200 for st, _ in answers):
            return "error", []
        docs = [dec.decode(b) for _, b in answers]
        if any(d["search_metadata"].get("partial") for d in docs):
            return "partial", []
        ids = [[t["id"] for t in d["statuses"]] for d in docs]
        return ("agree" if all(x == ids[0] for x in ids) else "differ"), ids

    differing = []
    try:
        for q in qs:
            verdict, _ = await ask(q)
            res[verdict] += 1
            if verdict == "differ":
                differing.append(q)
        if differing:
            await trio.sleep(AGREEMENT_RETRY_S)
        again = 0
        for q in differing:
            verdict, ids = await ask(q)
            if verdict != "differ":
                continue
            again += 1
            part = next((i for i in range(min(map(len, ids))) if len({x[i] for x in ids}) > 1), min(map(len, ids)))
            res["examples"].append(f"{q.murmur()!r}: ids per node {[len(x) for x in ids]}, first differ at {part}")
        res["differ_again"] = again
    finally:
        for c in conns:
            await c.aclose()
    return res


def bench_murmur(
    system: str,
    recs: list[Rec],
    queries: dict[str, list[Q]],
    mix: list[Q],
    args: argparse.Namespace,
    tmp: Path,
    wrk: Wrk | None,
) -> dict[str, Any]:
    names, nwr = (["n1", "n2", "n3"], (3, 2, 2)) if system == "3node" else (["n1"], (1, 1, 1))
    root = tmp / system
    root.mkdir()
    n, w, r = nwr
    config = write_config(root, names, n=n, w=w, r=r, extra='[storage]\nfsync = "always"\n')
    config.write_text(config.read_text().replace("vnodes = 16", f"vnodes = {VNODES}"))
    nodes: list[NodeProc] = []
    res: dict[str, Any] = {"nodes": len(names), "n_w_r": list(nwr)}
    print(f"\n== Murmur, {len(names)} node(s), N={n} W={w} R={r}, fsync=always, vnodes={VNODES}; data under {root}")
    trio_load = TrioLoad()
    try:
        for name in names:
            nodes.append(NodeProc(config, name).start())
        addrs = [addr_of(nd.url) for nd in nodes]
        pids = [nd.proc.pid for nd in nodes if nd.proc is not None]

        def measured(run: Any) -> LoadResult:
            return node_cores(pids, cpu_seconds, run)

        # 1 and 2: bulk ingest alone, then with one searching client
        work = batches(recs)
        cut = len(work) * 2 // 3
        prof = None
        if args.profile:
            prof = Profile(args.pyspy, args.profile_dir, f"{system}-ingest", {nd.name: nd.proc.pid for nd in nodes})  # type: ignore[union-attr]

            def stop_prof() -> None:
                time.sleep(args.profile_seconds)
                res["profile_ingest"] = {k: str(v) for k, v in prof.stop().items()}  # type: ignore[union-attr]

            timer = threading.Thread(target=stop_prof)
            timer.start()
        c0 = sum(map(cpu_seconds, pids))
        a = trio.run(ingest, addrs, work[:cut], None)
        node_c = (sum(map(cpu_seconds, pids)) - c0) / a["seconds"]
        if prof is not None:
            timer.join()
        total_a = sum(k for k, _ in work[:cut])
        res["bulk"] = {"tweets_per_s": a["ingested"] / a["seconds"], "ingested": a["ingested"], "failed": a["failed"],
                       "retries": a["retries"], "seconds": a["seconds"], "node_cores": node_c}
        print(
            f"bulk ingest: {a['ingested']:,} of {total_a:,} tweets ({a['failed']:,} failed, {a['retries']} bulk "
            f"retries after 429/503) in {a['seconds']:.1f} s = {a['ingested'] / a['seconds']:,.0f} tweets/s, "
            f"nodes {node_c:.2f} cores = {node_c * a['seconds'] / max(1, a['ingested']) * 1e6:,.0f} µs CPU per "
            f"tweet ({BULK_CLIENTS} clients, {BATCH_LINES} lines a request)   target >= {TARGETS['bulk']:,}"
            + ("  [py-spy ran during it]" if prof is not None else "")
        )
        if a.get("first_error") is not None:
            print(f"  the first line refused: {a['first_error']}")
        urls = [nd.url for nd in nodes]
        res["side_share_after_ingest"] = side_share(urls)
        print(f"index right after the ingest (per node): {res['side_share_after_ingest']}")
        if prof is not None:
            report({k: Path(v) for k, v in res.get("profile_ingest", {}).items()}, "ingest")
        b = trio.run(ingest, addrs, work[cut:], [get(search_path(q)) for q in FIXED])
        lat = b["lat_ms"]
        res["ingest_search"] = {"tweets_per_s": b["ingested"] / b["seconds"], "searches": len(lat),
                                "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat, default=float("nan")),
                                "failed": b["s_failed"], "partial": b["s_partial"]}
        print(
            f"bulk ingest of the last third with one client searching: {b['ingested']:,} tweets in "
            f"{b['seconds']:.1f} s = {b['ingested'] / b['seconds']:,.0f} tweets/s; that client's {len(lat):,} "
            f"searches: p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, max {max(lat, default=float('nan')):.0f} ms, "
            f"{b['s_failed']} failed, {b['s_partial']} partial   target p99 < {TARGETS['ingest_search_p99_ms']:.0f} ms"
        )
        if args.ingest_only:
            return res
        # 3: single POST /tweets
        bodies = tweet_bodies(recs, POST_BODIES)
        if wrk is not None:
            pr = measured(lambda: wrk.run(addrs, bodies, POST_CONNS, args.seconds, method="POST"))
        else:
            reqs = [post("/tweets", bd.encode()) for bd in bodies]
            pr = measured(lambda: trio_load.run(addrs, reqs, POST_CONNS, args.seconds))
        res["post"] = msgspec.to_builtins(pr) | {"per_s": pr.rate}
        print(
            f"single POST /tweets, {POST_CONNS} connections, {pr.seconds:.1f} s ({pr.tool}): {pr.rate:,.0f} "
            f"acknowledged tweets/s, p50 {pr.p50_ms:.1f} ms, p99 {pr.p99_ms:.1f} ms, max {pr.max_ms:.0f} ms, "
            f"{pr.failed} failed; nodes {pr.node_cores:.2f} cores   target >= {TARGETS['post']:,}/s"
        )
        if args.profile:  # a second, profiled pass of the same: not a figure
            prof = Profile(args.pyspy, args.profile_dir, f"{system}-post", {nd.name: nd.proc.pid for nd in nodes})  # type: ignore[union-attr]
            try:
                if wrk is not None:
                    wrk.run(addrs, bodies, POST_CONNS, args.profile_seconds, method="POST")
                else:
                    trio_load.run(addrs, [post("/tweets", bd.encode()) for bd in bodies], POST_CONNS, args.profile_seconds)
            finally:
                files = prof.stop()
            res["profile_post"] = {k: str(v) for k, v in files.items()}
            report(files, "single POST")
        if args.writes_only:
            return res
        # 4: agreement
        sample = [q for k in KINDS for q in queries[k][:10]] + FIXED + mix[:40]
        ag = trio.run(agreement, addrs, sample)
        res["agreement"] = ag
        print(
            f"agreement: {ag['agree']} of {ag['queries']} sampled queries returned identical id lists from every "
            f"node; {ag['differ']} differed ({ag['differ_again']} still {AGREEMENT_RETRY_S:.0f} s later), "
            f"{ag['error']} had a non-200 answer, {ag['partial']} a partial one"
        )
        for ex in ag["examples"][:5]:
            print(f"  differs: {ex}")
        # 5: 32 connections per kind and for the mixes
        print(f"searches, GET /search?count={COUNT}, {SEARCH_CONNS} connections spread over the nodes, "
              f"{args.seconds:.0f} s a row ({'wrk' if wrk is not None else 'trio client'}):")
        print(ROW_HEAD)
        lists = {k: queries[k] for k in KINDS} | {"mix fixed": FIXED, f"mix {len(mix):,} q": mix}
        rows: dict[str, Any] = {}
        if wrk is not None:  # warm up: connections, caches, the first requests' imports
            wrk.run(addrs, [search_path(q) for q in mix], SEARCH_CONNS, 1)
        for label, qs in lists.items():
            paths = [search_path(q) for q in qs]
            if wrk is not None:
                lr = measured(lambda paths=paths: wrk.run(addrs, paths, SEARCH_CONNS, args.seconds))  # type: ignore[misc]
            else:
                reqs = [get(p) for p in paths]
                lr = measured(lambda reqs=reqs: trio_load.run(addrs, reqs, SEARCH_CONNS, args.seconds))  # type: ignore[misc]
            rows[label] = msgspec.to_builtins(lr) | {"per_s": lr.rate}
            print(fmt_row(label, lr, SEARCH_CONNS), flush=True)
        res["search32"] = rows
        if args.profile:
            paths = [search_path(q) for q in mix]
            prof = Profile(args.pyspy, args.profile_dir, f"{system}-search", {nd.name: nd.proc.pid for nd in nodes})  # type: ignore[union-attr]
            try:
                if wrk is not None:
                    lr = measured(lambda: wrk.run(addrs, paths, SEARCH_CONNS, args.profile_seconds))
                else:
                    reqs = [get(p) for p in paths]
                    lr = measured(lambda: trio_load.run(addrs, reqs, SEARCH_CONNS, args.profile_seconds))
            finally:
                files = prof.stop()
            print(fmt_row("mix, py-spy", lr, SEARCH_CONNS) + "   (profiled: not a figure)")
            res["profile_search"] = {k: str(v) for k, v in files.items()}
            report(files, "search")
        if args.loadgen_ab and wrk is not None:  # which load generator is the bottleneck: the same rows, alternated
            paths = [search_path(q) for q in mix]
            reqs = [get(p) for p in paths]
            for i in range(3):
                lr = measured(lambda: wrk.run(addrs, paths, SEARCH_CONNS, args.seconds))
                print(fmt_row(f"A/B {i + 1} wrk", lr, SEARCH_CONNS), flush=True)
                lr = measured(lambda: trio_load.run(addrs, reqs, SEARCH_CONNS, args.seconds))
                print(fmt_row(f"A/B {i + 1} trio", lr, SEARCH_CONNS), flush=True)
        print(ROW_NOTE)
        # 6: one client per kind
        print(f"one client, every node in turn, {args.seconds:.0f} s a kind (trio client):")
        print(ROW_HEAD)
        single: dict[str, Any] = {}
        for kind in KINDS:
            reqs = [get(search_path(q)) for q in queries[kind]]
            lr = measured(lambda reqs=reqs: trio_load.run(addrs, reqs, 1, args.seconds, count_hits=True))  # type: ignore[misc]
            single[kind] = msgspec.to_builtins(lr)
            print(fmt_row(kind, lr, 1), flush=True)
        res["single"] = single
        if wrk is not None:  # the same with a C client: the trio client's own reading of each answer is Python
            print(f"one client, wrk with one connection to {nodes[0].name}, {args.seconds:.0f} s a kind:")
            print(ROW_HEAD)
            single_c: dict[str, Any] = {}
            for kind in KINDS:
                paths = [search_path(q) for q in queries[kind]]
                lr = measured(lambda paths=paths: wrk.run(addrs[:1], paths, 1, args.seconds))  # type: ignore[misc]
                single_c[kind] = msgspec.to_builtins(lr)
                print(fmt_row(kind, lr, 1), flush=True)
            res["single_wrk"] = single_c
        print(f"  target: p50 < {TARGETS['single_p50_ms']:.0f} ms for every kind")
    except Exception:
        print(f"Murmur {system} FAILED:\n{traceback.format_exc()}")
        res["error"] = traceback.format_exc()
        for nd in nodes:
            print(f"--- last log lines of {nd.name}:\n{nd.log_tail(15)}")
    finally:
        stop_all(nodes)
    return res


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


# ---------------------------------------------------------------- SQLite FTS5 in-process

FTS5_SQL = f"SELECT rowid, user, created_at, text FROM t WHERE t MATCH ? ORDER BY rowid DESC LIMIT {COUNT}"


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, check_same_thread=False, timeout=30.0)
    con.execute("PRAGMA synchronous=FULL")
    return con


def _fts5_rows(recs: list[Rec]) -> list[tuple[int, str, str, str | None, str]]:
    return [(r.id, r.text, " ".join(hashtags_of(r.text)), r.user, r.created_at) for r in recs]


def _fts5_ingest(con: sqlite3.Connection, recs: list[Rec]) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(recs), BATCH_LINES):
        with con:
            con.executemany(
                "INSERT INTO t(rowid, text, tags, user, created_at) VALUES (?, ?, ?, ?, ?)",
                _fts5_rows(recs[i : i + BATCH_LINES]),
            )
    return time.perf_counter() - t0


def _threads(n: int, seconds: float, work: Any) -> tuple[list[float], int, float, float]:
    """`n` threads run work(j, stop, lat, errs) until `stop`; -> (latencies ms, errors, seconds, cores used)."""
    lat: list[list[float]] = [[] for _ in range(n)]
    errs = [0] * n
    stop = time.perf_counter() + seconds
    cpu0, t0 = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=work, args=(j, stop, lat[j], errs)) for j in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return [x for xs in lat for x in xs], sum(errs), wall, (time.process_time() - cpu0) / wall


def _result(lat: list[float], errs: int, wall: float, cores: float, hits: float | None = None) -> LoadResult:
    return LoadResult(len(lat), errs, 0, wall, pct(lat, 50), pct(lat, 99), max(lat, default=float("nan")),
                      loadgen_cores=0.0, node_cores=cores, hits=hits, tool="threads")


def bench_fts5(recs: list[Rec], queries: dict[str, list[Q]], mix: list[Q], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    path = tmp / "fts5.db"
    res: dict[str, Any] = {}
    print(f"\n== SQLite {sqlite3.sqlite_version} FTS5, in-process, WAL, synchronous=FULL, {path}")
    db = _connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE VIRTUAL TABLE t USING fts5(text, tags, user UNINDEXED, created_at UNINDEXED, tokenize='unicode61')"
    )
    cut = len(recs) * 2 // 3
    secs = _fts5_ingest(db, recs[:cut])
    res["bulk"] = {"tweets_per_s": cut / secs, "seconds": secs}
    print(f"bulk ingest: {cut:,} tweets in {secs:.1f} s = {cut / secs:,.0f} tweets/s (one writer: SQLite has one; "
          f"a transaction per {BATCH_LINES} rows, fsync per commit)")
    lat: list[float] = []
    fixed = [q.fts5() for q in FIXED]
    done = threading.Event()

    def searcher() -> None:
        con = _connect(path)
        for k in itertools.count():
            if done.is_set():
                break
            t = time.perf_counter()
            con.execute(FTS5_SQL, (fixed[k % len(fixed)],)).fetchall()
            lat.append((time.perf_counter() - t) * 1000)
        con.close()

    th = threading.Thread(target=searcher)
    th.start()
    secs = _fts5_ingest(db, recs[cut:])
    done.set()
    th.join()
    res["ingest_search"] = {"tweets_per_s": (len(recs) - cut) / secs, "searches": len(lat), "p50_ms": pct(lat, 50),
                            "p99_ms": pct(lat, 99), "max_ms": max(lat, default=float("nan"))}
    print(
        f"bulk ingest of the last third with one thread searching: {(len(recs) - cut) / secs:,.0f} tweets/s; its "
        f"{len(lat):,} searches: p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms, max {max(lat, default=float('nan')):.1f} ms"
    )
    next_id = itertools.count(max(r.id for r in recs) + 1)
    rows = _fts5_rows(recs)

    def poster(j: int, stop: float, out: list[float], errs: list[int]) -> None:
        con = _connect(path)
        k = j * 7919
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                with con:
                    con.execute("INSERT INTO t(rowid, text, tags, user, created_at) VALUES (?, ?, ?, ?, ?)",
                                (next(next_id), *rows[k % len(rows)][1:]))
                out.append((time.perf_counter() - t) * 1000)
            except sqlite3.OperationalError:
                errs[j] += 1
            k += 1
        con.close()

    pr = _result(*_threads(POST_CONNS, args.seconds, poster))
    res["post"] = msgspec.to_builtins(pr) | {"per_s": pr.rate}
    print(f"single inserts, {POST_CONNS} threads, a transaction each: {pr.rate:,.0f} rows/s, p50 {pr.p50_ms:.1f} ms, "
          f"p99 {pr.p99_ms:.1f} ms, {pr.failed} failed (locked)")

    def searchers(qs: list[str], hits: list[int]) -> Any:
        def run(j: int, stop: float, out: list[float], errs: list[int]) -> None:
            con = _connect(path)
            k = j * 7919
            while time.perf_counter() < stop:
                t = time.perf_counter()
                n = len(con.execute(FTS5_SQL, (qs[k % len(qs)],)).fetchall())
                out.append((time.perf_counter() - t) * 1000)
                hits[0] += n
                k += 1
            con.close()

        return run

    print(f"searches, top {COUNT} newest with their text, {SEARCH_CONNS} threads with a connection each, "
          f"{args.seconds:.0f} s a row (they share the GIL):")
    print(ROW_HEAD)
    lists = {k: queries[k] for k in KINDS} | {"mix fixed": FIXED, f"mix {len(mix):,} q": mix}
    out32: dict[str, Any] = {}
    for label, qs in lists.items():
        hits = [0]
        lr = _result(*_threads(SEARCH_CONNS, args.seconds, searchers([q.fts5() for q in qs], hits)))
        lr.hits = hits[0] / max(1, lr.ok)
        out32[label] = msgspec.to_builtins(lr) | {"per_s": lr.rate}
        print(fmt_row(label, lr, SEARCH_CONNS), flush=True)
    res["search32"] = out32
    print("  (nodes = cores this process used; there is no load generator apart from it)")
    print(f"one thread, {args.seconds:.0f} s a kind:")
    print(ROW_HEAD)
    single: dict[str, Any] = {}
    for kind in KINDS:
        hits = [0]
        lr = _result(*_threads(1, args.seconds, searchers([q.fts5() for q in queries[kind]], hits)))
        lr.hits = hits[0] / max(1, lr.ok)
        single[kind] = msgspec.to_builtins(lr)
        print(fmt_row(kind, lr, 1), flush=True)
    res["single"] = single
    db.close()
    return res


# ---------------------------------------------------------------- summary and main


def summary(results: dict[str, dict[str, Any]], mix_label: str) -> None:
    cols = [s for s in SYSTEMS if s in results and "error" not in results[s]]
    if not cols:
        return
    print("\n== summary (same run)")
    print(f"  {'figure':44}" + "".join(f" {c:>16}" for c in cols) + f" {'target (3 nodes)':>18}")

    def line(label: str, get_: Any, fmt: str, target: str = "") -> None:
        vals = []
        for c in cols:
            try:
                v = get_(results[c])
                vals.append(format(v, fmt) if v is not None else "-")
            except (KeyError, TypeError):
                vals.append("-")
        print(f"  {label:44}" + "".join(f" {v:>16}" for v in vals) + f" {target:>18}")

    line("bulk ingest, tweets/s", lambda r: r["bulk"]["tweets_per_s"], ",.0f", f">= {TARGETS['bulk']:,}")
    line("single POST at 64 conns, tweets/s", lambda r: r["post"]["per_s"], ",.0f", f">= {TARGETS['post']:,}")
    line("  its p99, ms", lambda r: r["post"]["p99_ms"], ".1f", "< 50")
    line("search during ingest (1 client) p50, ms", lambda r: r["ingest_search"]["p50_ms"], ".2f")
    line("  p99, ms", lambda r: r["ingest_search"]["p99_ms"], ".2f", f"< {TARGETS['ingest_search_p99_ms']:.0f}")
    line("  max, ms", lambda r: r["ingest_search"]["max_ms"], ".1f")
    for label in (*KINDS, "mix fixed", mix_label):
        line(f"{label} at 32 conns: q/s", lambda r, lb=label: r["search32"][lb]["per_s"], ",.0f", f">= {TARGETS['qps']:,}")
        line("  p50 / p99, ms", lambda r, lb=label: f"{r['search32'][lb]['p50_ms']:.1f} / {r['search32'][lb]['p99_ms']:.1f}", "s", f"p99 < {TARGETS['p99_ms']:.0f}")
        line("  failed / partial", lambda r, lb=label: f"{r['search32'][lb]['failed']} / {r['search32'][lb]['partial']}", "s", "0 / 0")
    for kind in KINDS:
        line(f"one client, {kind}: p50 ms", lambda r, k=kind: r["single"][k]["p50_ms"], ".2f", f"< {TARGETS['single_p50_ms']:.0f}")
        line("  the same with wrk, one connection", lambda r, k=kind: r["single_wrk"][k]["p50_ms"], ".2f", f"< {TARGETS['single_p50_ms']:.0f}")
    line("agreement: identical of sampled", lambda r: f"{r['agreement']['agree']} / {r['agreement']['queries']}", "s", "all")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="JSON lines (.gz ok)")
    ap.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"tweets to load (default {DEFAULT_LIMIT:,})")
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per figure (default 5)")
    ap.add_argument("--queries", type=int, default=300, help="distinct queries per kind (default 300)")
    ap.add_argument("--mix", type=int, default=2000, help="distinct queries of the random mix (default 2,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=SYSTEMS, action="append", help="run only these systems (repeatable)")
    ap.add_argument("--loadgen", choices=("wrk", "trio"), default="wrk", help="load generator (default wrk)")
    ap.add_argument("--loadgen-ab", action="store_true", help="also run the random mix with wrk and the trio client, alternated, 3 times each")
    ap.add_argument("--profile", action="store_true", help="py-spy on every node during ingest and searches")
    ap.add_argument("--profile-seconds", type=float, default=10.0, help="seconds of each profile (default 10)")
    ap.add_argument("--profile-dir", type=Path, default=None, help="where the profiles go (default: a new temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    ap.add_argument("--ingest-only", action="store_true", help="only the two ingest figures (to A/B a write-path change)")
    ap.add_argument("--writes-only", action="store_true", help="the ingest figures and single POST, no searches")
    args = ap.parse_args(argv)
    only = [s for s in SYSTEMS if s in (args.only or SYSTEMS)]

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} (other work on the machine skews every figure)")
    print(
        f"targets (3 nodes, issue 10): bulk >= {TARGETS['bulk']:,} tweets/s; single POST >= {TARGETS['post']:,}/s at "
        f"{POST_CONNS} connections; >= {TARGETS['qps']:,} q/s with p99 < {TARGETS['p99_ms']:.0f} ms at {SEARCH_CONNS} "
        f"connections; one client p50 < {TARGETS['single_p50_ms']:.0f} ms; search p99 < "
        f"{TARGETS['ingest_search_p99_ms']:.0f} ms during ingest"
    )
    wrk_exe = ensure_wrk() if args.loadgen == "wrk" and any(s != "fts5" for s in only) else None
    if args.loadgen == "wrk" and wrk_exe is None and any(s != "fts5" for s in only):
        print("wrk is not available: falling back to the raw trio client (--loadgen trio)")
    if args.profile:
        args.pyspy = ensure_pyspy()
        if args.pyspy is None:
            print("py-spy is not available: no profiles")
            args.profile = False
        args.profile_dir = args.profile_dir or Path(tempfile.mkdtemp(prefix="murmur-profile-"))
    t0 = time.perf_counter()
    recs, source = load_corpus(args.corpus, args.limit, args.seed)
    queries = pick_queries(recs, args.queries, args.seed)
    mix = random_mix(recs, args.mix, args.seed)
    mix_label = f"mix {len(mix):,} q"
    print(f"corpus: {source}: {len(recs):,} tweets (--limit {args.limit:,}) read in {time.perf_counter() - t0:.1f} s")
    print(
        f"queries: {args.queries} per kind (words 1/3 frequent, 1/3 medium, 1/3 rare), e.g. "
        + "; ".join(f"{k}: {queries[k][0].murmur()}" for k in KINDS)
    )
    print(f"  fixed mix ({len(FIXED)}): " + "; ".join(q.murmur() for q in FIXED))
    print(f"  random mix: {len(mix):,} distinct (seed {args.seed}), e.g. " + "; ".join(q.murmur() for q in mix[:8]))
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="murmur-bench-") as d:
        tmp = Path(d)
        wrk = Wrk(wrk_exe, tmp) if wrk_exe is not None else None
        for system in only:
            if system == "fts5":
                results[system] = bench_fts5(recs, queries, mix, args, tmp)
            else:
                results[system] = bench_murmur(system, recs, queries, mix, args, tmp, wrk)
    summary(results, mix_label)
    if args.profile:
        print(f"profiles (py-spy raw collapsed stacks; open in speedscope.app or flamegraph.pl): {args.profile_dir}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.json is not None:
        doc = {"machine": machine(), "corpus": source, "tweets": len(recs), "args": {k: str(v) for k, v in vars(args).items()},
               "targets": TARGETS, "results": results}
        args.json.write_text(json.dumps(doc, indent=1, default=str))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
