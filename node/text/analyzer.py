"""The analyser (CONTRACT §3): the one function that turns text into terms, for tweets and queries alike.

Pure and deterministic. Never add stemming, stop words or anything else here without changing the contract:
the index, the query planner and the brute-force test model all depend on this exact behaviour.
"""

from __future__ import annotations

import re
import unicodedata

from msgspec import Struct

TERM_CHARS_MAX = 64

_URL = re.compile(r"https?://\S*")
_RUN = re.compile(r"\w+")


class Analysis(Struct, frozen=True):
    words: tuple[str, ...]  # the word terms, in order, with repeats: the sequence phrases are matched on
    hashtags: tuple[str, ...]  # without '#', first appearance order, no repeats
    mentions: tuple[str, ...]  # without '@', first appearance order, no repeats

    def terms(self) -> set[str]:
        """Every index term of the text: words, '#tag' and '@name'."""
        out = set(self.words)
        out.update(map("#".__add__, self.hashtags))
        out.update(map("@".__add__, self.mentions))
        return out


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def analyse(text: str) -> Analysis:
    s = _URL.sub(" ", normalise(text))
    words: list[str] = []
    tags: dict[str, None] = {}
    mentions: dict[str, None] = {}
    for m in _RUN.finditer(s):
        run = m.group()
        if len(run) > TERM_CHARS_MAX:
            continue
        words.append(run)
        start = m.start()
        if start:
            sign = s[start - 1]
            if sign == "#":
                tags[run] = None
            elif sign == "@":
                mentions[run] = None
    return Analysis(tuple(words), tuple(tags), tuple(mentions))


def word_terms(text: str) -> list[str]:
    """The word terms of a piece of query text (no '#'/'@' handling): what a quoted phrase or a bare word means."""
    s = _URL.sub(" ", normalise(text))
    return [r for r in _RUN.findall(s) if len(r) <= TERM_CHARS_MAX]


def contains_phrase(words: tuple[str, ...] | list[str], phrase: list[str]) -> bool:
    """True when `phrase` occurs consecutively, in order, in `words`. An empty phrase matches everything."""
    n = len(phrase)
    if n == 0:
        return True
    if n == 1:
        return phrase[0] in words
    first = phrase[0]
    last_start = len(words) - n
    i = 0
    while i <= last_start:
        try:
            i = words.index(first, i, last_start + 1)
        except ValueError:
            return False
        if list(words[i : i + n]) == phrase:
            return True
        i += 1
    return False
