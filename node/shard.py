"""The data one node holds, as a pure state machine: the tweets of the partitions it replicates (with delete
tombstones and the indexing outbox), and the postings of the term partitions it replicates.

`apply(record)` is the only way state changes; the same records go to the WAL, to snapshots and to replicas.
Rules (the one place they live):
- Tweets: a record carries the tweet's version; the highest version wins, a tombstone included. So replaying
  records in any order, or twice, gives the same state, and a deleted tweet never comes back.
- Outbox: a PutTweet/DeleteTweet carries the index work it implies (terms to add, terms to remove). The tweet
  partition keeps it in `outbox` until an OutboxDone for that version (or a newer one) arrives; pending work of
  successive versions merges, so no term of an older version is forgotten. A record of the version already held
  that carries work merges its work into the entry (a replica handing its leftover work to the master): work of
  one version only ever adds that version's terms and removes others, so a union is always safe.
- Promises: a Promise(partition, epoch) is this node's durable vow never again to accept a master's writes for
  that partition from an older epoch (node/replication/mastership.py); the highest promise wins.
- Digests: every stored tweet id (tombstones included) sits in a bucket of its ring token; each bucket keeps an
  XOR of hash(id, version) so that two replicas compare a partition in a few dozen numbers (anti-entropy).
- Streamed postings (a node taking over term ranges in a topology change) carry no versions: they are added
  as they come, and their terms are marked `unsure` for good, so that searches check those candidates against
  the tweet (a source may still hold a posting whose removal it missed).
- Postings: PostingOps carry the tweet's version. A remove leaves a posting tombstone (term, id) -> version and an
  add older than it is ignored; postings are candidates only (every search result is checked against the tweet
  itself), so a stale posting costs time, never correctness.
Never touches files, sockets or clocks.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import msgspec

from node.index.index import InvertedIndex
from node.model import Tweet
from node.query.ast import Term
from node.ring.ring import term_token, tweet_token

# A version is (epoch << EPOCH_SHIFT) | sequence: it only grows; never a bare wall clock.
EPOCH_SHIFT = 40
SEQ_MASK = (1 << EPOCH_SHIFT) - 1


def make_version(epoch: int, seq: int) -> int:
    assert 0 <= seq <= SEQ_MASK
    return (epoch << EPOCH_SHIFT) | seq


class PutTweet(msgspec.Struct, frozen=True, tag=1, array_like=True):
    """Create or replace (edit) a tweet; `tweet.version` is the record's version. `add`/`remove`: the index work."""

    tweet: Tweet
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


class DeleteTweet(msgspec.Struct, frozen=True, tag=2, array_like=True):
    """A tombstone: the tweet is gone for good at this version and above. `remove`: its terms, to unindex."""

    id: int
    version: int
    at_ms: int
    remove: tuple[str, ...] = ()


class PostingOps(msgspec.Struct, frozen=True, tag=3, array_like=True):
    """Index work for one tweet version on one node: only terms of partitions that node replicates."""

    tweet_id: int
    version: int
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


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

# Digest buckets: the top bits of a tweet's ring token. 2**14 buckets: a partition of a 5-node, 64-vnode ring
# spans ~50 of them, so a digest is small and a differing bucket holds few keys.
BUCKET_BITS = 14
BUCKET_SHIFT = 64 - BUCKET_BITS
HASH_MASK = (1 << 64) - 1


def key_hash(tweet_id: int, version: int) -> int:
    """hash() of a tuple of ints is deterministic across processes (only str/bytes hashing is salted)."""
    return hash((tweet_id, version)) & HASH_MASK


def in_range(token: int, start: int, end: int) -> bool:
    """Whether `token` lies in the partition (start, end]; start >= end wraps around the ring."""
    if start < end:
        return start < token <= end
    return token > start or token <= end


def range_buckets(start: int, end: int) -> list[tuple[int, bool]]:
    """The buckets overlapping (start, end], each with whether it lies only partly inside."""
    first, last = start >> BUCKET_SHIFT, end >> BUCKET_SHIFT
    nb = 1 << BUCKET_BITS
    if start < end:
        return [(b, b in (first, last)) for b in range(first, last + 1)]
    # wraps: first..top, then 0..last (a near-whole-ring range may touch `first` twice: partial)
    out = [(b, b in (first, last)) for b in range(first, nb)]
    out += [(b, b in (first, last)) for b in range(0, last + 1) if b != first]
    return out


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


class ShardState(msgspec.Struct, array_like=True):
    """What a snapshot holds."""

    tweets: list[Tweet]
    tombstones: list[DeleteTweet]
    outbox: list[OutboxEntry]
    postings: list[tuple[str, list[int]]]  # term -> tweet ids
    posting_tombstones: list[tuple[str, int, int]]  # (term, tweet id, version)
    max_version: int
    promised: list[tuple[int, int]] = []  # (partition token, epoch)
    unsure: list[str] = []  # terms with streamed postings


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(ShardState)


class Shard:
    def __init__(self) -> None:
        self.tweets: dict[int, Tweet] = {}
        self.tombstones: dict[int, DeleteTweet] = {}
        self.outbox: dict[int, OutboxEntry] = {}
        self.index = InvertedIndex()
        self._terms: dict[str, None] = {}  # every term ever indexed here (for snapshots)
        self.posting_tombstones: dict[tuple[str, int], int] = {}
        self.max_version = 0  # the highest version applied: a restarted master continues above it
        self.promised: dict[int, int] = {}  # partition token -> the highest epoch promised
        self._bucket_ids: dict[int, set[int]] = {}  # digest bucket -> tweet ids (live or tombstoned)
        self._bucket_hash: dict[int, int] = {}  # digest bucket -> XOR of key_hash(id, version)
        self.unsure: set[str] = set()  # terms whose postings were streamed in (see the module header)

    def version_of(self, tweet_id: int) -> int:
        t = self.tweets.get(tweet_id)
        if t is not None:
            return t.version
        d = self.tombstones.get(tweet_id)
        return d.version if d is not None else 0

    # ------------------------------------------------------------ transitions

    def apply(self, rec: Record) -> bool:
        """Apply one record; False when it changes nothing (older than what we hold, or a replay)."""
        if isinstance(rec, PutTweet):
            return self._put(rec)
        if isinstance(rec, DeleteTweet):
            return self._delete(rec)
        if isinstance(rec, PostingOps):
            return self._postings(rec)
        if isinstance(rec, Promise):
            if self.promised.get(rec.pid, 0) >= rec.epoch:
                return False
            self.promised[rec.pid] = rec.epoch
            return True
        if isinstance(rec, StreamedPostings):
            return self._streamed(rec)
        return self._outbox_done(rec)

    def _rekey(self, tweet_id: int, old: int, new: int) -> None:
        b = tweet_token(tweet_id) >> BUCKET_SHIFT
        h = self._bucket_hash.get(b, 0) ^ key_hash(tweet_id, new)
        if old:
            h ^= key_hash(tweet_id, old)
        else:
            self._bucket_ids.setdefault(b, set()).add(tweet_id)
        self._bucket_hash[b] = h

    def _put(self, rec: PutTweet) -> bool:
        t = rec.tweet
        self.max_version = max(self.max_version, t.version)
        old = self.version_of(t.id)
        if old >= t.version:
            if old == t.version and (rec.add or rec.remove):
                self._merge_work(t.id, t.version, rec.add, rec.remove)
            return False
        self._rekey(t.id, old, t.version)
        self.tweets[t.id] = t
        self._queue(t.id, t.version, rec.add, rec.remove)
        return True

    def _delete(self, d: DeleteTweet) -> bool:
        self.max_version = max(self.max_version, d.version)
        old = self.version_of(d.id)
        if old >= d.version:
            if old == d.version and d.remove and d.id in self.tombstones:
                self._merge_work(d.id, d.version, (), d.remove)
            return False
        self._rekey(d.id, old, d.version)
        self.tweets.pop(d.id, None)
        self.tombstones[d.id] = d
        self._queue(d.id, d.version, (), d.remove)
        return True

    def _queue(self, tweet_id: int, version: int, add: tuple[str, ...], remove: tuple[str, ...]) -> None:
        old = self.outbox.get(tweet_id)
        if old is not None:
            if old.version >= version:
                return
            gone = (set(old.add) | set(old.remove) | set(remove)) - set(add)
            remove = tuple(sorted(gone))
        if add or remove:
            self.outbox[tweet_id] = OutboxEntry(tweet_id, version, add, remove)

    def _merge_work(self, tweet_id: int, version: int, add: tuple[str, ...], remove: tuple[str, ...]) -> None:
        e = self.outbox.get(tweet_id)
        if e is None:
            self.outbox[tweet_id] = OutboxEntry(tweet_id, version, add, remove)
        elif e.version == version:
            gone = (set(e.remove) | set(remove)) - set(e.add) - set(add)
            self.outbox[tweet_id] = OutboxEntry(tweet_id, version, tuple(sorted({*e.add, *add})), tuple(sorted(gone)))

    def _outbox_done(self, d: OutboxDone) -> bool:
        e = self.outbox.get(d.tweet_id)
        if e is None or e.version > d.version:
            return False
        del self.outbox[d.tweet_id]
        return True

    def _postings(self, p: PostingOps) -> bool:
        self.max_version = max(self.max_version, p.version)
        tid, v = p.tweet_id, p.version
        ptomb = self.posting_tombstones
        if p.remove:
            gone = []
            for term in p.remove:
                if ptomb.get((term, tid), 0) < v:
                    ptomb[(term, tid)] = v
                    gone.append(term)
            self.index.remove(tid, gone)
        if p.add:
            fresh = [t for t in p.add if ptomb.get((t, tid), 0) < v] if ptomb else list(p.add)
            for t in fresh:
                ptomb.pop((t, tid), None)
                if t not in self._terms:
                    self._terms[t] = None
            self.index.add(tid, fresh)
        return True

    def _streamed(self, p: StreamedPostings) -> bool:
        self.unsure.add(p.term)
        if p.term not in self._terms:
            self._terms[p.term] = None
        add = self.index.add
        for i in sorted(p.ids):  # ascending: the index's append fast path
            add(i, (p.term,))
        return True

    def postings_in(self, terms: Iterable[str], max_ids: int) -> tuple[list[tuple[str, list[int]]], int]:
        """The postings of `terms` (those this node has), up to about `max_ids` ids in all (a term's list is never
        cut). -> (items, how many of `terms` were consumed)."""
        out: list[tuple[str, list[int]]] = []
        total = 0
        used = 0
        for term in terms:
            if total >= max_ids:
                break
            used += 1
            ids = list(self.index.iter_newest(Term(term)))
            if ids:
                out.append((term, ids))
                total += len(ids)
        return out, used

    def terms_in(self, ranges: list[tuple[int, int]]) -> list[str]:
        """Every term indexed here whose ring token lies in one of these disjoint (start, end] ranges, in token
        order."""
        spans: list[tuple[int, int]] = []  # inclusive [lo, hi], not wrapping
        for a, b in ranges:
            if a < b:
                spans.append((a + 1, b))
            else:
                spans += [(a + 1, HASH_MASK), (0, b)]
        spans.sort()
        los = [lo for lo, _ in spans]
        his = [hi for _, hi in spans]
        picked: list[tuple[int, str]] = []
        for term in self._terms:
            tok = term_token(term)
            k = bisect.bisect_right(los, tok) - 1
            if k >= 0 and tok <= his[k]:
                picked.append((tok, term))
        picked.sort()
        return [t for _, t in picked]

    # ------------------------------------------------------------ anti-entropy

    def _bucket_keys(self, b: int, partial: bool, start: int, end: int) -> list[tuple[int, int]]:
        ids = self._bucket_ids.get(b, set())
        return [(i, self.version_of(i)) for i in ids if not partial or in_range(tweet_token(i), start, end)]

    def digest(self, start: int, end: int) -> dict[int, int]:
        """bucket -> XOR of key_hash over the ids of partition (start, end] in it (empty buckets left out)."""
        out: dict[int, int] = {}
        for b, partial in range_buckets(start, end):
            if b not in self._bucket_ids:
                continue
            if partial:
                h = 0
                for i, v in self._bucket_keys(b, True, start, end):
                    h ^= key_hash(i, v)
            else:
                h = self._bucket_hash[b]
            if h:
                out[b] = h
        return out

    def keys(self, start: int, end: int, buckets: set[int]) -> list[tuple[int, int]]:
        """(id, version) of every id of partition (start, end] in these buckets."""
        out: list[tuple[int, int]] = []
        for b, partial in range_buckets(start, end):
            if b in buckets:
                out.extend(self._bucket_keys(b, partial, start, end))
        return out

    def records_for(self, ids: list[int]) -> list[Record]:
        """The full records of these ids as this node holds them: the tweet or tombstone, with the index work
        still pending for it here (so that a new master can finish it)."""
        out: list[Record] = []
        for i in ids:
            e = self.outbox.get(i)
            t = self.tweets.get(i)
            if t is not None:
                if e is not None and e.version == t.version:
                    out.append(PutTweet(t, e.add, e.remove))
                else:
                    out.append(PutTweet(t))
                continue
            d = self.tombstones.get(i)
            if d is not None:
                rem = e.remove if e is not None and e.version == d.version else ()
                out.append(DeleteTweet(d.id, d.version, d.at_ms, rem))
        return out

    # ------------------------------------------------------------ snapshots

    def dump(self) -> bytes:
        postings: list[tuple[str, list[int]]] = []
        for term in self._terms:
            ids = list(self.index.iter_newest(Term(term)))
            if ids:
                ids.reverse()
                postings.append((term, ids))
        return _state_encoder.encode(
            ShardState(
                list(self.tweets.values()),
                list(self.tombstones.values()),
                list(self.outbox.values()),
                postings,
                [(t, i, v) for (t, i), v in self.posting_tombstones.items()],
                self.max_version,
                list(self.promised.items()),
                sorted(self.unsure),
            )
        )

    @classmethod
    def load(cls, blob: bytes) -> Shard:
        st = _state_decoder.decode(blob)
        sh = cls()
        sh.max_version = st.max_version
        sh.tweets = {t.id: t for t in st.tweets}
        sh.tombstones = {d.id: d for d in st.tombstones}
        sh.outbox = {e.tweet_id: e for e in st.outbox}
        sh.posting_tombstones = {(t, i): v for t, i, v in st.posting_tombstones}
        sh.promised = dict(st.promised)
        sh.unsure = set(st.unsure)
        for i, t in sh.tweets.items():
            sh._rekey(i, 0, t.version)
        for i, d in sh.tombstones.items():
            sh._rekey(i, 0, d.version)
        by_id: dict[int, list[str]] = {}
        for term, ids in st.postings:
            sh._terms[term] = None
            for i in ids:
                by_id.setdefault(i, []).append(term)
        add = sh.index.add
        for i in sorted(by_id):  # ascending ids: the index's append fast path
            add(i, by_id[i])
        return sh
