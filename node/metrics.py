"""A tiny Prometheus registry (text format 0.0.4): counters, gauges and fixed-bucket histograms with labels.

No dependency and no I/O; the hot path is a dict lookup and an add. It must never grow without bound: label values
come from a fixed set (route templates, methods, status codes), never from client input.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping

Labels = tuple[str, ...]
Sample = tuple[str, str, dict[str, str], float]  # (name, help, labels, value): a gauge from elsewhere

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Label combinations per metric at most: past it, new ones are folded into one "overflow" series.
SERIES_MAX = 10_000


def _fmt(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if math.isnan(v):
        return "NaN"
    if float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Iterable[str], values: Iterable[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, label_names: Labels) -> None:
        self.name = name
        self.help = help
        self.label_names = label_names

    def _key(self, labels: Labels, series: Mapping[Labels, object]) -> Labels:
        assert len(labels) == len(self.label_names), (self.name, labels)
        if labels not in series and len(series) >= SERIES_MAX:
            return ("overflow",) * len(labels)
        return labels

    def header(self) -> list[str]:
        return [
            f"# HELP {self.name} {self.help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}",
            f"# TYPE {self.name} {self.kind}",
        ]

    def lines(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, label_names: Labels = ()) -> None:
        super().__init__(name, help, label_names)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        assert amount >= 0, "a counter only goes up"
        v = self.values
        if labels in v:
            v[labels] += amount
        else:
            key = self._key(labels, v)
            v[key] = v.get(key, 0.0) + amount

    def lines(self) -> list[str]:
        return [
            f"{self.name}{_labels(self.label_names, k)} {_fmt(v)}" for k, v in sorted(self.values.items())
        ]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, labels: Labels = ()) -> None:
        self.values[self._key(labels, self.values)] = value

    def add(self, amount: float, labels: Labels = ()) -> None:
        key = self._key(labels, self.values)
        self.values[key] = self.values.get(key, 0.0) + amount


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help: str, label_names: Labels = (), buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    ):
        super().__init__(name, help, label_names)
        assert list(buckets) == sorted(set(buckets)), "buckets must be strictly increasing"
        self.buckets = buckets
        # per series: [count in bucket 0, ..., count above the last bound, sum]; cumulated only when rendered
        self.series: dict[Labels, list[float]] = {}

    def observe(self, value: float, labels: Labels = ()) -> None:
        s = self.series.get(labels)
        if s is None:
            s = self.series.setdefault(self._key(labels, self.series), [0.0] * (len(self.buckets) + 2))
        s[bisect_left(self.buckets, value)] += 1
        s[-1] += value

    def lines(self) -> list[str]:
        out: list[str] = []
        for k, s in sorted(self.series.items()):
            acc = 0.0
            for bound, n in zip((*self.buckets, math.inf), s, strict=False):
                acc += n
                le = 'le="' + _fmt(bound) + '"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, k, le)} {_fmt(acc)}")
            out.append(f"{self.name}_sum{_labels(self.label_names, k)} {_fmt(s[-1])}")
            out.append(f"{self.name}_count{_labels(self.label_names, k)} {_fmt(acc)}")
        return out


class Registry:
    def __init__(self) -> None:
        self.metrics: dict[str, _Metric] = {}

    def _add(self, m: _Metric) -> _Metric:
        assert m.name not in self.metrics, f"metric {m.name} registered twice"
        self.metrics[m.name] = m
        return m

    def counter(self, name: str, help: str, label_names: Labels = ()) -> Counter:
        c = Counter(name, help, label_names)
        self._add(c)
        return c

    def gauge(self, name: str, help: str, label_names: Labels = ()) -> Gauge:
        g = Gauge(name, help, label_names)
        self._add(g)
        return g

    def histogram(
        self, name: str, help: str, label_names: Labels = (), buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    ) -> Histogram:
        h = Histogram(name, help, label_names, buckets)
        self._add(h)
        return h

    def render(self, extra_samples: Iterable[Sample] = ()) -> str:
        """The whole registry plus `extra_samples` (gauges, grouped by name) in Prometheus text format 0.0.4."""
        out: list[str] = []
        for m in self.metrics.values():
            out += m.header()
            out += m.lines()
        grouped: dict[str, list[Sample]] = {}
        for s in extra_samples:
            grouped.setdefault(s[0], []).append(s)
        for name, samples in grouped.items():
            if name in self.metrics:
                continue  # a clash would make the whole page unparsable: the registry's own wins
            out.append(f"# HELP {name} {samples[0][1]}")
            out.append(f"# TYPE {name} gauge")
            for _, _, labels, value in samples:
                out.append(f"{name}{_labels(labels.keys(), labels.values())} {_fmt(value)}")
        return "\n".join(out) + "\n"


class HttpMetrics:
    """The HTTP layer's metrics: what the API handler and the server shell record (node.http.server.ServerMetrics)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = r = registry or Registry()
        self.requests = r.counter(
            "murmur_http_requests_total",
            "HTTP requests answered, by route, method and status",
            ("route", "method", "status"),
        )
        self.latency = r.histogram(
            "murmur_http_request_duration_seconds",
            "Time from a parsed request to its response, by route and status",
            ("route", "status"),
        )
        self.errors = r.counter("murmur_http_errors_total", "Error responses by error code", ("code",))
        self.protocol_errors = r.counter(
            "murmur_http_protocol_errors_total",
            "Connections ended by a protocol error or limit, by status",
            ("status",),
        )
        self.connections = r.gauge("murmur_http_connections_open", "Client connections open now")
        self.tweets_ingested = r.counter(
            "murmur_tweets_ingested_total", "Tweets acknowledged through POST /tweets and /tweets/bulk"
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        st = str(status)
        self.requests.inc((route, method, st))
        self.latency.observe(seconds, (route, st))

    def connection_opened(self) -> None:
        self.connections.add(1)

    def connection_closed(self) -> None:
        self.connections.add(-1)

    def protocol_error(self, status: int) -> None:
        self.protocol_errors.inc((str(status),))

    def render(self, extra_samples: Iterable[Sample] = ()) -> str:
        return self.registry.render(extra_samples)
