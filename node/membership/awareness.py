"""Lifeguard's local health: a node that misses acks and nacks, or has to refute suspicions of itself, is likely
the slow one, so it stretches its own probe period and timeout instead of accusing healthy peers. Pure counter.
"""

from __future__ import annotations


class Awareness:
    def __init__(self, max_multiplier: int) -> None:
        assert max_multiplier >= 1
        self.max_score = max_multiplier - 1
        self.score = 0

    def apply_delta(self, delta: int) -> None:
        self.score = min(self.max_score, max(0, self.score + delta))

    def scale(self, seconds: float) -> float:
        return seconds * (self.score + 1)
