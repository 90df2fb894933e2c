"""Next-word postings for frequent words: for adjacent words a, b that are both frequent, the docnos holding "a b".

Pure, owned by InvertedIndex. It never decides a match: a pair list only narrows a phrase's candidates, which the
caller's `accept` still verifies, so it may hold too much (a pair left behind by an edit) but never too little.

Why only frequent words: a phrase is slow when its words are frequent and rarely adjacent (thousands of candidates
to reject); when either word is rare the AND of the words is already short. Indexing only frequent x frequent
pairs keeps the cost small (measured on the IRA corpus: ~0.3-1 pair posting per tweet, a few % of the memory).
A word becomes frequent when its list reaches `df_min` (which grows with the index: `docs_per_df` docnos per
posting) and stays so; from then on every tweet added with its words gets its pairs. So a pair's list is complete
from docno `since(a, b)` = the later of its two words' starts; below that, the plan falls back to the words alone.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Sequence
from itertools import compress, pairwise
from operator import and_

from node.index.postings import PostingsTable

PAIR_DF_MIN = 300  # a word with at least this many tweets becomes frequent...
DOCS_PER_DF = 300  # ...and at least one per this many docnos: the frequent set stays a few hundred words
CHECK_EVERY_MIN = 1024  # docnos between looks at the candidate words (the look costs O(candidates))

_WORD = re.compile(r"\w+")  # only word terms have pairs ('#x', '@x', 'from:', 'lang:' never do)


class PairIndex:
    __slots__ = ("_check_at", "_check_every", "_df_min", "_docs_per_df", "_start", "_watch", "table")

    def __init__(
        self, df_min: int = PAIR_DF_MIN, docs_per_df: int = DOCS_PER_DF, check_every: int = CHECK_EVERY_MIN
    ) -> None:
        assert df_min >= 1 and docs_per_df >= 1 and check_every >= 1
        self._df_min = df_min
        self._docs_per_df = docs_per_df
        self._check_every = check_every
        self._check_at = 0  # the next docno count at which to look at the watched words
        self._start: dict[str, int] = {}  # frequent word -> the first docno added after it became frequent
        self._watch: set[str] = set()  # words with an array list that are not frequent yet
        self.table = PostingsTable("I")  # "a b" -> docnos (a space never occurs in a term)

    def keys(self, words: Sequence[str]) -> set[str]:
        """The pair terms of a word sequence: "a b" for each adjacent a, b both frequent. All C-level loops."""
        flags = list(map(self._start.__contains__, words))
        if flags.count(True) < 2:  # the common quick exit, also for fewer than 2 words
            return set()
        return set(map(" ".join, compress(pairwise(words), map(and_, flags, flags[1:]))))

    def add(self, words: Sequence[str], docno: int, fresh: bool) -> None:
        keys = self.keys(words)
        if keys:
            self.table.add_all(keys, docno, fresh)

    def remove(self, words: Sequence[str], docno: int) -> None:
        rm = self.table.remove
        for k in self.keys(words):
            rm(k, docno)

    def maybe_promote(self, main: PostingsTable, docs: int) -> None:
        """Called after each new docno (`docs` = how many there are): words whose list reached the threshold
        become frequent from docno `docs` on. Amortised O(1): the watch is looked at every max(check_every,
        2 * its size) docnos."""
        promoted = main.promoted
        assert promoted is not None, "the main table must track promotions"
        if promoted:
            self._watch.update(t for t in promoted if t not in self._start and _WORD.fullmatch(t))
            promoted.clear()
        if docs < self._check_at:
            return
        self._check_at = docs + max(self._check_every, 2 * len(self._watch))
        df_min = max(self._df_min, docs // self._docs_per_df)
        df = main.df
        joined = [t for t in self._watch if df(t) >= df_min]
        for t in joined:
            self._watch.discard(t)
            self._start[t] = docs

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
        return self.table.memory_bytes() + sys.getsizeof(self._start) + sys.getsizeof(self._watch)

    def exact_memory_bytes(self) -> int:
        return self.table.exact_memory_bytes() + sys.getsizeof(self._start) + sys.getsizeof(self._watch)


_EMPTY = array("I")
