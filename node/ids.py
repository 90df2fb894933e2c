"""Snowflake ids (CONTRACT §4): 41 bits of milliseconds since MURMUR_EPOCH_MS, a 10-bit per-millisecond sequence,
a 13-bit machine id. Pure: the caller passes the clock reading; this never reads a clock.

Rules: ids from `next_id` strictly increase per generator even when the clock steps backwards (we keep issuing
from the last millisecond used, borrowing the next millisecond when its sequence is exhausted); ids of different
machines never collide because the machine id is in the low bits. A client's time is data, never generator state:
`id_for` keeps its own per-millisecond counters and never moves `next_id`'s clock, and `observe` at recovery
skips ids later than the node's clock (only a client's created_at can have made those).
"""

from __future__ import annotations

# 2006-01-01T00:00:00Z: before every tweet ever posted, so imported tweets of 2009 still get valid ids.
MURMUR_EPOCH_MS = 1_136_073_600_000
TIME_BITS = 41
SEQ_BITS = 10
MACHINE_BITS = 13
SEQ_MAX = (1 << SEQ_BITS) - 1
MACHINE_MAX = (1 << MACHINE_BITS) - 1
TIME_MAX = (1 << TIME_BITS) - 1
PAST_MS_TRACKED_MAX = 65_536  # distinct milliseconds whose sequence counters `id_for` remembers
CREATED_AHEAD_MS_MAX = 5 * 60 * 1000  # a created_at later than the node's clock plus this is refused (CONTRACT §2)


def compose(ms_since_epoch: int, seq: int, machine: int) -> int:
    assert 0 <= ms_since_epoch <= TIME_MAX and 0 <= seq <= SEQ_MAX and 0 <= machine <= MACHINE_MAX
    return (ms_since_epoch << (SEQ_BITS + MACHINE_BITS)) | (seq << MACHINE_BITS) | machine


def decompose(snowflake: int) -> tuple[int, int, int]:
    """-> (unix ms, sequence, machine id)."""
    ms = (snowflake >> (SEQ_BITS + MACHINE_BITS)) + MURMUR_EPOCH_MS
    return ms, (snowflake >> MACHINE_BITS) & SEQ_MAX, snowflake & MACHINE_MAX


class IdOutOfRange(ValueError):
    pass


def check_created_at(created_ms: int, now_ms: int) -> None:
    """Raises IdOutOfRange for a client time more than CREATED_AHEAD_MS_MAX after `now_ms`."""
    if created_ms > now_ms + CREATED_AHEAD_MS_MAX:
        raise IdOutOfRange(
            f"created_at is more than {CREATED_AHEAD_MS_MAX // 60_000} minutes after this node's clock"
        )


class SnowflakeGenerator:
    """One per node. `next_id(now_ms)` for new tweets; `id_for(created_ms)` for tweets with a given time."""

    def __init__(self, machine: int, last_id: int = 0) -> None:
        if not 0 <= machine <= MACHINE_MAX:
            raise ValueError(f"machine id must be 0..{MACHINE_MAX}")
        self.machine = machine
        self._last_ms = -1  # ms since epoch of the last id from next_id
        self._seq = 0
        if last_id:
            self.observe(last_id)
        self._past: dict[int, int] = {}  # ms since epoch -> next free sequence, for id_for

    def observe(self, existing_id: int, now_ms: int | None = None) -> None:
        """Never issue at or below an id this machine issued before (call at recovery with the ids found, and the
        clock): an id later than `now_ms` came from a client's created_at (next_id runs ahead of the clock by a
        few milliseconds at most, and a restart takes longer), so it does not move the clock."""
        ms, seq, machine = decompose(existing_id)
        if machine != self.machine or (now_ms is not None and ms > now_ms):
            return
        e = ms - MURMUR_EPOCH_MS
        if e > self._last_ms or (e == self._last_ms and seq >= self._seq):
            self._last_ms, self._seq = e, seq + 1

    def next_id(self, now_ms: int) -> int:
        e = now_ms - MURMUR_EPOCH_MS
        if e > self._last_ms:
            self._last_ms, self._seq = e, 0
        elif self._seq > SEQ_MAX:  # this millisecond is used up (or the clock went back): borrow the next one
            self._last_ms, self._seq = self._last_ms + 1, 0
        if not 0 <= self._last_ms <= TIME_MAX:
            raise IdOutOfRange("the clock is outside the Snowflake time range")
        out = compose(self._last_ms, self._seq, self.machine)
        self._seq += 1
        return out

    def id_for(self, created_ms: int) -> int:
        """An id whose time part is `created_ms` (a client's created_at; imports of old tweets). Unique among the
        ids id_for issues while the millisecond is remembered; it may meet an id of next_id (callers check the
        store for a collision and ask again). Never moves next_id's clock."""
        e = created_ms - MURMUR_EPOCH_MS
        if not 0 <= e <= TIME_MAX:
            raise IdOutOfRange("created_at is outside the Snowflake time range (2006-01-01 .. 2075)")
        seq = self._past.get(e, 0)
        while seq > SEQ_MAX:  # a full millisecond: the next one (still ordered by time within 1 ms)
            e += 1
            if e > TIME_MAX:
                raise IdOutOfRange("created_at is outside the Snowflake time range (2006-01-01 .. 2075)")
            seq = self._past.get(e, 0)
        if len(self._past) >= PAST_MS_TRACKED_MAX and e not in self._past:
            self._past.pop(next(iter(self._past)))
        self._past[e] = seq + 1
        return compose(e, seq, self.machine)
