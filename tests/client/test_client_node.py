"""node.client against a real node process: every endpoint's answer decodes into its struct, paging follows
next_max_id to the end, bulk_load loads through several bulks in flight, errors come back typed."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from node.client import ApiError, AsyncClient, Client
from tests.support.procs import running_nodes, write_config

# The /metrics families the README documents (the parser names counters without their _total suffix).
DOCUMENTED = {
    "murmur_http_requests": "counter",
    "murmur_http_request_duration_seconds": "histogram",
    "murmur_search_stage_duration_seconds": "histogram",
    "murmur_http_errors": "counter",
    "murmur_http_connections_open": "gauge",
    "murmur_tweets_ingested": "counter",
    "murmur_tweets": "gauge",
    "murmur_tombstones": "gauge",
    "murmur_index_terms": "gauge",
    "murmur_index_postings": "gauge",
    "murmur_index_bytes": "gauge",
    "murmur_outbox_pending": "gauge",
    "murmur_replication_lag_records": "gauge",
    "murmur_hints_pending_records": "gauge",
}


def test_every_endpoint_through_the_client(tmp_path: Path) -> None:
    config = write_config(tmp_path, ["n1"])
    with running_nodes(config, ["n1"]) as [node], Client(node.url) as c:
        t = c.create("hello #world from @bob", "alice", id=42, created_at="2011-10-18T21:53:25Z")
        assert (t.id, t.hashtags, t.mentions, t.created_at) == (42, ["world"], ["bob"], "2011-10-18T21:53:25Z")
        assert c.create("hello #world from @bob", "alice", id=42, created_at="2011-10-18T21:53:25Z").id == 42
        assert c.get(42).user == "alice"
        p = c.patch(42, text="hello again #world", likes=3)
        assert p.likes == 3 and p.edited_at is not None
        res = c.bulk([{"text": f"bulk {k} #world", "user": "b", "id": 100 + k} for k in range(25)] + [{"user": "x"}])
        assert (res.ingested, res.failed) == (25, 1) and res.items[-1].error is not None
        assert res.items[-1].error.field == "text"
        pages = list(c.search_pages("#world", count=10))
        ids = [s.id for page in pages for s in page.statuses]
        assert ids == sorted(ids, reverse=True) and len(ids) == 26 and len(pages) == 3
        found = c.search("hello", explain=True)
        assert [s.id for s in found.statuses] == [42] and found.search_metadata.stages is not None
        with pytest.raises(ApiError) as e:
            c.search('"unbalanced')
        assert e.value.code == "invalid_query" and e.value.field == "q"
        assert c.trends("24h").window == "24h"
        cl = c.cluster()
        assert [m.name for m in cl.members] == ["n1"] and cl.n == 1 and cl.members[0].state == "alive"
        h = c.health()
        assert (h.status, h.node, h.tweets, h.down) == ("ok", "n1", 26, None) and c.ping()
        st = c.stats()
        assert st.node == "n1" and st.ingested_total == 27 and st.searches_total >= 4
        # 27: the idempotent retry of id 42 is acknowledged again
        assert st.partitions is not None and st.partitions.total == st.partitions.all_replicas_up
        families = {f.name: f.type for f in text_string_to_metric_families(c.metrics())}
        assert {k: families.get(k) for k in DOCUMENTED} == DOCUMENTED
        assert "/search" in c.openapi()["paths"]
        c.delete(42)
        with pytest.raises(ApiError) as e:
            c.get(42)
        assert e.value.status == 404

        async def load() -> None:
            async with AsyncClient(node.url) as ac:
                batches = [[{"text": f"async {b} {k}", "user": "a"} for k in range(50)] for b in range(6)]
                totals = await ac.bulk_load(batches, concurrency=3)
                assert (totals.ingested, totals.batches) == (300, 6)
                assert len((await ac.search("async", count=100)).statuses) == 100

        trio.run(load)
