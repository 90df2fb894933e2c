"""The outbox planner (pure): which pending index work this node drives or hands over, what each term replica is
sent, and which entries are done. Never sends, sleeps or reads a clock; node/cluster/outbox_driver.py carries it out.

Rules:
1. An entry (a tweet version's terms to add and remove, node/shard.py) is driven by the partition's acting node
   only, once it is elected (the shell wins the election and replicates the tweet under its fence first, so only
   a version W replicas hold is ever indexed: issue 11 §0b). An entry a write in flight will drive, or that
   another task drives now, is left alone.
2. Any other replica hands an entry it still holds after `grace_s` (it missed the OutboxDone, or the node that
   had the work died) to the acting node, and again every `grace_s` while it is still there.
3. Each term replica gets one PostingOps per entry with the entry's terms of its partitions (either ring's, while
   the ring moves), marked `edited` unless the tweet held at that version was never edited and nothing is
   removed. An entry is done once W replicas of every replica set of each of its terms acknowledged; then
   OutboxDone goes to every replica of the tweet.
4. Bounded: `scan_max` entries looked at per pass, `batch_max` entries per partition per pass, `batch_max`
   partitions per pass; the first-seen times are pruned when they outgrow the outbox.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from node.cluster.placement import Placement
from node.replication.quorum import acked_by_every
from node.shard import OutboxDone, OutboxEntry, PostingOps, Record

Sends = dict[str, list[tuple[int, Record]]]  # node -> (key, record) to apply there
Needs = dict[int, tuple[tuple[str, ...], ...]]  # key -> the replica sets it must reach W of each


@dataclass(frozen=True, slots=True)
class Due:
    mine: dict[int, list[int]]  # partition -> entries this node drives, acting for it
    hand: dict[str, list[int]]  # acting node -> entries this replica hands over


class OutboxPlanner:
    def __init__(self, me: str, grace_s: float, batch_max: int, scan_max: int) -> None:
        self.me = me
        self.grace_s = grace_s
        self.batch_max = batch_max
        self.scan_max = scan_max
        self.seen: dict[int, float] = {}  # entries this replica does not drive -> when first (or last handed) seen

    def due(
        self,
        outbox: Collection[int],
        busy: Callable[[int], bool],
        acting_of: Callable[[int], str | None],
        partition_of: Callable[[int], int],
        now: float,
    ) -> Due:
        """The entries of `outbox` (tweet ids, oldest first) to drive or hand over now (rules 1, 2, 4)."""
        seen = self.seen
        if len(seen) > 2 * len(outbox) + 1000:
            for i in [i for i in seen if i not in outbox]:
                del seen[i]
        mine: dict[int, list[int]] = {}
        hand: dict[str, list[int]] = {}
        for i in itertools.islice(outbox, self.scan_max):
            if busy(i):
                continue
            acting = acting_of(i)
            if acting == self.me:
                mine.setdefault(partition_of(i), []).append(i)
            elif acting is not None and now - seen.setdefault(i, now) >= self.grace_s:
                seen[i] = now  # handed over again after another grace period if still here
                hand.setdefault(acting, []).append(i)
        mine = {pid: ids[: self.batch_max] for pid, ids in itertools.islice(mine.items(), self.batch_max)}
        return Due(mine, hand)


def plan_drive(
    entries: list[OutboxEntry], placement: Placement, never_edited: Callable[[int, int], bool] = lambda i, v: False
) -> tuple[Sends, Needs]:
    """Per term replica, the PostingOps of these entries (keyed by position); per entry, its replica sets (rule 3).
    Acknowledgements are counted per distinct replica set, not per term. `never_edited(id, version)`: whether the
    tweet held at that version never changed its text (the ops say so, and their adds need no kept version)."""
    by_node: Sends = {}
    need: Needs = {}
    for k, e in enumerate(entries):
        adds, rems = set(e.add), set(e.remove)
        edited = bool(e.remove) or not never_edited(e.tweet_id, e.version)
        for node, terms in placement.terms_by_node(itertools.chain(e.add, e.remove)).items():
            op = PostingOps(
                e.tweet_id, e.version, tuple(t for t in terms if t in adds), tuple(t for t in terms if t in rems),
                edited,
            )
            by_node.setdefault(node, []).append((k, op))
        need[k] = tuple({reps for t in (*e.add, *e.remove) for reps in placement.term_write_sets(t)})
    return by_node, need


def done_entries(entries: list[OutboxEntry], acked_by: dict[int, set[str]], need: Needs, w: int) -> list[OutboxEntry]:
    """The entries whose every replica set acknowledged W times."""
    return [e for k, e in enumerate(entries) if acked_by_every(acked_by.get(k, set()), need[k], w)]


def plan_done(done: Iterable[OutboxEntry], placement: Placement) -> tuple[Sends, Needs]:
    """OutboxDone of these entries to every replica of each tweet (either ring's while it moves)."""
    by_node: Sends = {}
    need: Needs = {}
    for k, e in enumerate(done):
        r = OutboxDone(e.tweet_id, e.version)
        need[k] = sets = placement.tweet_write_sets(e.tweet_id)
        for node in dict.fromkeys(n for reps in sets for n in reps):
            by_node.setdefault(node, []).append((k, r))
    return by_node, need
