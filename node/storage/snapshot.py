"""Snapshot files: one opaque blob standing for the whole state up to and including an lsn.

Written atomically (temp file in the same directory, fsync, read back, rename, fsync the directory), so a crash
leaves either the old set of snapshots or the new one, plus perhaps a `*.tmp` that nobody reads. Read through a
memory map: a snapshot of hundreds of MB is never copied whole into the heap. Never trusts a file it reads:
a snapshot whose header or checksum is wrong is skipped (and logged) in favour of the older one.

File `snap-<lsn:020d>.bin`: magic 8 bytes | lsn u64 | length u64 | crc32 u32 over (lsn, length, blob) | blob.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import structlog
import trio

log = structlog.get_logger("murmur.storage")

MAGIC = b"MURSNAP1"
HEADER = struct.Struct("<8sQQI")
SNAPSHOTS_KEPT = 2  # the older one is the fallback when the newest turns out unreadable; the WAL covers both
_NAME = re.compile(r"^snap-(\d{20})\.bin$")
_TMP_SUFFIX = ".tmp"


def snapshot_name(lsn: int) -> str:
    return f"snap-{lsn:020d}.bin"


def _crc(lsn: int, blob: bytes | memoryview) -> int:
    return zlib.crc32(blob, zlib.crc32(struct.pack("<QQ", lsn, len(blob))))


def encode_snapshot(lsn: int, blob: bytes) -> bytes:
    return HEADER.pack(MAGIC, lsn, len(blob), _crc(lsn, blob)) + blob


def decode_snapshot(data: bytes, expect_lsn: int) -> tuple[bytes | None, str | None]:
    """(blob, None) when data is a whole, intact snapshot of expect_lsn; else (None, reason)."""
    blob, why = decode_snapshot_view(memoryview(data), expect_lsn)
    return (bytes(blob) if blob is not None else None), why


def decode_snapshot_view(data: memoryview, expect_lsn: int) -> tuple[memoryview | None, str | None]:
    """decode_snapshot without copying: the blob is a view into `data`."""
    if len(data) < HEADER.size:
        return None, f"{len(data)} of {HEADER.size} header bytes"
    magic, lsn, length, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        return None, "bad magic"
    if lsn != expect_lsn:
        return None, f"header lsn {lsn} differs from the file name's {expect_lsn}"
    if length != len(data) - HEADER.size:
        return None, f"length {length} but {len(data) - HEADER.size} blob bytes present"
    blob = data[HEADER.size :]
    if _crc(lsn, blob) != crc:
        return None, "checksum mismatch"
    return blob, None


def list_snapshots(directory: Path) -> list[tuple[int, Path]]:
    """Snapshot files by lsn, oldest first (intact or not: only reading tells)."""
    found = []
    for p in directory.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def fsync_dir(directory: Path) -> None:
    # A rename or a new file is durable only once its directory entry is: fsync the directory itself.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot(directory: Path, lsn: int, blob: bytes) -> None:
    """Atomically store blob as the snapshot at lsn, then delete all but the newest SNAPSHOTS_KEPT.

    lsn must not be older than the newest snapshot present (the caller snapshots a state that only grows).
    Blocking: call it from a thread (`write_snapshot_async`).
    """
    write_snapshot_pieces(directory, lsn, [blob])


def write_snapshot_pieces(directory: Path, lsn: int, pieces: Sequence[bytes | bytearray | memoryview]) -> int:
    """write_snapshot of the blob that is the concatenation of `pieces`, without joining them (a snapshot is
    hundreds of MB: one pass computes the checksum, one writes). The written file is read back and checked
    before it replaces anything: the WAL before it is deleted once it exists. -> bytes written. Blocking.
    A failure removes the temporary file and raises OSError; nothing older is touched."""
    existing = list_snapshots(directory)
    assert not existing or lsn >= existing[-1][0], f"snapshot lsn {lsn} older than {existing[-1][0]}"
    length = sum(len(p) for p in pieces)
    crc = zlib.crc32(struct.pack("<QQ", lsn, length))
    for p in pieces:
        crc = zlib.crc32(p, crc)
    final = directory / snapshot_name(lsn)
    tmp = directory / (final.name + _TMP_SUFFIX)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for data in (HEADER.pack(MAGIC, lsn, length, crc), *pieces):
                view = memoryview(data).cast("B")
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        with open(tmp, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                blob, why = decode_snapshot_view(view, lsn)
                if blob is None:
                    raise OSError(f"snapshot {tmp.name} does not read back: {why}")
                blob.release()
            finally:
                view.release()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
    fsync_dir(directory)
    for _, old in list_snapshots(directory)[:-SNAPSHOTS_KEPT]:
        old.unlink(missing_ok=True)
    return HEADER.size + length


async def write_snapshot_async(directory: Path, lsn: int, blob: bytes) -> None:
    """write_snapshot in a worker thread, so the event loop keeps serving while the blob hits the disk."""
    await trio.to_thread.run_sync(write_snapshot, directory, lsn, blob)


def remove_temp_file(directory: Path, lsn: int) -> bool:
    """Delete the temp file of the snapshot at lsn, left by a writer that died before it could (logged).
    -> whether there was one. Never raises: a snapshot that failed must not fail its caller too."""
    tmp = directory / (snapshot_name(lsn) + _TMP_SUFFIX)
    try:
        tmp.unlink()
    except FileNotFoundError:
        return False
    except OSError as e:
        log.error("snapshot_temp_not_removed", file=str(tmp), error=str(e))
        return False
    log.warning("snapshot_temp_removed", file=str(tmp))
    return True


def remove_stale_temp_files(directory: Path) -> None:
    """A `*.tmp` is a snapshot whose writer died before the rename: never read, only deleted."""
    for p in directory.glob("snap-*.bin" + _TMP_SUFFIX):
        log.warning("snapshot_temp_removed", file=str(p))
        p.unlink(missing_ok=True)


class MappedSnapshot:
    """An intact snapshot file, memory-mapped: `blob` is a view of its body, valid until `close()` (the loader
    copies what it keeps; the pages are the page cache's, not the process's heap)."""

    def __init__(self, lsn: int, path: Path) -> None:
        self.lsn = lsn
        self.path = path
        with open(path, "rb") as f:  # the mapping keeps its own descriptor
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._view = memoryview(self._mm)
        blob, self.reason = decode_snapshot_view(self._view, lsn)
        self.blob: memoryview | None = blob

    def close(self) -> None:
        if self.blob is not None:
            self.blob.release()
            self.blob = None
        self._view.release()
        try:
            self._mm.close()
        except BufferError:  # a caller still holds a view: the mapping goes with the last reference
            pass


def open_newest_snapshot(directory: Path) -> tuple[MappedSnapshot | None, list[Path]]:
    """(the newest intact snapshot, mapped, or None; the unreadable snapshot files newer than it)."""
    bad: list[Path] = []
    for lsn, path in reversed(list_snapshots(directory)):
        try:
            snap = MappedSnapshot(lsn, path)
        except (OSError, ValueError) as e:  # ValueError: an empty file cannot be mapped
            log.warning("snapshot_skipped", file=str(path), reason=f"unreadable: {e}")
            bad.append(path)
            continue
        if snap.blob is not None:
            return snap, bad
        log.warning("snapshot_skipped", file=str(path), reason=snap.reason)
        snap.close()
        bad.append(path)
    return None, bad


def find_newest_snapshot(directory: Path) -> tuple[tuple[int, bytes] | None, list[Path]]:
    """(the newest intact (lsn, blob) or None, the unreadable snapshot files newer than it)."""
    bad: list[Path] = []
    for lsn, path in reversed(list_snapshots(directory)):
        blob: bytes | None
        reason: str | None
        try:
            data = path.read_bytes()
        except OSError as e:
            blob, reason = None, f"unreadable: {e}"
        else:
            blob, reason = decode_snapshot(data, lsn)
        if blob is not None:
            return (lsn, blob), bad
        log.warning("snapshot_skipped", file=str(path), reason=reason)
        bad.append(path)
    return None, bad


def load_newest_snapshot(directory: Path) -> tuple[int, bytes] | None:
    """The newest intact snapshot as (lsn, blob), skipping (and logging) damaged ones; None when there is none."""
    return find_newest_snapshot(directory)[0]
