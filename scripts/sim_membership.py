"""Membership figures from the deterministic simulator (tests/sim): a program, not a test; never fails on a number.

Run: .venv/bin/python scripts/sim_membership.py [--sizes 5,50,500] [--trials 3] [--seed 1]
Prints, in protocol periods (probe_interval_s) of simulated time, for each cluster size: (a) a crash until every
running node holds it DEAD, (b) a join until every running node holds the newcomer ALIVE; and, under 10% packet
loss, false suspicions (distinct suspicions of running nodes per node per period) and false deaths.
Config: memberlist's LAN defaults (node/membership/config.py). Network: 1-10 ms one-way delay, no loss unless said.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.membership.config import MembershipConfig
from node.membership.swim import State
from tests.sim.harness import NetConfig, Sim
from tests.sim.scenarios import bootstrap

CFG = MembershipConfig()
NET = NetConfig(drop=0.0, delay_min_s=0.001, delay_max_s=0.010)


def settle(sim: Sim, ns: list[str], limit_s: float) -> None:
    """Run until every node holds every other ALIVE (checked once per simulated second: O(n) per check)."""
    t_end = sim.now + limit_s
    while sim.now < t_end:
        sim.run_until(sim.now + 1.0)
        if all(sim.count[x][State.ALIVE] == len(ns) - 1 for x in ns):
            return
    raise SystemExit(f"seed={sim.seed}: {len(ns)} nodes did not settle in {limit_s} s")


def cluster(seed: int, n: int, net: NetConfig) -> tuple[Sim, list[str]]:
    sim = Sim(seed, CFG, net, check_every_step=n <= 50)  # I1, I2, I4 (packets), I5 stay on at every size
    ns = bootstrap(sim, n, spacing_s=min(0.05, 5.0 / n))
    settle(sim, ns, 600.0)
    return sim, ns


def crash_and_join(seed: int, n: int) -> tuple[float, float]:
    sim, ns = cluster(seed, n, NET)
    rng = random.Random(seed)
    victim = rng.choice(ns)
    sim.crash(victim)
    up = n - 1
    t0 = sim.now
    if not sim.run_until(t0 + 600.0, stop=lambda: sim.count[victim][State.DEAD] == up):
        raise SystemExit(f"seed={seed}: crash not detected by all")
    dead_s = sim.now - t0
    newcomer = f"new{seed}"
    t1 = sim.now
    sim.start(newcomer, [rng.choice([x for x in ns if x != victim])])
    if not sim.run_until(t1 + 600.0, stop=lambda: sim.count[newcomer][State.ALIVE] == up):
        raise SystemExit(f"seed={seed}: join not known by all")
    return dead_s / CFG.probe_interval_s, (sim.now - t1) / CFG.probe_interval_s


def false_suspicions(seed: int, n: int, periods: int) -> tuple[float, int, int]:
    sim, _ = cluster(seed, n, NET)
    sim.net = NetConfig(drop=0.10, delay_min_s=0.001, delay_max_s=0.010)
    sim.stats.false_suspicions.clear()
    sim.stats.false_deaths.clear()
    sim.run_until(sim.now + periods * CFG.probe_interval_s)
    s = len(sim.stats.false_suspicions)
    return s / (n * periods), s, len(sim.stats.false_deaths)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5,50,500")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--loss-periods", type=int, default=200)
    a = ap.parse_args()
    print(f"machine: {platform.machine()} {platform.python_implementation()} {platform.python_version()}; "
          f"config: memberlist LAN defaults (probe {CFG.probe_interval_s} s, timeout {CFG.probe_timeout_s} s, "
          f"k={CFG.indirect_checks}, suspicion_mult={CFG.suspicion_mult}, max mult {CFG.suspicion_max_timeout_mult}, "
          f"gossip {CFG.gossip_nodes} nodes / {CFG.gossip_interval_s} s); 1 period = {CFG.probe_interval_s} s")
    for n in (int(x) for x in a.sizes.split(",")):
        wall = time.perf_counter()
        trials = a.trials
        runs = [crash_and_join(a.seed + i, n) for i in range(trials)]
        dead, join = [r[0] for r in runs], [r[1] for r in runs]
        lo = CFG.suspicion_min_s(n) / CFG.probe_interval_s
        print(f"n={n:4d}  (a) crash -> DEAD in all views: mean {statistics.mean(dead):5.1f} periods, "
              f"max {max(dead):5.1f} (suspicion floor {lo:.1f}, ceiling {lo * CFG.suspicion_max_timeout_mult:.1f})")
        print(f"        (b) join -> ALIVE in all views:  mean {statistics.mean(join):5.2f} periods, "
              f"max {max(join):5.2f}   [{trials} trial(s), {time.perf_counter() - wall:.0f} s wall]")
        wall = time.perf_counter()
        periods = a.loss_periods if n <= 50 else max(20, a.loss_periods // 2)  # 500 nodes: ~1 min
        rate, s, deaths = false_suspicions(a.seed, n, periods)
        print(f"        10% loss, {periods} periods: {rate:.4f} false suspicions per node per period "
              f"({s} suspicions of running nodes), {deaths} false deaths "
              f"[{time.perf_counter() - wall:.0f} s wall]")
    print(f"deterministic: the same --seed ({a.seed}) prints the same figures")


if __name__ == "__main__":
    main()
