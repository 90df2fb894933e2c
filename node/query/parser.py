"""The query parser (CONTRACT §3): query text -> `node.query.ast.Query`, or InvalidQuery saying what and where.

Pure: no I/O, no clock. It never guesses: anything ambiguous is an InvalidQuery whose message names the
position (counted from 1). Words are analysed only through `node.text.analyzer`, the code that indexes tweets.

Grammar (white space separates parts; `OR` is the uppercase word on its own):
    query  := part* END                 implicit AND between parts
    part   := unary ("OR" unary)*       OR binds tighter than AND: `a b OR c` = a AND (b OR c)
    unary  := "-" atom | atom           `-` only at the start of a part; an OR alternative is never negated
    atom   := "(" part* ")" | '"' text '"' | word
    word   := from:NAME | lang:XX | since:DATE | until:DATE | near:LAT,LON | within:Nkm | #tag | @name | plain
Choices the contract leaves open:
  - `(` opens a group only at the start of a part, and a `)` ends a word only while a group is open, so `:(`
    and `:)` in a word stay punctuation; a `)` standing alone that closes nothing is an error.
  - `#ice-cream` (a sign word with more word terms) = `#ice` AND the phrase "ice cream": the tweet text
    `#ice-cream` matches it, `#ice ... cream` does not.
  - Operators are lowercase; `from:"bob smith"` names a user with spaces. since/until/near/within are filters:
    top level only, never negated, never in an OR. Two since: keep the later day, two until: the earlier.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from typing import NamedTuple

from node.errors import InvalidQuery
from node.query.ast import And, Near, Node, Or, Phrase, Query, Term
from node.text.analyzer import analyse, normalise, word_terms

QUERY_CHARS_MAX = 1000
# Index terms, counting every word of every phrase: bounds the postings a planner fetches.
QUERY_TERMS_MAX = 64
GROUP_DEPTH_MAX = 16  # nested parentheses: bounds the recursion

_DAY_MS = 86_400_000
_EPOCH_DAY = _dt.date(1970, 1, 1).toordinal()
_KM_PER_MI = 1.609344

_OPERATOR = re.compile(r"(from|lang|since|until|near|within):(.*)", re.DOTALL)
_FILTERS = frozenset({"since", "until", "near", "within"})
# ASCII digits only: \d and float() would also take Arabic-Indic digits, 'nan', 'inf', '1_0' and exponents.
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_NUM = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_LATLON = re.compile(rf"([+-]?{_NUM}),([+-]?{_NUM})")
_DISTANCE = re.compile(rf"({_NUM})(km|mi)", re.IGNORECASE)


def _err(pos: int, what: str) -> InvalidQuery:
    return InvalidQuery(f"{what} (at position {pos + 1})", field="q")


class _Tok(NamedTuple):
    kind: str  # "(", ")", "-", "OR", "phrase", "word", "end"
    text: str  # a phrase's text without its quotes; a word as written
    pos: int  # 0-based offset in the query


class _Pos(NamedTuple):
    node: Node


class _Neg(NamedTuple):
    node: Node
    pos: int


class _Filter(NamedTuple):
    op: str
    value: str
    pos: int


class _Ignored(NamedTuple):
    """A part with no term (`!!!`, `""`). `neg_pos` is where its `-` was, so `a OR -!!!` is still refused."""

    neg_pos: int | None


_Part = _Pos | _Neg | _Filter | _Ignored


def parse(q: str) -> Query:
    if len(q) > QUERY_CHARS_MAX:
        raise _err(
            QUERY_CHARS_MAX, f"the query is {len(q)} characters long, at most {QUERY_CHARS_MAX} are allowed"
        )
    if not q.strip():
        raise InvalidQuery("the query is empty: give at least one word to search for", field="q")
    p = _Parser(_tokens(q))
    parts = p.seq(0)
    end = p.next()
    assert end.kind == "end", end  # the tokenizer refuses a ')' that closes nothing
    must, must_not = _combine(parts)
    if not must:
        negs = [x.pos for x in parts if isinstance(x, _Neg)]
        if negs:
            raise _err(negs[0], "the query has only negative parts (-x): add at least one word to look for")
        raise InvalidQuery(
            "the query has no searchable terms: every part of it is punctuation, a filter or ignored",
            field="q",
        )
    since_ms, until_ms, near = _filters([x for x in parts if isinstance(x, _Filter)])
    return Query(And(tuple(must), tuple(must_not)), since_ms=since_ms, until_ms=until_ms, near=near, text=q)


def _tokens(q: str) -> list[_Tok]:
    out: list[_Tok] = []
    i, n, depth = 0, len(q), 0
    while i < n:
        c = q[i]
        if c.isspace():
            i += 1
        elif c == "(":
            depth += 1
            out.append(_Tok("(", c, i))
            i += 1
        elif c == ")":
            if depth == 0:
                raise _err(i, "unbalanced parenthesis: this ')' closes no '('")
            depth -= 1
            out.append(_Tok(")", c, i))
            i += 1
        elif c == '"':
            j = q.find('"', i + 1)
            if j < 0:
                raise _err(i, "unbalanced quotes: this '\"' is never closed")
            out.append(_Tok("phrase", q[i + 1 : j], i))
            i = j + 1
        elif c == "-" and i + 1 < n and not q[i + 1].isspace():
            out.append(_Tok("-", c, i))
            i += 1
        else:
            j = i
            while j < n and not q[j].isspace() and q[j] != '"' and not (q[j] == ")" and depth):
                j += 1
            word = q[i:j]
            if word == "from:" and j < n and q[j] == '"':  # from:"bob smith": user names may hold spaces
                k = q.find('"', j + 1)
                if k < 0:
                    raise _err(j, "unbalanced quotes: this '\"' is never closed")
                word, j = word + q[j + 1 : k], k + 1
            negated = bool(out) and out[-1].kind == "-"  # `-OR` excludes the word 'or'
            out.append(_Tok("OR" if word == "OR" and not negated else "word", word, i))
            i = j
    out.append(_Tok("end", "", n))
    return out


class _Parser:
    """Recursive descent over the tokens; counts index terms as it builds them (QUERY_TERMS_MAX)."""

    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.i = 0
        self.terms = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        t = self.toks[self.i]
        if t.kind != "end":
            self.i += 1
        return t

    def seq(self, depth: int) -> list[_Part]:
        """Parts up to the end or the ')' of the enclosing group (left for the caller)."""
        parts: list[_Part] = []
        while (t := self.peek()).kind not in ("end", ")"):
            if t.kind == "OR":  # or_expr consumes every OR after an alternative: this one starts the sequence
                if self.toks[self.i + 1].kind in ("end", ")"):
                    raise _err(t.pos, "a lone OR: it needs a term on each side")
                raise _err(t.pos, "OR has nothing before it")
            parts.append(self.or_expr(depth))
        return parts

    def or_expr(self, depth: int) -> _Part:
        first = self.peek()
        alts = [self.unary(depth)]
        starts = [first]
        while self.peek().kind == "OR":
            t = self.next()
            nxt = self.peek()
            if nxt.kind in ("end", ")"):
                raise _err(t.pos, "OR has nothing after it")
            if nxt.kind == "OR":
                raise _err(nxt.pos, "OR follows another OR")
            starts.append(nxt)
            alts.append(self.unary(depth))
        if len(alts) == 1:
            return alts[0]
        children: list[Node] = []
        for a, s in zip(alts, starts, strict=True):
            if isinstance(a, _Neg) or (isinstance(a, _Ignored) and a.neg_pos is not None):
                raise _err(s.pos, "an OR alternative cannot be negated: write `a -b`, or `-(a OR b)`")
            if isinstance(a, _Filter):
                raise _err(a.pos, f"{a.op}: is a filter and cannot be an OR alternative")
            if isinstance(a, _Pos):
                n = _unwrap(a.node)
                children.extend(n.children if isinstance(n, Or) else (n,))
        if not children:
            return _Ignored(None)
        return _Pos(children[0] if len(children) == 1 else Or(tuple(children)))

    def unary(self, depth: int) -> _Part:
        t = self.peek()
        if t.kind != "-":
            return self.atom(depth)
        self.next()
        nxt = self.peek()
        if nxt.kind == "-":
            raise _err(t.pos, "double negation '--': exclude a thing once")
        if nxt.kind in ("end", ")"):
            raise _err(t.pos, "'-' has nothing after it to exclude")
        part = self.atom(depth)
        if isinstance(part, _Filter):
            raise _err(t.pos, f"{part.op}: is a filter and cannot be negated")
        if isinstance(part, _Ignored):
            return _Ignored(t.pos)
        assert isinstance(part, _Pos), part  # atom never returns _Neg
        return _Neg(_unwrap(part.node), t.pos)

    def atom(self, depth: int) -> _Part:
        t = self.next()
        if t.kind == "phrase":
            return self.words(word_terms(t.text), t.pos)
        if t.kind == "word":
            return self.word(t)
        assert t.kind == "(", t  # callers stop at ')', 'end' and 'OR' before calling atom
        if depth >= GROUP_DEPTH_MAX:
            raise _err(t.pos, f"parentheses nested deeper than {GROUP_DEPTH_MAX} levels")
        parts = self.seq(depth + 1)
        if self.next().kind != ")":
            raise _err(t.pos, "unbalanced parenthesis: this '(' is never closed")
        if not parts:
            raise _err(t.pos, "empty parentheses '()'")
        for x in parts:
            if isinstance(x, _Filter):
                raise _err(x.pos, f"{x.op}: is a filter and cannot be inside parentheses")
        must, must_not = _combine(parts)
        if not must and must_not:
            raise _err(t.pos, "the group has only negative parts (-x): add at least one word to look for")
        if not must:
            return _Ignored(None)
        return _Pos(And(tuple(must), tuple(must_not)))

    def word(self, t: _Tok) -> _Part:
        m = _OPERATOR.fullmatch(t.text)
        if m:
            op, value = m.group(1), m.group(2)
            if op == "from" and value.startswith("@"):
                value = value[1:]
            if not value:
                raise _err(t.pos, f"{op}: needs a value, e.g. {_EXAMPLES[op]}")
            if op in _FILTERS:
                return _Filter(op, value, t.pos)
            return self.term(f"{op}:{normalise(value)}", t.pos)
        s = normalise(t.text)
        if s[:1] in ("#", "@"):
            a = analyse(t.text)
            signed = a.hashtags if s[0] == "#" else a.mentions
            if a.words and signed and a.words[0] == signed[0]:
                tag = self.term(s[0] + signed[0], t.pos)
                if len(a.words) == 1:
                    return tag
                rest = self.words(list(a.words), t.pos)
                assert isinstance(rest, _Pos), rest
                return _Pos(And((tag.node, rest.node)))
        return self.words(word_terms(t.text), t.pos)

    def term(self, term: str, pos: int) -> _Pos:
        self._count(1, pos)
        return _Pos(Term(term))

    def words(self, ws: list[str], pos: int) -> _Part:
        if not ws:
            return _Ignored(None)
        self._count(len(ws), pos)
        return _Pos(Term(ws[0]) if len(ws) == 1 else Phrase(tuple(ws)))

    def _count(self, n: int, pos: int) -> None:
        self.terms += n
        if self.terms > QUERY_TERMS_MAX:
            raise _err(pos, f"the query has more than {QUERY_TERMS_MAX} terms; the limit is passed here")


_EXAMPLES = {
    "from": "from:bob",
    "lang": "lang:en",
    "since": "since:2011-10-18",
    "until": "until:2011-10-19",
    "near": "near:40.71,-74.01",
    "within": "within:10km",
}


def _unwrap(n: Node) -> Node:
    """A one-child And is its child (inside an Or or under a '-')."""
    if isinstance(n, And) and len(n.must) == 1 and not n.must_not:
        return n.must[0]
    return n


def _combine(parts: list[_Part]) -> tuple[list[Node], list[Node]]:
    """The AND of parts as (must, must_not); a positive And merges into it (AND is associative)."""
    must: list[Node] = []
    must_not: list[Node] = []
    for p in parts:
        if isinstance(p, _Pos):
            if isinstance(p.node, And):
                must.extend(p.node.must)
                must_not.extend(p.node.must_not)
            else:
                must.append(p.node)
        elif isinstance(p, _Neg):
            must_not.append(p.node)
    return must, must_not


def _filters(fs: list[_Filter]) -> tuple[int | None, int | None, Near | None]:
    since_ms: int | None = None
    until_ms: int | None = None
    near: tuple[_Filter, float, float] | None = None
    within: tuple[_Filter, float] | None = None
    for f in fs:
        if f.op == "since":
            ms = _day_ms(f)
            since_ms = ms if since_ms is None else max(since_ms, ms)
        elif f.op == "until":
            ms = _day_ms(f)
            until_ms = ms if until_ms is None else min(until_ms, ms)
        elif f.op == "near":
            if near is not None:
                raise _err(f.pos, "near: is given twice; a query has one point")
            near = (f, *_lat_lon(f))
        else:
            if within is not None:
                raise _err(f.pos, "within: is given twice; a query has one distance")
            within = (f, _km(f))
    if near is not None and within is None:
        raise _err(near[0].pos, "near: needs a distance too, e.g. near:40.71,-74.01 within:10km")
    if within is not None and near is None:
        raise _err(within[0].pos, "within: needs a point too, e.g. near:40.71,-74.01 within:10km")
    if near is None or within is None:
        return since_ms, until_ms, None
    return since_ms, until_ms, Near(near[1], near[2], within[1])


def _day_ms(f: _Filter) -> int:
    m = _DATE.fullmatch(f.value)
    if not m:
        raise _err(f.pos, f"{f.op}: wants a date as YYYY-MM-DD, got {f.value!r}")
    try:
        day = _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise _err(f.pos, f"{f.op}:{f.value} is not a real date") from None
    return (day.toordinal() - _EPOCH_DAY) * _DAY_MS


def _lat_lon(f: _Filter) -> tuple[float, float]:
    m = _LATLON.fullmatch(f.value)
    if not m:
        raise _err(f.pos, f"near: wants LAT,LON in decimal degrees (e.g. near:40.71,-74.01), got {f.value!r}")
    lat, lon = float(m.group(1)), float(m.group(2))
    if not -90.0 <= lat <= 90.0:
        raise _err(f.pos, f"near: latitude {m.group(1)} is outside -90..90")
    if not -180.0 <= lon <= 180.0:
        raise _err(f.pos, f"near: longitude {m.group(2)} is outside -180..180")
    return lat, lon


def _km(f: _Filter) -> float:
    m = _DISTANCE.fullmatch(f.value)
    if not m:
        raise _err(f.pos, f"within: wants a distance like 10km or 5mi, got {f.value!r}")
    km = float(m.group(1)) * (_KM_PER_MI if m.group(2).lower() == "mi" else 1.0)
    if not math.isfinite(km) or km <= 0.0:
        raise _err(f.pos, f"within: the distance must be a finite number above 0, got {f.value!r}")
    return km
