"""A staging table: term -> the ids of the staged tweets that hold it, appended as they come, sorted when read.

Pure data structure: no I/O, no clock. It holds the index's newest few thousand tweets (index.py's staging) and is
written once per term of every tweet that arrives, so a write is one dict subscript and one list append, with no
order check. Arrivals come in id order only roughly (interleaved batches of several masters); a read sorts the
term's list in place (timsort merges the ascending runs) and copies it into the 'Q' array the executor bisects,
only when the list grew since its last read: a search during a load pays for its own terms' lists, a load
without searches never does. The caller never adds a (term, id) it already holds.

Measured in process (150 k IRA tweets in four interleaved streams, py-spy): staging took 21.9-22.4 % of the
samples with 'Q' arrays and an order check per append, 16.0-17.5 % with these lists; a C-level form
(deque(map(list.append, ...))) measured the same as the lists, so the cost left is the look-ups' cache misses.
Before the arrays, staging into a PostingsTable cost 17.6-18.5 µs a tweet against 7-10 µs for the arrays.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Collection, Iterator

_LIST_HEADER = sys.getsizeof([])


class StagingTable:
    """term -> ids: a list each, appended in arrival order; `get` hands out an ascending 'Q' array of it."""

    __slots__ = ("_d", "_postings", "_read")

    def __init__(self) -> None:
        self._d: defaultdict[str, list[int]] = defaultdict(list)
        self._read: dict[str, array] = {}  # term -> its list as the array `get` last handed out
        self._postings = 0

    def add_all(self, terms: Collection[str], x: int) -> None:
        """Append `x` to each term's list (the caller guarantees no term holds it yet): one C-level subscript
        (a new term's list made by defaultdict) and one append a term, no order check."""
        d = self._d
        for t in terms:
            d[t].append(x)
        self._postings += len(terms)

    def get(self, term: str) -> array | None:
        """The term's ids, ascending (never mutate it). A list that grew since the last read is sorted in place
        (timsort: runs of ascending ids are merged, not re-sorted) and copied into a new array; else the array
        of the last read is handed out again."""
        lst = self._d.get(term)
        if lst is None:
            return None
        a = self._read.get(term)
        if a is None or len(a) != len(lst):
            lst.sort()
            self._read[term] = a = array("Q", lst)
        return a

    def remove(self, term: str, x: int) -> bool:
        """Delete `x` from the term's list; True when it was there. An emptied list drops its term."""
        lst = self._d.get(term)
        if lst is None:
            return False
        lst.sort()
        i = bisect_left(lst, x)
        if i == len(lst) or lst[i] != x:
            return False
        del lst[i]
        self._read.pop(term, None)
        self._postings -= 1
        if not lst:
            del self._d[term]
        return True

    def drop(self, term: str) -> int:
        """Forget the term's list. -> how many ids it held."""
        lst = self._d.pop(term, None)
        self._read.pop(term, None)
        if lst is None:
            return 0
        self._postings -= len(lst)
        return len(lst)

    def terms(self) -> Iterator[str]:
        return iter(self._d)

    def postings_count(self) -> int:
        return self._postings

    def memory_bytes(self) -> int:
        """O(1) estimate: the dict, one list header per term and 8 B per id (each id's int object is shared by
        the lists of its tweet's terms; the term strings with the tweets' own term sets); the read copies not
        included (the query terms' only)."""
        return sys.getsizeof(self._d) + len(self._d) * _LIST_HEADER + 8 * self._postings

    def exact_memory_bytes(self) -> int:
        read = sys.getsizeof(self._read) + sum(map(sys.getsizeof, self._read.values()))
        return sys.getsizeof(self._d) + sum(map(sys.getsizeof, self._d.values())) + read
