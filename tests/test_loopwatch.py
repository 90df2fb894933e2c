"""node/loopwatch.py: a step that holds the loop past the threshold is counted and named; quick ones are not."""

from __future__ import annotations

import gc
import time

import pytest
import trio
import trio.lowlevel
import trio.testing

from node import loopwatch


def _busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def test_a_slow_step_is_counted_and_a_quick_one_is_not() -> None:
    watch = loopwatch.SlowSteps(threshold_ms=30)

    async def hog() -> None:
        await trio.lowlevel.checkpoint()
        _busy(60)  # one step of ~60 ms
        await trio.lowlevel.checkpoint()

    async def quick() -> None:
        for _ in range(50):
            await trio.lowlevel.checkpoint()

    async def main() -> None:
        async with trio.open_nursery() as n:
            n.start_soon(hog)
            n.start_soon(quick)

    trio.run(main, instruments=[watch])
    assert watch.slow == 1


def test_a_pass_lasts_as_long_as_every_step_ready_in_it() -> None:
    """Three tasks each hold the loop 20 ms in the same pass (no I/O wait between them): one pass of over 60 ms,
    though no step is near the threshold."""
    watch = loopwatch.SlowSteps(threshold_ms=100)

    async def hog() -> None:
        await trio.lowlevel.checkpoint()
        _busy(20)

    async def main() -> None:
        async with trio.open_nursery() as n:
            for _ in range(3):
                n.start_soon(hog)

    trio.run(main, instruments=[watch])
    assert watch.slow == 0
    assert watch.longest_pass_s >= 0.06


def test_where_names_the_frame_a_task_waits_in() -> None:
    seen: list[str] = []

    async def waiter() -> None:
        await trio.sleep(0.01)

    async def main() -> None:
        async with trio.open_nursery() as n:
            n.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            task = next(t for t in n.child_tasks if t.name.endswith("waiter"))
            seen.append(loopwatch._where(task))

    trio.run(main)
    assert "sleep" in seen[0] or "waiter" in seen[0], seen


@pytest.mark.parametrize(("raw", "n"), [("", 0), ("0", 0), ("abc", 0), ("25", 1)])
def test_the_environment_switches_it_on(monkeypatch: pytest.MonkeyPatch, raw: str, n: int) -> None:
    monkeypatch.setenv(loopwatch.ENV, raw)
    monkeypatch.setattr(gc, "callbacks", [])
    assert len(loopwatch.from_env()) == n
    assert len(gc.callbacks) == n


def test_a_slow_collector_pass_is_counted() -> None:
    pauses = loopwatch.GcPauses(threshold_ms=0.0)  # every pass
    pauses("start", {"generation": 2})
    pauses("stop", {"generation": 2, "collected": 0})
    assert pauses.slow == 1
    quick = loopwatch.GcPauses(threshold_ms=10_000.0)
    quick("start", {"generation": 0})
    quick("stop", {"generation": 0, "collected": 0})
    assert quick.slow == 0
