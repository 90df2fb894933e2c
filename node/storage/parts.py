"""A container of named byte buffers, the body of a snapshot: a table of (name, length, crc32), then the buffers.

Written piece by piece (`write_parts` streams the buffers without joining them: a snapshot is hundreds of MB) and
read by slicing (`read_parts` returns memoryviews into the one buffer it is given: an mmap of the file). Never
trusts what it reads: a bad magic, a table that does not fit, or a buffer whose crc differs is an error naming it.

Layout: magic 8 | count u32 | count x (name_len u16 | name | length u64 | crc32 u32) | buffers in table order.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence

MAGIC = b"MURPART1"
_COUNT = struct.Struct("<I")
_NAME_LEN = struct.Struct("<H")
_ENTRY = struct.Struct("<QI")
PARTS_MAX = 4096

Buffer = bytes | bytearray | memoryview


class PartsError(ValueError):
    pass


def crc_of(data: Buffer) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def table_bytes(parts: Sequence[tuple[str, Buffer]], crcs: Sequence[int]) -> bytes:
    out = [MAGIC, _COUNT.pack(len(parts))]
    for (name, data), crc in zip(parts, crcs, strict=True):
        nb = name.encode()
        out += [_NAME_LEN.pack(len(nb)), nb, _ENTRY.pack(len(data), crc)]
    return b"".join(out)


def write_parts(parts: Sequence[tuple[str, Buffer]], write: Callable[[Buffer], None]) -> int:
    """Write the container through `write` (called with each piece in order). -> bytes written."""
    assert len(parts) <= PARTS_MAX
    crcs = [crc_of(d) for _, d in parts]
    head = table_bytes(parts, crcs)
    write(head)
    total = len(head)
    for _, data in parts:
        if len(data):
            write(data)
            total += len(data)
    return total


def encode_parts(parts: Sequence[tuple[str, Buffer]]) -> bytes:
    chunks: list[bytes] = []
    write_parts(parts, lambda b: chunks.append(bytes(b)))
    return b"".join(chunks)


def read_parts(buf: Buffer) -> dict[str, memoryview]:
    """name -> a view of its bytes in `buf`. Raises PartsError on anything malformed."""
    view = memoryview(buf)
    if len(view) < len(MAGIC) + _COUNT.size or bytes(view[: len(MAGIC)]) != MAGIC:
        raise PartsError("not a parts container (bad magic)")
    pos = len(MAGIC)
    (count,) = _COUNT.unpack_from(view, pos)
    pos += _COUNT.size
    if count > PARTS_MAX:
        raise PartsError(f"{count} parts is more than {PARTS_MAX}")
    table: list[tuple[str, int, int]] = []
    for _ in range(count):
        if pos + _NAME_LEN.size > len(view):
            raise PartsError("the table is cut short")
        (nlen,) = _NAME_LEN.unpack_from(view, pos)
        pos += _NAME_LEN.size
        if pos + nlen + _ENTRY.size > len(view):
            raise PartsError("the table is cut short")
        try:
            name = bytes(view[pos : pos + nlen]).decode()
        except UnicodeDecodeError:
            raise PartsError("a part name is not UTF-8") from None
        pos += nlen
        length, crc = _ENTRY.unpack_from(view, pos)
        pos += _ENTRY.size
        table.append((name, length, crc))
    out: dict[str, memoryview] = {}
    for name, length, crc in table:
        if pos + length > len(view):
            raise PartsError(f"part {name!r}: {length} bytes announced, {len(view) - pos} left")
        data = view[pos : pos + length]
        if crc_of(data) != crc:
            raise PartsError(f"part {name!r}: checksum mismatch")
        if name in out:
            raise PartsError(f"part {name!r} appears twice")
        out[name] = data
        pos += length
    if pos != len(view):
        raise PartsError(f"{len(view) - pos} bytes after the last part")
    return out
