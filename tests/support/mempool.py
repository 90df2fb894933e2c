"""An in-process cluster for tests of the node's shells: real NodeServices, ClusterCoordinators, Peers (and Keepers
when given a data dir), wired as node/app.py wires them, with the RPC pool replaced by `MemPool`, which carries
each call through msgpack to the other node's Peers.dispatch (remote errors come back as the transport's
RpcError subclasses). A node can be cut off (calls to and from it fail like an unreachable peer, and the others'
membership view says dead). Test code: no sockets, no real clock of its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from node.cluster import rebalance as rb
from node.cluster.coordinator import ClusterCoordinator
from node.cluster.peers import Peers
from node.cluster.placement import Placement
from node.cluster.service import NodeService, node_handler
from node.errors import MurmurError
from node.ids import SnowflakeGenerator
from node.replication import messages as m
from node.ring import topology as tp
from node.shard import DeleteTweet, PutTweet, Record, Shard
from node.transport.errors import PeerUnavailable, RpcTimeout, remote_error

NOW_MS = 1_700_000_000_000
NAMES = ("a", "b", "c")


class MemLog:
    def __init__(self) -> None:
        self.records: list[bytes] = []

    async def append(self, payloads: list[bytes]) -> int:
        self.records.extend(payloads)
        return len(self.records)


class MemPool:
    """node.transport.client.PeerPool's `call`, in memory."""

    def __init__(self, cluster: MemCluster, me: str) -> None:
        self.cluster, self.me = cluster, me

    async def call(self, addr: tuple[str, int], method: str, body: bytes, timeout_s: float) -> bytes:
        cl = self.cluster
        node = cl.by_addr.get(addr)
        if node is None or node in cl.down or self.me in cl.down:
            raise PeerUnavailable(f"{addr} is unreachable")
        req = m.decode(body)
        if cl.on_request is not None:
            cl.on_request(node, req)
        if isinstance(req, m.ApplyReq) and not req.fence and any(isinstance(r, PutTweet | DeleteTweet)
                                                                   for r in req.records):
            cl.repaired[node] += 1  # an unfenced tweet record: a repair (no anti-entropy loop runs here)
        try:
            with trio.fail_after(timeout_s):
                if node in cl.hung or self.me in cl.hung:
                    await trio.sleep_forever()
                if cl.slow_reads_s and isinstance(req, m.GetReq | m.DigestQueryReq):  # the reads of a search
                    await trio.sleep(cl.slow_reads_s)
                await trio.lowlevel.checkpoint()
                return await cl.peers[node].dispatch(method, body, self.me)
        except trio.TooSlowError:
            raise RpcTimeout(f"{method} to {node} timed out") from None
        except MurmurError as e:
            raise remote_error(e.code, e.message, e.field) from None


class MemCluster:
    def __init__(
        self,
        names: tuple[str, ...] = NAMES,
        *,
        n: int = 3,
        w: int = 2,
        r: int = 2,
        vnodes: int = 8,
        repairs: bool = False,
        data_dir: Path | None = None,
        repair_queue: int | None = None,
        clock_ms: Callable[[], int] = lambda: NOW_MS,
    ) -> None:
        """`clock_ms`: the services' wall clock (the coordinators' stays at NOW_MS)."""
        self.names = list(names)
        self.down: set[str] = set()
        self.hung: set[str] = set()  # take calls and never answer (their peers still see them alive)
        self.slow_reads_s = 0.0
        self.on_request: Callable[[str, Any], None] | None = None
        self.repaired: Counter[str] = Counter()
        topo = tp.initial([(x, "127.0.0.1", 9000 + i, 9100 + i, i + 1) for i, x in enumerate(names)], vnodes)
        self.by_addr = {(mb.host, mb.gossip_port): mb.name for mb in topo.members}
        self.services: dict[str, NodeService] = {}
        self.peers: dict[str, Peers] = {}
        self.coords: dict[str, ClusterCoordinator] = {}
        self.placements: dict[str, Placement] = {}
        self.keepers: dict[str, rb.Keeper] = {}
        self.repair_channels: dict[str, tuple[trio.MemorySendChannel[tuple[str, list[Record]]],
                                              trio.MemoryReceiveChannel[tuple[str, list[Record]]]]] = {}
        if repairs and repair_queue is None:
            from node.app import REPAIR_QUEUE_MAX

            repair_queue = REPAIR_QUEUE_MAX
        for i, x in enumerate(names):
            placement = self.placements[x] = Placement(tp.ring_of(topo.members), n)
            peers = self.peers[x] = Peers(x, MemPool(self, x), {mb.name: (mb.host, mb.gossip_port)
                                                                 for mb in topo.members})
            for y in names:
                peers.set_state(y, "alive")
            svc = self.services[x] = NodeService(x, Shard(), MemLog(), placement, w, clock_ms, peers=peers)
            if data_dir is not None:
                (data_dir / x).mkdir(parents=True, exist_ok=True)
                keeper = self.keepers[x] = rb.Keeper(x, data_dir / x, topo, placement, svc, peers)
                peers.serve(node_handler(svc, keeper))
                peers.on_topology = keeper.catch_up
            else:
                peers.serve(svc.handle)
            send = None
            if repair_queue is not None:
                send, recv = trio.open_memory_channel[tuple[str, list[Record]]](repair_queue)
                self.repair_channels[x] = (send, recv)
            self.coords[x] = ClusterCoordinator(
                x, placement, r, peers, SnowflakeGenerator(i + 1), lambda: NOW_MS,
                lambda: [{"name": y, "state": "alive"} for y in self.names], {}, send, service=svc,
            )

    def cut(self, node: str) -> None:
        """Calls to and from `node` fail; the others' membership says it is dead."""
        self.down.add(node)
        for x in self.names:
            if x != node:
                self.peers[x].set_state(node, "dead")

    def hang(self, node: str) -> None:
        """Calls to and from `node` are taken and never answered (a paused process, a silent link): each
        caller's deadline runs out; membership keeps it alive."""
        self.hung.add(node)

    def heal(self) -> None:
        self.hung.clear()
        for node in self.down:
            for x in self.names:
                self.peers[x].set_state(node, "alive")
        self.down.clear()

    def start_repairs(self, nursery: trio.Nursery) -> None:
        """Every node's read-repair loop (node.cluster.peers.Peers.repair_loop), as node/app.py starts it."""
        for x, (_send, recv) in self.repair_channels.items():
            nursery.start_soon(self.peers[x].repair_loop, recv)
