"""A compiled, fast equivalent of `node.query.match.matches(q, tweet)`: verifies the index's phrase candidates.

Pure. It must return exactly what `matches` returns for every query and tweet (tests/index/test_matcher.py holds
it to that on arbitrary text); it only avoids the analyser's per-word Python loop: each word, '#tag', '@name' or
phrase is searched for in the tweet's normalised, URL-free text, in C.

Why the checks are exact: over that text the analyser's word terms are its maximal \\w runs of <= 64 chars in
order, so a query word w (one full run, <= 64 chars) is a term iff w occurs with no \\w on either side, '#w' iff
'#w' occurs with no \\w after it ('#' is \\W, so w starts a run), and two words are consecutive iff only \\W and
runs longer than 64 chars (dropped by the analyser) lie between them: the gap `(?:\\W+\\w{65,})*\\W+`.
A check first searches with str.find and that gap (no compile); after COMPILE_AFTER calls it compiles one regex
for the whole check (~50 us once, then ~0.15 us a tweet), so short queries never pay the compile.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Protocol

from node.model import GeoPoint
from node.query.ast import And, Node, Or, Phrase, Query, Term
from node.query.match import analysed_terms, distance_km
from node.text.analyzer import TERM_CHARS_MAX, analyse, normalise

COMPILE_AFTER = 48  # calls of one check before it compiles its regex: 48 finds cost about one compile

_URL = re.compile(r"https?://\S*")  # the analyser's pattern, repeated on purpose: the tests compare the results
_WORD = re.compile(rf"\w{{1,{TERM_CHARS_MAX}}}")
_GAP_RE = rf"(?:\W+\w{{{TERM_CHARS_MAX + 1},}})*\W+"  # what may lie between consecutive words
_gap = re.compile(_GAP_RE).match
_is_w = re.compile(r"\w").match


class Fields(Protocol):
    """What a check reads of a tweet: a Tweet, or a stored row read field by field (TweetStore.passing)."""

    @property
    def text(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def lang(self) -> str | None: ...
    @property
    def created_at_ms(self) -> int: ...
    @property
    def geo(self) -> GeoPoint | None: ...


Check = Callable[[Fields, str], bool]  # (tweet, its clean text) -> does the node match


def clean_text(text: str) -> str:
    """The text the analyser finds runs in: NFKC, casefolded, URLs blanked (ASCII needs no NFKC)."""
    s = text.casefold() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()
    if "://" in s:
        s = _URL.sub(" ", s)
    return s


def phrase_checker(q: Query, compile_after: int = COMPILE_AFTER) -> Callable[[Fields], bool]:
    """A function exactly equivalent to `lambda t: matches(q, t)`, several times faster on phrases.
    It keeps a call count (to decide when to compile): use one per search, not across threads."""
    root = _compile(q.root, compile_after)
    since, until, near = q.since_ms, q.until_ms, q.near
    if since is None and until is None and near is None:
        return lambda t: root(t, clean_text(t.text))

    def check(t: Fields) -> bool:
        if since is not None and t.created_at_ms < since:
            return False
        if until is not None and t.created_at_ms >= until:
            return False
        if near is not None:
            if t.geo is None or distance_km(near.lat, near.lon, t.geo.lat, t.geo.lon) > near.km:
                return False
        return root(t, clean_text(t.text))

    return check


def text_phrase_checker(words: Sequence[str], compile_after: int = COMPILE_AFTER) -> Callable[[str], bool]:
    """For a phrase of word terms: a function of a tweet's text, True when its word sequence holds the phrase."""
    check = _phrase(tuple(words), compile_after)
    return lambda text: check(None, clean_text(text))  # type: ignore[arg-type]


def _compile(n: Node, k: int) -> Check:
    if isinstance(n, Term):
        return _term(n.term, k)
    if isinstance(n, Phrase):
        return _phrase(n.words, k)
    if isinstance(n, Or):
        ors = tuple(_compile(c, k) for c in n.children)
        return lambda t, s: any(c(t, s) for c in ors)
    assert isinstance(n, And), n
    pos = tuple(_compile(c, k) for c in n.must)
    neg = tuple(_compile(c, k) for c in n.must_not)
    if len(pos) == 1 and not neg:
        return pos[0]
    return lambda t, s: all(c(t, s) for c in pos) and not any(c(t, s) for c in neg)


def _term(term: str, k: int) -> Check:
    sign, word = (term[0], term[1:]) if term[:1] in ("#", "@") else ("", term)
    if _WORD.fullmatch(word):
        seq = _Seq(sign, (word,), k)
        return lambda t, s: seq(s)
    if term.startswith("from:"):
        return lambda t, s: "from:" + normalise(t.user) == term
    if term.startswith("lang:"):
        return lambda t, s: t.lang is not None and "lang:" + normalise(t.lang) == term
    # no such term comes from the parser: the model's definition (index_terms), from the fields a check reads
    return lambda t, s: term in analysed_terms(analyse(t.text), t.user, t.lang)


def _phrase(words: tuple[str, ...], k: int) -> Check:
    if not words:
        return lambda t, s: True
    if not all(_WORD.fullmatch(w) for w in words):  # a word that is no term never occurs in a word sequence
        return lambda t, s: False
    seq = _Seq("", words, k)
    return lambda t, s: seq(s)


class _Seq:
    """Does a clean text hold sign + words[0], words[1], ... as consecutive word terms (sign: '', '#' or '@')?"""

    __slots__ = ("head", "left", "search", "sign", "words")

    def __init__(self, sign: str, words: tuple[str, ...], compile_after: int) -> None:
        self.sign = sign
        self.words = words
        self.head = sign + words[0]
        self.left = compile_after
        self.search: Callable[[str], re.Match[str] | None] | None = None

    def __call__(self, s: str) -> bool:
        search = self.search
        if search is None:
            self.left -= 1
            if self.left >= 0:
                return self._find(s)
            self.search = search = re.compile(self._pattern()).search
        return search(s) is not None

    def _pattern(self) -> str:
        w0 = self.words[0]
        out = self.sign + w0 + ("" if self.sign else rf"(?<!\w{w0})")  # the lookbehind after the literal keeps
        for w in self.words[1:]:  # the regex's fast literal scan
            out += _GAP_RE + w
        return out + r"(?!\w)"

    def _find(self, s: str) -> bool:
        head, words = self.head, self.words
        i = s.find(head)
        while i >= 0:
            if self.sign or i == 0 or not _is_w(s, i - 1):
                j = i + len(head)
                for w in words[1:]:
                    g = _gap(s, j)
                    if g is None or not s.startswith(w, g.end()):
                        break
                    j = g.end() + len(w)
                else:
                    if not _is_w(s, j):
                        return True
            i = s.find(head, i + 1)
        return False
