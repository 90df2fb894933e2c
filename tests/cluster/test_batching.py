"""The write batcher (node/cluster/batching.py) on trio's MockClock: writes to one master that arrive while a
call is in flight go together in the next call, each writer gets exactly its own results, a writer cancelled
before its ops went out sends nothing, a leader cancelled mid-call leaves its batch without an answer (not lost
in the queue) and the lead passes on."""

from __future__ import annotations

import trio
import trio.testing

from node.cluster.batching import WriteBatcher
from node.replication import messages as m


def op(i: int) -> m.WriteOp:
    return m.DeleteOp(i)


class Master:
    def __init__(self, delay_s: float = 0.1) -> None:
        self.calls: list[list[int]] = []
        self.delay_s = delay_s

    async def send(self, node: str, ops: list[m.WriteOp]) -> list[m.WriteResult] | None:
        self.calls.append([o.id for o in ops])
        await trio.sleep(self.delay_s)
        return [m.WriteResult("ok", message=f"{node}:{o.id}") for o in ops]


def test_concurrent_writes_share_calls_and_get_their_own_results() -> None:
    async def main() -> None:
        master = Master()
        b = WriteBatcher(master.send)
        got: dict[int, list[str]] = {}

        async def write(i: int) -> None:
            res = await b.submit("n1", [op(i), op(100 + i)])
            assert res is not None
            got[i] = [r.message or "" for r in res]

        async with trio.open_nursery() as n:
            for i in range(10):
                n.start_soon(write, i)
        assert got == {i: [f"n1:{i}", f"n1:{100 + i}"] for i in range(10)}
        assert len(master.calls) == 2  # the first writer alone, then the nine that came meanwhile
        assert sorted(x for c in master.calls for x in c) == sorted([*range(10), *range(100, 110)])

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_batches_are_bounded() -> None:
    async def main() -> None:
        master = Master()
        b = WriteBatcher(master.send, ops_max=3)
        async with trio.open_nursery() as n:
            for i in range(8):
                n.start_soon(b.submit, "n1", [op(i)])
        assert all(len(c) <= 3 for c in master.calls) and sum(map(len, master.calls)) == 8

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_writer_cancelled_in_the_queue_sends_nothing_and_the_lead_passes_on() -> None:
    async def main() -> None:
        master = Master(delay_s=1.0)
        b = WriteBatcher(master.send)
        out: dict[int, object] = {}

        async def write(i: int, patience_s: float) -> None:
            with trio.move_on_after(patience_s):
                out[i] = await b.submit("n1", [op(i)])

        async with trio.open_nursery() as n:
            n.start_soon(write, 1, 10.0)  # leads: its call takes 1 s
            await trio.sleep(0.1)
            n.start_soon(write, 2, 0.5)  # queued, gives up before the next call
            n.start_soon(write, 3, 10.0)  # queued, sent next
        assert master.calls == [[1], [3]]
        assert 2 not in out and out[3] is not None

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_leader_cancelled_mid_call_leaves_its_batch_unanswered_and_others_go_on() -> None:
    async def main() -> None:
        master = Master(delay_s=1.0)
        b = WriteBatcher(master.send)
        out: dict[int, object] = {}

        async def write(i: int, patience_s: float) -> None:
            with trio.move_on_after(patience_s):
                out[i] = await b.submit("n1", [op(i)])

        async with trio.open_nursery() as n:
            n.start_soon(write, 1, 0.3)  # leads, and is cancelled during its call
            await trio.sleep(0.1)
            n.start_soon(write, 2, 10.0)  # waits; takes the lead once the leader left
        assert 1 not in out  # its caller gave up: no answer (the write may or may not have landed)
        assert master.calls == [[1], [2]] and out[2] is not None

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_call_without_an_answer_fails_the_writers_waiting_for_that_master_at_once() -> None:
    """A paused master answers nothing: the writers queued behind the call that timed out must not each wait out
    another call to it; they get no answer at once (their ops unsent), and their coordinators move on."""

    class Silent:
        def __init__(self) -> None:
            self.calls: list[list[int]] = []

        async def send(self, node: str, ops: list[m.WriteOp]) -> list[m.WriteResult] | None:
            self.calls.append([o.id for o in ops])
            await trio.sleep(2.0)  # the call's timeout
            return None

    async def main() -> None:
        silent = Silent()
        b = WriteBatcher(silent.send)
        done_at: dict[int, float] = {}

        async def write(i: int) -> None:
            assert await b.submit("n3", [op(i)]) is None
            done_at[i] = trio.current_time()

        async with trio.open_nursery() as n:
            for i in range(6):
                n.start_soon(write, i)
                await trio.sleep(0.01)
        assert silent.calls == [[0]], "the writers queued behind the silent call were sent to it too"
        assert max(done_at.values()) <= 2.0 + 1e-9, done_at

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
