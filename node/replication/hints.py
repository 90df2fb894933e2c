"""Hinted handoff (Dynamo, Cassandra): the records a down node missed, kept per target node and replayed in order
once it is back. Best effort beyond W: a hint may be dropped (then counted) or delivered twice (receivers are
idempotent and version-guarded), but a hint must never block or grow its sender without bound.

Files in the hint directory, per target node (name percent-encoded):
    <node>.hints      append-only; WAL-framed records (node.storage.records) with consecutive lsns
    <node>.acked      one empty-payload record whose lsn is the newest hint delivered; replaced (tmp + rename)
                      after every delivered batch, so a crash mid-replay resends at most that one batch
    <node>.hints.tmp  a compaction that did not finish: deleted at open, never read
    <node>.since      with a TTL only: one empty-payload record whose lsn field is 1 + the wall time (ms) at which
                      the queue last went from empty to not empty, so no pending hint is older than that
Age (with a TTL, node/replication/collection.py rule 4): a queue that may hold a hint older than the TTL - its
`since` is older, or unknown (no .since file) - is dropped whole, not replayed, when it is next replayed or added
to, and counted as dropped. A hint older than a tombstone's grace could carry a version that the tombstone hid
and that the replicas have since forgotten; anti-entropy brings the replica whatever the dropped hints held.
Durability: appends are write()s without fsync. They survive kill -9 (the page cache belongs to the kernel), not
a power cut; a torn tail is cut at open like the WAL's. Losing hints is safe (anti-entropy repairs the replica),
so an fsync per add, on the write path of every record for a down node, would buy little.

`HintQueue` is the pure bookkeeping of one node's file (lsns, offsets, bounds, counters); `HintStore` is the
Trio shell that does the file I/O in worker threads; `hint_replay_loop` drives replays for nodes that are up.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from itertools import islice
from pathlib import Path
from urllib.parse import quote, unquote

import msgspec
import structlog
import trio

from node.storage.records import HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX, encode_record, encode_records, scan

log = structlog.get_logger("murmur.hints")

HINTS_SUFFIX = ".hints"
ACKED_SUFFIX = ".acked"
SINCE_SUFFIX = ".since"
TMP_SUFFIX = ".tmp"
RECORDS_PER_NODE_MAX = 100_000
BYTES_PER_NODE_MAX = 64 * 1024 * 1024
BATCH_RECORDS_MAX = 256
# Delivered hints stay at the head of the file until it empties; once they outweigh both this and the undelivered
# rest, the rest is copied to a new file: the file stays under 2 x bytes bound + this, each byte copied O(1) times.
COMPACT_BYTES_MIN = 1024 * 1024

Send = Callable[[list[bytes]], Awaitable[None]]


class BatchPlan(msgspec.Struct, frozen=True):
    """The next hints to replay: `count` records, lsns first_lsn.., in file bytes [offset, offset + length)."""

    offset: int
    length: int
    first_lsn: int
    count: int


class HintQueue:
    """Bookkeeping for one target node's hint file. Pure: no I/O, no clock.

    Invariants: pending == next_lsn - 1 - acked_lsn, and head_offset + pending_bytes == file_bytes
    (the delivered prefix [0, head_offset) is still in the file until compaction or removal).
    """

    def __init__(
        self,
        records_max: int,
        bytes_max: int,
        *,
        next_lsn: int = 1,
        acked_lsn: int = 0,
        head_offset: int = 0,
        sizes: Iterable[int] = (),
        since_ms: int | None = None,
    ) -> None:
        assert records_max >= 0 and bytes_max >= 0
        self.records_max = records_max
        self.bytes_max = bytes_max  # of framed records, as on disk
        self.next_lsn = next_lsn  # the lsn the next admitted hint gets
        self.acked_lsn = acked_lsn  # hints up to here were delivered
        self.head_offset = head_offset  # where the first undelivered hint starts in the file
        self._sizes: deque[int] = deque(sizes)  # framed bytes of each undelivered hint, oldest first
        self.pending_bytes = sum(self._sizes)
        self.file_bytes = head_offset + self.pending_bytes
        self.since_ms = since_ms  # no pending hint was written before this (wall ms); None: unknown
        self.dropped = 0  # hints refused by the bounds or lost to a disk error, damage or age (since open)
        self.replayed = 0  # hints delivered (since open)
        assert self.pending == next_lsn - 1 - acked_lsn, (self.pending, next_lsn, acked_lsn)

    @property
    def pending(self) -> int:
        return len(self._sizes)

    def admit(self, payloads: list[bytes]) -> list[bytes]:
        """The prefix of payloads that fits under the bounds; the rest is counted as dropped. Keeping a prefix
        (not every one that still fits) keeps the kept hints a contiguous run of what the sender produced."""
        kept = 0
        nbytes = self.pending_bytes
        for p in payloads:
            size = HEADER_BYTES + len(p)
            if (
                self.pending + kept >= self.records_max
                or len(p) > RECORD_PAYLOAD_BYTES_MAX
                or nbytes + size > self.bytes_max
            ):
                break
            kept += 1
            nbytes += size
        self.dropped += len(payloads) - kept
        return payloads[:kept]

    def encode(self, admitted: list[bytes]) -> bytes:
        """The file bytes of admitted hints: what the shell appends."""
        return encode_records(self.next_lsn, admitted)

    def on_written(self, admitted: list[bytes]) -> None:
        for p in admitted:
            self._sizes.append(HEADER_BYTES + len(p))
        total = HEADER_BYTES * len(admitted) + sum(len(p) for p in admitted)
        self.next_lsn += len(admitted)
        self.pending_bytes += total
        self.file_bytes += total

    def on_write_failed(self, admitted: list[bytes]) -> None:
        self.dropped += len(admitted)

    def next_batch(self, batch_max: int) -> BatchPlan | None:
        if not self._sizes:
            return None
        count = min(batch_max, len(self._sizes))
        length = sum(islice(self._sizes, count))
        return BatchPlan(self.head_offset, length, self.acked_lsn + 1, count)

    def on_sent(self, plan: BatchPlan) -> None:
        # Only the one replay of this node moves the head, so nothing can have moved it since the plan was made.
        assert plan.first_lsn == self.acked_lsn + 1 and plan.offset == self.head_offset, plan
        for _ in range(plan.count):
            self._sizes.popleft()
        self.acked_lsn += plan.count
        self.head_offset += plan.length
        self.pending_bytes -= plan.length
        self.replayed += plan.count

    def should_compact(self) -> bool:
        return self.head_offset >= COMPACT_BYTES_MIN and self.head_offset >= self.pending_bytes

    def on_compacted(self) -> None:
        self.head_offset = 0
        self.file_bytes = self.pending_bytes

    def on_emptied(self) -> None:
        """The files were removed: nothing was pending. Lsns go on from next_lsn."""
        assert not self._sizes
        self.head_offset = self.file_bytes = 0
        self.since_ms = None

    def expired(self, now_ms: int, ttl_ms: int) -> bool:
        """Whether a pending hint may be older than ttl_ms (see the module header)."""
        return bool(self._sizes) and (self.since_ms is None or now_ms - self.since_ms > ttl_ms)

    def on_lost(self) -> None:
        """The file is unreadable: every undelivered hint is gone (and counted); the files were removed."""
        self.dropped += len(self._sizes)
        self._sizes.clear()
        self.acked_lsn = self.next_lsn - 1
        self.pending_bytes = self.head_offset = self.file_bytes = 0
        self.since_ms = None


def encode_ack(acked_lsn: int) -> bytes:
    return encode_record(acked_lsn, b"")


def decode_ack(data: bytes) -> int | None:
    """The lsn an ack file holds, or None when it is damaged (then every hint in the file is resent)."""
    recs, _, problem = scan(data)
    if problem is not None or len(recs) != 1 or recs[0][1]:
        return None
    return recs[0][0]


def _encode_since(ms: int) -> bytes:
    return encode_record(ms + 1, b"")  # an lsn is >= 1


def _decode_since(data: bytes) -> int | None:
    lsn = decode_ack(data)
    return None if lsn is None else lsn - 1


def recover_queue(
    buf: bytes, ack: bytes | None, records_max: int, bytes_max: int
) -> tuple[HintQueue, int, str | None]:
    """Rebuild a node's queue from its file contents and ack file. -> (queue, good_end, problem): past good_end
    the file is torn or corrupt (problem says how) and must be cut there. A queue with nothing pending means the
    files should be removed (everything was delivered)."""
    recs, good_end, problem = scan(buf)
    acked = decode_ack(ack) if ack is not None else 0
    acked = 0 if acked is None else acked
    if not recs or acked >= recs[-1][0]:
        return HintQueue(records_max, bytes_max), good_end, problem
    # An ack older than the file's first record (a compaction followed it) still means all before it went out.
    acked = max(acked, recs[0][0] - 1)
    head = sum(HEADER_BYTES + len(p) for lsn, p in recs if lsn <= acked)
    sizes = [HEADER_BYTES + len(p) for lsn, p in recs if lsn > acked]
    q = HintQueue(
        records_max, bytes_max, next_lsn=recs[-1][0] + 1, acked_lsn=acked, head_offset=head, sizes=sizes
    )
    return q, good_end, problem


# ---- blocking file I/O, run in worker threads --------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _append(path: Path, expected_size: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != expected_size:
            # Left by a write that failed halfway: the bookkeeping's offsets only hold without it.
            os.ftruncate(fd, expected_size)
        try:
            _write_all(fd, data)
        except OSError:
            os.ftruncate(fd, expected_size)
            raise
    finally:
        os.close(fd)


def _read_batch(path: Path, plan: BatchPlan) -> list[bytes] | str:
    """The payloads of the plan, or why they cannot be read (the file is then unusable from here on)."""
    try:
        with open(path, "rb") as f:
            f.seek(plan.offset)
            buf = f.read(plan.length)
    except FileNotFoundError:
        return "hint file missing"
    recs, _, problem = scan(buf, 0, expect_lsn=plan.first_lsn)
    if problem is not None or len(recs) != plan.count:
        return problem or f"{len(recs)} of {plan.count} records"
    return [p for _, p in recs]


def _replace(path: Path, data: bytes, sync: bool) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _compact(path: Path, offset: int, length: int) -> None:
    with open(path, "rb") as f:
        f.seek(offset)
        rest = f.read(length)
    if len(rest) != length:
        raise OSError(f"hint file {path} is shorter than its bookkeeping: {len(rest)} of {length} bytes")
    # The one fsync here: a rename over the file without it could, on a power cut, lose the whole queue rather
    # than a tail. Compactions are rare (at least COMPACT_BYTES_MIN delivered since the last one).
    _replace(path, rest, sync=True)


def _remove(ack_path: Path, hints_path: Path) -> None:
    # The ack first: should we die between the two, the hints get resent rather than wrongly skipped. The age
    # last: without it, hints left behind count as old (dropped), never as young.
    ack_path.unlink(missing_ok=True)
    hints_path.unlink(missing_ok=True)
    hints_path.with_suffix(SINCE_SUFFIX).unlink(missing_ok=True)


def _recover_dir(directory: Path, records_max: int, bytes_max: int) -> dict[str, HintQueue]:
    directory.mkdir(parents=True, exist_ok=True)
    for p in directory.glob("*" + TMP_SUFFIX):
        p.unlink(missing_ok=True)
    queues: dict[str, HintQueue] = {}
    for p in sorted(directory.glob("*" + HINTS_SUFFIX)):
        node = unquote(p.name[: -len(HINTS_SUFFIX)])
        if not node:
            continue
        ack_path = directory / (quote(node, safe="") + ACKED_SUFFIX)
        buf = p.read_bytes()
        ack = ack_path.read_bytes() if ack_path.exists() else None
        if ack is not None and decode_ack(ack) is None:
            log.warning("hint_ack_damaged", node=node, file=str(ack_path))
        q, good_end, problem = recover_queue(buf, ack, records_max, bytes_max)
        if q.pending == 0:
            _remove(ack_path, p)
            continue
        since_path = p.with_suffix(SINCE_SUFFIX)
        q.since_ms = _decode_since(since_path.read_bytes()) if since_path.exists() else None
        if problem is not None:
            log.warning(
                "hint_tail_cut", node=node, offset=good_end, reason=problem, bytes_dropped=len(buf) - good_end
            )
            with open(p, "r+b") as f:
                f.truncate(good_end)
        queues[node] = q
    # An ack file whose hints file is gone belongs to an older generation of lsns: it must not skip new hints.
    for suffix in (ACKED_SUFFIX, SINCE_SUFFIX):
        for p in directory.glob("*" + suffix):
            if unquote(p.name[: -len(suffix)]) not in queues:
                p.unlink(missing_ok=True)
    return queues


# ---- the Trio shell ----------------------------------------------------------------------------------------


class HintStore:
    """Per-target-node hint queues in one directory. Use `await HintStore.open(dir)`; runs in the event loop
    thread, every blocking call goes to a worker thread. There is nothing to close: no descriptor stays open."""

    def __init__(
        self,
        directory: Path,
        records_max: int,
        bytes_max: int,
        queues: dict[str, HintQueue],
        ttl_ms: int | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        assert ttl_ms is None or (ttl_ms >= 0 and clock_ms is not None), (ttl_ms, clock_ms)
        self.directory = directory
        self.records_max = records_max
        self.bytes_max = bytes_max
        self._queues = queues
        self.ttl_ms = ttl_ms  # None: hints never age out
        self.clock_ms = clock_ms
        # Held for every file change and batch read of one node; never across a send.
        self._locks: dict[str, trio.Lock] = {}
        self._replaying: set[str] = set()

    @classmethod
    async def open(
        cls,
        directory: Path | str,
        max_records_per_node: int = RECORDS_PER_NODE_MAX,
        max_bytes_per_node: int = BYTES_PER_NODE_MAX,
        ttl_ms: int | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> HintStore:
        """Read the hint files in directory (created if missing), cutting torn or corrupt tails. With ttl_ms (and
        clock_ms, the wall clock in ms), hints older than ttl_ms are dropped rather than replayed."""
        directory = Path(directory)
        queues = await trio.to_thread.run_sync(
            _recover_dir, directory, max_records_per_node, max_bytes_per_node
        )
        return cls(directory, max_records_per_node, max_bytes_per_node, queues, ttl_ms, clock_ms)

    def _paths(self, node: str) -> tuple[Path, Path]:
        name = quote(node, safe="")
        return self.directory / (name + HINTS_SUFFIX), self.directory / (name + ACKED_SUFFIX)

    async def _drop_if_expired(self, node: str, q: HintQueue) -> bool:
        """With a TTL: drop node's queue whole when a pending hint may be older than it (held lock). -> dropped."""
        if self.ttl_ms is None or self.clock_ms is None or not q.expired(self.clock_ms(), self.ttl_ms):
            return False
        hints_path, ack_path = self._paths(node)
        log.warning("hints_expired", node=node, dropped=q.pending, since_ms=q.since_ms, ttl_ms=self.ttl_ms)
        await trio.to_thread.run_sync(_remove, ack_path, hints_path)
        q.on_lost()
        return True

    def _queue(self, node: str) -> HintQueue:
        q = self._queues.get(node)
        if q is None:
            q = self._queues[node] = HintQueue(self.records_max, self.bytes_max)
        return q

    def _lock(self, node: str) -> trio.Lock:
        lock = self._locks.get(node)
        if lock is None:
            lock = self._locks[node] = trio.Lock()
        return lock

    async def add(self, node: str, payloads: list[bytes]) -> int:
        """Keep payloads for node, in order; returns how many were kept. Over the node's bounds the rest is dropped
        and counted; a disk error drops (and counts) the whole call. Never raises OSError, never waits for room."""
        assert node, "a hint needs a target node"
        if not payloads:
            return 0
        q = self._queue(node)
        hints_path, _ = self._paths(node)
        async with self._lock(node):
            try:
                await self._drop_if_expired(node, q)
            except OSError as e:
                log.error("hint_expiry_failed", node=node, error=str(e))
            admitted = q.admit(payloads)
            if not admitted:
                return 0
            try:
                if not q.pending and self.ttl_ms is not None and self.clock_ms is not None:
                    since = self.clock_ms()
                    await trio.to_thread.run_sync(_replace, hints_path.with_suffix(SINCE_SUFFIX), _encode_since(since), False)
                    q.since_ms = since
                # Not cancellable once started: a write that reached the file is recorded as such.
                await trio.to_thread.run_sync(_append, hints_path, q.file_bytes, q.encode(admitted))
            except OSError as e:
                q.on_write_failed(admitted)
                log.error("hint_write_failed", node=node, dropped=len(admitted), error=str(e))
                return 0
            q.on_written(admitted)
            return len(admitted)

    def pending(self, node: str) -> int:
        q = self._queues.get(node)
        return 0 if q is None else q.pending

    def nodes_with_hints(self) -> list[str]:
        return sorted(n for n, q in self._queues.items() if q.pending)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per metric, per target node (every node hinted since open): pending, pending_bytes, dropped, replayed.
        dropped and replayed count since open."""
        qs = sorted(self._queues.items())
        return {
            "pending": {n: q.pending for n, q in qs},
            "pending_bytes": {n: q.pending_bytes for n, q in qs},
            "dropped": {n: q.dropped for n, q in qs},
            "replayed": {n: q.replayed for n, q in qs},
        }

    def metrics_samples(self) -> list[tuple[str, str, dict[str, str], float]]:
        """(name, help, labels, value) for /metrics, one sample per target node."""
        out: list[tuple[str, str, dict[str, str], float]] = []
        families = [
            ("murmur_hints_pending", "Hinted-handoff records waiting for a down replica", "pending"),
            ("murmur_hints_pending_bytes", "Bytes of hinted-handoff records waiting", "pending_bytes"),
            (
                "murmur_hints_dropped_total",
                "Hints dropped (bounds, disk errors, damage) since start",
                "dropped",
            ),
            ("murmur_hints_replayed_total", "Hints delivered to their node since start", "replayed"),
        ]
        stats = self.stats()
        for name, help_, key in families:
            out.extend((name, help_, {"node": n}, float(v)) for n, v in stats[key].items())
        return out

    async def replay(self, node: str, send: Send, batch_max: int = BATCH_RECORDS_MAX) -> int:
        """Send node's hints, oldest first, in batches of at most batch_max; returns how many were sent.

        Each batch is recorded as delivered (durably) once send returns, so a crash resends at most one batch.
        Stops, keeping the rest, when send raises (logged, not raised). Hints added meanwhile are sent too.
        Returns 0 at once when a replay of node is already running.
        """
        assert batch_max >= 1, batch_max
        if node in self._replaying or node not in self._queues:
            return 0
        self._replaying.add(node)
        try:
            return await self._replay(node, self._queues[node], send, batch_max)
        finally:
            self._replaying.discard(node)

    async def _replay(self, node: str, q: HintQueue, send: Send, batch_max: int) -> int:
        hints_path, ack_path = self._paths(node)
        lock = self._lock(node)
        sent = 0
        while True:
            async with lock:
                try:
                    if await self._drop_if_expired(node, q):
                        return sent
                except OSError as e:
                    log.error("hint_expiry_failed", node=node, error=str(e))
                    return sent
                plan = q.next_batch(batch_max)
                if plan is None:
                    return sent
                try:
                    got = await trio.to_thread.run_sync(_read_batch, hints_path, plan)
                    if isinstance(got, str):
                        log.error("hint_file_damaged", node=node, reason=got, dropped=q.pending)
                        await trio.to_thread.run_sync(_remove, ack_path, hints_path)
                        q.on_lost()
                        return sent
                except OSError as e:
                    log.error("hint_read_failed", node=node, error=str(e))
                    return sent
            try:
                await send(got)
            except Exception as e:
                log.warning("hint_replay_interrupted", node=node, sent=sent, pending=q.pending, error=repr(e))
                return sent
            q.on_sent(plan)
            sent += plan.count
            # Shielded: the batch is delivered; record it even if our caller is being cancelled.
            with trio.CancelScope(shield=True):
                async with lock:
                    await self._settle(node, q, hints_path, ack_path)

    async def _settle(self, node: str, q: HintQueue, hints_path: Path, ack_path: Path) -> None:
        """Make a delivered batch durable: remove the files when nothing is left, else rewrite the ack (and compact)."""
        try:
            if q.pending == 0:
                await trio.to_thread.run_sync(_remove, ack_path, hints_path)
                q.on_emptied()
                return
            await trio.to_thread.run_sync(_replace, ack_path, encode_ack(q.acked_lsn), False)
            if q.should_compact():
                await trio.to_thread.run_sync(_compact, hints_path, q.head_offset, q.pending_bytes)
                q.on_compacted()
        except OSError as e:
            # The bookkeeping still matches the files (only the ack lags): a restart would resend a little more.
            log.error("hint_ack_failed", node=node, error=str(e))


def _sender(send_to: Callable[[str, list[bytes]], Awaitable[None]], node: str, timeout_s: float) -> Send:
    async def send(payloads: list[bytes]) -> None:
        with trio.fail_after(timeout_s):
            await send_to(node, payloads)

    return send


async def hint_replay_loop(
    store: HintStore,
    is_up: Callable[[str], bool],
    send_to: Callable[[str, list[bytes]], Awaitable[None]],
    interval_s: float,
    *,
    batch_max: int = BATCH_RECORDS_MAX,
    send_timeout_s: float = 10.0,
) -> None:
    """Forever: replay the hints of every node that is up, one node after another, then sleep interval_s (s).
    A batch that takes longer than send_timeout_s (s) stops that node's replay until the next round.
    Logs errors, never raises them (only Cancelled leaves)."""
    assert interval_s > 0 and send_timeout_s > 0, (interval_s, send_timeout_s)
    while True:
        for node in store.nodes_with_hints():
            try:
                if is_up(node):
                    sent = await store.replay(node, _sender(send_to, node, send_timeout_s), batch_max)
                    if sent:
                        log.info("hints_replayed", node=node, sent=sent, pending=store.pending(node))
            except Exception as e:
                log.error("hint_replay_failed", node=node, error=repr(e))
        await trio.sleep(interval_s)
