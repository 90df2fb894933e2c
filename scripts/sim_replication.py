"""Many seeds of the replication simulation (tests/sim/repl_scenario.py): a program, not a test; it prints what
happened and every violation with its seed, and exits 1 when some seed broke an invariant.

Run: .venv/bin/python scripts/sim_replication.py [--seeds 50] [--first 1] [--k 3,5] [--duration 30] [--hot]
       [--strict] [--trace]
Each run: K nodes (N=3, W=2, R=2, 8 vnodes), clients creating/editing/deleting/reading through random
coordinators while nodes crash and restart, calls are dropped or lose their answer, the network splits in two and
gossip views lag or lie; then heal, anti-entropy until replicas agree, read every tweet back. Violations of a
known-bug tag (tests/sim/test_replication_sim.py KNOWN) are counted apart unless --strict.
"""

from __future__ import annotations

import argparse
import collections
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sim.repl_net import NetConfig
from tests.sim.repl_scenario import Report, Workload, run_seed
from tests.sim.test_replication_sim import HOT, HOT_NET, KNOWN


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--k", default="3,5", help="cluster sizes, comma separated")
    ap.add_argument("--duration", type=float, default=30.0, help="virtual seconds of faults and traffic")
    ap.add_argument("--hot", action="store_true", help="few ids, many clients, lying views, 5%% loss")
    ap.add_argument("--strict", action="store_true", help="known-bug violations count as violations")
    ap.add_argument("--trace", action="store_true", help="print the trace of each failing seed")
    a = ap.parse_args()
    tolerate = frozenset() if a.strict else frozenset(KNOWN)
    print(f"machine: {platform.machine()} {platform.python_implementation()} {platform.python_version()}; "
          f"seeds {a.first}..{a.first + a.seeds - 1}, duration {a.duration} s virtual, {'hot' if a.hot else 'normal'}")
    bad = 0
    for k in (int(x) for x in a.k.split(",")):
        reps: list[Report] = []
        t0 = time.perf_counter()
        for seed in range(a.first, a.first + a.seeds):
            if a.hot:
                wl, cfg = Workload(**{**HOT.__dict__, "k": k, "duration_s": a.duration}), NetConfig(**HOT_NET.__dict__)
            else:
                wl, cfg = Workload(k=k, duration_s=a.duration, clients=3 if k == 3 else 4, max_down=k // 2), None
            rep = run_seed(seed, wl, cfg, tolerate)
            reps.append(rep)
            for v in rep.violations:
                print(f"  VIOLATION seed={seed} k={k}: {v}")
            if rep.violations and a.trace:
                print("\n".join("    " + ln for ln in rep.trace))
        bad += sum(bool(r.violations) for r in reps)
        wall = time.perf_counter() - t0
        tot = collections.Counter[str]()
        for r in reps:
            for f in ("ops", "acked", "failed", "indeterminate", "reads", "elections", "fenced", "crashes",
                      "partitions", "calls", "dropped", "lost_replies"):
                tot[f] += getattr(r, f)
        known = collections.Counter(v.split()[0] for r in reps for v in r.known)
        escaped = collections.Counter[str]()
        for r in reps:
            escaped.update(r.escaped)
        print(f"k={k}: {len(reps)} seeds in {wall:.1f} s wall ({wall / len(reps):.2f} s/seed), "
              f"{sum(r.sim_s for r in reps):.0f} s virtual")
        print(f"  ops {tot['ops']} (reads {tot['reads']}): acked {tot['acked']}, failed {tot['failed']}, "
              f"indeterminate {tot['indeterminate']}")
        print(f"  elections won {tot['elections']}, fenced applies refused {tot['fenced']}")
        print(f"  faults: crashes {tot['crashes']}, partitions {tot['partitions']}, calls {tot['calls']}, "
              f"dropped {tot['dropped']}, lost replies {tot['lost_replies']}")
        print(f"  anti-entropy rounds to converge: max {max(r.ae_rounds for r in reps)}, "
              f"mean {sum(r.ae_rounds for r in reps) / len(reps):.1f}")
        print(f"  violations: {sum(len(r.violations) for r in reps)} in "
              f"{sum(bool(r.violations) for r in reps)} seeds; known-bug violations: {dict(known) or 0}")
        if escaped:
            print(f"  errors that escaped as no MurmurError: {dict(escaped.most_common(6))}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
