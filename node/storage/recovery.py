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

When the WAL shrinks: a snapshot is read back and checked before it replaces anything, and then the WAL
segments it covers are deleted (a crash mid-snapshot leaves a `.tmp` nobody reads: the previous snapshot and the
whole WAL after it are still there). The previous snapshot file is kept as a last resort for a newest one that
rots on disk later (then the records between them are gone, and recovery logs it). One `Durable` per node is
cheapest: every instance has its own writer and fsyncs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
import trio

from node.config import StorageConfig
from node.storage.mode import StorageMode
from node.storage.snapshot import (
    MappedSnapshot,
    open_newest_snapshot,
    remove_stale_temp_files,
    write_snapshot_async,
)
from node.storage.wal import Wal, WalScan, WalStats, open_wal, scan_wal_dir

log = structlog.get_logger("murmur.storage")

_DAMAGED_SUFFIX = ".damaged"


class Recovered:
    """What opening found: the newest intact snapshot (memory-mapped: `close()` once it is loaded; already
    loaded into `state` when open_storage was given `load`) and the WAL records after it."""

    __slots__ = ("_snapshot", "last_lsn", "records", "snapshot_lsn", "state")

    def __init__(
        self, snapshot: MappedSnapshot | None, records: list[tuple[int, bytes]], last_lsn: int, state: Any = None
    ) -> None:
        self._snapshot = snapshot
        self.snapshot_lsn = snapshot.lsn if snapshot is not None else 0  # the lsn it covers up to; 0 without one
        self.records = records  # (lsn, payload) with lsn > snapshot_lsn, oldest first, to replay
        self.last_lsn = last_lsn  # the newest lsn covered (snapshot or WAL); new appends get lsns after it
        self.state = state  # load(snapshot_blob), when open_storage was given `load` and there is a snapshot

    @property
    def snapshot_blob(self) -> memoryview | None:
        """The snapshot as given to `snapshot` (a view into the file's mapping); None when there is none."""
        return self._snapshot.blob if self._snapshot is not None else None

    def close(self) -> None:
        """Unmap the snapshot (its blob is invalid afterwards)."""
        if self._snapshot is not None:
            self._snapshot.close()


def _set_aside(path: Path) -> None:
    # Out of the way, so a later snapshot's "keep the newest two" counts only intact ones; kept for a human.
    log.error("snapshot_set_aside", file=str(path))
    path.rename(path.with_name(path.name + _DAMAGED_SUFFIX))


def _recover(directory: Path, load: Callable[[memoryview], Any] | None = None) -> tuple[Recovered, WalScan]:
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(directory)
    state: Any = None
    while True:
        newest, bad = open_newest_snapshot(directory)
        for path in bad:
            _set_aside(path)
        if newest is None or load is None:
            break
        try:
            assert newest.blob is not None
            state = load(newest.blob)
            newest.close()  # loaded: the mapping is no longer needed
            break
        except Exception as e:  # a valid checksum over bytes the caller cannot decode: as damaged as a bad one
            log.error("snapshot_undecodable", lsn=newest.lsn, error=f"{type(e).__name__}: {e}")
            newest.close()
            _set_aside(newest.path)
    snap_lsn = newest.lsn if newest is not None else 0
    found = scan_wal_dir(directory, after_lsn=snap_lsn)
    if found.records and found.records[0][0] != snap_lsn + 1:
        log.warning("wal_does_not_follow_snapshot", snapshot_lsn=snap_lsn, first_wal_lsn=found.records[0][0])
    rec = Recovered(newest, found.records, max(snap_lsn, found.last_lsn), state)
    return rec, found


def recover(directory: Path | str, load: Callable[[memoryview], Any] | None = None) -> Recovered:
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

    @property
    def mode(self) -> StorageMode:
        """Whether this storage can persist now (read-only while the disk fails or is too full; see wal.py)."""
        return self._wal.mode

    @property
    def free_bytes(self) -> int | None:
        """Free bytes of its file system at the last check (made only with storage.free_bytes_min)."""
        return self._wal.free_bytes

    def check_writable(self) -> None:
        """Raise StorageError when an append would be refused now: ask before changing memory."""
        self._wal.check_writable()

    async def append(self, payloads: list[bytes]) -> int:
        """Log payloads as consecutive records; returns the last one's lsn once durable per the fsync policy.

        Raises StorageError (a 503 `unavailable`) when closed, read-only or the disk failed: nothing was
        acknowledged (see Wal.append for what still reaches the log).
        """
        return await self._wal.append(payloads)

    async def snapshot(self, lsn: int, blob: bytes) -> int:
        """Store blob as the state covering every record <= lsn, then drop WAL no longer needed.

        lsn must be at most `last_lsn` and not older than the previous snapshot. Returns WAL segments deleted.
        """
        assert lsn <= self._wal.last_lsn, f"snapshot at lsn {lsn} past the newest record {self._wal.last_lsn}"
        async with self._snapshot_lock:
            await write_snapshot_async(self.directory, lsn, blob)
            return await self.snapshot_written(lsn)

    async def snapshot_written(self, lsn: int) -> int:
        """A snapshot at `lsn` was written and read back intact (here or by a snapshot process): drop the WAL
        segments it covers. -> segments deleted."""
        assert lsn <= self._wal.last_lsn, f"snapshot at lsn {lsn} past the newest record {self._wal.last_lsn}"
        return await self._wal.truncate_before(lsn + 1)


@asynccontextmanager
async def open_storage(
    directory: Path | str,
    cfg: StorageConfig,
    load: Callable[[memoryview], Any] | None = None,
    mode: StorageMode | None = None,
) -> AsyncIterator[Durable]:
    """Recover the storage in directory (created if missing) and run its WAL until the block ends. With `load`,
    the snapshot is decoded during recovery (in the worker thread) into `Recovered.state`. `mode`: where the WAL
    reports that it cannot persist (default: its own, `Durable.mode`).

    Leaving the block lets queued appends finish, fsyncs (unless fsync="never") and closes; a later append raises.
    """
    path = Path(directory)
    rec, found = await trio.to_thread.run_sync(_recover, path, load)
    async with open_wal(path, cfg, found=found, floor_lsn=rec.snapshot_lsn, mode=mode) as wal:
        del found
        wal.replay = []  # the records travel in `Recovered`; one reference is enough
        durable = Durable(path, wal, rec)
        del rec
        yield durable
