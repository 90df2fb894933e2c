"""Snapshot files: one opaque blob standing for the whole state up to and including an lsn.

Written atomically (temp file in the same directory, fsync, rename, fsync the directory), so a crash leaves either
the old set of snapshots or the new one, plus perhaps a `*.tmp` that nobody reads. Never trusts a file it reads:
a snapshot whose header or checksum is wrong is skipped (and logged) in favour of the older one.

File `snap-<lsn:020d>.bin`: magic 8 bytes | lsn u64 | length u64 | crc32 u32 over (lsn, length, blob) | blob.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
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
    if len(data) < HEADER.size:
        return None, f"{len(data)} of {HEADER.size} header bytes"
    magic, lsn, length, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        return None, "bad magic"
    if lsn != expect_lsn:
        return None, f"header lsn {lsn} differs from the file name's {expect_lsn}"
    if length != len(data) - HEADER.size:
        return None, f"length {length} but {len(data) - HEADER.size} blob bytes present"
    blob = memoryview(data)[HEADER.size :]
    if _crc(lsn, blob) != crc:
        return None, "checksum mismatch"
    return bytes(blob), None


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
    existing = list_snapshots(directory)
    assert not existing or lsn >= existing[-1][0], f"snapshot lsn {lsn} older than {existing[-1][0]}"
    final = directory / snapshot_name(lsn)
    tmp = directory / (final.name + _TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        data = memoryview(encode_snapshot(lsn, blob))
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(directory)
    for _, old in list_snapshots(directory)[:-SNAPSHOTS_KEPT]:
        old.unlink(missing_ok=True)


async def write_snapshot_async(directory: Path, lsn: int, blob: bytes) -> None:
    """write_snapshot in a worker thread, so the event loop keeps serving while the blob hits the disk."""
    await trio.to_thread.run_sync(write_snapshot, directory, lsn, blob)


def remove_stale_temp_files(directory: Path) -> None:
    """A `*.tmp` is a snapshot whose writer died before the rename: never read, only deleted."""
    for p in directory.glob("snap-*.bin" + _TMP_SUFFIX):
        log.warning("snapshot_temp_removed", file=str(p))
        p.unlink(missing_ok=True)


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
