"""The inverted index of one node: term -> tweets, and the top-k newest search over it.

Pure core: no I/O, no clock, no tweet storage. It never decides whether a candidate truly matches a phrase or a
filter; the caller's `accept` does. It never scans a whole posting list to answer a top-k query.

Staging: a new tweet above every docno is first staged (kept in a table keyed by id: staging.py); when
more than stage_keep tweets are staged, the lowest stage_step of them get docnos in id order (appended to main)
and leave staging. Replicas receive interleaved batches from several masters (and concurrent bulks spread over a
few thousand ids), so arrival order is id order only roughly; staging puts them in order before they get docnos,
and only a tweet that arrives below the newest docno (more than stage_keep tweets late: a real out-of-order
import) goes to the side table. A flush never touches the staging tables: every staged id is above the newest
docno, so the ids a flush moved to main stay behind as dead entries that each search's lower bound excludes.
There are two tables (the newest takes the arrivals): the older is dropped once all of its tweets have docnos,
and the newest becomes the older after 2 x stage_keep arrivals (any tweet the older still stages is re-added to
it first: few, since by then the flushes have passed nearly all of them). Staged tweets have no word pairs, so
the shell settles the index (flushes what is staged, a step at a time) when writes pause.

A staged tweet goes into a staging table lazily: an arrival only joins `_pending`, and the first read after it
(a search, a df) puts every pending tweet into the newest table. A load without searches thus never writes the
staging tables at all (most tweets get their docnos before anyone reads). While reads come, the writes put the
pending tweets in every SYNC_EVERY arrivals themselves, so that a search during a load pays for at most that
many (the first search after a quiet spell pays for up to stage_keep). Measured in process (150 k IRA tweets in four interleaved
streams, best of three): see the README's "Lazy staging".

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
from node.index.staging import StagingTable
from node.query.ast import And, Node, Or, Phrase

ID_MAX = (1 << 64) - 1
STAGE_KEEP = 8192  # tweets kept staged before the lowest go to main (see the module header)
STAGE_STEP = 256  # tweets a flush moves into main in one step (~16 us each, the indexing staging deferred: ~4 ms)
# Measured with generations flushed whole (512 tweets a generation, two kept): with bench_cluster's ingest
# (4 clients x 1,000-line bulks, 100 k tweets, 3 nodes) 66-70 % of the postings ended in the side table
# (murmur_index_side_postings), without word pairs; 2,048 a generation: 42-45 %, 4,096: 25 %, and a whole
# generation's flush held a node for ~8 ms at 512, ~35 ms at 2,048, ~300 ms at 16,384. Flushing only the lowest
# ids decouples the two: the window of ids kept in order (stage_keep) from the length of a step (stage_step).
SYNC_EVERY = 512  # pending tweets at most that a search pays for while searches come (see the module header)
_pair_enc = msgspec.msgpack.Encoder()
_pair_dec = msgspec.msgpack.Decoder(PairState)
_DOCNOS_MAX = 1 << 32


class _Staged:
    """A staged tweet's terms (distinct) and words, kept until it gets a docno, and the staging table that holds it
    (None while it is pending: in no table yet).

    Tuples, not a set and a list: the collector untracks a tuple of strings on its first pass, while a set or a
    list stays tracked and every full pass walks each of its strings. 8 k staged tweets' sets and lists were 35 of
    the 36 ms of a full pass over a node's state at 300 k tweets (in process), whatever the corpus's size."""

    __slots__ = ("table", "terms", "words")

    def __init__(self, terms: tuple[str, ...], words: tuple[str, ...] | None, table: StagingTable | None) -> None:
        self.terms = terms
        self.words = words
        self.table = table

    def keep_only(self, gone: set[str] | frozenset[str]) -> None:
        """Forget the terms in `gone`."""
        self.terms = tuple(t for t in self.terms if t not in gone)


class InvertedIndex:
    __slots__ = (
        "_arrivals_new", "_ids", "_live_new", "_low", "_main", "_new", "_old", "_pairs", "_pending", "_read",
        "_side", "_staged",
        "arrivals", "stage_keep", "stage_step", "sync_every",
    )

    def __init__(
        self,
        pairs: PairIndex | None = None,
        stage_keep: int = STAGE_KEEP,
        stage_step: int = STAGE_STEP,
        sync_every: int = SYNC_EVERY,
    ) -> None:
        assert 1 <= stage_step <= stage_keep and sync_every >= 1, (stage_step, stage_keep, sync_every)
        self._main = PostingsTable("I", track_promotions=True)  # term -> docnos
        self._side = PostingsTable("Q")  # term -> ids of tweets that arrived below the newest id
        self._ids = array("Q")  # docno -> tweet id, strictly ascending
        self._pairs: PairIndex | None = PairIndex() if pairs is None else pairs  # None once blind
        # Staging (see the module header): the newest tweets, keyed by id, before they get docnos.
        self.stage_keep = stage_keep
        self.stage_step = stage_step
        self.sync_every = sync_every
        self._staged: dict[int, _Staged] = {}  # every staged id (all above the newest docno's id)
        self._low: list[int] = []  # the staged ids as a heap: the lowest come out first
        self._new = StagingTable()  # the staging table that takes arrivals
        self._old = StagingTable()  # the one before
        self._pending: set[int] = set()  # staged ids in no staging table yet (the next read puts them in _new)
        self._read = False  # a read has synced since the last sync by a write: the writes sync too
        self._live_new = 0  # staged tweets held by _new (the rest are in _old or pending)
        self._arrivals_new = 0  # tweets put into _new since it became the newest
        self.arrivals = 0  # tweets staged since start: the shell settles the index when it stops moving

    # -- writing ------------------------------------------------------------------------------------------

    def _locate(self, tweet_id: int) -> tuple[PostingsTable | StagingTable | None, int, _Staged | None] | None:
        """Where an indexed id lives: (main, docno, None), (its staging table or None while pending, id, its entry)
        or (side, id, None); None for an id above the newest in main that is not staged."""
        assert 0 < tweet_id <= ID_MAX, tweet_id
        st = self._staged.get(tweet_id)
        if st is not None:
            return st.table, tweet_id, st
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
        if where is None:  # a new tweet above every docno: staged until it is among the lowest staged
            distinct = tuple(terms) if terms.__class__ is set else tuple(set(terms))
            self._staged[tweet_id] = _Staged(distinct, None if words is None else tuple(words), None)
            pending = self._pending
            pending.add(tweet_id)
            if self._read and len(pending) >= self.sync_every:
                self._read = False
                self._sync()
            heapq.heappush(self._low, tweet_id)
            self.arrivals += 1
            if len(self._staged) > self.stage_keep:
                self._flush_lowest(self.stage_step)
            return
        table, key, staged = where
        if staged is not None:
            fresh = set(terms).difference(staged.terms)  # a staging table takes no (term, id) twice
            if table is not None:
                table.add_all(fresh, key)
            staged.terms = (*staged.terms, *fresh)
            staged.words = None if words is None else tuple(words)
            return
        assert isinstance(table, PostingsTable)  # main or side: a staged id has its entry
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

    def _flush_lowest(self, k: int) -> None:
        """The lowest `k` staged tweets get docnos, in id order (one removed while staged, with no terms left, only
        leaves staging). Their entries stay in the staging tables, dead: below every search's lower bound."""
        staged, low, pending = self._staged, self._low, self._pending
        pop = heapq.heappop
        new = self._new
        for _ in range(min(k, len(low))):
            i = pop(low)
            st = staged.pop(i)
            if st.table is None:
                pending.discard(i)
            elif st.table is new:
                self._live_new -= 1
            if st.terms:
                self._append(i, st.terms, st.words)
        if not staged:
            if self._new.postings_count() or self._old.postings_count():
                self._new, self._old = StagingTable(), StagingTable()
            self._live_new = self._arrivals_new = 0
        elif len(staged) == self._live_new + len(pending) and self._old.postings_count():
            self._old = StagingTable()  # every tweet it staged has a docno now

    def _sync_read(self) -> None:
        """_sync before a read of the staging tables; from then on the writes sync every SYNC_EVERY arrivals."""
        if self._pending:
            self._read = True
            self._sync()

    def _sync(self) -> None:
        """Put the pending staged tweets into the newest staging table (before a read of the tables)."""
        pending = self._pending
        if not pending:
            return
        staged, new = self._staged, self._new
        for i in sorted(pending):  # in id order: the lists' ascending runs stay long (a cheap sort on read)
            st = staged[i]
            new.add_all(st.terms, i)
            st.table = new
        self._live_new += len(pending)
        self._arrivals_new += len(pending)
        pending.clear()
        if self._arrivals_new >= 2 * self.stage_keep:
            self._rotate()

    def _rotate(self) -> None:
        """The newest staging table becomes the older; the tweets the older still stages are re-added to it
        (none is pending: only _sync rotates, after it has emptied the pending set)."""
        new, old = self._new, self._old
        if len(self._staged) > self._live_new:
            for i, st in self._staged.items():
                if st.table is old:
                    new.add_all(st.terms, i)
                    st.table = new
        self._old, self._new = new, StagingTable()
        self._live_new = self._arrivals_new = 0

    def settle(self, k: int | None = None) -> int:
        """Give the lowest `k` staged tweets (all, by default) their docnos and word pairs: when writes pause, and
        before a snapshot. -> how many stay staged."""
        if self._staged:
            self._flush_lowest(len(self._staged) if k is None else k)
        return len(self._staged)

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
        if table is None:  # pending: in no table yet
            assert staged is not None
            staged.keep_only(set(terms))
            return
        rm = table.remove
        gone = set(terms)
        for t in gone:
            rm(t, key)
        if staged is not None:
            staged.keep_only(gone)
        if words is not None and table is self._main and self._pairs is not None:
            self._pairs.remove(words, key)

    def drop_terms(self, terms: Iterable[str]) -> int:
        """Forget every posting of these terms (cleanup: their partitions are replicated elsewhere now). The pairs
        go too (the index turns blind: still exact, phrases slower), since they pair words whose postings may have
        gone. -> postings dropped."""
        gone = set(terms)
        if not gone:
            return 0
        dropped = sum(self._staged_df(t) for t in gone)  # the live ones: the staging tables hold dead ones too
        for table in (self._main, self._side):
            dropped += sum(table.drop(t) for t in gone)
        for stage in (self._new, self._old):
            for t in gone:
                stage.drop(t)
        for st in self._staged.values():
            st.keep_only(gone)
        self._pairs = None
        return dropped

    # -- statistics ---------------------------------------------------------------------------------------

    def _id_tables(self) -> tuple[PostingsTable, StagingTable, StagingTable]:
        """The tables keyed by tweet id: the side table and both staging tables (these with dead entries)."""
        return self._side, self._new, self._old

    def _staged_floor(self) -> int:
        """Every id in a staging table at or below this is dead (it has a docno): the newest docno's id."""
        ids = self._ids
        return ids[-1] if ids else 0

    def _staged_df(self, term: str) -> int:
        """The term's live postings in the staging tables."""
        self._sync_read()
        floor = self._staged_floor()
        n = 0
        for table in (self._new, self._old):
            v = table.get(term)
            if v is not None:
                n += len(v) - bisect_right(v, floor)
        return n

    def postings_count(self) -> int:
        staged = sum(len(st.terms) for st in self._staged.values())
        return self._main.postings_count() + self._side.postings_count() + staged

    def terms_count(self) -> int:
        """O(terms outside main): /metrics asks it, and main holds about a million terms at the corpus's size."""
        return self._main.terms_count() + sum(1 for _ in self._extra_terms())

    def side_postings_count(self) -> int:
        """Postings of tweets that arrived out of id order (the side table): they have no pairs."""
        return self._side.postings_count()

    def staged_count(self) -> int:
        """Tweets staged (without a docno and word pairs yet)."""
        return len(self._staged)

    def df(self, term: str) -> int:
        return self._main.df(term) + self._side.df(term) + (self._staged_df(term) if self._staged else 0)

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
        self.settle()
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
        yield from self._main.terms()
        yield from self._extra_terms()

    def _extra_terms(self) -> Iterator[str]:
        """The terms with a posting here that main has not, once each."""
        main = self._main
        seen: set[str] = set()
        for t in self._side.terms():
            if t not in main and t not in seen:
                seen.add(t)
                yield t
        if self._staged:
            self._sync_read()
            for table in (self._new, self._old):
                for t in table.terms():
                    if t not in main and t not in seen and self._staged_df(t):
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
        others = [iter_desc(compile_plan(root, t.get), tlo, hi) for t, tlo in self._others(lo)]
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
        others = [top(compile_plan(root, t.get), tlo, hi, n) for t, tlo in self._others(lo)]
        if any(others):
            got = sorted(set(got).union(*others), reverse=True)[:n]
        return got[:limit], len(got) <= limit

    def _others(self, lo: int) -> list[tuple[PostingsTable | StagingTable, int]]:
        """The id-keyed tables worth searching, each with its lower id bound (the staging tables' above their dead
        entries)."""
        out: list[tuple[PostingsTable | StagingTable, int]] = [(self._side, lo)] if self._side.postings_count() else []
        if self._staged:
            self._sync_read()
            slo = max(lo, self._staged_floor() + 1)
            out += [(t, slo) for t in (self._new, self._old) if t.postings_count()]
        return out

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
            if not self._others(1):
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
