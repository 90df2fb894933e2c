"""The WAL shell: appends and group commit, segment rolling, tail repair at open, truncation, closing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from structlog.testing import capture_logs

from node.config import StorageConfig
from node.storage.mode import ReadOnly
from node.storage.records import RECORD_PAYLOAD_BYTES_MAX, encode_record
from node.storage.wal import WalClosed, list_segments, open_wal, scan_wal_dir


def _cfg(**kw: object) -> StorageConfig:
    base: dict[str, object] = {"fsync": "never", "wal_segment_bytes_max": 1 << 20}
    base.update(kw)
    return StorageConfig(**base)  # type: ignore[arg-type]


def _all_records(d: Path) -> list[tuple[int, bytes]]:
    return scan_wal_dir(d).records


def test_append_then_reopen(tmp_path: Path) -> None:
    async def main() -> None:
        async with open_wal(tmp_path, _cfg()) as wal:
            assert wal.replay == []
            assert await wal.append([b"a", b"b"]) == 2
            assert await wal.append([b"c"]) == 3
            assert await wal.append([]) == 3
        async with open_wal(tmp_path, _cfg(), after_lsn=1) as wal:
            assert wal.replay == [(2, b"b"), (3, b"c")]
            assert await wal.append([b"d"]) == 4

    trio.run(main)
    assert _all_records(tmp_path) == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]


@pytest.mark.parametrize("policy", ["always", "everysec", "never"])
def test_group_commit_batches_concurrent_appenders(tmp_path: Path, policy: str) -> None:
    n = 200
    lsns: dict[int, int] = {}

    async def main() -> None:
        async with open_wal(tmp_path, _cfg(fsync=policy, group_commit_records_max=64)) as wal:

            async def one(i: int) -> None:
                lsns[i] = await wal.append([f"rec-{i}".encode()])

            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(one, i)
            assert wal.stats.records == n
            assert wal.stats.batches < n / 4, wal.stats
            if policy == "always":
                assert wal.stats.fsyncs == wal.stats.batches

    trio.run(main)
    assert sorted(lsns.values()) == list(range(1, n + 1))
    on_disk = dict(_all_records(tmp_path))
    assert all(on_disk[lsn] == f"rec-{i}".encode() for i, lsn in lsns.items())


def test_queue_is_bounded(tmp_path: Path) -> None:
    cap = 8

    async def main() -> None:
        async with open_wal(tmp_path, _cfg(group_commit_records_max=cap)) as wal:
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(wal.append, [b"x", b"y", b"z"])
            assert wal.stats.records == 50 * 3
            assert wal.stats.batch_records_max == cap - cap % 3  # whole appends only, never more than cap
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wal.append, [b"small"])
                nursery.start_soon(wal.append, [b"big"] * (cap * 3))  # bigger than a batch: goes alone
                nursery.start_soon(wal.append, [b"small"])
            assert wal.stats.batch_records_max == cap * 3
            assert wal.stats.records == 50 * 3 + cap * 3 + 2

    trio.run(main)


def test_segments_roll_and_truncate(tmp_path: Path) -> None:
    async def main() -> None:
        async with open_wal(tmp_path, _cfg(wal_segment_bytes_max=4096)) as wal:
            for i in range(100):
                await wal.append([bytes([i]) * 200])
            segs = wal.segments()
            assert len(segs) > 3
            assert [first for first, _ in segs] == sorted(first for first, _ in segs)
            # Truncating before the 3rd segment's first lsn deletes exactly the first two.
            assert await wal.truncate_before(segs[2][0]) == 2
            assert await wal.truncate_before(segs[2][0]) == 0
            assert await wal.truncate_before(10**9) == len(segs) - 3  # never the active segment
            assert len(wal.segments()) == 1
            last = await wal.append([b"after"])
            assert last == 101

    trio.run(main)
    found = scan_wal_dir(tmp_path)
    assert found.records[-1] == (101, b"after")
    assert found.last_lsn == 101


def test_torn_tail_is_cut_and_logged(tmp_path: Path) -> None:
    async def write() -> None:
        async with open_wal(tmp_path, _cfg()) as wal:
            await wal.append([b"one", b"two"])

    trio.run(write)
    ((_, seg),) = list_segments(tmp_path)
    good_size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(encode_record(3, b"three")[:-2])  # crash in the middle of writing record 3

    async def reopen() -> None:
        with capture_logs() as logs:
            async with open_wal(tmp_path, _cfg()) as wal:
                assert wal.replay == [(1, b"one"), (2, b"two")]
                assert await wal.append([b"new three"]) == 3
        cut = [e for e in logs if e["event"] == "wal_tail_cut"]
        assert len(cut) == 1 and cut[0]["offset"] == good_size and "torn" in cut[0]["reason"]

    trio.run(reopen)
    assert _all_records(tmp_path) == [(1, b"one"), (2, b"two"), (3, b"new three")]


def test_corruption_mid_log_sets_later_segments_aside(tmp_path: Path) -> None:
    async def write() -> None:
        async with open_wal(tmp_path, _cfg(wal_segment_bytes_max=4096)) as wal:
            for _ in range(60):
                await wal.append([bytes(200)])

    trio.run(write)
    segs = list_segments(tmp_path)
    assert len(segs) >= 3
    second = segs[1][1]
    data = bytearray(second.read_bytes())
    data[300] ^= 0xFF
    second.write_bytes(bytes(data))
    with capture_logs():
        found = scan_wal_dir(tmp_path)
    # A gap-free prefix survives: everything before the damaged record, nothing after it.
    lsns = [lsn for lsn, _ in found.records]
    assert lsns == list(range(1, len(lsns) + 1))
    assert segs[1][0] <= found.last_lsn < segs[2][0]
    assert [p for _, p in list_segments(tmp_path)] == [segs[0][1], second]
    assert len(list(tmp_path.glob("*.damaged"))) == len(segs) - 2


def test_append_after_close_raises(tmp_path: Path) -> None:
    async def main() -> None:
        async with open_wal(tmp_path, _cfg()) as wal:
            await wal.append([b"x"])
        with pytest.raises(WalClosed):
            await wal.append([b"y"])

    trio.run(main)


def test_close_drains_queued_appends(tmp_path: Path) -> None:
    results: list[int] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            async with open_wal(tmp_path, _cfg(fsync="always")) as wal:

                async def one() -> None:
                    results.append(await wal.append([b"q"]))

                for _ in range(10):
                    nursery.start_soon(one)
                while wal.last_lsn < 10:  # all queued; the block ends while (most) wait for their commit
                    await trio.lowlevel.checkpoint()

    trio.run(main)
    assert sorted(results) == list(range(1, 11))
    assert len(_all_records(tmp_path)) == 10


def test_body_exception_is_not_wrapped(tmp_path: Path) -> None:
    async def main() -> None:
        async with open_wal(tmp_path, _cfg()) as wal:
            await wal.append([b"x"])
            raise KeyError("mine")

    with pytest.raises(KeyError):
        trio.run(main)
    assert _all_records(tmp_path) == [(1, b"x")]


def test_floor_lsn_starts_a_new_segment_after_a_snapshot(tmp_path: Path) -> None:
    async def main() -> None:
        async with open_wal(tmp_path, _cfg()) as wal:
            await wal.append([b"a"])
        # A snapshot at lsn 5 survived but WAL records 2..5 did not (power cut under fsync="never").
        async with open_wal(tmp_path, _cfg(), floor_lsn=5) as wal:
            assert await wal.append([b"f"]) == 6

    trio.run(main)
    assert [first for first, _ in list_segments(tmp_path)] == [1, 6]
    assert _all_records(tmp_path) == [(1, b"a"), (6, b"f")]


def test_everysec_syncs_in_the_background(tmp_path: Path) -> None:
    """fsync=everysec: an append is acknowledged before any fsync, and the background syncer then makes it durable
    on its own (no other append), once. How soon is the syncer's period, not a figure this shared machine can hold
    to: the wait below only bounds a hang. (The syncer fsyncs in a thread, so trio's MockClock cannot drive it.)"""

    async def main() -> None:
        async with open_wal(tmp_path, _cfg(fsync="everysec")) as wal:
            await wal.append([b"x"])
            assert wal.stats.fsyncs == 0
            with trio.fail_after(30):
                while wal.stats.fsyncs == 0:  # noqa: ASYNC110 (a counter, not an event, is what is observed)
                    await trio.sleep(0.02)
            assert wal.stats.fsyncs == 1

    trio.run(main)


def test_disk_error_fails_appends_instead_of_acknowledging(tmp_path: Path) -> None:
    async def main() -> None:
        async with open_wal(tmp_path, _cfg()) as wal:
            await wal.append([b"ok"])
            os.close(wal._fd)  # the descriptor goes bad under the writer, like a dying disk
            wal._fd = os.open(os.devnull, os.O_RDONLY)  # writes now fail with EBADF
            with pytest.raises(Exception) as info:
                await wal.append([b"lost"])
            assert "could not write" in str(info.value)
            with pytest.raises(ReadOnly, match="a WAL write failed"):
                await wal.append([b"refused"])  # read-only until the failed batch is written (test_wal_errors.py)

    with capture_logs():
        trio.run(main)


def test_oversized_payload_is_refused_alone(tmp_path: Path) -> None:
    async def main() -> None:
        async with open_wal(tmp_path, _cfg()) as wal:
            with pytest.raises(ValueError):
                await wal.append([b"ok", bytes(RECORD_PAYLOAD_BYTES_MAX + 1)])
            assert await wal.append([b"next"]) == 1  # nothing of the refused call was logged

    trio.run(main)
