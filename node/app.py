"""One Murmur node: wires storage, the shard, the node service, the coordinator, the RPC server (TCP on the
gossip port) and the HTTP server under one nursery.

The thin Trio shell of the node. Recovery (snapshot + WAL tail) happens before any port opens; SIGTERM/SIGINT
stop serving, take a final snapshot and return. It holds no state of its own beyond the objects it wires.
"""

from __future__ import annotations

import fcntl
import gc
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import mmh3
import msgspec
import structlog
import trio

from node.cluster import rebalance as rb
from node.cluster.collector import Collector
from node.cluster.coordinator import ClusterCoordinator
from node.cluster.peers import READ_METHODS, Peers
from node.cluster.placement import Placement
from node.cluster.service import NodeService, node_handler
from node.config import Config
from node.errors import Conflict, MurmurError, Unavailable
from node.http.api import make_handler
from node.http.server import Request, Response, error_response, make_ssl_context, serve_http
from node.http.stats import NodeFigures, partition_health
from node.ids import MACHINE_BITS, MACHINE_MAX, MURMUR_EPOCH_MS, SEQ_BITS, SnowflakeGenerator
from node.membership.shell import GossipShell
from node.metrics import HttpMetrics
from node.replication import collection as col
from node.replication import messages as rm
from node.replication.hints import HintStore, hint_replay_loop
from node.ring import topology as tp
from node.ring.topology import Topology
from node.shard import Record, Shard, decode_record
from node.storage.background import snapshot_in_child
from node.storage.mode import StorageMode
from node.storage.recovery import open_storage
from node.storage.snapshot import fsync_dir, remove_temp_file
from node.transport.backoff import Backoff
from node.transport.client import open_peer_pool
from node.transport.server import serve_rpc

log = structlog.get_logger("murmur.node")
REPAIR_QUEUE_MAX = 64
GC_GEN0, GC_GEN1 = 700, 10  # CPython's defaults for the young generations
GC_GEN2_NEVER = 1 << 30  # young passes before a full one: never by count (see _full_gc)
GC_FULL_EVERY_S = 120.0  # a full pass this often (`gc_full` logs it: 26-90 ms ~1 M tweets into a full-corpus load)
DISCOVER_CALL_S = 2.0  # one seed's answer to "which topology?"
DISCOVER_TIMEOUT_S = 60.0  # --join waits this long for a seed to answer
JOIN_ATTEMPTS_MAX = 60  # a join retries (another change in progress, a member down) this often
JOIN_RETRY_S = 5.0
HINT_REPLAY_INTERVAL_S = 1.0  # how often hints for peers that are up again are replayed
CLEANUP_WAIT_S = 20.0  # POST /admin/cleanup answers with the result when done by then (else 202: still running)
SETTLE_CHECK_S = 0.25  # the index is settled (node/index/index.py: staged tweets get docnos and word pairs) once no
# tweet was staged during one such interval: a step of InvertedIndex.stage_step tweets (~4 ms) at a time
DRAIN_S = 5.0  # a stopping node waits this long for the HTTP requests under way (new ones get 503 meanwhile)


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


def admin_routes(
    me: str,
    keeper: rb.Keeper,
    nursery: trio.Nursery,
    leave: Callable[[], Awaitable[None]],
    snap: _Snapshotter,
    collector: Collector | None = None,
) -> dict[str, dict[str, Any]]:
    """The node's cluster operations over HTTP, for the admin role (node/http/auth.py checks it; the cluster secret
    never travels over HTTP): POST /admin/decommission (202: this node starts leaving; 409 while it cannot),
    GET /admin/topology, POST /admin/snapshot (202: a snapshot starts now, like Redis BGSAVE), POST /admin/cleanup
    (the data of ranges this node no longer replicates goes: 200 with what was dropped when done within
    CLEANUP_WAIT_S, else 202 and GET /admin/cleanup tells when it is; 409 while the ring moves). The cleanup
    runs in the node's nursery: a client that gives up does not stop it."""

    async def decommission(req: Request) -> Response:
        t = keeper.topology
        if keeper.state != "normal" or t.moving or keeper.changing.locked():
            why = t.change or keeper.state
            return error_response(Conflict(f"{me} cannot leave now: {why} is in progress"))
        try:
            tp.begin_leave(t, me, keeper.placement.n)
        except tp.TopologyError as e:
            return error_response(Conflict(str(e)))
        nursery.start_soon(_leave_logged, leave, me)
        return Response(202, msgspec.json.encode({"node": me, "status": "leaving", "topology": t.version}))

    async def topology(req: Request) -> Response:
        return Response(200, msgspec.json.encode(_topology_view(keeper)))

    async def snapshot(req: Request) -> Response:
        return Response(202, msgspec.json.encode({"node": me, "status": snap.request()}))

    async def cleanup(req: Request) -> Response:
        assert collector is not None
        if collector.cleaning:
            return error_response(Conflict(f"a cleanup is already running on {me}"))
        done = trio.Event()

        async def run() -> None:
            try:
                await collector.cleanup()
            except MurmurError:
                pass  # kept in collector.last_cleanup_error
            except Exception as e:  # housekeeping must never take the node down
                log.exception("cleanup_crashed", node=me)
                collector.last_cleanup_error = MurmurError(f"the cleanup failed: {e!r}")
            finally:
                done.set()

        nursery.start_soon(run)
        with trio.move_on_after(CLEANUP_WAIT_S):
            await done.wait()
        if not done.is_set():
            return Response(202, msgspec.json.encode({"node": me, "status": "running"}))
        if collector.last_cleanup_error is not None:
            return error_response(collector.last_cleanup_error)
        return Response(200, msgspec.json.encode(collector.last_cleanup))

    async def cleanup_status(req: Request) -> Response:
        assert collector is not None
        err = collector.last_cleanup_error
        body = {"node": me, "running": collector.cleaning, "last": collector.last_cleanup or None,
                "last_error": None if err is None else err.message}
        return Response(200, msgspec.json.encode(body))

    routes: dict[str, dict[str, Any]] = {"/admin/decommission": {"POST": decommission},
                                         "/admin/topology": {"GET": topology}, "/admin/snapshot": {"POST": snapshot}}
    if collector is not None:
        routes["/admin/cleanup"] = {"POST": cleanup, "GET": cleanup_status}
    return routes


async def _leave_logged(leave: Callable[[], Awaitable[None]], me: str) -> None:
    try:
        await leave()
    except (MurmurError, tp.TopologyError) as e:
        log.warning("decommission_failed", node=me, error=str(e))


def _topology_view(keeper: rb.Keeper) -> dict[str, Any]:
    t = keeper.topology

    def side(ms: Any) -> list[dict[str, Any]] | None:
        if ms is None:
            return None
        return [{"name": x.name, "host": x.host, "http_port": x.http_port, "gossip_port": x.gossip_port,
                 "machine_id": x.machine_id, "tokens": list(x.tokens)} for x in ms]

    return {"version": t.version, "members": side(t.members), "next": side(t.next), "change": t.change or None,
            "this_node": keeper.state, "last_error": keeper.last_error}


def describe(cfg: Config) -> dict[str, Any]:
    return {
        "cluster": cfg.cluster.name,
        "n": cfg.cluster.replication_factor,
        "w": cfg.cluster.write_quorum,
        "r": cfg.cluster.read_quorum,
        "vnodes": cfg.cluster.vnodes,
    }


def parse_seed(cfg: Config, seed: str) -> tuple[str, int]:
    """--join's seed: a node name of the config, or HOST:PORT of a running node's gossip (RPC) port."""
    if seed in cfg.names():
        n = cfg.node(seed)
        return n.host, n.gossip_port
    host, sep, port = seed.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"murmur: --join {seed!r}: give a node name of the config or HOST:PORT of its gossip port")
    return host, int(port)


async def discover(pool: Any, cfg: Config, name: str, join: str | None) -> Topology:
    """The topology of the running cluster, from the first seeds that answer (the highest version wins). With no
    answer: with --join, wait up to DISCOVER_TIMEOUT_S, then give up; without, this is a fresh cluster, whose
    topology is the config's (every node computes the same one)."""
    seeds = [(n.host, n.gossip_port) for n in cfg.nodes if n.name != name]
    if join is not None:
        seeds.insert(0, parse_seed(cfg, join))
    found: list[Topology] = []

    async def ask(addr: tuple[str, int]) -> None:
        try:
            body = await pool.call(addr, "TopologyReq", rm.encode(rm.TopologyReq()), DISCOVER_CALL_S)
            resp = rm.decode(body)
        except MurmurError:
            return
        if isinstance(resp, rm.TopologyResp) and resp.topology is not None:
            found.append(resp.topology)

    with trio.move_on_after(DISCOVER_TIMEOUT_S if join is not None else DISCOVER_CALL_S * 2):
        while not found:
            async with trio.open_nursery() as n:
                for addr in dict.fromkeys(seeds):
                    n.start_soon(ask, addr)
            if found or join is None:
                break
            await trio.sleep(1.0)
    if found:
        return max(found, key=lambda t: t.version)
    if join is not None:
        raise SystemExit(f"murmur: no seed answered within {DISCOVER_TIMEOUT_S:.0f} s (--join {join})")
    nodes = [(n.name, n.host, n.http_port, n.gossip_port, cfg.machine_id(n.name)) for n in cfg.nodes]
    return tp.initial(nodes, cfg.cluster.vnodes)


async def run_node(
    cfg: Config,
    name: str,
    join: str | None = None,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    me = cfg.node(name)
    node_dir = cfg.node_dir(name)
    with _data_dir_lock(node_dir):
        if (node_dir / rb.LEFT_FILE).exists():
            raise SystemExit(
                f"murmur: {name} was decommissioned; remove it from {cfg.path}, or delete {node_dir} to join it anew"
            )
        metrics = HttpMetrics()
        front = _Front(name)
        if cfg.http.tls_cert_file and cfg.http.tls_key_file:
            front.tls = make_ssl_context(str(cfg.file(cfg.http.tls_cert_file)), str(cfg.file(cfg.http.tls_key_file)))
        async with trio.open_nursery() as outer:
            # The port opens first, so that `murmur up` and probes see a node recovering (503, with its progress)
            # rather than a closed port, however long its recovery takes.
            port = await outer.start(
                partial(serve_http, front.handle, me.host, me.http_port, cfg.http, metrics=metrics, ssl_context=front.tls)
            )
            try:
                await _serve(cfg, name, join, front, metrics, port, task_status)
            finally:
                outer.cancel_scope.cancel()


class _Front:
    """The node's HTTP handler from the moment its port opens: while it recovers, /health answers 503
    {"status": "starting", "phase", "done", "total"} (what `murmur up` waits on while it moves) and every
    other request 503; once the node serves, everything goes to the API (`target`). On the way out (`drain`)
    new requests get 503 "stopping" while those under way finish, before the node's peer connections close: a
    request is answered whole or refused, never answered from a node that can no longer reach its peers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.phase = "opening storage"
        self.done = 0
        self.total = 0
        self.target: Any = None
        self.tls: Any = None
        self.stopping = False
        self._inflight = 0
        self._idle = trio.Event()

    async def handle(self, req: Request) -> Response:
        target = None if self.stopping else self.target
        if target is not None:
            self._inflight += 1
            try:
                return await target(req)  # type: ignore[no-any-return]
            finally:
                self._inflight -= 1
                if not self._inflight:
                    self._idle.set()
        status = "stopping" if self.stopping else "starting"
        if req.path == "/health":
            body = {"status": status, "node": self.name, "phase": self.phase, "done": self.done, "total": self.total}
            return Response(503, msgspec.json.encode(body), "application/json", [("retry-after", "1")])
        if self.stopping:
            return error_response(Unavailable(f"{self.name} is stopping; send the request to another node"))
        return error_response(Unavailable(f"{self.name} is starting ({self.phase}); retry"))

    async def drain(self, timeout_s: float = DRAIN_S) -> None:
        """Refuse new requests (503) and wait up to timeout_s for those under way to be answered."""
        self.stopping, self.phase = True, "stopping"
        with trio.move_on_after(timeout_s):
            while self._inflight:
                self._idle = trio.Event()
                await self._idle.wait()


def _replay(shard: Shard, records: list[tuple[int, bytes]], front: _Front) -> None:
    """The WAL tail, in a worker thread (nothing else touches the shard yet); progress for /health."""
    for k, (_lsn, payload) in enumerate(records):
        shard.apply(decode_record(payload))
        if not k & 1023:
            front.done = k
    front.done = len(records)


async def _serve(
    cfg: Config,
    name: str,
    join: str | None,
    front: _Front,
    metrics: HttpMetrics,
    port: int,
    task_status: trio.TaskStatus[int],
) -> None:
    """Recover, join the cluster and serve, behind the HTTP front that run_node opened first."""
    me = cfg.node(name)
    node_dir = cfg.node_dir(name)
    n_rep = cfg.cluster.replication_factor
    tls = front.tls
    mode = StorageMode(name)  # read-only while the disk fails or is too full: the WAL reports, writes ask
    storage = open_storage(node_dir / "storage", cfg.storage, load=Shard.load, mode=mode)  # undecodable: the older one
    front.phase = "loading the snapshot"
    t0 = trio.current_time()
    async with (
        storage as st,
        open_peer_pool(cfg.cluster.secret, name) as pool,
        open_peer_pool(cfg.cluster.secret, name) as read_pool,  # the searches' own connections (peers.READS)
    ):
        rec = st.take_recovered()
        shard = rec.state if rec.state is not None else Shard()  # loaded by open_storage, in a thread
        rec.close()
        t_snap = trio.current_time() - t0
        front.phase, front.total = "replaying the WAL", len(rec.records)
        await trio.to_thread.run_sync(_replay, shard, rec.records, front)  # the loop keeps answering /health
        front.phase = "joining the cluster"
        snap = _Snapshotter(shard, st, cfg, rec.snapshot_lsn, name)
        metrics.collect_storage_from(partial(_storage_figures, st, snap))
        wal_records = len(rec.records)
        del rec
        gc.collect()
        gc.freeze()  # the recovered state lives as long as the node: the collector never scans it again
        gc.set_threshold(GC_GEN0, GC_GEN1, GC_GEN2_NEVER)  # the oldest generation only by _full_gc (below)
        log.info(
            "recovered",
            node=name,
            tweets=len(shard.tweets),
            snapshot_lsn=snap.last_lsn,
            snapshot_s=round(t_snap, 3),
            wal_records=wal_records,
            outbox=len(shard.outbox),
            seconds=round(trio.current_time() - t0, 3),
        )
        topo = rb.load(node_dir) or await discover(pool, cfg, name, join)
        target: Topology | None = None  # the change this node runs after it starts serving
        if topo.member(name) is None:
            target = _begin_join(topo, cfg, name, cfg.machine_id(name))
        elif topo.moving and topo.change.split()[-1] == name:
            target = topo  # this node's own join or leave was interrupted: finish it
        mine = (target or topo).member(name)
        assert mine is not None
        placement = Placement(tp.ring_of(topo.members), n_rep)
        grace_ms = int(cfg.storage.tombstone_grace_s * 1000)
        hints = await HintStore.open(node_dir / "hints", ttl_ms=col.hint_ttl_ms(grace_ms), clock_ms=wall_ms)
        peers = Peers(name, pool, {}, read_pool)  # serves once the service and the keeper exist (node_handler below)
        service = NodeService(
            name, shard, st, placement, cfg.cluster.write_quorum, wall_ms, mode, peers=peers, hints=hints
        )
        ids = SnowflakeGenerator(mine.machine_id)
        # resume above this machine's newest id, but not past the clock: ids made from a client's
        # created_at do not move it (one vectorised pass over the id column)
        below = (wall_ms() + 1 - MURMUR_EPOCH_MS) << (SEQ_BITS + MACHINE_BITS)
        ids.observe(shard.store.max_id_with_low_bits(MACHINE_MAX, mine.machine_id, below), wall_ms())
        keeper = rb.Keeper(name, node_dir, topo, placement, service, peers)
        peers.serve(node_handler(service, keeper))
        await keeper.install(topo, rb.FORCE)  # persisted: a restart uses it, not the config
        peers.on_topology = keeper.catch_up
        seeds = [f"{h}:{p}" for h, p in peers.addrs.values() if (h, p) != (me.host, me.gossip_port)]
        gossip = GossipShell(
            name, me.host, me.gossip_port, cfg.membership, cfg.cluster.secret, pool, seeds, peers.set_state
        )
        peers.gossip = gossip
        share_cache: dict[int, tuple[dict[str, float], dict[str, int], int]] = {}

        def ring_figures() -> tuple[dict[str, float], dict[str, int], int]:
            v = keeper.topology.version
            if v not in share_cache:
                share_cache.clear()
                ring = placement.ring
                share_cache[v] = (
                    ring.shares(),
                    {nd: placement.partitions_held(nd) for nd in ring.nodes},
                    len(ring.partitions()),
                )
            return share_cache[v]

        def members() -> list[dict[str, Any]]:
            t = keeper.topology
            shares, held, total = ring_figures()
            out = []
            for nm in t.names():
                mb = t.member(nm)
                assert mb is not None
                out.append(
                    {
                        "name": nm,
                        "state": peers.state.get(nm, "unknown"),
                        "ring": t.role(nm),
                        "http": f"http://{mb.host}:{mb.http_port}",
                        "gossip": f"{mb.host}:{mb.gossip_port}",
                        "ring_share": round(shares.get(nm, 0.0), 4),
                        "partitions": {"replicated": held.get(nm, 0), "total": total},
                        "tweets": len(shard.tweets) if nm == name else peers.tweets.get(nm),
                    }
                )
            return out

        send_repairs, recv_repairs = trio.open_memory_channel[tuple[str, list[Record]]](REPAIR_QUEUE_MAX)
        info = describe(cfg)
        coord = ClusterCoordinator(
            name, placement, cfg.cluster.read_quorum, peers, ids, wall_ms, members, info, send_repairs,
            service=service, keeper=keeper,
        )
        collector = Collector(
            name, service, placement, keeper, cfg.storage.tombstone_grace_s,
            cfg.storage.tombstone_collect_interval_s, wall_ms, on_changed=snap.request,
        )

        def figures() -> NodeFigures:  # for /stats: O(1) sizes, and the ring's partitions with replicas up
            ring = placement.ring
            sets = [ring.preference_list(end, n_rep) for _start, end in ring.partitions()]
            is_up = lambda nd: nd == name or peers.is_up(nd)  # noqa: E731
            hints = service.hints
            return NodeFigures(
                tweets=len(shard.tweets),
                replication_lag_records=len(shard.outbox),
                hints_pending_records=sum(hints.pending(n) for n in hints.nodes_with_hints()) if hints else 0,
                index_bytes=shard.index.memory_bytes(),
                partitions=partition_health(sets, is_up, cfg.cluster.write_quorum, cfg.cluster.read_quorum),
            )

        async with trio.open_nursery() as nursery:
            leave = partial(_leave, keeper, n_rep, nursery.cancel_scope, node_dir, front)
            handler = make_handler(
                coord,
                metrics,
                cfg.http,
                name,
                auth=cfg.auth,
                admin_routes=admin_routes(name, keeper, nursery, leave, snap, collector),
                figures=figures,
            )
            await nursery.start(service.run)  # its background sends (fan-outs answered at W)
            await nursery.start(gossip.run)  # cancelled with the rest on SIGTERM: then it leaves (Left)
            lane = service.replica.lane
            await nursery.start(
                partial(
                    serve_rpc, peers.dispatch, me.host, me.gossip_port, cfg.cluster.secret, name,
                    # a search's call marks a search under way here too: this node's writers hold their next
                    # chunk back until it is answered (bounded, node/cluster/lanes.py), as for its own searches
                    urgent=lambda method: lane.searching() if method in READ_METHODS else None,
                )
            )
            front.target = handler  # the HTTP port has been open since start-up: from now on it serves
            nursery.start_soon(snap.run)
            nursery.start_soon(peers.count_loop)  # tweet counts for /cluster; liveness is gossip's
            nursery.start_soon(peers.repair_loop, recv_repairs)
            nursery.start_soon(service.outbox_loop)
            nursery.start_soon(service.anti_entropy_loop)
            nursery.start_soon(collector.run)  # tombstone collection passes (node/replication/collection.py)
            nursery.start_soon(_settle_index, shard)
            nursery.start_soon(_full_gc)

            async def send_hints(node: str, payloads: list[bytes]) -> None:
                await peers.call(node, rm.ApplyReq([decode_record(p) for p in payloads]))

            nursery.start_soon(
                partial(hint_replay_loop, hints, peers.is_up, send_hints, HINT_REPLAY_INTERVAL_S)
            )
            nursery.start_soon(_stop_on_signal, nursery.cancel_scope, name, front)
            if target is not None:
                if target.role(name) == "joining":
                    nursery.start_soon(_join, keeper, target, cfg, name)
                else:
                    nursery.start_soon(leave)
            scheme = "https" if tls is not None else "http"
            log.info("serving", node=name, url=f"{scheme}://{me.host}:{port}", rpc=f"{me.host}:{me.gossip_port}")
            task_status.started(port)
        front.stopping = True  # however the node stops: its peer connections are closed from here on
        with trio.CancelScope(shield=True):
            await snap.take("graceful stop")
        log.info("stopped", node=name)


def _storage_figures(st: Any, snap: _Snapshotter) -> dict[str, float | None]:
    """For /metrics (node/metrics.py STORAGE_FAMILIES)."""
    mode = st.mode
    return {
        "read_only": float(mode.read_only),
        "read_only_entered": float(mode.entered_total),
        "free_bytes": None if st.free_bytes is None else float(st.free_bytes),
        "wal_write_errors": float(st.stats.write_errors),
        "wal_fsync_errors": float(st.stats.fsync_errors),
        "wal_batches": float(st.stats.batches),
        "wal_records": float(st.stats.records),
        "wal_fsyncs": float(st.stats.fsyncs),
        "snapshots": float(snap.taken),
        "snapshots_failed": float(snap.failed),
    }


def _begin_join(t: Topology, cfg: Config, name: str, machine_id: int) -> Topology:
    me = cfg.node(name)
    return tp.begin_join(t, name, me.host, me.http_port, me.gossip_port, machine_id, cfg.cluster.vnodes)


async def _join(keeper: rb.Keeper, target: Topology, cfg: Config, name: str) -> None:
    """Join the ring (retrying while another change is in progress or a member is down), with the machine id
    chosen at the first attempt: the id generator already uses it."""
    mine = target.member(name)
    assert mine is not None
    for attempt in range(1, JOIN_ATTEMPTS_MAX + 1):
        try:
            await keeper.run(target)
            log.info("joined", node=name, version=keeper.topology.version)
            return
        except (MurmurError, tp.TopologyError) as e:
            log.warning("join_failed", node=name, attempt=attempt, error=str(e))
        await trio.sleep(JOIN_RETRY_S)
        t = keeper.topology
        if t.role(name) == "normal" and not t.moving:
            return  # joined after all (the settle reached us by catch-up)
        try:
            target = t if t.moving and t.change == f"join {name}" else _begin_join(t, cfg, name, mine.machine_id)
        except tp.TopologyError as e:
            log.warning("join_waiting", node=name, why=str(e))
    log.error("join_gave_up", node=name, attempts=JOIN_ATTEMPTS_MAX)


async def _leave(keeper: rb.Keeper, n: int, scope: trio.CancelScope, node_dir: Path, front: _Front) -> None:
    """Decommission this node: move its ranges to the others, settle the ring without it, mark its data dir
    so that it never rejoins by accident, then stop the process (requests under way answered first; gossip says
    Left on the way out)."""
    t = keeper.topology
    target = t if t.moving and t.change == f"leave {keeper.me}" else tp.begin_leave(t, keeper.me, n)
    await keeper.run(target)
    await trio.to_thread.run_sync(mark_decommissioned, node_dir, keeper.topology.version)
    log.info("decommissioned", node=keeper.me, version=keeper.topology.version)
    await front.drain()
    scope.cancel()


def mark_decommissioned(node_dir: Path, version: int) -> None:
    """The marker that keeps a node that left from rejoining by accident: fsynced, file and directory, so that it
    survives a power cut right after the node said it left."""
    path = node_dir / rb.LEFT_FILE
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"left the ring at topology version {version}\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(node_dir)


async def _settle_index(shard: Shard) -> None:
    """When writes pause, the tweets the index still stages get their docnos and word pairs, a step at a time
    (other tasks run between steps; a write arriving stops it: the lowest staged go first, in id order)."""
    seen = -1
    while True:
        await trio.sleep(SETTLE_CHECK_S)
        ix = shard.index  # replaced when a snapshot is loaded
        while ix.staged_count() and ix.arrivals == seen and ix is shard.index:
            ix.settle(ix.stage_step)
            await trio.lowlevel.checkpoint()
        seen = shard.index.arrivals


async def _full_gc(every_s: float = GC_FULL_EVERY_S) -> None:
    """The collector's pass over the oldest generation, on a clock instead of by allocation counts.

    Every posting list longer than 32 (an array: the collector tracks arrays) lives in the oldest generation, and by
    allocation counts a pass over it ran every 1-2 s during a load (34-54 ms at 300 k tweets a node, before the term
    dict and the staged tweets were made untracked: see node/index/postings.py), collecting nothing (the index and
    the store hold no cycles). Those passes were nearly every step over 30 ms in a 300 k load
    (MURMUR_SLOW_STEP_MS=30: 23 of 25 slow steps on a node were `gc_pause`). The
    young generations still run by allocation counts (they find trio's short-lived cycles); the full pass runs
    every GC_FULL_EVERY_S, so cycles that got old are still freed."""
    while True:
        await trio.sleep(every_s)
        started = time.perf_counter()
        found = gc.collect()
        log.info("gc_full", ms=round((time.perf_counter() - started) * 1000, 1), collected=found)


async def _stop_on_signal(scope: trio.CancelScope, name: str, front: _Front) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for sig in signals:
            log.info("stopping", node=name, signal=signal.Signals(sig).name)
            await front.drain()  # a second signal meanwhile is not needed: the drain is bounded
            scope.cancel()
            return


class _Snapshotter:
    """Snapshots in a child process (node/storage/background.py), so the node keeps serving while one is written:
    once `snapshot_wal_records` WAL records are new (each node at its own point), every `snapshot_interval_s`
    when `snapshot_min_records` are new (each node at its own offset), on request (POST /admin/snapshot,
    `murmur snapshot`), and once at a graceful stop. One at a time; the WAL it covers is deleted after it.

    A snapshot that fails (a full disk, an I/O error, the child killed) never ends the node: its temp file is
    removed, it is logged and counted, and it is tried again RETRY_MIN_S .. RETRY_MAX_S later (doubling, as
    Redis retries a failed BGSAVE), a request or the graceful stop at once. The WAL it would have let go stays."""

    CHECK_S = 1.0
    RETRY_MIN_S = 5.0
    RETRY_MAX_S = 300.0

    def __init__(self, shard: Shard, st: Any, cfg: Config, snapshot_lsn: int, name: str) -> None:
        self.shard, self.st, self.cfg = shard, st, cfg
        self.last_lsn = snapshot_lsn
        spread = (mmh3.hash(name, signed=False) % 1000) / 1000  # 0 <= spread < 1, fixed per node
        self.records_at = int(cfg.storage.snapshot_wal_records * (0.75 + 0.5 * spread))
        self.offset_s = cfg.storage.snapshot_interval_s * spread
        self.running = False
        self._asked = trio.Event()
        self.taken = 0
        self.failed = 0  # snapshots that did not get written, since start
        self.backoff = Backoff(self.RETRY_MIN_S, self.RETRY_MAX_S)
        self.retry = False  # the last one failed: try again once the backoff allows
        self.last: dict[str, Any] = {}  # the last snapshot's figures, or its error

    def request(self) -> str:
        """Start one now (at the next check); -> 'started' or 'running' (one is being written: that one counts)."""
        if self.running:
            return "running"
        self._asked.set()
        return "started"

    async def run(self) -> None:
        interval = self.cfg.storage.snapshot_interval_s
        next_scheduled = trio.current_time() + (interval + self.offset_s if interval > 0 else float("inf"))
        while True:
            with trio.move_on_after(self.CHECK_S):
                await self._asked.wait()
            new = self.st.last_lsn - self.last_lsn
            why = None
            may = self.backoff.may_attempt(trio.current_time())
            if self._asked.is_set():
                self._asked = trio.Event()
                why = "requested"
            elif not may:
                pass  # the last one failed: not again before its backoff ends (the schedule waits too)
            elif self.retry:
                why = "retry"
            elif self.records_at and new >= self.records_at:
                why = "wal records"
            elif trio.current_time() >= next_scheduled:
                next_scheduled = trio.current_time() + interval
                if new >= self.cfg.storage.snapshot_min_records:
                    why = "schedule"
            if why is not None:
                await self.take(why)

    async def take(self, why: str) -> None:
        lsn = self.st.last_lsn
        if lsn == self.last_lsn or self.running:
            return
        self.running = True
        t0 = trio.current_time()
        try:
            # The child sees the state at the fork, which holds every record with an lsn <= lsn: a batch is
            # applied whole before the WAL hands out its lsns (it may yield while applying, but it gets no lsn
            # until every record of it is applied), so an applied record may lack an lsn, never the reverse.
            size = await snapshot_in_child(self.st.directory, lsn, self.shard.dump_parts)
        except OSError as e:
            self.failed += 1
            self.retry = True
            delay = self.backoff.on_failure(trio.current_time(), random.random())
            self.last = {"error": str(e), "why": why, "at_lsn": lsn}
            log.error("snapshot_failed", why=why, lsn=lsn, error=str(e), failed=self.failed, retry_in_s=round(delay, 1))
            # The child removes its temp file itself unless it was killed: then this one does.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(remove_temp_file, self.st.directory, lsn)
            return
        finally:
            self.running = False
        self.last_lsn = lsn
        self.taken += 1
        self.retry = False
        self.backoff.on_success()
        try:
            deleted = await self.st.snapshot_written(lsn)
        except OSError as e:  # the snapshot holds; the next one deletes what this could not
            log.error("wal_truncate_failed", lsn=lsn, error=str(e))
            deleted = 0
        seconds = round(trio.current_time() - t0, 3)
        self.last = {"lsn": lsn, "bytes": size, "seconds": seconds, "why": why, "wal_segments_deleted": deleted}
        log.info("snapshot", why=why, lsn=lsn, bytes=size, seconds=seconds, wal_segments_deleted=deleted)
