"""Wire messages between nodes for replication, postings and tweet reads (msgspec msgpack over node.transport).

Tag values are protocol: append, never renumber. Every list here is bounded by its sender (batch limits in
node/cluster/limits.py) and checked by the receiver.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from node.model import Tweet, TweetIn, TweetPatch
from node.query.ast import And
from node.ring.topology import Topology
from node.search.digest import PeerDigest
from node.shard import DeleteTweet, Record


class ApplyReq(msgspec.Struct, frozen=True, tag=1, array_like=True):
    """Store these records durably (WAL) and apply them; the answer means they are on disk per the fsync policy.
    `fence`: (partition token, epoch) of the master sending new writes; refused (not_owner) when this replica has
    promised a newer epoch for one of them. Repairs and catch-up send no fence: they carry existing versions."""

    records: list[Record]
    fence: list[tuple[int, int]] = []


class ApplyRaw(msgspec.Struct, frozen=True, tag=1, array_like=True):
    """ApplyReq with its records already encoded (node/records.py encode_record): the same bytes on the wire. A
    master encodes each record once, for every replica and its own WAL; a replica decodes the records one by one
    and logs the bytes it received. Not part of `Message` (its tag is ApplyReq's): decode it with
    decode_apply_raw."""

    records: list[msgspec.Raw]
    fence: list[tuple[int, int]] = []
    rpc_name: ClassVar[str] = "ApplyReq"


class ApplyResp(msgspec.Struct, frozen=True, tag=2, array_like=True):
    applied: int


class WindowItem(msgspec.Struct, frozen=True, array_like=True):
    term: str
    max_id: int | None  # inclusive
    since_id: int | None  # exclusive
    limit: int


class WindowResult(msgspec.Struct, frozen=True, array_like=True):
    ids: list[int]  # newest first, at most `limit`
    exhausted: bool  # no more ids below the last one (within since_id)
    df: int  # the term's whole posting count here
    unsure: bool = False  # a term's postings here were streamed in a topology change: check candidates


class WindowReq(msgspec.Struct, frozen=True, tag=3, array_like=True):
    items: list[WindowItem]


class WindowResp(msgspec.Struct, frozen=True, tag=4, array_like=True):
    items: list[WindowResult]


class ProbeItem(msgspec.Struct, frozen=True, array_like=True):
    term: str
    ids: list[int]


class ProbeReq(msgspec.Struct, frozen=True, tag=5, array_like=True):
    items: list[ProbeItem]


class ProbeResp(msgspec.Struct, frozen=True, tag=6, array_like=True):
    present: list[list[int]]  # per item: the ids that have the term
    unsure: bool = False  # some term's postings here were streamed in: check the candidates


class GetReq(msgspec.Struct, frozen=True, tag=7, array_like=True):
    ids: list[int]


class GetResp(msgspec.Struct, frozen=True, tag=8, array_like=True):
    tweets: list[Tweet]
    tombstones: list[DeleteTweet]


class CreateOp(msgspec.Struct, frozen=True, tag=9, array_like=True):
    tweet: TweetIn
    id: int  # chosen by the coordinator (the client's, or a Snowflake)
    created_at_ms: int
    generated: bool  # the id was generated: on a collision the master answers `id_taken`


class PatchOp(msgspec.Struct, frozen=True, tag=10, array_like=True):
    id: int
    patch: TweetPatch


class DeleteOp(msgspec.Struct, frozen=True, tag=11, array_like=True):
    id: int


WriteOp = CreateOp | PatchOp | DeleteOp


class WriteReq(msgspec.Struct, frozen=True, tag=12, array_like=True):
    ops: list[WriteOp]


class WriteResult(msgspec.Struct, frozen=True, array_like=True):
    status: str  # "created" | "exists" | "ok" | "error"
    tweet: Tweet | None = None
    code: str | None = None  # error code (node.errors), or "id_taken"
    message: str | None = None
    field: str | None = None


class WriteResp(msgspec.Struct, frozen=True, tag=13, array_like=True):
    results: list[WriteResult]


class TrendsReq(msgspec.Struct, frozen=True, tag=14, array_like=True):
    """Hashtag counts of the window that ends at `now_ms` (the `as_of`) and of the window before it, over the
    tweet partitions (start, end] in `ranges` (every tweet the node holds when None)."""

    window_ms: int
    now_ms: int
    ranges: list[tuple[int, int]] | None = None


class TrendsResp(msgspec.Struct, frozen=True, tag=15, array_like=True):
    counts: list[tuple[str, int, int]]  # (hashtag, count in the window, count in the window before)


class PingReq(msgspec.Struct, frozen=True, tag=16, array_like=True):
    pass


class PingResp(msgspec.Struct, frozen=True, tag=17, array_like=True):
    node: str
    tweets: int
    topology: int = 0  # the version of this node's topology: a node behind fetches the newer one


class QueryReq(msgspec.Struct, frozen=True, tag=18, array_like=True):
    """Evaluate a whole query on this node's index (it holds every term's partition): a superset for phrases."""

    root: And
    max_id: int | None
    since_id: int | None
    limit: int


class QueryResp(msgspec.Struct, frozen=True, tag=19, array_like=True):
    result: WindowResult


class PromiseReq(msgspec.Struct, frozen=True, tag=20, array_like=True):
    """A candidate master asks: promise to refuse writes for partition `pid` from epochs below `epoch`."""

    pid: int
    epoch: int


class PromiseResp(msgspec.Struct, frozen=True, tag=21, array_like=True):
    ok: bool
    epoch: int  # ok: the epoch promised; refused: the highest epoch this node knows (promised or in its data)


class DigestReq(msgspec.Struct, frozen=True, tag=22, array_like=True):
    """The bucket digests of the tweet partition (start, end] (node.shard.Shard.digest)."""

    start: int
    end: int


class DigestResp(msgspec.Struct, frozen=True, tag=23, array_like=True):
    buckets: list[tuple[int, int]]  # (bucket, XOR of key hashes); empty buckets left out


class KeysReq(msgspec.Struct, frozen=True, tag=24, array_like=True):
    start: int
    end: int
    buckets: list[int]


class KeysResp(msgspec.Struct, frozen=True, tag=25, array_like=True):
    keys: list[tuple[int, int]]  # (tweet id, version), tombstones included


class FetchReq(msgspec.Struct, frozen=True, tag=26, array_like=True):
    ids: list[int]


class FetchResp(msgspec.Struct, frozen=True, tag=27, array_like=True):
    records: list[Record]  # the tweet or tombstone with the index work pending for it


class TopologyReq(msgspec.Struct, frozen=True, tag=28, array_like=True):
    pass


class TopologyResp(msgspec.Struct, frozen=True, tag=29, array_like=True):
    topology: Topology | None  # None: this node has none yet (a fresh cluster starting)


class InstallReq(msgspec.Struct, frozen=True, tag=30, array_like=True):
    """Adopt `topology` if this node's is still `base` (one change at a time); the answer comes once the writes
    this node started under an older topology have finished (a barrier for the streaming that follows)."""

    topology: Topology
    base: int


class InstallResp(msgspec.Struct, frozen=True, tag=31, array_like=True):
    ok: bool
    version: int  # this node's topology version after the request


class StreamReq(msgspec.Struct, frozen=True, tag=32, array_like=True):
    """Pull every range this node gains in the move of topology `version` from enough old replicas."""

    version: int


class StreamResp(msgspec.Struct, frozen=True, tag=33, array_like=True):
    tweets: int  # tweet keys pulled
    postings: int  # posting ids pulled


class PostingsReq(msgspec.Struct, frozen=True, tag=34, array_like=True):
    """The postings of the terms whose tokens lie in `ranges`, in (token, term) order, after the term `after` (a
    cursor, not a position: it still holds when the source restarted and lists its terms anew)."""

    ranges: list[tuple[int, int]]
    after: str | None
    max_ids: int


class PostingsResp(msgspec.Struct, frozen=True, tag=35, array_like=True):
    items: list[tuple[str, list[int]]]
    next: str | None  # the cursor of the next page (the last term consumed); None when done


class DigestQueryReq(msgspec.Struct, frozen=True, tag=36, array_like=True):
    """A local-first search's digest read (node/search/digest.py): evaluate the query on this node's index within
    the bounds, and answer where the result differs from the coordinator's own window `mine` (id, version)."""

    root: And
    max_id: int | None
    since_id: int | None
    limit: int
    mine: list[tuple[int, int]]


class DigestQueryResp(msgspec.Struct, frozen=True, tag=37, array_like=True):
    digest: PeerDigest


Message = (
    ApplyReq | ApplyResp | WindowReq | WindowResp | ProbeReq | ProbeResp | GetReq | GetResp | WriteReq | WriteResp
    | TrendsReq | TrendsResp | PingReq | PingResp | QueryReq | QueryResp | PromiseReq | PromiseResp | DigestReq
    | DigestResp | KeysReq | KeysResp | FetchReq | FetchResp | TopologyReq | TopologyResp | InstallReq | InstallResp
    | StreamReq | StreamResp | PostingsReq | PostingsResp | DigestQueryReq | DigestQueryResp
)

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Message)


def encode(m: Message) -> bytes:
    return _enc.encode(m)


def decode(b: bytes) -> Message:
    return _dec.decode(b)


_apply_raw_dec = msgspec.msgpack.Decoder(ApplyRaw)


def decode_apply_raw(b: bytes) -> ApplyRaw:
    return _apply_raw_dec.decode(b)
