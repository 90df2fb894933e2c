"""The WAL's disk errors (node/storage/wal.py, node/storage/mode.py), with an injected failing write, fsync or
free-space reading: nothing that failed is acknowledged, the node turns read-only before the next caller changes
memory, the failed batch is written again (whole, at the same lsns, no torn bytes left) once the disk takes it,
and the mode clears by itself. The real full disk is tests/integration/test_disk_full.py."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from structlog.testing import capture_logs

from node.config import StorageConfig
from node.storage import wal as wal_mod
from node.storage.mode import ReadOnly, StorageError
from node.storage.wal import Wal, open_wal, scan_wal_dir


def _cfg(**kw: object) -> StorageConfig:
    base: dict[str, object] = {"fsync": "always", "wal_segment_bytes_max": 1 << 20, "free_bytes_min": 0}
    base.update(kw)
    return StorageConfig(**base)  # type: ignore[arg-type]


class Disk:
    """Stands in for wal._write_all: fails while `full` with ENOSPC, after writing `torn` bytes of the data (a
    write that got part of the way, as a filling disk does)."""

    def __init__(self, real: Callable[[int, bytes, bool], None]) -> None:
        self.real = real
        self.full = False
        self.torn = 0
        self.failures = 0

    def __call__(self, fd: int, data: bytes, sync: bool) -> None:
        if self.full:
            self.failures += 1
            if self.torn:
                os.write(fd, data[: self.torn])
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real(fd, data, sync)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    d = Disk(wal_mod._write_all)
    monkeypatch.setattr(wal_mod, "_write_all", d)
    monkeypatch.setattr(wal_mod, "RETRY_MIN_S", 0.01)  # the retry backoff, shortened for the test
    monkeypatch.setattr(wal_mod, "RETRY_MAX_S", 0.05)
    return d


async def _until(cond: Callable[[], bool]) -> None:
    with trio.fail_after(30):  # bounds a hang only; the retry comes after tens of ms
        while not cond():  # noqa: ASYNC110 (the mode is state, not an event)
            await trio.sleep(0.005)


@pytest.mark.parametrize("policy", ["always", "everysec", "never"])
def test_a_failed_write_is_refused_then_written_again_once_the_disk_takes_it(
    tmp_path: Path, disk: Disk, policy: str
) -> None:
    async def main() -> None:
        async with open_wal(tmp_path, _cfg(fsync=policy)) as wal:
            assert await wal.append([b"a"]) == 1
            disk.full, disk.torn = True, 5
            with pytest.raises(StorageError, match="No space left"):
                await wal.append([b"b", b"c"])  # not acknowledged
            assert wal.mode.read_only and "a WAL write failed" in (wal.mode.reason or "")
            with pytest.raises(ReadOnly):
                wal.check_writable()  # what a caller asks before changing memory
            with pytest.raises(ReadOnly):
                await wal.append([b"refused"])  # refused on entry: no lsn handed out
            assert wal.last_lsn == 3
            await _until(lambda: disk.failures >= 3)  # retried, with a backoff, while the disk is full
            assert wal.mode.read_only
            disk.full = False
            await _until(lambda: not wal.mode.read_only)  # the retry succeeded: writable by itself
            assert wal.mode.reason is None
            assert await wal.append([b"d"]) == 4  # gap-free lsns after the retried batch
            assert wal.stats.write_errors >= 3

    with capture_logs() as logs:
        trio.run(main)
    # The refused records landed after all (an unacknowledged write may land); the torn bytes are gone.
    assert scan_wal_dir(tmp_path).records == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]
    events = [e["event"] for e in logs]
    assert "wal_write_failed" in events and "wal_writable_again" in events
    assert "wal_tail_cut" not in events


def test_appends_that_joined_behind_a_failing_batch_fail_with_it_and_land_with_it(tmp_path: Path, disk: Disk) -> None:
    """Appenders that passed the read-only check before the failure (their callers changed memory already) get
    lsns behind the failed batch and an error, and are written with it: memory and log agree again."""
    results: dict[int, object] = {}

    async def main() -> None:
        async with open_wal(tmp_path, _cfg(group_commit_records_max=2)) as wal:
            disk.full = True

            async def one(i: int) -> None:
                try:
                    results[i] = await wal.append([f"r{i}a".encode(), f"r{i}b".encode()])
                except StorageError as e:
                    results[i] = e

            async with trio.open_nursery() as n:
                for i in range(4):  # batches hold 2 records: the later ones wait for space, then join
                    n.start_soon(one, i)
            assert all(isinstance(r, StorageError) for r in results.values()), results
            assert wal.last_lsn == 8
            disk.full = False
            await _until(lambda: not wal.mode.read_only)
            assert await wal.append([b"after"]) == 9

    with capture_logs():
        trio.run(main)
    recs = scan_wal_dir(tmp_path).records
    assert [lsn for lsn, _ in recs] == list(range(1, 10))
    assert {p for _, p in recs[:8]} == {f"r{i}{x}".encode() for i in range(4) for x in "ab"}


def test_a_batch_that_rolls_a_segment_is_retried_into_the_new_one(tmp_path: Path, disk: Disk) -> None:
    async def main() -> None:
        async with open_wal(tmp_path, _cfg(wal_segment_bytes_max=64)) as wal:
            await wal.append([bytes(80)])  # fills the first segment: the next batch rolls
            disk.full, disk.torn = True, 3
            with pytest.raises(StorageError):
                await wal.append([b"x"])
            disk.full = False
            await _until(lambda: not wal.mode.read_only)
            await wal.append([b"y"])
            assert [first for first, _ in wal.segments()] == [1, 2]

    with capture_logs() as logs:
        trio.run(main)
    assert scan_wal_dir(tmp_path).records == [(1, bytes(80)), (2, b"x"), (3, b"y")]
    assert "wal_tail_cut" not in [e["event"] for e in logs]


def test_closing_while_the_disk_is_full_ends_cleanly_and_the_log_reopens(tmp_path: Path, disk: Disk) -> None:
    async def main() -> None:
        async with open_wal(tmp_path, _cfg()) as wal:
            await wal.append([b"kept"])
            disk.full, disk.torn = True, 4
            with pytest.raises(StorageError):
                await wal.append([b"never acknowledged"])
        disk.full = False
        async with open_wal(tmp_path, _cfg()) as wal:
            assert wal.replay == [(1, b"kept")]
            assert not wal.mode.read_only
            assert await wal.append([b"next"]) == 2

    with capture_logs() as logs:
        trio.run(main)
    assert "wal_closed_unwritten" in [e["event"] for e in logs]


def test_an_everysec_fsync_error_turns_read_only_until_an_fsync_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = wal_mod._fsync_dup
    failing = [True]
    calls = [0]

    def fsync_dup(fd: int, directory: Path | None) -> None:
        calls[0] += 1
        if failing[0]:
            os.close(fd)
            raise OSError(errno.EIO, "Input/output error")
        real(fd, directory)

    monkeypatch.setattr(wal_mod, "_fsync_dup", fsync_dup)
    monkeypatch.setattr(wal_mod, "EVERYSEC_INTERVAL_S", 0.01)
    monkeypatch.setattr(wal_mod, "RETRY_MIN_S", 0.01)
    monkeypatch.setattr(wal_mod, "RETRY_MAX_S", 0.05)

    async def main() -> None:
        async with open_wal(tmp_path, _cfg(fsync="everysec")) as wal:
            assert await wal.append([b"a"]) == 1  # everysec: acknowledged before its fsync
            await _until(lambda: wal.mode.read_only)
            assert "fsync failed" in (wal.mode.reason or "")
            with pytest.raises(ReadOnly):
                await wal.append([b"refused"])
            await _until(lambda: calls[0] >= 3)  # tried again while it fails, and the node lives on
            assert wal.mode.read_only
            failing[0] = False
            await _until(lambda: not wal.mode.read_only)
            assert wal.stats.fsync_errors >= 3 and wal.stats.fsyncs >= 1
            assert await wal.append([b"b"]) == 2

    with capture_logs():
        trio.run(main)
    assert scan_wal_dir(tmp_path).records == [(1, b"a"), (2, b"b")]


def test_free_space_under_the_floor_turns_read_only_before_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = [10_000]
    monkeypatch.setattr(wal_mod, "_free_bytes", lambda d: free[0])
    monkeypatch.setattr(wal_mod, "FREE_SPACE_CHECK_S", 0.005)

    async def main() -> None:
        async with open_wal(tmp_path, _cfg(free_bytes_min=1000)) as wal:
            await _until(lambda: wal.free_bytes == 10_000)
            assert await wal.append([b"a"]) == 1
            free[0] = 999
            await _until(lambda: wal.mode.read_only)
            assert "free_bytes_min" in (wal.mode.reason or "")
            with pytest.raises(ReadOnly):
                await wal.append([b"refused"])
            free[0] = 1100  # above the floor but under 1.25 x: still read-only (no flapping at the edge)
            await _until(lambda: wal.free_bytes == 1100)
            await trio.sleep(0.05)
            assert wal.mode.read_only
            free[0] = 1250
            await _until(lambda: not wal.mode.read_only)
            assert await wal.append([b"b"]) == 2

    with capture_logs() as logs:
        trio.run(main)
    events = [e["event"] for e in logs]
    assert events.count("storage_free_space_low") == 1 and "storage_free_space_ok" in events


def test_the_mode_is_the_one_given(tmp_path: Path) -> None:
    """open_wal reports into the caller's StorageMode (the node shares one between its WAL and its service)."""
    from node.storage.mode import StorageMode

    mode = StorageMode("n1")

    async def main() -> None:
        async with open_wal(tmp_path, _cfg(), mode=mode) as wal:
            assert isinstance(wal, Wal) and wal.mode is mode
            mode.on_fault("other", "some other source", 0.0)
            with pytest.raises(ReadOnly, match="n1 cannot persist"):
                await wal.append([b"x"])
            mode.on_clear("other", 0.0)
            assert await wal.append([b"x"]) == 1

    trio.run(main)
