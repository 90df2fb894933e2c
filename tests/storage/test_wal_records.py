"""The WAL record format: round trips, and scan stopping exactly at torn or corrupt records."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.storage.records import (
    HEADER,
    HEADER_BYTES,
    MAGIC,
    RECORD_PAYLOAD_BYTES_MAX,
    encode_record,
    encode_records,
    scan,
)

PAYLOADS = [b"", b"a", b"hello world", bytes(range(256)) * 3]


def _log(first: int = 1) -> tuple[bytes, list[int]]:
    """A buffer of records and the offsets where each begins."""
    buf = b""
    starts = []
    for i, p in enumerate(PAYLOADS):
        starts.append(len(buf))
        buf += encode_record(first + i, p)
    return buf, starts


def test_round_trip() -> None:
    buf, _ = _log(7)
    recs, end, problem = scan(buf, 0, expect_lsn=7)
    assert problem is None
    assert end == len(buf)
    assert recs == [(7 + i, p) for i, p in enumerate(PAYLOADS)]
    assert encode_records(7, PAYLOADS) == buf


def test_empty_buffer() -> None:
    assert scan(b"", 0) == ([], 0, None)


def test_start_offset() -> None:
    buf, starts = _log()
    recs, end, problem = scan(buf, starts[2])
    assert [lsn for lsn, _ in recs] == [3, 4]
    assert (end, problem) == (len(buf), None)


def test_torn_tail_at_every_byte_of_the_last_record() -> None:
    buf, starts = _log()
    last = starts[-1]
    for cut in range(last, len(buf)):
        recs, end, problem = scan(buf[:cut], 0, expect_lsn=1)
        assert recs == [(i + 1, p) for i, p in enumerate(PAYLOADS[:-1])], cut
        assert end == last, cut
        if cut == last:
            assert problem is None  # a cut exactly between records is a clean end
        else:
            assert problem is not None and problem.startswith("torn"), (cut, problem)


def test_every_flipped_bit_of_a_record_is_caught() -> None:
    buf, starts = _log()
    first, second = starts[1], starts[2]
    for byte in range(first, second):
        for bit in range(8):
            damaged = bytearray(buf)
            damaged[byte] ^= 1 << bit
            recs, end, problem = scan(bytes(damaged), 0, expect_lsn=1)
            # Nothing at or after the damage is returned, and nothing before it is lost.
            assert recs == [(1, PAYLOADS[0])], (byte, bit)
            assert end == first
            assert problem is not None


def test_bad_length_is_corrupt_not_an_allocation() -> None:
    rec = bytearray(encode_record(1, b"abc"))
    HEADER.pack_into(rec, 0, MAGIC, RECORD_PAYLOAD_BYTES_MAX + 1, 0, 1)
    recs, end, problem = scan(bytes(rec), 0)
    assert (recs, end) == ([], 0)
    assert problem is not None and "length" in problem


def test_zero_filled_tail_is_corrupt() -> None:
    buf, _ = _log()
    recs, end, problem = scan(buf + bytes(64), 0)
    assert len(recs) == len(PAYLOADS) and end == len(buf)
    assert problem is not None and "magic" in problem


def test_lsn_must_be_consecutive() -> None:
    buf = encode_record(1, b"a") + encode_record(3, b"b")
    recs, end, problem = scan(buf, 0)
    assert recs == [(1, b"a")] and end == HEADER_BYTES + 1
    assert problem is not None and "expected 2" in problem
    buf = encode_record(5, b"a") + encode_record(5, b"b")
    assert scan(buf, 0)[0] == [(5, b"a")]


def test_first_lsn_is_checked_when_expected() -> None:
    recs, end, problem = scan(encode_record(4, b"x"), 0, expect_lsn=3)
    assert recs == [] and end == 0 and problem is not None


def test_oversized_payload_refused() -> None:
    with pytest.raises(ValueError):
        encode_record(1, bytes(RECORD_PAYLOAD_BYTES_MAX + 1))


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=64), min_size=1, max_size=8),
    garbage=st.binary(max_size=40),
)
def test_garbage_after_good_records_never_yields_a_record(payloads: list[bytes], garbage: bytes) -> None:
    buf = encode_records(1, payloads)
    recs, end, problem = scan(buf + garbage, 0, expect_lsn=1)
    # Random garbage could only pass as a record by forging magic, length, crc and the next lsn at once.
    assert recs == [(i + 1, p) for i, p in enumerate(payloads)]
    assert end == len(buf)
    assert (problem is None) == (garbage == b"")
