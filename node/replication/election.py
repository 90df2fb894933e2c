"""A tweet partition's master election as a pure state machine: the candidate side (`ElectionCore`) and the
replica side (`answer_promise`, `check_fence`). Paxos phase 1; why it is safe is told once, in mastership.py.
Never sends, sleeps, reads a clock or touches a disk: node/cluster/elector.py carries out what it returns.

The roles of a partition, one word each (the cluster code uses no other):
  preferred  the first node of its preference list: where writes go while every replica is up (static)
  acting     the first node of its preference list that is up in this node's gossip view: where writes go now
  elected    the node that won an epoch of it: only it stamps versions of that epoch (memory only); "master",
             alone, means this one

Rules of a campaign (at most one per partition on a node; the shell serialises them):
1. It starts only with promise_quorum(N, W) replicas up, this node included; else Lost.
2. An attempt takes epoch = 1 + the highest epoch known (promised here, in the data here, or heard in answers).
   The candidate promises itself first (PromiseHere) and must hold that promise; refused, it learns the epoch
   it was told and makes another attempt.
3. Then it asks the other replicas it holds up (AskPromises). Every answer, refusal or failure to answer is fed
   back (`on_promise`); refusals teach epochs. The round ends when the promises (its own included) reach the
   quorum: CatchUp. Or when every asked replica answered or failed: Lost when fewer than the quorum answered at
   all, else another attempt (it was outbid).
4. CatchUp: the candidate pulls the partition's newer keys from every other promiser (every write acknowledged
   by W is on one of them); each result is fed back (`on_caught_up`). Once all are in: Lost if one failed;
   another attempt if a newer epoch was promised here meanwhile (`on_promised`); Lost if the ring moved since
   the campaign began (`on_topology`); else Won, and `elected[pid] = epoch`.
5. At most `attempts_max` attempts; then Lost. A campaign the shell abandons (its own promise could not be
   logged, or it was cancelled) leaves no trace. Answers of another epoch or phase are ignored (late replies).
6. An elected node steps down (`maybe_step_down`) when it promises a newer epoch, when a replica refuses its
   fence, or when it meets a version of a newer epoch. A ring move clears every elected partition.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from node.replication import mastership as ms
from node.replication.messages import PromiseResp
from node.shard import EPOCH_SHIFT, Promise, Shard


@dataclass(frozen=True, slots=True)
class PromiseHere:
    """Promise `epoch` for `pid` on this node (the replica side, durably), and feed the answer back."""

    pid: int
    epoch: int


@dataclass(frozen=True, slots=True)
class AskPromises:
    """Send PromiseReq(pid, epoch) to each node, in parallel; feed each answer (None: no answer) back."""

    pid: int
    epoch: int
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Pull the partition's newer keys from each node (promisers), in parallel; feed each outcome back."""

    pid: int
    epoch: int
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Won:
    pid: int
    epoch: int
    promisers: tuple[str, ...]
    seconds: float  # from the campaign's start


@dataclass(frozen=True, slots=True)
class Lost:
    pid: int
    why: str  # for the write's 503


Step = PromiseHere | AskPromises | CatchUp | Won | Lost | None  # None: waiting for more answers

_HERE, _ASKING, _CATCHING_UP = "here", "asking", "catching-up"


@dataclass
class _Campaign:
    pid: int
    others: tuple[str, ...]  # the other replicas held up at the start: asked in every attempt
    need: int
    known: int
    topology: int
    began: float
    attempt: int = 0
    epoch: int = 0
    phase: str = _HERE
    promisers: list[str] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)  # ok or refused
    silent: set[str] = field(default_factory=set)  # no answer
    catching_up: set[str] = field(default_factory=set)
    catch_up_failed: list[str] = field(default_factory=list)
    superseded: bool = False  # a newer epoch was promised here during this attempt


class ElectionCore:
    """The candidate side of one node's elections, for every partition it replicates."""

    def __init__(self, me: str, w: int, attempts_max: int) -> None:
        self.me = me
        self.w = w
        self.attempts_max = attempts_max
        self.elected: dict[int, int] = {}  # partition token -> the epoch this node won and orders writes in
        self.won = 0
        self.topology = 0  # the ring version elections are won for
        self._campaigns: dict[int, _Campaign] = {}

    def campaigning(self, pid: int) -> bool:
        return pid in self._campaigns

    # ------------------------------------------------------------ inputs

    def campaign(self, pid: int, replicas: Sequence[str], up: Collection[str], known: int, now: float) -> Step:
        """Start a campaign for `pid`. `up`: the replicas gossip holds up; `known`: the highest epoch this node
        knows for the partition (its promise, or the newest epoch in its data)."""
        assert pid not in self._campaigns, f"partition {pid}: one campaign at a time"
        need = ms.promise_quorum(len(replicas), self.w)
        asked = [n for n in replicas if n == self.me or n in up]
        if len(asked) < need:
            return Lost(pid, f"partition {pid}: {len(asked)} of its replicas are up, an election needs {need}")
        others = tuple(n for n in asked if n != self.me)
        c = self._campaigns[pid] = _Campaign(pid, others, need, known, self.topology, now)
        return self._attempt(c, now)

    def on_promise(self, pid: int, epoch: int, node: str, resp: PromiseResp | None, now: float) -> Step:
        """The answer of `node` (this node too) to a request to promise `epoch`; None when it did not answer."""
        c = self._campaigns.get(pid)
        if c is None or c.epoch != epoch:
            return None
        if c.phase == _HERE and node == self.me:
            assert resp is not None, "this node's own promise always answers (or raises)"
            if not resp.ok:
                c.known = max(c.known, resp.epoch)
                return self._attempt(c, now)
            c.known = max(c.known, epoch)
            c.promisers = [self.me]
            if len(c.promisers) >= c.need:
                return self._catch_up(c, now)
            c.phase = _ASKING
            return AskPromises(pid, epoch, c.others)
        if c.phase != _ASKING or node not in c.others or node in c.answered or node in c.silent:
            return None
        if resp is None:
            c.silent.add(node)
        else:
            c.answered.add(node)
            c.known = max(c.known, resp.epoch)
            if resp.ok:
                c.promisers.append(node)
        if len(c.promisers) >= c.need:
            return self._catch_up(c, now)
        if len(c.answered) + len(c.silent) < len(c.others):
            return None
        if len(c.answered) + 1 < c.need:
            return self._end(c, Lost(pid, f"partition {pid}: {len(c.answered) + 1} replicas answered the election, "
                                          f"{c.need} needed"))
        return self._attempt(c, now)  # outbid: again, above the highest epoch heard of

    def on_caught_up(self, pid: int, epoch: int, node: str, ok: bool, now: float) -> Step:
        """The catch-up from promiser `node` ended (ok: every key it had that was newer is here now)."""
        c = self._campaigns.get(pid)
        if c is None or c.epoch != epoch or c.phase != _CATCHING_UP or node not in c.catching_up:
            return None
        c.catching_up.discard(node)
        if not ok:
            c.catch_up_failed.append(node)
        if c.catching_up:
            return None
        if c.catch_up_failed:
            return self._end(c, Lost(pid, f"partition {pid}: could not catch up from {', '.join(c.catch_up_failed)}"))
        return self._decide(c, now)

    def on_promised(self, pid: int, epoch: int) -> bool:
        """This node durably promised `epoch` for `pid` (to itself or another candidate, or learnt from a fenced
        write). -> whether it stepped down."""
        c = self._campaigns.get(pid)
        if c is not None and epoch > c.epoch:
            c.superseded = True
        return self.maybe_step_down(pid, epoch - 1)

    def on_topology(self, version: int) -> None:
        """The ring moved: partitions may have grown or split, so every mastership is won again."""
        self.topology = version
        self.elected.clear()

    def maybe_step_down(self, pid: int, stale: int) -> bool:
        """Stop ordering `pid` if this node was elected for it in epoch `stale` or older. -> whether it did."""
        if self.elected.get(pid, stale + 1) <= stale:
            del self.elected[pid]
            return True
        return False

    def abandon(self, pid: int) -> None:
        """The shell gave the campaign up (an error of its own, or cancelled); a decided campaign is gone already."""
        self._campaigns.pop(pid, None)

    # ------------------------------------------------------------ transitions

    def _attempt(self, c: _Campaign, now: float) -> Step:
        if c.attempt >= self.attempts_max:
            return self._end(c, Lost(c.pid, f"partition {c.pid}: no election won in {self.attempts_max} attempts"))
        c.attempt += 1
        c.epoch = ms.next_epoch(c.known)
        c.phase = _HERE
        c.promisers, c.answered, c.silent, c.superseded = [], set(), set(), False
        return PromiseHere(c.pid, c.epoch)

    def _catch_up(self, c: _Campaign, now: float) -> Step:
        c.phase = _CATCHING_UP
        c.catching_up = {n for n in c.promisers if n != self.me}
        c.catch_up_failed = []
        if not c.catching_up:
            return self._decide(c, now)
        return CatchUp(c.pid, c.epoch, tuple(n for n in c.promisers if n != self.me))

    def _decide(self, c: _Campaign, now: float) -> Step:
        if c.superseded:
            return self._attempt(c, now)  # a newer candidate got a promise here while we caught up
        if c.topology != self.topology:
            return self._end(c, Lost(c.pid, f"partition {c.pid}: the ring moved during the election; retry"))
        self.elected[c.pid] = c.epoch
        self.won += 1
        return self._end(c, Won(c.pid, c.epoch, tuple(c.promisers), now - c.began))

    def _end(self, c: _Campaign, step: Won | Lost) -> Step:
        del self._campaigns[c.pid]
        return step


# ------------------------------------------------------------ the replica side


def known_epoch(shard: Shard, pid: int) -> int:
    """The highest epoch a node knows for `pid`: its promise, or the newest epoch anywhere in its data."""
    return max(shard.promised.get(pid, 0), shard.max_version >> EPOCH_SHIFT)


def answer_promise(shard: Shard, pid: int, epoch: int) -> tuple[PromiseResp, Promise | None]:
    """A replica asked to promise `epoch`: (its answer, the Promise record to apply and log first when it does).
    It promises only above its last promise and above every epoch in its data (mastership.may_promise)."""
    promised = shard.promised.get(pid, 0)
    data_epoch = shard.max_version >> EPOCH_SHIFT
    if not ms.may_promise(promised, data_epoch, epoch):
        return PromiseResp(False, max(promised, data_epoch)), None
    return PromiseResp(True, epoch), Promise(pid, epoch)


def check_fence(shard: Shard, fence: Sequence[tuple[int, int]]) -> tuple[list[Promise], tuple[int, int, int] | None]:
    """A master's fenced batch: (the promises it teaches: epochs newer than promised here, which the master won
    without this node; the first (pid, epoch, promised) whose epoch is stale, when the batch must be refused)."""
    learnt: list[Promise] = []
    for pid, epoch in fence:
        promised = shard.promised.get(pid, 0)
        if not ms.fence_ok(promised, epoch):
            return learnt, (pid, epoch, promised)
        if epoch > promised:
            learnt.append(Promise(pid, epoch))
    return learnt, None
