"""Whether this node can persist: its storage mode, a pure core (no I/O, no clock: `now` is an argument).

Rules:
- The node is read-only while any source has a fault: a WAL write that failed (until its records are written),
  an fsync that failed (until one succeeds), free space under `storage.free_bytes_min`. It is writable again
  once every source has cleared its own fault; nobody else clears it, and no operator action is needed.
- `check()` raises StorageError (503 `unavailable`: not acknowledged, a retry is safe) while read-only. Callers
  call it BEFORE they change the shard, so a refused write changed nothing; reads are never refused.
- A source's new fault replaces its reason; clearing a source without a fault does nothing.
- The free-space floor has hysteresis (as Elasticsearch releases its flood stage only under the high watermark):
  under `floor` is a fault, which clears only at RESUME_FACTOR x floor, so a node near its floor does not flap.
"""

from __future__ import annotations

from node.errors import Unavailable

RESUME_FACTOR = 1.25  # a free-space fault clears once this many times the floor is free


class StorageError(Unavailable):
    """This node cannot take this write (disk error, read-only, or closed). Nothing was acknowledged: a retry is
    safe, here later or at another replica."""


class ReadOnly(StorageError):
    pass


class StorageMode:
    """The faults reported by each source, and what follows from them. One per node, shared by the WAL (which
    reports) and the service and coordinator (which ask)."""

    def __init__(self, node: str = "this node") -> None:
        self.node = node
        self.faults: dict[str, str] = {}  # source -> why, in the order they were reported
        self.read_only_since: float | None = None  # `now` of the fault that made it read-only
        self.entered_total = 0  # times it became read-only

    @property
    def read_only(self) -> bool:
        return bool(self.faults)

    @property
    def reason(self) -> str | None:
        """Why it is read-only (every source's reason), or None when writable."""
        return "; ".join(self.faults.values()) if self.faults else None

    def on_fault(self, source: str, reason: str, now: float) -> bool:
        """`source` cannot persist, because `reason`. -> True when this made the node read-only."""
        became = not self.faults
        self.faults[source] = reason
        if became:
            self.read_only_since = now
            self.entered_total += 1
        return became

    def on_clear(self, source: str, now: float) -> bool:
        """`source` can persist again. -> True when this made the node writable."""
        if self.faults.pop(source, None) is None:
            return False
        if self.faults:
            return False
        self.read_only_since = None
        return True

    def check(self) -> None:
        """Raise ReadOnly while read-only: call it before changing anything a write would change."""
        if self.faults:
            raise ReadOnly(f"{self.node} cannot persist writes (read-only): {self.reason}")


def free_space_fault(free_bytes: int, floor_bytes: int, faulted: bool) -> str | None:
    """The free-space source's reason for a fault, or None when there is enough room. `faulted`: it has one now
    (then it clears only at RESUME_FACTOR x floor). A floor of 0 disables the check."""
    if floor_bytes <= 0:
        return None
    if free_bytes < floor_bytes:
        return f"{free_bytes} bytes free, under storage.free_bytes_min = {floor_bytes}"
    resume = int(floor_bytes * RESUME_FACTOR)
    if faulted and free_bytes < resume:
        return f"{free_bytes} bytes free, writes resume at {resume} (1.25 x storage.free_bytes_min)"
    return None
