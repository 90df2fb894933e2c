"""Tombstone collection in one process (tests/support/mempool.py: real NodeServices, coordinators and Peers, calls
through msgpack; read repair wired as node/app.py wires it): a replica away for longer than the grace comes back
holding old copies of deleted tweets, and nothing deleted ever comes back - through reads, read repair,
anti-entropy or the collection passes themselves - while every tombstone is eventually dropped on every node.
An unsafe collector (dropping without hearing from the away replica) resurrects them in the same scenario: that
is what the rules prevent. Leftover data on a member that no longer replicates a partition blocks its collection
until `cleanup` there. Time: the services' and collectors' wall clock is a variable moved by the test; trio's
clock is a MockClock."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from node.cluster import rebalance as rb
from node.cluster.collector import Collector
from node.coordinator import SearchRequest
from node.errors import Conflict, MurmurError, NotFound
from node.model import Tweet, TweetIn
from node.query.parser import parse
from node.ring import topology as tp
from node.shard import PutTweet
from tests.support.mempool import NOW_MS, MemCluster

GRACE_S = 3600.0
FOUR = ("a", "b", "c", "d")  # more nodes than N=3: postings through the outbox
THREE = ("a", "b", "c")  # N = nodes: every node indexes locally


class WallClock:
    def __init__(self) -> None:
        self.ms = NOW_MS

    def __call__(self) -> int:
        return self.ms


def wire(cl: MemCluster, clock: WallClock) -> dict[str, Collector]:
    """One collector per node, on `clock` (the cluster's services were made with it: MemCluster(clock_ms=...))."""
    return {
        x: Collector(x, cl.services[x], cl.placements[x], cl.keepers.get(x), GRACE_S, 0, clock) for x in cl.names
    }


async def anti_entropy_round(cl: MemCluster) -> int:
    """Every node compares each of its (partition, peer) pairs once."""
    moved = 0
    for x in cl.names:
        svc = cl.services[x]
        moved += await svc.anti_entropy_step()
        assert svc.anti_entropy.sync_round.pairs is not None
        for _ in range(len(svc.anti_entropy.sync_round.pairs) - 1):
            moved += await svc.anti_entropy_step()
    return moved


async def found(cl: MemCluster, x: str, tweet_id: int) -> Tweet | None:
    try:
        return await cl.coords[x].get_tweet(tweet_id)
    except NotFound:
        return None


async def searched(cl: MemCluster, x: str, q: str) -> set[int]:
    res = await cl.coords[x].search(SearchRequest(parse(q), count=100))
    assert not res.partial
    return {t.id for t in res.tweets}


async def load(cl: MemCluster, count: int) -> list[int]:
    res = await cl.coords["a"].bulk_create(
        [TweetIn(text=f"zqcommon zqword{i}", user="u", id=1000 + i) for i in range(count)]
    )
    assert not any(isinstance(r, MurmurError) for r in res)
    return [1000 + i for i in range(count)]


async def delete_while_away(cl: MemCluster, ids: list[int], away: str) -> list[int]:
    cl.cut(away)
    victims = ids[::3]
    for v in victims:
        await cl.coords["a"].delete_tweet(v)
    held = [v for v in victims if v in cl.services[away].shard.tweets]
    assert held, "the away replica must hold old copies of some deleted tweets"
    return victims


def holders(cl: MemCluster, tweet_id: int) -> list[str]:
    """The nodes that hold anything (a copy or a tombstone) for the id."""
    return [x for x in cl.names if cl.services[x].shard.version_of(tweet_id)]


@pytest.mark.parametrize("names", [THREE, FOUR], ids=["local-index", "outbox"])
def test_a_replica_away_longer_than_the_grace_resurrects_nothing_and_tombstones_go(names: tuple[str, ...]) -> None:
    async def main() -> None:
        clock = WallClock()
        cl = MemCluster(names, repairs=True, clock_ms=clock)
        collectors = wire(cl, clock)
        ids = await load(cl, 60)
        victims = await delete_while_away(cl, ids, "c")
        clock.ms += int(GRACE_S * 1000) * 3  # c is away for three graces
        for x in names:
            if x != "c":
                await collectors[x].collect_pass()
                assert collectors[x].last_pass["rounds_incomplete"] > 0  # every round needs c
        reps = {v: sorted(cl.placements["a"].tweet(v)[1]) for v in victims}
        assert all(holders(cl, v) == reps[v] for v in victims)  # nothing was dropped anywhere
        cl.heal()  # c is back with its old copies, before any anti-entropy
        async with trio.open_nursery() as n:
            cl.start_repairs(n)
            survivors = set(ids) - set(victims)
            for x in names:
                for v in victims:
                    assert await found(cl, x, v) is None, (x, v)
                assert await searched(cl, x, "zqcommon") == survivors
            for _ in range(3):  # anti-entropy, collection passes and read repair, until every tombstone is gone
                await anti_entropy_round(cl)
                for x in names:
                    await collectors[x].collect_pass()
                await trio.sleep(1)
            for v in victims:
                assert holders(cl, v) == [], (v, holders(cl, v))
            assert all(collectors[x].collected for x in names)
            # nothing comes back from any path: anti-entropy has nothing left to exchange, reads find nothing
            assert await anti_entropy_round(cl) == 0
            for x in names:
                for v in victims:
                    assert await found(cl, x, v) is None
                assert await searched(cl, x, "zqcommon") == survivors
                for i in sorted(survivors)[::5]:
                    got = await found(cl, x, i)
                    assert got is not None and got.text == f"zqcommon zqword{i - 1000}"
                assert collectors[x].service.shard.store.deleted_count() == 0
            n.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_an_unsafe_collector_that_forgets_the_away_replica_resurrects_deleted_tweets() -> None:
    """The same story with the rounds skipped: the tombstones are dropped on the replicas that have them while the
    away one still holds old copies; its anti-entropy then brings the deleted tweets back."""

    async def main() -> None:
        clock = WallClock()
        cl = MemCluster(THREE, clock_ms=clock)
        wire(cl, clock)
        ids = await load(cl, 60)
        victims = await delete_while_away(cl, ids, "c")
        for x in ("a", "b"):
            assert cl.services[x].shard.collect(victims) == len(victims)
        cl.heal()
        await anti_entropy_round(cl)
        back = [v for v in victims if await found(cl, "a", v) is not None]
        assert back and all(cl.services["a"].shard.tweets.get(v) is not None for v in back)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_leftover_data_on_a_member_that_no_longer_replicates_blocks_collection_until_its_cleanup(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        clock = WallClock()
        cl = MemCluster(FOUR, data_dir=tmp_path, clock_ms=clock)
        collectors = wire(cl, clock)
        ids = await load(cl, 60)
        pl = cl.placements["a"]
        victim = next(i for i in ids if "d" not in pl.tweet(i)[1] and "a" in pl.tweet(i)[1])
        old = cl.services["a"].shard.tweets[victim]
        await cl.coords["a"].delete_tweet(victim)
        # d kept an old copy of it: the leftover of a range it gave away (as after a join, until cleanup)
        cl.services["d"].shard.apply(PutTweet(old))
        clock.ms += int(GRACE_S * 1000) + 1
        for x in ("a", "b", "c"):
            await collectors[x].collect_pass()
        assert set(holders(cl, victim)) == {*pl.tweet(victim)[1], "d"}
        assert all(cl.services[x].shard.tombstones.get(victim) for x in pl.tweet(victim)[1])  # kept: d blocks
        got = await collectors["d"].cleanup()
        assert got["tweets_dropped"] > 0 and victim not in cl.services["d"].shard.tweets
        for x in ("a", "b", "c"):
            await collectors[x].collect_pass()
        assert holders(cl, victim) == []

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_cleanup_and_collection_wait_for_a_settled_ring_that_every_member_agrees_on(tmp_path: Path) -> None:
    async def main() -> None:
        clock = WallClock()
        cl = MemCluster(FOUR, data_dir=tmp_path, clock_ms=clock)
        collectors = wire(cl, clock)
        ids = await load(cl, 30)
        await cl.coords["a"].delete_tweet(ids[0])
        clock.ms += int(GRACE_S * 1000) + 1
        base = cl.keepers["a"].topology
        # b alone has a newer (settled) topology: a must not clean up by its own older idea of the ring
        newer = msgspec.structs.replace(base, version=base.version + 1)
        assert (await cl.keepers["b"].install(newer, rb.FORCE)).ok
        with pytest.raises(Conflict, match="b has topology version"):
            await collectors["a"].cleanup()
        assert "topology version" in str(collectors["a"].last_cleanup_error)
        # a join starts: the ring moves everywhere
        moving = tp.begin_join(newer, "e", "127.0.0.1", 9050, 9150, 9, 8)
        for x in FOUR:
            assert (await cl.keepers[x].install(moving, rb.FORCE)).ok
        for x in FOUR:
            with pytest.raises(Conflict, match="moving"):
                await collectors[x].cleanup()
            assert (await collectors[x].collect_pass())["skipped"] == "the ring is moving"
        assert all(ids[0] in cl.services[x].shard.tombstones for x in cl.placements["a"].tweet(ids[0])[1])
        # settled again (the join aborted): both run
        back = tp.abort(moving)
        for x in FOUR:
            assert (await cl.keepers[x].install(back, rb.FORCE)).ok
        for x in FOUR:
            assert (await collectors[x].cleanup())["tweets_dropped"] == 0  # nothing moved: nothing to drop
            await collectors[x].collect_pass()
        assert holders(cl, ids[0]) == []

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
