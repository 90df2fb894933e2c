"""Hinted handoff: the pure queue bookkeeping, the file store (order, bounds, crash recovery, torn tails, replay
progress, appends during replay, one replay per node), the replay loop, and a property test of op scripts
against a list model: every kept hint is delivered at least once, in order, and only a batch in flight twice."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from node.replication.hints import (
    COMPACT_BYTES_MIN,
    HintQueue,
    HintStore,
    decode_ack,
    encode_ack,
    hint_replay_loop,
    recover_queue,
)
from node.storage.records import HEADER_BYTES, encode_record, encode_records


class Boom(Exception):
    pass


def _p(n: int, tag: str = "r") -> list[bytes]:
    return [f"{tag}{i}".encode() for i in range(n)]


class Receiver:
    """A node that takes batches; raises Boom on the call numbers in `fail_on` (after keeping the batch when
    `deliver_failed`: the 'delivered, then we crashed before recording it' case)."""

    def __init__(self, fail_on: set[int] | None = None, deliver_failed: bool = False) -> None:
        self.batches: list[list[bytes]] = []
        self.calls = 0
        self.fail_on = fail_on or set()
        self.deliver_failed = deliver_failed

    @property
    def got(self) -> list[bytes]:
        return [p for b in self.batches for p in b]

    async def __call__(self, payloads: list[bytes]) -> None:
        self.calls += 1
        if self.calls in self.fail_on:
            if self.deliver_failed:
                self.batches.append(payloads)
            raise Boom(f"call {self.calls}")
        self.batches.append(payloads)


# ---- the pure core -------------------------------------------------------------------------------------------


def test_queue_admits_a_prefix_within_both_bounds() -> None:
    q = HintQueue(records_max=3, bytes_max=10_000)
    assert q.admit(_p(5)) == _p(3)
    assert q.dropped == 2
    q = HintQueue(records_max=100, bytes_max=2 * (HEADER_BYTES + 2))
    # The second does not fit by bytes; the third would, but only a prefix is kept.
    assert q.admit([b"aa", b"bbb", b"c"]) == [b"aa"]
    assert q.dropped == 2


def test_queue_batches_follow_lsns_and_offsets() -> None:
    q = HintQueue(100, 10_000)
    q.on_written(q.admit([b"a", b"bb", b"ccc"]))
    assert (q.pending, q.next_lsn, q.file_bytes) == (3, 4, 3 * HEADER_BYTES + 6)
    plan = q.next_batch(2)
    assert plan is not None
    assert (plan.offset, plan.length, plan.first_lsn, plan.count) == (0, 2 * HEADER_BYTES + 3, 1, 2)
    q.on_sent(plan)
    assert (q.pending, q.acked_lsn, q.head_offset, q.pending_bytes) == (
        1,
        2,
        2 * HEADER_BYTES + 3,
        HEADER_BYTES + 3,
    )
    assert q.head_offset + q.pending_bytes == q.file_bytes
    last = q.next_batch(256)
    assert last is not None and (last.first_lsn, last.count) == (3, 1)
    q.on_sent(last)
    assert q.next_batch(1) is None and q.replayed == 3
    q.on_emptied()
    assert q.file_bytes == 0 and q.next_lsn == 4


def test_recover_queue_skips_acked_hints_and_reports_the_torn_tail() -> None:
    buf = encode_records(5, [b"a", b"b", b"c"])
    q, end, problem = recover_queue(buf + b"\x01\x02", encode_ack(6), 10, 10_000)
    assert problem is not None and "torn" in problem and end == len(buf)
    assert (q.pending, q.acked_lsn, q.next_lsn, q.head_offset) == (1, 6, 8, 2 * (HEADER_BYTES + 1))
    # An ack older than the file (written before a compaction) and a damaged one: nothing in the file skipped.
    for ack in (encode_ack(2), b"junk", None):
        q, _, _ = recover_queue(buf, ack, 10, 10_000)
        assert (q.pending, q.acked_lsn) == (3, 4)
    q, _, _ = recover_queue(buf, encode_ack(7), 10, 10_000)
    assert q.pending == 0
    assert decode_ack(encode_ack(9)) == 9 and decode_ack(encode_record(9, b"x")) is None


# ---- the store -----------------------------------------------------------------------------------------------


def test_add_then_replay_in_order_in_batches(tmp_path: Path) -> None:
    async def main() -> None:
        store = await HintStore.open(tmp_path)
        assert await store.add("n2", _p(3, "a")) == 3
        assert await store.add("n2", _p(4, "b")) == 4
        assert await store.add("n3", _p(1, "c")) == 1
        assert store.pending("n2") == 7 and store.nodes_with_hints() == ["n2", "n3"]
        rx = Receiver()
        assert await store.replay("n2", rx, batch_max=3) == 7
        assert [len(b) for b in rx.batches] == [3, 3, 1]
        assert rx.got == _p(3, "a") + _p(4, "b")
        assert store.pending("n2") == 0 and store.nodes_with_hints() == ["n3"]
        assert store.stats()["replayed"] == {"n2": 7, "n3": 0}
        assert await store.replay("n2", rx) == 0 and await store.replay("nobody", rx) == 0

    trio.run(main)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n3.hints"]


def test_hints_older_than_the_ttl_are_dropped_not_replayed_also_after_a_restart(tmp_path: Path) -> None:
    """node/replication/collection.py rule 4: with a TTL, a queue that may hold a hint older than it is dropped
    whole (replayed or added to), its age surviving a restart in the .since file; an unknown age counts as old."""
    now = [0]

    async def main() -> None:
        def clock() -> int:
            return now[0]

        store = await HintStore.open(tmp_path, ttl_ms=1000, clock_ms=clock)
        await store.add("n2", _p(3, "a"))
        now[0] = 600
        await store.add("n2", _p(2, "b"))  # the queue's age is its oldest hint's: 0
        rx = Receiver()
        assert await store.replay("n2", rx) == 5 and rx.got == _p(3, "a") + _p(2, "b")
        await store.add("n2", _p(2, "c"))  # an empty queue starts again: its age is 600 now
        now[0] = 1500
        again = await HintStore.open(tmp_path, ttl_ms=1000, clock_ms=clock)  # a restart keeps the age
        rx2 = Receiver()
        assert await again.replay("n2", rx2) == 2 and rx2.got == _p(2, "c")
        await again.add("n2", _p(2, "d"))  # written at 1500
        now[0] = 2501
        with capture_logs() as logs:
            assert await again.replay("n2", Receiver()) == 0
        assert again.pending("n2") == 0 and again.stats()["dropped"]["n2"] == 2
        assert any(e["event"] == "hints_expired" for e in logs)
        await again.add("n3", _p(1, "e"))  # written at 2501
        now[0] = 3600
        assert await again.add("n3", _p(1, "f")) == 1  # the old one goes first: only the new one is pending
        rx3 = Receiver()
        assert await again.replay("n3", rx3) == 1 and rx3.got == _p(1, "f")
        await again.add("n4", _p(1, "g"))
        (tmp_path / "n4.since").unlink()  # an older node's files, without an age
        third = await HintStore.open(tmp_path, ttl_ms=1000, clock_ms=clock)
        assert third.pending("n4") == 1 and await third.replay("n4", Receiver()) == 0 and third.pending("n4") == 0
        without = await HintStore.open(tmp_path / "plain")  # no TTL: no age files, nothing ages out
        await without.add("n2", _p(1))
        assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["n2.hints"]

    trio.run(main)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == []


def test_concurrent_adds_to_one_node_all_land_intact(tmp_path: Path) -> None:
    async def main() -> None:
        store = await HintStore.open(tmp_path)

        async def writer(w: int) -> None:
            for i in range(5):
                assert await store.add("n2", [f"w{w}-{i}-{j}".encode() for j in range(3)]) == 3

        async with trio.open_nursery() as nursery:
            for w in range(8):
                nursery.start_soon(writer, w)
        rx = Receiver()
        assert await (await HintStore.open(tmp_path)).replay("n2", rx) == 120
        for w in range(8):
            mine = [p for p in rx.got if p.startswith(f"w{w}-".encode())]
            assert mine == [f"w{w}-{i}-{j}".encode() for i in range(5) for j in range(3)]

    trio.run(main)


def test_bounds_drop_the_excess_and_count_it(tmp_path: Path) -> None:
    async def main() -> None:
        store = await HintStore.open(tmp_path, max_records_per_node=5, max_bytes_per_node=10_000)
        assert await store.add("n2", _p(3)) == 3
        assert await store.add("n2", _p(4, "x")) == 2
        assert await store.add("n2", [b"y"]) == 0
        assert store.stats()["dropped"] == {"n2": 3} and store.pending("n2") == 5
        assert await store.add("n3", _p(5)) == 5  # the bounds are per node
        await store.replay("n2", Receiver())
        assert await store.add("n2", [b"z"]) == 1  # delivered hints free their room

        small = await HintStore.open(tmp_path / "small", max_records_per_node=100, max_bytes_per_node=99)
        assert await small.add("n2", [b"a" * 30, b"b" * 30, b"c"]) == 1
        assert await small.add("n2", [b"d" * 200]) == 0
        assert small.stats()["dropped"] == {"n2": 3}
        assert small.stats()["pending_bytes"] == {"n2": HEADER_BYTES + 30}

    trio.run(main)


def test_reopen_without_close_recovers_pending_and_replay_progress(tmp_path: Path) -> None:
    async def main() -> None:
        store = await HintStore.open(tmp_path)
        await store.add("n2", _p(10))
        assert await store.replay("n2", Receiver(fail_on={3}), batch_max=4) == 8
        await store.add("n2", [b"late"])
        # A crash: the old store is simply abandoned.
        again = await HintStore.open(tmp_path)
        assert again.pending("n2") == 3
        rx = Receiver()
        assert await again.replay("n2", rx) == 3
        assert rx.got == [b"r8", b"r9", b"late"]

    trio.run(main)
    assert list(tmp_path.iterdir()) == []


def test_a_torn_or_corrupt_tail_is_cut_and_appends_go_on(tmp_path: Path) -> None:
    async def main() -> None:
        store = await HintStore.open(tmp_path)
        await store.add("n2", _p(3))
        path = tmp_path / "n2.hints"
        good = path.stat().st_size
        path.write_bytes(path.read_bytes() + encode_record(4, b"half of me")[:15])  # a write torn by kill -9
        with capture_logs() as logs:
            again = await HintStore.open(tmp_path)
        assert [e["event"] for e in logs] == ["hint_tail_cut"]
        assert path.stat().st_size == good and again.pending("n2") == 3
        await again.add("n2", [b"after"])
        # Corrupt the second record: only the first survives the next open.
        data = bytearray(path.read_bytes())
        data[HEADER_BYTES + 2 + HEADER_BYTES] ^= 0xFF
        path.write_bytes(bytes(data))
        third = await HintStore.open(tmp_path)
        rx = Receiver()
        assert await third.replay("n2", rx) == 1 and rx.got == [b"r0"]

    trio.run(main)


def test_a_failed_send_keeps_the_rest_and_a_crash_resends_at_most_one_batch(tmp_path: Path) -> None:
    async def main() -> None:
        store = await HintStore.open(tmp_path)
        await store.add("n2", _p(20))
        # The third batch reaches the node, but we die before recording it (send raises after delivery).
        rx = Receiver(fail_on={3}, deliver_failed=True)
        assert await store.replay("n2", rx, batch_max=4) == 8
        assert store.pending("n2") == 12
        again = await HintStore.open(tmp_path)
        assert again.pending("n2") == 12
        assert await again.replay("n2", rx, batch_max=4) == 12
        assert rx.got == _p(12) + _p(20)[8:]  # r8..r11 twice: one batch, no more
        assert _p(20) == sorted(set(rx.got), key=rx.got.index)

    trio.run(main)


def test_a_damaged_ack_file_resends_everything(tmp_path: Path) -> None:
    async def main() -> None:
        store = await HintStore.open(tmp_path)
        await store.add("n2", _p(6))
        await store.replay("n2", Receiver(fail_on={2}), batch_max=2)
        (tmp_path / "n2.acked").write_bytes(b"garbage")
        with capture_logs() as logs:
            again = await HintStore.open(tmp_path)
        assert "hint_ack_damaged" in [e["event"] for e in logs]
        assert again.pending("n2") == 6

    trio.run(main)


def test_appends_during_replay_are_kept_and_sent(tmp_path: Path) -> None:
    async def main() -> None:
        store = await HintStore.open(tmp_path)
        await store.add("n2", _p(4))
        got: list[bytes] = []

        async def send(batch: list[bytes]) -> None:
            got.extend(batch)
            if len(got) <= 4:
                assert await store.add("n2", [f"new{len(got)}".encode()]) == 1

        assert await store.replay("n2", send, batch_max=2) == 6
        assert got == [*_p(4), b"new2", b"new4"]
        assert store.pending("n2") == 0

        # Appends during a replay that then fails are kept too.
        await store.add("n2", _p(3, "a"))

        async def failing(batch: list[bytes]) -> None:
            await store.add("n2", [b"during"])
            raise Boom

        assert await store.replay("n2", failing) == 0
        rx = Receiver()
        await (await HintStore.open(tmp_path)).replay("n2", rx)
        assert rx.got == [*_p(3, "a"), b"during"]

    trio.run(main)


def test_only_one_replay_per_node_at_a_time(tmp_path: Path) -> None:
    async def main() -> None:
        store = await HintStore.open(tmp_path)
        await store.add("n2", _p(3))
        await store.add("n3", _p(2))
        release = trio.Event()
        first: list[int] = []

        async def slow(batch: list[bytes]) -> None:
            await release.wait()

        async def run_first() -> None:
            first.append(await store.replay("n2", slow))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_first)
            await trio.testing.wait_all_tasks_blocked()
            assert await store.replay("n2", Receiver()) == 0
            assert await store.replay("n3", Receiver()) == 2  # other nodes are not held up
            release.set()
        assert first == [3] and store.pending("n2") == 0

    trio.run(main)


def test_a_cancelled_replay_keeps_the_batch_in_flight(tmp_path: Path) -> None:
    async def main() -> None:
        store = await HintStore.open(tmp_path)
        await store.add("n2", _p(5))
        seen: list[list[bytes]] = []
        with trio.CancelScope() as scope:

            async def send(batch: list[bytes]) -> None:
                seen.append(batch)
                scope.cancel()  # our caller gives up while the batch is on the wire
                await trio.sleep_forever()

            await store.replay("n2", send, batch_max=2)
        assert seen == [_p(2)] and store.pending("n2") == 5
        rx = Receiver()
        assert await store.replay("n2", rx) == 5 and rx.got == _p(5)

    trio.run(main)


def test_a_long_replay_compacts_the_file(tmp_path: Path) -> None:
    big = [bytes([i % 251]) * 16_000 for i in range(200)]  # 3.2 MB

    async def main() -> None:
        store = await HintStore.open(tmp_path)
        assert await store.add("n2", big) == 200
        path = tmp_path / "n2.hints"
        full = path.stat().st_size
        assert await store.replay("n2", Receiver(fail_on={15}), batch_max=10) == 140
        assert COMPACT_BYTES_MIN <= full - path.stat().st_size  # the delivered head was cut away
        assert path.stat().st_size <= full - COMPACT_BYTES_MIN
        rx = Receiver()
        assert await (await HintStore.open(tmp_path)).replay("n2", rx) == 60
        assert rx.got == big[140:]

    trio.run(main)


def test_a_disk_error_drops_and_counts_instead_of_raising(tmp_path: Path) -> None:
    async def main() -> None:
        store = await HintStore.open(tmp_path)
        (tmp_path / "n2.hints").mkdir()  # opening it for writing now fails
        with capture_logs() as logs:
            assert await store.add("n2", _p(2)) == 0
        assert [e["event"] for e in logs] == ["hint_write_failed"]
        assert store.stats()["dropped"] == {"n2": 2} and store.pending("n2") == 0

    trio.run(main)


def test_node_names_that_are_not_file_names_round_trip(tmp_path: Path) -> None:
    names = ["a/b", "..", "n 1%", "ü"]

    async def main() -> None:
        store = await HintStore.open(tmp_path)
        for n in names:
            await store.add(n, [n.encode()])
        again = await HintStore.open(tmp_path)
        assert again.nodes_with_hints() == sorted(names)
        for n in names:
            rx = Receiver()
            await again.replay(n, rx)
            assert rx.got == [n.encode()]

    trio.run(main)
    assert list(tmp_path.iterdir()) == []


def test_metrics_samples_name_each_node(tmp_path: Path) -> None:
    async def main() -> None:
        store = await HintStore.open(tmp_path, max_records_per_node=2)
        await store.add("n2", _p(3))
        samples = {(name, labels["node"]): v for name, _, labels, v in store.metrics_samples()}
        assert samples[("murmur_hints_pending", "n2")] == 2.0
        assert samples[("murmur_hints_dropped_total", "n2")] == 1.0

    trio.run(main)


# ---- the replay loop -----------------------------------------------------------------------------------------


# The mock clock jumps only after this much real idle time: the store's file I/O runs in worker threads, which
# trio cannot see, and a zero threshold let 1,000 mock seconds pass before a loaded machine finished one write.
IO_SETTLE_S = 0.05


async def _eventually(cond: Callable[[], bool], polls: int = 1000) -> None:
    """Poll once a (mock) second. Counted, not a deadline: the mock clock also jumps while a worker thread
    does file I/O, so a deadline could pass before the loop under test had a chance."""
    for _ in range(polls):
        if cond():
            return
        await trio.sleep(1)
    raise AssertionError("condition never held")


def test_replay_loop_replays_nodes_that_are_up_and_logs_failures(tmp_path: Path) -> None:
    up = {"n2"}
    got: dict[str, list[bytes]] = {"n2": [], "n3": []}
    failures = [1]

    async def send_to(node: str, batch: list[bytes]) -> None:
        if node == "n2" and failures:
            failures.pop()
            raise Boom("refused")
        got[node].extend(batch)

    async def main() -> None:
        store = await HintStore.open(tmp_path)
        await store.add("n2", _p(3))
        await store.add("n3", _p(2))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hint_replay_loop, store, up.__contains__, send_to, 5.0)
            await _eventually(lambda: store.pending("n2") == 0)
            assert trio.current_time() >= 5.0  # the first round failed; the second, an interval later, worked
            assert store.pending("n3") == 2 and got["n3"] == []
            up.add("n3")
            await _eventually(lambda: store.pending("n3") == 0)
            nursery.cancel_scope.cancel()
        assert got == {"n2": _p(3), "n3": _p(2)}

    with capture_logs() as logs:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=IO_SETTLE_S))
    assert "hint_replay_interrupted" in [e["event"] for e in logs]


def test_replay_loop_survives_a_broken_is_up_and_a_hung_send(tmp_path: Path) -> None:
    calls: list[str] = []
    checks = [0]

    async def hang(node: str, batch: list[bytes]) -> None:
        calls.append(node)
        await trio.sleep_forever()

    def flaky_is_up(node: str) -> bool:
        checks[0] += 1
        if checks[0] <= 2:
            raise RuntimeError("no membership yet")
        return True

    async def main() -> None:
        store = await HintStore.open(tmp_path)
        await store.add("n2", _p(1))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(hint_replay_loop, store, flaky_is_up, hang, 1.0, send_timeout_s=2.0))
            await _eventually(lambda: len(calls) >= 2)  # the first send timed out; the loop tried again
            nursery.cancel_scope.cancel()
        assert store.pending("n2") == 1

    with capture_logs() as logs:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=IO_SETTLE_S))
    events = [e["event"] for e in logs]
    assert events.count("hint_replay_failed") == 2 and "hint_replay_interrupted" in events


# ---- property: op scripts against a list model ---------------------------------------------------------------

NODES = ["a", "b/c"]
RECORDS_MAX = 8
BYTES_MAX = 250

ADD = st.tuples(st.just("add"), st.sampled_from(NODES), st.lists(st.integers(0, 20), max_size=6))
REPLAY = st.tuples(
    st.just("replay"),
    st.sampled_from(NODES),
    st.integers(1, 4),  # batch_max
    st.sampled_from([None, 1, 2, 3]),  # the send call that fails
    st.sampled_from(["raise", "deliver_then_raise", "cancel"]),
    st.lists(st.integers(0, 20), max_size=3),  # hints added from inside the first send
)
OPS = st.lists(st.one_of(ADD, REPLAY, st.just(("reopen",))), max_size=25)


class Model:
    """What must be pending: a list per node, with the store's bounds applied the dumb way."""

    def __init__(self) -> None:
        self.pending: dict[str, list[bytes]] = {n: [] for n in NODES}
        self.kept: dict[str, list[bytes]] = {n: [] for n in NODES}
        self.dropped: dict[str, int] = {}
        self.seq = 0

    def payloads(self, node: str, lengths: list[int]) -> list[bytes]:
        out = []
        for n in lengths:
            self.seq += 1
            out.append(f"{node}#{self.seq}:".encode() + b"x" * n)
        return out

    def add(self, node: str, payloads: list[bytes]) -> int:
        kept = 0
        for p in payloads:
            pend = [*self.pending[node], *payloads[:kept], p]
            if len(pend) > RECORDS_MAX or sum(HEADER_BYTES + len(x) for x in pend) > BYTES_MAX:
                break
            kept += 1
        self.pending[node] += payloads[:kept]
        self.kept[node] += payloads[:kept]
        if len(payloads) > kept:
            self.dropped[node] = self.dropped.get(node, 0) + len(payloads) - kept
        return kept


def _is_subsequence(small: list[bytes], big: list[bytes]) -> bool:
    it = iter(big)
    return all(x in it for x in small)


@given(OPS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_kept_hint_is_delivered_in_order_at_least_once(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    _run_script(ops)


def _run_script(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    model = Model()
    stream: dict[str, list[bytes]] = {n: [] for n in NODES}

    async def main(d: Path) -> None:
        store = await HintStore.open(d, RECORDS_MAX, BYTES_MAX)

        def check() -> None:
            for n in NODES:
                assert store.pending(n) == len(model.pending[n]), (n, store.pending(n), model.pending[n])
            assert store.nodes_with_hints() == sorted(n for n in NODES if model.pending[n])
            assert {n: v for n, v in store.stats()["dropped"].items() if v} == model.dropped

        async def replay(node: str, batch_max: int, fail_at: int | None, how: str, extra: list[int]) -> None:
            calls = 0
            scope = trio.CancelScope()
            ok = 0

            async def send(batch: list[bytes]) -> None:
                nonlocal calls, ok
                calls += 1
                # Exactly the oldest pending hints, as many as allowed.
                assert batch == model.pending[node][: len(batch)]
                assert len(batch) == min(batch_max, len(model.pending[node]))
                if calls == 1 and extra:
                    more = model.payloads(node, extra)
                    assert await store.add(node, more) == model.add(node, more)
                if calls == fail_at:
                    if how != "raise":
                        stream[node].extend(batch)
                    if how == "cancel":
                        scope.cancel()
                        await trio.sleep_forever()
                    raise Boom
                stream[node].extend(batch)
                del model.pending[node][: len(batch)]
                ok += len(batch)

            with scope:
                assert await store.replay(node, send, batch_max) == ok
            if fail_at is None or calls < fail_at:
                assert model.pending[node] == []

        for op in ops:
            if op[0] == "add":
                payloads = model.payloads(op[1], op[2])
                assert await store.add(op[1], payloads) == model.add(op[1], payloads)
            elif op[0] == "replay":
                await replay(*op[1:])
            else:
                store = await HintStore.open(d, RECORDS_MAX, BYTES_MAX)
                model.dropped = {}
            check()
        for n in NODES:
            await replay(n, 3, None, "raise", [])
        check()

    with tempfile.TemporaryDirectory() as tmp, capture_logs():
        trio.run(main, Path(tmp))
        assert list(Path(tmp).iterdir()) == []
    for n in NODES:
        assert _is_subsequence(model.kept[n], stream[n]), n
        assert set(stream[n]) == set(model.kept[n])


@pytest.mark.parametrize("batch_max", [1, 3])
def test_the_property_holds_for_a_known_tricky_script(batch_max: int) -> None:
    """A fixed script: fill to the bound, fail mid-replay after delivering, add during replay, reopen, drain."""
    ops = [
        ("add", "a", [20, 20, 20, 20, 20, 20]),
        ("replay", "a", batch_max, 2, "deliver_then_raise", [1, 1]),
        ("reopen",),
        ("add", "b/c", [0] * 9),
        ("replay", "b/c", batch_max, 1, "cancel", [0]),
        ("reopen",),
    ]
    _run_script(ops)
