"""The Prometheus registry (node.metrics): exact text format 0.0.4 output, cumulative buckets, escaping,
extra samples from the coordinator, bounded series."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from node.metrics import SERIES_MAX, Histogram, HttpMetrics, Registry


def test_counter_gauge_and_extra_samples_render_exactly() -> None:
    r = Registry()
    c = r.counter("x_total", "Things done", ("kind",))
    g = r.gauge("open_now", "Open things")
    c.inc(("a",))
    c.inc(("a",), 2)
    c.inc(('q"\\\n',), 0.5)
    g.add(3)
    g.add(-1)
    extra = [
        ("index_terms", "Terms indexed", {"partition": "p1"}, 10.0),
        ("index_terms", "Terms indexed", {"partition": "p0"}, 7.0),
        ("x_total", "clash: the registry's own metric wins", {}, 99.0),
        ("lag_seconds", "Lag", {}, math.inf),
    ]
    assert r.render(extra) == (
        "# HELP x_total Things done\n"
        "# TYPE x_total counter\n"
        'x_total{kind="a"} 3\n'
        'x_total{kind="q\\"\\\\\\n"} 0.5\n'
        "# HELP open_now Open things\n"
        "# TYPE open_now gauge\n"
        "open_now 2\n"
        "# HELP index_terms Terms indexed\n"
        "# TYPE index_terms gauge\n"
        'index_terms{partition="p1"} 10\n'
        'index_terms{partition="p0"} 7\n'
        "# HELP lag_seconds Lag\n"
        "# TYPE lag_seconds gauge\n"
        "lag_seconds +Inf\n"
    )


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram("lat_seconds", "Latency", ("route",), buckets=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 2.0):
        h.observe(v, ("/a",))
    assert h.lines() == [
        'lat_seconds_bucket{route="/a",le="0.1"} 2',
        'lat_seconds_bucket{route="/a",le="1"} 3',
        'lat_seconds_bucket{route="/a",le="+Inf"} 4',
        'lat_seconds_sum{route="/a"} 2.65',
        'lat_seconds_count{route="/a"} 4',
    ]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_histogram_matches_a_dumb_count(values: list[float]) -> None:
    buckets = (0.001, 0.5, 1.0, 10.0)
    h = Histogram("h", "h", (), buckets=buckets)
    for v in values:
        h.observe(v)
    counts = [int(line.rsplit(" ", 1)[1]) for line in h.lines() if "_bucket" in line]
    expected = [sum(1 for v in values if v <= b) for b in (*buckets, math.inf)]
    assert counts == (expected if values else [])


def test_series_are_bounded() -> None:
    r = Registry()
    c = r.counter("c_total", "c", ("k",))
    for i in range(SERIES_MAX + 50):
        c.inc((str(i),))
    assert len(c.values) == SERIES_MAX + 1
    assert c.values[("overflow",)] == 50


def test_http_metrics_records_requests_and_connections() -> None:
    m = HttpMetrics()
    m.observe("/health", "GET", 200, 0.002)
    m.connection_opened()
    m.protocol_error(413)
    text = m.render()
    assert 'murmur_http_requests_total{route="/health",method="GET",status="200"} 1' in text
    assert 'murmur_http_request_duration_seconds_bucket{route="/health",status="200",le="0.0025"} 1' in text
    assert 'murmur_http_request_duration_seconds_bucket{route="/health",status="200",le="0.001"} 0' in text
    assert 'murmur_http_protocol_errors_total{status="413"} 1' in text
    assert "murmur_http_connections_open 1" in text
