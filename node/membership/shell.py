"""The Trio shell of gossip membership: one UDP socket on (host, gossip_port) for sealed SWIM packets, a timer that
ticks the pure core (swim.py) at its deadlines, and PushPull (full state) over the node RPC transport, which listens
on the same port number over TCP. No membership logic lives here, and no packet, whatever its bytes, may crash it.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
import trio

from node.errors import InvalidRequest, MurmurError
from node.membership import messages as m
from node.membership.config import MembershipConfig
from node.membership.swim import Membership, MemberView, Outgoing, State
from node.transport.errors import ProtocolError

log = structlog.get_logger("murmur.gossip")

PUSH_PULL_METHOD = "gossip.PushPull"  # the RPC method name; Peers.dispatch routes every "gossip." method here
PUSH_PULL_TIMEOUT_S = 5.0  # one PushPull call, connect included
PUSH_PULL_INFLIGHT_MAX = 8  # PushPulls we run at once; more are dropped (anti-entropy comes round again anyway)
JOIN_RETRY_MIN_S = 0.5  # while no seed has answered, the join is retried after this, doubling ...
JOIN_RETRY_MAX_S = 5.0  # ... up to this (nodes started together come up in any order)
LEAVE_TIMEOUT_S = 1.0  # a graceful stop gossips its Left for at most this long before the socket closes
RECV_BYTES = m.PACKET_BYTES_MAX + 1  # a datagram that fills this buffer is oversized (and dropped)

OnChange = Callable[[str, str], None]  # (member name, "alive" | "suspect" | "dead" | "left"); must not block or raise


def state_name(s: State) -> str:
    return s.name.lower()


def split_addr(addr: str) -> tuple[str, int] | None:
    """'host:port' (or '[v6]:port') -> (host, port); None for anything else (addresses come off the wire)."""
    host, sep, port = addr.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def open_packet(secret: bytes, data: bytes) -> m.Message | None:
    """The message of a UDP datagram, or None if it is oversized, not sealed with `secret`, undecodable, or of a
    kind that never travels over UDP."""
    if len(data) > m.PACKET_BYTES_MAX:
        return None
    payload = m.open_sealed(secret, data)
    if payload is None:
        return None
    try:
        msg = m.decode(payload)
    except msgspec.MsgspecError:  # DecodeError / ValidationError: malformed or out of bounds
        return None
    return msg if isinstance(msg, m.PACKET_TYPES) else None


class GossipShell:
    """Create inside trio (it reads trio.current_time()), then `await nursery.start(shell.run)`; RPC calls of
    `gossip.*` go to `handle_rpc`. Cancelling `run` leaves the cluster gracefully (bounded by LEAVE_TIMEOUT_S)."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        config: MembershipConfig,
        secret: str,
        pool: Any,
        seeds: list[str],
        on_change: OnChange | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.host, self.port = host, port
        self.addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.secret = secret.encode()
        self.pool = pool  # anything with `async call(addr, method, body, timeout_s) -> bytes` (PeerPool)
        self.seeds = [s for s in seeds if s != self.addr]
        self.on_change = on_change
        self.core = Membership(
            name, self.addr, config, rng or random.Random(secrets.randbits(64)), trio.current_time()
        )
        self.dropped = 0  # datagrams refused (bad seal, oversized, undecodable); for logs and tests
        self.received = 0  # datagrams handed to the core
        self._sock: trio.socket.SocketType | None = None
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()  # set when the core's next deadline may have moved earlier
        self._joined = False  # a PushPull went through with someone: stop retrying the join
        self._push_pulls = 0

    # -- views --

    def members(self) -> dict[str, MemberView]:
        return self.core.members()

    def state_of(self, node: str) -> str | None:
        v = self.core.member(node)
        return None if v is None else state_name(v.state)

    # -- the service --

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, join the seeds, then receive and tick until cancelled; then leave. Starts with the bound port."""
        family = trio.socket.AF_INET6 if ":" in self.host else trio.socket.AF_INET
        sock = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
        try:
            await sock.bind((self.host, self.port))
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"cannot listen for gossip on udp {self.addr}: {e.strerror or e}") from e
        self._sock = sock
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._receive_loop)
                nursery.start_soon(self._timer_loop)
                nursery.start_soon(self._join_loop)
                log.info("gossip_listening", node=self.name, addr=self.addr, seeds=len(self.seeds))
                task_status.started(sock.getsockname()[1])
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._leave()
            sock.close()
            self._sock = None

    async def handle_rpc(self, method: str, body: bytes, peer: str) -> bytes:
        """A PushPull request from `peer` (the RPC handshake's authenticated name): merge, answer our full state."""
        if method != PUSH_PULL_METHOD:
            raise InvalidRequest(f"no gossip method {method!r}", "method")
        try:
            msg = m.decode(body)
        except msgspec.MsgspecError as e:
            raise InvalidRequest(f"undecodable {method} request: {e}") from None
        if not isinstance(msg, m.PushPull) or msg.reply:
            raise InvalidRequest(f"{method} needs a PushPull request, got {type(msg).__name__}")
        if msg.src != peer:
            raise InvalidRequest(f"{peer!r} sent a PushPull in the name of {msg.src!r}")
        out = self.core.on_message(msg, msg.src_addr, trio.current_time())
        self._joined = True
        replies = [o.msg for o in out if isinstance(o.msg, m.PushPull) and o.msg.reply]
        assert len(replies) == 1, "a PushPull request is answered exactly once"
        await self._after_core([o for o in out if o.msg is not replies[0]])
        return m.encode(replies[0])

    # -- tasks --

    async def _receive_loop(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, src = await self._sock.recvfrom(RECV_BYTES)
            except OSError as e:  # e.g. an ICMP error surfacing on the socket: not fatal for a datagram socket
                log.debug("gossip_recv_error", error=str(e))
                continue
            msg = open_packet(self.secret, data)
            if msg is None:
                self.dropped += 1
                if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8...: a flood cannot flood the log
                    log.warning("gossip_packet_dropped", src=f"{src[0]}:{src[1]}", bytes=len(data), total=self.dropped)
                continue
            self.received += 1
            await self._after_core(self.core.on_message(msg, f"{src[0]}:{src[1]}", trio.current_time()))

    async def _timer_loop(self) -> None:
        while True:
            self._wake = trio.Event()
            with trio.move_on_at(self.core.next_deadline()):
                await self._wake.wait()
            # tick runs only what is due, so an early wake-up is harmless
            await self._after_core(self.core.tick(trio.current_time()))

    async def _join_loop(self) -> None:
        delay = JOIN_RETRY_MIN_S
        while self.seeds and not self._joined:
            await self._after_core(self.core.join(self.seeds, trio.current_time()))
            await trio.sleep(delay)
            delay = min(JOIN_RETRY_MAX_S, delay * 2)

    async def _leave(self) -> None:
        """Gossip our Left until it has been sent its retransmit count (or LEAVE_TIMEOUT_S passes)."""
        with trio.move_on_after(LEAVE_TIMEOUT_S):
            await self._after_core(self.core.leave(trio.current_time()))
            while self.core.pending_broadcasts():
                await trio.sleep_until(self.core.next_deadline())
                await self._after_core(self.core.tick(trio.current_time()))
        log.info("gossip_left", node=self.name, unsent_updates=self.core.pending_broadcasts())

    # -- carrying out what the core returned --

    async def _after_core(self, out: list[Outgoing]) -> None:
        self._publish()
        for o in out:
            if isinstance(o.msg, m.PushPull):
                self._start_push_pull(o)
            else:
                await self._send_packet(o)
        self._wake.set()

    def _publish(self) -> None:
        for ev in self.core.drain_events():
            if self.on_change is not None:
                self.on_change(ev.node, state_name(ev.state))

    async def _send_packet(self, o: Outgoing) -> None:
        to = split_addr(o.addr)
        if to is None or self._sock is None:
            return
        try:
            await self._sock.sendto(m.seal(self.secret, m.encode(o.msg)), to)
        except (OSError, ValueError) as e:  # unresolvable host, network down; ValueError: over the size bound
            log.debug("gossip_send_failed", to=o.addr, kind=type(o.msg).__name__, error=str(e))

    def _start_push_pull(self, o: Outgoing) -> None:
        if self._nursery is None or self._push_pulls >= PUSH_PULL_INFLIGHT_MAX:
            return
        self._push_pulls += 1
        self._nursery.start_soon(self._push_pull, o)

    async def _push_pull(self, o: Outgoing) -> None:
        try:
            to = split_addr(o.addr)  # the node's RPC listens on its gossip port number, over TCP
            if to is None:
                return
            try:
                body = await self.pool.call(to, PUSH_PULL_METHOD, m.encode(o.msg), PUSH_PULL_TIMEOUT_S)
                reply = m.decode(body)
            except (MurmurError, ProtocolError, msgspec.MsgspecError) as e:
                log.debug("gossip_push_pull_failed", to=o.addr, error=str(e))
                return
            if isinstance(reply, m.PushPull) and reply.reply:
                self._joined = True
                await self._after_core(self.core.on_message(reply, o.addr, trio.current_time()))
        finally:
            self._push_pulls -= 1
