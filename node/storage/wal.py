"""The write-ahead log: opaque records in segment files `wal-<first_lsn:020d>.log`, appended with group commit.

`append` returns only once its records are written to the OS and, per `StorageConfig.fsync`, on disk; it must
never acknowledge earlier. Opening never crashes on a damaged log: the torn or corrupt tail is cut (and logged),
segments after damage in the middle are set aside, so what replays is every record up to the first damage.

Group commit (like Redis appendfsync / Postgres commit_delay, minus the delay): appenders join the one open batch
(at most `group_commit_records_max` records; a fuller batch makes them wait, a single bigger call goes alone);
one writer task takes the whole batch, writes it with one write() and, with fsync="always", one fsync, then wakes
every appender of that batch. The write and fsync run in a worker thread so the event loop keeps serving.
With fsync="everysec" a syncer task fsyncs a dup of the active segment's descriptor once a second.

Disk errors (a full disk, EIO) never end the node and never acknowledge (node/storage/mode.py has the rules):
- A batch whose write or fsync fails answers its appenders StorageError and is kept: the node turns read-only
  (new appends are refused before their caller changes memory), and the writer retries that batch, and any
  appends that joined after it, with a backoff (RETRY_MIN_S .. RETRY_MAX_S): it first cuts the file back to
  the batch's start (a torn tail in the middle of the log would set everything after it aside at the next
  open), then writes and fsyncs the whole batch again at the same lsns. Once that succeeds the node is writable:
  lsns stay gap-free, and records that were refused but are already in memory reach the log after all (an
  unacknowledged write may land, CONTRACT §2). So the retry is the probe: it succeeds once there is room again.
- An fsync error in the everysec syncer turns the node read-only until an fsync succeeds (retried with the same
  backoff). What was written before it and already acknowledged is rewritten by no one: after a failed fsync
  Linux may drop those dirty pages, so under everysec a power cut after a disk error can lose more than 1 s.
- With `free_bytes_min`, a watcher checks the free space of the directory every FREE_SPACE_CHECK_S and turns
  the node read-only under it, before the disk is full (Elasticsearch's flood stage).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import structlog
import trio

from node.config import StorageConfig
from node.storage.mode import StorageError, StorageMode, free_space_fault
from node.storage.records import HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX, encode_records, scan
from node.storage.snapshot import fsync_dir
from node.transport.backoff import Backoff

log = structlog.get_logger("murmur.storage")

_NAME = re.compile(r"^wal-(\d{20})\.log$")
_DAMAGED_SUFFIX = ".damaged"  # segments after a mid-log corruption: kept for a human, never replayed
EVERYSEC_INTERVAL_S = 1.0
# Without an fsync, a small write() only copies into the page cache (microseconds), far less than the ~100 us a
# worker thread round trip costs; bigger batches still go to a thread so the loop never stalls on a long copy.
INLINE_WRITE_BYTES_MAX = 64 * 1024
RETRY_MIN_S = 0.5  # a failed batch (or fsync) is tried again after this, doubling ...
RETRY_MAX_S = 5.0  # ... up to this: the probe that ends read-only mode once the disk takes writes again
FREE_SPACE_CHECK_S = 1.0  # how often the free space is compared with free_bytes_min (when it is set)
SOURCE_WRITE = "wal_write"  # the StorageMode sources this file reports
SOURCE_FSYNC = "wal_fsync"
SOURCE_FREE_SPACE = "free_space"

__all__ = ["StorageError", "Wal", "WalClosed", "open_wal"]


class WalClosed(StorageError):
    pass


def segment_name(first_lsn: int) -> str:
    return f"wal-{first_lsn:020d}.log"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """WAL segment files by first lsn, oldest first."""
    found = []
    for p in directory.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


class WalScan(msgspec.Struct, frozen=True):
    """What opening found, after repairing the tail."""

    records: list[tuple[int, bytes]]  # (lsn, payload) with lsn > the after_lsn asked for, oldest first
    last_lsn: int  # newest record in the log; 0 when empty
    segments: list[tuple[int, str]]  # (first lsn, path), oldest first; the last one is appended to
    active_size: int  # bytes in the last segment
    active_empty: bool  # the last segment holds no record


class WalStats(msgspec.Struct):
    batches: int = 0  # group commits written
    records: int = 0
    bytes: int = 0
    fsyncs: int = 0
    batch_records_max: int = 0  # the largest group commit so far
    segments_created: int = 0
    write_errors: int = 0  # batch writes (or their fsync) that failed, retries included
    fsync_errors: int = 0  # background fsyncs (everysec) that failed


def _cut(path: Path, offset: int, reason: str, size: int) -> None:
    log.warning("wal_tail_cut", file=str(path), offset=offset, reason=reason, bytes_dropped=size - offset)
    with open(path, "r+b") as f:
        f.truncate(offset)
        os.fsync(f.fileno())


def scan_wal_dir(directory: Path, after_lsn: int = 0) -> WalScan:
    """Read every segment, cut a torn or corrupt tail, return the records after after_lsn. Blocking."""
    directory.mkdir(parents=True, exist_ok=True)
    segs = list_segments(directory)
    records: list[tuple[int, bytes]] = []
    kept: list[tuple[int, str]] = []
    last_lsn = 0
    active_size = 0
    active_empty = True
    for i, (first, path) in enumerate(segs):
        nxt = segs[i + 1][0] if i + 1 < len(segs) else None
        kept.append((first, str(path)))
        if nxt is not None and nxt <= after_lsn + 1:
            last_lsn = nxt - 1  # wholly covered by the snapshot: not replayed, soon deleted, so not even read
            continue
        buf = path.read_bytes()
        recs, end, problem = scan(buf, 0, expect_lsn=first)
        if problem is None and nxt is not None and recs and recs[-1][0] >= nxt:
            # The next segment starts inside this one: no writer does that, so trust neither past the overlap.
            n = next(k for k, (lsn, _) in enumerate(recs) if lsn >= nxt)
            problem = f"lsn {recs[n][0]} overlaps the next segment {segment_name(nxt)}"
            end = sum(len(p) for _, p in recs[:n]) + HEADER_BYTES * n
            recs = recs[:n]
        if problem is not None:
            _cut(path, end, problem, len(buf))
        records.extend(r for r in recs if r[0] > after_lsn)
        if recs:
            if last_lsn and recs[0][0] != last_lsn + 1 and recs[0][0] - 1 > after_lsn:
                # Lsns jump past a snapshot legitimately; a hole the snapshot does not cover lost records.
                log.error("wal_gap", after_lsn=last_lsn, next_lsn=recs[0][0], file=str(path))
            last_lsn = recs[-1][0]
        active_size, active_empty = end, not recs
        if problem is not None and nxt is not None:
            # Damage before the end of the log: what follows would replay with a hole, so set it aside.
            for _, later in segs[i + 1 :]:
                log.error("wal_segment_set_aside", file=str(later), reason=f"damage earlier in {path.name}")
                later.rename(later.with_name(later.name + _DAMAGED_SUFFIX))
            fsync_dir(directory)
            break
    return WalScan(records, last_lsn, kept, active_size, active_empty)


def _write_all(fd: int, data: bytes, sync: bool) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if sync:
        os.fsync(fd)


def _unlink_all(paths: list[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _open_new_segment(path: Path) -> int:
    # O_TRUNC: a file of this name can only be an empty leftover (its lsns were never written).
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)


def _roll_sync(old_fd: int, new_path: Path, policy: str) -> int:
    """Make the full segment durable and open the next one. The old descriptor stays open for the caller."""
    if policy != "never":
        os.fsync(old_fd)
    fd = _open_new_segment(new_path)
    if policy == "always":
        try:
            fsync_dir(new_path.parent)
        except BaseException:
            os.close(fd)  # the retry opens (and truncates) it again
            raise
    return fd


def _free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize  # what an unprivileged writer may still use: root's reserve is not counted


def _fsync_dup(fd: int, directory: Path | None) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if directory is not None:
        fsync_dir(directory)


class _Batch:
    """One group commit: the payloads of every append that joined it, and the event that acknowledges them."""

    __slots__ = ("done", "error", "first_lsn", "payloads")

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.first_lsn = 0
        self.done = trio.Event()
        self.error: BaseException | None = None


def _open_active(
    directory: Path, policy: str, found: WalScan, next_lsn: int
) -> tuple[int, int, list[tuple[int, Path]]]:
    """Open the segment the next append goes to: (descriptor, its size, all segments). Blocking."""
    segments = [(first, Path(p)) for first, p in found.segments]
    if segments:
        first, path = segments[-1]
        if (not found.active_empty and found.last_lsn + 1 == next_lsn) or (
            found.active_empty and first == next_lsn
        ):
            return os.open(path, os.O_WRONLY | os.O_APPEND), found.active_size, segments
        if found.active_empty:
            path.unlink()  # named for lsns that will now never be written
            segments.pop()
    path = directory / segment_name(next_lsn)
    fd = _open_new_segment(path)
    if policy != "never":
        fsync_dir(directory)
    return fd, 0, [*segments, (next_lsn, path)]


class Wal:
    """Use through `open_wal`. All methods run in the event loop thread; blocking I/O goes to worker threads."""

    def __init__(
        self,
        directory: Path,
        cfg: StorageConfig,
        found: WalScan,
        last_lsn: int,
        active: tuple[int, int, list[tuple[int, Path]]],
        mode: StorageMode | None = None,
    ) -> None:
        self.directory = directory
        self._cfg = cfg
        self._fd, self._size, self._segments = active
        self._last_lsn = last_lsn  # the newest lsn handed out
        self._written_lsn = last_lsn  # the newest lsn handed to the OS
        self.stats = WalStats()
        self.mode = mode if mode is not None else StorageMode()
        self.free_bytes: int | None = None  # at the last free-space check (only made with free_bytes_min)
        self._open = _Batch()
        self._work = trio.Event()
        self._space = trio.Event()
        self._closing = False
        self._closed_event = trio.Event()
        # A batch whose write failed, with every append that joined after it: written again (same lsns) until
        # it succeeds. While it is here the mode has a SOURCE_WRITE fault. Its records' appenders got an error.
        self._stuck: _Batch | None = None
        self._write_backoff = Backoff(RETRY_MIN_S, RETRY_MAX_S)
        self._sync_backoff = Backoff(RETRY_MIN_S, RETRY_MAX_S)
        self._dir_dirty = False
        self._data_dirty = False
        # Records after the after_lsn asked for; the owner clears it once replayed.
        self.replay = found.records

    @property
    def last_lsn(self) -> int:
        """The newest lsn handed out (its append may still be waiting for its group commit)."""
        return self._last_lsn

    @property
    def written_lsn(self) -> int:
        """The newest lsn written to the OS."""
        return self._written_lsn

    def segments(self) -> list[tuple[int, Path]]:
        return list(self._segments)

    def check_writable(self) -> None:
        """Raise StorageError when an append would be refused now (read-only, or closed). A caller that changes
        memory before it appends asks this first, with no await in between, so a refusal changed nothing."""
        self.mode.check()
        if self._closing:
            raise WalClosed(f"the WAL in {self.directory} is closed")

    async def append(self, payloads: list[bytes]) -> int:
        """Append records, return the lsn of the last. Returns once written and fsynced per policy.

        Raises StorageError (nothing acknowledged) when the WAL is closed, read-only, or the disk failed this
        batch; ValueError for a payload over RECORD_PAYLOAD_BYTES_MAX. Read-only is checked only on entry: once
        an append has got past it, its records get lsns and reach the log (a failed batch is retried) even when
        it is answered StorageError. Cancelling the wait does not unwrite: the records may survive.
        """
        for p in payloads:
            if len(p) > RECORD_PAYLOAD_BYTES_MAX:
                raise ValueError(f"WAL payload of {len(p)} bytes exceeds {RECORD_PAYLOAD_BYTES_MAX}")
        self.check_writable()
        if not payloads:
            return self._last_lsn
        while True:
            if self._closing:
                raise WalClosed(f"the WAL in {self.directory} is closed")
            batch = self._open
            if (
                not batch.payloads
                or len(batch.payloads) + len(payloads) <= self._cfg.group_commit_records_max
            ):
                break
            await self._space.wait()
        if not batch.payloads:
            batch.first_lsn = self._last_lsn + 1
        batch.payloads.extend(payloads)
        self._last_lsn += len(payloads)
        last = self._last_lsn
        self._work.set()
        await batch.done.wait()
        if batch.error is not None:
            raise StorageError(f"the WAL in {self.directory} could not write: {batch.error}") from batch.error
        return last

    async def truncate_before(self, lsn: int) -> int:
        """Delete the segments whose records all have lsns below lsn (never the active one). Returns how many."""
        victims = []
        while len(self._segments) >= 2 and self._segments[1][0] <= lsn:
            victims.append(self._segments.pop(0)[1])
        if victims:
            await trio.to_thread.run_sync(_unlink_all, victims)
        return len(victims)

    async def _writer(self) -> None:
        try:
            while True:
                if self._open.payloads:
                    batch, self._open = self._open, _Batch()
                    space, self._space = self._space, trio.Event()
                    space.set()
                    if self._stuck is not None:
                        # Joined while an earlier batch was failing: kept behind it (lsns follow on), not answered yes.
                        self._stuck.payloads.extend(batch.payloads)
                        batch.error = self._stuck.error
                    else:
                        # Shielded: a batch handed to a thread completes anyway, so let its appenders hear it did.
                        with trio.CancelScope(shield=True):
                            await self._try_batch(batch, retry=False)
                    batch.done.set()
                    await trio.lowlevel.checkpoint()
                    continue
                if self._stuck is not None:
                    if not self._closing:
                        self._work = trio.Event()
                        with trio.move_on_at(self._write_backoff.retry_at):
                            await self._work.wait()  # a new append to refuse, or closing: do not wait longer
                        if self._open.payloads or (
                            not self._closing and not self._write_backoff.may_attempt(trio.current_time())
                        ):
                            continue
                    with trio.CancelScope(shield=True):
                        await self._try_batch(self._stuck, retry=True)
                    if self._closing:
                        if self._stuck is not None:
                            log.error("wal_closed_unwritten", directory=str(self.directory),
                                      records=len(self._stuck.payloads), first_lsn=self._stuck.first_lsn)
                        break
                    continue
                if self._closing:
                    break
                self._work = trio.Event()
                await self._work.wait()
            if self._cfg.fsync != "never" and self._data_dirty and self._stuck is None:
                try:
                    await trio.to_thread.run_sync(_fsync_dup, os.dup(self._fd), self.directory)
                    self.stats.fsyncs += 1
                except OSError as e:
                    log.error("wal_close_fsync_failed", directory=str(self.directory), error=str(e))
        finally:
            self._closing = True
            self._closed_event.set()
            self._open.error = WalClosed("the WAL closed before this write")
            self._open.done.set()
            self._space.set()

    async def _try_batch(self, batch: _Batch, retry: bool) -> None:
        """Write one batch (a first try, or a retry of the stuck one); a disk error keeps it as the stuck batch
        and makes the node read-only, a success of the stuck one makes it writable again."""
        try:
            await self._write_batch(batch, retry)
        except OSError as e:
            self.stats.write_errors += 1
            now = trio.current_time()
            delay = self._write_backoff.on_failure(now, random.random())
            reason = f"a WAL write failed: {e.strerror or e}"
            if not retry:
                batch.error = e
                self._stuck = batch
            log_fn = log.error if self.mode.on_fault(SOURCE_WRITE, reason, now) or not retry else log.warning
            log_fn("wal_write_failed", directory=str(self.directory), error=str(e), first_lsn=batch.first_lsn,
                   records=len(batch.payloads), retry=retry, retry_in_s=round(delay, 3))
            return
        if retry:
            self._stuck = None
            self._write_backoff.on_success()
            self.mode.on_clear(SOURCE_WRITE, trio.current_time())
            log.warning("wal_writable_again", directory=str(self.directory), records=len(batch.payloads),
                        first_lsn=batch.first_lsn, read_only=self.mode.reason)

    async def _write_batch(self, batch: _Batch, retry: bool = False) -> None:
        data = encode_records(batch.first_lsn, batch.payloads)
        policy = self._cfg.fsync
        if retry:
            # What the failed try left after the batch's start goes first, or rolling would leave it mid-log.
            await trio.to_thread.run_sync(os.ftruncate, self._fd, self._size)
        if self._size >= self._cfg.wal_segment_bytes_max:
            await self._roll(batch.first_lsn, policy)
        sync = policy == "always"
        if sync or retry or len(data) > INLINE_WRITE_BYTES_MAX:
            await trio.to_thread.run_sync(_write_all, self._fd, data, sync)
        else:
            _write_all(self._fd, data, False)
        self._size += len(data)
        self._written_lsn = batch.first_lsn + len(batch.payloads) - 1
        self._data_dirty = not sync
        self.stats.batches += 1
        self.stats.records += len(batch.payloads)
        self.stats.batch_records_max = max(self.stats.batch_records_max, len(batch.payloads))
        self.stats.bytes += len(data)
        self.stats.fsyncs += sync

    async def _roll(self, first_lsn: int, policy: str) -> None:
        path = self.directory / segment_name(first_lsn)
        fd = await trio.to_thread.run_sync(_roll_sync, self._fd, path, policy)
        # Swapped and closed here, in the loop thread: the syncer may dup() self._fd at any await.
        old, self._fd, self._size = self._fd, fd, 0
        os.close(old)
        self._segments.append((first_lsn, path))
        self.stats.segments_created += 1
        self._dir_dirty = self._dir_dirty or policy == "everysec"

    async def _syncer(self) -> None:
        wait_s = EVERYSEC_INTERVAL_S
        while not self._closing:
            with trio.move_on_after(wait_s):
                await self._closed_event.wait()
            if self._closing:
                return  # the writer's last act is a full fsync
            wait_s = EVERYSEC_INTERVAL_S
            if self._data_dirty or self._dir_dirty:
                # A dup keeps the descriptor valid even if the writer rolls to a new segment meanwhile.
                sync_dir = self.directory if self._dir_dirty else None
                self._data_dirty = self._dir_dirty = False
                try:
                    await trio.to_thread.run_sync(_fsync_dup, os.dup(self._fd), sync_dir)
                except OSError as e:
                    self._data_dirty = True  # tried again, until one succeeds
                    self._dir_dirty = self._dir_dirty or sync_dir is not None
                    self.stats.fsync_errors += 1
                    now = trio.current_time()
                    wait_s = max(wait_s, self._sync_backoff.on_failure(now, random.random()))
                    self.mode.on_fault(SOURCE_FSYNC, f"a WAL fsync failed: {e.strerror or e}", now)
                    log.error("wal_fsync_failed", directory=str(self.directory), error=str(e),
                              retry_in_s=round(wait_s, 3))
                    continue
                self.stats.fsyncs += 1
                if self._sync_backoff.failures:
                    self._sync_backoff.on_success()
                    self.mode.on_clear(SOURCE_FSYNC, trio.current_time())
                    log.warning("wal_fsync_ok_again", directory=str(self.directory), read_only=self.mode.reason)

    async def _watch_free_space(self) -> None:
        """With free_bytes_min: read-only under the floor, before a write finds the disk full."""
        floor = self._cfg.free_bytes_min
        while not self._closing:
            try:
                free = await trio.to_thread.run_sync(_free_bytes, self.directory)
            except OSError as e:
                log.warning("wal_free_space_unknown", directory=str(self.directory), error=str(e))
            else:
                self.free_bytes = free
                now = trio.current_time()
                had = SOURCE_FREE_SPACE in self.mode.faults
                why = free_space_fault(free, floor, had)
                if why is None and had:
                    self.mode.on_clear(SOURCE_FREE_SPACE, now)
                    log.warning("storage_free_space_ok", directory=str(self.directory), free_bytes=free,
                                read_only=self.mode.reason)
                elif why is not None:
                    if not had:
                        log.error("storage_free_space_low", directory=str(self.directory), free_bytes=free,
                                  free_bytes_min=floor)
                    self.mode.on_fault(SOURCE_FREE_SPACE, why, now)
            with trio.move_on_after(FREE_SPACE_CHECK_S):
                await self._closed_event.wait()

    def _begin_close(self) -> None:
        self._closing = True
        self._work.set()
        self._space.set()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@asynccontextmanager
async def open_wal(
    directory: Path | str,
    cfg: StorageConfig,
    *,
    after_lsn: int = 0,
    found: WalScan | None = None,
    floor_lsn: int = 0,
    mode: StorageMode | None = None,
) -> AsyncIterator[Wal]:
    """Open (repairing the tail) and run the WAL in `directory`; records after after_lsn are in `wal.replay`.

    `found` is a scan already made (by recovery); floor_lsn is the newest lsn a snapshot covers, so new records
    are numbered after it. `mode` is where it reports that it cannot persist (default: its own, `wal.mode`).
    Leaving the block drains queued appends, fsyncs (unless fsync="never") and closes.
    """
    directory = Path(directory)
    if found is None:
        found = await trio.to_thread.run_sync(scan_wal_dir, directory, after_lsn)
    # A snapshot newer than the log (its tail lost to a power cut under fsync="never") moves lsns past it.
    last_lsn = max(found.last_lsn, floor_lsn)
    active = await trio.to_thread.run_sync(_open_active, directory, cfg.fsync, found, last_lsn + 1)
    wal = Wal(directory, cfg, found, last_lsn, active, mode)
    del found  # the replay list is wal.replay's now; do not pin it here for the WAL's lifetime
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wal._writer)
            if cfg.fsync == "everysec":
                nursery.start_soon(wal._syncer)
            if cfg.free_bytes_min > 0:
                nursery.start_soon(wal._watch_free_space)
            try:
                yield wal
            except BaseException as e:
                # Re-raised below, outside the nursery, so callers see their own exception, not a group.
                body_error = e
            finally:
                wal._begin_close()
    finally:
        wal._release()
    if body_error is not None:
        raise body_error
