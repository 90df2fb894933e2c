"""Recovery (newest intact snapshot + the WAL after it) and `Durable`, the storage facade the shard code uses.

Records and snapshots are opaque bytes: the caller encodes its operations and its state. Never acknowledges what
is not on disk per the fsync policy, and never refuses to start over damage: damaged tails are cut, damaged
snapshots set aside, each logged. With `load`, a snapshot whose checksum is right but which `load` cannot decode
counts as damaged too: it is set aside and the older one (plus the WAL after it) is used.

Usage:
    async with open_storage(node_dir / "shard", cfg.storage) as st:
        rec = st.take_recovered()        # Recovered(snapshot_lsn, snapshot_blob, records, last_lsn)
        state = decode(rec.snapshot_blob) if rec.snapshot_blob is not None else empty()
        for lsn, payload in rec.records: apply(state, payload)           # lsn > rec.snapshot_lsn, in order
        lsn = await st.append([encode(op)])   # returns once durable per cfg.fsync; apply op, then acknowledge
        await st.snapshot(lsn_applied, encode(state))   # the state covering every lsn <= lsn_applied

Why two snapshots and when the WAL shrinks: `snapshot` keeps the newest two and deletes only WAL segments wholly
covered by the OLDER one, so if the newest snapshot proves unreadable the older one plus the WAL still recover
everything. One `Durable` per node is cheapest: every instance has its own writer and fsyncs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import structlog
import trio

from node.config import StorageConfig
from node.storage.snapshot import (
    find_newest_snapshot,
    list_snapshots,
    remove_stale_temp_files,
    snapshot_name,
    write_snapshot_async,
)
from node.storage.wal import Wal, WalScan, WalStats, open_wal, scan_wal_dir

log = structlog.get_logger("murmur.storage")

_DAMAGED_SUFFIX = ".damaged"


class Recovered(msgspec.Struct, frozen=True):
    snapshot_lsn: int  # the lsn the snapshot covers up to; 0 without a snapshot
    snapshot_blob: bytes | None  # as given to `snapshot`; None when there is no intact snapshot
    records: list[tuple[int, bytes]]  # (lsn, payload) with lsn > snapshot_lsn, oldest first, to replay
    last_lsn: int  # the newest lsn covered (snapshot or WAL); new appends get lsns after it
    state: Any = None  # load(snapshot_blob), when open_storage was given `load` and there is a snapshot


def _set_aside(path: Path) -> None:
    # Out of the way, so a later snapshot's "keep the newest two" counts only intact ones; kept for a human.
    log.error("snapshot_set_aside", file=str(path))
    path.rename(path.with_name(path.name + _DAMAGED_SUFFIX))


def _recover(directory: Path, load: Callable[[bytes], Any] | None = None) -> tuple[Recovered, WalScan]:
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(directory)
    state: Any = None
    while True:
        newest, bad = find_newest_snapshot(directory)
        for path in bad:
            _set_aside(path)
        if newest is None or load is None:
            break
        try:
            state = load(newest[1])
            break
        except Exception as e:  # a valid checksum over bytes the caller cannot decode: as damaged as a bad one
            log.error("snapshot_undecodable", lsn=newest[0], error=f"{type(e).__name__}: {e}")
            _set_aside(directory / snapshot_name(newest[0]))
    snap_lsn, blob = newest if newest is not None else (0, None)
    found = scan_wal_dir(directory, after_lsn=snap_lsn)
    if found.records and found.records[0][0] != snap_lsn + 1:
        log.warning("wal_does_not_follow_snapshot", snapshot_lsn=snap_lsn, first_wal_lsn=found.records[0][0])
    rec = Recovered(snap_lsn, blob, found.records, max(snap_lsn, found.last_lsn), state)
    return rec, found


def recover(directory: Path | str, load: Callable[[bytes], Any] | None = None) -> Recovered:
    """The newest intact snapshot and the WAL records after it. Blocking; repairs damage it finds (see above)."""
    return _recover(Path(directory), load)[0]


class Durable:
    """The storage of one node (or shard): WAL appends and snapshots in one directory. Use `open_storage`."""

    def __init__(self, directory: Path, wal: Wal, recovered: Recovered) -> None:
        self.directory = directory
        self._wal = wal
        self._recovered: Recovered | None = recovered
        self._snapshot_lock = trio.Lock()

    def take_recovered(self) -> Recovered:
        """What was found at open; handed out once, so the replayed records need not stay in memory."""
        assert self._recovered is not None, "take_recovered() called twice"
        rec, self._recovered = self._recovered, None
        return rec

    @property
    def last_lsn(self) -> int:
        """The newest lsn handed out by `append` (or found at open)."""
        return self._wal.last_lsn

    @property
    def stats(self) -> WalStats:
        return self._wal.stats

    async def append(self, payloads: list[bytes]) -> int:
        """Log payloads as consecutive records; returns the last one's lsn once durable per the fsync policy.

        Raises StorageError (a 503 `unavailable`) when closed or the disk failed: nothing was acknowledged.
        """
        return await self._wal.append(payloads)

    async def snapshot(self, lsn: int, blob: bytes) -> int:
        """Store blob as the state covering every record <= lsn, then drop WAL no longer needed.

        lsn must be at most `last_lsn` and not older than the previous snapshot. Returns WAL segments deleted.
        """
        assert lsn <= self._wal.last_lsn, f"snapshot at lsn {lsn} past the newest record {self._wal.last_lsn}"
        async with self._snapshot_lock:
            await write_snapshot_async(self.directory, lsn, blob)
            kept = await trio.to_thread.run_sync(list_snapshots, self.directory)
            if len(kept) < 2:
                return 0  # the fallback for a bad first snapshot is the empty state: keep the whole WAL
            return await self._wal.truncate_before(kept[-2][0] + 1)


@asynccontextmanager
async def open_storage(
    directory: Path | str, cfg: StorageConfig, load: Callable[[bytes], Any] | None = None
) -> AsyncIterator[Durable]:
    """Recover the storage in directory (created if missing) and run its WAL until the block ends. With `load`,
    the snapshot is decoded during recovery (in the worker thread) into `Recovered.state`.

    Leaving the block lets queued appends finish, fsyncs (unless fsync="never") and closes; a later append raises.
    """
    path = Path(directory)
    rec, found = await trio.to_thread.run_sync(_recover, path, load)
    async with open_wal(path, cfg, found=found, floor_lsn=rec.snapshot_lsn) as wal:
        del found
        wal.replay = []  # the records travel in `Recovered`; one reference is enough
        durable = Durable(path, wal, rec)
        del rec
        yield durable
