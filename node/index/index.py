"""The inverted index of one node: term -> tweets, and the top-k newest search over it.

Pure core: no I/O, no clock, no tweet storage. It never decides whether a candidate truly matches a phrase or a
filter; the caller's `accept` does. It never scans a whole posting list to answer a top-k query.

Why document numbers: a tweet whose id is above every id seen gets the next local document number (a uint32,
4 B per posting instead of 8), and `_ids[docno]` maps it back. `_ids` is strictly ascending, so docno order is
id order and every id bound becomes a docno bound by one bisect. A tweet that arrives below the newest id (rare:
imports out of order) cannot get a docno in order, so it goes to `_side`, a small table keyed by the id itself;
searches merge both streams. Removal leaves the docno allocated (8 B per removed tweet) so re-adding the same id,
as an edit does, reuses it.

Phrases: when every add to the main table comes with the tweet's word sequence (`words`), adjacent frequent words
are also indexed as pairs (pairs.py), which cut a phrase's candidates down to nearly its matches. One add without
words makes the pairs incomplete, so the index then stops using them for good ("blind"): still exact, only slower.
"""

from __future__ import annotations

import heapq
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice

import msgspec

from node.index.execute import compile_plan, iter_desc, top
from node.index.pairs import PairIndex, PairState, dump_pairs, load_pairs
from node.index.postings import PostingsTable
from node.query.ast import And, Node, Or, Phrase

ID_MAX = (1 << 64) - 1
_pair_enc = msgspec.msgpack.Encoder()
_pair_dec = msgspec.msgpack.Decoder(PairState)
_DOCNOS_MAX = 1 << 32


class InvertedIndex:
    __slots__ = ("_ids", "_main", "_pairs", "_side")

    def __init__(self, pairs: PairIndex | None = None) -> None:
        self._main = PostingsTable("I", track_promotions=True)  # term -> docnos
        self._side = PostingsTable("Q")  # term -> ids of tweets that arrived below the newest id
        self._ids = array("Q")  # docno -> tweet id, strictly ascending
        self._pairs: PairIndex | None = PairIndex() if pairs is None else pairs  # None once blind

    # -- writing ------------------------------------------------------------------------------------------

    def _locate(self, tweet_id: int) -> tuple[PostingsTable, int] | None:
        """Where an id at or below the newest one lives: (main, docno) or (side, id); None above the newest."""
        assert 0 < tweet_id <= ID_MAX, tweet_id
        ids = self._ids
        if not ids or tweet_id > ids[-1]:
            return None
        i = bisect_left(ids, tweet_id)
        if ids[i] == tweet_id:
            return self._main, i
        return self._side, tweet_id

    def add(self, tweet_id: int, terms: Iterable[str], words: Sequence[str] | None = None) -> None:
        """Index `tweet_id` under each term. Adding a term it already has is a no-op. `words`: the tweet's whole
        word sequence as it stands after this call (index_terms(t)[1]); without it phrases get slower for good."""
        ids = self._ids
        pairs = self._pairs
        if not ids or tweet_id > ids[-1]:  # the fast path: a new newest tweet gets the next docno
            assert 0 < tweet_id <= ID_MAX, tweet_id
            assert len(ids) < _DOCNOS_MAX, "docno space exhausted: a node holds at most 2^32 tweets"
            ids.append(tweet_id)
            docno = len(ids) - 1
            self._main.add_fresh(terms, docno)
            if pairs is not None:
                if words is None:
                    self._pairs = None
                    return
                pairs.add(words, docno, True)
                if not docno & pairs.promote_mask:
                    pairs.maybe_promote(self._main, docno + 1)
            return
        where = self._locate(tweet_id)
        assert where is not None
        table, key = where
        table.add_all(terms, key)
        if table is self._main and pairs is not None:
            if words is None:
                self._pairs = None
            else:
                pairs.add(words, key, False)

    def add_many(self, items: Iterable[tuple[int, Iterable[str], Sequence[str] | None]]) -> None:
        """add(id, terms, words) for each item, in order: one entry point for bulk loads and snapshots (give ids
        ascending: the append path). A batched build measured no faster than this loop (see add_fresh)."""
        add = self.add
        for tweet_id, terms, words in items:
            add(tweet_id, terms, words)

    def remove(self, tweet_id: int, terms: Iterable[str], words: Sequence[str] | None = None) -> None:
        """Unindex `tweet_id` from each term (the caller passes the terms it was indexed under). `words`, when
        given, is the word sequence it was indexed with: its pairs go too (else they stay, harmless but held).
        An edit removes before it adds: pairs the old and new texts share are then added back."""
        where = self._locate(tweet_id)
        if where is None:
            return
        table, key = where
        rm = table.remove
        for t in terms:
            rm(t, key)
        if words is not None and table is self._main and self._pairs is not None:
            self._pairs.remove(words, key)

    # -- statistics ---------------------------------------------------------------------------------------

    def postings_count(self) -> int:
        return self._main.postings_count() + self._side.postings_count()

    def terms_count(self) -> int:
        main = self._main
        return main.terms_count() + sum(1 for t in self._side.terms() if t not in main)

    def df(self, term: str) -> int:
        return self._main.df(term) + self._side.df(term)

    def memory_bytes(self) -> int:
        """O(1) estimate of all the index owns: dicts, term strings, posting containers, the docno map."""
        pairs = 0 if self._pairs is None else self._pairs.memory_bytes()
        return self._main.memory_bytes() + self._side.memory_bytes() + sys.getsizeof(self._ids) + pairs

    def exact_memory_bytes(self) -> int:
        """The same by a full walk (O(terms)); for tests and benchmarks."""
        pairs = 0 if self._pairs is None else self._pairs.exact_memory_bytes()
        return (
            self._main.exact_memory_bytes() + self._side.exact_memory_bytes() + sys.getsizeof(self._ids) + pairs
        )

    def pairs_stats(self) -> tuple[int, int, int] | None:
        """(frequent words, pair terms, pair postings), or None when blind; for benchmarks and metrics."""
        p = self._pairs
        if p is None:
            return None
        return p.frequent_count(), p.table.terms_count(), p.table.postings_count()

    # -- snapshots ----------------------------------------------------------------------------------------

    def dump_parts(self) -> list[tuple[str, bytes | memoryview]]:
        """The index as named buffers (node/storage/parts.py): the docno map, both tables, the pairs."""
        parts: list[tuple[str, bytes | memoryview]] = [("ix.ids", memoryview(self._ids).cast("B"))]
        parts += self._main.dump_parts("ix.main")
        parts += self._side.dump_parts("ix.side")
        if self._pairs is not None:
            st, pp = dump_pairs(self._pairs)
            parts.append(("ix.pairs", _pair_enc.encode(st)))
            parts += pp
        return parts

    @classmethod
    def load_parts(cls, parts: dict[str, memoryview]) -> InvertedIndex:
        ix = cls()
        ix._ids.frombytes(parts["ix.ids"])
        ix._main = PostingsTable.load_parts(parts, "ix.main", "I", track_promotions=True)
        ix._side = PostingsTable.load_parts(parts, "ix.side", "Q")
        ix._pairs = load_pairs(_pair_dec.decode(parts["ix.pairs"]), parts) if "ix.pairs" in parts else None
        return ix

    def terms(self) -> Iterator[str]:
        """Every term with a posting here (main table first, then the side table's others)."""
        main = self._main
        yield from main.terms()
        yield from (t for t in self._side.terms() if t not in main)

    # -- searching ----------------------------------------------------------------------------------------

    def iter_newest(self, root: Node, max_id: int | None = None, since_id: int | None = None) -> Iterator[int]:
        """Candidate ids, newest first, lazily: exact for Terms/And/Or/must_not, a superset for phrases.
        Ids are <= max_id and > since_id when given."""
        hi = ID_MAX if max_id is None else max_id
        lo = 1 if since_id is None else since_id + 1
        if hi < lo:
            return iter(())
        ids = self._ids
        dhi = bisect_right(ids, hi) - 1
        dlo = bisect_left(ids, lo)
        main = map(ids.__getitem__, iter_desc(self._main_plan(root), dlo, dhi))
        if not self._side.postings_count():
            return main
        side = iter_desc(compile_plan(root, self._side.get), lo, hi)
        return heapq.merge(main, side, reverse=True)

    def _main_plan(self, root: Node) -> object:
        pairs = self._pairs
        return compile_plan(root, self._main.get, pairs=None if pairs is None else pairs.plans)

    def search(
        self,
        root: And,
        count: int,
        max_id: int | None = None,
        since_id: int | None = None,
        accept: Callable[[int], bool] | None = None,
    ) -> tuple[list[int], int | None]:
        """The newest `count` matches, newest first, and next_max_id: the smallest returned id - 1 when at least
        one more match lies below it, else None. `accept(id)` must say whether a candidate truly matches; None
        means every candidate does (then the query may hold no Phrase)."""
        assert count >= 1, count
        if accept is None:
            assert not _has_phrase(root), "a query with phrases needs an accept to verify candidates"
            if not self._side.postings_count():
                hi = ID_MAX if max_id is None else max_id
                lo = 1 if since_id is None else since_id + 1
                ids = self._ids
                plan = compile_plan(root, self._main.get)
                got = [ids[d] for d in top(plan, bisect_left(ids, lo), bisect_right(ids, hi) - 1, count + 1)]
            else:
                got = list(islice(self.iter_newest(root, max_id, since_id), count + 1))
        else:
            got = list(islice(filter(accept, self.iter_newest(root, max_id, since_id)), count + 1))
        if len(got) > count:
            del got[count:]
            return got, got[-1] - 1
        return got, None


def _has_phrase(n: Node) -> bool:
    if isinstance(n, Phrase):
        return True
    if isinstance(n, Or):
        return any(_has_phrase(c) for c in n.children)
    if isinstance(n, And):
        return any(_has_phrase(c) for c in (*n.must, *n.must_not))
    return False
