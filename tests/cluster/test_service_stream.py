"""NodeService in a topology change (node/cluster/streaming.py, drain.py, replicate.py): `postings_page` pages over a real Shard cover
every term of the ranges exactly once (also with several streams at once and terms arriving mid-stream),
`drain_before` waits only for writes started under an older topology version, and `replicate` acknowledges a
write only with W copies in the old ring's replica set and W in the new one's (joint quorum). The network is an
in-memory caller that can cut nodes off (as in test_service_sim.py)."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing

from node.cluster import limits
from node.cluster.placement import Placement
from node.cluster.service import NodeService
from node.errors import MurmurError, Unavailable
from node.model import Tweet
from node.query.ast import Term
from node.replication import messages as m
from node.ring.ring import Ring, allocate_tokens, term_token, tweet_token
from node.shard import PostingOps, PutTweet, Shard, in_range

RING = Ring.build(["a", "b", "c"], 8)


class MemLog:
    async def append(self, payloads: list[bytes]) -> int:
        return len(payloads)


def service(shard: Shard) -> NodeService:
    return NodeService("a", shard, MemLog(), Placement(RING, 3), 2, lambda: 1_700_000_000_000)


def filled_shard() -> Shard:
    """300 terms with 1..9 ids each, but every tenth one indexed once and then removed (listed, empty)."""
    sh = Shard()
    for k in range(300):
        ids = range(1000 * k + 1, 1000 * k + 1 + (k % 10 or 1))
        for i in ids:
            sh.apply(PostingOps(i, 1, (f"t{k}",)))
        if k % 10 == 0:
            sh.apply(PostingOps(ids[0], 2, (), (f"t{k}",)))
    return sh


def expected(sh: Shard, ranges: list[tuple[int, int]]) -> dict[str, list[int]]:
    out = {}
    for k in range(300):
        t = f"t{k}"
        ids = list(sh.index.iter_newest(Term(t)))
        if ids and any(in_range(term_token(t), a, b) for a, b in ranges):
            out[t] = ids
    return out


# the wrapping partition and every third other one
RANGES = [RING.partitions()[0], *RING.partitions()[1::3]]


def stream(svc: NodeService, ranges: list[tuple[int, int]], max_ids: int) -> list[tuple[str, list[int]]]:
    got: list[tuple[str, list[int]]] = []
    after: str | None = None
    while True:
        resp = svc.postings_page(m.PostingsReq(ranges, after, max_ids))
        got += resp.items
        if resp.next is None:
            return got
        assert after is None or (term_token(resp.next), resp.next) > (term_token(after), after)
        after = resp.next


@pytest.mark.parametrize("max_ids", [0, 1, 7, 50, 10**9])
def test_pages_cover_every_term_once(max_ids: int) -> None:
    sh = filled_shard()
    want = expected(sh, RANGES)
    assert 20 < len(want) < 300 and any(in_range(term_token(t), *RANGES[0]) for t in want)
    assert sorted(sh.terms_in(RANGES), key=term_token) == sorted(want, key=term_token)  # only terms with postings
    got = stream(service(sh), RANGES, max_ids)
    assert [t for t, _ in got] == sorted(want, key=term_token)  # in token order, each once
    assert dict(got) == want


def test_last_page_and_nothing_to_send() -> None:
    svc = service(filled_shard())
    one = svc.postings_page(m.PostingsReq(RANGES, None, 10**9))
    assert one.next is None and len(one.items) == len(expected(svc.shard, RANGES))
    empty = service(Shard()).postings_page(m.PostingsReq(RANGES, None, 10))
    assert empty == m.PostingsResp([], None)


def test_too_many_ranges_are_refused() -> None:
    svc = service(filled_shard())
    step = (1 << 64) // (limits.STREAM_RANGES_MAX + 2)
    many = [(i * step, i * step + 1) for i in range(limits.STREAM_RANGES_MAX + 1)]
    with pytest.raises(MurmurError, match="too many ranges"):
        svc.postings_page(m.PostingsReq(many, None, 10))
    assert svc.postings_page(m.PostingsReq(many[:-1], None, 10)).next is None  # at the bound: served


def test_terms_arriving_mid_stream_do_not_shift_the_pages() -> None:
    sh = filled_shard()
    want = expected(sh, [(0, 0)])
    svc = service(sh)
    first = svc.postings_page(m.PostingsReq([(0, 0)], None, 40))
    assert first.next is not None
    # new terms all over the ring, many of them before the offset reached: the listed terms stay put
    for k in range(100):
        sh.apply(PostingOps(900_000 + k, 1, (f"new{k}",)))
    got = list(first.items)
    after: str | None = first.next
    while after is not None:
        resp = svc.postings_page(m.PostingsReq([(0, 0)], after, 40))
        got += resp.items
        after = resp.next
    names = [t for t, _ in got]
    assert len(names) == len(set(names))
    assert {t: ids for t, ids in got if t in want} == want


def test_several_streams_at_once_each_cover_their_terms() -> None:
    sh = filled_shard()
    svc = service(sh)
    parts = RING.partitions()
    streams = [[parts[i]] for i in range(6)]  # more than the service keeps term lists for
    got: list[list[tuple[str, list[int]]]] = [[] for _ in streams]
    cursors: list[str | None] = [None] * len(streams)
    done = [False] * len(streams)
    while not all(done):
        for k, ranges in enumerate(streams):
            if not done[k]:
                resp = svc.postings_page(m.PostingsReq(ranges, cursors[k], 3))
                got[k] += resp.items
                cursors[k] = resp.next
                done[k] = resp.next is None
    for k, ranges in enumerate(streams):
        names = [t for t, _ in got[k]]
        assert len(names) == len(set(names))
        assert dict(got[k]) == expected(sh, ranges)


def test_handle_dispatches_a_postings_request() -> None:
    svc = service(filled_shard())
    resp = trio.run(svc.handle, m.PostingsReq(RANGES, None, 10**9), "b")
    assert isinstance(resp, m.PostingsResp) and dict(resp.items) == expected(svc.shard, RANGES)


# ------------------------------------------------------------ drain_before


def test_drain_before_returns_at_once_with_nothing_in_flight() -> None:
    async def main() -> None:
        svc = service(Shard())
        svc.topology_changed(3)
        t0 = trio.current_time()
        assert await svc.drain_before(3, 0)
        with svc.drain.in_flight():  # a write under the current version does not hold a drain of older ones
            assert await svc.drain_before(3, 5.0)
        assert trio.current_time() == t0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_drain_before_waits_for_older_writes_and_times_out() -> None:
    async def main() -> None:
        svc = service(Shard())
        svc.topology_changed(1)
        with svc.drain.in_flight():
            svc.topology_changed(2)
            t0 = trio.current_time()
            assert not await svc.drain_before(2, 0.5)
            assert trio.current_time() - t0 == pytest.approx(0.5)
            assert await svc.drain_before(1, 0.5)  # nothing older than version 1
        assert await svc.drain_before(2, 0)
        assert svc.drain.inflight == {}

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_drain_before_returns_when_the_last_older_write_ends() -> None:
    async def main() -> None:
        svc = service(Shard())
        svc.topology_changed(1)
        ended: list[float] = []

        async def write(hold_s: float) -> None:
            with svc.drain.in_flight():
                await trio.sleep(hold_s)
            ended.append(trio.current_time())

        async with trio.open_nursery() as n:
            n.start_soon(write, 1.0)
            n.start_soon(write, 2.0)
            await trio.sleep(0.1)
            svc.topology_changed(2)
            n.start_soon(write, 50.0)  # under the new version: not waited for
            t0 = trio.current_time()
            assert await svc.drain_before(2, 10.0)
            assert trio.current_time() - t0 == pytest.approx(1.9)
            assert len(ended) == 2
            n.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# ------------------------------------------------------------ joint quorum


class Net:
    """Calls go straight to the services; a node in `down` fails like a dead peer."""

    def __init__(self) -> None:
        self.services: dict[str, NodeService] = {}
        self.down: set[str] = set()

    async def call(self, node: str, req: object, timeout_s: float = 5.0) -> object:
        if node in self.down:
            raise Unavailable(f"{node} is down")
        await trio.lowlevel.checkpoint()
        return await self.services[node].handle(req, "test")


def test_replicate_needs_w_in_the_old_and_the_new_replica_set() -> None:
    old = Ring.build(["a", "b", "c", "d"], 8)
    new = old.with_node("e", allocate_tokens(old, "e", 8))
    placement = Placement(old, 3, new)
    # a tweet whose partition the joiner takes: old (x, y, z), new replaces one of them by e
    tid = next(i for i in range(1, 100_000) if "e" in new.preference_list(tweet_token(i), 3))
    old_set, new_set = placement.tweet_write_sets(tid)
    assert "e" not in old_set and len(set(old_set) & set(new_set)) == 2
    net = Net()
    for name in "abcde":
        svc = NodeService(name, Shard(), MemLog(), placement, 2, lambda: 1_700_000_000_000, peers=net)
        net.services[name] = svc
    master = net.services[old_set[0]]
    kept = next(x for x in new_set if x != "e" and x != old_set[0])  # the other node both sets share
    dropped = next(x for x in old_set if x not in new_set)  # the old replica the new ring leaves out

    async def replicate(version: int, down: set[str]) -> bool:
        net.down = down
        tweet = Tweet(tid, 1_700_000_000_000, "u", f"v{version}", version=version)
        return 0 in await master.replicate([(0, PutTweet(tweet))], {})

    async def main() -> None:
        # W of the old set (master + dropped), one of the new (master): refused
        assert not await replicate(1, {"e", kept})
        # W of the new set (master + e), one of the old (master): refused
        assert not await replicate(2, {dropped, kept})
        # the two shared nodes make W of each
        assert await replicate(3, {"e", dropped})
        assert await replicate(4, set())
        for name in (*old_set, "e"):
            assert net.services[name].shard.tweets[tid].version == 4

    trio.run(main)


def test_a_source_restarted_mid_stream_resumes_after_the_cursor() -> None:
    """The cursor is a term, not a position: a source that restarts from a snapshot (which keeps only terms with
    postings, so its list is shorter) continues exactly after the last term sent."""
    sh = filled_shard()
    want = expected(sh, RANGES)
    first = service(sh).postings_page(m.PostingsReq(RANGES, None, 200))
    assert first.next is not None
    reborn = service(Shard.load(sh.dump()))
    got = list(first.items)
    after: str | None = first.next
    while after is not None:
        resp = reborn.postings_page(m.PostingsReq(RANGES, after, 200))
        got += resp.items
        after = resp.next
    assert dict(got) == want and len(got) == len(want)


def test_promises_and_fenced_writes_only_from_nodes_of_the_ring() -> None:
    """A node with another idea of the ring (not a member of ours) may not win a mastership here or write with
    one; unfenced repairs are still taken, and members are served."""
    from node.errors import NotOwner
    from node.ring import topology as tp

    topo = tp.initial([(n, "127.0.0.1", 1, 2 + i, i + 1) for i, n in enumerate(["a", "b", "c"])], 8)
    svc = NodeService("a", Shard(), MemLog(), Placement(tp.ring_of(topo.members), 3), 2, lambda: 1_700_000_000_000)
    rec = PutTweet(Tweet(id=5, created_at_ms=1, user="u", text="t", version=1 << 40))

    async def main() -> None:
        with pytest.raises(NotOwner, match="stranger is not on a's ring"):
            await svc.handle(m.PromiseReq(7, 3), "stranger")
        with pytest.raises(NotOwner):
            await svc.handle(m.ApplyReq([rec], [(7, 3)]), "stranger")
        assert 5 not in svc.shard.tweets and 7 not in svc.shard.promised  # nothing changed
        assert (await svc.handle(m.PromiseReq(7, 3), "b")).ok
        await svc.handle(m.ApplyReq([rec]), "stranger")  # a repair carries existing versions: taken
        assert 5 in svc.shard.tweets

    trio.run(main)


def test_a_page_holds_about_stream_ids_max_ids_whatever_the_request_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    sh = filled_shard()
    monkeypatch.setattr(limits, "STREAM_IDS_MAX", 5)
    page = service(sh).postings_page(m.PostingsReq(RANGES, None, 10**9))
    sizes = [len(ids) for _, ids in page.items]
    assert page.next is not None and sum(sizes[:-1]) < 5 <= sum(sizes)  # stops at the bound, never cuts a term


def test_a_term_emptied_between_pages_is_skipped() -> None:
    """The term list of a stream is made once, at its first page; a term whose postings all go before a later
    page (a concurrent delete) is skipped there, not sent empty."""
    sh = filled_shard()
    svc = service(sh)
    first = svc.postings_page(m.PostingsReq(RANGES, None, 1))
    assert first.next is not None
    listed = [t for _, t in next(iter(svc.streaming.export.values()))]
    later = listed[listed.index(first.next) + 2]
    for i in list(sh.index.iter_newest(Term(later))):
        sh.apply(PostingOps(i, 9, (), (later,)))
    got = dict(first.items)
    after = first.next
    while after is not None:
        resp = svc.postings_page(m.PostingsReq(RANGES, after, 10**9))
        got.update(resp.items)
        after = resp.next
    want = expected(sh, RANGES)
    assert later not in got and later not in want
    assert got == want
