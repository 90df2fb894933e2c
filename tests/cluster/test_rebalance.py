"""The topology shell's rules, on real objects of one node (service, placement, peers; no network): installs are
compare-and-set on the version and persisted first, a stream names the version it belongs to, a change waits a
bounded time for every member to be alive, a postings source whose cursor does not advance is given up, and a
--join seed is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from node.app import parse_seed
from node.cluster import rebalance as rb
from node.cluster.peers import Peers
from node.cluster.placement import Placement
from node.cluster.service import NodeService, node_handler
from node.config import parse_config
from node.errors import Conflict, MurmurError, Unavailable
from node.replication import messages as m
from node.ring import topology as tp
from node.shard import Shard

NODES = [(n, "127.0.0.1", 7000 + i, 7100 + i, i + 1) for i, n in enumerate(["a", "b", "c", "d"])]


class MemLog:
    async def append(self, payloads: list[bytes]) -> int:
        return len(payloads)


def keeper(tmp_path: Path, topo: tp.Topology) -> tuple[rb.Keeper, NodeService, Peers]:
    peers = Peers("a", None, {})
    svc = NodeService(
        "a", Shard(), MemLog(), Placement(tp.ring_of(topo.members), 3), 2, lambda: 1_700_000_000_000, peers=peers
    )
    k = rb.Keeper("a", tmp_path, topo, svc.placement, svc, peers)
    peers.serve(node_handler(svc, k))
    return k, svc, peers


def test_install_is_compare_and_set_persisted_and_switches_the_placement(tmp_path: Path) -> None:
    base = tp.initial(NODES[:3], 8)
    k, svc, peers = keeper(tmp_path, base)
    moving = tp.begin_join(base, "d", "127.0.0.1", 7003, 7103, 4, 8)

    async def main() -> None:
        assert await k.install(moving, base.version + 5) == m.InstallResp(False, base.version)  # wrong base
        assert k.topology == base and rb.load(tmp_path) is None
        assert await k.install(moving, base.version) == m.InstallResp(True, moving.version)
        assert rb.load(tmp_path) == moving and svc.topology_version == moving.version
        assert svc.placement.next_ring is not None and "d" in peers.addrs and k.state == "normal"
        assert (await k.install(moving, base.version)).ok  # the same topology again: an idempotent retry
        assert not (await k.install(base, rb.FORCE)).ok  # FORCE never goes back to an older version
        settled = tp.finish(moving)
        assert (await k.install(settled, rb.FORCE)).ok and svc.placement.next_ring is None
        with pytest.raises(Conflict, match=f"stream for topology {moving.version}"):
            await k.handle(m.StreamReq(moving.version))  # settled since: the stream belongs to an old move

    trio.run(main)


def test_a_change_waits_a_bounded_time_for_every_member_to_be_alive(tmp_path: Path) -> None:
    base = tp.initial(NODES[:3], 8)
    k, _svc, peers = keeper(tmp_path, base)
    peers.state.update(b="alive", c="dead")
    target = tp.begin_leave(base, "a", 2)

    async def main() -> None:
        t0 = trio.current_time()
        with pytest.raises(Unavailable, match="not alive: c"):
            await k.run(target)
        assert trio.current_time() - t0 == pytest.approx(rb.MEMBERS_UP_TIMEOUT_S, abs=0.5)
        assert k.topology == base  # nothing was installed

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


class StuckSource:
    """A postings source that keeps sending the same cursor."""

    async def call(self, node: str, req: Any, timeout_s: float = 5.0) -> Any:
        assert isinstance(req, m.PostingsReq)
        return m.PostingsResp([("t", [1, 2])], "t")


def test_a_postings_source_whose_cursor_does_not_advance_is_given_up() -> None:
    topo = tp.initial(NODES[:3], 8)
    svc = NodeService(
        "a", Shard(), MemLog(), Placement(tp.ring_of(topo.members), 3), 2, lambda: 1_700_000_000_000,
        peers=StuckSource(),
    )

    async def main() -> None:
        with pytest.raises(MurmurError, match="does not advance"):
            await svc.streaming.pull_postings("b", [(0, 0)])

    trio.run(main)
    assert svc.shard.unsure == {"t"}  # what came before the stall is kept (it is only ever extra candidates)


def test_join_seed_is_a_node_name_or_host_and_port() -> None:
    cfg = parse_config(
        {
            "cluster": {"name": "t", "replication_factor": 1, "write_quorum": 1, "read_quorum": 1, "secret": "s"},
            "nodes": [{"name": "n1", "host": "127.0.0.1", "http_port": 7001, "gossip_port": 7101}],
        },
        "/tmp/cluster.toml",
    )
    assert parse_seed(cfg, "n1") == ("127.0.0.1", 7101)
    assert parse_seed(cfg, "10.0.0.2:7105") == ("10.0.0.2", 7105)
    for bad in ("nowhere", "host:", ":7101", "host:port", "host:70000"):
        with pytest.raises(SystemExit, match="--join"):
            parse_seed(cfg, bad)
