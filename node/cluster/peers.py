"""Calls between nodes: one entry point, `call(node, request)`, that runs locally for this node and over the
framed RPC transport for the others; the static membership's liveness view (pings) for /cluster and /health;
and the server-side dispatch of incoming RPC frames. The thin shell around node.transport.
"""

from __future__ import annotations

from typing import Any

import structlog
import trio

from node.cluster import limits
from node.errors import InvalidRequest, MurmurError
from node.replication import messages as m
from node.shard import Record

log = structlog.get_logger("murmur.peers")


class Peers:
    def __init__(self, me: str, service: Any, pool: Any, addrs: dict[str, tuple[str, int]]) -> None:
        self.me = me
        self.service = service
        self.pool = pool
        self.addrs = addrs
        self.state: dict[str, str] = {n: ("up" if n == me else "unknown") for n in addrs}
        self.tweets: dict[str, int] = {}  # tweets each peer held at its last ping

    async def call(self, node: str, req: Any, timeout_s: float = limits.RPC_TIMEOUT_S) -> Any:
        if node == self.me:
            with trio.fail_after(timeout_s):
                return await self.service.handle(req, self.me)
        body = await self.pool.call(self.addrs[node], type(req).__name__, m.encode(req), timeout_s)
        return m.decode(body)

    async def dispatch(self, method: str, body: bytes, peer: str) -> bytes:
        """The RPC server's entry: decode, check the method names the message, handle, encode."""
        try:
            req = m.decode(body)
        except Exception as e:  # msgspec.DecodeError / ValidationError: a malformed frame body
            raise InvalidRequest(f"undecodable {method} request: {e}") from None
        if type(req).__name__ != method:
            raise InvalidRequest(f"method {method} does not match its body {type(req).__name__}")
        return m.encode(await self.service.handle(req, peer))

    async def ping_loop(self) -> None:
        """Static membership for now: a peer is up while it answers a ping within the interval."""
        while True:
            async with trio.open_nursery() as n:
                for node in self.addrs:
                    if node != self.me:
                        n.start_soon(self._ping, node)
            await trio.sleep(limits.PEER_PING_INTERVAL_S)

    async def _ping(self, node: str) -> None:
        try:
            resp = await self.call(node, m.PingReq(), timeout_s=limits.PEER_PING_INTERVAL_S)
            self.tweets[node] = resp.tweets
            state = "up"
        except MurmurError:
            state = "down"
        if self.state.get(node) != state:
            log.info("peer_state", peer=node, state=state)
        self.state[node] = state

    async def repair_loop(self, repairs: trio.MemoryReceiveChannel[tuple[str, list[Record]]]) -> None:
        async for node, recs in repairs:
            try:
                await self.call(node, m.ApplyReq(recs))
                log.info("read_repair", to=node, records=len(recs))
            except MurmurError as e:
                log.info("read_repair_failed", to=node, error=e.code)
