"""The tweets one node holds, as columns: a row per tweet id ever stored here (live or deleted), typed arrays for
the numbers, one byte heap for the texts (UTF-8), interned users and languages. A Tweet object is built only when
a caller asks for one (a response, a check); millions of rows cost a few dozen arrays, not millions of objects,
and a snapshot is a handful of buffers written and read in bulk.

Pure: no I/O, no clock. Rules:
- The caller orders versions (node/shard.py): `put` and `delete` here overwrite whatever the row holds.
- A row is never reused: an edit rewrites the row in place (its new text is appended to the heap, the old bytes
  become garbage, counted in `garbage_bytes`), a delete turns it into a tombstone (flag, version, at_ms) and drops
  its text.
- `remove` takes ids out for good (a collected tombstone, a range this node no longer replicates: node/shard.py
  says when): their rows leave the id index at once and are flagged gone (bucket GONE_BUCKET), so no lookup, scan,
  digest or trend sees them again; the id is unknown from then on, as if never stored.
- Rows move only in `compact`, which rewrites every column, the hashtag events and the heap without the gone rows,
  the dead events and the garbage text, in bulk with numpy: O(rows + heap) in one step, done when
  `needs_compaction` says the dead part is worth it (at least COMPACT_DEAD_MIN of the rows or the heap), so its cost
  is amortised over the removals and edits that made it. Nothing outside this file knows row numbers.
- id -> row is a sorted pair of arrays (ids, rows) plus a dict of the rows added since the last merge, merged
  when it reaches MERGE_AT entries: one dict probe and one bisect per lookup, ~12 B per tweet.
- Hashtag events (one per hashtag of each stored version) feed trends: an event counts only while its row still
  holds that version and is live, so edits and deletes need no bookkeeping.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import msgspec
import numpy as np

from node.model import GeoPoint, Tweet
from node.records import DeleteTweet

MERGE_AT = 65_536  # rows added since the last merge of the id index (a dict) before they are merged
_U32 = (1 << 32) - 1
_DELETED, _GEO, _REPLY, _T2 = 1, 2, 4, 8  # flags; _T2: the row has an edited_at (live) or at_ms (tombstone)
_GONE = 16  # a removed row (with _DELETED): out of the id index, dropped by the next compaction
GONE_BUCKET = 0xFFFF  # the digest bucket of a removed row: never a real one (node/shard.py uses 2**14)
COMPACT_DEAD_MIN = 0.125  # compact once gone rows or garbage text reach this share of the rows or the heap ...
COMPACT_ROWS_MIN = 4096  # ... and at least this many gone rows ...
COMPACT_BYTES_MIN = 1 << 20  # ... or this many garbage bytes
_SEP_TAG, _SEP_PART = "\x1f", "\x1e"  # never in a hashtag or mention (they are \w runs)

_NP = {"Q": np.uint64, "q": np.int64, "I": np.uint32, "H": np.uint16, "B": np.uint8}  # array typecode -> dtype

# name -> typecode of every column, in snapshot order
COLUMNS = {
    "id": "Q",
    "created": "q",
    "version": "Q",
    "user": "I",
    "lang": "I",  # 0 = none, else 1 + index in the language table
    "likes": "I",  # larger counts live in `_big`
    "retweets": "I",
    "off": "Q",  # heap offset of the row's text and tags
    "tlen": "H",  # text bytes
    "xlen": "H",  # tag bytes after the text
    "flags": "B",
    "bucket": "H",  # digest bucket of the tweet's ring token (node/shard.py)
    "ev_ms": "q",  # hashtag events: created_at of the tweet ...
    "ev_tag": "I",  # ... the hashtag number ...
    "ev_row": "I",  # ... the row ...
    "ev_ver": "Q",  # ... and the version the event belongs to
}


class _Meta(msgspec.Struct, array_like=True):
    """The parts of a snapshot that are not arrays."""

    users: list[str]
    langs: list[str]
    tags: list[str]
    geo: list[tuple[int, float, float]]  # (row, lat, lon)
    reply: list[tuple[int, int]]  # (row, reply_to)
    t2: list[tuple[int, int]]  # (row, edited_at_ms or a tombstone's at_ms)
    big: list[tuple[int, int, int]]  # (row, likes, retweets) of rows whose counts exceed 32 bits
    live: int
    garbage: int


_meta_enc = msgspec.msgpack.Encoder()
_meta_dec = msgspec.msgpack.Decoder(_Meta)


class TweetStore:
    def __init__(self) -> None:
        self._c: dict[str, array[Any]] = {name: array(code) for name, code in COLUMNS.items()}
        self._bind()
        self._heap = bytearray()
        self._users: list[str] = []
        self._user_no: dict[str, int] = {}
        self._langs: list[str] = []
        self._lang_no: dict[str, int] = {}
        self._tags: list[str] = []
        self._tag_no: dict[str, int] = {}
        self._geo: dict[int, GeoPoint] = {}
        self._reply: dict[int, int] = {}
        self._t2: dict[int, int] = {}
        self._big: dict[int, tuple[int, int]] = {}
        self._sids = array("Q")  # sorted ids ...
        self._srows = array("I")  # ... and their rows
        self._recent: dict[int, int] = {}  # id -> row, added since the last merge
        self._live = 0
        self._garbage = 0  # heap bytes no row points at any more
        self._gone = 0  # removed rows still in the columns (until compact)
        self.tweets = _Tweets(self)
        self.tombstones = _Tombstones(self)

    def _bind(self) -> None:
        c = self._c
        self._id, self._created, self._version = c["id"], c["created"], c["version"]
        self._user, self._lang, self._likes, self._retweets = c["user"], c["lang"], c["likes"], c["retweets"]
        self._off, self._tlen, self._xlen, self._flags, self._bucket = c["off"], c["tlen"], c["xlen"], c["flags"], c["bucket"]

    # -- lookups -------------------------------------------------------------------------------------------

    def row(self, tweet_id: int) -> int:
        """The row of `tweet_id`, or -1."""
        r = self._recent.get(tweet_id)
        if r is not None:
            return r
        s = self._sids
        k = bisect_left(s, tweet_id)
        if k < len(s) and s[k] == tweet_id:
            return self._srows[k]
        return -1

    def version_of(self, tweet_id: int) -> int:
        r = self.row(tweet_id)
        return self._version[r] if r >= 0 else 0

    def versions(self, ids: list[int]) -> list[int]:
        """version_of for many ids at once (0 for an unknown id): one vectorised search of the sorted index."""
        if len(ids) < 16:
            return [self.version_of(i) for i in ids]
        out = [0] * len(ids)
        recent = self._recent
        rest: list[int] = []
        for k, i in enumerate(ids):
            r = recent.get(i)
            if r is not None:
                out[k] = self._version[r]
            else:
                rest.append(k)
        if rest and len(self._sids):
            want = np.fromiter((ids[k] for k in rest), dtype=np.uint64, count=len(rest))
            sids = np.frombuffer(self._sids, dtype=np.uint64)
            pos = np.minimum(np.searchsorted(sids, want), len(sids) - 1)
            hit = sids[pos] == want
            rows = np.frombuffer(self._srows, dtype=np.uint32)[pos]
            vers = np.frombuffer(self._version, dtype=np.uint64)[rows]
            got = np.where(hit, vers, 0).tolist()
            del sids, rows, vers
            for k, v in zip(rest, got, strict=True):
                out[k] = v
        return out

    def is_live(self, tweet_id: int) -> bool:
        r = self.row(tweet_id)
        return r >= 0 and not self._flags[r] & _DELETED

    def never_edited(self, tweet_id: int, version: int) -> bool:
        """Whether the tweet is held live at exactly `version` and was never edited (no edited_at)."""
        r = self.row(tweet_id)
        return r >= 0 and self._version[r] == version and not self._flags[r] & (_DELETED | _T2)

    def is_deleted(self, tweet_id: int) -> bool:
        r = self.row(tweet_id)
        return r >= 0 and bool(self._flags[r] & _DELETED)

    def get(self, tweet_id: int) -> Tweet | None:
        r = self.row(tweet_id)
        if r < 0 or self._flags[r] & _DELETED:
            return None
        return self._tweet(r)

    def passing(self, ids: Iterable[int], check: Callable[[_Row], bool]) -> dict[int, int]:
        """id -> version of those of `ids` held live here whose row passes `check` (node/index/matcher.py
        phrase_checker: it reads a row's fields as it needs them, a phrase only the text), building no Tweet."""
        out: dict[int, int] = {}
        flags, version = self._flags, self._version
        for i in ids:
            r = self.row(i)
            if r >= 0 and not flags[r] & _DELETED and check(_Row(self, r)):
                out[i] = version[r]
        return out

    def tomb(self, tweet_id: int) -> DeleteTweet | None:
        r = self.row(tweet_id)
        if r < 0 or not self._flags[r] & _DELETED:
            return None
        return DeleteTweet(self._id[r], self._version[r], self._t2.get(r, 0))

    def rows_count(self) -> int:
        return len(self._id)

    def __len__(self) -> int:
        return self._live

    def deleted_count(self) -> int:
        return len(self._id) - self._live - self._gone

    def gone_count(self) -> int:
        return self._gone

    def garbage_bytes(self) -> int:
        return self._garbage

    def _tweet(self, r: int) -> Tweet:
        off, tl, xl = self._off[r], self._tlen[r], self._xlen[r]
        heap = self._heap
        text = heap[off : off + tl].decode()
        tags: tuple[str, ...] = ()
        mentions: tuple[str, ...] = ()
        if xl:
            t, _, mn = heap[off + tl : off + tl + xl].decode().partition(_SEP_PART)
            tags = tuple(t.split(_SEP_TAG)) if t else ()
            mentions = tuple(mn.split(_SEP_TAG)) if mn else ()
        flags = self._flags[r]
        lang = self._lang[r]
        big = self._big.get(r) if self._big else None
        return Tweet(
            id=self._id[r],
            created_at_ms=self._created[r],
            user=self._users[self._user[r]],
            text=text,
            hashtags=tags,
            mentions=mentions,
            reply_to=self._reply.get(r) if flags & _REPLY else None,
            lang=self._langs[lang - 1] if lang else None,
            geo=self._geo.get(r) if flags & _GEO else None,
            likes=big[0] if big is not None else self._likes[r],
            retweets=big[1] if big is not None else self._retweets[r],
            edited_at_ms=self._t2.get(r) if flags & _T2 else None,
            version=self._version[r],
        )

    def live_ids(self) -> Iterator[int]:
        ids, flags = self._id, self._flags
        return (ids[r] for r in range(len(ids)) if not flags[r] & _DELETED)

    def deleted_ids(self) -> Iterator[int]:
        ids, flags = self._id, self._flags
        return (ids[r] for r in range(len(ids)) if flags[r] & (_DELETED | _GONE) == _DELETED)

    def deleted_before(self, at_ms: int) -> list[int]:
        """The ids of the tombstones deleted at or before `at_ms` (their at_ms), in row order."""
        t2 = self._t2
        if not t2:
            return []
        rows = np.fromiter(t2.keys(), dtype=np.int64, count=len(t2))
        at = np.fromiter(t2.values(), dtype=np.int64, count=len(t2))
        flags = np.frombuffer(self._flags, dtype=np.uint8, count=len(self._flags))
        sel = rows[((flags[rows] & (_DELETED | _GONE)) == _DELETED) & (at <= at_ms)]
        del flags
        sel.sort()
        ids = np.frombuffer(self._id, dtype=np.uint64, count=len(self._id))
        out: list[int] = ids[sel].tolist()
        del ids
        return out

    def _rows_in_buckets(self, marked: np.ndarray) -> np.ndarray:
        """The rows (live or deleted, not removed) whose digest bucket is marked in `marked` (a bool array over
        every bucket): one vectorised scan of the bucket column."""
        b = np.frombuffer(self._bucket, dtype=np.uint16, count=len(self._id))
        ok = b != GONE_BUCKET
        ok[ok] = marked[b[ok]]
        del b
        return np.flatnonzero(ok)

    def ids_in_buckets(self, marked: np.ndarray) -> np.ndarray:
        """The ids (live or deleted) whose digest bucket is marked in `marked` (a bool array over every bucket)."""
        if not len(self._id):
            return np.empty(0, np.uint64)
        ids = np.frombuffer(self._id, dtype=np.uint64, count=len(self._id))
        out = ids[self._rows_in_buckets(marked)]
        del ids
        return out

    def keys_in_buckets(self, marked: np.ndarray) -> list[tuple[int, int]]:
        """(id, version) of every id (live or deleted) whose digest bucket is marked in `marked`: one scan of the
        columns, whatever the number of buckets."""
        n = len(self._id)
        if not n:
            return []
        rows = self._rows_in_buckets(marked)
        ids = np.frombuffer(self._id, dtype=np.uint64, count=n)
        vers = np.frombuffer(self._version, dtype=np.uint64, count=n)
        out = list(zip(ids[rows].tolist(), vers[rows].tolist(), strict=True))
        del ids, vers
        return out

    def buckets_present(self) -> set[int]:
        n = len(self._id)
        if not n:
            return set()
        b = np.frombuffer(self._bucket, dtype=np.uint16, count=n)
        out = set(np.unique(b).tolist())
        del b
        out.discard(GONE_BUCKET)
        return out

    # -- writing -------------------------------------------------------------------------------------------

    def _intern(self, table: list[str], index: dict[str, int], value: str) -> int:
        k = index.get(value)
        if k is None:
            k = index[value] = len(table)
            table.append(value)
        return k

    def put(self, t: Tweet, bucket: int) -> None:
        """Store (or overwrite) the tweet `t` at its version; `bucket`: its digest bucket."""
        text = t.text.encode()
        extra = ""
        if t.hashtags or t.mentions:
            extra = _SEP_TAG.join(t.hashtags) + _SEP_PART + _SEP_TAG.join(t.mentions)
        xb = extra.encode()
        r = self.row(t.id)
        heap = self._heap
        off = len(heap)
        heap += text
        heap += xb
        flags = 0
        lang = 0 if t.lang is None else 1 + self._intern(self._langs, self._lang_no, t.lang)
        user = self._intern(self._users, self._user_no, t.user)
        likes, rts = t.likes, t.retweets
        small = likes <= _U32 and rts <= _U32
        if r < 0:
            r = len(self._id)
            self._id.append(t.id)
            self._created.append(t.created_at_ms)
            self._version.append(t.version)
            self._user.append(user)
            self._lang.append(lang)
            self._likes.append(likes if small else 0)
            self._retweets.append(rts if small else 0)
            self._off.append(off)
            self._tlen.append(len(text))
            self._xlen.append(len(xb))
            self._flags.append(0)
            self._bucket.append(bucket)
            self._recent[t.id] = r
            if len(self._recent) >= MERGE_AT:
                self._merge_index()
            self._live += 1
        else:
            if self._flags[r] & _DELETED:
                self._live += 1
            else:
                self._garbage += self._tlen[r] + self._xlen[r]
            self._created[r] = t.created_at_ms
            self._version[r] = t.version
            self._user[r] = user
            self._lang[r] = lang
            self._likes[r] = likes if small else 0
            self._retweets[r] = rts if small else 0
            self._off[r] = off
            self._tlen[r] = len(text)
            self._xlen[r] = len(xb)
            self._geo.pop(r, None)
            self._reply.pop(r, None)
            self._t2.pop(r, None)
            self._big.pop(r, None)
        if not small:
            self._big[r] = (likes, rts)
        if t.geo is not None:
            flags |= _GEO
            self._geo[r] = t.geo
        if t.reply_to is not None:
            flags |= _REPLY
            self._reply[r] = t.reply_to
        if t.edited_at_ms is not None:
            flags |= _T2
            self._t2[r] = t.edited_at_ms
        self._flags[r] = flags
        if t.hashtags:
            for h in t.hashtags:
                self._c["ev_ms"].append(t.created_at_ms)
                self._c["ev_tag"].append(self._intern(self._tags, self._tag_no, h))
                self._c["ev_row"].append(r)
                self._c["ev_ver"].append(t.version)

    def delete(self, d: DeleteTweet, bucket: int) -> None:
        """Turn the row of d.id into a tombstone at d.version (a row is made when the id was never stored)."""
        r = self.row(d.id)
        if r < 0:
            r = len(self._id)
            for name, v in (("id", d.id), ("created", 0), ("user", 0), ("lang", 0), ("likes", 0),
                            ("retweets", 0), ("off", len(self._heap)), ("tlen", 0), ("xlen", 0)):
                self._c[name].append(v)
            self._version.append(d.version)
            self._flags.append(_DELETED | _T2)
            self._bucket.append(bucket)
            self._recent[d.id] = r
            if len(self._recent) >= MERGE_AT:
                self._merge_index()
        else:
            if not self._flags[r] & _DELETED:
                self._live -= 1
                self._garbage += self._tlen[r] + self._xlen[r]
            self._version[r] = d.version
            self._tlen[r] = self._xlen[r] = 0
            self._flags[r] = _DELETED | _T2
            self._geo.pop(r, None)
            self._reply.pop(r, None)
            self._big.pop(r, None)
        self._t2[r] = d.at_ms

    def _merge_index(self) -> None:
        """Fold the recent dict into the sorted (ids, rows) arrays: O(rows) in numpy, every MERGE_AT rows."""
        if not self._recent:
            return
        new_ids = np.fromiter(self._recent.keys(), dtype=np.uint64, count=len(self._recent))
        new_rows = np.fromiter(self._recent.values(), dtype=np.uint32, count=len(self._recent))
        order = np.argsort(new_ids, kind="stable")
        new_ids, new_rows = new_ids[order], new_rows[order]
        old_ids = np.frombuffer(self._sids, dtype=np.uint64) if len(self._sids) else np.empty(0, np.uint64)
        old_rows = np.frombuffer(self._srows, dtype=np.uint32) if len(self._srows) else np.empty(0, np.uint32)
        pos = np.searchsorted(old_ids, new_ids)
        ids = np.insert(old_ids, pos, new_ids)
        rows = np.insert(old_rows, pos, new_rows)
        del old_ids, old_rows
        self._sids = array("Q", ids.tobytes())
        self._srows = array("I", rows.tobytes())
        self._recent = {}

    # -- removing ------------------------------------------------------------------------------------------

    def remove(self, ids: Iterable[int], tombstones_only: bool = False) -> list[tuple[int, int, int]]:
        """Take these ids out for good (see the header); with tombstones_only, only those that are tombstones.
        Unknown ids are skipped. -> (id, version, digest bucket) of every row removed. O(rows) in numpy."""
        self._merge_index()
        want = np.unique(np.fromiter(ids, dtype=np.uint64))
        if not len(want) or not len(self._sids):
            return []
        n = len(self._id)
        sids = np.frombuffer(self._sids, dtype=np.uint64)
        srows = np.frombuffer(self._srows, dtype=np.uint32)
        pos = np.minimum(np.searchsorted(sids, want), len(sids) - 1)
        pos = pos[sids[pos] == want]
        rows = srows[pos].astype(np.int64)
        flags = np.frombuffer(self._flags, dtype=np.uint8, count=n)
        if tombstones_only:
            sel = (flags[rows] & _DELETED) != 0
            pos, rows = pos[sel], rows[sel]
        if not len(rows):
            del sids, srows, flags
            return []
        version = np.frombuffer(self._version, dtype=np.uint64, count=n)
        bucket = np.frombuffer(self._bucket, dtype=np.uint16, count=n)
        tlen = np.frombuffer(self._tlen, dtype=np.uint16, count=n)
        xlen = np.frombuffer(self._xlen, dtype=np.uint16, count=n)
        out = list(zip(sids[pos].tolist(), version[rows].tolist(), bucket[rows].tolist(), strict=True))
        live = (flags[rows] & _DELETED) == 0
        self._live -= int(np.count_nonzero(live))
        self._garbage += int(tlen[rows].sum(dtype=np.int64) + xlen[rows].sum(dtype=np.int64))
        keep = np.ones(len(sids), dtype=bool)
        keep[pos] = False
        new_sids, new_srows = sids[keep].tobytes(), srows[keep].tobytes()
        flags[rows] = _DELETED | _GONE
        bucket[rows] = GONE_BUCKET
        tlen[rows] = 0
        xlen[rows] = 0
        del sids, srows, flags, version, bucket, tlen, xlen
        self._sids, self._srows = array("Q", new_sids), array("I", new_srows)
        for r in rows.tolist():
            self._geo.pop(r, None)
            self._reply.pop(r, None)
            self._t2.pop(r, None)
            self._big.pop(r, None)
        self._gone += len(rows)
        return out

    def needs_compaction(self) -> bool:
        """Whether the gone rows or the garbage text are worth a rewrite (see the header)."""
        rows = self._gone >= max(COMPACT_ROWS_MIN, COMPACT_DEAD_MIN * len(self._id))
        text = self._garbage >= max(COMPACT_BYTES_MIN, COMPACT_DEAD_MIN * len(self._heap))
        return rows or text

    def compact(self) -> int:
        """Rewrite the columns, the events and the heap without the gone rows, the dead hashtag events and the
        garbage text (rows keep their order; every row number changes). -> memory_bytes freed. Needs about one
        more copy of the store while it runs."""
        before = self.memory_bytes()
        self._merge_index()
        n = len(self._id)
        if not n:
            self._heap, self._garbage = bytearray(), 0
            return before - self.memory_bytes()
        flags = np.frombuffer(self._flags, dtype=np.uint8, count=n)
        keep = (flags & _GONE) == 0
        kept = np.flatnonzero(keep)
        new_row = np.cumsum(keep, dtype=np.int64) - 1  # old row -> new row, where kept
        # The heap: the kept rows' bytes in their old heap order, copied run by run of adjacent ones.
        off = np.frombuffer(self._off, dtype=np.uint64, count=n)[kept].astype(np.int64)
        size = (np.frombuffer(self._tlen, dtype=np.uint16, count=n)[kept].astype(np.int64)
                + np.frombuffer(self._xlen, dtype=np.uint16, count=n)[kept])
        order = np.argsort(off, kind="stable")
        so, sz = off[order], size[order]
        new_off = np.empty_like(off)
        new_off[order] = np.cumsum(sz) - sz
        nz = sz > 0
        so, sz = so[nz], sz[nz]
        heap = bytearray()
        if len(so):
            brk = np.ones(len(so), dtype=bool)
            brk[1:] = so[1:] != so[:-1] + sz[:-1]
            starts = so[brk]
            lengths = np.add.reduceat(sz, np.flatnonzero(brk))
            with memoryview(self._heap) as mv:
                heap = bytearray().join(mv[a : a + k] for a, k in zip(starts.tolist(), lengths.tolist(), strict=True))
        # The hashtag events that can still count: of a kept, live row, at the version it holds.
        ev = self._c
        ne = len(ev["ev_row"])
        ev_keep = np.empty(0, dtype=np.int64)
        if ne:
            ev_row = np.frombuffer(ev["ev_row"], dtype=np.uint32, count=ne)
            ev_ver = np.frombuffer(ev["ev_ver"], dtype=np.uint64, count=ne)
            version = np.frombuffer(self._version, dtype=np.uint64, count=n)
            ev_keep = np.flatnonzero(((flags[ev_row] & _DELETED) == 0) & (version[ev_row] == ev_ver))
            del ev_row, ev_ver, version
        cols: dict[str, array[Any]] = {}
        for name, code in COLUMNS.items():
            src = np.frombuffer(self._c[name], dtype=_NP[code])
            if name.startswith("ev_"):
                picked = src[ev_keep]
                if name == "ev_row":
                    picked = new_row[picked].astype(np.uint32)
            elif name == "off":
                picked = new_off.astype(np.uint64)
            else:
                picked = src[kept]
            cols[name] = array(code, picked.tobytes())
            del src, picked
        srows = new_row[np.frombuffer(self._srows, dtype=np.uint32)].astype(np.uint32).tobytes()
        del flags
        nr = new_row.tolist()
        self._geo = {nr[r]: g for r, g in self._geo.items()}
        self._reply = {nr[r]: x for r, x in self._reply.items()}
        self._t2 = {nr[r]: x for r, x in self._t2.items()}
        self._big = {nr[r]: x for r, x in self._big.items()}
        self._c = cols
        self._bind()
        self._srows = array("I", srows)
        self._heap = heap
        self._garbage = 0
        self._gone = 0
        return before - self.memory_bytes()

    # -- trends --------------------------------------------------------------------------------------------

    def hashtag_counts(self, lo_ms: int, hi_ms: int, buckets: np.ndarray | None = None) -> dict[str, int]:
        """hashtag -> live tweets created in [lo_ms, hi_ms) that hold it now; only rows whose digest bucket is
        marked in `buckets` (a bool array of every bucket) when given."""
        tags = self._events(lo_ms, hi_ms, buckets)[1]
        if not len(tags):
            return {}
        counts = np.bincount(tags)
        nz = np.flatnonzero(counts)
        return {self._tags[k]: int(counts[k]) for k in nz.tolist()}

    def hashtag_events(self, lo_ms: int, hi_ms: int, buckets: np.ndarray) -> list[tuple[int, str]]:
        """(tweet id, hashtag) of the events hashtag_counts would count, for the rows of `buckets`."""
        rows, tags = self._events(lo_ms, hi_ms, buckets)
        ids = self._id
        names = self._tags
        return [(ids[r], names[t]) for r, t in zip(rows.tolist(), tags.tolist(), strict=True)]

    def _events(self, lo_ms: int, hi_ms: int, buckets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, tag numbers) of the live events in the window (and the buckets)."""
        ev = self._c
        n = len(ev["ev_ms"])
        if not n:
            return np.empty(0, np.uint32), np.empty(0, np.uint32)
        ms = np.frombuffer(ev["ev_ms"], dtype=np.int64, count=n)
        rows = np.frombuffer(ev["ev_row"], dtype=np.uint32, count=n)
        vers = np.frombuffer(ev["ev_ver"], dtype=np.uint64, count=n)
        tags = np.frombuffer(ev["ev_tag"], dtype=np.uint32, count=n)
        nrows = len(self._id)
        version = np.frombuffer(self._version, dtype=np.uint64, count=nrows)
        flags = np.frombuffer(self._flags, dtype=np.uint8, count=nrows)
        sel = (ms >= lo_ms) & (ms < hi_ms)
        idx = np.flatnonzero(sel)
        r = rows[idx]
        keep = (version[r] == vers[idx]) & ((flags[r] & _DELETED) == 0)
        if buckets is not None:
            bk = np.frombuffer(self._bucket, dtype=np.uint16, count=nrows)
            keep &= buckets[bk[r]]
            del bk
        kept = idx[keep]
        out = rows[kept].copy(), tags[kept].copy()
        del ms, rows, vers, tags, version, flags
        return out

    def max_id_with_low_bits(self, mask: int, value: int, below: int = 1 << 64) -> int:
        """The largest id (live or deleted) below `below` whose bits under `mask` equal `value`; 0 when none
        (Snowflake ids of one machine: recovery resumes the generator above them)."""
        n = len(self._id)
        if not n:
            return 0
        ids = np.frombuffer(self._id, dtype=np.uint64, count=n)
        keep = (ids & np.uint64(mask)) == np.uint64(value)
        if below < 1 << 64:
            keep &= ids < np.uint64(below)
        sel = ids[keep]
        out = int(sel.max()) if len(sel) else 0
        del ids
        return out

    # -- snapshots -----------------------------------------------------------------------------------------

    def dump_parts(self) -> list[tuple[str, memoryview | bytes]]:
        """The store as named buffers, for a snapshot (zero-copy views of the columns: write them before the
        store changes again)."""
        self._merge_index()
        meta = _Meta(
            users=self._users,
            langs=self._langs,
            tags=self._tags,
            geo=[(r, g.lat, g.lon) for r, g in self._geo.items()],
            reply=list(self._reply.items()),
            t2=list(self._t2.items()),
            big=[(r, a, b) for r, (a, b) in self._big.items()],
            live=self._live,
            garbage=self._garbage,
        )
        parts: list[tuple[str, memoryview | bytes]] = [("meta", _meta_enc.encode(meta))]
        parts += [(name, memoryview(col).cast("B")) for name, col in self._c.items()]
        parts += [("sids", memoryview(self._sids).cast("B")), ("srows", memoryview(self._srows).cast("B"))]
        parts.append(("heap", memoryview(self._heap)))
        return parts

    @classmethod
    def load_parts(cls, parts: Mapping[str, memoryview | bytes]) -> TweetStore:
        st = cls()
        for name, code in COLUMNS.items():
            col = array(code)
            col.frombytes(parts[name])
            st._c[name] = col
        st._bind()
        c = st._c
        lengths = {len(c[name]) for name in COLUMNS if not name.startswith("ev_")}
        assert len(lengths) <= 1, f"snapshot columns of different lengths: {lengths}"
        st._sids.frombytes(parts["sids"])
        st._srows.frombytes(parts["srows"])
        if len(st._flags):
            st._gone = int(np.count_nonzero(np.frombuffer(st._flags, dtype=np.uint8) & _GONE))
        assert len(st._sids) == len(st._srows) == len(st._id) - st._gone
        st._heap = bytearray(parts["heap"])
        meta = _meta_dec.decode(parts["meta"])
        st._users, st._langs, st._tags = meta.users, meta.langs, meta.tags
        st._user_no = {u: k for k, u in enumerate(meta.users)}
        st._lang_no = {x: k for k, x in enumerate(meta.langs)}
        st._tag_no = {x: k for k, x in enumerate(meta.tags)}
        st._geo = {r: GeoPoint(lat, lon) for r, lat, lon in meta.geo}
        st._reply = dict(meta.reply)
        st._t2 = dict(meta.t2)
        st._big = {r: (a, b) for r, a, b in meta.big}
        st._live, st._garbage = meta.live, meta.garbage
        return st

    def memory_bytes(self) -> int:
        """What the columns, the heap and the id index hold (the small dicts and intern tables excluded)."""
        cols = sum(col.itemsize * len(col) for col in self._c.values())
        return cols + len(self._heap) + 12 * len(self._sids) + 100 * len(self._recent)


class _Row:
    """One row's fields as a query check reads them (node/index/matcher.py Fields), each read when asked."""

    __slots__ = ("_r", "_s")

    def __init__(self, store: TweetStore, row: int) -> None:
        self._s, self._r = store, row

    @property
    def text(self) -> str:
        s, r = self._s, self._r
        off = s._off[r]
        return s._heap[off : off + s._tlen[r]].decode()

    @property
    def user(self) -> str:
        return self._s._users[self._s._user[self._r]]

    @property
    def lang(self) -> str | None:
        k = self._s._lang[self._r]
        return self._s._langs[k - 1] if k else None

    @property
    def created_at_ms(self) -> int:
        return self._s._created[self._r]

    @property
    def geo(self) -> GeoPoint | None:
        return self._s._geo.get(self._r) if self._s._flags[self._r] & _GEO else None


class _Tweets(Mapping[int, Tweet]):
    """The live tweets, as a read-only mapping id -> Tweet (each Tweet built on demand)."""

    __slots__ = ("_s",)

    def __init__(self, store: TweetStore) -> None:
        self._s = store

    def __getitem__(self, tweet_id: int) -> Tweet:
        t = self._s.get(tweet_id)
        if t is None:
            raise KeyError(tweet_id)
        return t

    def get(self, tweet_id: int, default: Any = None) -> Any:
        t = self._s.get(tweet_id)
        return default if t is None else t

    def __contains__(self, tweet_id: object) -> bool:
        return isinstance(tweet_id, int) and self._s.is_live(tweet_id)

    def __iter__(self) -> Iterator[int]:
        return self._s.live_ids()

    def __len__(self) -> int:
        return len(self._s)


class _Tombstones(Mapping[int, DeleteTweet]):
    """The deleted ids, as a read-only mapping id -> DeleteTweet (its index work is the outbox's, not here)."""

    __slots__ = ("_s",)

    def __init__(self, store: TweetStore) -> None:
        self._s = store

    def __getitem__(self, tweet_id: int) -> DeleteTweet:
        d = self._s.tomb(tweet_id)
        if d is None:
            raise KeyError(tweet_id)
        return d

    def get(self, tweet_id: int, default: Any = None) -> Any:
        d = self._s.tomb(tweet_id)
        return default if d is None else d

    def __contains__(self, tweet_id: object) -> bool:
        return isinstance(tweet_id, int) and self._s.is_deleted(tweet_id)

    def __iter__(self) -> Iterator[int]:
        return self._s.deleted_ids()

    def __len__(self) -> int:
        return self._s.deleted_count()
