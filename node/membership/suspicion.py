"""Lifeguard's suspicion timer for one suspect member: it starts at `max_s` and falls logarithmically towards
`min_s` as independent suspecters confirm, so a node many peers cannot reach is declared dead sooner, while a
suspicion raised by one unhealthy node alone waits longest. Pure: no clock, `start` and `now` are arguments.
"""

from __future__ import annotations

import math


class Suspicion:
    def __init__(self, src: str, k: int, min_s: float, max_s: float, start: float) -> None:
        assert 0 < min_s <= max_s and k >= 0
        self.k = k  # confirmations wanted to reach min_s; 0: the timeout is min_s straight away
        self.min_s = min_s
        self.max_s = max_s
        self.start = start
        # the first suspecter is not a confirmation of itself, but must not count again later
        self._seen: set[str] = {src}
        self.confirmations = 0

    def timeout_s(self) -> float:
        if self.k < 1:
            return self.min_s
        frac = math.log(self.confirmations + 1) / math.log(self.k + 1)
        return max(self.min_s, self.max_s - (self.max_s - self.min_s) * frac)

    def deadline(self) -> float:
        return self.start + self.timeout_s()

    def confirm(self, src: str) -> bool:
        """True when `src` is a new independent confirmation (worth re-gossiping); bounded at k."""
        if self.confirmations >= self.k or src in self._seen:
            return False
        self._seen.add(src)
        self.confirmations += 1
        return True
