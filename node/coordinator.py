"""The interface between the HTTP layer and whatever answers requests (a local engine in a cluster of one,
a ring of remote partitions later). The HTTP layer only ever sees this; it never touches an index or a file.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

from node.errors import MurmurError
from node.model import Tweet, TweetIn, TweetPatch
from node.query.ast import Query

ResultType = Literal["recent", "popular", "mixed"]
COUNT_MAX = 100


class SearchRequest(msgspec.Struct, frozen=True):
    query: Query
    count: int = COUNT_MAX  # 1..100
    max_id: int | None = None  # only ids <= max_id
    since_id: int | None = None  # only ids > since_id
    result_type: ResultType = "recent"
    explain: bool = False
    render: bool = False  # the page may come back rendered (SearchResult.rendered) instead of as tweets


class SearchResult(msgspec.Struct):
    tweets: list[Tweet]
    next_max_id: int | None  # pass as max_id to get the next page; None when there is none
    partial: bool = False  # some partition could not answer with R copies in time
    stages: dict[str, float] | None = None  # explain=true: stage name -> milliseconds
    rendered: list[msgspec.Raw] | None = None  # the page already rendered (JSON of each TweetOut), instead of tweets


class Created(msgspec.Struct):
    tweet: Tweet
    created: bool  # False: an idempotent retry of an identical tweet (HTTP 200 instead of 201)


class Trend(msgspec.Struct):
    hashtag: str  # with '#'
    count: int
    score: float


class Coordinator(Protocol):
    async def create_tweet(self, t: TweetIn) -> Created:
        """Raises Conflict (same id, other content, or a deleted id), Unavailable (not acknowledged)."""
        ...

    async def bulk_create(self, items: list[TweetIn]) -> list[Created | MurmurError]:
        """One result per item, in order; one bad item fails alone."""
        ...

    async def get_tweet(self, tweet_id: int) -> Tweet:
        """Raises NotFound."""
        ...

    async def patch_tweet(self, tweet_id: int, patch: TweetPatch) -> Tweet:
        """Raises NotFound, Unavailable."""
        ...

    async def delete_tweet(self, tweet_id: int) -> None:
        """Raises NotFound, Unavailable."""
        ...

    async def search(self, req: SearchRequest) -> SearchResult: ...

    async def trends(self, window_s: int, count: int, now_ms: int) -> list[Trend]: ...

    def cluster_view(self) -> dict[str, object]:
        """GET /cluster: members, states, ring ownership, N/W/R."""
        ...

    def health(self) -> dict[str, object]:
        """GET /health: {"status": "ok"} or {"status": "degraded", ...}."""
        ...

    def metrics_samples(self) -> list[tuple[str, str, dict[str, str], float]]:
        """(name, help, labels, value) gauges for /metrics: index size, tweets, replication lag, hints pending."""
        ...
