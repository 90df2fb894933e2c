"""Issue 12, finding 10: a snapshot whose checksum is right but which the caller cannot decode is set aside at
recovery, like a damaged one; the older snapshot and the WAL after it recover everything."""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio

from node.config import StorageConfig
from node.shard import Shard
from node.storage.recovery import open_storage
from node.storage.snapshot import list_snapshots, snapshot_name

CFG = StorageConfig(fsync="never")


def load(blob: bytes) -> list[bytes]:
    out = msgspec.msgpack.decode(blob)
    if not isinstance(out, list):
        raise ValueError("not a list of records")
    return out


def test_an_undecodable_snapshot_falls_back_to_the_older_one(tmp_path: Path) -> None:
    async def write() -> None:
        async with open_storage(tmp_path, CFG) as st:
            await st.append([b"a", b"b"])
            await st.snapshot(2, msgspec.msgpack.encode([b"a", b"b"]))
            await st.append([b"c"])
            await st.snapshot(3, b"\xc1 a checksum over bytes nobody can decode")  # intact file, bad content
            await st.append([b"d"])

    async def reopen() -> tuple[object, list[tuple[int, bytes]], int]:
        async with open_storage(tmp_path, CFG, load=load) as st:
            rec = st.take_recovered()
            return rec.state, rec.records, rec.snapshot_lsn

    trio.run(write)
    state, records, lsn = trio.run(reopen)
    assert lsn == 2 and state == [b"a", b"b"]
    assert [p for _, p in records] == [b"c", b"d"]  # nothing is lost
    assert (tmp_path / (snapshot_name(3) + ".damaged")).exists()
    assert [n for n, _ in list_snapshots(tmp_path)] == [2]
    again = trio.run(reopen)  # the next start uses the same snapshot without complaint
    assert again[0] == [b"a", b"b"] and again[2] == 2


def test_the_node_loader_refuses_garbage_so_recovery_can_set_it_aside(tmp_path: Path) -> None:
    """The loader the node passes (Shard.load) raises on a blob that is not a shard, rather than returning junk."""
    import pytest

    for blob in (b"", b"\xc1", msgspec.msgpack.encode({"tweets": 5})):
        with pytest.raises(Exception):  # noqa: B017
            Shard.load(blob)
    assert len(Shard.load(Shard().dump()).tweets) == 0
