"""`murmur load`: stream records from files and POST them as NDJSON batches to /tweets/bulk.

Thin Trio shell: files are read in a worker thread one batch at a time, at most `concurrency` batches are in
flight and as many wait in a bounded channel; every retry is bounded. Never resend a line without an `id` after an
ambiguous failure (the node would give it a second id).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import httpx
import msgspec
import trio
from tqdm import tqdm

from node.cli.readers import Record, read_records
from node.cli.tally import LoadTally

RETRIES_MAX = 6  # per batch, for 503 and connection failures
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0
TIMEOUT = httpx.Timeout(connect=5.0, read=120.0, write=60.0, pool=None)
NDJSON = {"content-type": "application/x-ndjson"}

_encode = msgspec.json.Encoder().encode


class _Source:
    """Pulls records from the files in order; called from one worker thread at a time."""

    def __init__(self, files: list[str], limit: int | None) -> None:
        self.files = files
        self.limit = limit
        self.bytes_done = 0  # bytes of fully read files
        self.bytes_now = 0  # raw bytes read so far, all files
        self._it = self._records()

    def _records(self) -> Iterator[Record]:
        for path in self.files:
            base = self.bytes_done

            def on_bytes(n: int, base: int = base) -> None:
                self.bytes_now = base + n

            yield from read_records(path, self.limit, on_bytes)
            if path != "-":
                self.bytes_done += os.path.getsize(path)
                self.bytes_now = self.bytes_done

    def next_batch(self, size: int) -> list[Record]:
        out: list[Record] = []
        for rec in self._it:
            out.append(rec)
            if len(out) >= size:
                break
        return out


class Loader:
    def __init__(self, client: httpx.AsyncClient, url: str, tally: LoadTally) -> None:
        self.client = client
        self.url = url.rstrip("/") + "/tweets/bulk"
        self.tally = tally

    async def send(self, batch: list[Record], attempts_left: int = RETRIES_MAX) -> None:
        """POST one batch, splitting it on 413 and retrying 503s / connection failures with backoff."""
        delay = BACKOFF_FIRST_S
        while True:
            last = attempts_left <= 0
            body = b"\n".join(_encode(r.tweet) for r in batch) + b"\n"
            try:
                resp = await self.client.post(self.url, content=body, headers=NDJSON)
            except httpx.ConnectError as e:
                if last:
                    return self._reject_all(batch, "connection_failed", str(e) or "connection refused")
            except httpx.TransportError as e:
                # sent but unanswered: only a batch whose lines all carry ids may be resent safely
                if last or not all("id" in (r.tweet or {}) for r in batch):
                    return self._reject_all(batch, "transport_error", f"{type(e).__name__}: {e}")
            else:
                self.tally.responses += 1
                if resp.status_code == 413 and len(batch) > 1:
                    half = len(batch) // 2
                    await self.send(batch[:half], attempts_left)
                    return await self.send(batch[half:], attempts_left)
                if resp.status_code == 200:
                    batch = self._on_answer(batch, resp)
                    if not batch:
                        return None
                    if last:
                        return self._reject_all(batch, "unavailable", "not acknowledged after retries")
                elif resp.status_code != 503 or last:
                    code, field, msg = _error_of(resp)
                    for r in batch:
                        self.tally.on_reject(code, field, msg, r.where)
                    return None
            attempts_left -= 1
            await trio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _on_answer(self, batch: list[Record], resp: httpx.Response) -> list[Record]:
        """Tally a bulk answer; returns the lines to send again (unacknowledged ones that carry an id)."""
        try:
            items = resp.json()["items"]
        except (ValueError, KeyError, TypeError):
            items = None
        if not isinstance(items, list):
            self._reject_all(batch, "bad_response", "the node's answer has no items list")
            return []
        answered = [False] * len(batch)
        retry: list[Record] = []
        for item in items:
            line = item.get("line") if isinstance(item, dict) else None
            if not isinstance(line, int) or not 1 <= line <= len(batch) or answered[line - 1]:
                continue
            answered[line - 1] = True
            rec = batch[line - 1]
            if item.get("status") == 503 and "id" in (rec.tweet or {}):
                retry.append(rec)  # not acknowledged: safe to resend because the id is fixed
            else:
                self.tally.on_item(item, rec.where)
        for rec, ok in zip(batch, answered, strict=True):
            if not ok:
                self.tally.on_reject(
                    "no_answer", None, "the bulk answer has no item for this line", rec.where
                )
        return retry

    def _reject_all(self, batch: list[Record], code: str, msg: str) -> None:
        for r in batch:
            self.tally.on_reject(code, None, msg, r.where)


def _error_of(resp: httpx.Response) -> tuple[str, str | None, str]:
    try:
        err = resp.json()["error"]
        return str(err["code"]), err.get("field"), str(err.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return f"http_{resp.status_code}", None, resp.text[:200]


def run_load(url: str, files: list[str], batch_size: int, concurrency: int, limit: int | None) -> int:
    """Load `files` into the node at `url`; the exit code (1: nothing could be sent)."""
    missing = [f for f in files if f != "-" and not os.path.isfile(f)]
    if missing:
        print(f"murmur: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    total = None if "-" in files else sum(os.path.getsize(f) for f in files)
    return trio.run(_load, url, _Source(files, limit), total, batch_size, concurrency)


async def _load(url: str, source: _Source, total: int | None, batch_size: int, concurrency: int) -> int:
    tally = LoadTally()
    started = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        try:
            await client.get(url.rstrip("/") + "/health", timeout=5.0)
        except httpx.TransportError as e:
            print(f"murmur: cannot reach {url}: {e}", file=sys.stderr)
            return 1
        loader = Loader(client, url, tally)
        unit = "B" if total is not None else " tweets"
        bar = tqdm(total=total, unit=unit, unit_scale=True, desc="loading", file=sys.stderr, mininterval=0.5)
        send, recv = trio.open_memory_channel[list[Record]](concurrency)  # bounded read-ahead

        async def produce() -> None:
            async with send:
                while True:
                    batch = await trio.to_thread.run_sync(source.next_batch, batch_size)
                    if not batch:
                        return
                    ok = [r for r in batch if r.tweet is not None]
                    for r in batch:
                        if r.error is not None:
                            tally.on_reject(r.error[0], None, r.error[1], r.where)
                        elif r.user_defaulted:
                            tally.user_defaulted += 1
                    if ok:
                        await send.send(ok)

        async def consume(recv: trio.MemoryReceiveChannel[list[Record]]) -> None:
            async with recv:
                async for batch in recv:
                    await loader.send(batch)
                    # stdin has no size: count tweets instead of bytes
                    bar.update((source.bytes_now if total is not None else tally.seen) - bar.n)
                    bar.set_postfix(tweets=f"{tally.seen:,}", refresh=False)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                async with recv:
                    for _ in range(concurrency):
                        nursery.start_soon(consume, recv.clone())
        finally:
            bar.close()
    for line in tally.report(time.monotonic() - started):
        print(line)
    return 1 if tally.responses == 0 and tally.seen > 0 else 0
