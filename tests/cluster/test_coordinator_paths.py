"""Coordinator behaviours the README states, in one process (three NodeServices behind the real Peers shell, whose
calls go through msgpack to the other service, tests/support/mempool.py): read repair with the repair channel wired
as node/app.py wires it (a stale replica read through another node is brought up to date; a full repair queue
drops entries and never blocks a read), the retry of a generated id that collides with a stored one (and the bound
on those retries), the search deadline turning into `partial: true` (the coordinator drives the search cursor under
one trio.move_on_after), and Peers adopting a newer topology that a peer's ping reports
(node.cluster.rebalance.Keeper.catch_up). Time is trio's MockClock (autojump): exact, and instant in real time."""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from node.app import REPAIR_QUEUE_MAX
from node.cluster import limits
from node.cluster import rebalance as rb
from node.cluster.coordinator import ClusterCoordinator, drive
from node.coordinator import SearchRequest
from node.errors import Unavailable
from node.ids import SnowflakeGenerator
from node.model import Tweet, TweetIn, TweetPatch
from node.query.parser import parse
from node.replication import messages as m
from node.ring import topology as tp
from node.search.cursor import (
    Answer,
    Copy,
    Hydrate,
    HydrateAnswer,
    Pushdown,
    PushdownAnswer,
    SearchCursor,
    Step,
)
from tests.support.mempool import NOW_MS, MemCluster


def mock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def until(pred: Callable[[], bool], timeout_s: float, step_s: float = 0.01) -> None:
    """Wait (in trio's clock) until pred() holds; TooSlowError after timeout_s."""
    with trio.fail_after(timeout_s):
        for _ in itertools.count():
            if pred():
                return
            await trio.sleep(step_s)


# ---------------------------------------------------------------- read repair


def test_a_read_through_another_node_repairs_a_stale_replica() -> None:
    async def main() -> None:
        cl = MemCluster(repairs=True)
        async with trio.open_nursery() as n:
            cl.start_repairs(n)
            await cl.coords["a"].create_tweet(TweetIn(text="first words", user="u", id=77))
            assert all(cl.services[x].shard.tweets[77].text == "first words" for x in cl.names)
            cl.cut("c")  # c misses the edit (no hints wired here: only a repair can bring it)
            edited = await cl.coords["a"].patch_tweet(77, TweetPatch(text="second words"))
            cl.heal()
            assert cl.services["c"].shard.tweets[77].text == "first words"
            cl.cut("a")  # b's R=2 read now asks b and c: c's copy is older
            got = await cl.coords["b"].get_tweet(77)
            assert got.text == "second words" and got.version == edited.version  # the answer is the newest
            # virtual seconds: the repair loop runs as soon as it is scheduled
            await until(lambda: cl.services["c"].shard.tweets[77].version == edited.version, 5)
            assert cl.services["c"].shard.tweets[77].text == "second words"
            assert cl.repaired["c"] >= 1
            n.cancel_scope.cancel()

    trio.run(main, clock=mock())


def test_a_full_repair_queue_drops_repairs_and_never_blocks_a_read() -> None:
    async def main() -> None:
        cl = MemCluster(repairs=True)  # the channel of node/app.py, with no loop draining it yet
        ids = list(range(1000, 1000 + 2 * REPAIR_QUEUE_MAX))
        res = await cl.coords["a"].bulk_create([TweetIn(text=f"old text {i}", user="u", id=i) for i in ids])
        assert all(not isinstance(r, Exception) for r in res)
        cl.cut("c")
        for i in ids:
            await cl.coords["a"].patch_tweet(i, TweetPatch(text=f"new text {i}"))
        cl.heal()
        cl.cut("a")
        with trio.fail_after(30):  # a blocked send would hang here (autojump: the deadline comes at once)
            for i in ids:
                assert (await cl.coords["b"].get_tweet(i)).text == f"new text {i}"
        sender = cl.repair_channels["b"][0]
        assert sender.statistics().current_buffer_used == REPAIR_QUEUE_MAX  # full: the other reads' repairs dropped
        async with trio.open_nursery() as n:
            cl.start_repairs(n)
            await until(lambda: not sender.statistics().current_buffer_used, 5)
            await trio.sleep(0.1)
            n.cancel_scope.cancel()
        fixed = [i for i in ids if cl.services["c"].shard.tweets[i].text == f"new text {i}"]
        assert len(fixed) == REPAIR_QUEUE_MAX, len(fixed)  # the queued ones; anti-entropy is left the rest

    trio.run(main, clock=mock())


# ---------------------------------------------------------------- generated ids


def predicted(coord: ClusterCoordinator) -> Callable[[], int]:
    """The ids coordinator `coord` will generate next, in order (its rule, on a copy of its generator's state)."""
    shadow = copy.copy(coord)
    shadow.ids = copy.deepcopy(coord.ids)
    return lambda: shadow._new_id(NOW_MS)


def test_a_generated_id_that_is_taken_is_retried_with_the_next() -> None:
    async def main() -> None:
        cl = MemCluster()
        nxt = predicted(cl.coords["a"])
        first, second = nxt(), nxt()
        await cl.coords["b"].create_tweet(TweetIn(text="a client chose this id", user="x", id=first))
        created = await cl.coords["a"].create_tweet(TweetIn(text="no id given", user="y"))
        assert created.created and created.tweet.id == second  # id_taken, then the next id
        assert (await cl.coords["c"].get_tweet(first)).text == "a client chose this id"  # untouched
        # a deleted id is taken forever, too
        third = nxt()
        await cl.coords["b"].create_tweet(TweetIn(text="soon deleted", user="x", id=third))
        await cl.coords["b"].delete_tweet(third)
        again = await cl.coords["a"].create_tweet(TweetIn(text="no id again", user="y"))
        assert again.tweet.id == nxt()

    trio.run(main, clock=mock())


def test_generated_ids_are_mastered_by_their_coordinator_when_it_holds_every_partition() -> None:
    """N = the number of nodes: a coordinator skips sequence numbers until the id's partition routes to itself
    (no hop to another master); the ids still increase, and are still its own (machine bits)."""
    async def main() -> None:
        cl = MemCluster()
        for name, coord in cl.coords.items():
            ids = [coord._new_id(NOW_MS) for _ in range(60)]
            assert ids == sorted(set(ids))
            assert all(i & 0x1FFF == coord.ids.machine for i in ids)
            local = sum(coord._acting_for(coord.placement.tweet(i)) == name for i in ids)
            assert local >= 50, (name, local)  # (2/3)^8 of them may miss after LOCAL_ID_TRIES
            plain = SnowflakeGenerator(coord.ids.machine)
            assert sum(coord._acting_for(coord.placement.tweet(plain.next_id(NOW_MS))) == name for _ in range(60)) < 40

    trio.run(main, clock=mock())


def test_generated_id_retries_are_bounded() -> None:
    async def main() -> None:
        cl = MemCluster()
        nxt = predicted(cl.coords["a"])
        taken = [nxt() for _ in range(limits.ID_RETRIES_MAX)]
        await cl.coords["b"].bulk_create([TweetIn(text=f"taken {i}", user="x", id=i) for i in taken])
        with pytest.raises(Unavailable, match="free id"):
            await cl.coords["a"].create_tweet(TweetIn(text="every id I try is taken", user="y"))
        assert all(cl.services["a"].shard.tweets[i].text.startswith("taken") for i in taken)

    trio.run(main, clock=mock())


# ---------------------------------------------------------------- the search deadline


def test_a_search_past_its_deadline_answers_partial_with_what_it_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every candidate of a phrase fails the exact check but one, the oldest: the search walks them all, round
    after round, from replicas that take 50 ms per read. A complete run is the control."""
    texts = [f"beta then alpha {i}" for i in range(600)]  # both words, never the phrase "alpha beta"

    async def load(cl: MemCluster) -> None:
        await cl.coords["a"].create_tweet(TweetIn(text="alpha beta at last", user="u", id=1))
        await cl.coords["a"].bulk_create([TweetIn(text=t, user="u", id=10 + i) for i, t in enumerate(texts)])

    async def run(deadline_s: float) -> tuple[list[int], bool, float]:
        cl = MemCluster()
        await load(cl)
        cl.slow_reads_s = 0.05
        monkeypatch.setattr(limits, "SEARCH_DEADLINE_S", deadline_s)
        t0 = trio.current_time()
        res = await cl.coords["b"].search(SearchRequest(parse('"alpha beta"'), count=1))
        return [t.id for t in res.tweets], res.partial, trio.current_time() - t0

    ids, partial, took = trio.run(run, 60.0, clock=mock())
    assert (ids, partial) == ([1], False) and took < 60  # the control: every round read, the one match found
    ids, partial, took = trio.run(run, 0.15, clock=mock())
    assert partial is True and ids == [] and took == pytest.approx(0.15)  # never a wrong tweet, never an error


def test_a_peer_that_never_answers_makes_a_search_partial_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both other replicas take the digest call and never answer (their per-call timeout put beyond the search's
    deadline): the search answers at its deadline, partial, and at once in real time (MockClock)."""

    async def main() -> float:
        cl = MemCluster()
        await cl.coords["a"].bulk_create([TweetIn(text=f"apple {i}", user="u", id=100 + i) for i in range(5)])
        monkeypatch.setattr(limits, "SEARCH_PEER_TIMEOUT_S", 3600.0)
        cl.hang("b")
        cl.hang("c")
        t0 = trio.current_time()
        res = await cl.coords["a"].search(SearchRequest(parse("apple"), explain=True))
        assert res.partial and res.tweets == [] and res.stages is not None
        return trio.current_time() - t0

    real = time.monotonic()
    assert trio.run(main, clock=mock()) == pytest.approx(limits.SEARCH_DEADLINE_S)
    assert time.monotonic() - real < limits.SEARCH_DEADLINE_S  # virtual seconds: it never waited them out


def test_the_deadline_keeps_what_was_found_before_a_call_that_never_returns() -> None:
    """The shell alone (node.cluster.coordinator.drive): a pushed-down search whose first hydration answers half
    its chunk and whose second never returns gives that half, partial, at the deadline; explain has the stages
    of the steps that ran."""
    ids = list(range(40, 24, -1))
    asked: list[Step] = []

    async def run(step: Step) -> Answer:
        asked.append(step)
        if isinstance(step, Pushdown):
            return PushdownAnswer({nd: m.WindowResult(ids, False, 0) for nd in step.nodes})
        assert isinstance(step, Hydrate)
        if len(asked) > 2:
            await trio.sleep_forever()
        copies: dict[int, list[tuple[str, Copy | None]]] = {i: [("b", None), ("c", None)] for i in step.ids}
        for i in step.ids[:5]:  # the others: both replicas answered that they hold no such tweet
            t = Tweet(id=i, created_at_ms=0, user="u", text="apple", version=1)
            copies[i] = [("b", t), ("c", t)]
        return HydrateAnswer(copies)

    async def main() -> tuple[list[int], bool, dict[str, float], float]:
        cur = SearchCursor(parse("apple"), 10, None, None, 2, "pushdown", ["b", "c"])
        t0 = trio.current_time()
        out = await drive(cur, run)
        return [t.id for t in out.tweets], out.partial, out.stages, trio.current_time() - t0

    got, partial, stages, took = trio.run(main, clock=mock())
    assert got == ids[:5] and partial and took == pytest.approx(limits.SEARCH_DEADLINE_S)
    assert [type(s) for s in asked] == [Pushdown, Hydrate, Hydrate] and {"query", "hydrate"} <= set(stages)


# ---------------------------------------------------------------- topology from pings


def test_a_node_behind_adopts_the_newer_topology_a_peer_reports(tmp_path: Path) -> None:
    async def main() -> None:
        cl = MemCluster(data_dir=tmp_path)
        t1 = cl.keepers["a"].topology
        assert t1.version == 1 and all(cl.keepers[x].topology == t1 for x in cl.names)
        t2 = tp.begin_join(t1, "d", "127.0.0.1", 9004, 9104, 9, 8)  # installed on b while a and c were away
        assert (await cl.keepers["b"].install(t2, rb.FORCE)).ok
        asked: list[str] = []
        cl.on_request = lambda to, req: asked.append(to) if isinstance(req, m.TopologyReq) else None
        async with trio.open_nursery() as n:
            n.start_soon(cl.peers["a"].count_loop)  # pings every PEER_PING_INTERVAL_S (virtual)
            # (virtual time runs on while the topology file is written in a thread: a generous bound)
            await until(lambda: cl.keepers["a"].topology.version >= t2.version, 3600, 0.05)
            n.cancel_scope.cancel()
        assert cl.keepers["a"].topology == t2 and rb.load(tmp_path / "a") == t2  # adopted and persisted
        assert cl.placements["a"].next_ring is not None and "d" in cl.peers["a"].addrs  # and in use
        assert set(asked) == {"b"}  # fetched from the peer that reported it; c (as old as a) never asked
        assert msgspec.structs.asdict(cl.keepers["c"].topology) == msgspec.structs.asdict(t1)

    trio.run(main, clock=mock())


# ---------------------------------------------------------------- where a write goes


def _masters(cl: MemCluster, pid: int) -> set[str]:
    return {x for x in cl.names if pid in cl.services[x].elected}


def test_a_brief_suspicion_moves_no_mastership_and_a_long_one_routes_around() -> None:
    """Every coordinator picks a write's master from the preference list and gossip alone, so that they agree:
    a replica suspected for a moment (a node slow under load) keeps its partitions; one suspected for longer
    than ROUTE_AROUND_SUSPECT_S (paused, cut off) is routed around before gossip declares it dead."""

    async def main() -> None:
        cl = MemCluster()
        a = cl.coords["a"]
        pid, reps = next(
            (p, r) for p, r in (cl.placements["a"].tweet_partition(i) for i in range(1, 10_000)) if r[0] == "b"
        )
        ids = (i for i in range(1, 10**6) if cl.placements["a"].tweet_partition(i)[0] == pid)
        await a.create_tweet(TweetIn(text="one", user="u", id=next(ids)))
        assert _masters(cl, pid) == {"b"}
        cl.peers["a"].set_state("b", "suspect")
        await trio.sleep(limits.ROUTE_AROUND_SUSPECT_S / 2)
        await a.create_tweet(TweetIn(text="two", user="u", id=next(ids)))
        assert _masters(cl, pid) == {"b"}, "a brief suspicion moved the mastership"
        await trio.sleep(limits.ROUTE_AROUND_SUSPECT_S)
        await a.create_tweet(TweetIn(text="three", user="u", id=next(ids)))
        assert reps[1] in _masters(cl, pid), "a long suspicion was not routed around"
        cl.peers["a"].set_state("b", "alive")
        await a.create_tweet(TweetIn(text="four", user="u", id=next(ids)))
        assert "b" in _masters(cl, pid), "back to the preferred replica once it is alive"

    trio.run(main, clock=mock())


# ---------------------------------------------------------------- bounded steps


@pytest.mark.parametrize("place_every", [limits.PLACE_EVERY, 10**9])
def test_a_big_bulk_places_its_ops_a_bounded_number_at_a_time(
    monkeypatch: pytest.MonkeyPatch, place_every: int
) -> None:
    """No step of any task (from its resumption to its next yield) makes more than a few PLACE_EVERY ring look-ups
    for a 6,000-line bulk: the coordinator's routing, the master's partitioning and the fan-out's grouping each
    yield every PLACE_EVERY ops (a step may end one loop's last stretch and start the next's). The same bulk with
    no such yields (PLACE_EVERY past its size) makes them all in one step: the bound is theirs."""
    from node.cluster.placement import Placement

    monkeypatch.setattr(limits, "PLACE_EVERY", place_every)
    in_step = [0]
    longest = [0]
    for name in ("tweet", "tweet_partition"):
        orig = getattr(Placement, name)

        def counted(self: Placement, tweet_id: int, _orig: Callable = orig) -> tuple[int, tuple[str, ...]]:
            in_step[0] += 1
            longest[0] = max(longest[0], in_step[0])
            return _orig(self, tweet_id)

        monkeypatch.setattr(Placement, name, counted)

    class Steps(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            in_step[0] = 0

    async def main() -> None:
        cl = MemCluster()
        res = await cl.coords["a"].bulk_create([TweetIn(text=f"bulk {i}", user="u", id=1000 + i) for i in range(6000)])
        assert all(not isinstance(r, Exception) for r in res)

    trio.run(main, clock=mock(), instruments=[Steps()])
    if place_every < 6000:
        assert longest[0] <= 3 * place_every
    else:
        assert longest[0] >= 6000
