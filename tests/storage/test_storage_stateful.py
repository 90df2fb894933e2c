"""WAL + snapshots + crashes against a plain list: every acknowledged record comes back, once, in order.

The model is the list of (lsn, payload) acknowledged so far. Crashes are torn writes of unacknowledged bytes
(a partial record, garbage or zeros at the tail, a half-made new segment), appends cancelled mid-flight (their
records may or may not survive, never twice, never out of order) and snapshots that died half-way.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import msgspec
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from structlog.testing import capture_logs

from node.config import StorageConfig
from node.storage.records import encode_record, scan
from node.storage.recovery import Durable, Recovered, open_storage, recover
from node.storage.snapshot import encode_snapshot, list_snapshots, snapshot_name
from node.storage.wal import list_segments, segment_name

State = list[tuple[int, bytes]]

BODIES = st.binary(max_size=300)
# How many records survive a cancelled append depends on thread timing; so that draws never depend on it
# (Hypothesis replays need identical draws), positions are drawn as fractions of whatever the range turns out to be.
FRACTION = st.integers(0, 10_000)
GROUPS = st.lists(st.lists(BODIES, min_size=1, max_size=4), min_size=1, max_size=6)


def _between(lo: int, hi: int, fraction: int) -> int:
    return lo + (hi - lo) * fraction // 10_000


def _read_only_wal(directory: Path) -> dict[int, bytes]:
    """The records in the segment files, without repairing anything (a writer may be mid-batch)."""
    out: dict[int, bytes] = {}
    for first, path in list_segments(directory):
        out.update(scan(path.read_bytes(), 0, expect_lsn=first)[0])
    return out


class StorageMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="murmur-storage-"))
        self.cfg = StorageConfig()
        self.acked: State = []  # the model: every record acknowledged (or seen recovered), by lsn
        self.maybe: set[bytes] = set()  # payloads of appends cancelled before their answer
        self.snapshot_lsn = 0
        self.next_id = 0
        self.pending_acked: State = []  # acknowledged after a cancelled append whose fate is still open
        self.logs = capture_logs()
        self.logs.__enter__()

    def teardown(self) -> None:
        self.logs.__exit__(None, None, None)
        shutil.rmtree(self.dir, ignore_errors=True)

    @initialize(
        policy=st.sampled_from(["always", "everysec", "never"]), seg=st.sampled_from([512, 2048, 1 << 20])
    )
    def setup(self, policy: str, seg: int) -> None:
        self.cfg = StorageConfig(fsync=policy, wal_segment_bytes_max=seg, group_commit_records_max=6)  # type: ignore[arg-type]

    def _payloads(self, bodies: list[bytes]) -> list[bytes]:
        # A unique prefix tells records apart, so "exactly once" and "nothing invented" can be checked.
        out = []
        for b in bodies:
            out.append(self.next_id.to_bytes(8, "big") + b)
            self.next_id += 1
        return out

    def _check(self, rec: Recovered) -> None:
        """Compare what recovery found with the model, then adopt it (cancelled appends are now settled)."""
        state: State = []
        if rec.snapshot_blob is not None:
            state = msgspec.msgpack.decode(rec.snapshot_blob, type=list[tuple[int, bytes]])
        full = state + rec.records
        assert [lsn for lsn, _ in full] == list(range(1, len(full) + 1)), "lsns not 1..n in order"
        assert rec.last_lsn == len(full)
        assert all(lsn > rec.snapshot_lsn for lsn, _ in rec.records)
        # Every acknowledged record is back at its lsn; what follows can only be a cancelled append's.
        assert full[: len(self.acked)] == self.acked, "an acknowledged record is missing or changed"
        extra = [p for _, p in full[len(self.acked) :]]
        assert all(p in self.maybe for p in extra), "recovery invented a record"
        assert len(set(extra)) == len(extra), "a record came back twice"
        self.acked = full
        self.maybe.clear()

    async def _appenders(self, st_: Durable, groups: list[list[bytes]]) -> None:
        done: list[tuple[int, list[bytes]]] = []

        async def one(payloads: list[bytes]) -> None:
            self.maybe.update(payloads)
            last = await st_.append(payloads)
            # Acknowledged means written: the records are in the files already, at their lsns.
            on_disk = _read_only_wal(self.dir)
            first = last - len(payloads) + 1
            assert [on_disk.get(first + i) for i in range(len(payloads))] == payloads, (
                "acknowledged unwritten"
            )
            done.append((last, payloads))

        try:
            async with trio.open_nursery() as nursery:
                for g in groups:
                    nursery.start_soon(one, g)
        finally:
            # Acknowledged groups, in lsn order; each holds consecutive lsns ending at `last`.
            for last, payloads in sorted(done):
                first = last - len(payloads) + 1
                if first == len(self.acked) + 1:
                    self.acked.extend((first + i, p) for i, p in enumerate(payloads))
                    self.maybe.difference_update(payloads)
                else:
                    # An earlier cancelled append may or may not have landed before it: settle at recovery.
                    self.pending_acked.extend((first + i, p) for i, p in enumerate(payloads))

    def _session_check(self, rec: Recovered) -> None:
        pending = self.pending_acked
        self._check(rec)
        have = dict(self.acked)
        assert all(have.get(lsn) == p for lsn, p in pending), "an acknowledged record is missing"
        self.pending_acked = []

    @rule(groups=GROUPS)
    def append(self, groups: list[list[bytes]]) -> None:
        batches = [self._payloads(g) for g in groups]

        async def main() -> None:
            async with open_storage(self.dir, self.cfg) as st_:
                self._session_check(st_.take_recovered())
                await self._appenders(st_, batches)

        self.pending_acked = []
        trio.run(main)
        assert not self.maybe and not self.pending_acked

    @rule(groups=GROUPS, checkpoints=st.integers(0, 30))
    def append_then_crash(self, groups: list[list[bytes]], checkpoints: int) -> None:
        batches = [self._payloads(g) for g in groups]

        async def main() -> None:
            with trio.CancelScope() as scope:
                async with open_storage(self.dir, self.cfg) as st_:
                    self._session_check(st_.take_recovered())
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._appenders, st_, batches)
                        for _ in range(checkpoints):
                            await trio.lowlevel.checkpoint()
                        scope.cancel()

        self.pending_acked = []
        trio.run(main)
        self._session_check(recover(self.dir))  # the restart

    @rule(where=FRACTION)
    def snapshot(self, where: int) -> None:
        lsn = _between(self.snapshot_lsn, len(self.acked), where)
        blob = msgspec.msgpack.encode(self.acked[:lsn])

        async def main() -> None:
            async with open_storage(self.dir, self.cfg) as st_:
                self._session_check(st_.take_recovered())
                await st_.snapshot(lsn, blob)

        trio.run(main)
        self.snapshot_lsn = lsn

    @rule(kind=st.sampled_from(["partial", "garbage", "zeros", "new_segment"]), data=st.data())
    def torn_write(self, kind: str, data: st.DataObject) -> None:
        """A crash while writing a record nobody acknowledged."""
        segs = list_segments(self.dir)
        nxt = len(self.acked) + 1
        record = encode_record(nxt, data.draw(BODIES, label="body"))
        if kind == "partial" or kind == "new_segment":
            tail = record[: data.draw(st.integers(1, len(record) - 1), label="cut")]
        elif kind == "garbage":
            tail = data.draw(st.binary(min_size=1, max_size=64), label="garbage")
        else:
            tail = bytes(data.draw(st.integers(1, 64), label="zeros"))
        if kind == "new_segment" or not segs:
            (self.dir / segment_name(nxt)).write_bytes(tail)  # died right after rolling to a new segment
        else:
            with open(segs[-1][1], "ab") as f:
                f.write(tail)
        self._session_check(recover(self.dir))

    @rule(kind=st.sampled_from(["temp", "half_written"]), where=FRACTION)
    def crash_during_snapshot(self, kind: str, where: int) -> None:
        lsn = len(self.acked)
        if lsn < self.snapshot_lsn or lsn == 0:
            return
        whole = encode_snapshot(lsn, msgspec.msgpack.encode(self.acked))
        part = whole[: _between(0, len(whole) - 1, where)]
        name = snapshot_name(lsn) + (".tmp" if kind == "temp" else "")
        if kind == "half_written" and (self.dir / name).exists():
            return  # overwriting a good snapshot with a bad one is disk rot, not a crash
        (self.dir / name).write_bytes(part)
        self._session_check(recover(self.dir))
        assert not list(self.dir.glob("*.tmp"))

    @invariant()
    def at_most_two_snapshots(self) -> None:
        assert len(list_snapshots(self.dir)) <= 2


StorageMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStorage = StorageMachine.TestCase
