"""The replication core in one process: three NodeServices joined by a direct in-memory caller that can cut a
node off. Checks W/R quorums, 503 when W cannot be reached, and that the outbox finishes interrupted indexing
(after a restart too). The network is simulated here on purpose; real processes are in test_cluster_*.py."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.lowlevel

from node.cluster.coordinator import ClusterCoordinator
from node.cluster.placement import Placement
from node.cluster.service import NodeService
from node.coordinator import SearchRequest
from node.errors import Unavailable
from node.ids import SnowflakeGenerator
from node.model import TweetIn
from node.query.match import index_terms
from node.query.parser import parse
from node.ring.ring import Ring
from node.shard import PostingOps, PutTweet, Shard, decode_record

NAMES = ["a", "b", "c"]


class MemLog:
    def __init__(self) -> None:
        self.records: list[bytes] = []

    async def append(self, payloads: list[bytes]) -> int:
        self.records.extend(payloads)
        return len(self.records)


class Net:
    """Routes calls straight to the services; nodes in `down` raise Unavailable like a dead peer."""

    def __init__(self) -> None:
        self.services: dict[str, NodeService] = {}
        self.down: set[str] = set()

    def caller(self, me: str) -> Any:
        net = self

        class Caller:
            def is_up(self, node: str) -> bool:
                return node not in net.down

            async def call(self, node: str, req: Any, timeout_s: float = 5.0) -> Any:
                if node in net.down or me in net.down:
                    raise Unavailable(f"{node} is down")
                await trio.lowlevel.checkpoint()
                return await net.services[node].handle(req, me)

        return Caller()


def cluster(
    shards: dict[str, Shard] | None = None, names: list[str] = NAMES
) -> tuple[Net, dict[str, ClusterCoordinator], dict[str, MemLog]]:
    """N=3 W=2 R=2 on `names`: three nodes index locally (N = nodes); with more, postings go through the outbox."""
    ring = Ring.build(names, 8)
    placement = Placement(ring, 3)
    net = Net()
    logs: dict[str, MemLog] = {}
    coords = {}
    for i, n in enumerate(names):
        logs[n] = MemLog()
        svc = NodeService(
            n, (shards or {}).get(n) or Shard(), logs[n], placement, 2, lambda: 1_700_000_000_000, peers=net.caller(n)
        )
        net.services[n] = svc
        coords[n] = ClusterCoordinator(
            n,
            placement,
            2,
            net.caller(n),
            SnowflakeGenerator(i + 1),
            lambda: 1_700_000_000_000,
            lambda: [{"name": x, "state": "up"} for x in names],
            {},
            service=svc,  # local-first searches read this node's own copy
        )
    return net, coords, logs


async def ids_for(coord: ClusterCoordinator, q: str) -> list[int]:
    res = await coord.search(SearchRequest(parse(q)))
    return [t.id for t in res.tweets]


def test_write_with_one_node_down_is_acknowledged_and_found_everywhere() -> None:
    async def main() -> None:
        net, coords, _ = cluster()
        net.down = {"c"}
        created = await coords["a"].create_tweet(TweetIn(text="hello quorum world", user="u", id=77))
        assert created.created
        net.down = {"b"}  # now the other replica is the one missing: R=2 still overlaps a W=2 copy
        for n in ("a", "c"):
            assert await ids_for(coords[n], "quorum") == [77]
            assert (await coords[n].get_tweet(77)).text == "hello quorum world"

    trio.run(main)


FOUR = ["a", "b", "c", "d"]  # more nodes than N: the postings go through the outbox


@pytest.mark.parametrize("names", [FOUR, NAMES], ids=["outbox", "local-index"])
def test_w_unreachable_is_503_and_a_retry_finishes_the_write(names: list[str]) -> None:
    async def main() -> None:
        net, coords, _ = cluster(names=names)
        tid = next(i for i in range(1, 10_000) if coords["a"].placement.preferred_of_tweet(i) == "a")
        others = set(coords["a"].placement.tweet(tid)[1]) - {"a"}
        net.down = others
        # No election can be won alone: refused before anything is stored.
        with pytest.raises(Unavailable):
            await coords["a"].create_tweet(TweetIn(text="lonely tweet", user="u", id=tid))
        assert tid not in net.services["a"].shard.tweets
        net.down = set()
        pid = coords["a"].placement.tweet_partition(tid)[0]
        await net.services["a"].ensure_elected(pid, coords["a"].placement.tweet(tid)[1])
        net.down = others  # a master already elected stores locally, then misses W
        with pytest.raises(Unavailable):
            await coords["a"].create_tweet(TweetIn(text="lonely tweet", user="u", id=tid))
        assert tid in net.services["a"].shard.tweets  # kept, not acknowledged
        if names == FOUR:
            assert tid in net.services["a"].shard.outbox  # its index work too
        net.down = set()
        # the retry of the same id is safe: it re-replicates and finishes the indexing, then answers 200
        again = await coords["b"].create_tweet(TweetIn(text="lonely tweet", user="u", id=tid))
        assert not again.created
        for n in names:
            assert await ids_for(coords[n], "lonely") == [tid]
        assert all(tid not in net.services[n].shard.outbox for n in names)

    trio.run(main)


def test_interrupted_indexing_is_completed_by_the_master_after_a_restart() -> None:
    async def main() -> None:
        net, coords, logs = cluster(names=FOUR)
        tid = next(i for i in range(1, 10_000) if coords["a"].placement.preferred_of_tweet(i) == "a")
        second = coords["a"].placement.tweet(tid)[1][1]
        tweet = (await coords["a"].create_tweet(TweetIn(text="first words", user="u", id=tid))).tweet
        # The master crashes after its tweet partition stored an edit but before any term partition saw it:
        import msgspec

        edited = msgspec.structs.replace(tweet, text="second words", version=tweet.version + 1)
        new_terms = index_terms(edited)[0]
        rec = PutTweet(edited, tuple(sorted(new_terms)), tuple(sorted(index_terms(tweet)[0] - new_terms)))
        for n in ("a", second):
            net.services[n].shard.apply(rec)
            await logs[n].append([msgspec.msgpack.encode(rec)])
        # restart every node from its log alone (no snapshot): the outbox comes back with the tweet
        shards = {}
        for n in FOUR:
            sh = Shard()
            for payload in logs[n].records:
                sh.apply(decode_record(payload))
            shards[n] = sh
        net2, coords2, _ = cluster(shards, names=FOUR)
        reader = next(n for n in FOUR if n not in ("a", second))
        assert await ids_for(coords2[reader], "second") == []  # half-indexed until the driver runs
        assert await net2.services["a"].drive_pending() == 1
        for n in FOUR:
            assert await ids_for(coords2[n], "second") == [tid]
            assert await ids_for(coords2[n], "first") == []

    trio.run(main)


def test_batch_limits_are_refused_and_change_nothing() -> None:
    from node.cluster import limits
    from node.errors import MurmurError
    from node.model import Tweet
    from node.replication import messages as m

    async def main() -> None:
        net, _coords, logs = cluster()
        svc = net.services["a"]
        recs = [
            PutTweet(Tweet(id=i + 1, created_at_ms=0, user="u", text="x", version=1))
            for i in range(limits.APPLY_RECORDS_MAX + 1)
        ]
        for req in (
            m.ApplyReq(recs),
            m.GetReq(list(range(1, limits.GET_IDS_MAX + 2))),
            m.WindowReq([m.WindowItem("x", None, None, 5)] * (limits.WINDOW_ITEMS_MAX + 1)),
            m.ProbeReq([m.ProbeItem("x", [1])] * (limits.WINDOW_ITEMS_MAX + 1)),
            m.WriteReq([m.DeleteOp(1)] * (limits.WRITE_OPS_MAX + 1)),
            m.KeysReq(0, 1, list(range(limits.SYNC_BUCKETS_MAX + 1))),
            m.FetchReq(list(range(1, limits.GET_IDS_MAX + 2))),
        ):
            with pytest.raises(MurmurError):
                await svc.handle(req, "b")
        assert not svc.shard.tweets and not logs["a"].records
        # a window is clamped to WINDOW_LIMIT_MAX ids, whatever a caller asks for
        over = limits.WINDOW_LIMIT_MAX + 10
        await svc.apply([PostingOps(i, 1, ("w",)) for i in range(1, over + 1)][: limits.APPLY_RECORDS_MAX])
        for start in range(limits.APPLY_RECORDS_MAX + 1, over + 1, limits.APPLY_RECORDS_MAX):
            await svc.apply(
                [
                    PostingOps(i, 1, ("w",))
                    for i in range(start, min(over, start + limits.APPLY_RECORDS_MAX - 1) + 1)
                ]
            )
        (res,) = svc.window([m.WindowItem("w", None, None, 10**9)])
        assert len(res.ids) == limits.WINDOW_LIMIT_MAX and not res.exhausted and res.ids[0] == over
        assert res.df == over

    trio.run(main)
