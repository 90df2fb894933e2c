"""GET /stats: a small JSON figure sheet of one node for the page's cluster panel, cheap to serve (no fan-out).

The page polls it on every member and computes rates from two polls (counters over the node's own uptime). Pure
except for reading the clock it is given; partition health is computed from replica sets and a liveness test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from node.http.schema import PartitionHealth, StatsResponse
from node.metrics import HttpMetrics, Sample


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


def build_stats(
    node: str,
    uptime_s: float,
    metrics: HttpMetrics,
    samples: Iterable[Sample],
    partitions: PartitionHealth | None,
) -> StatsResponse:
    g = gauges(samples)
    return StatsResponse(
        node=node,
        uptime_s=round(uptime_s, 3),
        searches_total=int(metrics.searches()),
        ingested_total=int(metrics.ingested_total()),
        tweets=int(g.get("murmur_tweets", 0)),
        replication_lag_records=int(g.get("murmur_replication_lag_records", 0)),
        hints_pending_records=int(g.get("murmur_hints_pending_records", 0)),
        index_bytes=int(g.get("murmur_index_bytes", 0)),
        partitions=partitions,
    )
