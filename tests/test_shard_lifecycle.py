"""The shard's part in the end of the data's life (node/shard.py; rules in node/replication/collection.py):
collected tombstones and cleaned-up ranges leave the digests exactly as if they had never been stored, an expired
tombstone of an id not held is not stored again, and posting tombstones live two rotations."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from node.model import Tweet
from node.replication import collection as col
from node.ring.ring import Ring, term_token, tweet_token
from node.shard import (
    DeleteTweet,
    OutboxDone,
    PostingOps,
    PutTweet,
    Record,
    Shard,
    bucket_of,
    in_range,
    key_hash,
)


def tweet(i: int, v: int, text: str = "hello world") -> Tweet:
    return Tweet(id=i, created_at_ms=i % 10**12, user="u", text=text, hashtags=("tag",), version=v)


def digests(sh: Shard, ring: Ring) -> list[dict[int, int]]:
    return [sh.digest(s, e) for s, e in ring.partitions()]


def shard_of(records: list[Record]) -> Shard:
    sh = Shard()
    for r in records:
        sh.apply(r)
    return sh


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.integers(1, 2**63), min_size=1, max_size=80, unique=True), data=st.data())
def test_collecting_tombstones_leaves_the_digests_of_a_shard_that_never_held_them(ids: list[int], data: st.DataObject) -> None:
    dead = set(data.draw(st.lists(st.sampled_from(ids), unique=True)))
    live = [PutTweet(tweet(i, 5)) for i in ids if i not in dead]
    tombs = [DeleteTweet(i, 9, 100) for i in dead]
    sh = shard_of([*[PutTweet(tweet(i, 5)) for i in ids], *tombs])
    assert sorted(sh.expired_tombstones(100)) == sorted(dead) and sh.expired_tombstones(99) == []
    assert sh.collect(ids) == len(dead)  # only tombstones go
    sh.compact(force=True)
    clean = shard_of(live)
    ring = Ring.build(["a", "b", "c"], 4)
    assert digests(sh, ring) == digests(clean, ring)
    assert set(sh.tweets) == set(clean.tweets) and not sh.tombstones
    assert sh.hashtag_counts(0, 2**63) == clean.hashtag_counts(0, 2**63)


def test_an_expired_tombstone_of_an_id_not_held_is_not_stored_but_one_of_a_held_id_is() -> None:
    sh = shard_of([PutTweet(tweet(1, 5))])
    sh.tombstone_floor_ms = 1000
    assert not sh.apply(DeleteTweet(2, 9, 1000))  # nothing here to hide: not stored
    assert 2 not in sh.tombstones and sh.version_of(2) == 0
    assert sh.apply(DeleteTweet(3, 9, 1001))  # not expired yet
    assert sh.apply(DeleteTweet(1, 9, 10))  # hides the copy held here, however old
    assert 1 in sh.tombstones and 1 not in sh.tweets


def test_an_index_work_still_pending_keeps_its_tombstone_a_candidate_no_more() -> None:
    sh = shard_of([PutTweet(tweet(1, 5), ("hello",)), DeleteTweet(1, 9, 10, ("hello",))])
    assert 1 in sh.outbox and sh.expired_tombstones(10) == []
    sh.apply(OutboxDone(1, 9))
    assert sh.expired_tombstones(10) == [1]


def test_posting_tombstones_guard_for_two_rotations_then_go() -> None:
    sh = shard_of([PostingOps(7, 1, ("w",)), PostingOps(7, 2, (), ("w",))])
    assert sh.posting_tombstones == {("w", 7): 2}
    assert sh.rotate_posting_tombstones() == 0
    sh.apply(PostingOps(7, 1, ("w",)))  # a late add of the older version: still refused
    assert list(sh.index.iter_newest(_term("w"))) == []
    assert sh.rotate_posting_tombstones() == 1 and not sh.posting_tombstones
    sh.apply(PostingOps(7, 3, ("w",)))
    assert list(sh.index.iter_newest(_term("w"))) == [7]
    # the snapshot keeps both generations
    sh.apply(PostingOps(7, 4, (), ("w",)))
    sh.rotate_posting_tombstones()
    sh.apply(PostingOps(8, 4, (), ("x",)))
    back = Shard.load(sh.dump())
    assert back.posting_tombstones == {("w", 7): 4, ("x", 8): 4}


def _term(t: str):  # type: ignore[no-untyped-def]
    from node.query.ast import Term

    return Term(t)


@settings(max_examples=40, deadline=None)
@given(
    ids=st.lists(st.integers(1, 2**63), min_size=1, max_size=60, unique=True),
    words=st.lists(st.text("abcdefgh", min_size=1, max_size=4), min_size=1, max_size=30, unique=True),
    nodes=st.integers(1, 5),
    vnodes=st.integers(1, 6),
    k=st.integers(0, 4),
)
def test_cleanup_keeps_exactly_what_this_node_replicates(
    ids: list[int], words: list[str], nodes: int, vnodes: int, k: int
) -> None:
    names = ["a", "b", "c", "d", "e"][:nodes]
    ring = Ring.build(names, vnodes)
    me = names[k % nodes]
    owned = col.owned_ranges(ring, 3, me)

    def mine(tok: int) -> bool:
        return any(in_range(tok, s, e) for s, e in owned)

    recs: list[Record] = []
    for n, i in enumerate(ids):
        recs.append(PutTweet(tweet(i, 5), (words[n % len(words)],)))  # an outbox entry each
        if n % 3 == 0:
            recs.append(DeleteTweet(i, 9, 100, (words[n % len(words)],)))
        recs.append(PostingOps(i, 5, (words[n % len(words)], words[(n + 1) % len(words)])))
        if n % 4 == 0:
            recs.append(PostingOps(i, 9, (), (words[(n + 1) % len(words)],)))
    sh = shard_of(recs)
    had_outbox = set(sh.outbox)
    live, tombs, outbox = sh.drop_tweets_outside(owned)
    gone = [i for i in ids if not mine(tweet_token(i))]
    assert live + tombs == len(gone) and outbox == len(had_outbox - set(sh.outbox))
    sh.drop_posting_meta_outside(owned)
    sh.drop_terms(sh.terms_outside(owned))
    sh.compact(force=True)
    kept = shard_of([r for r in recs if _owned_record(r, mine)])
    assert digests(sh, ring) == digests(kept, ring)
    assert set(sh.tweets) == set(kept.tweets) and set(sh.tombstones) == set(kept.tombstones)
    assert set(sh.outbox) == set(kept.outbox)
    assert set(sh.index.terms()) == {t for t in kept.index.terms() if mine(term_token(t))}
    for t in sh.index.terms():
        assert list(sh.index.iter_newest(_term(t))) == list(kept.index.iter_newest(_term(t)))
    assert all(mine(term_token(t)) for t, _ in sh.posting_tombstones)
    if nodes <= 3:
        assert not gone  # N = nodes: every node keeps everything


def _owned_record(r: Record, mine) -> bool:  # type: ignore[no-untyped-def]
    if isinstance(r, PutTweet):
        return bool(mine(tweet_token(r.tweet.id)))
    if isinstance(r, DeleteTweet):
        return bool(mine(tweet_token(r.id)))
    return True  # postings: the kept shard's terms are filtered by the caller


@settings(max_examples=80, deadline=None)
@given(ids=st.lists(st.integers(1, 2**63), min_size=1, max_size=120, unique=True), data=st.data())
def test_digest_and_keys_of_any_range_are_those_of_its_ids(ids: list[int], data: st.DataObject) -> None:
    # any range (start, end], wrapping or not, its ends next to ids' tokens (so that the buckets only partly
    # inside hold ids on both sides of the end); live tweets and tombstones
    def near_an_id() -> int:
        return (tweet_token(data.draw(st.sampled_from(ids))) + data.draw(st.integers(-2, 2))) % 2**64

    start, end = near_an_id(), near_an_id()
    dead = set(data.draw(st.lists(st.sampled_from(ids), unique=True)))
    sh = shard_of([*[PutTweet(tweet(i, 5)) for i in ids], *[DeleteTweet(i, 9, 100) for i in dead]])
    inside = {i: (9 if i in dead else 5) for i in ids if in_range(tweet_token(i), start, end)}
    want: dict[int, int] = {}
    for i, v in inside.items():
        b = bucket_of(i)
        want[b] = want.get(b, 0) ^ key_hash(i, v)
    assert sh.digest(start, end) == {b: h for b, h in want.items() if h}
    asked = set(data.draw(st.lists(st.sampled_from(sorted({bucket_of(i) for i in ids})), unique=True)))
    assert sorted(sh.keys(start, end, asked)) == sorted((i, v) for i, v in inside.items() if bucket_of(i) in asked)
