"""The data a node holds, as a pure state machine: tweets by id, tombstones, and the inverted index over them.

`apply(record)` is the only way state changes; the same records go to the WAL, to snapshots and (later) to
replicas. Every record carries a version and `apply` keeps the highest version per tweet id (a delete is a
tombstone with its version), so replaying records in any order, or twice, gives the same state.
Never touches files, sockets or clocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec

from node.index.index import InvertedIndex
from node.model import Tweet
from node.query.match import index_terms

# A version is (epoch << EPOCH_SHIFT) | sequence: it only grows; never a bare wall clock.
EPOCH_SHIFT = 40


def make_version(epoch: int, seq: int) -> int:
    assert 0 <= seq < (1 << EPOCH_SHIFT)
    return (epoch << EPOCH_SHIFT) | seq


class PutTweet(msgspec.Struct, frozen=True, tag=1, array_like=True):
    """Create or replace (edit) a tweet. `tweet.version` is the record's version."""

    tweet: Tweet


class DeleteTweet(msgspec.Struct, frozen=True, tag=2, array_like=True):
    """A tombstone: the tweet is gone for good at this version and above."""

    id: int
    version: int
    at_ms: int


Record = PutTweet | DeleteTweet

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Record)


def encode_record(rec: Record) -> bytes:
    return _encoder.encode(rec)


def decode_record(data: bytes) -> Record:
    return _decoder.decode(data)


class ShardState(msgspec.Struct, array_like=True):
    """What a snapshot holds."""

    tweets: list[Tweet]
    tombstones: list[DeleteTweet]
    max_version: int


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(ShardState)


class Shard:
    def __init__(self) -> None:
        self.tweets: dict[int, Tweet] = {}
        self.tombstones: dict[int, DeleteTweet] = {}
        self.index = InvertedIndex()
        self.max_version = 0  # the highest version applied: a restarted node continues above it

    # ------------------------------------------------------------ transitions

    def apply(self, rec: Record) -> bool:
        """Apply one record; False when it is older than what we hold (a replay or a stale copy)."""
        if isinstance(rec, PutTweet):
            return self._put(rec.tweet)
        return self._delete(rec)

    def apply_all(self, recs: Iterable[Record]) -> None:
        for r in recs:
            self.apply(r)

    def _put(self, t: Tweet) -> bool:
        self.max_version = max(self.max_version, t.version)
        tomb = self.tombstones.get(t.id)
        if tomb is not None and tomb.version >= t.version:
            return False
        old = self.tweets.get(t.id)
        if old is not None:
            if old.version >= t.version:
                return False
            if old.text != t.text or old.user != t.user or old.lang != t.lang:
                old_terms, _ = index_terms(old)
                new_terms, _ = index_terms(t)
                self.index.remove(t.id, old_terms - new_terms)
                self.index.add(t.id, new_terms - old_terms)
        else:
            self.index.add(t.id, index_terms(t)[0])
        self.tweets[t.id] = t
        return True

    def _delete(self, d: DeleteTweet) -> bool:
        self.max_version = max(self.max_version, d.version)
        tomb = self.tombstones.get(d.id)
        if tomb is not None and tomb.version >= d.version:
            return False
        old = self.tweets.get(d.id)
        if old is not None:
            if old.version > d.version:
                return False
            self.index.remove(d.id, index_terms(old)[0])
            del self.tweets[d.id]
        self.tombstones[d.id] = d
        return True

    # ------------------------------------------------------------ snapshots

    def dump(self) -> bytes:
        return _state_encoder.encode(
            ShardState(list(self.tweets.values()), list(self.tombstones.values()), self.max_version)
        )

    @classmethod
    def load(cls, blob: bytes) -> Shard:
        st = _state_decoder.decode(blob)
        sh = cls()
        sh.max_version = st.max_version
        for d in st.tombstones:
            sh.tombstones[d.id] = d
        # Build postings in id order: appends only, the index's fast path.
        st.tweets.sort(key=lambda t: t.id)
        add = sh.index.add
        for t in st.tweets:
            sh.tweets[t.id] = t
            add(t.id, index_terms(t)[0])
        return sh

    def iter_ids(self) -> Iterator[int]:
        return iter(self.tweets)
