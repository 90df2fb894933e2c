"""One seeded run of the replication simulation: clients create, edit, delete and read tweets through random
coordinators while nodes crash and restart, the network drops calls and answers and splits in two, and gossip
views lag or lie; then everything heals, anti-entropy runs until every partition's replicas agree, and every tweet
is read back. Shared by tests/sim/test_replication_sim.py and scripts/sim_replication.py. Test code.

Invariants (tests/sim/repl_history.py has I2, I4, I5), each checked at the event that could break it:
  I1 at most one master per (partition, epoch): checked whenever any node is elected for one.
  I1b a newly elected node holds every write acked before its election began (the catch-up of election.py).
  I3 after repair, all replicas of every tweet partition have equal digests (and equal versions of every id).
  I6 an acked put is in the durable log of at least W replicas at the moment it is acked.
  I7-escaped a client op fails only with a MurmurError (an HTTP status), never a bare trio.TooSlowError or an
     ExceptionGroup (a 500).
A violation stops the run; SimFailure names the seed (SIM_SEED=<seed> replays it) and prints a trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio
import trio.testing
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from node.cluster.service import NodeService
from node.errors import MurmurError
from node.model import TweetIn, TweetPatch
from tests.sim.harness import SimFailure
from tests.sim.repl_history import History, Op
from tests.sim.repl_net import NetConfig, SimNet

SETTLE_S = 5.0  # after healing: the outbox, repair and anti-entropy loops run a few times before the checks


@dataclass
class Workload:
    k: int = 3  # nodes
    duration_s: float = 30.0  # virtual seconds of faults and traffic
    clients: int = 3
    ids: int = 16  # tweet ids in play at once (few: ops on one tweet contend); a deleted one is replaced
    think_max_s: float = 0.3
    reads: float = 0.2  # share of the ops that are GETs during the faults (the rest: writes)
    fault_every_s: tuple[float, float] = (0.5, 3.0)
    max_down: int = 1
    vnodes: int = 8


@dataclass
class Report:
    seed: int
    k: int
    ops: int = 0
    acked: int = 0
    failed: int = 0
    indeterminate: int = 0
    reads: int = 0
    elections: int = 0
    fenced: int = 0
    crashes: int = 0
    partitions: int = 0
    calls: int = 0
    dropped: int = 0
    lost_replies: int = 0
    escaped: dict[str, int] = field(default_factory=dict)
    ae_rounds: int = 0
    sim_s: float = 0.0
    wall_s: float = 0.0
    fingerprint: str = ""  # of the whole trace: a seed replays exactly when two runs agree on it
    violations: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)  # violations of a tolerated tag (a known bug): counted only
    trace: list[str] = field(default_factory=list)


class Scenario:
    def __init__(self, seed: int, wl: Workload, cfg: NetConfig | None = None, tolerate: frozenset[str] = frozenset()
                 ) -> None:
        self.seed = seed
        self.tolerate = tolerate
        self.known: list[str] = []
        self.wl = wl
        self.net = SimNet(seed, [f"n{i}" for i in range(wl.k)], cfg or NetConfig(), vnodes=wl.vnodes)
        self.rng = self.net.rng
        self.hist = History()
        self.pool = list(range(1, wl.ids + 1))  # the ids clients use now
        self.next_id = wl.ids + 1
        self.masters: dict[tuple[int, int], str] = {}
        self.violations: list[str] = []
        self.focus: set[str] = set()  # trace words of the violations (pid=..., id=...)
        self.stop = trio.CancelScope()
        self.ae_rounds = 0
        self.sim_s = 0.0
        self.net.on_elected = self._on_elected

    # ------------------------------------------------------------ invariants at events

    def fail(self, why: str, *focus: str) -> None:
        """Record a violation (its first word is its tag, e.g. I5-read) and stop the run, unless it is tolerated:
        then it is only counted, so that a known bug does not hide the others."""
        if why.split()[0] in self.tolerate:
            self.net.note("KNOWN_VIOLATION", why=why)
            self.known.append(why)
            return
        self.net.note("VIOLATION", why=why)
        self.violations.append(why)
        for w in focus:  # a tweet's partition matters too: its elections and stepping down
            self.focus.add(w)
            if w.startswith("id="):
                w = f"pid={self.net.placement.tweet_partition(int(w[3:]))[0]}"
            if w.startswith("pid="):
                self.focus.update((w, "partition=" + w[4:]))
        self.stop.cancel()

    def _on_elected(self, name: str, svc: NodeService, pid: int, epoch: int) -> None:
        other = self.masters.setdefault((pid, epoch), name)
        if other != name:
            self.fail(f"I1 two masters of partition {pid} in epoch {epoch}: {other} and {name}", f"pid={pid}")
        began = self.net.promised_at.get((name, pid, epoch))
        if began is None:
            self.fail(f"I1b {name} masters {pid}@{epoch} without having promised it", f"pid={pid}")
            return
        for tid in self.hist.by_tid:
            if self.net.placement.tweet_partition(tid)[0] != pid:
                continue
            for o in self.hist.acked_before(tid, began):
                have = svc.shard.version_of(tid)
                if (o.kind == "delete" and tid not in svc.shard.tombstones) or (o.put and have < o.version):
                    self.fail(f"I1b {name} became master of {pid}@{epoch} (election began t={began:.4f}) "
                              f"holding v={have} of tweet {tid}, without {o}", f"pid={pid}", f"id={tid}")
                    return

    def _on_done(self, op: Op) -> None:
        self.net.note("op_end", op=op.n, id=op.tid, outcome=op.outcome, status=op.status, v=op.version)
        for why in self.hist.finish(op):
            self.fail(why, f"id={op.tid}")
        if op.put:
            logs = sum((op.tid, op.version) in self.net.nodes[x].logged for x in self.net.names)
            if logs < self.net.w:
                self.fail(f"I6 acked {op} is in {logs} durable logs, fewer than W={self.net.w}", f"id={op.tid}")

    # ------------------------------------------------------------ the workload

    async def client(self, c: int, until: float) -> None:
        while trio.current_time() < until:
            await trio.sleep(self.rng.uniform(0.0, self.wl.think_max_s))
            up = self.net.up()
            if not up:
                continue
            await self.one_op(c, self.rng.choice(up))

    def _pick(self, live: bool) -> int:
        """Mostly an id whose last acked write left it live (edits, deletes) or not (creates): few ops wasted.
        A deleted id is gone for good (its id cannot be used again): a fresh one takes its place in the pool."""
        want = [t for t in self.pool if self._live(t) == live]
        return self.rng.choice(want) if want and self.rng.random() < 0.8 else self.rng.choice(self.pool)

    def _live(self, tid: int) -> bool:
        acked = [o for o in self.hist.by_tid.get(tid, ()) if o.outcome == "acked" and o.kind != "read"]
        return bool(acked) and acked[-1].kind != "delete"

    def _retire(self, op: Op) -> None:
        if op.kind == "delete" and op.outcome == "acked" and op.tid in self.pool:
            self.pool[self.pool.index(op.tid)] = self.next_id
            self.next_id += 1

    async def one_op(self, c: int, coord: str) -> None:
        n = len(self.hist.ops) + 1
        x = self.rng.random()
        text: str | None = None
        if x < self.wl.reads:
            kind = "read"
        else:  # the writes: 7 creates, 7 edits, 2 deletes
            x = (x - self.wl.reads) / (1.0 - self.wl.reads) * 16
            kind = "create" if x < 7 else "patch" if x < 14 else "delete"
        tid = self._pick(live=kind != "create")
        if kind == "create" and self.rng.random() < 0.5:  # a new tweet; the oldest id leaves the pool
            tid = self.next_id
            self.next_id += 1
            self.pool = [*self.pool[1:], tid]
        if kind == "create":
            retry = [o.text for o in self.hist.by_tid.get(tid, ()) if o.kind == "create" and o.outcome == "indeterminate"]
            text = self.rng.choice(retry) if retry and self.rng.random() < 0.4 else f"w{n} hello"
        elif kind == "patch":
            text = f"w{n} edited"
        op = self.hist.begin(Op(n, c, kind, tid, text, coord, trio.current_time()))
        self.net.note("op_begin", op=n, kind=kind, id=tid, coord=coord, text=text)
        life = self.net.nodes[coord].life
        assert life is not None
        co = life.coord
        if kind == "create":
            assert text is not None
            box = await self.net.run_on(coord, co.create_tweet, TweetIn(text=text, user="u", id=tid))
        elif kind == "patch":
            box = await self.net.run_on(coord, co.patch_tweet, tid, TweetPatch(text=text))
        elif kind == "delete":
            box = await self.net.run_on(coord, co.delete_tweet, tid)
        else:
            box = await self.net.run_on(coord, co.get_tweet, tid)
        op.end = trio.current_time()
        self._classify(op, box)
        self._on_done(op)
        self._retire(op)

    def _classify(self, op: Op, box: dict[str, Any]) -> None:
        if not box:
            op.outcome, op.status = "indeterminate", "crashed"
            return
        err = box.get("err")
        if err is not None and not isinstance(err, MurmurError):
            self.fail(f"I7-escaped {op} failed with {err!r}, no MurmurError (a 500, not a 503)", f"id={op.tid}")
        if err is not None:
            code = err.code if isinstance(err, MurmurError) else type(err).__name__
            if op.kind == "read" and code == "not_found":
                op.outcome, op.status, op.text = "acked", code, None
            elif code in ("not_found", "conflict") and op.kind != "read":
                op.outcome, op.status = "failed", code
            else:
                op.outcome, op.status = "indeterminate", code
            return
        res = box["ok"]
        op.outcome = "acked"
        if op.kind == "create":
            op.status, op.version = ("created" if res.created else "exists"), res.tweet.version
            if res.tweet.text != op.text:
                self.fail(f"I5-answer create answered {res.tweet.text!r} for {op}", f"id={op.tid}")
        elif op.kind == "patch":
            op.status, op.version = "ok", res.version
            if res.text != op.text:
                self.fail(f"I5-answer patch answered {res.text!r} for {op}", f"id={op.tid}")
        elif op.kind == "delete":
            op.status = "ok"
        else:
            op.status, op.text, op.version = "found", res.text, res.version

    async def faults(self, until: float) -> None:
        net, wl = self.net, self.wl
        while True:
            await trio.sleep(self.rng.uniform(*wl.fault_every_s))
            if trio.current_time() >= until:
                return
            x = self.rng.random()
            up, down = net.up(), net.down()
            if x < 0.3 and len(down) < wl.max_down and up:
                net.crash(self.rng.choice(up))
            elif x < 0.55 and down:
                await net.start(self.rng.choice(down))
            elif x < 0.75 and net.side is None:
                names = list(net.names)
                self.rng.shuffle(names)
                cut = self.rng.randrange(1, len(names))
                net.partition([set(names[:cut]), set(names[cut:])])
            elif x < 0.9 and net.side is not None:
                net.heal()

    # ------------------------------------------------------------ heal, repair, read back

    async def heal(self) -> None:
        net = self.net
        net.heal()
        net.cfg.drop = net.cfg.lost_reply = 0.0
        net.views_exact = True
        for x in net.down():
            await net.start(x)
        for _ in range(600):  # writes still running on a master after their coordinator gave up
            if net.writes_in_flight == 0:
                break
            await trio.sleep(0.5)
        else:
            self.fail("writes still in flight 300 s after healing")
        await trio.sleep(SETTLE_S)

    def disagreements(self) -> list[str]:
        net = self.net
        ring, n = net.placement.ring, net.placement.n
        out = []
        for start, end in ring.partitions():
            reps = ring.preference_list(end, n)
            shards = {x: self._service(x).shard for x in reps}
            digests = {x: sh.digest(start, end) for x, sh in shards.items()}
            if any(d != digests[reps[0]] for d in digests.values()):
                out.append(f"partition {end}: digests differ on {reps}")
        for tid in self.hist.by_tid:
            _pid, reps = net.placement.tweet_partition(tid)
            vs = {x: self._service(x).shard.version_of(tid) for x in reps}
            if len(set(vs.values())) > 1:
                out.append(f"tweet {tid}: versions differ {vs}")
        return out

    def _service(self, name: str) -> NodeService:
        life = self.net.nodes[name].life
        assert life is not None
        return life.service

    async def repair(self) -> None:
        """anti_entropy_step on every node, round after round, until every partition's replicas agree (I3)."""
        net = self.net
        for rnd in range(200):
            self.ae_rounds = rnd
            if not self.disagreements():
                return
            async with trio.open_nursery() as nursery:
                for x in net.names:
                    nursery.start_soon(net.run_on, x, self._service(x).anti_entropy_step)
        self.fail("I3 replicas still differ after 200 anti-entropy rounds: " + "; ".join(self.disagreements()[:4]))

    async def read_back(self) -> None:
        for tid in sorted(self.hist.by_tid):
            coord = self.rng.choice(self.net.names)
            life = self.net.nodes[coord].life
            assert life is not None
            got = await self.net.run_on(coord, life.coord.get_tweet, tid)
            err = got.get("err")
            if err is not None and getattr(err, "code", "") != "not_found":
                self.fail(f"I2 reading tweet {tid} back after healing failed: {err!r}", f"id={tid}")
                continue
            t = got.get("ok")
            why = self.hist.final_violation(tid, t.text if t else None, t.version if t else 0)
            if why is not None:
                self.fail(f"{why}: tweet {tid}", f"id={tid}")

    # ------------------------------------------------------------ the run

    async def main(self) -> None:
        net, wl = self.net, self.wl
        with self.stop:
            async with trio.open_nursery() as root:
                net.root = root
                for x in net.names:
                    await net.start(x)
                root.start_soon(net.views_loop)
                until = trio.current_time() + wl.duration_s
                async with trio.open_nursery() as work:
                    work.start_soon(self.faults, until)
                    for c in range(wl.clients):
                        work.start_soon(self.client, c, until)
                await self.heal()
                await self.repair()
                await self.read_back()
                self.sim_s = trio.current_time()
                root.cancel_scope.cancel()

    def run(self) -> Report:
        t0 = time.perf_counter()
        old = structlog.get_config()
        structlog.configure(
            processors=[self._capture],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=False,
        )
        try:
            _run_with_a_seeded_scheduler(lambda: trio.run(self.main, clock=trio.testing.MockClock(autojump_threshold=0)))
        finally:
            structlog.configure(**old)
        return self._report(time.perf_counter() - t0)

    def _capture(self, _logger: Any, _method: str, ev: MutableMapping[str, Any]) -> Any:
        name = ev.pop("event", "?")
        self.net.line(name, " ".join(f"{k}={v}" for k, v in ev.items()))
        raise structlog.DropEvent

    def _report(self, wall: float) -> Report:
        ops = self.hist.ops
        st = self.net.stats
        rep = Report(self.seed, self.wl.k, ops=len(ops), reads=sum(o.kind == "read" for o in ops),
                     acked=sum(o.outcome == "acked" for o in ops), failed=sum(o.outcome == "failed" for o in ops),
                     indeterminate=sum(o.outcome == "indeterminate" for o in ops), elections=st.elections, fenced=st.fenced,
                     crashes=st.crashes, partitions=st.partitions, calls=st.calls, dropped=st.dropped,
                     lost_replies=st.lost_replies, escaped=dict(st.escaped), ae_rounds=self.ae_rounds,
                     sim_s=self.sim_s, wall_s=wall, fingerprint=self.net.trace_hash.hexdigest()[:16],
                     violations=list(self.violations), known=list(self.known))
        if self.violations:
            rep.trace = self._trace()
        return rep

    def _trace(self) -> list[str]:
        """The events that matter for the violations: faults, and every line naming their partitions/tweets."""
        keep = ("crash", "start", "partition", "heal", "VIOLATION")
        lines = [ln for ln in self.net.trace
                 if any(f" {w} " in f" {ln} " or f" {w}," in ln for w in self.focus) or any(f" {k} " in ln for k in keep)]
        tids = {int(w[3:]) for w in self.focus if w.startswith("id=")}
        hist = [h for t in sorted(tids) for h in self.hist.describe(t)]
        return [*lines[-120:], "-- history of the tweets involved --", *hist]


# A run replays only if trio orders its ready tasks the same way each time. Trio's own Hypothesis integration
# does that through public APIs: importing Hypothesis loads trio's plugin, which makes each batch of ready tasks
# sorted then shuffled by a Random it registers with Hypothesis (hypothesis.register_random), and Hypothesis
# seeds every registered Random at the start of each test case. So the run is one Hypothesis test case (one
# example of nothing, no database): the sim's own seed drives everything else. Nothing of trio is touched.
@settings(max_examples=1, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
          suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
@given(_nothing=st.none())
def _as_one_test_case(body: Callable[[], None], _nothing: None) -> None:
    body()


def _run_with_a_seeded_scheduler(run: Callable[[], None]) -> None:
    _as_one_test_case(run)


def run_seed(seed: int, wl: Workload | None = None, cfg: NetConfig | None = None,
             tolerate: frozenset[str] = frozenset()) -> Report:
    return Scenario(seed, wl or Workload(), cfg, tolerate).run()


def check(rep: Report) -> None:
    """Raise SimFailure naming the seed when the run broke an invariant."""
    if rep.violations:
        head = f"seed={rep.seed} k={rep.k}: {rep.violations[0]} (replay: SIM_SEED={rep.seed}, k={rep.k})"
        more = [f"  also: {v}" for v in rep.violations[1:5]]
        raise SimFailure("\n".join([head, *more, "-- trace --", *rep.trace]))
