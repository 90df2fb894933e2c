"""The gossip shell (node/membership/shell.py) with real sockets: three shells on loopback in one trio process, each
with its RPC server (PushPull) routed through Peers.dispatch, as in a node. Checks joining, leaving and rejoining,
that bad packets are dropped without effect, and the [membership] config table."""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial

import msgspec
import pytest
import trio

from node.cluster.peers import Peers
from node.config import parse_config
from node.errors import ConfigError, InvalidRequest
from node.membership import messages as m
from node.membership.config import MembershipConfig
from node.membership.shell import GossipShell, open_packet, split_addr
from node.replication import messages as rm
from node.transport.client import open_peer_pool
from node.transport.server import serve_rpc
from tests.support.procs import free_port

HOST = "127.0.0.1"
SECRET = "shell-secret"
FAST = MembershipConfig(probe_interval_s=0.1, probe_timeout_s=0.05, gossip_interval_s=0.02, suspicion_mult=4)
WAIT_S = 10.0  # generous: the machine is shared; the conditions are normally met well under a second


class Node:
    def __init__(self, name: str, ports: dict[str, int]) -> None:
        self.name, self.ports = name, ports
        self.port = ports[name]
        self.scope = trio.CancelScope()
        self.stopped = trio.Event()  # set once the shell has left and closed its socket
        self.seen: list[tuple[str, str]] = []  # every (member, state) change reported to Peers' listeners
        self.peers: Peers
        self.shell: GossipShell

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._serve(task_status)
        finally:
            self.stopped.set()

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        with self.scope:
            async with open_peer_pool(SECRET, self.name) as pool:
                addrs = {n: (HOST, p) for n, p in self.ports.items()}
                self.peers = Peers(self.name, pool, addrs)
                self.peers.on_change(lambda node, state: self.seen.append((node, state)))
                seeds = [f"{HOST}:{p}" for n, p in self.ports.items() if n != self.name]
                self.shell = GossipShell(
                    self.name, HOST, self.port, FAST, SECRET, pool, seeds, self.peers.set_state, random.Random(self.name)
                )
                self.peers.gossip = self.shell
                async with trio.open_nursery() as n:
                    await n.start(self.shell.run)
                    await n.start(partial(serve_rpc, self.peers.dispatch, HOST, self.port, SECRET, self.name))
                    task_status.started()


async def until(cond: Callable[[], bool], what: str) -> float:
    """Seconds until `cond()` holds, polling; fails after WAIT_S."""
    t0 = trio.current_time()
    with trio.move_on_after(WAIT_S):
        while True:  # polling, not an Event: the conditions span several objects
            if cond():
                return trio.current_time() - t0
            await trio.sleep(0.01)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


def all_alive(nodes: list[Node]) -> bool:
    return all(a.peers.state.get(b.name) == "alive" for a in nodes for b in nodes)


def three() -> list[Node]:
    names = ["a", "b", "c"]
    ports = {n: free_port() for n in names}
    return [Node(n, ports) for n in names]


def test_three_shells_join_then_one_leaves_and_rejoins() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = three()
            for nd in nodes:
                await nursery.start(nd.serve)
            await until(lambda: all_alive(nodes), "all three see each other alive")
            a, b, c = nodes
            assert a.peers.is_up("c") and a.shell.state_of("c") == "alive"

            c.scope.cancel()  # a graceful stop: c gossips Left before its socket closes
            await until(lambda: a.peers.state["c"] == "left" and b.peers.state["c"] == "left", "c seen left")
            assert not a.peers.is_up("c") and not b.peers.is_up("c")
            assert ("c", "left") in a.seen

            await c.stopped.wait()
            c2 = Node("c", c.ports)  # the same name and port, a fresh core at incarnation 0: it must out-bid Left
            await nursery.start(c2.serve)
            await until(lambda: all_alive([a, b, c2]), "c alive again everywhere")
            assert a.peers.is_up("c") and a.seen[-1] == ("c", "alive")
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_bad_packets_are_dropped_and_a_good_one_is_not() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = three()
            for nd in nodes:
                await nursery.start(nd.serve)
            a = nodes[0]
            await until(lambda: all_alive(nodes), "all three see each other alive")
            rumour = m.encode(m.Gossip("x", [m.Suspect("b", 5, "x")]))
            bad = [
                m.seal(b"another-secret", rumour),  # a bad seal
                m.seal(SECRET.encode(), rumour)[:-1] + b"\x00",  # tampered after sealing
                bytes(m.PACKET_BYTES_MAX + 100),  # oversized
                b"\x01" + bytes(40),  # garbage
                m.seal(SECRET.encode(), b"\xc1\xff\x00"),  # sealed, but not msgpack
                m.seal(SECRET.encode(), m.encode(m.PushPull("x", "1.2.3.4:1", [], False))),  # never over UDP
                b"",
            ]
            udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with udp:
                for pkt in bad:
                    await udp.sendto(pkt, (HOST, a.port))
                await until(lambda: a.shell.dropped >= len(bad), "every bad packet counted as dropped")
                await trio.sleep(0.2)
                assert a.shell.dropped == len(bad)
                assert ("b", "suspect") not in a.seen and a.peers.state["b"] == "alive"
                # the same rumour sealed with the cluster secret is believed (until b refutes it)
                await udp.sendto(m.seal(SECRET.encode(), rumour), (HOST, a.port))
                await until(lambda: ("b", "suspect") in a.seen, "a believes the sealed rumour")
                await until(lambda: a.peers.state["b"] == "alive", "b refutes it")
                assert a.shell.core.member("b") is not None and a.shell.core.member("b").incarnation > 5  # type: ignore[union-attr]
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_push_pull_rpc_refuses_bad_requests() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = three()
            await nursery.start(nodes[0].serve)
            a = nodes[0]
            good = m.PushPull("b", f"{HOST}:{nodes[1].port}", [m.MemberState("b", 0, f"{HOST}:{nodes[1].port}", 0)], False)
            with pytest.raises(InvalidRequest):  # in another node's name
                await a.peers.dispatch("gossip.PushPull", m.encode(good), "c")
            with pytest.raises(InvalidRequest):
                await a.peers.dispatch("gossip.PushPull", b"\xff\x00garbage", "b")
            with pytest.raises(InvalidRequest):  # a reply is not a request
                await a.peers.dispatch("gossip.PushPull", m.encode(msgspec.structs.replace(good, reply=True)), "b")
            with pytest.raises(InvalidRequest):
                await a.peers.dispatch("gossip.Ping", m.encode(m.Ping(1, "b", "a", [])), "b")
            assert a.shell.state_of("b") is None  # nothing was merged
            reply = m.decode(await a.peers.dispatch("gossip.PushPull", m.encode(good), "b"))
            assert isinstance(reply, m.PushPull) and reply.reply and reply.src == "a"
            assert a.shell.state_of("b") == "alive"
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_open_packet_and_split_addr() -> None:
    key = b"k"
    ping = m.Ping(7, "a", "b", [m.Alive("c", 1, "h:1")])
    assert open_packet(key, m.seal(key, m.encode(ping))) == ping
    assert open_packet(b"other", m.seal(key, m.encode(ping))) is None
    assert open_packet(key, bytes(m.PACKET_BYTES_MAX + 1)) is None
    rng = random.Random(3)
    for _ in range(300):  # random bytes, sealed or not, never raise
        junk = rng.randbytes(rng.randrange(0, 200))
        open_packet(key, junk)
        open_packet(key, m.seal(key, junk))
    assert split_addr("127.0.0.1:7101") == ("127.0.0.1", 7101)
    assert split_addr("[::1]:7101") == ("::1", 7101)
    for bad in ("", "host", "host:", ":1", "h:0", "h:70000", "h:x1"):
        assert split_addr(bad) is None


def test_peers_is_up_and_change_listeners() -> None:
    p = Peers("a", None, {"a": (HOST, 1), "b": (HOST, 2), "c": (HOST, 3)})
    got: list[tuple[str, str]] = []
    p.on_change(lambda node, state: got.append((node, state)))
    assert p.state == {"a": "alive", "b": "unknown", "c": "unknown"}
    assert p.is_up("a") and p.is_up("b")  # never heard of yet: routable until gossip says otherwise
    for state, up in (("alive", True), ("suspect", True), ("dead", False), ("left", False), ("alive", True)):
        p.set_state("b", state)
        assert p.is_up("b") is up, state
    p.set_state("b", "alive")  # no change: no call
    assert got == [("b", "alive"), ("b", "suspect"), ("b", "dead"), ("b", "left"), ("b", "alive")]


def test_searches_call_peers_over_their_own_connections() -> None:
    """A search's calls (peers.READS) go through the read pool, the write path's through the other: a replicated
    batch never holds a search's frame up on the same stream."""
    calls: list[tuple[str, str]] = []

    class FakePool:
        def __init__(self, name: str) -> None:
            self.name = name

        async def call(self, addr: tuple[str, int], method: str, body: bytes, timeout_s: float) -> bytes:
            calls.append((self.name, method))
            return rm.encode(rm.WindowResp([]) if method == "WindowReq" else rm.ApplyResp(0))

    p = Peers("a", FakePool("writes"), {"a": (HOST, 1), "b": (HOST, 2)}, FakePool("reads"))

    async def main() -> None:
        await p.call("b", rm.WindowReq([]))
        await p.call("b", rm.ApplyReq([]))

    trio.run(main)
    assert calls == [("reads", "WindowReq"), ("writes", "ApplyReq")]


CONF = """
[cluster]
replication_factor = 1
write_quorum = 1
read_quorum = 1
[[nodes]]
name = "n1"
"""


def _parse(extra: str) -> MembershipConfig:
    import tomllib

    return parse_config(tomllib.loads(extra + CONF), "/tmp/cluster.toml").membership


def test_membership_config_table() -> None:
    assert _parse("") == MembershipConfig()
    got = _parse("[membership]\nprobe_interval_s = 0.2\nprobe_timeout_s = 0.1\nindirect_checks = 2\n")
    assert (got.probe_interval_s, got.probe_timeout_s, got.indirect_checks) == (0.2, 0.1, 2)
    assert got.suspicion_mult == MembershipConfig().suspicion_mult
    for extra, key in (
        ("[membership]\nprobe_intervals = 1.0\n", "membership.probe_intervals"),
        ('[membership]\nprobe_interval_s = "fast"\n', "membership.probe_interval_s"),
        ("[membership]\nprobe_timeout_s = 2.0\n", "membership.probe_timeout_s"),  # not below probe_interval_s
        ("[membership]\ngossip_nodes = -1\n", "membership.gossip_nodes"),
        ("membership = 3\n", "membership"),
    ):
        with pytest.raises(ConfigError) as e:
            _parse(extra)
        assert e.value.key == key, (extra, e.value)


def test_a_forged_left_does_not_keep_a_node_out() -> None:
    """One sealed packet Left(a, 2**63-1) to every peer is not believed; Left(a, INCARNATION_MAX-1), the largest
    believed, keeps a out only until its next probe of a peer: it refutes, and the refutation fits the bounds."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = three()
            for nd in nodes:
                await nursery.start(nd.serve)
            a, b, c = nodes
            await until(lambda: all_alive(nodes), "all three see each other alive")
            udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with udp:
                for limit in (2**63 - 1, m.INCARNATION_MAX):
                    packet = m.seal(SECRET.encode(), m.encode(m.Gossip("x", [m.Left("a", limit)])))
                    for nd in (b, c):
                        await udp.sendto(packet, (HOST, nd.port))
                await until(lambda: b.shell.received >= 1 and c.shell.received >= 1, "the packets arrived")
                await trio.sleep(0.3)
                assert ("a", "left") not in b.seen and ("a", "left") not in c.seen
                believed = m.seal(SECRET.encode(), m.encode(m.Gossip("x", [m.Left("a", m.INCARNATION_MAX - 1)])))
                for nd in (b, c):
                    await udp.sendto(believed, (HOST, nd.port))
                await until(lambda: ("a", "left") in b.seen and ("a", "left") in c.seen, "the forgery is believed")
                await until(lambda: b.peers.state["a"] == "alive" and c.peers.state["a"] == "alive", "a is back")
                assert a.shell.core.incarnation == m.INCARNATION_MAX
            nursery.cancel_scope.cancel()

    trio.run(main)
