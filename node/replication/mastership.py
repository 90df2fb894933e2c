"""Who may order a tweet partition's writes (pure): epochs, promises and fences, and which keys two replicas
must exchange to converge. The rules a master election and anti-entropy follow; the shells in
node/cluster/ (elector.py, replica.py, anti_entropy.py) carry the messages. Never sends, sleeps or reads a clock.

An election, Paxos phase 1 style: a candidate picks an epoch above every epoch it knows, and asks the partition's
replicas to promise it. A replica promises only an epoch above all it has promised *and* above every epoch in its
data; a promise is durable (a Promise record). With `promise_quorum` promises the candidate pulls from each
promiser every key it lacks, then orders writes stamped (epoch << 40 | seq). Every replica refuses a write whose
fence (the master's partition, epoch) is below its promise. Why nothing acknowledged is lost: an acknowledged
write is on W replicas, the promisers number more than N - W, so one promiser holds it - it had it before it
promised (and is pulled from), or it refuses it afterwards (and then the write never reached W). Why no two
masters write in one epoch: promisers number more than N / 2 and each promises an epoch once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def promise_quorum(n: int, w: int) -> int:
    """Promises a candidate needs: more than N - W (so it meets every acknowledged write) and more than N / 2
    (so two candidates never win the same epoch)."""
    return max(n - w + 1, n // 2 + 1)


def may_promise(promised: int, data_epoch: int, epoch: int) -> bool:
    """A replica promises `epoch` only above its last promise and above every epoch in its data, so versions
    the new master stamps exceed every version already stored for the partition."""
    return epoch > promised and epoch > data_epoch


def next_epoch(*known: int) -> int:
    return max(known, default=0) + 1


def fence_ok(promised: int, epoch: int) -> bool:
    """A master's write in `epoch` is accepted unless this replica promised a newer one."""
    return epoch >= promised


def differing_buckets(mine: Mapping[int, int], theirs: Mapping[int, int]) -> list[int]:
    """Digest buckets whose contents differ (a bucket absent on one side counts as empty)."""
    return sorted(b for b in set(mine) | set(theirs) if mine.get(b, 0) != theirs.get(b, 0))


def exchange(mine: Mapping[int, int], theirs: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Given my versions by id and the peer's (id, version) keys of the same buckets: -> (ids to pull, ids to
    push). The higher version wins on both sides, so after the exchange both hold the max of each key."""
    seen: dict[int, int] = {}
    pull = []
    for i, v in theirs:
        seen[i] = v
        if v > mine.get(i, 0):
            pull.append(i)
    push = [i for i, v in mine.items() if v > seen.get(i, 0)]
    return sorted(pull), sorted(push)
