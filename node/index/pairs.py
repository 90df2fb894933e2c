"""Next-word postings for frequent words: for adjacent words a, b that are both frequent, the docnos holding "a b".

Pure, owned by InvertedIndex. It never decides a match: a pair list only narrows a phrase's candidates, which the
caller's `accept` still verifies, so it may hold too much (a pair left behind by an edit) but never too little.

Why only frequent words: a phrase is slow when its words are frequent and rarely adjacent (thousands of candidates
to reject); when either word is rare the AND of the words is already short. Indexing only frequent x frequent
pairs keeps the cost bounded (IRA corpus, 1.77 M tweets: 570 frequent words, 100 k pairs, 2.3 pair postings per
tweet, +14 % memory, +2.5 us per tweet indexed; phrase p99 vs FTS5: 6x without them, 0.5-0.65x with).
A word becomes frequent when its list reaches `df_min` (which grows with the index: `docs_per_df` docnos per
posting) and stays so; from then on every tweet added with its words gets its pairs. So a pair's list is complete
from docno `since(a, b)` = the later of its two words' starts; below that, the plan falls back to the words alone.
A cluster that partitions postings by term needs pairs every node agrees on: `pair_terms` with one fixed set.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from itertools import pairwise

import msgspec

from node.index.postings import PostingsTable

PAIR_DF_MIN = 300  # a word with at least this many tweets becomes frequent...
DOCS_PER_DF = 300  # ...and at least one per this many docnos: the frequent set stays a few hundred words
CHECK_EVERY_MIN = 1024  # docnos between looks at the candidate words (the look costs O(candidates))
# Candidate words one call of maybe_promote looks at, at most: a look goes over the watch a slice per call (every
# promote_mask + 1 docnos), not at once. A whole look at once held a flush 20-31 ms at 600 k tweets in process
# (a watch of ~16 k words, a df each), and more with the full corpus.
LOOK_STEP = 256

_WORD = re.compile(r"\w+")  # only word terms have pairs ('#x', '@x', 'from:', 'lang:' never do)


class PairIndex:
    __slots__ = (
        "_check_at",
        "_check_every",
        "_df_min",
        "_docs_per_df",
        "_frequent",
        "_look",
        "_start",
        "_watch",
        "promote_mask",
        "table",
    )

    def __init__(
        self,
        df_min: int = PAIR_DF_MIN,
        docs_per_df: int = DOCS_PER_DF,
        check_every: int = CHECK_EVERY_MIN,
        frequent: Iterable[str] = (),
    ) -> None:
        """`frequent`: words that are frequent from docno 0 on (give them before the first add)."""
        assert df_min >= 1 and docs_per_df >= 1 and check_every >= 1
        self._df_min = df_min
        self._docs_per_df = docs_per_df
        self._check_every = check_every
        # the owner calls maybe_promote when docno & promote_mask == 0: a power of two <= min(check_every, 64)
        self.promote_mask = (1 << (min(check_every, 64).bit_length() - 1)) - 1
        self._check_at = 0  # the next docno count at which to look at the watched words
        self._start = dict.fromkeys(frequent, 0)  # frequent word -> the first docno added after it became frequent
        self._frequent = set(self._start)  # the same words, for the write path's membership tests
        self._watch: dict[str, None] = {}  # words with an array list that are not frequent yet (in order)
        self._look: list[str] = []  # the watched words the look under way has still to examine, the next last
        self.table = PostingsTable("I")  # "a b" -> docnos (a space never occurs in a term)

    def keys(self, words: Sequence[str]) -> set[str]:
        return pair_terms(words, self._frequent)

    def add(self, words: Sequence[str], docno: int, fresh: bool) -> None:
        keys = self.keys(words)
        if not keys:
            return
        if fresh:
            self.table.add_fresh(keys, docno)
        else:
            self.table.add_all(keys, docno)

    def remove(self, words: Sequence[str], docno: int) -> None:
        rm = self.table.remove
        for k in self.keys(words):
            rm(k, docno)

    def maybe_promote(self, main: PostingsTable, docs: int) -> None:
        """Called after each new docno (`docs` = how many there are): words whose list reached the threshold
        become frequent from docno `docs` on. Amortised O(1): a look over the watch starts every max(check_every,
        2 * its size) docnos and examines LOOK_STEP words a call until it is done."""
        promoted = main.promoted
        assert promoted is not None, "the main table must track promotions"
        watch = self._watch
        if promoted:
            for t in promoted:
                if t not in self._start and _WORD.fullmatch(t):
                    watch[t] = None
            promoted.clear()
        look = self._look
        if not look:
            if docs < self._check_at:
                return
            self._check_at = docs + max(self._check_every, 2 * len(watch))
            look.extend(reversed(watch))
        step = look[-LOOK_STEP:]
        del look[-LOOK_STEP:]
        df_min = max(self._df_min, docs // self._docs_per_df)
        df = main.df
        for t in step:
            if t in watch and df(t) >= df_min:
                del watch[t]
                self._start[t] = docs
                self._frequent.add(t)

    def plans(self, words: Sequence[str]) -> list[tuple[str, int, array]]:
        """For a phrase: ("since", docno, list) per adjacent pair of frequent words: the phrase's matches at or
        above docno lie in list. A pair nobody holds yet gives an empty list (no candidates above docno)."""
        out = []
        start = self._start
        for a, b in pairwise(words):
            sa, sb = start.get(a), start.get(b)
            if sa is None or sb is None:
                continue
            lst = self.table.get(a + " " + b)
            out.append(("since", max(sa, sb), lst if lst is not None else _EMPTY))
        return out

    def frequent_count(self) -> int:
        return len(self._start)

    def memory_bytes(self) -> int:
        return self.table.memory_bytes() + self._own_bytes()

    def exact_memory_bytes(self) -> int:
        return self.table.exact_memory_bytes() + self._own_bytes()

    def _own_bytes(self) -> int:  # the words are the main table's keys: only the containers count
        return sys.getsizeof(self._start) + sys.getsizeof(self._frequent) + sys.getsizeof(self._watch)


_EMPTY = array("I")


def pair_terms(words: Sequence[str], frequent: AbstractSet[str]) -> set[str]:
    """The pair terms of a word sequence: "a b" for each adjacent a, b both in `frequent`. With a fixed set
    shared by every node, these can be indexed like ordinary terms (a space never occurs in a term). A plain loop:
    twice as fast as a chain of C iterators over such short sequences (measured)."""
    keys = set()
    prev = None
    for w in words:
        if w in frequent:
            if prev is not None:
                keys.add(prev + " " + w)
            prev = w
        else:
            prev = None
    return keys


class PairState(msgspec.Struct, array_like=True):
    """What a snapshot keeps of a PairIndex besides its table."""

    df_min: int
    docs_per_df: int
    check_every: int
    check_at: int
    start: dict[str, int]
    watch: list[str]
    look: list[str] = []  # the look under way (PairIndex._look); none in snapshots written before it


def dump_pairs(p: PairIndex) -> tuple[PairState, list[tuple[str, bytes | memoryview]]]:
    st = PairState(p._df_min, p._docs_per_df, p._check_every, p._check_at, dict(p._start), list(p._watch), list(p._look))
    return st, p.table.dump_parts("pairs")


def load_pairs(st: PairState, parts: dict[str, memoryview]) -> PairIndex:
    p = PairIndex(st.df_min, st.docs_per_df, st.check_every)
    p._check_at = st.check_at
    p._start = dict(st.start)
    p._frequent = set(p._start)
    p._watch = dict.fromkeys(st.watch)
    p._look = list(st.look)
    p.table = PostingsTable.load_parts(parts, "pairs", "I")
    return p
