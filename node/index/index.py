"""The inverted index of one node: term -> tweets, and the top-k newest search over it.

Pure core: no I/O, no clock, no tweet storage. It never decides whether a candidate truly matches a phrase or a
filter; the caller's `accept` does. It never scans a whole posting list to answer a top-k query.

Staging: a new tweet above every docno first goes to the newest of two staging generations (tables keyed by
id, like the side table); when that one holds STAGE_TWEETS tweets, the generation before it is flushed into
main in id order and the newest becomes the older. Replicas receive interleaved batches from several masters,
so arrival order is id order only roughly; staging puts them in order before they get docnos, and only a tweet
that arrives more than a generation late (a real out-of-order import) goes to the side table.

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
STAGE_TWEETS = 512  # tweets per staging generation (see the module header); a flush moves one generation
# into main in one step (~16 us a tweet, the indexing that staging deferred): at 16,384 that held a node for
# ~300 ms every 16 k tweets, at 2,048 ~35 ms, at 512 ~8 ms. Measured with scripts/bench_scale.py --limit 300000
# (3 nodes, MURMUR_SLOW_STEP_MS=25): steps over 25 ms 457 -> 210, searches during the load p99 212 -> 173 ms,
# the load rate the same, and 21.2 B/posting against 22.4. But concurrent bulks interleave by more than a
# generation: with bench_cluster's ingest (4 clients x 1,000-line bulks, 100 k tweets, 3 nodes) 66-70 % of the
# postings end in the side table (murmur_index_side_postings), and those tweets get no word pairs; 2,048: 42-45 %,
# 4,096: 25 %. Carrying the tweets above the newest generation's lowest id into the next generation (instead of
# flushing them) cut it to 10-16 % but re-added them at every flush: the ingest took 12-13 s instead of 8.7.
_pair_enc = msgspec.msgpack.Encoder()
_pair_dec = msgspec.msgpack.Decoder(PairState)
_DOCNOS_MAX = 1 << 32


class _Staged:
    """A staged tweet's terms and words, kept until its generation gets docnos."""

    __slots__ = ("terms", "words")

    def __init__(self, terms: set[str], words: Sequence[str] | None) -> None:
        self.terms = terms
        self.words = words


class InvertedIndex:
    __slots__ = ("_ids", "_main", "_older", "_pairs", "_side", "_stage", "_staged", "_staged_old", "stage_tweets")

    def __init__(self, pairs: PairIndex | None = None, stage_tweets: int = STAGE_TWEETS) -> None:
        self._main = PostingsTable("I", track_promotions=True)  # term -> docnos
        self._side = PostingsTable("Q")  # term -> ids of tweets that arrived below the newest id
        self._ids = array("Q")  # docno -> tweet id, strictly ascending
        self._pairs: PairIndex | None = PairIndex() if pairs is None else pairs  # None once blind
        # The staging generations (see the module header): the newest tweets, keyed by id, before they get docnos.
        self.stage_tweets = stage_tweets
        self._stage = PostingsTable("Q")  # the newest generation
        self._older = PostingsTable("Q")  # the one before, flushed into main when the newest fills up
        self._staged: dict[int, _Staged] = {}
        self._staged_old: dict[int, _Staged] = {}

    # -- writing ------------------------------------------------------------------------------------------

    def _locate(self, tweet_id: int) -> tuple[PostingsTable, int, _Staged | None] | None:
        """Where an indexed id lives: (main, docno, None), (a staging table, id, its entry) or (side, id, None);
        None for an id above the newest in main that is not staged."""
        assert 0 < tweet_id <= ID_MAX, tweet_id
        st = self._staged.get(tweet_id)
        if st is not None:
            return self._stage, tweet_id, st
        st = self._staged_old.get(tweet_id)
        if st is not None:
            return self._older, tweet_id, st
        ids = self._ids
        if not ids or tweet_id > ids[-1]:
            return None
        i = bisect_left(ids, tweet_id)
        if ids[i] == tweet_id:
            return self._main, i, None
        return self._side, tweet_id, None

    def add(self, tweet_id: int, terms: Iterable[str], words: Sequence[str] | None = None) -> None:
        """Index `tweet_id` under each term. Adding a term it already has is a no-op. `words`: the tweet's whole
        word sequence as it stands after this call (index_terms(t)[1]); without it phrases get slower for good."""
        where = self._locate(tweet_id)
        if where is None:  # a new tweet above every docno: staged until its generation is flushed in id order
            terms = set(terms)
            self._stage.add_all(terms, tweet_id)
            self._staged[tweet_id] = _Staged(terms, words)
            if len(self._staged) >= self.stage_tweets:
                self._flush_older()
            return
        table, key, staged = where
        if staged is not None:
            table.add_all(terms, key)
            staged.terms.update(terms)
            staged.words = words
            return
        table.add_all(terms, key)
        pairs = self._pairs
        if table is self._main and pairs is not None:
            if words is None:
                self._pairs = None
            else:
                pairs.add(words, key, False)

    def _append(self, tweet_id: int, terms: Iterable[str], words: Sequence[str] | None) -> None:
        """Give a tweet above every docno the next docno (the append path of every list)."""
        ids = self._ids
        assert len(ids) < _DOCNOS_MAX, "docno space exhausted: a node holds at most 2^32 tweets"
        ids.append(tweet_id)
        docno = len(ids) - 1
        self._main.add_fresh(terms, docno)
        pairs = self._pairs
        if pairs is not None:
            if words is None:
                self._pairs = None
                return
            pairs.add(words, docno, True)
            if not docno & pairs.promote_mask:
                pairs.maybe_promote(self._main, docno + 1)

    def _flush_older(self) -> None:
        """The newest generation is full: the one before goes into main in id order (any of its ids that is by
        now below the newest docno, a straggler, into the side table), and the newest becomes the older."""
        ids = self._ids
        older = self._staged_old
        for i in sorted(older):
            st = older[i]
            if not st.terms:
                continue  # removed while staged (deleted)
            if not ids or i > ids[-1]:
                self._append(i, st.terms, st.words)
            else:
                self._side.add_all(st.terms, i)
        self._older, self._staged_old = self._stage, self._staged
        self._stage, self._staged = PostingsTable("Q"), {}

    def flush(self) -> None:
        """Move every staged tweet into main (both generations, in id order): for snapshots."""
        self._flush_older()
        self._flush_older()

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
        table, key, staged = where
        rm = table.remove
        for t in terms:
            rm(t, key)
            if staged is not None:
                staged.terms.discard(t)
        if words is not None and table is self._main and self._pairs is not None:
            self._pairs.remove(words, key)

    def drop_terms(self, terms: Iterable[str]) -> int:
        """Forget every posting of these terms (cleanup: their partitions are replicated elsewhere now). The pairs
        go too (the index turns blind: still exact, phrases slower), since they pair words whose postings may have
        gone. -> postings dropped."""
        gone = set(terms)
        if not gone:
            return 0
        dropped = 0
        for table in (self._main, *self._id_tables()):
            for t in gone:
                dropped += table.drop(t)
        for staged in (self._staged, self._staged_old):
            for st in staged.values():
                st.terms -= gone
        self._pairs = None
        return dropped

    # -- statistics ---------------------------------------------------------------------------------------

    def _id_tables(self) -> tuple[PostingsTable, PostingsTable, PostingsTable]:
        """The tables keyed by tweet id: the side table and both staging generations."""
        return self._side, self._stage, self._older

    def postings_count(self) -> int:
        return self._main.postings_count() + sum(t.postings_count() for t in self._id_tables())

    def terms_count(self) -> int:
        return sum(1 for _ in self.terms())

    def side_postings_count(self) -> int:
        """Postings of tweets that arrived out of id order (the side table): they have no pairs."""
        return self._side.postings_count()

    def df(self, term: str) -> int:
        return self._main.df(term) + sum(t.df(term) for t in self._id_tables())

    def memory_bytes(self) -> int:
        """O(1) estimate of all the index owns: dicts, term strings, posting containers, the docno map (the
        staged tweets' term sets not included: a bounded few MB)."""
        pairs = 0 if self._pairs is None else self._pairs.memory_bytes()
        tables = self._main.memory_bytes() + sum(t.memory_bytes() for t in self._id_tables())
        return tables + sys.getsizeof(self._ids) + pairs

    def exact_memory_bytes(self) -> int:
        """The same by a full walk (O(terms)); for tests and benchmarks."""
        pairs = 0 if self._pairs is None else self._pairs.exact_memory_bytes()
        tables = self._main.exact_memory_bytes() + sum(t.exact_memory_bytes() for t in self._id_tables())
        return tables + sys.getsizeof(self._ids) + pairs

    def pairs_stats(self) -> tuple[int, int, int] | None:
        """(frequent words, pair terms, pair postings), or None when blind; for benchmarks and metrics."""
        p = self._pairs
        if p is None:
            return None
        return p.frequent_count(), p.table.terms_count(), p.table.postings_count()

    # -- snapshots ----------------------------------------------------------------------------------------

    def dump_parts(self) -> list[tuple[str, bytes | memoryview]]:
        """The index as named buffers (node/storage/parts.py): the docno map, both tables, the pairs. Staged
        tweets are moved into main first (in a snapshot process: its copy of the index)."""
        self.flush()
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
        """Every term with a posting here, once each (main table first, then the others' new ones)."""
        main = self._main
        yield from main.terms()
        seen: set[str] = set()
        for table in self._id_tables():
            for t in table.terms():
                if t not in main and t not in seen:
                    seen.add(t)
                    yield t

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
        others = [iter_desc(compile_plan(root, t.get), lo, hi) for t in self._id_tables() if t.postings_count()]
        if not others:
            return main
        return heapq.merge(main, *others, reverse=True)

    def window(self, root: Node, max_id: int | None, since_id: int | None, limit: int) -> tuple[list[int], bool]:
        """The newest `limit` candidates (as iter_newest) and whether none is left below them. Each table's own
        top is taken (a slice for a term, C-level set operations for an OR of terms: execute.top) and the few
        lists merged, instead of a lazy merge in Python."""
        hi = ID_MAX if max_id is None else max_id
        lo = 1 if since_id is None else since_id + 1
        if hi < lo:
            return [], True
        ids = self._ids
        n = limit + 1
        got = [ids[d] for d in top(self._main_plan(root), bisect_left(ids, lo), bisect_right(ids, hi) - 1, n)]
        others = [top(compile_plan(root, t.get), lo, hi, n) for t in self._id_tables() if t.postings_count()]
        if any(others):
            got = sorted(set(got).union(*others), reverse=True)[:n]
        return got[:limit], len(got) <= limit

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
            if not any(t.postings_count() for t in self._id_tables()):
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
