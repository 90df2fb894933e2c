"""The column store (node/store/tweets.py) against a dict model: any sequence of puts, deletes, removals (collected
tombstones, cleaned-up ranges) and compactions leaves it answering every lookup, scan, trend count and snapshot
exactly as the model does, and a compaction frees the rows and the text it says it frees."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node.model import GeoPoint, Tweet
from node.records import DeleteTweet
from node.storage.parts import encode_parts, read_parts
from node.store.tweets import TweetStore

IDS = st.integers(1, 40)
BUCKETS = 4  # few buckets, so that scans by bucket meet several rows


def bucket(tweet_id: int) -> int:
    return tweet_id % BUCKETS


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = TweetStore()
        self.model: dict[int, Tweet | DeleteTweet] = {}
        self.version = 0

    def _next_version(self) -> int:
        self.version += 1
        return self.version

    @rule(
        i=IDS,
        text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30),
        tags=st.lists(st.sampled_from(["a", "b", "cé"]), unique=True, max_size=2),
        created=st.integers(0, 9),
        big=st.booleans(),
        extras=st.booleans(),
    )
    def put(self, i: int, text: str, tags: list[str], created: int, big: bool, extras: bool) -> None:
        t = Tweet(
            id=i,
            created_at_ms=created,
            user=f"u{i % 3}",
            text=text,
            hashtags=tuple(tags),
            mentions=("m",) if extras else (),
            reply_to=7 if extras else None,
            lang="fr" if extras else None,
            geo=GeoPoint(1.5, -2.0) if extras else None,
            likes=(1 << 40) if big else i,
            retweets=3,
            edited_at_ms=5 if extras else None,
            version=self._next_version(),
        )
        self.store.put(t, bucket(i))
        self.model[i] = t

    @rule(i=IDS, at=st.integers(0, 20))
    def delete(self, i: int, at: int) -> None:
        d = DeleteTweet(i, self._next_version(), at)
        self.store.delete(d, bucket(i))
        self.model[i] = d

    @rule(ids=st.lists(IDS, max_size=8), tombstones_only=st.booleans())
    def remove(self, ids: list[int], tombstones_only: bool) -> None:
        want = {
            i: self.model[i] for i in set(ids)
            if i in self.model and (not tombstones_only or isinstance(self.model[i], DeleteTweet))
        }
        got = self.store.remove(ids, tombstones_only)
        assert sorted(got) == sorted((i, v.version, bucket(i)) for i, v in want.items())
        for i in want:
            del self.model[i]

    @rule()
    def compact(self) -> None:
        before = self.store.memory_bytes()
        freed = self.store.compact()
        assert freed == before - self.store.memory_bytes() and freed >= 0
        assert self.store.gone_count() == 0 and self.store.garbage_bytes() == 0
        assert self.store.rows_count() == len(self.model)

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def snapshot_round_trip(self) -> None:
        self.store = TweetStore.load_parts(read_parts(encode_parts(self.store.dump_parts())))

    @invariant()
    def answers_as_the_model(self) -> None:
        s, model = self.store, self.model
        live = {i: t for i, t in model.items() if isinstance(t, Tweet)}
        dead = {i: d for i, d in model.items() if isinstance(d, DeleteTweet)}
        for i in range(1, 41):
            assert s.get(i) == live.get(i)
            assert s.tomb(i) == dead.get(i)
            assert s.version_of(i) == (model[i].version if i in model else 0)
            assert s.is_live(i) == (i in live) and s.is_deleted(i) == (i in dead)
        assert s.versions(list(range(1, 41))) == [model[i].version if i in model else 0 for i in range(1, 41)]
        assert len(s) == len(live) and s.deleted_count() == len(dead)
        assert set(s.live_ids()) == set(live) and set(s.deleted_ids()) == set(dead)
        assert sorted(s.deleted_before(10)) == sorted(i for i, d in dead.items() if d.at_ms <= 10)
        for chosen in ({0}, {1, 3}, set(range(BUCKETS))):  # the store's column is 2**16 wide; these are all used
            marked = np.zeros(1 << 16, dtype=bool)
            marked[list(chosen)] = True
            want = sorted((i, model[i].version) for i in model if bucket(i) in chosen)
            assert sorted(s.keys_in_buckets(marked)) == want
        assert s.buckets_present() == {bucket(i) for i in model}
        counts: dict[str, int] = {}
        for t in live.values():
            if 2 <= t.created_at_ms < 8:
                for h in t.hashtags:
                    counts[h] = counts.get(h, 0) + 1
        assert s.hashtag_counts(2, 8) == counts


StoreMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_store_matches_the_model = StoreMachine.TestCase


def test_compaction_frees_the_removed_rows_and_garbage_text() -> None:
    s = TweetStore()
    for i in range(1, 20_001):
        s.put(Tweet(id=i, created_at_ms=i, user="u", text=f"tweet number {i} " * 4, version=i), i % 16)
    for i in range(1, 20_001, 2):
        s.delete(DeleteTweet(i, 30_000 + i, 1), i % 16)
    text = sum(len(f"tweet number {i} " * 4) for i in range(1, 20_001, 2))
    assert s.garbage_bytes() == text
    assert len(s.remove(range(1, 20_001, 2), tombstones_only=True)) == 10_000
    assert s.needs_compaction() and s.gone_count() == 10_000
    before = s.memory_bytes()
    freed = s.compact()
    # the removed rows' columns (55 B a row) and every deleted text are gone
    assert freed == before - s.memory_bytes() and freed >= 10_000 * 55 + text, (freed, text)
    assert s.rows_count() == 10_000 and len(s) == 10_000
    assert all((t := s.get(i)) is not None and t.text == f"tweet number {i} " * 4 for i in range(2, 20_001, 2))
    assert all(s.get(i) is None and s.tomb(i) is None for i in range(1, 20_001, 2))
    assert not s.needs_compaction()


def test_never_edited_is_true_only_for_the_held_version_of_an_unedited_live_tweet() -> None:
    st_ = TweetStore()
    t = Tweet(id=5, created_at_ms=5, user="u", text="red", version=3)
    st_.put(t, bucket(5))
    assert st_.never_edited(5, 3) and not st_.never_edited(5, 2) and not st_.never_edited(9, 3)
    st_.put(Tweet(id=5, created_at_ms=5, user="u", text="red", likes=2, version=4), bucket(5))  # a like: no edit
    assert st_.never_edited(5, 4)
    st_.put(Tweet(id=5, created_at_ms=5, user="u", text="blue", edited_at_ms=9, version=5), bucket(5))
    assert not st_.never_edited(5, 5)
    st_.delete(DeleteTweet(6, 2, 1_000), bucket(6))
    assert not st_.never_edited(6, 2)
