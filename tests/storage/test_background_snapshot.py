"""Snapshots written by a forked child (node/storage/background.py), with real processes and real files: the
child writes the state as it was at the fork while the parent changes it; a child that fails reports why and
leaves nothing behind; a node killed with -9 in the middle of a background snapshot loses nothing (its child dies
with it, the previous snapshot and the whole WAL after it are still there)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from node.config import StorageConfig
from node.storage.background import SnapshotFailed, parts_pieces, snapshot_in_child
from node.storage.parts import read_parts
from node.storage.recovery import open_storage, recover
from node.storage.snapshot import list_snapshots


def _parts(state: list[bytes]) -> list[tuple[str, bytes]]:
    return [("state", msgspec.msgpack.encode(state))]


def test_the_child_writes_the_state_as_it_was_at_the_fork(tmp_path: Path) -> None:
    state = [b"a", b"b"]

    async def main() -> None:
        async with trio.open_nursery() as n:
            done: list[int] = []

            async def snap() -> None:
                done.append(await snapshot_in_child(tmp_path, 2, lambda: _parts(state)))

            n.start_soon(snap)
            await trio.testing.wait_all_tasks_blocked()  # snap() waits for its child: the fork is behind us
            state.append(b"after the fork")
        assert done and done[0] > 0

    trio.run(main)
    ((lsn, _path),) = list_snapshots(tmp_path)
    rec = recover(tmp_path)
    assert rec.snapshot_lsn == lsn == 2
    assert rec.snapshot_blob is not None
    got = msgspec.msgpack.decode(read_parts(rec.snapshot_blob)["state"], type=list[bytes])
    rec.close()
    assert got == [b"a", b"b"]


def test_a_failing_child_reports_why_and_leaves_nothing(tmp_path: Path) -> None:
    def boom() -> list[tuple[str, bytes]]:
        raise RuntimeError("no space left in the test")

    async def main() -> None:
        with pytest.raises(SnapshotFailed, match="no space left in the test"):
            await snapshot_in_child(tmp_path, 5, boom)

    trio.run(main)
    assert list(tmp_path.iterdir()) == []


def test_parts_pieces_are_the_parts_container() -> None:
    parts = [("a", b"xyz"), ("empty", b""), ("b", memoryview(b"0123"))]
    blob = b"".join(bytes(p) for p in parts_pieces(parts))
    got = read_parts(blob)
    assert {k: bytes(v) for k, v in got.items()} == {"a": b"xyz", "empty": b"", "b": b"0123"}


# A node process in miniature: storage with records acknowledged before and after a first snapshot, then a
# background snapshot whose child is slow (it sleeps before writing), so the test can kill the parent mid-way.
_PARENT = textwrap.dedent(
    """
    import os, sys, time, trio, msgspec
    from pathlib import Path
    from node.config import StorageConfig
    from node.storage.background import snapshot_in_child
    from node.storage.recovery import open_storage

    d = Path(sys.argv[1])

    def slow_parts():
        print("child", os.getpid(), flush=True)
        time.sleep(60)
        return [("state", b"never written")]

    async def main():
        async with open_storage(d, StorageConfig(wal_segment_bytes_max=4096)) as st:
            st.take_recovered().close()
            for i in range(50):
                await st.append([b"rec%d" % i])
            await st.snapshot(30, msgspec.msgpack.encode([b"rec%d" % i for i in range(30)]))
            for i in range(50, 80):
                await st.append([b"rec%d" % i])
            print("acked", st.last_lsn, flush=True)
            await snapshot_in_child(d, st.last_lsn, slow_parts)

    trio.run(main)
    """
)


def test_a_node_killed_during_a_background_snapshot_loses_nothing(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    data = tmp_path / "data"
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, str(script), str(data)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(repo)},
        text=True,
    )
    assert proc.stdout is not None
    child = acked = 0
    for line in proc.stdout:
        word, _, value = line.partition(" ")
        if word == "acked":
            acked = int(value)
        elif word == "child":
            child = int(value)
            break
    assert acked == 80 and child > 0
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the child dies with its parent (PR_SET_PDEATHSIG)
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the snapshot child outlived its parent")
    rec = recover(data)
    try:
        assert rec.snapshot_lsn == 30
        assert [lsn for lsn, _ in rec.records] == list(range(31, 81))  # every record acknowledged after it
        assert rec.records[-1][1] == b"rec79"
    finally:
        rec.close()

    async def reopen() -> None:  # and the storage opens and takes writes again
        async with open_storage(data, StorageConfig(wal_segment_bytes_max=4096)) as st:
            st.take_recovered().close()
            assert await st.append([b"more"]) == 81

    trio.run(reopen)
