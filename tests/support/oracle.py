"""A second, independent statement of CONTRACT §3 for the tests: which of the tweets that were SENT match a query,
and in which order a page lists them (README: result_type). Written from the contract's words, not from the code:
it imports nothing from `node`, so a misreading in node.query / node.text / the index is not shared by the model
the cluster tests compare with. When the product and this disagree, read the contract and decide; do not bend
this to the product. Plain and slow on purpose (a scan of every document per query).

Rules, as CONTRACT §3 states them (and the choices it leaves open, as the README and the parser's header document):
  analysis  NFKC, then casefold; `http://...`/`https://...` up to white space give nothing; terms are the runs of
            \\w (Python); a run right after `#` is also `#run`, after `@` also `@run`; runs over 64 characters are
            dropped (with their sign). `#`/`@` runs keep their place in the word sequence (phrases).
  query     parts separated by white space are ANDed; `OR` (upper case, alone) joins the parts around it and binds
            tighter than AND; `-x` at the start of a part excludes x; `( ... )` groups; `"..."` is the phrase of
            its word runs (a `#`/`@` inside is ignored); a word that analyses into several runs is their phrase,
            into none is ignored; `#tag` / `@name` is the signed term only (`#ice-cream`: #ice AND "ice cream");
            `from:NAME` (also `from:@NAME`, `from:"a b"`) the casefolded user; `lang:XX` the lang ignoring case;
            `since:D` created on or after day D (UTC), `until:D` before it; `near:LAT,LON within:Nkm|Nmi` geo
            within that great-circle distance. A query must have a positive part.
  order     recent: id descending. popular: the newest 1,000 matches by likes + 2 x retweets, ties newest first.
            mixed: of those, the ones with any engagement first ("up to a quarter of a page": count // 4 of
            them), then the newest of the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

TERM_MAX = 64
POPULAR_POOL = 1000
EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
KM_PER_MILE = 1.609344

_URL = re.compile(r"https?://\S*")
_RUN = re.compile(r"\w+")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# ---------------------------------------------------------------- documents: what was sent


@dataclasses.dataclass(frozen=True)
class Doc:
    id: int
    created_at_ms: int
    user: str
    text: str
    lang: str | None = None
    geo: tuple[float, float] | None = None  # (lat, lon)
    likes: int = 0
    retweets: int = 0

    def edited(self, **changes: Any) -> Doc:
        """The document after a PATCH of text / likes / retweets."""
        return dataclasses.replace(self, **changes)


def iso_ms(s: str) -> int:
    """An ISO-8601 time (`Z`, an offset, or naive = UTC) -> ms since 1970."""
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    d = t - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1000 + d.microseconds // 1000


def geo_of(v: Any) -> tuple[float, float] | None:
    """The README's geo forms: {"lat","lon"}, [lat, lon], {"type": "Point", "coordinates": [lat, lon]}."""
    if v is None:
        return None
    if isinstance(v, dict):
        v = v["coordinates"] if "coordinates" in v else [v["lat"], v["lon"]]
    lat, lon = v
    return float(lat), float(lon)


def doc_of(body: dict[str, Any], answer: dict[str, Any] | None = None, tweet_id: int | None = None) -> Doc:
    """The document a POST body describes. Only what the client did not send comes from the answer: the id a
    node assigned, and the creation time when the body had none (the node's clock)."""
    tid = body.get("id", tweet_id if tweet_id is not None else (answer or {}).get("id"))
    assert tid is not None, "an id: sent, or from the answer"
    created = body.get("created_at")
    if created is None:
        assert answer is not None, "a body without created_at needs the answer's"
        created = answer["created_at"]
    return Doc(
        id=int(tid),
        created_at_ms=iso_ms(created),
        user=body["user"],
        text=body["text"],
        lang=body.get("lang"),
        geo=geo_of(body.get("geo")),
        likes=int(body.get("likes") or 0),
        retweets=int(body.get("retweets") or 0),
    )


# ---------------------------------------------------------------- analysis (CONTRACT §3, "Analysis")


def fold(s: str) -> str:
    return unicodedata.normalize("NFKC", s).casefold()


@dataclasses.dataclass(frozen=True)
class Text:
    words: tuple[str, ...]  # every kept run, in order (phrases are matched on this)
    tags: frozenset[str]  # runs right after '#'
    names: frozenset[str]  # runs right after '@'


@functools.lru_cache(maxsize=1 << 16)
def analyse(text: str) -> Text:
    s = _URL.sub(" ", fold(text))
    words: list[str] = []
    tags: set[str] = set()
    names: set[str] = set()
    for m in _RUN.finditer(s):
        if len(m.group()) > TERM_MAX:
            continue
        words.append(m.group())
        before = s[m.start() - 1] if m.start() > 0 else ""
        if before == "#":
            tags.add(m.group())
        elif before == "@":
            names.add(m.group())
    return Text(tuple(words), frozenset(tags), frozenset(names))


def runs(text: str) -> list[str]:
    """The word runs of a piece of query text, signs ignored."""
    return list(analyse(text).words)


def has_phrase(words: tuple[str, ...], phrase: list[str]) -> bool:
    n = len(phrase)
    want = tuple(phrase)
    return any(words[i : i + n] == want for i in range(len(words) - n + 1))


# ---------------------------------------------------------------- queries (CONTRACT §3, "Query syntax")


class QueryError(ValueError):
    pass


@dataclasses.dataclass
class _Ctx:
    doc: Doc
    text: Text


Pred = Callable[[_Ctx], bool]
_IGNORED = None  # a part without any term: it takes no part in the AND / OR


def _tokens(q: str) -> list[tuple[str, str]]:
    """(kind, text): kinds "(", ")", "-", "OR", "phrase", "word"."""
    out: list[tuple[str, str]] = []
    i, depth = 0, 0
    while i < len(q):
        c = q[i]
        if c.isspace():
            i += 1
        elif c == "(":
            out.append(("(", c))
            depth += 1
            i += 1
        elif c == ")":
            if depth == 0:
                raise QueryError("a ')' closes nothing")
            out.append((")", c))
            depth -= 1
            i += 1
        elif c == '"':
            j = q.find('"', i + 1)
            if j < 0:
                raise QueryError("unbalanced quotes")
            out.append(("phrase", q[i + 1 : j]))
            i = j + 1
        elif c == "-" and i + 1 < len(q) and not q[i + 1].isspace():
            out.append(("-", c))
            i += 1
        else:
            j = i
            while j < len(q) and not q[j].isspace() and q[j] != '"' and not (q[j] == ")" and depth):
                j += 1
            word = q[i:j]
            if word == "from:" and j < len(q) and q[j] == '"':
                k = q.find('"', j + 1)
                if k < 0:
                    raise QueryError("unbalanced quotes")
                word, j = word + q[j + 1 : k], k + 1
            negated = bool(out) and out[-1][0] == "-"
            out.append(("OR" if word == "OR" and not negated else "word", word))
            i = j
    return out


def _day_ms(value: str) -> int:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise QueryError(f"bad date {value!r}")
    d = dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    return (d - _EPOCH).days * 86_400_000


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Vincenty's formula on a sphere (atan2 form: exact at every distance)."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.hypot(math.cos(p2) * math.sin(dl), math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl))
    x = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return EARTH_RADIUS_KM * math.atan2(y, x)


def _phrase(ws: list[str]) -> Pred | None:
    if not ws:
        return _IGNORED
    if len(ws) == 1:
        w = ws[0]
        return lambda c: w in c.text.words
    return lambda c: has_phrase(c.text.words, ws)


def _word(word: str, filters: dict[str, list[str]]) -> Pred | None:
    m = re.fullmatch(r"(from|lang|since|until|near|within):(.*)", word, re.DOTALL)
    if m:
        op, value = m.group(1), m.group(2)
        if op == "from":
            name = fold(value[1:] if value.startswith("@") else value)
            return lambda c: fold(c.doc.user) == name
        if op == "lang":
            lang = fold(value)
            return lambda c: c.doc.lang is not None and fold(c.doc.lang) == lang
        filters.setdefault(op, []).append(value)
        return _IGNORED  # filters apply to the whole query (below)
    s = fold(word)
    if s[:1] in ("#", "@"):
        a = analyse(word)
        ws = list(a.words)
        first = ws[0] if ws else None
        signed = a.tags if s[0] == "#" else a.names
        # a word that opens with the sign and whose first run carries it (`#tag`, `##tag`, `#ice-cream`);
        # `#@x` or `#!!` are plain words
        if first is not None and first in signed:
            sign = s[0]

            def tag(c: _Ctx, first: str = first, sign: str = sign) -> bool:
                return first in (c.text.tags if sign == "#" else c.text.names)

            if len(ws) == 1:
                return tag
            rest = _phrase(ws)
            assert rest is not None
            return lambda c: tag(c) and rest(c)
    return _phrase(runs(word))


class _Parser:
    def __init__(self, toks: list[tuple[str, str]]) -> None:
        self.toks, self.i = toks, 0
        self.filters: dict[str, list[str]] = {}

    def peek(self) -> str:
        return self.toks[self.i][0] if self.i < len(self.toks) else "end"

    def take(self) -> tuple[str, str]:
        t = self.toks[self.i]
        self.i += 1
        return t

    def parts(self) -> tuple[list[Pred], list[Pred]]:
        """An AND of parts up to ')' or the end: (positive, negated)."""
        pos: list[Pred] = []
        neg: list[Pred] = []
        while self.peek() not in ("end", ")"):
            if self.peek() == "OR":
                raise QueryError("OR with nothing before it")
            negated, p = self.part()
            if p is not None:
                (neg if negated else pos).append(p)
        return pos, neg

    def part(self) -> tuple[bool, Pred | None]:
        negated, first = self.unary()
        alts = [first]
        while self.peek() == "OR":
            self.take()
            if self.peek() in ("end", ")", "OR"):
                raise QueryError("OR with nothing after it")
            n, p = self.unary()
            if n or negated:
                raise QueryError("an OR alternative cannot be negated")
            alts.append(p)
        kept = [a for a in alts if a is not None]
        if not kept:
            return negated, _IGNORED
        if len(kept) == 1:
            return negated, kept[0]
        return negated, lambda c: any(a(c) for a in kept)

    def unary(self) -> tuple[bool, Pred | None]:
        if self.peek() == "-":
            self.take()
            if self.peek() in ("end", ")", "-"):
                raise QueryError("'-' with nothing to exclude")
            return True, self.atom()
        return False, self.atom()

    def atom(self) -> Pred | None:
        kind, text = self.take()
        if kind == "phrase":
            return _phrase(runs(text))
        if kind == "word":
            return _word(text, self.filters)
        if kind != "(":
            raise QueryError(f"unexpected {kind!r}")
        pos, neg = self.parts()
        if self.peek() != ")":
            raise QueryError("a '(' is never closed")
        self.take()
        if not pos:
            if neg:
                raise QueryError("a group with only negative parts")
            return _IGNORED
        return lambda c: all(p(c) for p in pos) and not any(n(c) for n in neg)


def compile_query(q: str) -> Callable[[Doc], bool]:
    """The query as a predicate on documents. Raises QueryError on what the contract calls bad syntax."""
    p = _Parser(_tokens(q))
    pos, neg = p.parts()
    if p.peek() != "end":
        raise QueryError("unbalanced ')'")
    if not pos:
        raise QueryError("no positive part")
    since = [_day_ms(v) for v in p.filters.get("since", [])]
    until = [_day_ms(v) for v in p.filters.get("until", [])]
    near = p.filters.get("near", [])
    within = p.filters.get("within", [])
    if len(near) != len(within) or len(near) > 1:
        raise QueryError("near: and within: go together, once")
    point: tuple[float, float, float] | None = None
    if near:
        lat, lon = (float(x) for x in near[0].split(","))
        m = re.fullmatch(r"([0-9.]+)(km|mi)", within[0], re.IGNORECASE)
        if not m:
            raise QueryError(f"bad distance {within[0]!r}")
        km = float(m.group(1)) * (KM_PER_MILE if m.group(2).lower() == "mi" else 1.0)
        point = (lat, lon, km)

    def match(d: Doc) -> bool:
        if any(d.created_at_ms < s for s in since) or any(d.created_at_ms >= u for u in until):
            return False
        if point is not None and (d.geo is None or great_circle_km(point[0], point[1], *d.geo) > point[2]):
            return False
        c = _Ctx(d, analyse(d.text))
        return all(x(c) for x in pos) and not any(x(c) for x in neg)

    return match


# ---------------------------------------------------------------- pages


def matching(docs: Iterable[Doc], q: str) -> list[Doc]:
    """Every document that matches, newest (highest id) first."""
    pred = compile_query(q)
    return sorted((d for d in docs if pred(d)), key=lambda d: d.id, reverse=True)


def engagement(d: Doc) -> int:
    return d.likes + 2 * d.retweets


def page(
    docs: Iterable[Doc],
    q: str,
    count: int = 100,
    max_id: int | None = None,
    since_id: int | None = None,
    result_type: str = "recent",
) -> list[int]:
    """The ids a search answers, in order."""
    hits = [d for d in matching(docs, q) if (max_id is None or d.id <= max_id) and (since_id is None or d.id > since_id)]
    if result_type == "recent":
        return [d.id for d in hits[:count]]
    pool = hits[:POPULAR_POOL]
    ranked = sorted(pool, key=lambda d: (engagement(d), d.id), reverse=True)
    if result_type == "popular":
        return [d.id for d in ranked[:count]]
    assert result_type == "mixed", result_type
    first = [d for d in ranked if engagement(d) > 0][: count // 4]
    chosen = {d.id for d in first}
    return [d.id for d in first] + [d.id for d in pool if d.id not in chosen][: count - len(first)]
