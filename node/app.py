"""One Murmur node: wires storage, the shard, the coordinator and the HTTP server under one nursery.

The thin Trio shell of the node. Recovery (snapshot + WAL tail) happens before the port opens; SIGTERM/SIGINT
stop serving, take a final snapshot and return. It never holds state of its own beyond the objects it wires.
"""

from __future__ import annotations

import fcntl
import os
import signal
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import trio

from node.config import Config
from node.http.api import make_handler
from node.http.server import serve_http
from node.ids import SnowflakeGenerator
from node.local_coordinator import LocalCoordinator
from node.metrics import HttpMetrics
from node.shard import Shard, decode_record
from node.storage.recovery import open_storage

log = structlog.get_logger("murmur.node")


@contextmanager
def _data_dir_lock(d: Path):  # type: ignore[no-untyped-def]
    """One process per data directory: a second node on the same files would corrupt them."""
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"murmur: {d} is in use by another node process") from None
        yield
    finally:
        os.close(fd)


def cluster_description(cfg: Config, name: str) -> dict[str, Any]:
    me = cfg.node(name)
    return {
        "cluster": cfg.cluster.name,
        "n": cfg.cluster.replication_factor,
        "w": cfg.cluster.write_quorum,
        "r": cfg.cluster.read_quorum,
        "vnodes": cfg.cluster.vnodes,
        "coordinator": name,
        "members": [
            {
                "name": me.name,
                "state": "up",
                "http": cfg.url(me.name),
                "gossip": f"{me.host}:{me.gossip_port}",
                "ring_share": 1.0,
                "partitions": {"total": 1, "healthy": 1},
            }
        ],
    }


async def run_node(cfg: Config, name: str, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    me = cfg.node(name)
    node_dir = cfg.node_dir(name)
    with _data_dir_lock(node_dir):
        async with open_storage(node_dir / "storage", cfg.storage) as st:
            t0 = trio.current_time()
            rec = st.take_recovered()
            shard = Shard.load(rec.snapshot_blob) if rec.snapshot_blob is not None else Shard()
            for _lsn, payload in rec.records:
                shard.apply(decode_record(payload))
            log.info(
                "recovered",
                node=name,
                tweets=len(shard.tweets),
                snapshot_lsn=rec.snapshot_lsn,
                wal_records=len(rec.records),
                seconds=round(trio.current_time() - t0, 3),
            )
            coord = LocalCoordinator(
                shard, st, SnowflakeGenerator(cfg.machine_id(name)), node_name=name,
                cluster=cluster_description(cfg, name),
            )
            metrics = HttpMetrics()
            handler = make_handler(coord, metrics, cfg.http, name)
            snap = _Snapshotter(shard, st, cfg, rec.snapshot_lsn)
            del rec
            async with trio.open_nursery() as nursery:
                port = await nursery.start(partial(serve_http, handler, me.host, me.http_port, cfg.http, metrics=metrics))
                nursery.start_soon(snap.run)
                nursery.start_soon(_stop_on_signal, nursery.cancel_scope, name)
                log.info("serving", node=name, url=f"http://{me.host}:{port}")
                task_status.started(port)
            with trio.CancelScope(shield=True):
                await snap.take("graceful stop")
            log.info("stopped", node=name)


async def _stop_on_signal(scope: trio.CancelScope, name: str) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for sig in signals:
            log.info("stopping", node=name, signal=signal.Signals(sig).name)
            scope.cancel()
            return


class _Snapshotter:
    """Takes a snapshot every `snapshot_interval_s` when enough has changed, and once at a graceful stop."""

    def __init__(self, shard: Shard, st: Any, cfg: Config, recovered_lsn: int) -> None:
        self.shard, self.st, self.cfg = shard, st, cfg
        self.last_lsn = recovered_lsn

    async def run(self) -> None:
        interval = self.cfg.storage.snapshot_interval_s
        if interval <= 0:
            await trio.sleep_forever()
        while True:
            await trio.sleep(interval)
            if self.st.last_lsn - self.last_lsn >= self.cfg.storage.snapshot_min_records:
                await self.take("schedule")

    async def take(self, why: str) -> None:
        lsn = self.st.last_lsn
        if lsn == self.last_lsn:
            return
        t0 = trio.current_time()
        blob = self.shard.dump()  # synchronous: the state and `lsn` are read at the same instant
        await self.st.snapshot(lsn, blob)
        self.last_lsn = lsn
        log.info("snapshot", why=why, lsn=lsn, bytes=len(blob), seconds=round(trio.current_time() - t0, 3))
