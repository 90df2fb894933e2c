"""Failover under continuous writes (issue 11 §1): for each fault kind, a fresh cluster (5 nodes, N=3 W=2 R=2) is
loaded, several clients write continuously through the nodes that stay up, one node is faulted (kill -9, SIGSTOP,
or cut off from the network) and held for the whole window, and every write started in the window after the fault
is timed. Prints, per fault kind: writes, acknowledged, refused (503), no answer, p50 / p99 / max write latency,
and a check that every acknowledged write is then readable on the nodes that stayed up (nothing lost).
Target of issue 11: 0 refused and max latency < 5 s for each kind.

    .venv/bin/python scripts/bench_failover.py                         # kill, pause, cut; 30 s windows
    .venv/bin/python scripts/bench_failover.py --faults pause --window 60 --clients 8 --json out.json
    .venv/bin/python scripts/bench_failover.py --netns                 # cut at a lab switch (root), two-way

`cut` isolates the node with a tc black hole on its ports on lo (root; one-way: its own outgoing connections still
work) or, with --netns, cuts every link of it at the lab's switch (tests/support/netns.py: both ways). A benchmark,
not a test: it never fails on a figure. Only ever signals the node processes it started.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import chaos  # noqa: E402  (scripts/chaos.py: its node processes, network faults and config)

from node.config import load_config  # noqa: E402
from tests.support.procs import write_config  # noqa: E402

NAMES = ["n1", "n2", "n3", "n4", "n5"]
VICTIM = "n3"
REQUEST_TIMEOUT_S = 35.0  # above the node's own 30 s request limit: a write's latency is never cut short here


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


class Writer(threading.Thread):
    """Creates tweets with ids of its own through the given nodes, one request at a time, timing each."""

    def __init__(self, idx: int, urls: list[str], stop: threading.Event, seed: int) -> None:
        super().__init__(daemon=True, name=f"writer{idx}")
        self.idx, self.urls, self.stop_ev = idx, urls, stop
        self.rng = random.Random(f"{seed}-{idx}")
        self.done: list[tuple[float, float, int | None, int, str]] = []  # (t0, seconds, status, id, error)

    def run(self) -> None:
        http = httpx.Client(timeout=REQUEST_TIMEOUT_S)
        k = 0
        while not self.stop_ev.is_set():
            k += 1
            tid = 10**15 + self.idx * 10**9 + k
            body = {"id": tid, "text": f"zqfail{self.idx}x{k} failover bench #bench", "user": f"w{self.idx}"}
            url = self.rng.choice(self.urls)
            t0 = time.monotonic()
            try:
                r = http.post(url + "/tweets", json=body)
                status: int | None = r.status_code
                err = "" if r.status_code < 300 else chaos._error_text(r)
            except httpx.HTTPError as e:
                status, err = None, type(e).__name__
            self.done.append((t0, time.monotonic() - t0, status, tid, err))
        http.close()


def one_kind(kind: str, args: argparse.Namespace, base: Path) -> dict[str, Any]:
    root = base / kind
    root.mkdir(parents=True)
    gossip = chaos.FAST_GOSSIP if args.gossip == "fast" else ""
    lab: Any = None
    if args.netns:
        from tests.support import netns

        lab = netns.Lab(NAMES, seed=args.seed)
        lab.open()
    try:
        if lab is not None:
            lab.link("*", "*", delay_ms=args.net_delay_ms, loss=args.net_loss)
            cfg_path = netns.write_config(root, lab, NAMES, n=3, w=2, r=2, secret=chaos.SECRET, extra=gossip)
        else:
            cfg_path = write_config(root, NAMES, n=3, w=2, r=2, secret=chaos.SECRET, extra=gossip)
        cfg = load_config(cfg_path)
        nodes = [chaos.Node(cfg_path, nc.name, cfg.url(nc.name), nc.http_port, nc.gossip_port, host=nc.host,
                            prefix=lab.exec_prefix(nc.name) if lab is not None else ()) for nc in cfg.nodes]
        net: Any = chaos.NetnsNet(lab) if lab is not None else None
        if kind == "cut" and net is None:
            net = chaos.LoIsolation()
            why = net.probe(nodes[0].ports[0])
            if why is not None:
                return {"kind": kind, "skipped": why}
        try:
            return measure(kind, args, nodes, net)
        finally:
            if net is not None:
                net.heal()
            chaos.stop_all(nodes)
    finally:
        if lab is not None:
            lab.close()


def measure(kind: str, args: argparse.Namespace, nodes: list[Any], net: Any) -> dict[str, Any]:
    for nd in nodes:
        nd.spawn()
    for nd in nodes:
        nd.wait_healthy()
    victim = next(nd for nd in nodes if nd.name == VICTIM)
    stay = [nd for nd in nodes if nd is not victim]
    if args.preload:
        lines = "\n".join(json.dumps({"id": 10**14 + i, "text": f"preload {i} words #pre", "user": "pre"})
                          for i in range(args.preload))
        r = httpx.post(stay[0].url + "/tweets/bulk", content=lines, timeout=120,
                       headers={"content-type": "application/x-ndjson"})
        r.raise_for_status()
    stop = threading.Event()
    writers = [Writer(i, [nd.url for nd in stay], stop, args.seed) for i in range(args.clients)]
    for w in writers:
        w.start()
    time.sleep(args.warmup)
    t_fault = time.monotonic()
    if kind == "kill":
        victim.kill9()
    elif kind == "pause":
        victim.paused = True
        victim.send(signal.SIGSTOP)
    else:
        why = net.isolate(victim)
        if why is not None:
            raise RuntimeError(f"could not cut {victim.name} off: {why}")
    chaos.say(f"{kind}: {victim.name} faulted; writes go on through {[nd.name for nd in stay]} for {args.window}s")
    dead_after = None
    while time.monotonic() - t_fault < args.window:
        if dead_after is None:
            try:
                states = [next(mb["state"] for mb in httpx.get(nd.url + "/cluster", timeout=2).json()["members"]
                               if mb["name"] == victim.name) for nd in stay]
                if all(s == "dead" for s in states):
                    dead_after = round(time.monotonic() - t_fault, 2)
            except (httpx.HTTPError, ValueError, StopIteration):
                pass
        time.sleep(0.2)
    stop.set()
    for w in writers:
        w.join(REQUEST_TIMEOUT_S + 5)
    # heal, then check that every acknowledged write is there (nothing lost)
    if kind == "kill":
        victim.spawn()
        victim.wait_healthy()
    elif kind == "pause":
        victim.send(signal.SIGCONT)
        victim.paused = False
    else:
        net.heal()
    window = [d for w in writers for d in w.done if t_fault <= d[0] <= t_fault + args.window]
    acked_ids = [d[3] for w in writers for d in w.done if d[2] in (200, 201)]
    lost = 0
    http = httpx.Client(timeout=30)
    for k, tid in enumerate(acked_ids[:: max(1, len(acked_ids) // 300)]):
        r = http.get(f"{stay[k % len(stay)].url}/tweets/{tid}")
        lost += r.status_code != 200
    http.close()
    lat = [d[1] for d in window]
    refused = [d for d in window if d[2] == 503]
    reasons: dict[str, int] = {}
    for d in refused:
        reasons[d[4][:80]] = reasons.get(d[4][:80], 0) + 1
    return {
        "kind": kind, "victim": victim.name, "window_s": args.window, "clients": args.clients,
        "dead_after_s": dead_after, "writes": len(window),
        "acknowledged": sum(1 for d in window if d[2] in (200, 201)), "refused": len(refused),
        "no_answer": sum(1 for d in window if d[2] is None), "other": sum(1 for d in window if d[2] not in
                                                                         (200, 201, 503, None)),
        "p50_s": pct(lat, 50), "p99_s": pct(lat, 99), "max_s": max(lat, default=None),
        "refusal_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:5]),
        "acked_checked": len(acked_ids[:: max(1, len(acked_ids) // 300)]), "lost": lost,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faults", default="kill,pause,cut", help="comma-separated: kill, pause, cut")
    p.add_argument("--window", type=float, default=30.0, help="seconds measured after the fault (held throughout)")
    p.add_argument("--clients", type=int, default=4, help="concurrent writers (one request at a time each)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of writes before the fault")
    p.add_argument("--preload", type=int, default=2000, help="tweets loaded before the writers start")
    p.add_argument("--gossip", choices=("default", "fast"), default="default")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--netns", action="store_true", help="nodes in network namespaces (root); cut = at the switch")
    p.add_argument("--net-delay-ms", type=float, default=0.0, help="--netns: one-way delay of every link")
    p.add_argument("--net-loss", type=float, default=0.0, help="--netns: share of frames lost on every link")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the clusters' directories (node logs)")
    args = p.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="murmur-failover-"))
    chaos.say(f"bench_failover: {platform.node()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; "
              f"5 nodes N=3 W=2 R=2, gossip {args.gossip}, {args.clients} writers, {args.window}s windows; in {base}")
    results = []
    try:
        for kind in [k for k in args.faults.split(",") if k]:
            results.append(one_kind(kind, args, base))
            chaos.say(f"{kind}: {json.dumps(results[-1])}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\n==== failover under writes (load {os.getloadavg()[0]:.1f}; target: 0 refused, max < 5 s) ====")
    print(f"{'fault':6} {'dead at':>8} {'writes':>7} {'acked':>6} {'refused':>8} {'no ans.':>8} "
          f"{'p50 s':>7} {'p99 s':>7} {'max s':>7} {'lost':>5}")

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    for r in results:
        if "skipped" in r:
            print(f"{r['kind']:6} skipped: {r['skipped']}")
            continue
        print(f"{r['kind']:6} {f(r['dead_after_s']):>8} {r['writes']:>7} {r['acknowledged']:>6} {r['refused']:>8} "
              f"{r['no_answer']:>8} {f(r['p50_s']):>7} {f(r['p99_s']):>7} {f(r['max_s']):>7} "
              f"{r['lost']:>5}")
        for why, n in r["refusal_reasons"].items():
            print(f"       refused {n}x: {why}")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results},
                                        indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
