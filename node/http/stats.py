"""GET /stats: a small JSON figure sheet of one node for the page's cluster panel, cheap to serve (no fan-out, no
walk of the index: the figures come from counters and container sizes the node already keeps).

The page polls it on every member and computes rates from two polls (counters over the node's own uptime). Pure:
partition health is computed from replica sets and a liveness test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from node.http.schema import PartitionHealth, StatsResponse
from node.metrics import HttpMetrics, Sample


class NodeFigures(msgspec.Struct):
    """What the node shell (node.app) reads off its parts for /stats, each in O(1) or O(partitions)."""

    tweets: int
    replication_lag_records: int
    hints_pending_records: int
    index_bytes: int
    partitions: PartitionHealth | None


def partition_health(
    replica_sets: Iterable[tuple[str, ...]], is_up: Callable[[str], bool], w: int, r: int
) -> PartitionHealth:
    """How many partitions have every replica up, some down, fewer than W up, fewer than R up."""
    total = healthy = below_w = below_r = 0
    for reps in replica_sets:
        up = sum(1 for nd in reps if is_up(nd))
        total += 1
        healthy += up == len(reps)
        below_w += up < w
        below_r += up < r
    return PartitionHealth(
        total=total, all_replicas_up=healthy, under_replicated=total - healthy, below_write_quorum=below_w,
        below_read_quorum=below_r,
    )


def gauges(samples: Iterable[Sample]) -> dict[str, float]:
    """The coordinator's gauges by name, summed over their labels (e.g. hints pending for every node)."""
    out: dict[str, float] = {}
    for name, _help, _labels, value in samples:
        out[name] = out.get(name, 0.0) + value
    return out


def figures_from_samples(samples: Iterable[Sample]) -> NodeFigures:
    """The same figures from the coordinator's metrics samples (a node without a shell's figures, e.g. in tests)."""
    g = gauges(samples)
    return NodeFigures(
        tweets=int(g.get("murmur_tweets", 0)),
        replication_lag_records=int(g.get("murmur_replication_lag_records", 0)),
        hints_pending_records=int(g.get("murmur_hints_pending_records", 0)),
        index_bytes=int(g.get("murmur_index_bytes", 0)),
        partitions=None,
    )


def build_stats(node: str, uptime_s: float, metrics: HttpMetrics, f: NodeFigures) -> StatsResponse:
    return StatsResponse(
        node=node,
        uptime_s=round(uptime_s, 3),
        searches_total=int(metrics.searches()),
        ingested_total=int(metrics.ingested_total()),
        tweets=f.tweets,
        replication_lag_records=f.replication_lag_records,
        hints_pending_records=f.hints_pending_records,
        index_bytes=f.index_bytes,
        partitions=f.partitions,
    )
