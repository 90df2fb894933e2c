"""The pure parts of the CLI: the load tally's report and the search / status formatting."""

from __future__ import annotations

from node.cli.query import format_cluster, format_search, format_tweet
from node.cli.tally import LoadTally


def test_tally_counts_and_reports_top_reasons() -> None:
    t = LoadTally()
    t.on_item({"line": 1, "status": 201, "id": 5}, "f:1")
    t.on_item({"line": 2, "status": 200, "id": 6}, "f:2")
    for i in range(3):
        err = {"code": "invalid_field", "message": f"text too long ({300 + i})", "field": "text"}
        t.on_item({"line": 3 + i, "status": 400, "error": err}, f"f:{3 + i}")
    t.on_item({"line": 9, "status": 409, "error": {"code": "conflict", "message": "other content"}}, "f:9")
    t.on_item({"line": 10, "status": 500}, "f:10")
    t.on_reject("invalid_json", None, "bad", "f:11")
    t.user_defaulted = 4
    assert (t.loaded, t.new, t.present, t.rejected) == (2, 1, 1, 6)
    lines = t.report(2.0)
    assert lines[0] == "loaded 2 (new 1, already present 1), rejected 6, user defaulted to 'unknown' 4"
    assert lines[1] == "in 2.0 s (4 tweets/s)"
    assert lines[3].split() == [
        "3",
        "invalid_field",
        "(text)",
        "e.g.",
        "f:3:",
        "text",
        "too",
        "long",
        "(300)",
    ]
    assert any("http_500" in line for line in lines)


def test_format_search_one_line_per_tweet_and_footer() -> None:
    body = {
        "statuses": [
            {"id": 2, "id_str": "2", "created_at": "2011-10-18T21:53:25Z", "user": "bob", "text": "a\nb  c"},
            {"id": 1, "user": "al"},
        ],
        "search_metadata": {"completed_in_ms": 1.5, "next_max_id": 0, "partial": True},
    }
    lines = format_search(body)
    assert lines[0] == "2  2011-10-18T21:53:25Z  @bob  a b c"
    assert lines[1] == "1  ?  @al  "
    assert lines[2] == "-- 2 results in 1.5 ms, next_max_id=0, PARTIAL (some partitions did not answer)"
    assert format_search({}) == ["-- 0 results in ? ms"]
    assert format_tweet({}) == "?  ?  @?  "


def test_format_cluster_tolerates_missing_fields() -> None:
    body = {
        "cluster": "dev",
        "n": 3,
        "w": 2,
        "r": 2,
        "members": [
            {
                "name": "n1",
                "state": "up",
                "http": "http://127.0.0.1:7001",
                "gossip": "127.0.0.1:7101",
                "ring_share": 0.3333,
                "partitions": {"total": 64, "healthy": 64},
                "tweets": 12345,
            },
            {"name": "n2", "state": "suspect"},
            "garbage",
        ],
    }
    lines = format_cluster(body)
    assert lines[0] == "Cluster: dev   N=3 W=2 R=2"
    assert lines[2].split() == ["--", "Name", "Address", "Gossip", "Owns", "Partitions", "Tweets"]
    assert lines[3].split() == [
        "UN",
        "n1",
        "http://127.0.0.1:7001",
        "127.0.0.1:7101",
        "33.3%",
        "total=64",
        "healthy=64",
        "12,345",
    ]
    assert lines[4].split() == ["US", "n2", "?", "?", "?", "?", "?"]
    assert len(lines) == 5
    assert format_cluster({})[0] == "Cluster: ?   N=? W=? R=?"
