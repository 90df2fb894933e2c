"""The analyser, exactly as CONTRACT §3: golden cases and properties checked against a plain re-statement."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from node.text.analyzer import TERM_CHARS_MAX, analyse, contains_phrase, word_terms


def test_contract_example():
    a = analyse("Loving #Python, @Bob!")
    assert a.terms() == {"loving", "python", "#python", "bob", "@bob"}
    assert a.hashtags == ("python",) and a.mentions == ("bob",)


def test_golden_cases():
    assert analyse("see https://x.co/a?b=c and HTTP://Y.org/z ok").words == ("see", "and", "ok")
    assert analyse("ＡＢＣ ﬁne Straße").words == ("abc", "fine", "strasse")  # NFKC then casefold
    assert analyse("#Ice Cream #ice @a @A").hashtags == ("ice",)
    assert analyse("@a @A").mentions == ("a",)
    assert analyse("don't stop").words == ("don", "t", "stop")
    assert analyse("x" * 65 + " y" + " z" * 1).words == ("y", "z")  # over 64 characters: dropped
    assert analyse("a#b c@d").terms() == {"a", "b", "#b", "c", "d", "@d"}
    assert analyse("日本語のテキスト、русский текст").words == ("日本語のテキスト", "русский", "текст")
    assert analyse("!!! ... ").words == ()


def _model_words(text: str) -> list[str]:
    s = unicodedata.normalize("NFKC", text).casefold()
    s = re.sub(r"https?://\S*", " ", s)
    return [w for w in re.findall(r"\w+", s) if len(w) <= 64]


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_words_equal_a_plain_restatement(text):
    a = analyse(text)
    assert list(a.words) == _model_words(text)
    assert all(0 < len(t.lstrip("#@")) <= TERM_CHARS_MAX for t in a.terms())
    assert set(a.hashtags) <= set(a.words) and set(a.mentions) <= set(a.words)
    assert len(set(a.hashtags)) == len(a.hashtags) and len(set(a.mentions)) == len(a.mentions)
    assert word_terms(text) == list(a.words)


@given(st.text(alphabet="ab #@", max_size=40))
def test_sign_terms_come_from_runs_right_after_the_sign(text):
    a = analyse(text)
    s = unicodedata.normalize("NFKC", text).casefold()
    tags = {m.group(1) for m in re.finditer(r"#(\w+)", s)}
    mentions = {m.group(1) for m in re.finditer(r"@(\w+)", s)}
    assert set(a.hashtags) == tags and set(a.mentions) == mentions


@given(st.lists(st.sampled_from("abc"), max_size=12), st.lists(st.sampled_from("abc"), min_size=1, max_size=3))
def test_contains_phrase_equals_a_sliding_window(words, phrase):
    n = len(phrase)
    want = any(words[i : i + n] == phrase for i in range(len(words) - n + 1))
    assert contains_phrase(tuple(words), phrase) == want
