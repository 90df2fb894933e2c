"""`murmur load`: stream records from files and POST them as NDJSON batches to /tweets/bulk through node.client.

Thin Trio shell: files are read in a worker thread one batch at a time; the client keeps at most `concurrency`
bulks in flight and as many read ahead (AsyncClient.bulk_load), and bounds every retry. Without --url the bulks
are spread over every node of the config that answers (any node coordinates; one node coordinating the whole
load would be the cluster's bottleneck). It never resends a line
without an `id` after an ambiguous failure (the node would give it a second id).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import msgspec
import trio
from tqdm import tqdm

from node.cli.readers import Record, read_records
from node.cli.tally import LoadTally
from node.client import ApiError, AsyncClient, BulkResult, Unreachable

CONCURRENCY_PER_NODE = 2  # bulks in flight per node loaded through, by default
CONCURRENCY_MIN = 4


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


def run_load(
    urls: Sequence[str],
    files: list[str],
    batch_size: int,
    concurrency: int | None,
    limit: int | None,
    api_key: str | None = None,
) -> int:
    """Load `files` through the nodes at `urls` (the first must answer; the others that answer share the bulks);
    `concurrency` bulks in flight (default CONCURRENCY_PER_NODE per node, at least CONCURRENCY_MIN). The exit
    code (1: nothing could be sent)."""
    missing = [f for f in files if f != "-" and not os.path.isfile(f)]
    if missing:
        print(f"murmur: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    total = None if "-" in files else sum(os.path.getsize(f) for f in files)
    return trio.run(_load, list(urls), api_key, _Source(files, limit), total, batch_size, concurrency)


def _tweet(r: Record) -> Any:
    return r.tweet


async def _answers(client: AsyncClient) -> str | None:
    """None when the node answers (any answer: the bulk answers will say what is wrong), else why not."""
    try:
        await client.health()
    except Unreachable as e:
        return e.message
    except ApiError:
        pass
    return None


async def _load(
    urls: list[str], api_key: str | None, source: _Source, total: int | None, batch_size: int, concurrency: int | None
) -> int:
    tally = LoadTally()
    started = time.monotonic()
    inflight = concurrency or max(CONCURRENCY_MIN, CONCURRENCY_PER_NODE * len(urls))
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(AsyncClient(u, api_key=api_key, concurrency=inflight)) for u in urls
        ]
        client = clients[0]
        why = await _answers(client)
        if why is not None:
            print(f"murmur: cannot reach {urls[0]}: {why}", file=sys.stderr)
            return 1
        via = []
        for u, c in zip(urls[1:], clients[1:], strict=True):
            why = await _answers(c)
            if why is None:
                via.append(c)
            else:
                print(f"murmur: {u} does not answer ({why}): not loading through it", file=sys.stderr)
        unit = "B" if total is not None else " tweets"
        bar = tqdm(total=total, unit=unit, unit_scale=True, desc="loading", file=sys.stderr, mininterval=0.5)

        async def read() -> AsyncIterator[list[Record]]:
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
                    yield ok

        def on_batch(batch: Sequence[Record], res: BulkResult) -> None:
            tally.responses += res.responses
            for rec, item in zip(batch, res.items, strict=True):
                if item.status == 0:  # never answered: the client says why
                    err = item.error
                    code, msg = (err.code, err.message) if err is not None else ("no_answer", "")
                    tally.on_reject(code, None, msg, rec.where)
                else:
                    tally.on_item(msgspec.to_builtins(item), rec.where)
            # stdin has no size: count tweets instead of bytes
            bar.update((source.bytes_now if total is not None else tally.seen) - bar.n)
            bar.set_postfix(tweets=f"{tally.seen:,}", refresh=False)

        try:
            await client.bulk_load(read(), concurrency=inflight, body=_tweet, on_batch=on_batch, via=via)
        finally:
            bar.close()
    for line in tally.report(time.monotonic() - started):
        print(line)
    return 1 if tally.responses == 0 and tally.seen > 0 else 0
