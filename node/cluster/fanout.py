"""Calling several nodes at once, in one place (the shell's part of a fan-out; what the answers mean is the
caller's):
- `gather`: one request per node, in parallel; -> the answers of the nodes that answered in time.
- `quorum_read`: R replicas of each key, batched one request per node; the keys short of R answers are asked
  once more of the replicas not asked yet. -> per key, the (node, response, position of the key in that node's
  request) of each replica that answered.
A call that fails (down, timed out, refused) is logged and left out: never raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import structlog
import trio

from node.errors import MurmurError
from node.replication.quorum import read_set

log = structlog.get_logger("murmur.fanout")

K = TypeVar("K", bound=Hashable)
Call = Callable[[str, Any, float], Awaitable[Any]]  # Peers.call(node, request, timeout_s)
READ_ATTEMPTS = 2  # a quorum read asks the first R replicas, then spares for the keys still short of R


async def gather(call: Call, calls: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
    """Send calls[node] to every node in parallel, each within timeout_s. -> node -> answer, for those that
    answered."""
    out: dict[str, Any] = {}

    async def one(node: str, req: Any) -> None:
        try:
            out[node] = await call(node, req, timeout_s)
        except MurmurError as e:
            log.info("call_failed", to=node, request=type(req).__name__, error=e.code)

    async with trio.open_nursery() as nursery:
        for node, req in calls.items():
            nursery.start_soon(one, node, req)
    return out


async def quorum_read(
    call: Call,
    keys: Sequence[K],
    replicas_of: Callable[[K], tuple[str, ...]],
    make: Callable[[list[K]], Any],
    *,
    r: int,
    me: str,
    alive: set[str] | None,
    timeout_s: float,
) -> dict[K, list[tuple[str, Any, int]]]:
    """Ask R replicas of each key (node.replication.quorum.read_set: this node first, then the live ones in
    preference order), one request `make(keys)` per node; retry the keys short of R on the replicas not asked
    yet. A key with fewer than R entries in the answer was short of R copies (the caller's `partial`)."""
    answers: dict[K, list[tuple[str, Any, int]]] = {k: [] for k in keys}
    asked: dict[K, set[str]] = {k: set() for k in keys}
    chosen: dict[tuple[str, ...], list[str]] = {}  # a few distinct replica lists per request: choose once each
    todo: dict[K, list[str]] = {}
    for k in keys:
        reps = replicas_of(k)
        pick = chosen.get(reps)
        if pick is None:
            pick = chosen[reps] = read_set(reps, r, me, alive)
        todo[k] = pick
    for _attempt in range(READ_ATTEMPTS):
        per_node: dict[str, list[K]] = {}
        for k, nodes in todo.items():
            for nd in nodes:
                per_node.setdefault(nd, []).append(k)
                asked[k].add(nd)
        got = await gather(call, {nd: make(ks) for nd, ks in per_node.items()}, timeout_s)
        for nd, ks in per_node.items():
            if nd in got:
                for pos, k in enumerate(ks):
                    answers[k].append((nd, got[nd], pos))
        todo = {}
        for k in keys:
            short = r - len(answers[k])
            if short > 0:
                spare = [nd for nd in replicas_of(k) if nd not in asked[k]][:short]
                if spare:
                    todo[k] = spare
        if not todo:
            break
    return answers
