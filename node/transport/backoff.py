"""Reconnect backoff for one peer: exponential from `min_s`, capped at `max_s`, jittered upward by up to 20 %
(then capped again). Pure: `now` and the jitter draw are arguments; the shell passes trio time and random().
"""

from __future__ import annotations

import math

JITTER_FRACTION = 0.2  # a delay grows by up to this fraction, so peers that failed together retry apart


class Backoff:
    def __init__(self, min_s: float = 0.05, max_s: float = 2.0) -> None:
        assert 0 < min_s <= max_s
        self.min_s = min_s
        self.max_s = max_s
        self.failures = 0  # consecutive failed attempts since the last success
        self.retry_at = -math.inf  # no attempt before this time

    def delay_s(self, failures: int, jitter: float) -> float:
        """Wait after the `failures`-th consecutive failure (failures >= 1), jitter in [0, 1)."""
        assert failures >= 1 and 0 <= jitter < 1
        base = self.min_s * 2.0 ** min(failures - 1, 62)  # the min() keeps the power finite
        return min(self.max_s, base * (1 + JITTER_FRACTION * jitter))

    def on_failure(self, now: float, jitter: float) -> float:
        """Record a failed attempt at `now`; returns the delay until the next may start."""
        self.failures += 1
        d = self.delay_s(self.failures, jitter)
        self.retry_at = now + d
        return d

    def on_success(self) -> None:
        self.failures = 0
        self.retry_at = -math.inf

    def may_attempt(self, now: float) -> bool:
        return now >= self.retry_at
