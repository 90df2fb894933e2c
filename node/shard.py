"""The data one node holds, as a pure state machine: the tweets of the partitions it replicates (with delete
tombstones and the indexing outbox), and the postings of the term partitions it replicates.

`apply(record)` is the only way state changes; the same records go to the WAL, to snapshots and to replicas.
Rules (the one place they live):
- Tweets: a record carries the tweet's version; the highest version wins, a tombstone included. So replaying
  records in any order, or twice, gives the same state, and a deleted tweet never comes back.
- Outbox: a PutTweet/DeleteTweet carries the index work it implies (terms to add, terms to remove). The tweet
  partition keeps it in `outbox` until an OutboxDone for that version (or a newer one) arrives; pending work of
  successive versions merges, so no term of an older version is forgotten, and no term the new version has is
  ever removed (a record may carry no work at all: a repair or a catch-up; the new version's terms then come from
  the tweet itself). A record of the version already held that carries work merges its work into the entry (a
  replica handing its leftover work to the master): work of one version only ever adds that version's terms and
  removes others, so a union is always safe. Records may come in any order (hints, read repairs, stragglers): a
  late record of an older version still adds its terms that the tweet no longer has to the pending removals, and a
  version's work that comes after its copy without work moves the entry on to that version. Only an entry whose
  work is done may differ with the order (a done before its record is not remembered; a replay queues it again).
- Promises: a Promise(partition, epoch) is this node's durable vow never again to accept a master's writes for
  that partition from an older epoch (node/replication/mastership.py); the highest promise wins.
- Digests: every stored tweet id (tombstones included) sits in a bucket of its ring token; each bucket keeps an
  XOR of hash(id, version) so that two replicas compare a partition in a few dozen numbers (anti-entropy).
- Streamed postings (a node taking over term ranges in a topology change) carry no versions: they are added
  as they come, and their terms are marked `unsure` for good, so that searches check those candidates against
  the tweet (a source may still hold a posting whose removal it missed).
- Local indexing (PutTweet.local / DeleteTweet.local, when every term partition is on the tweet's replicas): the
  shard indexes the tweet itself, from the difference between the version it held and the new one, so its index
  is a function of its own tweets and nothing else can leave a posting behind.
- Postings: PostingOps carry the tweet's version, and each posting (term, id) is a last-writer-wins register: an
  op applies only if it is newer than every op seen for that posting, so PostingOps in any order, or twice, give
  the state of their version order. The versions kept: a remove leaves a posting tombstone (term, id) -> version;
  an add of an edited tweet leaves (term, id) -> version in `posting_adds`, so that an older removal arriving late
  (a hint, a straggling send) does not take away a term a newer version added back. An add of a never-edited
  version (PostingOps.edited False) keeps nothing: no removal older than it exists (removals come from edits and
  deletes, which are newer), and that is nearly every add. A stale posting costs time, never correctness
  (search results are checked against the tweet); a missing one would lose a match.
- Collection (node/replication/collection.py has the rules): `collect` drops tombstones a round found on every
  replica past their grace (store rows removed, digest buckets updated; their postings went with the delete);
  while `tombstone_floor_ms` is set, a DeleteTweet deleted at or before it is not stored for an id not held here
  (it has nothing to hide: rule 3 there). Posting versions (tombstones and adds) live in two generations, the
  older one dropped at each `rotate_posting_tombstones` (rule 5). Neither is logged: a replay of the WAL brings
  back what a snapshot had not yet forgotten, to be collected again.
- Cleanup: `drop_tweets_outside` / `drop_terms` / `drop_posting_meta_outside` forget the tweets, postings and
  posting tombstones of the ranges this node no longer replicates (the same file says when).
The tweets themselves live in a column store (node/store/tweets.py); a snapshot is a set of named buffers
(node/storage/parts.py) that load back in bulk. Never touches files, sockets or clocks.
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections.abc import Iterable, Sequence

import msgspec
import numpy as np

from node.index.index import InvertedIndex
from node.index.terms import tweet_terms_of, tweet_terms_words
from node.model import Tweet
from node.query.ast import Term
from node.records import (
    EPOCH_SHIFT,
    SEQ_MASK,
    DeleteTweet,
    OutboxDone,
    OutboxEntry,
    PostingOps,
    Promise,
    PutTweet,
    Record,
    StreamedPostings,
    decode_record,
    encode_record,
    make_version,
)
from node.ring.ring import term_token, tweet_token
from node.storage.parts import encode_parts, read_parts
from node.store.tweets import TweetStore

__all__ = [
    "EPOCH_SHIFT",
    "SEQ_MASK",
    "DeleteTweet",
    "OutboxDone",
    "OutboxEntry",
    "PostingOps",
    "Promise",
    "PutTweet",
    "Record",
    "Shard",
    "StreamedPostings",
    "decode_record",
    "encode_record",
    "make_version",
]

# Digest buckets: the top bits of a tweet's ring token. 2**14 buckets: a partition of a 5-node, 64-vnode ring
# spans ~50 of them, so a digest is small and a differing bucket holds few keys.
BUCKET_BITS = 14
BUCKET_SHIFT = 64 - BUCKET_BITS
BUCKETS = 1 << BUCKET_BITS
HASH_MASK = (1 << 64) - 1


def key_hash(tweet_id: int, version: int) -> int:
    """hash() of a tuple of ints is deterministic across processes (only str/bytes hashing is salted)."""
    return hash((tweet_id, version)) & HASH_MASK


def bucket_of(tweet_id: int) -> int:
    return tweet_token(tweet_id) >> BUCKET_SHIFT


def _terms_of(t: Tweet | None) -> set[str]:
    """The index terms of a tweet (none for a tombstone)."""
    return set() if t is None else tweet_terms_words(t.text, t.user, t.lang)[0]


def in_range(token: int, start: int, end: int) -> bool:
    """Whether `token` lies in the partition (start, end]; start >= end wraps around the ring."""
    if start < end:
        return start < token <= end
    return token > start or token <= end


def range_buckets(start: int, end: int) -> list[tuple[int, bool]]:
    """The buckets overlapping (start, end], each with whether it lies only partly inside."""
    first, last = start >> BUCKET_SHIFT, end >> BUCKET_SHIFT
    nb = BUCKETS
    if start < end:
        return [(b, b in (first, last)) for b in range(first, last + 1)]
    # wraps: first..top, then 0..last (a near-whole-ring range may touch `first` twice: partial)
    out = [(b, b in (first, last)) for b in range(first, nb)]
    out += [(b, b in (first, last)) for b in range(0, last + 1) if b != first]
    return out


def _bucket_masks(ranges: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Digest buckets per (start, end] range: (wholly inside some range, cut by some range), as boolean masks;
    a bucket can be both (callers decide which wins)."""
    whole = np.zeros(BUCKETS, dtype=bool)
    cut = np.zeros(BUCKETS, dtype=bool)
    for start, end in ranges:
        for b, partial in range_buckets(start, end):
            if partial:
                cut[b] = True
            else:
                whole[b] = True
    return whole, cut


class _TokenSet:
    """Ring tokens in a set of (start, end] ranges, by bisection over their non-wrapping spans."""

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        spans: list[tuple[int, int]] = []  # inclusive [lo, hi], not wrapping
        for a, b in ranges:
            if a < b:
                spans.append((a + 1, b))
            else:
                spans += [(a + 1, HASH_MASK), (0, b)]
        spans.sort()
        self._los = [lo for lo, _ in spans]
        self._his = [hi for _, hi in spans]

    def __contains__(self, tok: int) -> bool:
        k = bisect.bisect_right(self._los, tok) - 1
        return k >= 0 and tok <= self._his[k]


class ShardMeta(msgspec.Struct, array_like=True):
    """What a snapshot holds besides the store's and the index's buffers."""

    max_version: int
    outbox: list[OutboxEntry]
    posting_tombstones: list[tuple[str, int, int]]  # (term, tweet id, version)
    promised: list[tuple[int, int]]  # (partition token, epoch)
    unsure: list[str]  # terms with streamed postings
    posting_adds: list[tuple[str, int, int]] = []  # (term, tweet id, version); absent in older snapshots


_meta_enc = msgspec.msgpack.Encoder()
_meta_dec = msgspec.msgpack.Decoder(ShardMeta)


class Shard:
    def __init__(self) -> None:
        self.store = TweetStore()
        self.tweets = self.store.tweets  # id -> Tweet, read-only, built on demand
        self.tombstones = self.store.tombstones  # id -> DeleteTweet, read-only
        self.outbox: dict[int, OutboxEntry] = {}
        self.index = InvertedIndex()
        self.posting_tombstones: dict[tuple[str, int], int] = {}
        self.max_version = 0  # the highest version applied: a restarted master continues above it
        self.promised: dict[int, int] = {}  # partition token -> the highest epoch promised
        self._bucket_hash = array("Q", bytes(8 * BUCKETS))  # digest bucket -> XOR of key_hash(id, version)
        self._bucket_count = array("I", bytes(4 * BUCKETS))  # digest bucket -> ids stored (live or tombstoned)
        self.unsure: set[str] = set()  # terms whose postings were streamed in (see the module header)
        self.tombstone_floor_ms = 0  # an expired tombstone (at_ms <= this) of an id not held is not stored
        self._ptomb_old: dict[tuple[str, int], int] = {}  # the older generation of posting_tombstones
        self.posting_adds: dict[tuple[str, int], int] = {}  # (term, id) -> version of an edited tweet's add
        self._padd_old: dict[tuple[str, int], int] = {}  # its older generation

    def version_of(self, tweet_id: int) -> int:
        return self.store.version_of(tweet_id)

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

    def _rekey(self, tweet_id: int, bucket: int, old: int, new: int) -> None:
        h = self._bucket_hash[bucket] ^ key_hash(tweet_id, new)
        if old:
            h ^= key_hash(tweet_id, old)
        else:
            self._bucket_count[bucket] += 1
        self._bucket_hash[bucket] = h

    def _put(self, rec: PutTweet) -> bool:
        t = rec.tweet
        self.max_version = max(self.max_version, t.version)
        old = self.version_of(t.id)
        if old >= t.version:
            if old == t.version and (rec.add or rec.remove):
                self._merge_work(t.id, t.version, rec.add, rec.remove, t)
            elif rec.add or rec.remove:
                self._merge_older_work(t.id, rec.add, rec.remove)
            return False
        b = bucket_of(t.id)
        self._rekey(t.id, b, old, t.version)
        if rec.local:
            self._index_locally(t.id, self.store.get(t.id) if old else None, t, rec.words)
        self.store.put(t, b)
        self._queue(t.id, t.version, rec.add, rec.remove, t)
        return True

    def _index_locally(
        self, tweet_id: int, before: Tweet | None, after: Tweet | None, words: tuple[str, ...] | None = None
    ) -> None:
        """Bring the index from `before` (the copy held, None: none or a tombstone) to `after` (None: deleted).
        `words`: after.text's words as the master analysed them (PutTweet.words), None: analyse it here."""
        ix = self.index
        if before is not None and after is not None and (before.text, before.user, before.lang) == (
            after.text, after.user, after.lang
        ):
            return  # likes/retweets only: the same terms
        new_terms: set[str]
        new_words: Sequence[str]
        if after is None:
            new_terms, new_words = set(), ()
        elif words is not None:
            new_terms, new_words = tweet_terms_of(words, after.hashtags, after.mentions, after.user, after.lang), words
        else:
            new_terms, new_words = tweet_terms_words(after.text, after.user, after.lang)
        if before is not None:
            old_terms, old_words = tweet_terms_words(before.text, before.user, before.lang)
            ix.remove(tweet_id, old_terms - new_terms, old_words)  # an edit: its pairs go with the old words
        if after is not None:
            ix.add(tweet_id, new_terms, new_words)

    def _delete(self, d: DeleteTweet) -> bool:
        self.max_version = max(self.max_version, d.version)
        old = self.version_of(d.id)
        if old >= d.version:
            if old == d.version and d.remove and d.id in self.tombstones:
                self._merge_work(d.id, d.version, (), d.remove, None)
            elif old > d.version and d.remove:
                self._merge_older_work(d.id, (), d.remove)
            return False
        if not old and d.at_ms <= self.tombstone_floor_ms:
            return False  # expired, and nothing here for it to hide: collected elsewhere, not stored again
        b = bucket_of(d.id)
        self._rekey(d.id, b, old, d.version)
        if d.local and old:
            before = self.store.get(d.id)
            if before is not None:
                self._index_locally(d.id, before, None)
        self.store.delete(d, b)
        self._queue(d.id, d.version, (), d.remove, None)
        return True

    def _queue(self, tweet_id: int, version: int, add: tuple[str, ...], remove: tuple[str, ...], has: Tweet | None) -> None:
        """Record the index work of a new version; `has`: the tweet at that version (None: a tombstone)."""
        old = self.outbox.get(tweet_id)
        if old is not None:
            if old.version >= version:
                return
            # The older version's pending work merges in: its terms that the new version does not have must go
            # (a partial drive may have added them). A record can carry no work at all (a repair, a catch-up):
            # that says nothing of its terms, so they are taken from the tweet itself; never remove those.
            gone = (set(old.add) | set(old.remove) | set(remove)) - set(add) - _terms_of(has)
            remove = tuple(sorted(gone))
        if add or remove:
            self.outbox[tweet_id] = OutboxEntry(tweet_id, version, add, remove)

    def _merge_work(
        self, tweet_id: int, version: int, add: tuple[str, ...], remove: tuple[str, ...], has: Tweet | None
    ) -> None:
        e = self.outbox.get(tweet_id)
        removing = set(remove) | (set(e.remove) if e is not None and e.version == version else set())
        keep = (set(add) | _terms_of(has)) if removing else set()  # a version's own terms are never removed
        if e is None:
            self.outbox[tweet_id] = OutboxEntry(tweet_id, version, add, tuple(sorted(set(remove) - keep)))
        elif e.version == version:
            gone = removing - set(e.add) - keep
            self.outbox[tweet_id] = OutboxEntry(tweet_id, version, tuple(sorted({*e.add, *add})), tuple(sorted(gone)))
        elif e.version < version:  # a copy without work came first (a read repair): the work moves on, as in order
            gone = (set(e.add) | set(e.remove) | set(remove)) - set(add) - _terms_of(has)
            self.outbox[tweet_id] = OutboxEntry(tweet_id, version, add, tuple(sorted(gone)))

    def _merge_older_work(self, tweet_id: int, add: tuple[str, ...], remove: tuple[str, ...]) -> None:
        """An older version's record arrived after a newer one (a hint, a straggling send): its terms that the
        tweet no longer has join the pending removals, as they would have had the records come in order (no term
        of an older version is forgotten; a removal the held version's work already made is made again, harmlessly)."""
        e = self.outbox.get(tweet_id)
        if e is None:  # the newer version's work is done, or has not come yet: removals are safe either way
            e = OutboxEntry(tweet_id, self.version_of(tweet_id), (), ())
        keep = set(e.add) | _terms_of(self.store.get(tweet_id))
        gone = (set(add) | set(remove)) - keep - set(e.remove)
        if gone:
            self.outbox[tweet_id] = OutboxEntry(tweet_id, e.version, e.add, tuple(sorted({*e.remove, *gone})))

    def _outbox_done(self, d: OutboxDone) -> bool:
        e = self.outbox.get(d.tweet_id)
        if e is None or e.version > d.version:
            return False
        del self.outbox[d.tweet_id]
        return True

    def _postings(self, p: PostingOps) -> bool:
        """Each posting (term, id) is a last-writer-wins register over the versions of the ops that name it: an op
        older than the newest one seen for the posting changes nothing (the module header, Postings)."""
        self.max_version = max(self.max_version, p.version)
        tid, v = p.tweet_id, p.version
        tables = self._posting_tables()
        gone = [t for t in p.remove if self._posting_version(tables, (t, tid)) < v]
        fresh = [t for t in p.add if self._posting_version(tables, (t, tid)) < v]
        for t in gone:
            self._set_posting_version(tables, (t, tid), self.posting_tombstones, v)
        for t in fresh:
            self._set_posting_version(tables, (t, tid), self.posting_adds if p.edited else None, v)
        self.index.remove(tid, gone)
        self.index.add(tid, fresh)
        return True

    def _posting_tables(self) -> tuple[dict[tuple[str, int], int], ...]:
        return self.posting_tombstones, self._ptomb_old, self.posting_adds, self._padd_old

    @staticmethod
    def _set_posting_version(
        tables: tuple[dict[tuple[str, int], int], ...], k: tuple[str, int], kept: dict[tuple[str, int], int] | None, v: int
    ) -> None:
        """Posting k's newest op is now version v: kept in `kept` (None: an unedited add, nothing kept)."""
        for table in tables:
            table.pop(k, None)
        if kept is not None:
            kept[k] = v

    @staticmethod
    def _posting_version(tables: tuple[dict[tuple[str, int], int], ...], k: tuple[str, int]) -> int:
        """The version of the newest op seen for posting k (0: none kept; an unedited add keeps none)."""
        return max(t.get(k, 0) for t in tables) if any(tables) else 0

    def _streamed(self, p: StreamedPostings) -> bool:
        self.unsure.add(p.term)
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
        inside = _TokenSet(ranges)
        picked: list[tuple[int, str]] = []
        for term in self.index.terms():
            tok = term_token(term)
            if tok in inside:
                picked.append((tok, term))
        picked.sort()
        return [t for _, t in picked]

    # ------------------------------------------------------------ collection and cleanup

    def expired_tombstones(self, deleted_by_ms: int) -> list[int]:
        """The ids of the tombstones deleted at or before `deleted_by_ms` whose index work is done (no outbox
        entry): the candidates of a collection round (node/replication/collection.py, rule 1)."""
        ids = self.store.deleted_before(deleted_by_ms)
        if self.outbox:
            ids = [i for i in ids if i not in self.outbox]
        return ids

    def _forget(self, removed: list[tuple[int, int, int]]) -> None:
        """Take removed store rows (id, version, bucket) out of the digests."""
        hashes, counts = self._bucket_hash, self._bucket_count
        for i, v, b in removed:
            hashes[b] ^= key_hash(i, v)
            counts[b] -= 1

    def collect(self, ids: Iterable[int]) -> int:
        """Drop these tombstones (a round found them on every replica: node/replication/collection.py); ids
        that are not tombstones here (any more) are left alone. -> tombstones dropped."""
        removed = self.store.remove(ids, tombstones_only=True)
        self._forget(removed)
        return len(removed)

    def compact(self, force: bool = False) -> int:
        """Compact the store when removals and edits left enough dead rows and text (any, with force). -> bytes
        freed."""
        st = self.store
        if st.needs_compaction() or (force and (st.gone_count() or st.garbage_bytes())):
            return st.compact()
        return 0

    def rotate_posting_tombstones(self) -> int:
        """Drop the older generation of posting versions (tombstones and adds); the current one becomes the older
        (rule 5 of node/replication/collection.py). -> entries dropped."""
        dropped = len(self._ptomb_old) + len(self._padd_old)
        self._ptomb_old, self.posting_tombstones = self.posting_tombstones, {}
        self._padd_old, self.posting_adds = self.posting_adds, {}
        return dropped

    def drop_tweets_outside(self, ranges: list[tuple[int, int]]) -> tuple[int, int, int]:
        """Cleanup: forget every tweet and tombstone whose ring token lies in none of these (start, end] ranges,
        and their outbox entries. -> (tweets, tombstones, outbox entries) dropped."""
        whole, cut = _bucket_masks(ranges)
        cut &= ~whole
        out = self.store.ids_in_buckets(~(whole | cut)).tolist()
        inside = _TokenSet(ranges)
        out += [i for i in self.store.ids_in_buckets(cut).tolist() if tweet_token(i) not in inside]
        live = sum(1 for i in out if i in self.tweets)
        removed = self.store.remove(out)
        self._forget(removed)
        gone = [i for i in self.outbox if tweet_token(i) not in inside]
        for i in gone:
            del self.outbox[i]
        return live, len(removed) - live, len(gone)

    def terms_outside(self, ranges: list[tuple[int, int]], among: Iterable[str] | None = None) -> list[str]:
        """The terms indexed here (or those of `among`) whose ring token lies in none of these ranges."""
        inside = _TokenSet(ranges)
        return [t for t in (self.index.terms() if among is None else among) if term_token(t) not in inside]

    def drop_terms(self, terms: list[str]) -> int:
        """Cleanup: forget these terms' postings. -> postings dropped."""
        self.unsure.difference_update(terms)
        return self.index.drop_terms(terms)

    def drop_posting_meta_outside(self, ranges: list[tuple[int, int]]) -> int:
        """Cleanup: forget the posting tombstones and `unsure` marks of terms outside these ranges. -> posting
        tombstones dropped."""
        inside = _TokenSet(ranges)
        toks: dict[str, bool] = {}

        def mine(term: str) -> bool:
            hit = toks.get(term)
            if hit is None:
                hit = toks[term] = term_token(term) in inside
            return hit

        dropped = 0
        for table in self._posting_tables():
            gone = [k for k in table if not mine(k[0])]
            for k in gone:
                del table[k]
            dropped += len(gone)
        self.unsure = {t for t in self.unsure if mine(t)}
        return dropped

    # ------------------------------------------------------------ anti-entropy

    def _keys_in(self, buckets: list[int], partial: bool, start: int, end: int) -> list[tuple[int, int]]:
        """(id, version) of every id of partition (start, end] in these buckets (`partial`: some lie only partly
        inside): one scan of the store's columns for all of them (a scan per bucket held a node ~2 ms each at
        1.77 M tweets)."""
        chosen = [b for b in buckets if self._bucket_count[b]]
        if not chosen:
            return []
        marked = np.zeros(BUCKETS, dtype=bool)
        marked[chosen] = True
        out = self.store.keys_in_buckets(marked)
        if partial:  # a whole bucket lies inside the range: only the ids of a cut one can fall outside
            out = [(i, v) for i, v in out if in_range(tweet_token(i), start, end)]
        return out

    def digest(self, start: int, end: int) -> dict[int, int]:
        """bucket -> XOR of key_hash over the ids of partition (start, end] in it (empty buckets left out)."""
        out: dict[int, int] = {}
        cut: list[int] = []
        for b, partial in range_buckets(start, end):
            if partial:
                cut.append(b)
            elif h := self._bucket_hash[b]:
                out[b] = h
        hashes: dict[int, int] = {}
        for i, v in self._keys_in(cut, True, start, end):
            b = bucket_of(i)
            hashes[b] = hashes.get(b, 0) ^ key_hash(i, v)
        out.update((b, h) for b, h in hashes.items() if h)
        return out

    def keys(self, start: int, end: int, buckets: set[int]) -> list[tuple[int, int]]:
        """(id, version) of every id of partition (start, end] in these buckets."""
        asked = [(b, partial) for b, partial in range_buckets(start, end) if b in buckets]
        return self._keys_in([b for b, _p in asked], any(p for _b, p in asked), start, end)

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

    # ------------------------------------------------------------ trends

    def hashtag_counts(self, lo_ms: int, hi_ms: int, ranges: list[tuple[int, int]] | None = None) -> dict[str, int]:
        """hashtag -> live tweets created in [lo_ms, hi_ms) holding it now, of the tweet partitions (start, end]
        in `ranges` (every tweet here when None). Buckets wholly inside a range are counted in bulk; the tweets of
        a bucket a range cuts are placed by their own token."""
        if ranges is None:
            return self.store.hashtag_counts(lo_ms, hi_ms)
        whole, cut = _bucket_masks(ranges)
        whole &= ~cut
        out = self.store.hashtag_counts(lo_ms, hi_ms, whole)
        if cut.any():
            for i, tag in self.store.hashtag_events(lo_ms, hi_ms, cut):
                tok = tweet_token(i)
                if any(in_range(tok, a, b) for a, b in ranges):
                    out[tag] = out.get(tag, 0) + 1
        return out

    # ------------------------------------------------------------ snapshots

    def dump_parts(self) -> list[tuple[str, bytes | memoryview]]:
        """The whole state as named buffers (node/storage/parts.py); views of live arrays: write them out before
        the shard changes again (a snapshot child process does, on its copy-on-write image)."""
        meta = ShardMeta(
            self.max_version,
            list(self.outbox.values()),
            [(t, i, v) for (t, i), v in itertools.chain(self._ptomb_old.items(), self.posting_tombstones.items())],
            list(self.promised.items()),
            sorted(self.unsure),
            [(t, i, v) for (t, i), v in itertools.chain(self._padd_old.items(), self.posting_adds.items())],
        )
        parts: list[tuple[str, bytes | memoryview]] = [
            ("shard", _meta_enc.encode(meta)),
            ("digest.hash", memoryview(self._bucket_hash).cast("B")),
            ("digest.count", memoryview(self._bucket_count).cast("B")),
        ]
        parts += self.store.dump_parts()
        parts += self.index.dump_parts()
        return parts

    @classmethod
    def load_parts(cls, parts: dict[str, memoryview]) -> Shard:
        sh = cls()
        meta = _meta_dec.decode(parts["shard"])
        sh.max_version = meta.max_version
        sh.outbox = {e.tweet_id: e for e in meta.outbox}
        sh.posting_tombstones = {(t, i): v for t, i, v in meta.posting_tombstones}
        sh.posting_adds = {(t, i): v for t, i, v in meta.posting_adds}
        sh.promised = dict(meta.promised)
        sh.unsure = set(meta.unsure)
        sh._bucket_hash = array("Q")
        sh._bucket_hash.frombytes(parts["digest.hash"])
        sh._bucket_count = array("I")
        sh._bucket_count.frombytes(parts["digest.count"])
        assert len(sh._bucket_hash) == len(sh._bucket_count) == BUCKETS
        sh.store = TweetStore.load_parts(parts)
        sh.tweets, sh.tombstones = sh.store.tweets, sh.store.tombstones
        sh.index = InvertedIndex.load_parts(parts)
        return sh

    def dump(self) -> bytes:
        return encode_parts(self.dump_parts())

    @classmethod
    def load(cls, blob: bytes | memoryview) -> Shard:
        return cls.load_parts(read_parts(blob))
