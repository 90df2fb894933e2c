"""Benchmark (a program, not a test): WAL appends/s, 1 vs 32 concurrent appenders, per fsync policy.

Run: .venv/bin/python tests/storage/bench_wal.py [--seconds 3] [--dir /path/on/the/disk/to/measure]
Prints numbers with units and the machine; the 1-appender fsync=always line is the baseline the others compare to.
Never fails on a timing.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import trio

from node.config import StorageConfig
from node.storage.wal import open_wal

PAYLOAD = bytes(200)


async def run(directory: Path, policy: str, appenders: int, seconds: float) -> tuple[float, float]:
    cfg = StorageConfig(fsync=policy)  # type: ignore[arg-type]
    count = 0
    async with open_wal(directory, cfg) as wal:
        deadline = time.perf_counter() + seconds

        async def one() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                await wal.append([PAYLOAD])
                count += 1

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(appenders):
                nursery.start_soon(one)
        elapsed = time.perf_counter() - t0
        per_batch = wal.stats.records / max(1, wal.stats.batches)
    return count / elapsed, per_batch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir under the current one)")
    args = ap.parse_args()
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"
    )
    print(f"payload: {len(PAYLOAD)} bytes, one record per append, {args.seconds:.0f} s per run")
    baseline = None
    for policy in ("always", "never", "everysec"):
        for appenders in (1, 32):
            with tempfile.TemporaryDirectory(prefix="bench-wal-", dir=args.dir or ".") as d:
                rate, per_batch = trio.run(run, Path(d), policy, appenders, args.seconds)
            baseline = baseline or rate
            print(
                f"fsync={policy:<8} appenders={appenders:>2}: {rate:>9,.0f} appends/s "
                f"({per_batch:5.1f} records per group commit, x{rate / baseline:.1f} vs always/1)"
            )


if __name__ == "__main__":
    main()
