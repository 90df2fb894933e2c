"""Snapshot files (atomic write, keep two, skip damaged ones) and recovery through `open_storage`."""

from __future__ import annotations

from pathlib import Path

import trio
from structlog.testing import capture_logs

from node.config import StorageConfig
from node.storage.recovery import open_storage, recover
from node.storage.snapshot import (
    encode_snapshot,
    list_snapshots,
    load_newest_snapshot,
    remove_temp_file,
    snapshot_name,
    write_snapshot,
    write_snapshot_async,
)
from node.storage.wal import list_segments


def test_write_and_load(tmp_path: Path) -> None:
    assert load_newest_snapshot(tmp_path) is None
    write_snapshot(tmp_path, 5, b"five")
    write_snapshot(tmp_path, 9, b"nine")
    assert load_newest_snapshot(tmp_path) == (9, b"nine")
    trio.run(write_snapshot_async, tmp_path, 12, b"twelve")
    assert [lsn for lsn, _ in list_snapshots(tmp_path)] == [9, 12]  # only the newest two are kept
    assert not list(tmp_path.glob("*.tmp"))


def test_every_damaged_newest_falls_back_to_the_older(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 3, b"old state")
    newest = encode_snapshot(8, b"new state")
    path = tmp_path / snapshot_name(8)
    with capture_logs() as logs:
        for cut in range(len(newest)):
            path.write_bytes(newest[:cut])  # half-written
            assert load_newest_snapshot(tmp_path) == (3, b"old state"), cut
        for i in range(len(newest)):
            damaged = bytearray(newest)
            damaged[i] ^= 0x10
            path.write_bytes(bytes(damaged))
            assert load_newest_snapshot(tmp_path) == (3, b"old state"), i
    assert all(e["event"] == "snapshot_skipped" for e in logs) and logs
    path.write_bytes(newest)
    assert load_newest_snapshot(tmp_path) == (8, b"new state")


def test_file_name_and_header_must_agree(tmp_path: Path) -> None:
    (tmp_path / snapshot_name(4)).write_bytes(encode_snapshot(40, b"x"))
    with capture_logs():
        assert load_newest_snapshot(tmp_path) is None


def _cfg() -> StorageConfig:
    return StorageConfig(fsync="never", wal_segment_bytes_max=4096)


def test_storage_round_trip_and_wal_truncation(tmp_path: Path) -> None:
    async def first() -> None:
        async with open_storage(tmp_path, _cfg()) as st:
            rec = st.take_recovered()
            assert (rec.snapshot_lsn, rec.snapshot_blob, rec.records, rec.last_lsn) == (0, None, [], 0)
            for i in range(40):
                await st.append([bytes([i]) * 200])
            assert await st.snapshot(20, b"state@20") > 0  # the WAL it covers goes at once (issue 9)
            assert list_segments(tmp_path)[0][0] <= 21
            for i in range(40, 80):
                await st.append([bytes([i]) * 200])
            deleted = await st.snapshot(60, b"state@60")
            assert deleted > 0
            # Only what the newest snapshot (60) does not cover is still in the WAL.
            assert 21 < list_segments(tmp_path)[0][0] <= 61
            await st.append([b"tail"])

    trio.run(first)
    rec = recover(tmp_path)
    assert (rec.snapshot_lsn, rec.snapshot_blob, rec.last_lsn) == (60, b"state@60", 81)
    assert [lsn for lsn, _ in rec.records] == list(range(61, 82))
    assert rec.records[-1] == (81, b"tail")

    # The newest snapshot rots on disk after it was checked: recovery falls back to the older one and says
    # that the WAL no longer covers the gap (a last resort: snapshots are read back before the WAL goes).
    newest = tmp_path / snapshot_name(60)
    newest.write_bytes(newest.read_bytes()[:-1])
    with capture_logs() as logs:
        rec = recover(tmp_path)
    assert (rec.snapshot_lsn, rec.snapshot_blob, rec.last_lsn) == (20, b"state@20", 81)
    assert any(e["event"] == "wal_does_not_follow_snapshot" for e in logs)
    assert rec.records[-1] == (81, b"tail")
    assert list(tmp_path.glob("*.damaged")) == [tmp_path / (snapshot_name(60) + ".damaged")]


def test_leftover_temp_file_is_ignored_and_removed(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 2, b"two")
    (tmp_path / (snapshot_name(7) + ".tmp")).write_bytes(encode_snapshot(7, b"seven")[:10])
    with capture_logs():
        rec = recover(tmp_path)
    assert (rec.snapshot_lsn, rec.snapshot_blob) == (2, b"two")
    assert not list(tmp_path.glob("*.tmp"))


def test_snapshot_newer_than_the_wal(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 50, b"fifty")

    async def main() -> None:
        async with open_storage(tmp_path, _cfg()) as st:
            assert st.take_recovered().last_lsn == 50
            assert await st.append([b"next"]) == 51

    trio.run(main)
    rec = recover(tmp_path)
    assert rec.records == [(51, b"next")] and rec.snapshot_lsn == 50


def test_remove_temp_file_deletes_only_that_snapshots_temp_file(tmp_path: Path) -> None:
    """What the node does after a snapshot child died without cleaning up (killed): its own .tmp goes, logged;
    another lsn's file and the snapshots stay; nothing there is no error."""
    (tmp_path / (snapshot_name(7) + ".tmp")).write_bytes(b"half a snapshot")
    (tmp_path / (snapshot_name(9) + ".tmp")).write_bytes(b"another")
    (tmp_path / snapshot_name(7)).write_bytes(b"kept")
    with capture_logs() as logs:
        assert remove_temp_file(tmp_path, 7) is True
        assert remove_temp_file(tmp_path, 7) is False
    assert sorted(p.name for p in tmp_path.iterdir()) == [snapshot_name(7), snapshot_name(9) + ".tmp"]
    assert [e["event"] for e in logs] == ["snapshot_temp_removed"]
