"""Topology changes, the thin Trio shell around node/ring/topology.py: keeps this node's topology (persisted next to
its data), switches the placement when a new one is installed, answers the topology messages, and runs a join or
a leave end to end (install the moving ring everywhere, stream at every gainer, settle everywhere).

It never changes data itself (streaming is the node service's) and never installs a topology out of turn: an
install names the version it replaces (compare-and-set), so two changes cannot interleave.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import structlog
import trio

from node.cluster import limits
from node.errors import Conflict, MurmurError, Unavailable
from node.replication import messages as m
from node.ring import topology as tp
from node.ring.topology import Topology
from node.storage.mode import StorageError

log = structlog.get_logger("murmur.rebalance")

TOPOLOGY_FILE = "topology.msgpack"
LEFT_FILE = "DECOMMISSIONED"  # a node that left keeps it: it refuses to start (and rejoin) by accident
FORCE = -1  # InstallReq.base that adopts any newer version (an abort, or a node catching up)
MEMBERS_UP_TIMEOUT_S = 20.0  # a change waits this long for every member to be alive in gossip
STREAM_ATTEMPTS_MAX = 3  # a gainer's pull is tried this often before the change is aborted

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Topology)


def load(node_dir: Path) -> Topology | None:
    p = node_dir / TOPOLOGY_FILE
    return _dec.decode(p.read_bytes()) if p.exists() else None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Keeper:
    """This node's topology: persisted before it is used, installed into the placement, peers and service."""

    def __init__(self, me: str, node_dir: Path, topology: Topology, placement: Any, service: Any, peers: Any) -> None:
        self.me = me
        self.node_dir = node_dir
        self.topology = topology
        self.placement, self.service, self.peers = placement, service, peers
        self._lock = trio.Lock()  # one install at a time
        self.changing = trio.Lock()  # one change run by this node at a time
        self.last_error: str | None = None  # why the last change this node ran failed
        self._use(topology)

    @property
    def state(self) -> str:
        """This node's part in the ring: normal, joining, leaving, or left."""
        return self.topology.role(self.me)

    def _use(self, t: Topology) -> None:
        nxt = tp.ring_of(t.next) if t.next is not None else None
        self.placement.install(tp.ring_of(t.members), nxt)
        for mb in (*t.members, *(t.next or ())):
            self.peers.add_member(mb.name, (mb.host, mb.gossip_port))
        self.service.topology_changed(t.version)
        log.info("topology", version=t.version, members=[mb.name for mb in t.members], change=t.change or None)

    async def _persist(self, t: Topology) -> None:
        try:
            await trio.to_thread.run_sync(_write_atomic, self.node_dir / TOPOLOGY_FILE, _enc.encode(t))
        except OSError as e:  # a full disk: this install is refused (503), the node lives on
            raise StorageError(f"{self.me} cannot persist topology {t.version}: {e}") from e

    async def install(self, t: Topology, base: int) -> m.InstallResp:
        """Adopt `t` when this node's version is `base` (or any older one, with base FORCE), then wait for the
        writes started under older versions to end, so that a stream that follows sees them."""
        async with self._lock:
            cur = self.topology
            if t != cur:
                if t.version <= cur.version or (base != FORCE and cur.version != base):
                    return m.InstallResp(False, cur.version)
                await self._persist(t)
                self.topology = t
                self._use(t)
        ok = await self.service.drain_before(t.version, limits.INSTALL_TIMEOUT_S)
        return m.InstallResp(ok, self.topology.version)

    async def handle(self, req: Any) -> Any:
        if isinstance(req, m.TopologyReq):
            return m.TopologyResp(self.topology)
        if isinstance(req, m.InstallReq):
            return await self.install(req.topology, req.base)
        if isinstance(req, m.StreamReq):
            t = self.topology
            if t.version != req.version or t.next is None:
                raise Conflict(f"stream for topology {req.version}, this node has {t.version}")
            tweets, postings = await self.service.stream_gained(tp.ring_of(t.members), tp.ring_of(t.next))
            return m.StreamResp(tweets, postings)
        raise MurmurError(f"unexpected message {type(req).__name__}")

    async def catch_up(self, node: str, version: int) -> None:
        """A peer reported a newer topology (it was installed while this node was away): fetch and adopt it."""
        if version <= self.topology.version:
            return
        try:
            resp = await self.peers.call(node, m.TopologyReq())
        except MurmurError:
            return
        if resp.topology is not None and resp.topology.version > self.topology.version:
            try:
                await self.install(resp.topology, FORCE)
            except MurmurError as e:  # tried again at the next count round
                log.warning("topology_catch_up_failed", version=resp.topology.version, error=str(e))

    # ------------------------------------------------------------ running a change

    async def _all(self, nodes: list[str], make: Callable[[str], Any], timeout_s: float) -> dict[str, Any]:
        """Send make(node) to each node in parallel (this one locally); -> node -> answer or the MurmurError."""
        out: dict[str, Any] = {}

        async def one(node: str) -> None:
            try:
                out[node] = await self.peers.call(node, make(node), timeout_s=timeout_s)
            except MurmurError as e:
                out[node] = e

        async with trio.open_nursery() as n:
            for node in nodes:
                n.start_soon(one, node)
        return out

    async def _install_all(self, t: Topology, base: int, names: list[str]) -> list[str]:
        """Install `t` on these nodes. -> the nodes that did not take it (refused or unreachable)."""
        got = await self._all(names, lambda _n: m.InstallReq(t, base), limits.INSTALL_TIMEOUT_S)
        return [n for n, r in got.items() if not (isinstance(r, m.InstallResp) and r.ok)]

    async def _wait_members_up(self, names: list[str]) -> None:
        with trio.move_on_after(MEMBERS_UP_TIMEOUT_S):
            while True:
                down = [n for n in names if n != self.me and self.peers.state.get(n) != "alive"]
                if not down:
                    return
                await trio.sleep(0.2)
        raise Unavailable(f"every member must be alive for a topology change; not alive: {', '.join(down)}")

    async def run(self, target: Topology, progress: Callable[[str], Awaitable[None]] | None = None) -> Topology:
        """Carry out the move `target` (a moving topology one version above ours, from topology.begin_*), or finish
        the one already installed. -> the settled topology. On failure the move is aborted (settled back on the
        old ring) and MurmurError raised."""
        async with self.changing:
            if self.topology != target:
                await self._wait_members_up([n for n in target.names() if n != self.me])
                base = self.topology.version
                refused = await self._install_all(target, base, target.names())
                if refused:
                    await self._abort(target, f"not installed on {', '.join(sorted(refused))}")
            for attempt in range(1, STREAM_ATTEMPTS_MAX + 1):
                assert target.next is not None
                got = await self._all(
                    [mb.name for mb in target.next], lambda _n: m.StreamReq(target.version), limits.STREAM_TIMEOUT_S
                )
                failed = {n: r for n, r in got.items() if not isinstance(r, m.StreamResp)}
                pulled = {n: (r.tweets, r.postings) for n, r in got.items() if isinstance(r, m.StreamResp)}
                log.info("streams", version=target.version, attempt=attempt, pulled=pulled, failed=list(failed))
                if not failed:
                    break
                if attempt == STREAM_ATTEMPTS_MAX:
                    why = "; ".join(f"{n}: {getattr(e, 'message', e)}" for n, e in failed.items())
                    await self._abort(target, f"streaming failed: {why}")
                await trio.sleep(1.0)
            final = tp.finish(target)
            missed = await self._install_all(final, target.version, target.names())
            if missed:  # safe: they keep writing to both rings until they catch up from a peer (Keeper.catch_up)
                log.warning("settle_missed", version=final.version, nodes=missed)
            self.last_error = None
            log.info("topology_settled", version=final.version, change=target.change)
            return final

    async def _abort(self, target: Topology, why: str) -> None:
        self.last_error = f"{target.change} aborted: {why}"
        log.warning("topology_change_aborted", change=target.change, why=why)
        back = tp.abort(target)
        await self._install_all(back, FORCE, target.names())
        raise Unavailable(self.last_error)
