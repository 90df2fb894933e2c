"""The query executor: turns a query AST into a lazy, newest-first stream over ascending posting arrays.

Pure: no I/O, no clock. It must never scan a whole posting list to answer a top-k query: every cursor walks
from the high end, AND leapfrogs with bisect, OR merges lazily with a heap, NOT probes by bisect.

Values are whatever the arrays hold (tweet ids or local document numbers); the caller maps them.
Exactness: a Phrase is only known by its words here, so compile() builds a SUPERSET of the matches ("over");
an excluded subtree (must_not) therefore uses a SUBSET ("under", where a Phrase is empty) so that the
exclusion never drops a real match. The caller's `accept` then makes the answer exact.
A phrase may also get ("since", docno, list) parts from `pairs` (pairs.py): the set `list` united with every value
below docno, still a superset of the phrase's matches; the AND of words and pairs is walked range by range.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from itertools import islice

import numpy as np

from node.query.ast import And, Node, Or, Phrase, Term

Lookup = Callable[[str], "array | None"]
PairPlans = Callable[[Sequence[str]], list]  # a phrase's words -> its ("since", docno, list) parts

# A plan: None = matches nothing; array = one term's list; ("and", pos, neg); ("or", children);
# ("since", docno, list) = list plus every value below docno (only ever inside an "and").
Plan = object


def compile_plan(n: Node, get: Lookup, over: bool = True, pairs: PairPlans | None = None) -> Plan:
    """Plan for `n`: a superset of its matches when `over`, a subset otherwise (equal when there is no Phrase)."""
    if isinstance(n, Term):
        a = get(n.term)
        return a if a is not None and len(a) else None
    if isinstance(n, Phrase):
        if not over:
            return None
        parts = [compile_plan(Term(w), get) for w in dict.fromkeys(n.words)]
        if pairs is not None:
            parts += pairs(n.words)
        return _and(parts, [])
    if isinstance(n, Or):
        kids = [p for p in (compile_plan(c, get, over, pairs) for c in n.children) if p is not None]
        if not kids:
            return None
        if len(kids) == 1:
            return kids[0]
        return ("or", kids)
    assert isinstance(n, And), n
    pos = [compile_plan(c, get, over, pairs) for c in n.must]
    neg = [compile_plan(c, get, not over, pairs) for c in n.must_not]
    return _and(pos, neg)


def _and(pos: list[Plan], neg: list[Plan]) -> Plan:
    if not pos or any(p is None for p in pos):
        return None
    flat_pos: list[Plan] = []
    flat_neg: list[Plan] = [p for p in neg if p is not None]
    for p in pos:
        if isinstance(p, tuple) and p[0] == "and":
            flat_pos.extend(p[1])
            flat_neg.extend(p[2])
        else:
            flat_pos.append(p)
    flat_pos.sort(key=_size)  # the rarest list drives the leapfrog
    if len(flat_pos) == 1 and not flat_neg:
        return flat_pos[0]
    return ("and", flat_pos, flat_neg)


def _size(p: Plan) -> int:
    if isinstance(p, array):
        return len(p)
    assert isinstance(p, tuple)
    if p[0] == "since":
        return len(p[2])
    if p[0] == "and":
        return _size(p[1][0])
    return sum(_size(c) for c in p[1])


# -- cursors: next_le(x) = the largest match <= x, or -1. Calls must come with non-increasing x. --------------


class _TermCur:
    __slots__ = ("a", "hi", "lo")

    def __init__(self, a: array, lo_value: int) -> None:
        self.a = a
        self.lo = bisect_left(a, lo_value)
        self.hi = len(a)  # a[lo:hi] are the values not yet ruled out

    def next_le(self, x: int) -> int:
        a = self.a
        hi = self.hi
        if hi > self.lo and a[hi - 1] <= x:
            return a[hi - 1]
        hi = self.hi = bisect_right(a, x, self.lo, hi)
        return a[hi - 1] if hi > self.lo else -1


class _AndCur:
    __slots__ = ("neg", "pos")

    def __init__(self, pos: list[Cursor], neg: list[Cursor]) -> None:
        self.pos = pos
        self.neg = neg

    def next_le(self, x: int) -> int:
        pos = self.pos
        n = len(pos)
        while True:
            c = pos[0].next_le(x)
            if c < 0:
                return -1
            agree = 1
            k = 1 % n
            while agree < n:
                v = pos[k].next_le(c)
                if v < 0:
                    return -1
                if v == c:
                    agree += 1
                else:
                    c = v
                    agree = 1
                k = k + 1 if k + 1 < n else 0
            for ng in self.neg:
                if ng.next_le(c) == c:
                    x = c - 1
                    break
            else:
                return c


class _OrCur:
    __slots__ = ("heap", "kids", "started")

    def __init__(self, kids: list[Cursor]) -> None:
        self.kids = kids
        self.heap: list[tuple[int, int]] = []  # (-value, kid index): the newest current value on top
        self.started = False

    def next_le(self, x: int) -> int:
        heap = self.heap
        if not self.started:
            self.started = True
            for i, k in enumerate(self.kids):
                v = k.next_le(x)
                if v >= 0:
                    heap.append((-v, i))
            heapq.heapify(heap)
        while heap and -heap[0][0] > x:
            i = heap[0][1]
            v = self.kids[i].next_le(x)
            if v >= 0:
                heapq.heapreplace(heap, (-v, i))
            else:
                heapq.heappop(heap)
        return -heap[0][0] if heap else -1


class _SinceCur:
    """list united with [0, since): at or above `since` the list's values, below it every value."""

    __slots__ = ("cur", "since")

    def __init__(self, since: int, a: array, lo: int) -> None:
        self.since = since
        self.cur = _TermCur(a, max(lo, since))

    def next_le(self, x: int) -> int:
        if x < self.since:
            return x
        v = self.cur.next_le(x)
        return v if v >= 0 else self.since - 1


Cursor = _TermCur | _AndCur | _OrCur | _SinceCur


def cursor(p: Plan, lo: int) -> Cursor:
    if isinstance(p, array):
        return _TermCur(p, lo)
    assert isinstance(p, tuple)
    if p[0] == "since":
        return _SinceCur(p[1], p[2], lo)
    if p[0] == "and":
        return _AndCur([cursor(c, lo) for c in p[1]], [cursor(c, lo) for c in p[2]])
    return _OrCur([cursor(c, lo) for c in p[1]])


def iter_desc(p: Plan, lo: int, hi: int) -> Iterator[int]:
    """The plan's values in [lo, hi], largest first, lazily."""
    if p is None or hi < lo:
        return
    if isinstance(p, array):
        i = bisect_right(p, hi)
        j = bisect_left(p, lo)
        while i > j:  # in slices: a plain slice per batch is far cheaper than a cursor call per value
            k = max(j, i - 256)
            yield from reversed(p[k:i])
            i = k
        return
    if p[0] == "and" and all(isinstance(c, array) for c in p[2]):  # type: ignore[index]
        if all(isinstance(c, array) for c in p[1]):  # type: ignore[index]
            yield from _and_terms_desc(p[1], p[2], lo, hi)  # type: ignore[index]
            return
        if all(isinstance(c, array) or c[0] == "since" for c in p[1]):  # type: ignore[index]
            yield from _and_since_desc(p[1], p[2], lo, hi)  # type: ignore[index]
            return
    cur = cursor(p, lo)
    x = hi
    while True:
        v = cur.next_le(x)
        if v < 0:
            return
        yield v
        x = v - 1


def _and_terms_desc(pos: list[array], neg: list[array], lo: int, hi: int) -> Iterator[int]:
    """The AND of plain term lists (pos rarest first) minus the neg lists, largest first: the common case.
    The rarest list drives, in chunks from its high end that double in size (a top-100 rarely needs more than
    the first one or two). Each other list only matters between the chunk's smallest and largest value: where
    that slice is short it is intersected as a set (C speed), where it is long the candidates are probed by
    binary searches (a leap over the long list). Excluded lists are subtracted the same way."""
    drv = pos[0]
    d_lo = bisect_left(drv, lo)
    i = bisect_right(drv, hi)
    size = _CHUNK_FIRST
    while i > d_lo:
        j = max(d_lo, i - size)
        size = min(2 * size, _CHUNK_MAX)
        if i - j >= _NUMPY_CHUNK:
            found = _and_chunk_np(drv, j, i, pos[1:], neg)
            i = j
            if found:
                yield from found
            continue
        chunk = drv[j:i]
        i = j
        c_min, c_max = chunk[0], chunk[-1]
        cands: set[int] | list[int] = set(chunk)
        for a in pos[1:]:
            s = bisect_left(a, c_min)
            e = bisect_right(a, c_max, s)
            if e - s <= _SET_RATIO * len(cands):
                cands = set(cands).intersection(a[s:e])
            else:
                cands = _probe(a, cands, s, e, True)
            if not cands:
                break
        for a in neg:
            if not cands:
                break
            s = bisect_left(a, c_min)
            e = bisect_right(a, c_max, s)
            if e - s <= _SET_RATIO * len(cands):
                cands = set(cands).difference(a[s:e])
            else:
                cands = _probe(a, cands, s, e, False)
        if cands:
            yield from sorted(cands, reverse=True)


def _and_chunk_np(drv: array, j: int, i: int, others: list[array], neg: list[array]) -> list[int]:
    """drv[j:i] (ascending) kept where every `others` list holds the value and no `neg` list does, largest first:
    each list's slice between the chunk's ends searched for all the candidates at once (numpy searchsorted), with
    no Python int per value until the survivors. No view of a live array outlives this call (see _in_slice), so
    none outlives a suspended generator."""
    cands = np.frombuffer(drv[j:i], dtype=_DTYPES[drv.typecode])  # over a copy of the slice: drv may grow
    c_min, c_max = drv[j], drv[i - 1]
    for a, keep in [(a, True) for a in others] + [(a, False) for a in neg]:
        s = bisect_left(a, c_min)
        e = bisect_right(a, c_max, s)
        if e == s:
            if keep:
                return []
            continue
        hit = _in_slice(a, s, e, cands)
        cands = cands[hit if keep else ~hit]
        if not len(cands):
            return []
    return cands[::-1].tolist()  # type: ignore[no-any-return]


def _and_since_desc(pos: list, neg: list[array], lo: int, hi: int) -> Iterator[int]:
    """An AND of term lists and ("since", docno, list) parts: range by range from the top, each range an AND of
    plain lists (a "since" part is its list at or above its docno and no constraint below)."""
    plain = [c for c in pos if isinstance(c, array)]
    since = [c for c in pos if not isinstance(c, array)]
    cuts = sorted({s for _, s, _ in since if lo < s <= hi}, reverse=True)
    top_ = hi
    for seg_lo in [*cuts, lo]:
        active = plain + [a for _, s, a in since if s <= seg_lo]
        active.sort(key=len)
        yield from _and_terms_desc(active, neg, seg_lo, top_)
        top_ = seg_lo - 1


_CHUNK_FIRST = 128  # values of the driving list examined first; then 256, 512, ...
_CHUNK_MAX = 8192  # bounds the work (and memory) spent past the values a caller ends up taking
_SET_RATIO = 8  # a slice up to this many times the candidates is cheaper to intersect than to probe
_NUMPY_CHUNK = 512  # a chunk of the driving list this long is intersected by numpy (_and_chunk_np), not as sets


def _member(a: array, x: int, s: int, e: int) -> bool:
    k = bisect_left(a, x, s, e)
    return k < e and a[k] == x


def _probe(a: array, cands: set[int] | list[int], s: int, e: int, keep: bool) -> list[int]:
    """The candidates that are (keep) or are not in a[s:e] (non-empty), by binary searches: one bisect each for a
    few, else one numpy searchsorted over all (_in_slice: ~50x cheaper than a Python call per candidate, measured)."""
    if len(cands) < _NUMPY_MIN:
        return [c for c in cands if _member(a, c, s, e) == keep]
    c = np.fromiter(cands, dtype=_DTYPES[a.typecode], count=len(cands))
    hit = _in_slice(a, s, e, c)
    return c[hit if keep else ~hit].tolist()  # type: ignore[no-any-return]


def _in_slice(a: array, s: int, e: int, c: np.ndarray) -> np.ndarray:
    """Which of the values `c` are in a[s:e] (non-empty, ascending): one searchsorted over all of them. The numpy
    view of the array is dropped before returning: while it lives the array cannot grow."""
    view = np.frombuffer(a, dtype=_DTYPES[a.typecode], count=e - s, offset=s * a.itemsize)
    hit = view[np.minimum(np.searchsorted(view, c), e - s - 1)] == c
    del view
    return hit


_NUMPY_MIN = 8  # candidates from which one vectorised search beats bisect calls
_DTYPES = {"I": np.uint32, "Q": np.uint64}


def top(p: Plan, lo: int, hi: int, n: int) -> list[int]:
    """The n largest values of the plan in [lo, hi], largest first. A single term is one slice of its tail."""
    if p is None or hi < lo or n <= 0:
        return []
    if isinstance(p, array):
        i = bisect_right(p, hi)
        j = max(bisect_left(p, lo, 0, i), i - n)
        return p[j:i][::-1].tolist()
    if p[0] == "or" and all(isinstance(c, array) for c in p[1]):  # type: ignore[index]
        # the n largest of a union lie among the n largest of each list: slices and one sort, all in C
        parts = []
        for a in p[1]:  # type: ignore[index]
            i = bisect_right(a, hi)
            parts.append(a[max(bisect_left(a, lo, 0, i), i - n) : i])
        return sorted(set().union(*parts), reverse=True)[:n]
    return list(islice(iter_desc(p, lo, hi), n))
