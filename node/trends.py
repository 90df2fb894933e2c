"""Trending hashtags, as a pure counter: per-minute buckets of hashtag counts by created_at, kept for two days
behind the newest time seen. Rising fastest = the window's count against the window before it.
Never reads a clock: `now_ms` is an argument.
"""

from __future__ import annotations

import math
from collections import Counter

MINUTE_MS = 60_000
KEEP_MS = 48 * 3600 * 1000  # two 24 h windows: the longest window and the one before it
BUCKETS_MAX = KEEP_MS // MINUTE_MS + 2


class TrendCounter:
    def __init__(self) -> None:
        self._buckets: dict[int, Counter[str]] = {}  # minute number -> hashtag -> count
        self._newest_minute = 0

    def add(self, hashtags: tuple[str, ...], created_ms: int, now_ms: int, delta: int = 1) -> None:
        if not hashtags:
            return
        minute = created_ms // MINUTE_MS
        now_minute = now_ms // MINUTE_MS
        if minute < now_minute - BUCKETS_MAX or minute > now_minute + 5:
            return  # too old to trend, or from the future
        b = self._buckets.get(minute)
        if b is None:
            b = self._buckets[minute] = Counter()
        for h in hashtags:
            b[h] += delta
            if b[h] <= 0:
                del b[h]
        if minute > self._newest_minute:
            self._newest_minute = minute
            self._evict(now_minute)

    def _evict(self, now_minute: int) -> None:
        floor = now_minute - BUCKETS_MAX
        for m in [m for m in self._buckets if m < floor]:
            del self._buckets[m]

    def counts(self, window_ms: int, now_ms: int, limit: int) -> list[tuple[str, int, int]]:
        """-> [(hashtag, count in the window, count in the window before)] for the `limit` most counted now."""
        now_minute = now_ms // MINUTE_MS
        w = max(1, window_ms // MINUTE_MS)
        cur: Counter[str] = Counter()
        prev: Counter[str] = Counter()
        for m, b in self._buckets.items():
            age = now_minute - m
            if 0 <= age < w:
                cur.update(b)
            elif w <= age < 2 * w:
                prev.update(b)
        return [(tag, c, prev.get(tag, 0)) for tag, c in cur.most_common(limit)]


def rank(counts: list[tuple[str, int, int]], count: int) -> list[tuple[str, int, float]]:
    """-> [(hashtag without '#', count in window, score)], best first. Score: growth against the previous
    window, damped so that one mention does not beat a steady stream: (c - p) / sqrt(p + 1) + c / 1000."""
    scored = [(tag, c, round((c - p) / math.sqrt(p + 1) + c / 1000, 6)) for tag, c, p in counts if c > 0]
    scored.sort(key=lambda x: (-x[2], -x[1], x[0]))
    return scored[:count]
