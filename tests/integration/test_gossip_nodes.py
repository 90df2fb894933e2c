"""Gossip liveness between real node processes: three nodes on loopback with fast [membership] timings. A kill -9'd
node is reported "dead" by the other two in GET /cluster, "alive" again once restarted, and a SIGTERM'd node "left"
(it leaves gracefully) - never anything else on the way (no "left" for a crash, no "dead" for a graceful stop).
How fast is printed, not asserted: detection times are the membership simulation's to bound (tests/sim,
scripts/sim_membership.py, in virtual time), and the README's real-process figures come from these prints."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.support.procs import NodeProc, running_nodes, write_config

FAST = """
[membership]
probe_interval_s = 0.2
probe_timeout_s = 0.1
gossip_interval_s = 0.05
"""
# with these timings on 3 nodes: probed within ~2 periods (0.4 s), then dead after the suspicion minimum
# suspicion_mult * probe_interval_s = 0.8 s: about 1-1.5 s. The waits below only bound a hang.
DEAD_WITHIN_S = 60.0
ALIVE_WITHIN_S = 60.0  # includes the restart of a process


def states(url: str) -> dict[str, str]:
    try:
        body = httpx.get(url + "/cluster", timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return {mb["name"]: mb["state"] for mb in body["members"]}


def wait_for(nodes: list[NodeProc], member: str, state: str, within_s: float, never: frozenset[str] = frozenset()
             ) -> float:
    """Seconds until every node in `nodes` reports `member` in `state`; none may report a state of `never` meanwhile."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within_s:
        seen = [states(nd.url).get(member) for nd in nodes]
        assert not never.intersection(s for s in seen if s), (member, state, seen)
        if all(s == state for s in seen):
            return time.monotonic() - t0
        time.sleep(0.05)
    seen = {nd.name: states(nd.url).get(member) for nd in nodes}
    raise AssertionError(f"{member} not {state} within {within_s} s: {seen}\n" + "\n".join(nd.log_tail(15) for nd in nodes))


def test_kill_9_is_seen_dead_then_alive_after_restart_and_sigterm_is_seen_left(tmp_path: Path) -> None:
    names = ["n1", "n2", "n3"]
    config = write_config(tmp_path, names, extra=FAST)
    with running_nodes(config, names) as nodes:
        n1, n2, n3 = nodes
        for name in names:
            wait_for(nodes, name, "alive", ALIVE_WITHIN_S)

        n3.kill()
        took = wait_for([n1, n2], "n3", "dead", DEAD_WITHIN_S, never=frozenset({"left"}))
        print(f"\nkill -9'd node reported dead by both others after {took:.2f} s")
        assert states(n1.url)["n1"] == "alive" and states(n1.url)["n2"] == "alive"

        n3.start()
        back = wait_for(nodes, "n3", "alive", ALIVE_WITHIN_S)
        print(f"restarted node reported alive by all after {back:.2f} s (from /health ok)")
        for name in ("n1", "n2"):
            wait_for([n3], name, "alive", ALIVE_WITHIN_S)

        assert n2.stop() == 0
        took = wait_for([n1, n3], "n2", "left", DEAD_WITHIN_S, never=frozenset({"dead"}))
        print(f"SIGTERM'd node reported left after {took:.2f} s")
