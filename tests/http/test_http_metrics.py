"""The node's Prometheus metrics (node.metrics on prometheus_client): the documented names and labels, histograms
that count like a dumb model, the coordinator's gauges through the custom collector, one registry per node."""

from __future__ import annotations

import math

from httpkit import key, samples, types
from hypothesis import given, settings
from hypothesis import strategies as st

from node.metrics import LATENCY_BUCKETS_S, HttpMetrics


def test_http_metrics_records_requests_connections_and_errors() -> None:
    m = HttpMetrics()
    m.observe("/health", "GET", 200, 0.002)
    m.observe("/health", "GET", 200, 0.0004)
    m.observe("/search", "GET", 400, 0.01)
    m.connection_opened()
    m.connection_opened()
    m.connection_closed()
    m.protocol_error(413)
    m.error("invalid_query")
    m.ingested(5)
    text = m.render()
    got = samples(text)
    assert got[key("murmur_http_requests_total", route="/health", method="GET", status="200")] == 2
    assert got[key("murmur_http_requests_total", route="/search", method="GET", status="400")] == 1
    bucket = "murmur_http_request_duration_seconds_bucket"
    assert got[key(bucket, route="/health", status="200", le="0.0005")] == 1
    assert got[key(bucket, route="/health", status="200", le="0.0025")] == 2
    assert got[key(bucket, route="/health", status="200", le="+Inf")] == 2
    assert got[key("murmur_http_request_duration_seconds_count", route="/health", status="200")] == 2
    assert got[key("murmur_http_protocol_errors_total", status="413")] == 1
    assert got[key("murmur_http_errors_total", code="invalid_query")] == 1
    assert got[key("murmur_http_connections_open")] == 1
    assert got[key("murmur_tweets_ingested_total")] == 5
    assert m.searches() == 1 and m.ingested_total() == 5
    assert types(text)["murmur_http_request_duration_seconds"] == "histogram"
    assert not any(name.endswith("_created") for name, _ in got), "created series are disabled"


def test_coordinator_samples_become_gauges_and_never_clash() -> None:
    m = HttpMetrics()
    calls = 0

    def source() -> list[tuple[str, str, dict[str, str], float]]:
        nonlocal calls
        calls += 1
        return [
            ("murmur_hints_pending", "Hints waiting", {"node": "n2"}, 3.0),
            ("murmur_hints_pending", "Hints waiting", {"node": "n3"}, 0.0),
            ("murmur_tweets", "Tweets stored", {}, 42.0),
            ("murmur_http_connections_open", "a clash: the registry's own metric wins", {}, 99.0),
            ("murmur_replication_lag_records", "Lag", {}, math.inf),
        ]

    m.collect_from(source)
    m.connection_opened()
    text = m.render()
    got = samples(text)
    assert calls == 1, "read once per scrape"
    assert got[key("murmur_hints_pending", node="n2")] == 3
    assert got[key("murmur_hints_pending", node="n3")] == 0
    assert got[key("murmur_tweets")] == 42
    assert got[key("murmur_http_connections_open")] == 1
    assert got[key("murmur_replication_lag_records")] == math.inf
    t = types(text)
    assert t["murmur_hints_pending"] == "gauge" and t["murmur_tweets"] == "gauge"


def test_search_stages_are_histograms_in_seconds() -> None:
    m = HttpMetrics()
    m.search_stages({"windows": 3.0, "hydrate": 0.2})
    m.search_stages({"windows": 30.0})
    got = samples(m.render())
    b = "murmur_search_stage_duration_seconds_bucket"
    assert got[key(b, stage="windows", le="0.005")] == 1
    assert got[key(b, stage="windows", le="0.05")] == 2
    assert got[key(b, stage="hydrate", le="0.0005")] == 1
    assert got[key("murmur_search_stage_duration_seconds_sum", stage="windows")] == 0.033


def test_two_nodes_in_one_process_keep_their_own_registries() -> None:
    a, b = HttpMetrics(), HttpMetrics()
    a.observe("/health", "GET", 200, 0.001)
    assert samples(a.render())[key("murmur_http_requests_total", route="/health", method="GET", status="200")] == 1
    assert not any(n == "murmur_http_requests_total" for n, _ in samples(b.render()))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_latency_histogram_matches_a_dumb_count(values: list[float]) -> None:
    m = HttpMetrics()
    for v in values:
        m.observe("/search", "GET", 200, v)
    got = samples(m.render())
    for bound in (*LATENCY_BUCKETS_S, math.inf):
        le = "+Inf" if bound == math.inf else repr(bound)
        k = key("murmur_http_request_duration_seconds_bucket", route="/search", status="200", le=le)
        assert got.get(k, 0) == sum(1 for v in values if v <= bound)
