"""The node's Prometheus metrics, on prometheus_client: one CollectorRegistry per HttpMetrics (so several nodes in
one test process never share or collide), and the coordinator's gauges through a custom Collector.

No I/O. Label values come from fixed sets (route templates, methods, status and error codes, search stage names),
never from client input, so the number of series stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Sample = tuple[str, str, dict[str, str], float]  # (name, help, labels, value): a gauge from elsewhere
SampleSource = Callable[[], Iterable[Sample]]

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE_NAMES_MAX = 32  # distinct search stage labels at most; the code has a handful (windows, probes, hydrate...)

# A `<name>_created` series per counter and histogram would double the page for a figure nobody graphs here.
prometheus_client.disable_created_metrics()


class SamplesCollector(Collector):
    """Turns (name, help, labels, value) samples into gauge families at scrape time. A name that the registry
    already has is skipped: a clash would make the whole page unparsable."""

    def __init__(self, own_names: set[str]) -> None:
        self.own_names = own_names
        self.source: SampleSource | None = None

    def collect(self) -> Iterator[Metric]:
        if self.source is None:
            return
        grouped: dict[str, list[Sample]] = {}
        for s in self.source():
            if s[0] not in self.own_names:
                grouped.setdefault(s[0], []).append(s)
        for name, samples in grouped.items():
            label_names = sorted({k for s in samples for k in s[2]})
            fam = GaugeMetricFamily(name, samples[0][1], labels=label_names)
            for _, _, labels, value in samples:
                fam.add_metric([labels.get(k, "") for k in label_names], value)
            yield fam


# The node's storage figures (node/app.py gathers them): key -> (kind, metric name, help). Counters get `_total`.
STORAGE_FAMILIES: dict[str, tuple[str, str, str]] = {
    "read_only": ("gauge", "murmur_storage_read_only",
                  "1 while this node cannot persist writes (they get 503, reads are served; see /health), else 0"),
    "read_only_entered": ("counter", "murmur_storage_read_only_entered", "Times this node turned read-only since start"),
    "free_bytes": ("gauge", "murmur_storage_free_bytes",
                   "Bytes free on the storage's file system at the last check (made when free_bytes_min is set)"),
    "wal_write_errors": ("counter", "murmur_wal_write_errors", "WAL batch writes or their fsync that failed, retries included"),
    "wal_fsync_errors": ("counter", "murmur_wal_fsync_errors", "Background WAL fsyncs (fsync = everysec) that failed"),
    "wal_batches": ("counter", "murmur_wal_batches", "WAL group commits written (one write, and with fsync = always one fsync)"),
    "wal_records": ("counter", "murmur_wal_records", "WAL records written; records / batches is the mean group commit"),
    "wal_fsyncs": ("counter", "murmur_wal_fsyncs", "WAL fsyncs"),
    "snapshots": ("counter", "murmur_snapshots", "Snapshots written since start"),
    "snapshots_failed": ("counter", "murmur_snapshots_failed",
                         "Snapshots that failed since start (full disk, I/O error, the child killed); each is retried"),
}
StorageSource = Callable[[], dict[str, float | None]]


class StorageCollector(Collector):
    """The STORAGE_FAMILIES of `source()` at scrape time; a figure that is None (not known) is left out."""

    def __init__(self) -> None:
        self.source: StorageSource | None = None

    def collect(self) -> Iterator[Metric]:
        if self.source is None:
            return
        for key, value in self.source().items():
            if value is None or key not in STORAGE_FAMILIES:
                continue
            kind, name, help_ = STORAGE_FAMILIES[key]
            yield (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, help_, value=value)


class HttpMetrics:
    """What the API handler and the HTTP shell record (node.http.server.ServerMetrics), plus search stages."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        # (route, method, status) -> its two series; bounded: routes, methods and statuses are fixed sets
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "murmur_http_requests_total",
            "HTTP requests answered, by route, method and status",
            ("route", "method", "status"),
            registry=r,
        )
        self.latency = Histogram(
            "murmur_http_request_duration_seconds",
            "Time from a parsed request to its response, by route and status",
            ("route", "status"),
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.stages = Histogram(
            "murmur_search_stage_duration_seconds",
            "Time of each stage of the searches this node coordinated, by stage",
            ("stage",),
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.errors = Counter("murmur_http_errors_total", "Error responses by error code", ("code",), registry=r)
        self.protocol_errors = Counter(
            "murmur_http_protocol_errors_total",
            "Connections ended by a protocol error or limit, by status",
            ("status",),
            registry=r,
        )
        self.connections = Gauge("murmur_http_connections_open", "Client connections open now", registry=r)
        self.tweets_ingested = Counter(
            "murmur_tweets_ingested_total", "Tweets acknowledged through POST /tweets and /tweets/bulk", registry=r
        )
        self._samples = SamplesCollector(
            {
                "murmur_http_requests_total",
                "murmur_http_request_duration_seconds",
                "murmur_search_stage_duration_seconds",
                "murmur_http_errors_total",
                "murmur_http_protocol_errors_total",
                "murmur_http_connections_open",
                "murmur_tweets_ingested_total",
                *(name + "_total" * (kind == "counter") for kind, name, _ in STORAGE_FAMILIES.values()),
            }
        )
        r.register(self._samples)
        self._storage = StorageCollector()
        r.register(self._storage)
        self._stage_names: set[str] = set()

    def collect_from(self, source: SampleSource) -> None:
        """Gauges of `source` (the coordinator's metrics_samples) are read at every scrape."""
        self._samples.source = source

    def collect_storage_from(self, source: StorageSource) -> None:
        """The node's storage figures (STORAGE_FAMILIES), read at every scrape."""
        self._storage.source = source

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        pair = self._children.get(key)
        if pair is None:  # labels() validates and locks on every call: each series is looked up once
            st = str(status)
            pair = self._children[key] = (self.requests.labels(route, method, st), self.latency.labels(route, st))
        pair[0].inc()
        pair[1].observe(seconds)

    def error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def ingested(self, n: int = 1) -> None:
        self.tweets_ingested.inc(n)

    def search_stages(self, stages_ms: dict[str, float]) -> None:
        for name, ms in stages_ms.items():
            if name not in self._stage_names:
                if len(self._stage_names) >= STAGE_NAMES_MAX:
                    continue
                self._stage_names.add(name)
            self.stages.labels(name).observe(ms / 1000)

    def connection_opened(self) -> None:
        self.connections.inc()

    def connection_closed(self) -> None:
        self.connections.dec()

    def protocol_error(self, status: int) -> None:
        self.protocol_errors.labels(str(status)).inc()

    def searches(self) -> float:
        """Searches answered so far (any status): for /stats."""
        return _sum(self.requests, "murmur_http_requests_total", route="/search")

    def ingested_total(self) -> float:
        return _sum(self.tweets_ingested, "murmur_tweets_ingested_total")

    def render(self) -> str:
        """The whole registry in Prometheus text format 0.0.4."""
        return prometheus_client.generate_latest(self.registry).decode()


def _sum(metric: Counter, sample_name: str, **match: str) -> float:
    """The sum of the samples of one metric whose labels include `match` (e.g. every status of a route)."""
    return sum(
        s.value
        for fam in metric.collect()
        for s in fam.samples
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in match.items())
    )
