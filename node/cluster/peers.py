"""Calls between nodes: one entry point, `call(node, request)`, that runs locally for this node and over the
framed RPC transport for the others; the liveness view that gossip (node.membership.shell) keeps up to date
(with the addresses of the topology's members, which grows when nodes join); and
the server-side dispatch of incoming RPC frames ("gossip.*" to the gossip shell, the rest to the handler this
node serves: `serve`, node/cluster/service.py's node_handler). The thin shell around node.transport; it decides
nothing about liveness itself. Made before the service (which calls out through it), so its handler is registered
by `serve` once the service exists; until then, calls to this node are refused as "still starting".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import trio

from node.cluster import limits
from node.errors import InvalidRequest, MurmurError, Unavailable
from node.replication import messages as m
from node.shard import Record

log = structlog.get_logger("murmur.peers")

# The searches' calls: they go over a connection of their own to each peer, so that a search's small frame never
# waits behind the write path's large ones (a replicated batch of ~1,000 records is ~0.3 MB to send, read, verify
# and decode) on the same stream; Cassandra keeps small and large messages on separate connections for the same
# reason.
READS = (m.WindowReq, m.ProbeReq, m.GetReq, m.QueryReq, m.DigestQueryReq)
READ_METHODS = frozenset(getattr(c, "rpc_name", c.__name__) for c in READS)  # their RPC method names
UP_STATES = ("alive", "suspect", "unknown")  # suspect still routes (SWIM); "unknown": configured, not heard of yet
OnChange = Callable[[str, str], None]
Handler = Callable[[Any, str], Awaitable[Any]]  # (request, calling node) -> answer; raises MurmurError


async def call_local(handler: Handler, req: Any, me: str, timeout_s: float) -> Any:
    """A call to this node's own handler, with the same deadline and the same error as a remote call."""
    try:
        with trio.fail_after(timeout_s):
            return await handler(req, me)
    except trio.TooSlowError:
        raise Unavailable(f"{type(req).__name__} on this node took longer than {timeout_s} s") from None


class Peers:
    def __init__(self, me: str, pool: Any, addrs: dict[str, tuple[str, int]], read_pool: Any = None) -> None:
        self.me = me
        self._handler: Handler | None = None  # this node's dispatch, once it serves (see `serve`)
        self.pool = pool
        self.read_pool = pool if read_pool is None else read_pool  # for READS
        self.addrs = addrs
        # gossip's view: "alive" | "suspect" | "dead" | "left"; "unknown" for a configured node not heard of yet
        self.state: dict[str, str] = {n: ("alive" if n == me else "unknown") for n in addrs}
        self.tweets: dict[str, int] = {}  # tweets each up peer held at its last count (count_loop)
        self._suspect_since: dict[str, float] = {}  # trio time each suspect member became suspect
        self.gossip: Any = None  # the GossipShell, once wired: receives the "gossip.*" RPC methods
        self._listeners: list[OnChange] = []
        # told of a peer's newer topology version (node.cluster.rebalance.Keeper.catch_up)
        self.on_topology: Callable[[str, int], Awaitable[None]] | None = None

    def serve(self, handler: Handler) -> None:
        """Answer calls to this node (its own and incoming frames) with `handler` from now on."""
        self._handler = handler

    def _handle(self) -> Handler:
        if self._handler is None:
            raise Unavailable("this node is still starting")
        return self._handler

    def add_member(self, node: str, addr: tuple[str, int]) -> None:
        """A node of the topology (one that joined after this process started, or moved address)."""
        self.addrs[node] = addr
        self.state.setdefault(node, "alive" if node == self.me else "unknown")

    def is_up(self, node: str) -> bool:
        """Whether to route to `node`: alive or suspect (SWIM: a suspect may just be slow), or a configured node
        gossip has not told us about yet; False once gossip says dead or left."""
        return self.state.get(node, "unknown") in UP_STATES

    def suspected_for(self, node: str) -> float:
        """Seconds `node` has been suspect without interruption (0.0 when it is not suspect)."""
        since = self._suspect_since.get(node)
        return 0.0 if since is None else trio.current_time() - since

    def on_change(self, fn: OnChange) -> None:
        """Call fn(node, state) after every change of a member's state (including this node's own). fn runs in
        the gossip task: it must not block or raise (hand work to a task, e.g. with send_nowait)."""
        self._listeners.append(fn)

    def set_state(self, node: str, state: str) -> None:
        """The gossip shell's report of a member's new state; logs it and tells the listeners."""
        if self.state.get(node) == state:
            return  # e.g. a refutation: a new incarnation, the same state
        self.state[node] = state
        if state == "suspect":
            try:
                self._suspect_since[node] = trio.current_time()
            except RuntimeError:  # outside a Trio run (a unit test): suspected for as long as can be
                self._suspect_since[node] = float("-inf")
        else:
            self._suspect_since.pop(node, None)
        if state not in UP_STATES:
            self.tweets.pop(node, None)
        elif state == "alive" and node in self.addrs and hasattr(self.pool, "retry_now"):
            self.pool.retry_now(self.addrs[node])
            if self.read_pool is not self.pool:
                self.read_pool.retry_now(self.addrs[node])
        log.info("member_state", peer=node, state=state)
        for fn in self._listeners:
            fn(node, state)

    async def call(self, node: str, req: Any, timeout_s: float = limits.RPC_TIMEOUT_S) -> Any:
        if node == self.me:
            return await call_local(self._handle(), req, self.me, timeout_s)
        method = getattr(req, "rpc_name", type(req).__name__)
        pool = self.read_pool if isinstance(req, READS) else self.pool
        body = await pool.call(self.addrs[node], method, m.encode(req), timeout_s)
        return m.decode(body)

    async def dispatch(self, method: str, body: bytes, peer: str) -> bytes:
        """The RPC server's entry: decode, check the method names the message, handle, encode."""
        if method.startswith("gossip."):
            if self.gossip is None:
                raise Unavailable("gossip is not running on this node yet")
            body_out: bytes = await self.gossip.handle_rpc(method, body, peer)
            return body_out
        try:
            # ApplyReq keeps its records' bytes: the replica logs what it received, without encoding it again
            req = m.decode_apply_raw(body) if method == "ApplyReq" else m.decode(body)
        except Exception as e:  # msgspec.DecodeError / ValidationError: a malformed frame body
            raise InvalidRequest(f"undecodable {method} request: {e}") from None
        if getattr(req, "rpc_name", type(req).__name__) != method:
            raise InvalidRequest(f"method {method} does not match its body {type(req).__name__}")
        return m.encode(await self._handle()(req, peer))

    async def count_loop(self) -> None:
        """Tweet counts for /cluster only: liveness is gossip's. Every PEER_PING_INTERVAL_S, each peer gossip
        deems up is asked its count; a peer that does not answer shows no count (None) until it does."""
        while True:
            async with trio.open_nursery() as n:
                for node in self.addrs:
                    if node != self.me and self.is_up(node):
                        n.start_soon(self._count, node)
            await trio.sleep(limits.PEER_PING_INTERVAL_S)

    async def _count(self, node: str) -> None:
        try:
            resp = await self.call(node, m.PingReq(), timeout_s=limits.PEER_PING_INTERVAL_S)
            self.tweets[node] = resp.tweets
        except MurmurError:
            self.tweets.pop(node, None)
            return
        if self.on_topology is not None:
            await self.on_topology(node, resp.topology)

    async def repair_loop(self, repairs: trio.MemoryReceiveChannel[tuple[str, list[Record]]]) -> None:
        async for node, recs in repairs:
            try:
                await self.call(node, m.ApplyReq(recs))
                log.info("read_repair", to=node, records=len(recs))
            except MurmurError as e:
                log.info("read_repair_failed", to=node, error=e.code)
