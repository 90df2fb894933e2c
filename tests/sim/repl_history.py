"""What clients were told, and what that allows the cluster to hold: the per-tweet history of the replication
simulation and its invariants. Pure bookkeeping over (start, end, outcome) of each op in virtual time; it never
looks inside a node except through what it is handed. Test code.

An op is acked (the client got 2xx), failed (a definite 4xx: nothing was written) or indeterminate (503, a lost
answer, a crashed coordinator: it may take effect, even later than its end, or never). Each create/patch writes a
text no other op writes, so a stored text names the op that wrote it.
  I4 versions grow along the acked history: acked puts F, G with F.end < G.start have v(F) < v(G) (<= when G is
     an idempotent create answered "exists", which writes nothing new); no acked put after an acked delete.
  I5 what clients are told agrees with what was acked before they asked (CONTRACT §2: 201/200 = found by every
     GET; an acked delete is never returned again): I5-read, a GET sees every put acked before it started (version
     >=) and never a tweet whose delete was acked before; I5-notfound, an edit or delete is answered not_found
     only if no put was acked before it or a delete may have applied; I5-answer, conflict / "created" / "exists"
     only when the acked history allows it; I5-fabricated, a read only returns a text some write wrote.
  I2 (after healing) the tweet holds an acked put not superseded by a later acked write, or the text of an
     indeterminate write, or is absent when a delete may have applied or nothing was ever acked; absent for sure
     after an acked delete.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INF = float("inf")
WRITES = ("create", "patch", "delete")


@dataclass
class Op:
    n: int
    client: int
    kind: str  # create | patch | delete | read
    tid: int
    text: str | None  # create/patch: the text it writes; read: the text it saw (None: not found)
    coord: str
    start: float
    end: float = INF
    outcome: str = "pending"  # acked | failed | indeterminate | pending
    status: str = ""  # created | exists | ok | not_found | conflict | unavailable | crashed | ...
    version: int = 0  # acked put / read: the tweet's version in the answer

    def __str__(self) -> str:
        return (f"op{self.n}(c{self.client} {self.kind} id={self.tid} text={self.text!r} via {self.coord} "
                f"[{self.start:.4f},{self.end:.4f}] {self.outcome}/{self.status} v={_v(self.version)})")

    @property
    def put(self) -> bool:
        """An acked create/patch: the tweet held this op's text at `version` when it was acked."""
        return self.outcome == "acked" and self.kind in ("create", "patch")

    @property
    def writes_new(self) -> bool:
        """An acked op that stored a new version (an "exists" answer stored nothing new)."""
        return self.outcome == "acked" and self.kind in WRITES and self.status != "exists"


def _v(version: int) -> str:
    return f"{version >> 40}.{version & ((1 << 40) - 1)}" if version else "0"


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    by_tid: dict[int, list[Op]] = field(default_factory=dict)

    def begin(self, op: Op) -> Op:
        self.ops.append(op)
        self.by_tid.setdefault(op.tid, []).append(op)
        return op

    def acked_before(self, tid: int, t: float) -> list[Op]:
        return [o for o in self.by_tid.get(tid, ()) if o.outcome == "acked" and o.end < t and o.kind in WRITES]

    def maybe_delete(self, tid: int, before: float) -> bool:
        """Some delete that may have applied started before `before`."""
        return any(o.kind == "delete" and o.outcome != "failed" and o.start < before for o in self.by_tid[tid])

    def finish(self, op: Op) -> list[str]:
        """Record op's answer (already set on it); -> the I4/I5 violations it shows."""
        bad: list[str] = []
        prior = self.acked_before(op.tid, op.start)
        acked_delete = next((o for o in prior if o.kind == "delete"), None)
        if op.put:
            for f in prior:
                if f.put and not (f.version < op.version or (op.status == "exists" and f.version <= op.version)):
                    bad.append(f"I4 versions went back: {f} then {op}")
            if acked_delete is not None:
                bad.append(f"I4 acked write after an acked delete (resurrection): {acked_delete} then {op}")
        if op.kind == "create" and op.outcome == "acked" and op.status == "created":
            was = next((o for o in prior if o.put or o.kind == "delete"), None)
            if was is not None:
                bad.append(f"I5-answer created anew although {was} was acked before: {op}")
        if op.outcome == "failed" and op.status == "not_found" and not self.maybe_delete(op.tid, op.end):
            put = next((o for o in prior if o.put), None)
            if put is not None:
                bad.append(f"I5-notfound although {put} was acked before and no delete was tried: {op}")
        if op.outcome == "failed" and op.status == "conflict":
            others = [o for o in self.by_tid[op.tid] if o is not op and o.kind in WRITES and o.outcome != "failed"
                      and o.start < op.end and (o.kind != "create" or o.text != op.text)]
            if not others:
                bad.append(f"I5-answer conflict with nothing: {op}")
        if op.kind == "read" and op.outcome == "acked":
            bad += self._check_read(op, prior, acked_delete)
        return bad

    def _check_read(self, op: Op, prior: list[Op], acked_delete: Op | None) -> list[str]:
        bad = []
        if op.text is None:
            f = next((o for o in prior if o.put), None)
            if f is not None and not self.maybe_delete(op.tid, op.end):
                bad.append(f"I5-read not_found after {f} was acked and no delete was tried: {op}")
            return bad
        if acked_delete is not None:
            bad.append(f"I5-read a tweet whose delete was acked before: {acked_delete} then {op}")
        writers = [o for o in self.by_tid[op.tid] if o.kind in ("create", "patch") and o.text == op.text]
        if not any(o.outcome != "failed" and o.start < op.end for o in writers):
            bad.append(f"I5-fabricated a read of a text nobody wrote (or whose write failed): {op}")
        for f in prior:
            if f.put and f.version > op.version:
                bad.append(f"I5-read stale: {f} was acked before {op}")
        return bad

    def final_violation(self, tid: int, text: str | None, version: int) -> str | None:
        """I2: the healed cluster answers `text` at `version` (None: not found) for tweet `tid`."""
        ops = [o for o in self.by_tid.get(tid, ()) if o.kind in WRITES]
        acked = [o for o in ops if o.outcome == "acked"]
        newer = [o for o in acked if o.writes_new]
        if any(o.kind == "delete" for o in acked):
            if text is None:
                return None
            return f"I2 an acked delete came back as {text!r} v={_v(version)}"
        live = {o.text for o in acked if o.kind != "delete" and not any(o.end < g.start for g in newer)}
        maybe = {o.text for o in ops if o.outcome == "indeterminate" and o.kind != "delete"}
        if text is None:
            if not acked or any(o.outcome == "indeterminate" and o.kind == "delete" for o in ops):
                return None
            return f"I2 an acked tweet is lost (latest acked: {sorted(t for t in live if t)})"
        top = max((o.version for o in acked if o.put), default=0)
        if version < top:
            return f"I2 version {_v(version)} is below an acked {_v(top)}"
        if text in live or text in maybe:
            return None
        return f"I2 {text!r} is neither the latest acked text {sorted(t for t in live if t)} nor an indeterminate one"

    def describe(self, tid: int) -> list[str]:
        return [str(o) for o in self.by_tid.get(tid, ())]
