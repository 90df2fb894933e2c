"""The shapes of the public API's response bodies (CONTRACT §2), as msgspec Structs.

The API encodes exactly these and the OpenAPI document is generated from them, so the two cannot drift apart.
Pure data: no logic beyond construction.
"""

from __future__ import annotations

import msgspec

from node.model import TweetOut


class ErrorDetail(msgspec.Struct):
    code: str  # machine code, e.g. "invalid_field"
    message: str  # a human sentence
    field: str | None  # the offending field or parameter, when there is one


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class SearchMetadata(msgspec.Struct, omit_defaults=True):
    query: str
    count: int
    result_type: str
    next_max_id: int | None  # pass as max_id to get the next page; null when there is none
    partial: bool  # some partition could not answer with R copies in time
    completed_in_ms: float
    coordinator: str  # the node that answered
    next_max_id_str: str | None = None
    stages: dict[str, float] | None = None  # explain=true only: stage name -> milliseconds


class SearchResponse(msgspec.Struct):
    statuses: list[TweetOut]
    search_metadata: SearchMetadata


class SearchResponseRendered(msgspec.Struct):
    """SearchResponse with its statuses already rendered (the same JSON, for the encoder only)."""

    statuses: list[msgspec.Raw]
    search_metadata: SearchMetadata


class TrendOut(msgspec.Struct):
    hashtag: str  # with '#'
    count: int
    score: float


class TrendsResponse(msgspec.Struct):
    trends: list[TrendOut]
    window: str  # 5m, 1h or 24h
    as_of: str  # ISO-8601 UTC


class BulkItem(msgspec.Struct, omit_defaults=True):
    line: int  # 1-based line number in the request body
    status: int  # 201 new, 200 idempotent retry, 4xx/5xx failed
    id: int | None = None
    error: ErrorDetail | None = None


class BulkResponse(msgspec.Struct):
    ingested: int
    failed: int
    items: list[BulkItem]


class Health(msgspec.Struct, forbid_unknown_fields=False):
    status: str  # "ok" or "degraded"
    node: str | None = None  # the node that answered
    tweets: int | None = None  # tweets stored on it
    down: list[str] | None = None  # degraded: the members it sees down
    ring: str | None = None  # degraded: this node is joining or leaving
    storage: str | None = None  # degraded: "read_only" when it cannot persist
    reason: str | None = None  # degraded, storage: why it cannot persist (a disk error, free space under the floor)


class PartitionHealth(msgspec.Struct):
    total: int  # partitions of the ring
    all_replicas_up: int
    under_replicated: int  # some replica down (writes and reads still work while W and R are met)
    below_write_quorum: int  # fewer than W replicas up: writes to it fail
    below_read_quorum: int  # fewer than R replicas up: searches are partial


class StatsResponse(msgspec.Struct):
    """GET /stats: one node's figures for the page (rates come from two polls: counters over uptime_s)."""

    node: str
    uptime_s: float  # seconds since this node started serving (monotonic)
    searches_total: int  # searches this node coordinated
    ingested_total: int  # tweets acknowledged through this node (POST /tweets and /tweets/bulk)
    tweets: int  # tweets stored here (every partition it replicates)
    replication_lag_records: int  # index records not yet on W copies
    hints_pending_records: int  # hinted-handoff records waiting for down replicas
    index_bytes: int  # estimated memory of the local index
    partitions: PartitionHealth | None  # as this node sees the ring; None in a node without a ring


class Member(msgspec.Struct):
    """One member in GET /cluster (more fields may appear; a client ignores them)."""

    name: str
    state: str  # alive, suspect, dead, left, unknown
    ring: str = "normal"  # normal, joining, leaving
    http: str | None = None
    gossip: str | None = None
    ring_share: float | None = None
    partitions: dict[str, int] | None = None  # replicated, total
    tweets: int | None = None


class ClusterView(msgspec.Struct):
    """GET /cluster."""

    members: list[Member]
    cluster: str | None = None
    n: int | None = None
    w: int | None = None
    r: int | None = None
    vnodes: int | None = None
    coordinator: str | None = None
    topology: int | None = None
    change: str | None = None
    partitions: int | None = None

