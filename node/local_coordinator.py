"""The coordinator of a cluster of one: every partition is local. It validates writes against the shard,
stamps versions and ids, makes each write durable through the WAL (group commit) before acknowledging, and
answers searches from the local index. The HTTP layer talks to it through node.coordinator.Coordinator.

Writes change memory first and are acknowledged only after the WAL has them; replay is version-guarded, so a
record applied twice or out of order changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from node.coordinator import Created, SearchRequest, SearchResult, Trend
from node.errors import Conflict, InvalidField, MurmurError, NotFound
from node.ids import IdOutOfRange, SnowflakeGenerator
from node.model import Tweet, TweetIn, TweetPatch, same_content
from node.query.match import matches
from node.search_order import order_results
from node.shard import DeleteTweet, PutTweet, Record, Shard, encode_record, make_version
from node.text.analyzer import analyse
from node.trends import TrendCounter

ID_RETRIES_MAX = 64  # generated ids that collide with stored ones are retried this many times at most


class Log(Protocol):
    async def append(self, payloads: list[bytes]) -> int: ...


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class LocalCoordinator:
    def __init__(
        self,
        shard: Shard,
        log: Log,
        ids: SnowflakeGenerator,
        *,
        node_name: str,
        epoch: int = 1,
        clock_ms: Callable[[], int] = wall_ms,
        cluster: dict[str, Any] | None = None,
    ) -> None:
        self.shard = shard
        self.log = log
        self.ids = ids
        self.node_name = node_name
        self.epoch = epoch
        self.clock_ms = clock_ms
        self._seq = shard.max_version & ((1 << 40) - 1) if shard.max_version >> 40 == epoch else 0
        self.trends_counter = TrendCounter()
        self._cluster = cluster or {}
        now = clock_ms()
        for t in shard.tweets.values():
            self.trends_counter.add(t.hashtags, t.created_at_ms, now)
            ids.observe(t.id)

    # ------------------------------------------------------------ helpers

    def _next_version(self) -> int:
        self._seq += 1
        return make_version(self.epoch, self._seq)

    def _prepare(self, t: TweetIn, now: int) -> Created | Tweet:
        """Validate one create against current state: an existing Created (idempotent retry) or the new Tweet."""
        sh = self.shard
        if t.id is not None:
            if t.id in sh.tombstones:
                raise Conflict(f"tweet {t.id} was deleted; its id cannot be used again", "id")
            old = sh.tweets.get(t.id)
            if old is not None:
                if same_content(old, t):
                    return Created(old, False)
                raise Conflict(f"tweet {t.id} exists with other content", "id")
            ident = t.id
        else:
            created = t.created_at_ms if t.created_at_ms is not None else now
            try:
                for _ in range(ID_RETRIES_MAX):
                    ident = self.ids.id_for(created) if t.created_at_ms is not None else self.ids.next_id(now)
                    if ident not in sh.tweets and ident not in sh.tombstones:
                        break
                else:
                    raise Conflict("could not find a free id for this created_at", "created_at")
            except IdOutOfRange as e:
                raise InvalidField(str(e), "created_at") from None
        a = analyse(t.text)
        return Tweet(
            id=ident,
            created_at_ms=t.created_at_ms if t.created_at_ms is not None else now,
            user=t.user,
            text=t.text,
            hashtags=a.hashtags,
            mentions=a.mentions,
            reply_to=t.reply_to,
            lang=t.lang,
            geo=t.geo,
            likes=t.likes or 0,
            retweets=t.retweets or 0,
            version=self._next_version(),
        )

    def _apply_local(self, recs: list[Record], now: int) -> None:
        for r in recs:
            if isinstance(r, PutTweet):
                old = self.shard.tweets.get(r.tweet.id)
                if self.shard.apply(r) and old is None:
                    self.trends_counter.add(r.tweet.hashtags, r.tweet.created_at_ms, now)
            else:
                old = self.shard.tweets.get(r.id)
                if self.shard.apply(r) and old is not None:
                    self.trends_counter.add(old.hashtags, old.created_at_ms, now, delta=-1)

    async def _commit(self, recs: list[Record], now: int) -> None:
        self._apply_local(recs, now)
        if recs:
            await self.log.append([encode_record(r) for r in recs])

    # ------------------------------------------------------------ writes

    async def create_tweet(self, t: TweetIn) -> Created:
        (res,) = await self.bulk_create([t])
        if isinstance(res, MurmurError):
            raise res
        return res

    async def bulk_create(self, items: list[TweetIn]) -> list[Created | MurmurError]:
        now = self.clock_ms()
        out: list[Created | MurmurError] = []
        recs: list[Record] = []
        staged: dict[int, Tweet] = {}  # ids created earlier in this same batch
        for t in items:
            try:
                if t.id is not None and t.id in staged:
                    prev = staged[t.id]
                    if not same_content(prev, t):
                        raise Conflict(f"tweet {t.id} exists with other content", "id")
                    out.append(Created(prev, False))
                    continue
                r = self._prepare(t, now)
            except MurmurError as e:
                out.append(e)
                continue
            if isinstance(r, Created):
                out.append(r)
            else:
                staged[r.id] = r
                recs.append(PutTweet(r))  # applied by _commit before its first await: no race in between
                out.append(Created(r, True))
        await self._commit(recs, now)
        return out

    async def get_tweet(self, tweet_id: int) -> Tweet:
        t = self.shard.tweets.get(tweet_id)
        if t is None:
            raise NotFound(f"no tweet with id {tweet_id}", "id")
        return t

    async def patch_tweet(self, tweet_id: int, patch: TweetPatch) -> Tweet:
        old = await self.get_tweet(tweet_id)
        now = self.clock_ms()
        changes: dict[str, Any] = {}
        if patch.text is not None and patch.text != old.text:
            a = analyse(patch.text)
            changes.update(text=patch.text, hashtags=a.hashtags, mentions=a.mentions, edited_at_ms=now)
        if patch.likes is not None:
            changes["likes"] = patch.likes
        if patch.retweets is not None:
            changes["retweets"] = patch.retweets
        if not changes:
            return old
        new = msgspec.structs.replace(old, version=self._next_version(), **changes)
        await self._commit([PutTweet(new)], now)
        return new

    async def delete_tweet(self, tweet_id: int) -> None:
        await self.get_tweet(tweet_id)
        now = self.clock_ms()
        await self._commit([DeleteTweet(tweet_id, self._next_version(), now)], now)

    # ------------------------------------------------------------ reads

    async def search(self, req: SearchRequest) -> SearchResult:
        t0 = time.perf_counter()
        q = req.query
        tweets = self.shard.tweets
        accept = (lambda i: matches(q, tweets[i])) if q.needs_tweet() else None
        stages: dict[str, float] = {}
        if req.result_type == "recent":
            ids, next_max = self.shard.index.search(q.root, req.count, req.max_id, req.since_id, accept)
            hits = [tweets[i] for i in ids]
        else:
            pool_ids, more = self.shard.index.search(q.root, POPULAR_POOL, req.max_id, req.since_id, accept)
            pool = [tweets[i] for i in pool_ids]
            hits, next_max = order_results(pool, req.result_type, req.count, more is not None)
        if req.explain:
            stages["index_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        return SearchResult(hits, next_max, False, stages if req.explain else None)

    async def trends(self, window_s: int, count: int, now_ms: int) -> list[Trend]:
        return [
            Trend("#" + tag, c, s) for tag, c, s in self.trends_counter.top(window_s * 1000, count, now_ms)
        ]

    def cluster_view(self) -> dict[str, object]:
        return {
            **self._cluster,
            "members": [
                {**m, "tweets": len(self.shard.tweets)} if m.get("name") == self.node_name else m
                for m in self._cluster.get("members", [])  # type: ignore[union-attr]
            ],
        }

    def health(self) -> dict[str, object]:
        return {"status": "ok", "node": self.node_name, "tweets": len(self.shard.tweets)}

    def metrics_samples(self) -> list[tuple[str, str, dict[str, str], float]]:
        ix = self.shard.index
        return [
            ("murmur_tweets", "Tweets stored on this node", {}, float(len(self.shard.tweets))),
            ("murmur_tombstones", "Delete tombstones kept on this node", {}, float(len(self.shard.tombstones))),
            ("murmur_index_terms", "Distinct terms in the local index", {}, float(ix.terms_count())),
            ("murmur_index_postings", "Postings in the local index", {}, float(ix.postings_count())),
            ("murmur_index_bytes", "Estimated memory of the local index", {}, float(ix.memory_bytes())),
            ("murmur_replication_lag_records", "Records not yet on every replica", {}, 0.0),
            ("murmur_hints_pending", "Hinted-handoff records waiting for a down replica", {}, 0.0),
        ]


POPULAR_POOL = 1000  # popular/mixed rank the newest this-many matches by engagement
