"""One Murmur node: wires storage, the shard, the node service, the coordinator, the RPC server (TCP on the
gossip port) and the HTTP server under one nursery.

The thin Trio shell of the node. Recovery (snapshot + WAL tail) happens before any port opens; SIGTERM/SIGINT
stop serving, take a final snapshot and return. It holds no state of its own beyond the objects it wires.
"""

from __future__ import annotations

import fcntl
import hmac
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import trio

from node.cluster.coordinator import ClusterCoordinator
from node.cluster.peers import Peers
from node.cluster.placement import Placement
from node.cluster.service import NodeService
from node.config import Config
from node.errors import MurmurError, NotFound
from node.http.api import make_handler
from node.http.server import Request, Response, error_response, serve_http
from node.ids import SnowflakeGenerator
from node.membership.shell import GossipShell
from node.metrics import HttpMetrics
from node.replication import messages as rm
from node.replication.hints import HintStore, hint_replay_loop
from node.ring.ring import Ring
from node.shard import Record, Shard, decode_record
from node.storage.recovery import open_storage
from node.transport.client import open_peer_pool
from node.transport.server import serve_rpc

log = structlog.get_logger("murmur.node")
REPAIR_QUEUE_MAX = 64
HINT_REPLAY_INTERVAL_S = 1.0  # how often hints for peers that are up again are replayed


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@contextmanager
def _data_dir_lock(d: Path) -> Iterator[None]:
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


class Forbidden(MurmurError):
    status = 403
    code = "forbidden"


def internal_handler(secret: str, me: str, peers: Peers) -> Any:
    """/internal/ over HTTP: refuses anything without the cluster secret (header x-murmur-secret)."""

    async def handle(req: Request) -> Response:
        given = req.header(b"x-murmur-secret") or b""
        if not hmac.compare_digest(given, secret.encode()):
            return error_response(Forbidden("internal endpoints need the cluster secret", "x-murmur-secret"))
        if req.path == "/internal/peers":
            import msgspec

            return Response(200, msgspec.json.encode({"node": me, "peers": peers.state}))
        return error_response(NotFound(f"no internal endpoint {req.path}"))

    return handle


def describe(cfg: Config, ring: Ring, placement: Placement) -> dict[str, Any]:
    return {
        "cluster": cfg.cluster.name,
        "n": cfg.cluster.replication_factor,
        "w": cfg.cluster.write_quorum,
        "r": cfg.cluster.read_quorum,
        "vnodes": cfg.cluster.vnodes,
        "partitions": len(ring.partitions()),
    }


async def run_node(cfg: Config, name: str, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    me = cfg.node(name)
    node_dir = cfg.node_dir(name)
    ring = Ring.build(cfg.names(), cfg.cluster.vnodes)
    placement = Placement(ring, cfg.cluster.replication_factor)
    shares = ring.shares()
    held = {n: placement.partitions_held(n) for n in cfg.names()}
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
                outbox=len(shard.outbox),
                seconds=round(trio.current_time() - t0, 3),
            )
            snap = _Snapshotter(shard, st, cfg, rec.snapshot_lsn)
            del rec
            service = NodeService(name, shard, st, placement, cfg.cluster.write_quorum, wall_ms)
            service.hints = await HintStore.open(node_dir / "hints")
            ids = SnowflakeGenerator(cfg.machine_id(name))
            for i in shard.tweets:
                ids.observe(i)
            addrs = {n.name: (n.host, n.gossip_port) for n in cfg.nodes}
            async with open_peer_pool(cfg.cluster.secret, name) as pool:
                peers = Peers(name, service, pool, addrs)
                service.peers = peers
                service.is_up = peers.is_up
                seeds = [f"{n.host}:{n.gossip_port}" for n in cfg.nodes if n.name != name]
                gossip = GossipShell(
                    name, me.host, me.gossip_port, cfg.membership, cfg.cluster.secret, pool, seeds, peers.set_state
                )
                peers.gossip = gossip

                def members() -> list[dict[str, Any]]:
                    return [
                        {
                            "name": n.name,
                            "state": peers.state.get(n.name, "unknown"),
                            "http": cfg.url(n.name),
                            "gossip": f"{n.host}:{n.gossip_port}",
                            "ring_share": round(shares.get(n.name, 0.0), 4),
                            "partitions": {"replicated": held[n.name], "total": len(ring.partitions())},
                            "tweets": len(shard.tweets) if n.name == name else peers.tweets.get(n.name),
                        }
                        for n in cfg.nodes
                    ]

                send_repairs, recv_repairs = trio.open_memory_channel[tuple[str, list[Record]]](REPAIR_QUEUE_MAX)
                coord = ClusterCoordinator(
                    name,
                    placement,
                    cfg.cluster.read_quorum,
                    peers,
                    ids,
                    wall_ms,
                    members,
                    describe(cfg, ring, placement),
                    send_repairs,
                )
                coord.service = service
                metrics = HttpMetrics()
                handler = make_handler(
                    coord, metrics, cfg.http, name, internal_handler=internal_handler(cfg.cluster.secret, name, peers)
                )
                async with trio.open_nursery() as nursery:
                    await nursery.start(gossip.run)  # cancelled with the rest on SIGTERM: then it leaves (Left)
                    await nursery.start(partial(serve_rpc, peers.dispatch, me.host, me.gossip_port, cfg.cluster.secret, name))
                    port = await nursery.start(partial(serve_http, handler, me.host, me.http_port, cfg.http, metrics=metrics))
                    nursery.start_soon(snap.run)
                    nursery.start_soon(peers.count_loop)  # tweet counts for /cluster; liveness is gossip's
                    nursery.start_soon(peers.repair_loop, recv_repairs)
                    nursery.start_soon(service.outbox_loop)
                    nursery.start_soon(service.anti_entropy_loop)

                    async def send_hints(node: str, payloads: list[bytes]) -> None:
                        await peers.call(node, rm.ApplyReq([decode_record(p) for p in payloads]))

                    nursery.start_soon(
                        partial(hint_replay_loop, service.hints, peers.is_up, send_hints, HINT_REPLAY_INTERVAL_S)
                    )
                    nursery.start_soon(_stop_on_signal, nursery.cancel_scope, name)
                    log.info("serving", node=name, url=f"http://{me.host}:{port}", rpc=f"{me.host}:{me.gossip_port}")
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

    def __init__(self, shard: Shard, st: Any, cfg: Config, snapshot_lsn: int) -> None:
        self.shard, self.st, self.cfg = shard, st, cfg
        self.last_lsn = snapshot_lsn

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
