"""Memory before and after the end of the data's life, on one node's shard (node/shard.py), in this process:

1. collection, a node where every node indexes locally (N = nodes): T tweets, D of them deleted, then the
   tombstones collected (node/replication/collection.py: a one-node ring, so every round is complete at once)
   and the store compacted;
2. collection where postings go through the outbox (more nodes than N): the same node also holds every term
   partition, so each delete leaves a posting tombstone per term; collection plus two rotations drop them;
3. cleanup after a join: a node of a 3-node ring (N=3, it holds everything) once a 4th node has joined: it drops
   the tweets and terms of the ranges it no longer replicates.
Figures: the store's and the index's own accounting (memory_bytes), posting tombstones by a sys.getsizeof walk,
and the process's VmRSS after a gc (the allocator may keep freed memory: RSS falls less than the structures).

    .venv/bin/python scripts/bench_lifecycle.py [--limit 300000] [--delete-every 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import DEFAULT_CORPUS, load_corpus, machine, rss_bytes

from node.index.terms import tweet_terms_words
from node.model import Tweet
from node.replication import collection as col
from node.ring.ring import Ring
from node.shard import DeleteTweet, OutboxDone, PostingOps, PutTweet, Shard
from node.text.analyzer import analyse

MB = 1e6


def rss() -> float:
    gc.collect()
    return rss_bytes(os.getpid()) / MB  # VmRSS


def ptomb_bytes(sh: Shard) -> int:
    total = 0
    for table in (sh.posting_tombstones, sh._ptomb_old):
        total += sys.getsizeof(table)
        for (term, tid), v in table.items():
            total += sys.getsizeof((term, tid)) + sys.getsizeof(term) + sys.getsizeof(tid) + sys.getsizeof(v)
    return total


def figures(label: str, sh: Shard) -> None:
    st = sh.store
    st._merge_index()  # the few recent rows still in a dict count 100 B each: compare like with like
    print(
        f"  {label:<34} live {len(st):>8,}  tombstones {st.deleted_count():>8,}  rows {st.rows_count():>8,}  "
        f"store {st.memory_bytes() / MB:7.1f} MB  index {sh.index.memory_bytes() / MB:7.1f} MB  "
        f"posting tombstones {len(sh.posting_tombstones) + len(sh._ptomb_old):>9,} "
        f"({ptomb_bytes(sh) / MB:6.1f} MB)  RSS {rss():7.1f} MB"
    )


def tweets(limit: int) -> list[Tweet]:
    recs, source = load_corpus(DEFAULT_CORPUS, limit)
    print(f"corpus: {source}, {len(recs):,} tweets")
    out = []
    for k, r in enumerate(recs):
        a = analyse(r.text)
        out.append(
            Tweet(
                id=k + 1,
                created_at_ms=1_300_000_000_000 + k,
                user=r.user or "unknown",
                text=r.text,
                hashtags=a.hashtags,
                mentions=a.mentions,
                lang=r.lang,
                version=k + 1,
            )
        )
    return out


def collect_all(sh: Shard, now_ms: int, grace_ms: int) -> tuple[int, float, float]:
    """A collection pass of a node alone on its ring: every round is complete. -> (dropped, s, compaction s)."""
    t0 = time.perf_counter()
    ring = Ring.build(["n1"], 8)
    rounds = col.plan_rounds(sh.expired_tombstones(col.floor_ms(now_ms, grace_ms)), ring, 1, "n1", now_ms)
    dropped = sum(sh.collect(r.ids) for r in rounds if r.complete())
    t1 = time.perf_counter()
    sh.compact()
    return dropped, t1 - t0, time.perf_counter() - t1


def local_mode(ts: list[Tweet], every: int) -> None:
    print(f"\n1. local indexing (N = nodes): {len(ts):,} tweets, every {every}rd deleted")
    sh = Shard()
    for t in ts:
        sh.apply(PutTweet(t, local=True))
    figures("loaded", sh)
    victims = ts[::every]
    for t in victims:
        sh.apply(DeleteTweet(t.id, t.version + 10**9, 0, local=True))
    figures(f"{len(victims):,} deleted (tombstones kept)", sh)
    dropped, s, cs = collect_all(sh, 10**6, 1000)
    figures(f"collected {dropped:,} ({s * 1000:.0f} + {cs * 1000:.0f} ms)", sh)
    del sh


def outbox_mode(ts: list[Tweet], every: int) -> None:
    print(
        f"\n2. postings through the outbox (more nodes than N), this node on every term partition: {len(ts):,} "
        f"tweets, every {every}rd deleted"
    )
    sh = Shard()
    for t in ts:
        terms = tuple(sorted(tweet_terms_words(t.text, t.user, t.lang)[0]))
        for r in (PutTweet(t, terms), PostingOps(t.id, t.version, terms), OutboxDone(t.id, t.version)):
            sh.apply(r)
    figures("loaded", sh)
    victims = ts[::every]
    for t in victims:
        # fresh strings per record, as msgpack decoding makes them for every PostingOps that arrives
        terms = tuple(sorted(tweet_terms_words(t.text, t.user, t.lang)[0]))
        v = t.version + 10**9
        for r in (DeleteTweet(t.id, v, 0, terms), PostingOps(t.id, v, (), terms), OutboxDone(t.id, v)):
            sh.apply(r)
    figures(f"{len(victims):,} deleted", sh)
    dropped, _s, _cs = collect_all(sh, 10**6, 1000)
    gone = sh.rotate_posting_tombstones() + sh.rotate_posting_tombstones()
    sh.compact()
    figures(f"collected {dropped:,} + {gone:,} posting tombstones", sh)
    del sh


def cleanup(ts: list[Tweet]) -> None:
    print(f"\n3. cleanup after a join: n1 of n1..n3 (N=3), {len(ts):,} tweets, then n4 joins")
    sh = Shard()
    for t in ts:
        sh.apply(PutTweet(t, local=True))
    figures("n1 before the join (holds all)", sh)
    ring = Ring.build(["n1", "n2", "n3", "n4"], 64)
    owned = col.owned_ranges(ring, 3, "n1")
    t0 = time.perf_counter()
    live, _tombs, _ = sh.drop_tweets_outside(owned)
    sh.drop_posting_meta_outside(owned)
    terms = sh.terms_outside(owned)
    postings = sh.drop_terms(terms)
    t1 = time.perf_counter()
    freed = sh.compact(force=True)
    t2 = time.perf_counter()
    figures(f"after cleanup ({(t1 - t0):.1f} + {(t2 - t1) * 1000:.0f} ms)", sh)
    print(
        f"  dropped {live:,} tweets, {len(terms):,} terms, {postings:,} postings; compaction freed "
        f"{freed / MB:.1f} MB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=300_000)
    ap.add_argument("--delete-every", type=int, default=3)
    ap.add_argument("--only", choices=["local", "outbox", "cleanup"], default=None)
    a = ap.parse_args()
    print(machine())
    ts = tweets(a.limit)
    print(f"RSS with the corpus in memory: {rss():.1f} MB")
    if a.only in (None, "local"):
        local_mode(ts, a.delete_every)
    if a.only in (None, "outbox"):
        outbox_mode(ts, a.delete_every)
    if a.only in (None, "cleanup"):
        cleanup(ts)


if __name__ == "__main__":
    main()
