"""A fast equivalent of `node.query.match.index_terms(t)[0]` for the write path: a tweet's set of index terms.

Pure. It must always return exactly what the analyser-based definition returns (tests/index/test_terms.py holds
it to that on arbitrary text); it only avoids the analyser's per-word Python loop and word sequence, which the
write path does not need: runs, '#' runs and '@' runs are each collected by one regex pass in C.
"""

from __future__ import annotations

import re
import unicodedata

from node.text.analyzer import TERM_CHARS_MAX

_URL = re.compile(r"https?://\S*")  # the analyser's own patterns, repeated here on purpose: see the test
_RUN = re.compile(r"\w+")
_TAG = re.compile(r"#(\w+)")  # '#' is not \w, so the greedy run after it is exactly a maximal run
_MENTION = re.compile(r"@(\w+)")


def text_terms(text: str) -> set[str]:
    """The analyser's terms of `text`: words, '#tag' and '@name' (Analysis.terms())."""
    s = text.casefold() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()
    if "http" in s:
        s = _URL.sub(" ", s)
    out = set(_RUN.findall(s))
    if "#" in s:
        out.update(["#" + r for r in _TAG.findall(s)])
    if "@" in s:
        out.update(["@" + r for r in _MENTION.findall(s)])
    if out and max(map(len, out)) > TERM_CHARS_MAX:
        # a word longer than the limit is dropped, and so are its '#'/'@' forms (one character longer)
        out = {t for t in out if len(t) - (t[0] in "#@") <= TERM_CHARS_MAX}
    return out


def tweet_terms(text: str, user: str, lang: str | None) -> set[str]:
    """index_terms(tweet)[0]: the text's terms, 'from:' + the user and 'lang:' + the lang, both normalised."""
    out = text_terms(text)
    out.add("from:" + (user.casefold() if user.isascii() else unicodedata.normalize("NFKC", user).casefold()))
    if lang is not None:
        out.add("lang:" + (lang.casefold() if lang.isascii() else unicodedata.normalize("NFKC", lang).casefold()))
    return out
