"""The node's collector policy (node/app.py `_full_gc`): full passes on a clock, every `every_s`, none between."""

from __future__ import annotations

import gc

import trio
import trio.testing

from node.app import GC_FULL_EVERY_S, _full_gc


def _full_passes() -> int:
    return int(gc.get_stats()[2]["collections"])


def test_full_passes_run_on_the_clock() -> None:
    seen: list[int] = []

    async def main() -> None:
        start = _full_passes()
        async with trio.open_nursery() as n:
            n.start_soon(_full_gc, GC_FULL_EVERY_S)
            for _ in range(3):
                await trio.sleep(GC_FULL_EVERY_S * 0.99)  # just before the next pass is due
                seen.append(_full_passes() - start)
                await trio.sleep(GC_FULL_EVERY_S * 0.01)
            n.cancel_scope.cancel()

    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], 1 << 30)  # no full pass by counts meanwhile, as in a node
    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        gc.set_threshold(*thresholds)
    assert seen == [0, 1, 2]
