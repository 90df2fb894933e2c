"""A simulated cluster for the replication simulation: K NodeServices and their ClusterCoordinators in one trio
run under MockClock, joined by a network that delays, drops (before delivery, or after: a lost reply), partitions,
and crashes nodes (in-flight work dies; a restart rebuilds the Shard from the node's durable log alone). Every
random choice comes from one seeded random.Random, so a run replays from its seed. Test code: never imported
by `node`, and it never changes the code under test - it only observes it (who is elected, promises, the logs).
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from node.cluster import limits
from node.cluster.coordinator import ClusterCoordinator
from node.cluster.peers import call_local
from node.cluster.placement import Placement
from node.cluster.service import NodeService
from node.errors import MurmurError
from node.ids import SnowflakeGenerator
from node.replication import messages as m
from node.ring.ring import Ring
from node.shard import DeleteTweet, Promise, PutTweet, Record, Shard, decode_record
from node.transport.errors import PeerUnavailable, RpcTimeout, remote_error

BASE_MS = 1_700_000_000_000
CURRENT = contextvars.ContextVar("sim_node", default="-")  # the node whose code a task runs (for the trace)


@dataclass
class NetConfig:
    latency_min_s: float = 0.001  # one way
    latency_max_s: float = 0.030
    drop: float = 0.03  # a call is lost before it reaches the peer
    lost_reply: float = 0.03  # the peer handled the call, its answer is lost
    silent: float = 0.3  # share of the failures that are silence (the caller times out) rather than a reset
    wal_min_s: float = 0.0002  # one WAL append (fsync)
    wal_max_s: float = 0.004
    view_period_s: float = 0.3  # how often gossip views move
    view_update: float = 0.5  # chance per period that an observer's view of a peer catches up with the truth
    view_wrong: float = 0.02  # chance per period that it flips to the wrong answer instead


@dataclass
class Stats:
    calls: int = 0
    dropped: int = 0
    lost_replies: int = 0
    crashes: int = 0
    restarts: int = 0
    partitions: int = 0
    elections: int = 0
    fenced: int = 0  # fenced applies a replica refused (it had promised a newer epoch)
    # failures that escaped as no MurmurError (TooSlowError, ExceptionGroup): where and what -> count
    escaped: dict[str, int] = field(default_factory=dict)


class ElectedDict(dict[int, int]):
    """ElectionCore.elected (NodeService.elected) with a hook on every (partition, epoch) a node starts to master."""

    def __init__(self, on_set: Callable[[int, int], None]) -> None:
        super().__init__()
        self.on_set = on_set

    def __setitem__(self, pid: int, epoch: int) -> None:
        super().__setitem__(pid, epoch)
        self.on_set(pid, epoch)


class TracingShard(Shard):
    """The pure Shard, noting when each promise was first made here (the start of an election's attempt)."""

    def __init__(self, on_promise: Callable[[int, int], None]) -> None:
        super().__init__()
        self.on_promise = on_promise

    def apply(self, rec: Record) -> bool:
        ok = super().apply(rec)
        if ok and isinstance(rec, Promise):
            self.on_promise(rec.pid, rec.epoch)
        return ok


class Life:
    """One run of a node, from (re)start to crash."""

    def __init__(self, service: NodeService, coord: ClusterCoordinator) -> None:
        self.service = service
        self.coord = coord
        self.scope = trio.CancelScope()
        self.nursery: trio.Nursery | None = None
        self.dead = False


@dataclass
class Node:
    name: str
    log: list[bytes] = field(default_factory=list)  # durable: survives crashes
    logged: set[tuple[int, int]] = field(default_factory=set)  # (tweet id, version) of Put/Delete records in log
    life: Life | None = None
    lives: int = 0


class SimLog:
    """A node's WAL for one life: an append takes a random fsync time; a crash before it ends loses the batch."""

    def __init__(self, net: SimNet, node: Node, life_no: int) -> None:
        self.net, self.node, self.life_no = net, node, life_no

    async def append(self, payloads: list[bytes]) -> int:
        await trio.sleep(self.net.rng.uniform(self.net.cfg.wal_min_s, self.net.cfg.wal_max_s))
        if self.node.lives != self.life_no or self.node.life is None:
            await trio.sleep_forever()  # this life crashed: its scope is cancelled, nothing is written
        self.node.log.extend(payloads)
        for p in payloads:
            r = decode_record(p)
            if isinstance(r, PutTweet):
                self.node.logged.add((r.tweet.id, r.tweet.version))
            elif isinstance(r, DeleteTweet):
                self.node.logged.add((r.id, r.version))
        return len(self.node.log)


class SimNet:
    def __init__(self, seed: int, names: list[str], cfg: NetConfig, vnodes: int = 8, n: int = 3, w: int = 2,
                 r: int = 2) -> None:
        self.seed = seed
        self.cfg = dataclasses.replace(cfg)  # healing changes it: never the caller's copy
        self.rng = random.Random(f"repl/{seed}")
        self.names = names
        self.placement = Placement(Ring.build(names, vnodes), n)
        self.w, self.r = w, r
        self.nodes = {x: Node(x) for x in names}
        self.side: dict[str, int] | None = None  # partition: node -> side; None: everyone can talk
        self.view: dict[tuple[str, str], bool] = {(a, b): True for a in names for b in names}
        self.views_exact = False  # after healing: views are the truth
        self.stats = Stats()
        self.trace: deque[str] = deque(maxlen=20_000)
        self.trace_hash = hashlib.sha256()  # over every trace line: two runs of a seed must agree on it
        self.writes_in_flight = 0
        self.root: trio.Nursery | None = None
        # hooks the scenario sets: a node started mastering (node, service, pid, epoch); a node promised
        self.on_elected: Callable[[str, NodeService, int, int], None] = lambda *_: None
        self.promised_at: dict[tuple[str, int, int], float] = {}

    # ------------------------------------------------------------ trace

    def note(self, event: str, **kw: Any) -> None:
        self.line(event, " ".join(f"{k}={v}" for k, v in kw.items()))

    def line(self, event: str, args: str) -> None:
        ln = f"t={trio.current_time():9.4f} {CURRENT.get():>3} {event} {args}"
        self.trace.append(ln)
        self.trace_hash.update(ln.encode())

    # ------------------------------------------------------------ lives

    def up(self) -> list[str]:
        return [x for x in self.names if self.nodes[x].life is not None]

    def down(self) -> list[str]:
        return [x for x in self.names if self.nodes[x].life is None]

    def reachable(self, a: str, b: str) -> bool:
        return self.side is None or self.side[a] == self.side[b]

    def truth(self, obs: str, tgt: str) -> bool:
        return self.nodes[tgt].life is not None and self.reachable(obs, tgt)

    async def start(self, name: str) -> None:
        """Start (or restart) a node from its durable log alone; mastership is memory-only and starts empty."""
        assert self.root is not None
        node = self.nodes[name]
        assert node.life is None
        node.lives += 1

        def promised(pid: int, epoch: int) -> None:
            self.promised_at.setdefault((name, pid, epoch), trio.current_time())

        shard = TracingShard(promised)
        for payload in node.log:
            shard.apply(decode_record(payload))
        caller = Caller(self, name)
        svc = NodeService(name, shard, SimLog(self, node, node.lives), self.placement, self.w, self.clock_ms,
                          peers=caller)
        svc.election.elected = ElectedDict(lambda pid, epoch: self._elected(name, svc, pid, epoch))
        send, recv = trio.open_memory_channel[tuple[str, list[Record]]](limits.REPAIRS_IN_FLIGHT_MAX)
        coord = ClusterCoordinator(
            name, self.placement, self.r, caller, SnowflakeGenerator(self.names.index(name) + 1), self.clock_ms,
            lambda: [{"name": x, "state": "up"} for x in self.names], {}, send, service=svc,
        )
        life = Life(svc, coord)
        for x in self.names:  # a fresh node has heard of nobody: "unknown" routes as up
            self.view[(name, x)] = self.truth(name, x) if self.views_exact else True
        node.life = life
        await self.root.start(self._run_life, name, life, recv)
        self.note("start", node=name, life=node.lives, log_records=len(node.log))

    async def _run_life(self, name: str, life: Life, repairs: Any, task_status: Any = trio.TASK_STATUS_IGNORED
                        ) -> None:
        CURRENT.set(name)
        with life.scope:
            async with trio.open_nursery() as n:
                life.nursery = n
                task_status.started()
                n.start_soon(life.service.anti_entropy_loop)
                n.start_soon(life.service.outbox_loop)
                n.start_soon(self._repair_loop, name, repairs)
                await trio.sleep_forever()

    async def _repair_loop(self, name: str, repairs: Any) -> None:
        caller = Caller(self, name)
        async for node, recs in repairs:
            try:
                await caller.call(node, m.ApplyReq(recs))
            except MurmurError:
                pass

    def crash(self, name: str) -> None:
        node = self.nodes[name]
        assert node.life is not None
        node.life.dead = True
        node.life.scope.cancel()
        node.life = None
        self.stats.crashes += 1
        self.note("crash", node=name)

    def partition(self, sides: list[set[str]]) -> None:
        self.side = {x: i for i, s in enumerate(sides) for x in s}
        self.stats.partitions += 1
        self.note("partition", sides="|".join(",".join(sorted(s)) for s in sides))

    def heal(self) -> None:
        self.side = None
        self.note("heal")

    def clock_ms(self) -> int:
        return BASE_MS + int(trio.current_time() * 1000)

    def _elected(self, name: str, svc: NodeService, pid: int, epoch: int) -> None:
        self.stats.elections += 1
        self.note("elected", node=name, pid=pid, epoch=epoch)
        self.on_elected(name, svc, pid, epoch)

    # ------------------------------------------------------------ gossip views

    async def views_loop(self) -> None:
        """Each observer's view of each peer: it catches up with the truth after a random lag, and is sometimes
        wrong (a false suspicion, or a dead node still thought alive). Safety must not depend on it."""
        while True:
            await trio.sleep(self.cfg.view_period_s)
            for a, b in self.view:
                if a == b:
                    continue
                t = self.truth(a, b)
                if self.views_exact:
                    self.view[(a, b)] = t
                    continue
                x = self.rng.random()
                if x < self.cfg.view_wrong:
                    self.view[(a, b)] = not t
                elif x < self.cfg.view_wrong + self.cfg.view_update:
                    self.view[(a, b)] = t

    # ------------------------------------------------------------ running code on a node

    async def run_on(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> dict[str, Any]:
        """Run fn on node `name` (in its life: a crash kills it). -> {"ok": value} | {"err": error} | {} (crash)."""
        life = self.nodes[name].life
        if life is None or life.nursery is None:
            return {}
        box: dict[str, Any] = {}
        done = trio.Event()

        async def task() -> None:
            CURRENT.set(name)
            try:
                box["ok"] = await fn(*args)
            except MurmurError as e:
                box["err"] = e
            except (trio.TooSlowError, BaseExceptionGroup) as e:
                if not _benign(e):
                    raise
                self._escaped(e, getattr(fn, "__name__", "?"))
                box["err"] = e
            finally:
                done.set()

        life.nursery.start_soon(task)
        await done.wait()
        return box

    def _escaped(self, e: BaseException, where: str) -> None:
        """A failure that reached the caller as something other than a MurmurError (see _benign): counted."""
        kind = f"{where}: {type(e).__name__}(" + ",".join(sorted({type(x).__name__ for x in _leaves(e)})) + ")"
        self.stats.escaped[kind] = self.stats.escaped.get(kind, 0) + 1
        self.note("escaped", kind=kind)

    def latency(self) -> float:
        return self.rng.uniform(self.cfg.latency_min_s, self.cfg.latency_max_s)

    async def _fail(self, why: str) -> None:
        if self.rng.random() < self.cfg.silent:
            await trio.sleep_forever()  # the caller's deadline ends it
        await trio.sleep(self.latency())
        raise PeerUnavailable(why)

    async def remote(self, src: str, dst: str, req: Any, timeout_s: float) -> Any:
        self.stats.calls += 1
        body = m.encode(req)
        with trio.move_on_after(timeout_s):
            await trio.sleep(self.latency())
            if not self.reachable(src, dst) or self.rng.random() < self.cfg.drop:
                self.stats.dropped += 1
                await self._fail(f"{type(req).__name__} {src}->{dst} lost")
            life = self.nodes[dst].life
            if life is None or life.nursery is None:
                raise PeerUnavailable(f"{dst} is down")
            box: dict[str, Any] = {}
            done = trio.Event()
            life.nursery.start_soon(self._serve, dst, life, src, body, box, done)
            await done.wait()
            if not box:
                raise PeerUnavailable(f"{dst} crashed while handling {type(req).__name__}")
            if not self.reachable(src, dst) or self.rng.random() < self.cfg.lost_reply:
                self.stats.lost_replies += 1
                await self._fail(f"reply to {type(req).__name__} {dst}->{src} lost")
            await trio.sleep(self.latency())
            if "err" in box:
                code, msg, fld = box["err"]
                raise remote_error(code, msg, fld)
            return m.decode(box["ok"])
        raise RpcTimeout(f"{type(req).__name__} {src}->{dst} not answered within {timeout_s} s")

    async def _serve(self, dst: str, life: Life, src: str, body: bytes, box: dict[str, Any], done: trio.Event
                     ) -> None:
        CURRENT.set(dst)
        req = m.decode(body)
        write = isinstance(req, m.WriteReq)
        self.writes_in_flight += write
        try:
            box["ok"] = m.encode(await life.service.handle(req, src))
        except MurmurError as e:
            box["err"] = (e.code, e.message, e.field)
            self.stats.fenced += isinstance(req, m.ApplyReq) and e.code == "not_owner"
        except (trio.TooSlowError, BaseExceptionGroup) as e:
            if not _benign(e):
                raise
            self._escaped(e, type(req).__name__)  # node/transport/server.py answers any other exception "internal"
            box["err"] = ("internal", f"{type(e).__name__}: {e}", None)
        finally:
            self.writes_in_flight -= write
            done.set()


def _benign(e: BaseException) -> bool:
    """A failure that is no MurmurError only by its wrapping: a TooSlowError, or an ExceptionGroup of those and
    MurmurErrors (a nursery in the code under test wraps what its tasks raise)."""
    if isinstance(e, BaseExceptionGroup):
        return all(_benign(x) for x in e.exceptions)
    return isinstance(e, trio.TooSlowError | MurmurError)


def _leaves(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [x for sub in e.exceptions for x in _leaves(sub)]
    return [e]


class Caller:
    """What a node's NodeService and ClusterCoordinator see as their peers: the node's view, and its calls."""

    def __init__(self, net: SimNet, me: str) -> None:
        self.net, self.me = net, me

    def is_up(self, node: str) -> bool:
        return node == self.me or self.net.view[(self.me, node)]

    async def call(self, node: str, req: Any, timeout_s: float = limits.RPC_TIMEOUT_S) -> Any:
        if node != self.me:
            return await self.net.remote(self.me, node, req, timeout_s)
        life = self.net.nodes[self.me].life
        assert life is not None
        write = isinstance(req, m.WriteReq)
        self.net.writes_in_flight += write
        try:
            return await call_local(life.service.handle, req, self.me, timeout_s)  # node/cluster/peers.py's own
        finally:
            self.net.writes_in_flight -= write
