"""The records every change of a node's data is made of: the same bytes go to the WAL, to replicas and to hinted
handoff, and node/shard.py applies them. Tag values are protocol: append, never renumber; a new field goes last
with a default, so older records still decode.
"""

from __future__ import annotations

import msgspec

from node.model import Tweet

# A version is (epoch << EPOCH_SHIFT) | sequence: it only grows; never a bare wall clock.
EPOCH_SHIFT = 40
SEQ_MASK = (1 << EPOCH_SHIFT) - 1


def make_version(epoch: int, seq: int) -> int:
    assert 0 <= seq <= SEQ_MASK
    return (epoch << EPOCH_SHIFT) | seq


class PutTweet(msgspec.Struct, frozen=True, tag=1, array_like=True):
    """Create or replace (edit) a tweet; `tweet.version` is the record's version. `add`/`remove`: the index work
    sent on to the term partitions (the outbox). `local`: instead, every replica indexes the tweet itself, from
    the difference with its own previous copy (every term partition is on the tweet's replicas: N equals the
    number of nodes), so the record is the whole write: one WAL record per tweet per node, no posting rounds."""

    tweet: Tweet
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    local: bool = False
    # With `local`: the analyser's words of tweet.text as the master found them when it made this version, so that
    # each replica indexes from them and the tweet's hashtags and mentions instead of analysing the text again
    # (node/index/terms.py `tweet_terms_of`). None: the replica analyses the text (repairs, hints and streams
    # carry none).
    words: tuple[str, ...] | None = None


class DeleteTweet(msgspec.Struct, frozen=True, tag=2, array_like=True):
    """A tombstone: the tweet is gone for good at this version and above. `remove`: its terms, to unindex."""

    id: int
    version: int
    at_ms: int
    remove: tuple[str, ...] = ()
    local: bool = False  # as PutTweet.local: each replica unindexes its own copy's terms


class PostingOps(msgspec.Struct, frozen=True, tag=3, array_like=True):
    """Index work for one tweet version on one node: only terms of partitions that node replicates. `edited`
    False says no version of the tweet up to this one changed its text (it was never edited, nothing is
    removed): no removal older than this op exists, so its adds need no version kept (node/shard.py)."""

    tweet_id: int
    version: int
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    edited: bool = True  # the safe default (records written before the field: their adds keep a version)


class OutboxDone(msgspec.Struct, frozen=True, tag=4, array_like=True):
    """The index work of this tweet up to `version` reached W copies of every term partition."""

    tweet_id: int
    version: int


class Promise(msgspec.Struct, frozen=True, tag=5, array_like=True):
    """Never accept a master's writes for partition `pid` (its ring token) from an epoch below `epoch`."""

    pid: int
    epoch: int


class StreamedPostings(msgspec.Struct, frozen=True, tag=6, array_like=True):
    """Postings of one term copied from a replica that held its partition before a topology change."""

    term: str
    ids: tuple[int, ...]


Record = PutTweet | DeleteTweet | PostingOps | OutboxDone | Promise | StreamedPostings

class OutboxEntry(msgspec.Struct, array_like=True):
    tweet_id: int
    version: int
    add: tuple[str, ...]  # terms the tweet has at `version`
    remove: tuple[str, ...]  # terms of earlier versions that it no longer has


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Record)


def encode_record(rec: Record) -> bytes:
    return _encoder.encode(rec)


def decode_record(data: bytes) -> Record:
    return _decoder.decode(data)


