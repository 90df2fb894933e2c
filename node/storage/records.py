"""The WAL record format: how one opaque payload is framed on disk, and how a byte buffer is read back.

Pure: no files, no clock, no trio. It must never guess past damage: `scan` stops at the first record that is
short (torn write) or wrong (bad magic, length, checksum or lsn) and says where and why.

Layout of one record (little-endian), 20 header bytes then the payload:
    magic u32 | length u32 (payload bytes) | crc32 u32 over (lsn u64, length u32, payload) | lsn u64 | payload
Within one buffer (one segment file) the lsns are consecutive: a writer assigns them one by one, so a gap or a
repeat can only mean damage.
"""

from __future__ import annotations

import struct
import zlib

MAGIC = 0x4C41574D  # b"MWAL" read as little-endian u32
HEADER = struct.Struct("<IIIQ")  # magic, length, crc, lsn
HEADER_BYTES = HEADER.size
_CRC_PREFIX = struct.Struct("<QI")  # lsn, length: the checksum covers them so a flipped bit there is caught
# A corrupt length must not make a reader allocate gigabytes; a tweet shard operation is a few KiB at most.
RECORD_PAYLOAD_BYTES_MAX = 16 * 1024 * 1024
LSN_MAX = 2**64 - 1


def _crc(lsn: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(_CRC_PREFIX.pack(lsn, len(payload))))


def encode_record(lsn: int, payload: bytes) -> bytes:
    """The bytes of one record. Raises ValueError for a payload over RECORD_PAYLOAD_BYTES_MAX."""
    if len(payload) > RECORD_PAYLOAD_BYTES_MAX:
        raise ValueError(f"WAL payload of {len(payload)} bytes exceeds {RECORD_PAYLOAD_BYTES_MAX}")
    assert 1 <= lsn <= LSN_MAX, lsn
    return HEADER.pack(MAGIC, len(payload), _crc(lsn, payload), lsn) + payload


def encode_records(first_lsn: int, payloads: list[bytes]) -> bytes:
    """Consecutive records first_lsn, first_lsn + 1, ... joined: one write() for a whole group commit."""
    return b"".join(encode_record(first_lsn + i, p) for i, p in enumerate(payloads))


def scan(
    buf: bytes, start_offset: int = 0, expect_lsn: int | None = None
) -> tuple[list[tuple[int, bytes]], int, str | None]:
    """Read records from buf[start_offset:] until the end or the first bad one.

    Returns (records as (lsn, payload), good_end_offset, problem). good_end_offset is where the last good record
    ends (= len(buf) when problem is None); problem names the offset and the reason otherwise. When expect_lsn
    is given the first record must carry it; every later record must carry its predecessor's lsn + 1.
    """
    view = memoryview(buf)
    out: list[tuple[int, bytes]] = []
    off = start_offset
    end = len(buf)
    want = expect_lsn
    while off < end:
        if end - off < HEADER_BYTES:
            return out, off, f"torn record at offset {off}: {end - off} of {HEADER_BYTES} header bytes"
        magic, length, crc, lsn = HEADER.unpack_from(buf, off)
        if magic != MAGIC:
            return out, off, f"corrupt record at offset {off}: bad magic {magic:#010x}"
        if length > RECORD_PAYLOAD_BYTES_MAX:
            return (
                out,
                off,
                f"corrupt record at offset {off}: length {length} exceeds {RECORD_PAYLOAD_BYTES_MAX}",
            )
        body = off + HEADER_BYTES
        if end - body < length:
            return out, off, f"torn record at offset {off}: {end - body} of {length} payload bytes"
        payload = view[body : body + length]
        if _crc(lsn, payload) != crc:
            return out, off, f"corrupt record at offset {off}: checksum mismatch"
        if want is not None and lsn != want:
            return out, off, f"corrupt record at offset {off}: lsn {lsn}, expected {want}"
        if lsn < 1:
            return out, off, f"corrupt record at offset {off}: lsn 0"
        out.append((lsn, bytes(payload)))
        want = lsn + 1
        off = body + length
    return out, off, None
