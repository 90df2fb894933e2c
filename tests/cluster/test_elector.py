"""The election shell (node/cluster/elector.py) under MockClock with scripted peers: it carries out the core's
steps, stops waiting for promises once the core has decided, leaves no campaign behind when it is cancelled,
serialises campaigns of one partition, and answers a lost election with Unavailable."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from node.cluster.elector import Elector
from node.errors import Unavailable
from node.replication import election as el
from node.replication import messages as m
from node.transport.errors import PeerUnavailable


class Script:
    """Peers that answer PromiseReq after a delay (None: never), and a catch-up that takes `catch_up_s`."""

    def __init__(self, delays: dict[str, float | None], refuse: set[str] = frozenset(), catch_up_s: float = 0.1) -> None:
        self.delays, self.refuse, self.catch_up_s = delays, refuse, catch_up_s
        self.asked: list[tuple[str, int]] = []
        self.cancelled: list[str] = []
        self.caught_up: list[str] = []
        self.own: list[int] = []

    async def promise_here(self, pid: int, epoch: int) -> m.PromiseResp:
        self.own.append(epoch)
        return m.PromiseResp(True, epoch)

    async def call(self, node: str, req: Any) -> Any:
        assert isinstance(req, m.PromiseReq)
        self.asked.append((node, req.epoch))
        delay = self.delays[node]
        try:
            if delay is None:
                await trio.sleep_forever()
            await trio.sleep(delay)
        except trio.Cancelled:
            self.cancelled.append(node)
            raise
        if node in self.refuse:
            raise PeerUnavailable(f"{node} refused the connection")
        return m.PromiseResp(True, req.epoch)

    async def catch_up_from(self, node: str, pid: int) -> None:
        await trio.sleep(self.catch_up_s)
        self.caught_up.append(node)


def elector(s: Script) -> Elector:
    return Elector(el.ElectionCore("a", 2, 6), s.promise_here, s.call, lambda n: True, lambda pid: 0, s.catch_up_from)


def run(fn: Any) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def test_it_wins_with_the_first_promise_and_cancels_the_calls_still_out() -> None:
    s = Script({"b": 0.2, "c": None})

    async def main() -> None:
        e = elector(s)
        assert await e.ensure_elected(7, ("a", "b", "c")) == 1
        assert trio.current_time() == pytest.approx(0.3)  # b's promise, then b's catch-up; c never waited for
        assert s.cancelled == ["c"] and s.caught_up == ["b"] and e.core.elected == {7: 1}
        assert await e.ensure_elected(7, ("a", "b", "c")) == 1 and len(s.own) == 1  # held: no second campaign

    run(main)


def test_a_lost_election_is_unavailable_and_leaves_no_campaign() -> None:
    s = Script({"b": 0.1, "c": 0.1}, refuse={"b", "c"})

    async def main() -> None:
        e = elector(s)
        with pytest.raises(Unavailable, match="1 replicas answered the election, 2 needed"):
            await e.ensure_elected(7, ("a", "b", "c"))
        assert not e.core.campaigning(7) and e.core.elected == {}

    run(main)


def test_a_cancelled_campaign_is_abandoned() -> None:
    s = Script({"b": None, "c": None})

    known = {7: 0}

    async def main() -> None:
        e = Elector(el.ElectionCore("a", 2, 6), s.promise_here, s.call, lambda n: True, known.__getitem__,
                    s.catch_up_from)
        with trio.move_on_after(1.0):
            await e.ensure_elected(7, ("a", "b", "c"))
        assert not e.core.campaigning(7) and sorted(s.cancelled) == ["b", "c"]
        known[7] = 1  # its own promise of epoch 1 is durable here (what election.known_epoch reads)
        s.delays = {"b": 0.1, "c": 0.1}
        assert await e.ensure_elected(7, ("a", "b", "c")) == 2  # a new campaign, above that promise

    run(main)


def test_campaigns_of_one_partition_run_one_at_a_time() -> None:
    s = Script({"b": 0.5, "c": 0.5})

    async def main() -> None:
        e = elector(s)
        got: list[int] = []

        async def one() -> None:
            got.append(await e.ensure_elected(7, ("a", "b", "c")))

        async with trio.open_nursery() as n:
            for _ in range(3):
                n.start_soon(one)
        assert got == [1, 1, 1] and s.own == [1]

    run(main)


def test_peers_held_down_are_not_asked() -> None:
    s = Script({"b": 0.1, "c": 0.1})

    async def main() -> None:
        e = Elector(el.ElectionCore("a", 2, 6), s.promise_here, s.call, lambda n: n != "c", lambda pid: 0,
                    s.catch_up_from)
        assert await e.ensure_elected(7, ("a", "b", "c")) == 1
        assert [x for x, _ in s.asked] == ["b"]

    run(main)
