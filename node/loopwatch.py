"""Where a node's event loop is held (asyncio's slow-callback warning, for Trio): a trio Instrument that times every
task step (from the task being resumed to its next yield) and logs each step longer than a threshold as
`slow_step`, with the task's name and where it resumed and yielded. One node runs one loop on one core, so a
search waits for every step that runs before its own: these are the steps to shorten or split.

Off unless MURMUR_SLOW_STEP_MS is set (e.g. `MURMUR_SLOW_STEP_MS=20 murmur up`): a step costs two clock reads and
a frame look-up then. Logged steps are bounded (STEPS_LOGGED_MAX per process; then a count every 1,000).
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import structlog
import trio

log = structlog.get_logger("murmur.loop")

ENV = "MURMUR_SLOW_STEP_MS"
_TRIO_DIR = os.path.dirname(trio.__file__)
STEPS_LOGGED_MAX = 2_000


def _where(task: trio.lowlevel.Task) -> str:
    """The innermost frame of the task's coroutine chain that is Murmur's own code (else the innermost one
    outside trio itself): file:line function."""
    coro: Any = task.coro
    frame = ours = None
    for _ in range(64):  # bounded walk down the awaits
        f = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if f is None:
            break
        if "/node/" in f.f_code.co_filename:
            ours = f
        if _TRIO_DIR not in f.f_code.co_filename:
            frame = f
        nxt = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if nxt is None:
            break
        coro = nxt
    frame = ours or frame
    if frame is None:
        return "?"
    path = frame.f_code.co_filename
    short = path[path.rfind("/node/") + 1 :] if "/node/" in path else os.path.basename(path)
    return f"{short}:{frame.f_lineno} {frame.f_code.co_name}"


PASS_SUMMARY_EVERY_S = 10.0
PASSES_KEPT_MAX = 100_000  # per summary window


class SlowSteps(trio.abc.Instrument):
    """Also the loop's passes: trio runs every ready task once between two waits for I/O, so a task that becomes
    ready waits for the rest of the pass it joins and the next one. Each `loop_passes` line (every
    PASS_SUMMARY_EVERY_S, when the loop was busy) gives their count, p50, p99 and max in ms: a search needs a
    pass for every step of its own, so under load its latency is about its steps times the pass length."""

    def __init__(self, threshold_ms: float) -> None:
        self.threshold_s = threshold_ms / 1000
        self.slow = 0
        self._t0 = 0.0
        self._from = ""
        self._pass_t0 = 0.0
        self.longest_pass_s = 0.0  # since start (tests read it)
        self._passes: list[float] = []
        self._window_t0 = time.perf_counter()

    def after_io_wait(self, timeout: float) -> None:
        self._pass_t0 = time.perf_counter()

    def before_io_wait(self, timeout: float) -> None:
        now = time.perf_counter()
        if self._pass_t0:
            took = now - self._pass_t0
            self.longest_pass_s = max(self.longest_pass_s, took)
            if len(self._passes) < PASSES_KEPT_MAX:
                self._passes.append(took)
        if now - self._window_t0 >= PASS_SUMMARY_EVERY_S:
            xs, window = sorted(self._passes), now - self._window_t0
            self._passes, self._window_t0 = [], now
            if xs and xs[-1] >= self.threshold_s:
                log.info(
                    "loop_passes", count=len(xs), p50_ms=round(xs[len(xs) // 2] * 1000, 2),
                    p99_ms=round(xs[min(len(xs) - 1, len(xs) * 99 // 100)] * 1000, 2), max_ms=round(xs[-1] * 1000, 1),
                    busy_share=round(sum(xs) / window, 2),
                )

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._from = _where(task)
        self._t0 = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        took = time.perf_counter() - self._t0
        if took < self.threshold_s:
            return
        self.slow += 1
        if self.slow <= STEPS_LOGGED_MAX:
            log.warning("slow_step", ms=round(took * 1000, 1), task=task.name, resumed=self._from, yielded=_where(task))
        elif self.slow % 1000 == 0:
            log.warning("slow_steps", count=self.slow)


class GcPauses:
    """The garbage collector's passes longer than the threshold, logged as `gc_pause` (generation, ms, objects
    collected): a pass runs inside whatever step allocated last, so it shows there as a slow step too."""

    def __init__(self, threshold_ms: float) -> None:
        self.threshold_s = threshold_ms / 1000
        self.slow = 0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        took = time.perf_counter() - self._t0
        if took >= self.threshold_s:
            self.slow += 1
            if self.slow <= STEPS_LOGGED_MAX:
                log.warning("gc_pause", ms=round(took * 1000, 1), generation=info.get("generation"),
                            collected=info.get("collected"))


def from_env() -> list[trio.abc.Instrument]:
    """The instruments to run the node with: SlowSteps when MURMUR_SLOW_STEP_MS is a positive number (and the
    collector's slow passes are logged from then on, GcPauses)."""
    raw = os.environ.get(ENV, "")
    try:
        ms = float(raw) if raw else 0.0
    except ValueError:
        ms = 0.0
    if ms <= 0:
        return []
    gc.callbacks.append(GcPauses(ms))
    return [SlowSteps(ms)]
