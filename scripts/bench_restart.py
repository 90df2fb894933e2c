"""Benchmark: whole-cluster restart. Loads a corpus into a local 3-node cluster (N=3 W=2 R=2), kills every node
with SIGKILL, starts them all again and reports how long until every node answers /health, then checks that
every loaded tweet is back (GET by id for a sample, /cluster tweet counts, searches equal to before the kill).

A program, not a test: prints figures, never fails on a timing (it exits non-zero only if data is missing).
    .venv/bin/python scripts/bench_restart.py [--limit 1770000] [--snapshot]   (--snapshot: SIGTERM-free, but
    wait for a scheduled snapshot before the kill so that recovery reads snapshot + WAL tail instead of WAL only)
Corpus: ../shared/data/ira_troll_tweets.jsonl.gz when present, else synthetic tweets (node.gen.synth).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.procs import NodeProc, write_config

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NAMES = ["n1", "n2", "n3"]
QUERIES = ["trump", "news", "police shooting", "#maga", "obama OR hillary", '"breaking news"', "love -hate"]


def spawn(cfg: Path, nd: NodeProc) -> subprocess.Popen[bytes]:
    with open(nd.log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "node.cli.main", "node", "--config", str(cfg), "--name", nd.name], stdout=log, stderr=log
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=1_770_000)
    ap.add_argument("--snapshot", action="store_true", help="take a scheduled snapshot before the kill")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="murmur-restart-"))
    root.mkdir(parents=True, exist_ok=True)
    corpus = DATA / "ira_troll_tweets.jsonl.gz"
    storage = "[storage]\nsnapshot_interval_s = 30\n" if args.snapshot else "[storage]\nsnapshot_interval_s = 0\n"
    cfg = write_config(root, NAMES, n=3, w=2, r=2, extra=storage)
    nodes = [NodeProc(cfg, n).start() for n in NAMES]
    try:
        src = [str(corpus)] if corpus.exists() else []
        if not src:
            gen = root / "synth.jsonl"
            with open(gen, "wb") as out:
                subprocess.run([sys.executable, "-m", "node.gen.synth", str(args.limit)], stdout=out, check=True)
            src = [str(gen)]
        t0 = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "node.cli.main", "load", "--url", nodes[0].url, "--limit", str(args.limit), *src],
            check=True,
        )
        load_s = time.monotonic() - t0
        c = httpx.Client(timeout=60)
        before = {q: [t["id"] for t in c.get(nodes[1].url + "/search", params={"q": q}).json()["statuses"]] for q in QUERIES}
        counts = {mb["name"]: mb["tweets"] for mb in c.get(nodes[0].url + "/cluster").json()["members"]}
        total = sum(counts.values()) // 3
        sample = random.Random(1).sample([i for ids in before.values() for i in ids], min(200, sum(map(len, before.values()))))
        if args.snapshot:
            time.sleep(40)
        print(f"loaded ~{total:,} tweets in {load_s:.0f} s ({total / load_s:,.0f}/s); per node: {counts}")
        for nd in nodes:
            nd.kill()
        t1 = time.monotonic()
        procs = [spawn(cfg, nd) for nd in nodes]  # all at once, as `murmur up` does
        ready: dict[str, float] = {}
        while len(ready) < len(nodes) and time.monotonic() - t1 < 3600:
            for nd in nodes:
                if nd.name not in ready:
                    try:
                        if httpx.get(nd.url + "/health", timeout=1).status_code == 200:
                            ready[nd.name] = time.monotonic() - t1
                    except httpx.HTTPError:
                        pass
            time.sleep(0.1)
        for nd, p in zip(nodes, procs, strict=True):
            nd.proc = p
        restart_s = max(ready.values())
        after_counts: dict[str, int | None] = {}
        for _ in range(100):  # /cluster learns peers' counts within a second or so
            after_counts = {mb["name"]: mb["tweets"] for mb in c.get(nodes[0].url + "/cluster").json()["members"]}
            if None not in after_counts.values():
                break
            time.sleep(0.2)
        missing = [i for i in sample if c.get(f"{nodes[2].url}/tweets/{i}").status_code != 200]
        changed = [
            q for q in QUERIES if [t["id"] for t in c.get(nodes[2].url + "/search", params={"q": q}).json()["statuses"]] != before[q]
        ]
        print(f"restart of all {len(NAMES)} nodes after kill -9: {restart_s:.1f} s until every /health answered")
        print(f"  per node: { {k: round(v, 1) for k, v in ready.items()} }")
        print(f"  tweets per node before {counts} after {after_counts}")
        print(f"  sampled tweets missing by id: {len(missing)} of {len(sample)}; searches changed: {changed}")
        return 1 if missing or changed or after_counts != counts else 0
    finally:
        for nd in nodes:
            nd.kill()


if __name__ == "__main__":
    sys.exit(main())
