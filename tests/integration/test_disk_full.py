"""A real node process on a small real file system (a tmpfs, mounted by this test) that fills up (CONTRACT §2
`/health`, §6): the node stays up, says `degraded` / `read_only` with the reason, keeps serving reads and
searches, answers writes 503 `unavailable`, fails its snapshots without leaving a temp file, and takes writes
again by itself once there is room (files deleted, or the file system grown); nothing acknowledged is lost.
Needs root (mount); the WAL's error paths one by one are tests/storage/test_wal_errors.py."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.storage.snapshot import list_snapshots
from tests.cluster.kit import bulk, bulk_load, corpus
from tests.support import tmpfs
from tests.support.procs import NodeProc, write_config

MIB = 1 << 20
WAIT_S = 30.0  # bounds a hang only: the WAL's retry comes within RETRY_MAX_S (5 s) of the room returning


REFUSED_ID = 9_000_000_001


def _bulk_in_thread(url: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=60) as c:
        return bulk(c, bodies)


def _storage(free_bytes_min: int) -> str:
    return (
        "[storage]\nsnapshot_interval_s = 0\nsnapshot_wal_records = 0\n"
        f"free_bytes_min = {free_bytes_min}\n"
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    why = tmpfs.unavailable()
    if why is not None:
        pytest.skip(why)
    with tmpfs.tmpfs(tmp_path / "data", 16 * MIB) as d:
        yield d


def _wait(what: str, cond: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


def _metric(c: httpx.Client, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", c.get("/metrics").text, re.M)
    assert m is not None, name
    return float(m.group(1))


def _health(c: httpx.Client) -> dict[str, Any]:
    r = c.get("/health")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_a_full_disk_makes_the_node_read_only_and_it_recovers_by_itself(tmp_path: Path, small_disk: Path) -> None:
    cfg = write_config(tmp_path, ["n1"], extra=_storage(0))  # no floor: the disk really fills
    storage = small_disk / "n1" / "storage"
    bodies, _ = corpus(600)
    node = NodeProc(cfg, "n1").start()
    try:
        with httpx.Client(base_url=node.url, timeout=60) as c:
            acked = bulk_load(c, bodies[:400])
            assert _health(c)["status"] == "ok"
            tmpfs.fill(small_disk / "filler")

            # One WAL batch that the disk cannot take: the node turns read-only at once; the coordinator keeps
            # retrying the write until its deadline (10 s), then answers 503. Meanwhile a single write is
            # refused before it changes anything (its id is never seen, not even later).
            with ThreadPoolExecutor(1) as pool:
                refused_bulk = pool.submit(_bulk_in_thread, node.url, bodies[400:450])
                h = _wait("read-only", lambda: (h := _health(c))["status"] == "degraded" and h)
                assert h["storage"] == "read_only" and "No space left on device" in h["reason"], h
                assert _metric(c, "murmur_storage_read_only") == 1
                r = c.post("/tweets", json={"text": "refused at once", "user": "u", "id": REFUSED_ID})
                assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
                out = refused_bulk.result()
            assert {it["status"] for it in out["items"]} == {503}, out["items"][:3]
            assert all(it["error"]["code"] == "unavailable" for it in out["items"])
            assert c.get(f"/tweets/{REFUSED_ID}").status_code == 404

            # reads and searches are served from memory
            assert c.get(f"/tweets/{acked[0]}").status_code == 200
            word = bodies[0]["text"].split()[0]
            s = c.get("/search", params={"q": word})
            assert s.status_code == 200 and s.json()["statuses"], s.text[:300]

            # a snapshot fails for lack of space: no temp file left, counted, and the node lives on
            assert c.post("/admin/snapshot").status_code == 202
            _wait("a failed snapshot", lambda: _metric(c, "murmur_snapshots_failed_total") >= 1)
            assert not list(storage.glob("*.tmp")), list(storage.iterdir())
            assert not list_snapshots(storage)
            assert node.alive() and _health(c)["storage"] == "read_only"

            (small_disk / "filler").unlink()  # room again: no restart, no operator call
            _wait("writable again", lambda: _health(c)["status"] == "ok")
            assert _metric(c, "murmur_storage_read_only") == 0
            r = c.post("/tweets", json={"text": "after the disk had room again", "user": "u"})
            assert r.status_code == 201, r.text
            acked.append(r.json()["id"])
            acked += bulk_load(c, bodies[450:])
            assert c.get(f"/tweets/{REFUSED_ID}").status_code == 404
            # the failed snapshot is retried by itself (after its backoff, 5 s) and now succeeds
            _wait("the snapshot retried", lambda: _metric(c, "murmur_snapshots_total") >= 1)
            assert list_snapshots(storage) and not list(storage.glob("*.tmp"))
        node.kill()
        node.start()  # kill -9 after all that: every acknowledged tweet is back
        with httpx.Client(base_url=node.url, timeout=60) as c:
            missing = [i for i in acked if c.get(f"/tweets/{i}").status_code != 200]
            assert not missing, missing[:5]
            # The refused batch had reached memory before its write failed: the WAL wrote it once there was
            # room, so memory and disk agree (an unacknowledged write may land, CONTRACT §2).
            late = [it for it in bulk(c, bodies[400:450])["items"] if it["status"] != 200]
            assert not late, late[:3]  # 200: each one is already stored, identical
            assert c.get(f"/tweets/{REFUSED_ID}").status_code == 404
            assert _health(c)["status"] == "ok"
            tmpfs.fill(small_disk / "filler")  # full again, and then
        # a graceful stop on a full disk: its snapshot fails, is logged, leaves nothing; the exit is clean
        assert node.stop() == 0
        assert re.search(r'"why": "graceful stop".*"event": "snapshot_failed"', node.log_tail(100))
        assert not list(storage.glob("*.tmp"))
        node.start()  # it starts on the full disk, and serves what it holds
        with httpx.Client(base_url=node.url, timeout=60) as c:
            assert c.get(f"/tweets/{acked[-1]}").status_code == 200
        logged = node.log_tail(5000)
        assert "snapshot_failed" in logged and "wal_writable_again" in logged
        assert re.search(r'"event": "snapshot".*"why": "retry"|"why": "retry".*"event": "snapshot"', logged)
    finally:
        node.kill()


def test_under_the_free_space_floor_the_node_is_read_only_until_the_disk_grows(
    tmp_path: Path, small_disk: Path
) -> None:
    cfg = write_config(tmp_path, ["n1"], extra=_storage(4 * MIB))
    bodies, _ = corpus(200)
    node = NodeProc(cfg, "n1").start()
    try:
        with httpx.Client(base_url=node.url, timeout=60) as c:
            acked = bulk_load(c, bodies[:100])
            tmpfs.fill(small_disk / "filler", leave_bytes=2 * MIB)  # not full: under the floor
            h = _wait("read-only under the floor", lambda: (h := _health(c))["status"] == "degraded" and h)
            assert h["storage"] == "read_only" and "free_bytes_min" in h["reason"], h
            assert _metric(c, "murmur_storage_free_bytes") < 4 * MIB
            assert c.get(f"/tweets/{acked[-1]}").status_code == 200
            tmpfs.grow(small_disk, 64 * MIB)  # the operator grows the volume
            _wait("writable again", lambda: _health(c)["status"] == "ok")
            assert len(bulk_load(c, bodies[100:])) == len(bodies[100:])
    finally:
        node.kill()
