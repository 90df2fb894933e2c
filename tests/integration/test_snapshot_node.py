"""Snapshots of a real node, as a user runs them: `POST /admin/snapshot` and `murmur snapshot` answer at once and
the node writes the snapshot in the background (CONTRACT §1, §2); the WAL it covers is deleted; kill -9 and a
restart bring back every acknowledged tweet (snapshot + WAL tail); a newest snapshot that rots on disk is set
aside and the node starts from the older one (logged), instead of refusing to start."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from node.storage.snapshot import list_snapshots
from node.storage.wal import list_segments
from tests.cluster.kit import bulk_load, corpus
from tests.support.procs import NodeProc, write_config

STORAGE = "[storage]\nsnapshot_interval_s = 0\nsnapshot_wal_records = 0\nwal_segment_bytes_max = 65536\n"


def _wait_snapshots(storage: Path, count: int, timeout_s: float = 60.0) -> list[tuple[int, Path]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snaps = list_snapshots(storage)
        if len(snaps) >= count and not list(storage.glob("*.tmp")):
            return snaps
        time.sleep(0.05)
    raise AssertionError(f"no snapshot #{count} in {storage} after {timeout_s} s: {list_snapshots(storage)}")


def _all_there(c: httpx.Client, ids: list[int]) -> None:
    for i in ids:
        assert c.get(f"/tweets/{i}").status_code == 200, i


def test_snapshot_on_request_then_kill_and_restart(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ["n1"], extra=STORAGE)
    storage = tmp_path / "data" / "n1" / "storage"
    bodies, _ = corpus(3000)
    node = NodeProc(cfg, "n1").start()
    try:
        with httpx.Client(base_url=node.url, timeout=30) as c:
            first = bulk_load(c, bodies[:2000])
            segments_before = len(list_segments(storage))
            r = c.post("/admin/snapshot")
            assert r.status_code == 202 and r.json()["status"] in ("started", "running"), r.text
            assert c.get("/health").status_code == 200  # answered while the child writes
            ((lsn1, _),) = _wait_snapshots(storage, 1)
            # the parent removes the WAL the snapshot covers once it has seen the child exit (polled): after the
            # snapshot file appears, not with it
            deadline = time.monotonic() + 10
            while len(list_segments(storage)) >= segments_before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(list_segments(storage)) < segments_before  # the WAL it covers is gone
            second = bulk_load(c, bodies[2000:2600])
            out = subprocess.run(
                [sys.executable, "-m", "node.cli.main", "snapshot", "--config", str(cfg), "--url", node.url],
                capture_output=True, text=True, timeout=60,
            )
            assert out.returncode == 0, out.stderr
            snaps = _wait_snapshots(storage, 2)
            assert snaps[-1][0] > lsn1
            tail = bulk_load(c, bodies[2600:])  # only in the WAL
        node.kill()
        node.start()
        with httpx.Client(base_url=node.url, timeout=30) as c:
            _all_there(c, first + second + tail)
            assert c.get("/health").json()["tweets"] == len(set(first + second + tail))
        node.kill()
        # the newest snapshot rots: set aside, the node starts from the older one and says so in its log
        newest = list_snapshots(storage)[-1][1]
        newest.write_bytes(newest.read_bytes()[:-10])
        node.start()
        with httpx.Client(base_url=node.url, timeout=30) as c:
            _all_there(c, first)
        assert list(storage.glob("*.damaged"))
        assert "snapshot_set_aside" in node.log_tail(400)
    finally:
        node.kill()
