"""Benchmark (issue 9): the whole corpus on a 3-node cluster (N=3 W=2 R=2, fsync=always) run as a user runs it,
through the `murmur` CLI: `murmur up`, `murmur load` of the corpus while a client searches every node in turn
every 50 ms, `murmur snapshot` on every node with the searches still running, kill -9 of every node, plain
`murmur up` (no --timeout), and the same searches again.

A program, not a test: prints figures with their units, the machine and the targets, and never fails on a
timing (it exits 1 only when the cluster could not be started or loaded at all).
    .venv/bin/python scripts/bench_scale.py [--limit N] [--keep] [--dir DIR]
Corpus: ../shared/data/ira_troll_tweets.jsonl.gz (1.77 M tweets; --limit N loads its first N), or --corpus FILE;
without it, --limit (default 300,000) synthetic tweets (node.gen.synth). The cluster.toml is generated in a temp
dir (the repository's layout: 64 vnodes, free loopback ports); --keep keeps that dir (data, logs) afterwards.
It prints: the load rate (from murmur load's own summary and from wall time); search p50/p99/max and failures
during the load and during the snapshots; RSS per node (VmRSS, sampled every 0.5 s: max per phase and at the
end) with bytes per tweet, and bytes per posting from /metrics (murmur_index_bytes / murmur_index_postings);
snapshot size and time per node (the "snapshot" lines of data_dir/<name>/node.log, also those the nodes took by
themselves during the load); recovery time per node (the "recovered" lines) and until the whole cluster answers
/health 200 after the kill; and whether the fixed searches answer the same before and after, on every node.
Every node it started is stopped in a finally (`murmur down`, then SIGKILL of any that is still ours).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    DEFAULT_CORPUS,
    FIXED,
    Conn,
    addr_of,
    cpu_with_children,
    get,
    machine,
    pct,
    prom_values,
    rss_bytes,
)

from node.cli.procs import is_our_node, read_pid
from node.config import Config, load_config
from tests.support.procs import write_config

NAMES = ["n1", "n2", "n3"]
VNODES = 64  # as the repository's cluster.toml
SEARCH_EVERY_S = 0.05  # one search every 50 ms, each to the next node
SEARCH_TIMEOUT_S = 60.0  # a search not answered by then counts as failed (with this latency)
RSS_EVERY_S = 0.5
SNAPSHOT_WAIT_S = 1800.0  # for each node's "snapshot" log line after `murmur snapshot`
KILL_WAIT_S = 30.0
TARGETS = {"load": 10_000, "p99_ms": 100.0, "max_ms": 1000.0, "rss_bytes": 1.0e9, "restart_s": 30.0}
QUERIES = [q.murmur() for q in FIXED]


def murmur_cmd() -> list[str]:
    """The `murmur` entry point of this venv, else the same CLI as a module."""
    exe = Path(sys.executable).parent / "murmur"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "node.cli.main"]


def search_req(q: str) -> bytes:
    from urllib.parse import quote

    return get("/search?count=100&q=" + quote(q, safe=""))


class LogTail:
    """The JSON lines a node wrote to its node.log after a mark (a byte offset)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mark = self.size()

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def reset(self) -> None:
        self.mark = self.size()

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        try:
            with self.path.open("rb") as f:
                f.seek(self.mark)
                data = f.read()
        except OSError:
            return []
        for ln in data.splitlines():
            if not ln.startswith(b"{"):
                continue
            try:
                d = json.loads(ln)
            except ValueError:
                continue
            if d.get("event") == name:
                out.append(d)
        return out


class Run:
    """What the background tasks record: the phase now, each search's (phase, ms, ok, partial), RSS samples."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.phase = "start"
        self.searches: list[tuple[str, float, bool, bool]] = []
        self.rss: dict[str, dict[str, int]] = {n: {} for n in NAMES}  # node -> phase -> max RSS bytes
        self.rss_last: dict[str, int] = {}
        self.pids: dict[str, int] = {}
        self.all_pids: set[tuple[int, str]] = set()  # every node pid seen, for the last-resort cleanup

    def refresh_pids(self) -> None:
        for n in NAMES:
            pid = read_pid(self.cfg, n)
            if pid is not None:
                self.pids[n] = pid
                self.all_pids.add((pid, n))

    def stats(self, phase: str) -> dict[str, Any]:
        xs = [s for s in self.searches if s[0] == phase]
        lat = [s[1] for s in xs]
        return {"searches": len(xs), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                "max_ms": max(lat, default=float("nan")), "failed": sum(not s[2] for s in xs),
                "partial": sum(s[3] for s in xs)}


async def searcher(run: Run, stop: trio.Event) -> None:
    """Every SEARCH_EVERY_S one fixed search, each to the next node (keep-alive connections, reopened on error).
    Never bursts to catch up: a search that took long delays the next one, as a user's would."""
    conns = {n: Conn(*addr_of(run.cfg.url(n))) for n in NAMES}
    try:
        k = 0
        nxt = trio.current_time()
        while not stop.is_set():
            name, q = NAMES[k % len(NAMES)], QUERIES[k % len(QUERIES)]
            phase = run.phase
            t0 = time.perf_counter()
            ok = partial = False
            with trio.move_on_after(SEARCH_TIMEOUT_S):
                try:
                    status, body = await conns[name].request(search_req(q))
                    ok, partial = status == 200, b'"partial":true' in body
                except (OSError, ConnectionError, trio.BrokenResourceError):
                    await conns[name].aclose()
            if not ok:
                await conns[name].aclose()  # a cancelled or failed request leaves the connection unusable
            run.searches.append((phase, (time.perf_counter() - t0) * 1000, ok, partial))
            k += 1
            nxt = max(nxt + SEARCH_EVERY_S, trio.current_time())
            await trio.sleep_until(nxt)
    finally:
        for c in conns.values():
            await c.aclose()


async def sampler(run: Run, stop: trio.Event) -> None:
    while not stop.is_set():
        for n, pid in run.pids.items():
            rss = rss_bytes(pid)
            if rss:
                run.rss_last[n] = rss
                run.rss[n][run.phase] = max(run.rss[n].get(run.phase, 0), rss)
        await trio.sleep(RSS_EVERY_S)


async def http_get(url: str, path: str, timeout_s: float = 30.0) -> tuple[int, bytes]:
    conn = Conn(*addr_of(url))
    try:
        with trio.fail_after(timeout_s):
            return await conn.request(get(path))
    finally:
        await conn.aclose()


async def answers(cfg: Config) -> dict[str, dict[str, list[int] | str]]:
    """Each fixed query's id list from every node (or 'status N' / 'partial')."""
    out: dict[str, dict[str, list[int] | str]] = {}
    dec = msgspec.json.Decoder(dict[str, Any])
    for n in NAMES:
        out[n] = {}
        conn = Conn(*addr_of(cfg.url(n)))
        try:
            for q in QUERIES:
                with trio.fail_after(SEARCH_TIMEOUT_S):
                    status, body = await conn.request(search_req(q))
                if status != 200:
                    out[n][q] = f"status {status}"
                    continue
                d = dec.decode(body)
                out[n][q] = "partial" if d["search_metadata"].get("partial") else [t["id"] for t in d["statuses"]]
        finally:
            await conn.aclose()
    return out


async def node_metrics(cfg: Config) -> dict[str, dict[str, float]]:
    out = {}
    for n in NAMES:
        status, body = await http_get(cfg.url(n), "/metrics")
        out[n] = prom_values(body.decode(errors="replace")) if status == 200 else {}
    return out


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / f).stat().st_size
    return total


def parse_load(out: str) -> dict[str, float]:
    """murmur load's summary: 'loaded N (new a, already present b), rejected r' and 'in S s (R tweets/s)'."""
    d: dict[str, float] = {}
    if m := re.search(r"loaded ([\d,]+) \(new ([\d,]+), already present ([\d,]+)\), rejected ([\d,]+)", out):
        d.update(loaded=float(m[1].replace(",", "")), new=float(m[2].replace(",", "")),
                 present=float(m[3].replace(",", "")), rejected=float(m[4].replace(",", "")))
    if m := re.search(r"in ([\d.]+) s \(([\d,]+) tweets/s\)", out):
        d.update(seconds=float(m[1]), rate=float(m[2].replace(",", "")))
    return d


def kill9(run: Run) -> None:
    """SIGKILL every node by the pid in its node.pid, only if /proc says it is still that node; wait until gone."""
    run.refresh_pids()
    for n, pid in run.pids.items():
        if is_our_node(pid, n):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline and any(is_our_node(p, n) for n, p in run.pids.items()):
        time.sleep(0.05)


def last_resort(run: Run) -> None:
    for pid, n in run.all_pids:
        if is_our_node(pid, n):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def fmt_ms(st: dict[str, Any]) -> str:
    return (
        f"{st['searches']:,} searches: p50 {st['p50_ms']:.1f} ms, p99 {st['p99_ms']:.1f} ms, max {st['max_ms']:.0f} ms, "
        f"{st['failed']} failed, {st['partial']} partial"
    )


async def scenario(run: Run, corpus: Path, limit: int | None, res: dict[str, Any]) -> None:
    cfg, mm = run.cfg, murmur_cmd()
    cfgarg = ["--config", cfg.path]
    logs = {n: LogTail(cfg.node_dir(n) / "node.log") for n in NAMES}
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(searcher, run, stop)
        nursery.start_soon(sampler, run, stop)
        # the load, with the searches running
        run.phase = "load"
        load_log = Path(cfg.path).parent / "murmur-load.stderr"
        node_pids = {n: read_pid(cfg, n) or 0 for n in NAMES}
        cpu0 = {n: cpu_with_children(pid) for n, pid in node_pids.items()}
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        with load_log.open("wb") as err:
            p = await trio.run_process(
                [*mm, "load", *cfgarg, *(["--limit", str(limit)] if limit else []), str(corpus)],
                capture_stdout=True, stderr=err, check=False,
            )
        wall = time.perf_counter() - t0
        cpu1 = {n: cpu_with_children(pid) for n, pid in node_pids.items()}
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
        out = p.stdout.decode(errors="replace")
        summary = parse_load(out)
        res["load"] = {**summary, "wall_s": wall, "exit": p.returncode, "search": run.stats("load")}
        print("murmur load said:\n" + "\n".join("  " + ln for ln in out.strip().splitlines()))
        if p.returncode != 0 or "loaded" not in summary:
            print(f"murmur load failed ({p.returncode}); its stderr is in {load_log}")
        loaded = summary.get("loaded", 0.0)
        print(
            f"load: {loaded:,.0f} tweets; murmur load's own rate {summary.get('rate', float('nan')):,.0f} tweets/s, "
            f"by wall time {loaded / wall:,.0f} tweets/s ({wall:.1f} s)   target >= {TARGETS['load']:,}"
        )
        if loaded:
            node_cpu = {n: cpu1[n][0] - cpu0[n][0] for n in NAMES}
            snap_cpu = {n: cpu1[n][1] - cpu0[n][1] for n in NAMES}
            res["load"]["cpu_s"] = {"nodes": node_cpu, "snapshot_children": snap_cpu, "murmur_load": load_cpu}
            print(
                f"  CPU during the load, µs per tweet: nodes {sum(node_cpu.values()) / loaded * 1e6:,.0f} ("
                + ", ".join(f"{n} {node_cpu[n] / loaded * 1e6:,.0f}" for n in NAMES)
                + f"), their snapshot processes {sum(snap_cpu.values()) / loaded * 1e6:,.0f}, murmur load "
                f"{load_cpu / loaded * 1e6:,.0f}; {2 * wall / loaded * 1e6:,.0f} µs of the 2 cores' time per tweet"
            )
        print(f"  searches during the load (one every {SEARCH_EVERY_S * 1000:.0f} ms, every node in turn): "
              f"{fmt_ms(run.stats('load'))}   target p99 < {TARGETS['p99_ms']:.0f} ms, max < {TARGETS['max_ms']:.0f} ms, none failed")
        during = {n: logs[n].events("snapshot") for n in NAMES}
        res["snapshots_during_load"] = during
        for n in NAMES:
            for ev in during[n]:
                print(f"  {n} took a snapshot during the load ({ev.get('why')}): {ev.get('bytes', 0) / 2**20:,.0f} MiB "
                      f"in {ev.get('seconds', float('nan')):.1f} s")
        # figures at rest
        run.phase = "loaded"
        before = await answers(cfg)
        metrics = await node_metrics(cfg)
        res["nodes"] = {}
        for n in NAMES:
            m = metrics[n]
            tweets, rss = m.get("murmur_tweets", 0.0), run.rss_last.get(n, 0)
            postings, ix_bytes = m.get("murmur_index_postings", 0.0), m.get("murmur_index_bytes", 0.0)
            res["nodes"][n] = {"tweets": tweets, "rss_bytes": rss, "rss_max_load": run.rss[n].get("load", 0),
                               "index_bytes": ix_bytes, "postings": postings,
                               "side_postings": m.get("murmur_index_side_postings", 0.0),
                               "pair_postings": m.get("murmur_index_pair_postings", 0.0),
                               "disk_bytes": dir_bytes(cfg.node_dir(n))}
        # snapshots on request, the searches still running
        run.phase = "snapshot"
        for lg in logs.values():
            lg.reset()
        asked: dict[str, float] = {}
        for n in NAMES:
            r = await trio.run_process([*mm, "snapshot", "--url", cfg.url(n)], capture_stdout=True, capture_stderr=True, check=False)
            asked[n] = time.perf_counter()
            print(f"  murmur snapshot --url {cfg.url(n)}: {(r.stdout or r.stderr).decode(errors='replace').strip()}")
        snaps: dict[str, dict[str, Any]] = {}
        with trio.move_on_after(SNAPSHOT_WAIT_S):
            while len(snaps) < len(NAMES):
                for n in NAMES:
                    if n not in snaps:
                        evs = logs[n].events("snapshot") or logs[n].events("snapshot_failed")
                        if evs:
                            snaps[n] = evs[0] | {"wall_s": time.perf_counter() - asked[n]}
                await trio.sleep(0.2)
        res["snapshots"] = snaps
        res["snapshot_search"] = run.stats("snapshot")
        stop.set()
    # results so far
    print(f"searches while the snapshots were written: {fmt_ms(run.stats('snapshot'))}")
    for n in NAMES:
        s = snaps.get(n)
        if s is None:
            print(f"  {n}: no snapshot line within {SNAPSHOT_WAIT_S:.0f} s (nothing new since its last one?)")
        elif s.get("event") == "snapshot_failed":
            print(f"  {n}: snapshot FAILED: {s.get('error')}")
        else:
            print(f"  {n}: snapshot {s.get('bytes', 0) / 2**20:,.1f} MiB in {s.get('seconds', float('nan')):.1f} s "
                  f"(its log line {s['wall_s']:.1f} s after the request) "
                  f"(= {s.get('bytes', 0) / max(1.0, res['nodes'][n]['tweets']):.0f} B/tweet; WAL segments deleted "
                  f"{s.get('wal_segments_deleted')})")
    print("memory (VmRSS) and disk per node, after the load:")
    for n in NAMES:
        d = res["nodes"][n]
        d["rss_max_snapshot"] = run.rss[n].get("snapshot", 0)
        t = max(1.0, d["tweets"])
        print(
            f"  {n}: {d['tweets']:,.0f} tweets; RSS {d['rss_bytes'] / 1e6:,.0f} MB at rest = {d['rss_bytes'] / t:,.0f} B/tweet "
            f"(max {d['rss_max_load'] / 1e6:,.0f} MB during the load, {d['rss_max_snapshot'] / 1e6:,.0f} MB during the "
            f"snapshot); index {d['index_bytes'] / 1e6:,.0f} MB for {d['postings']:,.0f} postings = "
            f"{d['index_bytes'] / max(1.0, d['postings']):.2f} B/posting ({d['side_postings'] / max(1.0, d['postings']):.1%} "
            f"in the side table, {d['pair_postings']:,.0f} word-pair postings); disk {d['disk_bytes'] / 1e6:,.0f} MB   "
            f"target RSS <= {TARGETS['rss_bytes'] / 1e9:.1f} GB"
        )
    # kill -9 of every node, then plain `murmur up`
    print("kill -9 of every node, then `murmur up` (no --timeout):", flush=True)
    for lg in logs.values():
        lg.reset()
    kill9(run)
    ready: dict[str, float] = {}
    all_ready = trio.Event()
    t0 = time.perf_counter()

    async def poll_health() -> None:
        while len(ready) < len(NAMES):
            for n in NAMES:
                if n not in ready:
                    with contextlib.suppress(OSError, trio.BrokenResourceError, trio.TooSlowError):  # not up yet
                        if (await http_get(cfg.url(n), "/health", 1.0))[0] == 200:
                            ready[n] = time.perf_counter() - t0
            await trio.sleep(0.1)
        all_ready.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll_health)
        p = await trio.run_process([*mm, "up", *cfgarg], capture_stdout=True, stderr=subprocess.STDOUT, check=False)
        up_s = time.perf_counter() - t0
        if p.returncode == 0:
            with trio.move_on_after(10):  # the poller's last round, after `up` saw every node serving
                await all_ready.wait()
        nursery.cancel_scope.cancel()
    run.refresh_pids()
    up_out = p.stdout.decode(errors="replace").strip()
    print("\n".join("  | " + ln for ln in up_out.splitlines()[-12:]))
    rec = {n: (logs[n].events("recovered") or [{}])[-1] for n in NAMES}
    res["restart"] = {"up_exit": p.returncode, "up_s": up_s, "health_200_s": ready, "recovered": rec}
    print(f"  murmur up exited {p.returncode} after {up_s:.1f} s; every node answered /health 200 after "
          f"{max(ready.values(), default=float('nan')):.1f} s   target < {TARGETS['restart_s']:.0f} s")
    for n in NAMES:
        rv = rec[n]
        if not rv:
            print(f"  {n}: /health 200 after {ready.get(n, float('nan')):.1f} s; no 'recovered' line in its log")
            continue
        print(f"  {n}: /health 200 after {ready.get(n, float('nan')):.1f} s; its log says recovered in "
              f"{rv.get('seconds')} s (snapshot loaded in {rv.get('snapshot_s')} s, {rv.get('wal_records')} WAL records "
              f"replayed, {rv.get('tweets')} tweets)")
    if p.returncode != 0:
        return
    after = await answers(cfg)
    metrics_after = await node_metrics(cfg)
    for n in NAMES:
        res["nodes"][n]["rss_after_restart"] = rss_bytes(run.pids.get(n, 0))
        res["nodes"][n]["tweets_after"] = metrics_after[n].get("murmur_tweets", 0.0)
    same_before = all(before[n] == before[NAMES[0]] for n in NAMES)
    same_after = all(after[n] == after[NAMES[0]] for n in NAMES)
    changed = [q for q in QUERIES if any(after[n][q] != before[n][q] for n in NAMES)]
    bad = sorted({q for n in NAMES for q in QUERIES if isinstance(before[n][q], str) or isinstance(after[n][q], str)})
    res["answers"] = {"every_node_same_before": same_before, "every_node_same_after": same_after,
                      "changed": changed, "not_complete_200": bad}
    hits = sum(len(v) for v in before[NAMES[0]].values() if isinstance(v, list))
    print(f"fixed searches ({len(QUERIES)}, {hits:,} ids in all): every node the same before the kill: {same_before}; after: {same_after}; "
          f"changed by the restart: {len(changed)} {changed or ''}; not a complete 200: {bad or 'none'}")
    print("tweets per node before / after: " + ", ".join(
        f"{n} {res['nodes'][n]['tweets']:,.0f} / {res['nodes'][n]['tweets_after']:,.0f}" for n in NAMES))
    print("RSS after the restart: " + ", ".join(f"{n} {res['nodes'][n]['rss_after_restart'] / 1e6:,.0f} MB" for n in NAMES))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="JSON lines (.gz ok)")
    ap.add_argument("--limit", type=int, default=None, help="load only the first N tweets (default: all)")
    ap.add_argument("--dir", type=Path, default=None, help="work here instead of a new temp dir")
    ap.add_argument("--keep", action="store_true", help="keep the dir (config, data, logs) afterwards")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="murmur-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} (other work on the machine skews every figure)")
    print(f"targets (issue 9): murmur load >= {TARGETS['load']:,} tweets/s; search p99 < {TARGETS['p99_ms']:.0f} ms and "
          f"max < {TARGETS['max_ms']:.0f} ms throughout, none failing; RSS <= {TARGETS['rss_bytes'] / 1e9:.1f} GB per node; "
          f"kill -9 of all + murmur up back in < {TARGETS['restart_s']:.0f} s")
    corpus = args.corpus
    if not corpus.exists():
        n = args.limit or 300_000
        corpus = root / "synth.jsonl"
        with corpus.open("wb") as out:
            subprocess.run([sys.executable, "-m", "node.gen.synth", str(n), "--with-ids"], stdout=out, check=True)
        print(f"corpus: synthetic, {n:,} tweets (node.gen.synth) in {corpus}")
    else:
        print(f"corpus: {corpus}" + (f", first {args.limit:,} tweets" if args.limit else ", all of it"))
    cfg_path = write_config(root, NAMES, n=3, w=2, r=2, extra='[storage]\nfsync = "always"\n')
    cfg_path.write_text(cfg_path.read_text().replace("vnodes = 16", f"vnodes = {VNODES}"))
    cfg = load_config(cfg_path)
    print(f"cluster: {cfg_path} (N=3 W=2 R=2, fsync=always, vnodes={VNODES}); data in {cfg.data_dir()}")
    run = Run(cfg)
    res: dict[str, Any] = {}
    code = 0
    try:
        t0 = time.perf_counter()
        p = subprocess.run([*murmur_cmd(), "up", "--config", str(cfg_path)], capture_output=True, check=False)
        run.refresh_pids()
        if p.returncode != 0:
            print(f"murmur up failed ({p.returncode}):\n{p.stdout.decode()}{p.stderr.decode()}")
            return 1
        print(f"murmur up: {len(NAMES)} nodes serving after {time.perf_counter() - t0:.1f} s")
        trio.run(scenario, run, corpus, args.limit, res)
        if res.get("load", {}).get("exit", 1) != 0:
            code = 1
    finally:
        t0 = time.perf_counter()
        p = subprocess.run([*murmur_cmd(), "down", "--config", str(cfg_path)], capture_output=True, check=False)
        down = p.stdout.decode(errors="replace").strip()
        print(f"murmur down ({time.perf_counter() - t0:.1f} s): " + "; ".join(down.splitlines()))
        res["down"] = {"seconds": time.perf_counter() - t0, "output": down}
        last_resort(run)
        if args.json is not None:
            doc = {"machine": machine(), "corpus": str(corpus), "limit": args.limit, "targets": TARGETS, "results": res}
            args.json.write_text(json.dumps(doc, indent=1, default=str))
            print(f"figures written to {args.json}")
        if args.keep:
            print(f"kept {root}")
        elif args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
