"""The fan-out helper (node/cluster/fanout.py) over a fake call: answers of the nodes that answer, failures left
out and never raised, one batched request per node, and a quorum read that asks spares only for the keys still
short of R."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from node.cluster import fanout
from node.errors import Unavailable
from node.transport.errors import RpcTimeout


class Net:
    def __init__(self, down: frozenset[str] = frozenset(), hung: frozenset[str] = frozenset()) -> None:
        self.down, self.hung = down, hung
        self.asked: list[tuple[str, Any]] = []

    async def call(self, node: str, req: Any, timeout_s: float) -> Any:
        self.asked.append((node, req))
        try:
            with trio.fail_after(timeout_s):  # as the transport: a call past its timeout fails with RpcTimeout
                if node in self.hung:
                    await trio.sleep_forever()
                await trio.lowlevel.checkpoint()
        except trio.TooSlowError:
            raise RpcTimeout(f"{node} timed out") from None
        if node in self.down:
            raise Unavailable(f"{node} is down")
        return (node, req)


def test_gather_returns_the_answers_that_came_and_leaves_failures_out() -> None:
    async def main() -> dict[str, Any]:
        net = Net(down=frozenset("b"), hung=frozenset("c"))
        return await fanout.gather(net.call, {"a": 1, "b": 2, "c": 3}, 1.0)

    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == {"a": ("a", 1)}


def test_a_quorum_read_asks_r_replicas_per_key_in_one_request_per_node_then_spares_for_the_short_keys() -> None:
    reps = {"k1": ("a", "b", "c"), "k2": ("b", "c", "d"), "k3": ("a", "c", "d")}

    async def main() -> tuple[dict[str, list[tuple[str, Any, int]]], Net]:
        net = Net(down=frozenset("c"))
        got = await fanout.quorum_read(
            net.call, sorted(reps), reps.__getitem__, tuple, r=2, me="a", alive=None, timeout_s=1.0
        )
        return got, net

    got, net = trio.run(main)
    for k, row in got.items():
        assert len(row) == 2 and len({nd for nd, _resp, _pos in row}) == 2, (k, row)  # R distinct replicas
        assert all(nd in reps[k] and nd != "c" for nd, _resp, _pos in row)
        for nd, (to, keys), pos in row:
            assert to == nd and keys[pos] == k  # the key's place in that node's one request
    # first attempt: one request per node of the keys it was picked for; then one to the spare, for both short keys
    assert sorted(net.asked[:3]) == [("a", ("k1", "k3")), ("b", ("k1", "k2")), ("c", ("k2", "k3"))]
    assert net.asked[3:] == [("d", ("k2", "k3"))]


def test_a_quorum_read_short_of_r_says_so_by_fewer_entries() -> None:
    async def main() -> dict[str, list[tuple[str, Any, int]]]:
        net = Net(down=frozenset("bc"))
        return await fanout.quorum_read(
            net.call, ["k"], lambda _k: ("a", "b", "c"), tuple, r=2, me="a", alive=None, timeout_s=1.0
        )

    got = trio.run(main)
    assert [nd for nd, _resp, _pos in got["k"]] == ["a"]
