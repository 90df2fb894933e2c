"""A fast equivalent of `node.query.match.index_terms(t)` for the write path: a tweet's index terms and words.

Pure. It must always return exactly what the analyser-based definition returns (tests/index/test_terms.py holds
it to that on arbitrary text); it only avoids the analyser's per-word Python loop: runs, '#' runs and '@' runs
are each collected by one regex pass in C, and the runs in order are the word sequence.
"""

from __future__ import annotations

import re
import unicodedata

from node.text.analyzer import TERM_CHARS_MAX, Analysis

_URL = re.compile(r"https?://\S*")  # the analyser's own patterns, repeated here on purpose: see the test
_RUN = re.compile(r"\w+")
_TAG = re.compile(r"#(\w+)")  # '#' is not \w, so the greedy run after it is exactly a maximal run
_MENTION = re.compile(r"@(\w+)")


def text_terms(text: str) -> set[str]:
    """The analyser's terms of `text`: words, '#tag' and '@name' (Analysis.terms())."""
    return text_terms_words(text)[0]


def _folded(text: str) -> str:
    """The analyser's normalise(text) with its URLs blanked (ASCII text needs no NFKC)."""
    s = text.casefold() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()
    return _URL.sub(" ", s) if "://" in s else s


def text_terms_words(text: str) -> tuple[set[str], list[str]]:
    """(text_terms(text), the analyser's word sequence: Analysis.words), from the same regex passes."""
    s = _folded(text)
    words = _RUN.findall(s)
    out = set(words)
    if "#" in s:
        out.update(map("#".__add__, _TAG.findall(s)))
    if "@" in s:
        out.update(map("@".__add__, _MENTION.findall(s)))
    if len(s) > TERM_CHARS_MAX and max(map(len, words), default=0) > TERM_CHARS_MAX:
        # a word longer than the limit is dropped, and so are its '#'/'@' forms (one character longer)
        out = {t for t in out if len(t) - (t[0] in "#@") <= TERM_CHARS_MAX}
        words = [w for w in words if len(w) <= TERM_CHARS_MAX]
    return out, words


def analyse_fast(text: str) -> Analysis:
    """analyse(text) from regex passes in C (the write path's coordinator builds each new tweet from it): the words
    in order, and the '#' and '@' runs in first-appearance order without repeats."""
    s = _folded(text)
    words = _RUN.findall(s)
    tags = tuple(dict.fromkeys(_TAG.findall(s))) if "#" in s else ()
    mentions = tuple(dict.fromkeys(_MENTION.findall(s))) if "@" in s else ()
    if len(s) > TERM_CHARS_MAX and max(map(len, words), default=0) > TERM_CHARS_MAX:
        words = [w for w in words if len(w) <= TERM_CHARS_MAX]
        tags = tuple(t for t in tags if len(t) <= TERM_CHARS_MAX)
        mentions = tuple(m for m in mentions if len(m) <= TERM_CHARS_MAX)
    return Analysis(tuple(words), tags, mentions)


def tweet_terms(text: str, user: str, lang: str | None) -> set[str]:
    """index_terms(tweet)[0]: the text's terms, 'from:' + the user and 'lang:' + the lang, both normalised."""
    return tweet_terms_words(text, user, lang)[0]


def tweet_terms_words(text: str, user: str, lang: str | None) -> tuple[set[str], list[str]]:
    """index_terms(tweet) with the words as a list: what the shard passes to InvertedIndex.add."""
    out, words = text_terms_words(text)
    _add_user_lang(out, user, lang)
    return out, words


def tweet_terms_of(
    words: tuple[str, ...], hashtags: tuple[str, ...], mentions: tuple[str, ...], user: str, lang: str | None
) -> set[str]:
    """index_terms(tweet)[0] from an analysis already made (the master's, shipped in its record: PutTweet.words)
    and the tweet's own hashtags and mentions (which are that analysis's): no pass over the text."""
    out = Analysis(words, hashtags, mentions).terms()
    _add_user_lang(out, user, lang)
    return out


def _add_user_lang(out: set[str], user: str, lang: str | None) -> None:
    out.add("from:" + (user.casefold() if user.isascii() else unicodedata.normalize("NFKC", user).casefold()))
    if lang is not None:
        out.add("lang:" + (lang.casefold() if lang.isascii() else unicodedata.normalize("NFKC", lang).casefold()))
