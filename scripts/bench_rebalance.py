"""Benchmark: join and leave at run time. Starts a local 3-node cluster (N=3 W=2 R=2, 64 vnodes, fast gossip),
bulk-loads a corpus, then (1) adds n4 to cluster.toml and starts it: it joins and streams the ranges it gains;
(2) decommissions n1 with `murmur decommission`. Each move runs under a small load (one thread writing tweets,
one running fixed searches on every node against the answers taken before the move) and reports how long the
ring took to settle, what was streamed, the new shares, and what the load saw.

A program, not a test: prints figures; exits non-zero only if a search answered wrong, an acknowledged write went
missing, or the ring did not settle. Every wait is bounded; it only ever signals the node processes it started.
    .venv/bin/python scripts/bench_rebalance.py [--tweets 100000] [--dir DIR] [--settle-timeout 900]
Corpus: ../shared/data when present (sanders and sentiment140 up to 6 % and 25 % of --tweets, the rest from
ira_troll_tweets), else synthetic tweets (node.gen.synth, seed 7).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.text.analyzer import analyse
from tests.cluster.kit import DATA, read_bodies
from tests.support.procs import NodeProc, free_port, write_config

NAMES = ["n1", "n2", "n3"]
SECRET = "bench-secret"
FAST_GOSSIP = "[membership]\nprobe_interval_s = 0.2\nprobe_timeout_s = 0.1\ngossip_interval_s = 0.05\n"
POLL_S = 0.2
SAMPLE_WRITES = 60  # acknowledged writes of a phase checked by id on every remaining node


# ---------------------------------------------------------------- corpus and queries


def corpus(limit: int) -> tuple[list[dict[str, Any]], str]:
    if (DATA / "ira_troll_tweets.jsonl.gz").exists():
        parts = [
            ("sanders.jsonl.gz", min(5113, limit * 6 // 100)),
            ("sentiment140_sample.jsonl.gz", min(20000, limit // 4)),
        ]
        parts.append(("ira_troll_tweets.jsonl.gz", limit - sum(k for _, k in parts)))
        recs = [r for name, k in parts for r in read_bodies(name, k)]
        return recs, "real: " + ", ".join(f"{name.split('.')[0]} {k}" for name, k in parts)
    from node.gen.synth import generate

    return list(generate(limit, seed=7, with_ids=True)), "synthetic (node.gen.synth, seed 7)"


def pick_queries(bodies: list[dict[str, Any]]) -> list[str]:
    """A few fixed searches of every kind, words chosen by document frequency in the corpus."""
    rng = random.Random(5)
    df: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    bigrams: Counter[tuple[str, str]] = Counter()
    users: Counter[str] = Counter()
    for b in bodies:
        a = analyse(b["text"])
        df.update({w for w in a.words if w.isalpha() and w.isascii() and len(w) > 2})
        tags.update(set(a.hashtags))
        bigrams.update({p for p in zip(a.words, a.words[1:], strict=False) if all(w.isalpha() for w in p)})
        users[b["user"]] += 1
    by_df = [w for w, _ in df.most_common()]
    f1, f2 = by_df[0], by_df[3]
    m1 = rng.choice(by_df[len(by_df) // 50 : len(by_df) // 10])
    r1 = rng.choice(sorted(w for w, k in df.items() if 2 <= k <= 3))
    b1, b2 = rng.choice(
        sorted(p for p, k in bigrams.items() if 5 <= k <= 50) or [bigrams.most_common(1)[0][0]]
    )
    t1 = rng.choice(sorted(h for h, k in tags.items() if 3 <= k <= 30) or [tags.most_common(1)[0][0]])
    author = rng.choice(sorted(u for u, k in users.items() if 3 <= k <= 20 and u.isascii()) or ["unknown"])
    return [
        f1,
        m1,
        r1,
        f"{f1} {f2}",
        f"{m1} OR {r1}",
        f"{f1} -{f2}",
        f'"{b1} {b2}"',
        f"#{t1}",
        f"from:{author}",
    ]


def ids_of(c: httpx.Client, q: str) -> list[int]:
    """One search's ids; raises on an error or a partial answer (not comparable)."""
    r = c.get("/search", params={"q": q, "count": 100})
    r.raise_for_status()
    body = r.json()
    if body["search_metadata"]["partial"]:
        raise RuntimeError("partial")
    return [t["id"] for t in body["statuses"]]


# ---------------------------------------------------------------- load during a move


class Writer:
    """Posts tweets (words of their own, so the fixed searches never see them) round-robin through `urls`."""

    def __init__(self, urls: list[str], tag: str) -> None:
        self.urls, self.tag = urls, tag
        self.stop = threading.Event()
        self.acked: list[int] = []
        self.refused: Counter[str] = Counter()
        self.first_refusal = ""  # seconds into the phase, node, answer
        self.latencies: list[float] = []
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        clients = [httpx.Client(base_url=u, timeout=30) for u in self.urls]
        k = 0
        while not self.stop.is_set():
            c = clients[k % len(clients)]
            k += 1
            t = time.monotonic()
            try:
                r = c.post("/tweets", json={"text": f"{self.tag} zqbench zqw{k}", "user": "bencher"})
            except httpx.HTTPError as e:
                self.refused[type(e).__name__] += 1
                self.first_refusal = self.first_refusal or f"+{t - self.t0:.1f}s {c.base_url} {e!r}"[:200]
                time.sleep(0.05)
                continue
            self.latencies.append(time.monotonic() - t)
            if r.status_code == 201:
                self.acked.append(r.json()["id"])
            else:
                try:
                    code = r.json()["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    code = ""
                self.refused[f"{r.status_code} {code}".strip()] += 1
                self.first_refusal = self.first_refusal or f"+{t - self.t0:.1f}s {c.base_url} {r.text}"[:200]
                time.sleep(0.05)
        for c in clients:
            c.close()

    def __enter__(self) -> Writer:
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


class Searcher:
    """Runs the fixed searches round-robin over every node; an answer must equal the one taken before."""

    def __init__(self, urls: list[str], want: dict[str, list[int]]) -> None:
        self.urls, self.want = urls, want
        self.stop = threading.Event()
        self.checked = 0
        self.errors: Counter[str] = Counter()
        self.wrong: list[tuple[str, str, int, int]] = []  # url, query, ids got, ids wanted
        self.latencies: list[float] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        clients = [httpx.Client(base_url=u, timeout=30) for u in self.urls]
        queries = sorted(self.want)
        k = 0
        while not self.stop.is_set():
            c = clients[k % len(clients)]
            q = queries[(k // len(clients)) % len(queries)]
            k += 1
            t = time.monotonic()
            try:
                got = ids_of(c, q)
            except (httpx.HTTPError, RuntimeError) as e:  # a node stopping (the leaver at the end)
                self.errors[type(e).__name__ if not isinstance(e, RuntimeError) else str(e)] += 1
                time.sleep(0.05)
                continue
            self.latencies.append(time.monotonic() - t)
            self.checked += 1
            if got != self.want[q]:
                self.wrong.append((str(c.base_url), q, len(got), len(self.want[q])))
        for c in clients:
            c.close()

    def __enter__(self) -> Searcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


# ---------------------------------------------------------------- cluster views


def settle(urls: list[str], members: set[str], deadline: float) -> tuple[bool, object]:
    """Poll until every url's /cluster shows exactly `members`, all normal and alive, and no change."""
    seen: list[object] = []
    with httpx.Client(timeout=5) as c:
        while time.monotonic() < deadline:
            seen = []
            for u in urls:
                try:
                    view = c.get(u + "/cluster").json()
                except (httpx.HTTPError, ValueError) as e:
                    seen.append(str(e))
                    continue
                seen.append(
                    (view.get("change"), {mb["name"]: (mb["ring"], mb["state"]) for mb in view["members"]})
                )
            if all(
                isinstance(s, tuple) and s[0] is None and s[1] == dict.fromkeys(members, ("normal", "alive"))
                for s in seen
            ):
                return True, seen
            time.sleep(POLL_S)
    return False, seen


def holdings(urls: list[str]) -> dict[str, tuple[int, float]]:
    """(tweets held, ring share) of each node as it reports itself (a peer's count in /cluster lags ~1 s)."""
    out: dict[str, tuple[int, float]] = {}
    with httpx.Client(timeout=5) as c:
        for u in urls:
            for mb in c.get(u + "/cluster").json()["members"]:
                if mb["http"].rstrip("/") == u.rstrip("/"):
                    out[mb["name"]] = (mb["tweets"], mb["ring_share"])
    return dict(sorted(out.items()))


def log_events(nodes: list[NodeProc], offsets: dict[str, int], names: set[str]) -> list[dict[str, Any]]:
    """The JSON log events named in `names` that the nodes wrote after `offsets`; also 'error'-ish ones."""
    out: list[dict[str, Any]] = []
    for nd in nodes:
        with open(nd.log_path, "rb") as f:
            f.seek(offsets.get(nd.name, 0))
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    if any(w in line.lower() for w in (b"error", b"failed", b"aborted", b"traceback")):
                        out.append(
                            {"event": "raw", "node": nd.name, "line": line.decode(errors="replace")[:200]}
                        )
                    continue
                if not isinstance(ev, dict):
                    continue
                ev.setdefault("node", nd.name)
                text = line.lower()
                bad = ev.get("level") in ("warning", "error") or any(
                    w in text for w in (b"error", b"failed", b"aborted")
                )
                if ev.get("event") in names or bad:
                    out.append(ev)
    return out


def offsets_of(nodes: list[NodeProc]) -> dict[str, int]:
    return {nd.name: nd.log_path.stat().st_size if nd.log_path.exists() else 0 for nd in nodes}


def at(ev: dict[str, Any], t0_wall: float) -> float:
    ts = ev.get("timestamp")
    if not isinstance(ts, str):
        return float("nan")
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() - t0_wall


def missing_writes(acked: list[int], urls: list[str]) -> int:
    sample = random.Random(2).sample(acked, min(SAMPLE_WRITES, len(acked)))
    bad = 0
    with httpx.Client(timeout=10) as c:
        for u in urls:
            for i in sample:
                try:
                    if c.get(f"{u}/tweets/{i}").status_code != 200:
                        bad += 1
                except httpx.HTTPError:
                    bad += 1
    return bad


# ---------------------------------------------------------------- phases


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.seconds = float("nan")
        self.settled = False
        self.figures: dict[str, Any] = {}
        self.problems: list[str] = []


def report_phase(
    ph: Phase,
    nodes: list[NodeProc],
    offsets: dict[str, int],
    t0_wall: float,
    w: Writer,
    s: Searcher,
    stay: list[str],
) -> None:
    evs = log_events(nodes, offsets, {"streamed", "streams", "topology_settled"})
    streamed = [e for e in evs if e.get("event") == "streamed"]
    ph.figures["streamed"] = {
        e["node"]: (e.get("tweets"), e.get("postings"), e.get("ranges"), round(at(e, t0_wall), 1))
        for e in streamed
    }
    streams = [e for e in evs if e.get("event") == "streams"]
    ph.figures["streams"] = [(e["node"], e.get("attempt"), e.get("pulled"), e.get("failed")) for e in streams]
    settled_at = [round(at(e, t0_wall), 1) for e in evs if e.get("event") == "topology_settled"]
    ph.figures["settled_log_s"] = settled_at
    ph.figures["writes"] = (len(w.acked), dict(w.refused))
    ph.figures["first_refusal"] = w.first_refusal
    ph.figures["latency_ms"] = {"write": spread(w.latencies), "search": spread(s.latencies)}
    ph.figures["searches"] = (s.checked, len(s.wrong), dict(s.errors))
    if s.wrong:
        ph.problems.append(f"wrong searches, first: {s.wrong[:3]}")
    if s.checked == 0:
        ph.problems.append("no search checked")
    miss = missing_writes(w.acked, stay) if ph.settled else -1
    ph.figures["acked_missing"] = miss
    if miss:
        ph.problems.append(
            f"acknowledged writes missing by id: {miss} (sample of {SAMPLE_WRITES} x {len(stay)} nodes)"
        )
    ph.figures["log_problems"] = [
        {k: v for k, v in e.items() if k not in ("timestamp",)}
        for e in evs
        if e.get("event") not in ("streamed", "streams", "topology_settled")
    ]
    ph.figures["members"] = holdings(stay) if ph.settled else {}


def spread(xs: list[float]) -> str:
    """'p50/p99/max' in ms."""
    if not xs:
        return "-"
    ys = sorted(xs)
    return "/".join(f"{ys[min(len(ys) - 1, int(p * len(ys)))] * 1000:.0f}" for p in (0.5, 0.99, 1.0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tweets", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--settle-timeout", type=float, default=900.0, help="bound on each move (s)")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="murmur-rebalance-"))
    root.mkdir(parents=True, exist_ok=True)
    cfg = write_config(root, NAMES, n=3, w=2, r=2, extra=FAST_GOSSIP, secret=SECRET)
    cfg.write_text(cfg.read_text().replace("vnodes = 16", "vnodes = 64"))  # write_config fixes 16
    bodies, source = corpus(args.tweets)
    queries = pick_queries(bodies)
    data = root / "corpus.jsonl"
    data.write_bytes(b"".join(json.dumps(b, ensure_ascii=False).encode() + b"\n" for b in bodies))
    print(f"dir {root}; corpus {len(bodies):,} tweets ({source})")
    nodes: list[NodeProc] = []
    phases: list[Phase] = []
    try:
        for n in NAMES:
            nodes.append(NodeProc(cfg, n).start())
        t = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "node.cli.main", "load", "--url", nodes[0].url, str(data)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        load_s = time.monotonic() - t
        if out.returncode != 0:
            print(f"load failed ({out.returncode}): {out.stderr[-800:]}")
            return 1
        print(
            f"loaded in {load_s:.0f} s ({len(bodies) / load_s:,.0f}/s): {out.stdout.strip().splitlines()[-1:]}"
        )
        print(f"  per node before: {holdings([nd.url for nd in nodes])}")
        want: dict[str, list[int]] = {}
        clients = [httpx.Client(base_url=nd.url, timeout=30) for nd in nodes]
        for q in queries:
            answers = [ids_of(c, q) for c in clients]
            if any(a != answers[0] for a in answers):
                print(f"nodes disagree before any move on {q!r}: {[len(a) for a in answers]}")
                return 1
            want[q] = answers[0]
        for c in clients:
            c.close()
        print(f"  fixed searches (hits): { {q: len(v) for q, v in want.items()} }")

        # 1. join: n4 added to cluster.toml and started; it finds the others through the config
        ph = Phase("join n4")
        phases.append(ph)
        with open(cfg, "a") as f:
            f.write(
                f'[[nodes]]\nname = "n4"\nhost = "127.0.0.1"\nhttp_port = {free_port()}\ngossip_port = {free_port()}\n'
            )
        n4 = NodeProc(cfg, "n4")
        offsets = offsets_of([*nodes, n4])
        old_urls = [nd.url for nd in nodes]
        with Writer(old_urls, "joinwrite") as w, Searcher(old_urls, want) as s:
            t0, t0_wall = time.monotonic(), time.time()
            n4.start()
            nodes.append(n4)
            ph.figures["health_s"] = round(time.monotonic() - t0, 1)
            ph.settled, last = settle(
                [nd.url for nd in nodes], {"n1", "n2", "n3", "n4"}, t0 + args.settle_timeout
            )
            ph.seconds = time.monotonic() - t0
            time.sleep(1.0)  # some load after the settle too
        if not ph.settled:
            ph.problems.append(f"ring did not settle in {args.settle_timeout:.0f} s: {last}")
        report_phase(ph, nodes, offsets, t0_wall, w, s, [nd.url for nd in nodes])

        # 2. leave: decommission n1 through the CLI while the others take writes
        ph = Phase("decommission n1")
        phases.append(ph)
        stay = nodes[1:]
        offsets = offsets_of(nodes)
        with (
            Writer([nd.url for nd in stay], "leavewrite") as w,
            Searcher([nd.url for nd in nodes], want) as s,
        ):
            t0, t0_wall = time.monotonic(), time.time()
            try:
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "node.cli.main",
                        "decommission",
                        "n1",
                        "--config",
                        str(cfg),
                        "--url",
                        stay[0].url,
                        "--timeout",
                        str(args.settle_timeout),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=args.settle_timeout + 60,
                )
                ph.figures["cli"] = (
                    out.returncode,
                    out.stdout.strip().splitlines()[-1:],
                    out.stderr.strip()[-300:],
                )
                cli_ok = out.returncode == 0 and "left the ring" in out.stdout
            except subprocess.TimeoutExpired:
                ph.figures["cli"] = ("timeout", [], "")
                cli_ok = False
            ph.figures["cli_s"] = round(time.monotonic() - t0, 1)
            ph.settled, last = settle([nd.url for nd in stay], {"n2", "n3", "n4"}, t0 + args.settle_timeout)
            ph.settled = ph.settled and cli_ok
            ph.seconds = time.monotonic() - t0
            time.sleep(1.0)
        if not cli_ok:
            ph.problems.append(f"decommission CLI: {ph.figures['cli']}")
        elif not ph.settled:
            ph.problems.append(f"ring did not settle in {args.settle_timeout:.0f} s: {last}")
        n1 = nodes[0]
        try:
            assert n1.proc is not None
            ph.figures["n1_exit"] = n1.proc.wait(30)
        except subprocess.TimeoutExpired:
            ph.figures["n1_exit"] = "still running"
            ph.problems.append("n1 did not exit after leaving")
        report_phase(ph, nodes, offsets, t0_wall, w, s, [nd.url for nd in stay])
    finally:
        for nd in nodes:
            try:
                nd.stop()
            except Exception:
                nd.kill()

    # 3. the figures
    print()
    print(f"{'phase':<16} {'settle s':>8} {'ok':>3} {'writes ok/refused':>18} {'searches ok/wrong/err':>22}")
    for ph in phases:
        acked, refused = ph.figures.get("writes", (0, {}))
        checked, wrong, errs = ph.figures.get("searches", (0, 0, {}))
        print(
            f"{ph.name:<16} {ph.seconds:>8.1f} {'yes' if ph.settled else 'NO':>3} "
            f"{f'{acked}/{sum(refused.values())}':>18} {f'{checked}/{wrong}/{sum(errs.values())}':>22}"
        )
    for ph in phases:
        fig = ph.figures
        print(f"{ph.name}:")
        extra = {k: fig[k] for k in ("health_s", "cli_s", "n1_exit") if k in fig}
        print(f"  {extra} topology_settled logged at +{fig.get('settled_log_s')} s")
        for node, (tw, po, rg, ts) in sorted(fig.get("streamed", {}).items()):
            if tw or po:
                print(
                    f"  streamed to {node}: {tw:,} tweets, {po:,} postings, {rg} ranges (logged at +{ts} s)"
                )
        for node, attempt, pulled, failed in fig.get("streams", []):
            if failed or attempt != 1:
                print(
                    f"  streams (coordinated by {node}, attempt {attempt}): pulled {pulled} failed {failed}"
                )
        print(f"  members after (tweets, ring_share): {fig.get('members')}")
        acked, refused = fig.get("writes", (0, {}))
        checked, wrong, errs = fig.get("searches", (0, 0, {}))
        print(
            f"  writes acked {acked} refused {refused}; searches checked {checked} wrong {wrong} errors {errs}"
        )
        print(
            f"  acked writes missing by id (sampled): {fig.get('acked_missing')}; latency p50/p99/max ms {fig.get('latency_ms')}"
        )
        if fig.get("first_refusal"):
            print(f"  first refused write: {fig['first_refusal']}")
        for e in fig.get("log_problems", [])[:8]:
            print(f"  log: {json.dumps(e)[:240]}")
        if len(fig.get("log_problems", [])) > 8:
            print(f"  log: ... {len(fig['log_problems']) - 8} more warnings/errors")
        for p in ph.problems:
            print(f"  PROBLEM: {p}")
    return 1 if any(ph.problems for ph in phases) or len(phases) < 2 else 0


if __name__ == "__main__":
    sys.exit(main())
