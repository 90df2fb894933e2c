"""The bounded queue of state updates to gossip (memberlist's TransmitLimitedQueue): at most one update per
member (a newer one replaces the older), least-sent first, then the most recently queued (or sent), each sent `limit` times then dropped.
Pure and deterministic; never grows past `max_items`.
"""

from __future__ import annotations

from node.membership.messages import PIGGYBACK_MAX, Update, encode

_MIN_UPDATE_BYTES = 8  # no encoded update is smaller: stop scanning once the budget is below it


class _Item:
    __slots__ = ("data", "update")

    def __init__(self, update: Update, data: bytes) -> None:
        self.update = update
        self.data = data


class BroadcastQueue:
    def __init__(self, max_items: int) -> None:
        assert max_items >= 1
        self.max_items = max_items
        self._buckets: dict[int, dict[str, _Item]] = {}  # transmits so far -> node -> item (oldest first)
        self._where: dict[str, int] = {}  # node -> its bucket

    def __len__(self) -> int:
        return len(self._where)

    def pending(self) -> list[Update]:
        return [it.update for b in self._buckets.values() for it in b.values()]

    def queue(self, update: Update) -> None:
        self._remove(update.node)
        if len(self._where) >= self.max_items:
            self._drop_most_sent()
        self._buckets.setdefault(0, {})[update.node] = _Item(update, encode(update))
        self._where[update.node] = 0

    def get(self, budget_bytes: int, limit: int) -> list[Update]:
        """Updates whose encodings fit in `budget_bytes` together; each counts as sent once more and is dropped
        after `limit` sends."""
        chosen: list[tuple[int, _Item]] = []
        for t in sorted(self._buckets):
            # dicts keep insertion order: reversed = most recently queued (or moved up a bucket) first
            for item in reversed(self._buckets[t].values()):
                if budget_bytes < _MIN_UPDATE_BYTES or len(chosen) >= PIGGYBACK_MAX:
                    break
                if len(item.data) <= budget_bytes:
                    chosen.append((t, item))
                    budget_bytes -= len(item.data)
            if budget_bytes < _MIN_UPDATE_BYTES or len(chosen) >= PIGGYBACK_MAX:
                break
        for t, item in chosen:
            node = item.update.node
            del self._buckets[t][node]
            if not self._buckets[t]:
                del self._buckets[t]
            if t + 1 >= limit:
                del self._where[node]
            else:
                self._buckets.setdefault(t + 1, {})[node] = item
                self._where[node] = t + 1
        return [item.update for _, item in chosen]

    def _remove(self, node: str) -> None:
        t = self._where.pop(node, None)
        if t is not None:
            del self._buckets[t][node]
            if not self._buckets[t]:
                del self._buckets[t]

    def _drop_most_sent(self) -> None:
        t = max(self._buckets)
        node = next(iter(self._buckets[t]))  # the oldest of the most-sent
        self._remove(node)
