"""Scripted and seeded-random fault scenarios for the membership simulator (tests/sim/harness.py), shared by the
tests and scripts/sim_membership.py. Each is a pure function of its seed: SIM_SEED=<seed> replays it exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from node.membership.config import MembershipConfig
from tests.sim.harness import NetConfig, Sim

# memberlist's LAN timings, but a 10 s push-pull so that partitions heal within a short run
TEST_CONFIG = MembershipConfig(push_pull_interval_s=10.0)
CLEAN = NetConfig(drop=0.0, delay_min_s=0.001, delay_max_s=0.010)
LOSSY = NetConfig(drop=0.05, delay_min_s=0.001, delay_max_s=0.030, reorder=0.1, reorder_extra_s=0.2)


def names(n: int) -> list[str]:
    return [f"n{i:03d}" for i in range(n)]


def bootstrap(sim: Sim, n: int, spacing_s: float = 0.05) -> list[str]:
    """n nodes started spacing_s apart, each joining through the first; runs until the last has started."""
    ns = names(n)
    for i, name in enumerate(ns):
        sim.at(i * spacing_s, _starter(sim, name, ns[:1] if i else []))
    sim.run_until((n - 1) * spacing_s)
    return ns


def _starter(sim: Sim, name: str, seeds: list[str]) -> Callable[[], None]:
    return lambda: sim.start(name, seeds)


def converge(sim: Sim, deadline: float) -> float:
    """Run until every view is right; the time it took, or SimFailure naming the seed and what is still wrong."""
    start = sim.now
    if not sim.run_until(deadline, stop=sim.converged):
        raise sim.fail(f"no convergence by t={deadline:.1f}: " + "; ".join(sim.convergence_errors()[:5]))
    return sim.now - start


def chaos(seed: int, n: int = 8, fault_s: float = 60.0, net: NetConfig = LOSSY) -> Sim:
    """Random crashes (most restarted later), two-sided partitions, and an occasional graceful leave, over a
    lossy reordering network until fault_s; then the network heals, convergence is required within the bound,
    and the views must stay right for 20 s more."""
    rng = random.Random(f"scenario/{seed}")
    sim = Sim(seed, TEST_CONFIG, net)
    ns = bootstrap(sim, n)
    partition_id = [0]

    def crash() -> None:
        up = sim.running()
        if len(up) <= 3:
            return
        victim = rng.choice(up)
        sim.crash(victim)
        back = sim.now + rng.uniform(3.0, 15.0)
        if rng.random() < 0.7 and back < fault_s:
            sim.at(back, lambda: sim.start(victim, rng.sample(sim.running(), 2)))

    def partition() -> None:
        shuffled = rng.sample(ns, len(ns))
        cut = rng.randint(1, len(ns) - 1)
        sim.partition([set(shuffled[:cut]), set(shuffled[cut:])])
        partition_id[0] += 1
        mine = partition_id[0]

        def heal_mine() -> None:
            if mine == partition_id[0]:  # not a later partition's
                sim.heal()

        sim.at(min(fault_s, sim.now + rng.uniform(3.0, 15.0)), heal_mine)

    def leave() -> None:
        up = sim.running()
        if len(up) <= 3:
            return
        who = rng.choice(up)
        sim.leave(who)
        sim.at(sim.now + 3.0, lambda: sim.crash(who))  # the shell stops once Left is gossiped

    t = 5.0
    while True:
        t += rng.uniform(2.0, 8.0)
        if t >= fault_s - 3.0:
            break
        sim.at(t, rng.choices([crash, partition, leave], weights=[5, 4, 1])[0])

    def healed() -> None:
        sim.heal()
        partition_id[0] += 1
        sim.net = CLEAN

    sim.at(fault_s, healed)
    sim.run_until(fault_s)
    converge(sim, fault_s + sim.convergence_bound_s())
    settled = sim.now
    sim.run_until(settled + 20.0)
    if not sim.converged():
        raise sim.fail("views changed after convergence: " + "; ".join(sim.convergence_errors()[:5]))
    sim.check_mirror()
    return sim
