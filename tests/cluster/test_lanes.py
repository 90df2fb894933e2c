"""node/cluster/lanes.py: one write chunk at a time; searches go first, for a bounded wait per chunk."""

from __future__ import annotations

import trio
import trio.lowlevel
import trio.testing

from node.cluster.lanes import SEARCH_CHUNK, WriteLane


def test_one_chunk_at_a_time() -> None:
    async def main() -> None:
        lane = WriteLane()
        inside = peak = 0

        async def writer() -> None:
            nonlocal inside, peak
            for _ in range(3):
                async with lane:
                    inside += 1
                    peak = max(peak, inside)
                    await trio.sleep(0.01)
                    inside -= 1

        async with trio.open_nursery() as n:
            for _ in range(4):
                n.start_soon(writer)
        assert peak == 1

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_writer_waits_for_the_search_under_way_then_goes_on() -> None:
    async def main() -> None:
        lane = WriteLane(search_first_max_s=1.0)
        done_at: list[float] = []

        async def writer() -> None:
            async with lane:
                done_at.append(trio.current_time())

        async with trio.open_nursery() as n:
            with lane.searching():
                n.start_soon(writer)
                await trio.sleep(0.3)  # the search's own steps
                assert done_at == []  # held back meanwhile
            await trio.lowlevel.checkpoint()
        assert done_at == [0.3] and lane.deferred == 1

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_searches_without_end_slow_a_writer_by_the_bound_only() -> None:
    async def main() -> None:
        lane = WriteLane(search_first_max_s=0.025)
        chunks = 0

        async def writer() -> None:
            nonlocal chunks
            for _ in range(10):
                async with lane:
                    chunks += 1

        with lane.searching():  # one search after another, never none
            t0 = trio.current_time()
            await writer()
            assert chunks == 10 and abs(trio.current_time() - t0 - 10 * 0.025) < 1e-9

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_no_search_no_wait() -> None:
    async def main() -> None:
        lane = WriteLane()
        with lane.searching():
            pass
        t0 = trio.current_time()
        async with lane:
            pass
        assert trio.current_time() == t0 and lane.deferred == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_chunks_are_small_only_while_a_search_is_under_way() -> None:
    lane = WriteLane()
    assert lane.chunk(64) == 64
    with lane.searching():
        assert lane.chunk(64) == SEARCH_CHUNK < 64
        assert lane.chunk(8) == 8
    assert lane.chunk(64) == 64
