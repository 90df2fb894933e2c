"""The synthetic tweet generator: deterministic per seed, always valid API input, Zipf-like skew."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter

from node.gen import vocab
from node.gen.synth import generate
from node.model import TEXT_CHARS_MAX, parse_time, parse_tweet_in
from node.text.analyzer import analyse

N = 2000


def test_deterministic_per_seed() -> None:
    a = list(generate(200, seed=7))
    assert a == list(generate(200, seed=7))
    assert a != list(generate(200, seed=8))
    assert list(generate(50, seed=7)) == a[:50]  # a prefix does not depend on n


def test_valid_for_the_api_and_in_time_order() -> None:
    tweets = list(generate(N, seed=1, with_ids=True))
    parsed = [parse_tweet_in(t) for t in tweets]
    assert all(1 <= len(t["text"]) <= TEXT_CHARS_MAX for t in tweets)
    ids = [p.id or 0 for p in parsed]
    assert all(ids)
    assert ids == sorted(ids) and len(set(ids)) == N  # increasing, unique
    times = [p.created_at_ms or 0 for p in parsed]
    assert all(times) and times == sorted(times)
    # 50 tweets/s of simulated time: 2,000 tweets span about 40 s
    span_s = (times[-1] - times[0]) / 1000
    assert 30 < span_s < 50
    assert all("id" not in t for t in generate(10))  # ids are the node's business by default


def test_languages_and_scripts() -> None:
    tweets = list(generate(N, seed=2))
    langs = Counter(t["lang"] for t in tweets)
    assert set(langs) == set(vocab.LANGS)
    assert langs.most_common(1)[0][0] == "en"
    ru = " ".join(t["text"] for t in tweets if t["lang"] == "ru")
    ja = " ".join(t["text"] for t in tweets if t["lang"] == "ja")
    assert any("\u0400" <= c <= "\u04ff" for c in ru)  # Cyrillic
    assert any("\u3040" <= c <= "\u30ff" for c in ja)  # kana


def _slope(counts: list[int]) -> float:
    """Least-squares slope of log(frequency) against log(rank)."""
    xs = [math.log(r) for r in range(1, len(counts) + 1)]
    ys = [math.log(c) for c in counts]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def test_zipf_like_skew_of_words_tags_and_mentions() -> None:
    words: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    mentions: Counter[str] = Counter()
    users: Counter[str] = Counter()
    urls = 0
    for t in generate(N, seed=3):
        a = analyse(t["text"])
        words.update(w for w in a.words if t["lang"] == "en")
        tags.update(a.hashtags)
        mentions.update(a.mentions)
        users[t["user"]] += 1
        urls += "https://t.co/" in t["text"]
    top = [c for _, c in words.most_common(100)]
    assert -1.6 < _slope(top) < -0.6, _slope(top)
    assert top[0] > 10 * top[-1]  # the head dominates
    assert tags.most_common(1)[0][1] > 10 * sorted(tags.values())[len(tags) // 2]
    assert len(mentions) > 100 and len(users) > 300
    assert users.most_common(1)[0][1] > 5 * sorted(users.values())[len(users) // 2]
    assert 0.1 * N < urls < 0.3 * N


def test_command_line_prints_json_lines() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "node.gen.synth",
            "5",
            "--seed",
            "4",
            "--with-ids",
            "--start",
            "2011-10-18T00:00:00Z",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == list(generate(5, seed=4, start_ms=parse_time("2011-10-18T00:00:00Z"), with_ids=True))
    assert next(generate(1, seed=4))["created_at"].startswith("2020-01-01T00:00:00")
