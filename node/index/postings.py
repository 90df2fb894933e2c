"""Posting lists: for each term, the ascending values (tweet ids or local document numbers) that hold it.

Pure data structure: no I/O, no clock. Never store a value twice in one list and never let a list go unsorted;
the executor bisects and slices these lists on the assumption that they are strictly ascending.

A table holds one kind of value: 'Q' (64-bit tweet ids) or 'I' (32-bit local document numbers, see index.py).
Storage by size, because most terms of a real corpus are rare and per-term overhead dominates memory:
  1 value         -> the int itself                    (no container at all)
  2..SMALL_MAX    -> bytes, native-endian items        (33 B header instead of array's 80 B plus slack)
  more            -> array(typecode) in a _Long         (amortised O(1) append at the end)

Why the _Long wrapper: the collector tracks arrays, and a dict that holds one tracked value is tracked too, so
every full pass of the collector walked the whole term dict (millions of entries at the full corpus: 128-257 ms a
pass, a node's longest stall). A _Long is a msgspec Struct without gc, so the dict holds no tracked value, and the
collector's next full pass untracks it for good (CPython untracks a dict of untracked values in a full pass);
only the arrays themselves stay tracked, each a leaf (they hold no references, so no cycle can pass through a
_Long). Measured in process: see the README's "The collector and the term dict".
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import accumulate

import msgspec

SMALL_MAX = 32  # above this a list becomes an array: copying <= 256 B per append beats 80 B of header per list
SMALL_MIN = 8  # an array shrinking to this many values goes back to bytes (hysteresis: no flapping at the border)

_INT_BYTES = 32  # sys.getsizeof of an int of 31..60 bits (smaller ints take 28: an upper bound)
_BYTES_HEADER = sys.getsizeof(b"")
_ARRAY_HEADER = sys.getsizeof(array("Q"))
_ARRAY_SLACK = 1.04  # array over-allocates newsize >> 4 (3 % on average) plus a few slots


class _Long(msgspec.Struct, gc=False):
    """A list longer than SMALL_MAX: its array, in a holder the collector does not track (see the module header)."""

    a: array


_LONG_SIZE = sys.getsizeof(_Long(array("Q")))
Value = int | bytes | _Long  # what the table holds for one term


class PostingsTable:
    """term -> strictly ascending values. add/remove are idempotent: adding a present value or removing an absent
    one changes nothing and returns False."""

    __slots__ = ("_arrays", "_d", "_item", "_key_bytes", "_max", "_postings", "_smalls", "promoted", "typecode")

    def __init__(self, typecode: str = "Q", track_promotions: bool = False) -> None:
        assert typecode in ("I", "Q"), typecode
        self.typecode = typecode
        self._item = array(typecode).itemsize
        assert self._item in (4, 8)
        self._max = (1 << (8 * self._item)) - 1
        self._d: dict[str, Value] = {}
        self._postings = 0
        self._key_bytes = 0  # sum of sys.getsizeof(term) over the terms held
        self._smalls = 0  # how many values are bytes
        self._arrays = 0  # how many values are arrays
        # terms whose list just became an array, for the owner to drain (it must: else it grows with the terms)
        self.promoted: list[str] | None = [] if track_promotions else None

    # -- reading ------------------------------------------------------------------------------------------

    def get(self, term: str) -> array | None:
        """The term's list as an array (a fresh one for the compact forms, the live one otherwise: never mutate)."""
        v = self._d.get(term)
        if v is None:
            return None
        if type(v) is int:
            return array(self.typecode, (v,))
        if type(v) is bytes:
            return array(self.typecode, v)
        assert type(v) is _Long
        return v.a

    def df(self, term: str) -> int:
        v = self._d.get(term)
        if v is None:
            return 0
        if type(v) is int:
            return 1
        if type(v) is bytes:
            return len(v) // self._item
        assert type(v) is _Long
        return len(v.a)

    def __contains__(self, term: str) -> bool:
        return term in self._d

    def terms(self) -> Iterator[str]:
        return iter(self._d)

    def terms_count(self) -> int:
        return len(self._d)

    def postings_count(self) -> int:
        return self._postings

    def memory_bytes(self) -> int:
        """O(1) estimate of everything the table owns: the dict, its key strings and every value with its header.
        Ints count 32 B, arrays their average over-allocation (tests hold it against exact_memory_bytes)."""
        singles = len(self._d) - self._smalls - self._arrays
        in_containers = self._postings - singles
        slack = _ARRAY_SLACK if self._arrays else 1.0
        return int(
            sys.getsizeof(self._d)
            + self._key_bytes
            + singles * _INT_BYTES
            + self._smalls * _BYTES_HEADER
            + self._arrays * (_ARRAY_HEADER + _LONG_SIZE)
            + in_containers * self._item * slack
        )

    def exact_memory_bytes(self) -> int:
        """A full O(terms) walk with sys.getsizeof: for tests and benchmarks, never for metrics."""
        total = sys.getsizeof(self._d)
        for t, v in self._d.items():
            total += sys.getsizeof(t) + sys.getsizeof(v)
            if type(v) is _Long:
                total += sys.getsizeof(v.a)
        return total

    # -- writing ------------------------------------------------------------------------------------------

    def add(self, term: str, x: int) -> bool:
        """Insert `x` into `term`'s list; True when it was not there. A new largest value is the fast path."""
        assert 0 <= x <= self._max, x
        d = self._d
        v = d.get(term)
        if v is None:
            d[term] = x
            self._key_bytes += sys.getsizeof(term)
        elif type(v) is int:
            if v == x:
                return False
            d[term] = array(self.typecode, (v, x) if v < x else (x, v)).tobytes()
            self._smalls += 1
        elif type(v) is bytes:
            n = self._item
            if x > int.from_bytes(v[-n:], sys.byteorder):
                if len(v) < SMALL_MAX * n:
                    d[term] = v + x.to_bytes(n, sys.byteorder)
                    self._postings += 1
                    return True
                a = array(self.typecode, v)
                a.append(x)
            else:
                a = array(self.typecode, v)
                i = bisect_left(a, x)
                if a[i] == x:
                    return False
                a.insert(i, x)
            if len(a) > SMALL_MAX:
                d[term] = _Long(a)
                self._smalls -= 1
                self._arrays += 1
                if self.promoted is not None:
                    self.promoted.append(term)
            else:
                d[term] = a.tobytes()
        else:
            assert type(v) is _Long
            a = v.a
            if x > a[-1]:
                a.append(x)
            else:
                i = bisect_left(a, x)
                if a[i] == x:
                    return False
                a.insert(i, x)
        self._postings += 1
        return True

    def add_all(self, terms: Iterable[str], x: int, fresh: bool = False) -> None:
        """add(t, x) for each term, with the common case inlined: x is the new largest value of a big list.
        `fresh` promises that x is larger than every value in the table (a new document number) and that the
        terms are distinct."""
        if fresh:
            self.add_fresh(terms, x)
            return
        get = self._d.get
        add = self.add
        slow = 0
        n = 0
        for n, t in enumerate(terms, 1):  # noqa: B007 (n counts the terms)
            v = get(t)
            if v.__class__ is _Long and (fresh or x > v.a[-1]):  # type: ignore[union-attr]
                v.a.append(x)  # type: ignore[union-attr]
            else:
                slow += 1
                add(t, x)  # counts its own posting
        self._postings += n - slow

    def add_fresh(self, terms: Iterable[str], x: int) -> None:
        """add_all(terms, x, fresh=True): x is above every value and the terms are distinct, so each form just
        grows at its end, inlined here (this loop is the bulk of indexing). A batched variant (C-level appends over
        the postings of thousands of tweets) measured no faster: the cost is the dict lookups' cache misses."""
        d = self._d
        get = d.get
        n = self._item
        bx = x.to_bytes(n, sys.byteorder)
        small_bytes = SMALL_MAX * n
        size = sys.getsizeof
        added = new_keys = key_bytes = new_smalls = 0
        for t in terms:
            v = get(t)
            cls = v.__class__
            if cls is _Long:
                v.a.append(x)  # type: ignore[union-attr]
            elif cls is bytes and len(v) < small_bytes:  # type: ignore[arg-type]
                d[t] = v + bx  # type: ignore[operator]
            elif v is None:
                d[t] = x
                new_keys += 1
                key_bytes += size(t)
                continue  # a singleton is no posting in a container: counted below
            elif cls is int:
                d[t] = v.to_bytes(n, sys.byteorder) + bx  # type: ignore[union-attr]
                new_smalls += 1
            else:
                self.add(t, x)  # bytes at the border: becomes an array; counts its own posting
                continue
            added += 1
        self._postings += added + new_keys
        self._key_bytes += key_bytes
        self._smalls += new_smalls

    def remove(self, term: str, x: int) -> bool:
        """Delete `x` from `term`'s list; True when it was there. A list left empty drops its term."""
        d = self._d
        v = d.get(term)
        if v is None:
            return False
        if type(v) is int:
            if v != x:
                return False
            del d[term]
            self._key_bytes -= sys.getsizeof(term)
        elif type(v) is bytes:
            a = array(self.typecode, v)
            i = bisect_left(a, x)
            if i == len(a) or a[i] != x:
                return False
            del a[i]
            if len(a) == 1:
                d[term] = a[0]
                self._smalls -= 1
            else:
                d[term] = a.tobytes()
        else:
            assert type(v) is _Long
            a = v.a
            i = bisect_left(a, x)
            if i == len(a) or a[i] != x:
                return False
            del a[i]
            if len(a) <= SMALL_MIN:
                d[term] = a.tobytes()
                self._arrays -= 1
                self._smalls += 1
        self._postings -= 1
        return True

    def drop(self, term: str) -> int:
        """Forget `term`'s whole list. -> how many values it held."""
        v = self._d.pop(term, None)
        if v is None:
            return 0
        self._key_bytes -= sys.getsizeof(term)
        if type(v) is int:
            k = 1
        elif type(v) is bytes:
            k = len(v) // self._item
            self._smalls -= 1
        else:
            assert type(v) is _Long
            k = len(v.a)
            self._arrays -= 1
        self._postings -= k
        return k

    # -- snapshots ----------------------------------------------------------------------------------------

    def dump_parts(self, prefix: str) -> list[tuple[str, bytes | memoryview]]:
        """The table as three buffers: the terms (one UTF-8 string, with each term's length in characters), each
        term's value count, and every value in term order. Loaded back by `load_parts` in a few C-level passes
        and one Python pass over the terms that hold more than one value."""
        d = self._d
        keys = list(d)
        klen = array("I", map(len, keys))
        counts = array("I")
        vals = array(self.typecode)
        item = self._item
        for v in d.values():
            if type(v) is int:
                counts.append(1)
                vals.append(v)
            elif type(v) is bytes:
                counts.append(len(v) // item)
                vals.frombytes(v)
            else:
                assert type(v) is _Long
                counts.append(len(v.a))
                vals.extend(v.a)
        return [
            (prefix + ".keys", "".join(keys).encode()),
            (prefix + ".klen", memoryview(klen).cast("B")),
            (prefix + ".n", memoryview(counts).cast("B")),
            (prefix + ".v", memoryview(vals).cast("B")),
        ]

    @classmethod
    def load_parts(
        cls, parts: dict[str, memoryview], prefix: str, typecode: str, track_promotions: bool = False
    ) -> PostingsTable:
        t = cls(typecode, track_promotions)
        text = bytes(parts[prefix + ".keys"]).decode()
        klen = array("I")
        klen.frombytes(parts[prefix + ".klen"])
        counts = array("I")
        counts.frombytes(parts[prefix + ".n"])
        raw = parts[prefix + ".v"]
        item = t._item
        assert len(klen) == len(counts) and len(raw) == item * sum(counts)
        ends = list(accumulate(klen))
        keys = [text[a:b] for a, b in zip([0, *ends][:-1], ends, strict=True)]
        vals = array(typecode)
        vals.frombytes(raw)
        pos = 0
        smalls = arrays = 0
        values: list[Value] = []
        put = values.append
        for c in counts:
            if c == 1:
                put(vals[pos])
            elif c <= SMALL_MAX:
                put(bytes(raw[pos * item : (pos + c) * item]))
                smalls += 1
            else:
                a = array(typecode)
                a.frombytes(raw[pos * item : (pos + c) * item])
                put(_Long(a))
                arrays += 1
            pos += c
        t._d = dict(zip(keys, values, strict=True))
        t._postings = pos
        t._smalls, t._arrays = smalls, arrays
        size = sys.getsizeof
        t._key_bytes = sum(map(size, keys))
        return t
