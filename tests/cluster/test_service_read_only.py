"""A node that cannot persist (node/storage/mode.py, read-only) in the replication core, on the in-memory
cluster of test_service_sim.py: every write path refuses BEFORE it changes the shard (replica apply, promise,
the master's own write), writes still succeed through the other replicas while W of them can persist, reads
are served by the read-only node, and when no replica can persist the write is 503 and stored nowhere."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.errors import Unavailable
from node.model import TweetIn
from node.replication import messages as m
from node.storage.mode import ReadOnly
from tests.cluster.test_service_sim import cluster, ids_for


def _tid_mastered_by(coords: dict, node: str) -> int:  # type: ignore[type-arg]
    return next(i for i in range(1, 10_000) if coords[node].placement.preferred_of_tweet(i) == node)


def test_a_read_only_replica_refuses_apply_and_promise_and_changes_nothing() -> None:
    async def main() -> None:
        net, coords, logs = cluster()
        net.down = {"c"}
        await coords["a"].create_tweet(TweetIn(text="missed by c", user="u", id=5))
        net.down = set()
        c = net.services["c"]
        rec = net.services["a"].record_of(5)
        assert rec is not None
        c.mode.on_fault("wal_write", "No space left on device", 0.0)
        before = (len(c.shard.tweets), dict(c.shard.promised), len(logs["c"].records))
        with pytest.raises(ReadOnly):
            await c.apply([rec])
        with pytest.raises(ReadOnly):
            await c.apply([], [(0, 99)])  # a fence that would teach it a new epoch
        with pytest.raises(ReadOnly):
            await c.promise(0, 99)
        with pytest.raises(ReadOnly):
            await c.handle(m.ApplyReq([rec]), "a")  # the RPC path: a 503 to the master
        assert (len(c.shard.tweets), dict(c.shard.promised), len(logs["c"].records)) == before
        assert 5 not in c.shard.tweets
        c.mode.on_clear("wal_write", 1.0)
        await c.apply([rec])  # writable again: the same apply now lands
        assert 5 in c.shard.tweets

    trio.run(main)


def test_writes_go_around_a_read_only_master_and_its_reads_are_served() -> None:
    async def main() -> None:
        net, coords, _ = cluster()
        a = net.services["a"]
        tid = _tid_mastered_by(coords, "a")
        await coords["a"].create_tweet(TweetIn(text="written before the disk filled", user="u", id=tid))
        a.mode.on_fault("free_space", "10 bytes free", 0.0)
        tweets_before = len(a.shard.tweets)
        # Through the read-only node and through another one: its write is refused, the next replica takes the
        # partition (W = 2 of b and c can persist) and the write is acknowledged.
        for coord, new_id in ((coords["a"], tid + 100_000), (coords["b"], tid + 200_000)):
            new = next(i for i in range(new_id, new_id + 10_000) if coord.placement.preferred_of_tweet(i) == "a")
            got = await coord.create_tweet(TweetIn(text="written while a is read only", user="u", id=new))
            assert got.created
        assert len(a.shard.tweets) == tweets_before  # nothing reached the read-only node's memory
        assert (await coords["a"].get_tweet(tid)).text == "written before the disk filled"  # reads are served
        assert len(await ids_for(coords["a"], "read only")) == 2  # and searches, with every new tweet

    trio.run(main)


def test_with_every_replica_read_only_a_write_is_503_and_stored_nowhere() -> None:
    async def main() -> None:
        net, coords, logs = cluster()
        for svc in net.services.values():
            svc.mode.on_fault("wal_write", "No space left on device", 0.0)
        with pytest.raises(Unavailable):
            await coords["b"].create_tweet(TweetIn(text="nowhere to go", user="u", id=42))
        for n, svc in net.services.items():
            assert 42 not in svc.shard.tweets and not logs[n].records
        for svc in net.services.values():
            svc.mode.on_clear("wal_write", 1.0)
        assert (await coords["b"].create_tweet(TweetIn(text="nowhere to go", user="u", id=42))).created

    # The coordinator retries at each replica until its write deadline: virtual time makes that instant.
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
