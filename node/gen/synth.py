"""Synthetic tweets for tests, benchmarks and the demo: Zipf-distributed words (six languages, their own
scripts), hashtags, @mentions of other users, URLs, Poisson arrival times. `python -m node.gen.synth N` prints
JSON lines that `murmur load` reads.

Deterministic per seed: never use the clock or unseeded randomness here.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from node.gen import vocab
from node.model import TEXT_CHARS_MAX, format_time, parse_time

START_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
TWITTER_EPOCH_MS = 1_288_834_974_657  # ids look like Twitter's Snowflakes: (ms - epoch) << 22 | sequence
ZIPF_S = 1.05  # exponent of every rank-frequency law here (natural language is close to 1)
LANG_WEIGHTS = {"en": 0.55, "es": 0.12, "fr": 0.07, "de": 0.07, "ru": 0.11, "ja": 0.08}
URL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class Zipf:
    """Draws items with probability proportional to 1 / rank**s."""

    def __init__(self, items: Sequence[str], s: float = ZIPF_S) -> None:
        self.items = items
        self.cum = list(itertools.accumulate(1.0 / (k**s) for k in range(1, len(items) + 1)))

    def draw(self, rng: random.Random) -> str:
        i = bisect.bisect_left(self.cum, rng.random() * self.cum[-1])
        return self.items[min(i, len(self.items) - 1)]


class _Model:
    def __init__(self) -> None:
        self.words = {lang: Zipf(vocab.words(lang)) for lang in vocab.LANGS}
        self.tags = Zipf(vocab.hashtags())
        self.users = Zipf(vocab.users())
        # each user writes mostly in one language, chosen by rank so it does not depend on the seed
        langs, weights = zip(*LANG_WEIGHTS.items(), strict=True)
        home = random.Random(vocab._VOCAB_SEED)
        self.home = {u: home.choices(langs, weights)[0] for u in vocab.users()}
        self.langs, self.weights = langs, weights


def _text(rng: random.Random, m: _Model, lang: str, author: str) -> str:
    target = min(TEXT_CHARS_MAX, max(8, int(rng.lognormvariate(4.2, 0.6))))  # median ~ 67 characters
    parts: list[str] = []
    if rng.random() < 0.15:
        who = m.users.draw(rng)
        if who != author:
            parts.append("@" + who)  # a reply opens with the mention
    size = sum(len(p) + 1 for p in parts)
    words = m.words[lang]
    while size < target:
        r = rng.random()
        if r < 0.05:
            p = "#" + m.tags.draw(rng)
        elif r < 0.08:
            p = "@" + m.users.draw(rng)
        else:
            p = words.draw(rng)
        if size + len(p) + 1 > target and parts:
            break
        parts.append(p)
        size += len(p) + 1
    if rng.random() < 0.2:
        parts.append("https://t.co/" + "".join(rng.choice(URL_CHARS) for _ in range(10)))
    if rng.random() < 0.3:
        parts.append("#" + m.tags.draw(rng))
    text = " ".join(parts)
    if rng.random() < 0.3:
        text += rng.choice("!?.") if lang != "ja" else "。"
    if rng.random() < 0.1 and lang != "ja":
        text = text[:1].upper() + text[1:]
    return text[:TEXT_CHARS_MAX].rstrip() or words.draw(rng)


def generate(
    n: int, seed: int = 0, start_ms: int = START_MS, rate_per_s: float = 50.0, with_ids: bool = False
) -> Iterator[dict[str, Any]]:
    """`n` tweets as POST /tweets bodies, arriving as a Poisson process of `rate_per_s` from `start_ms`.
    With `with_ids`, each gets an increasing unique Snowflake-like `id` (Twitter's layout)."""
    assert n >= 0 and rate_per_s > 0
    rng = random.Random(seed)
    m = _Model()
    t_ms = float(start_ms)
    last_ms, seq = -1, 0
    for _ in range(n):
        t_ms += rng.expovariate(rate_per_s) * 1000.0
        ms = int(t_ms)
        user = m.users.draw(rng)
        lang = m.home[user] if rng.random() < 0.9 else rng.choices(m.langs, m.weights)[0]
        tweet: dict[str, Any] = {}
        if with_ids:
            seq = seq + 1 if ms == last_ms else 0
            last_ms = ms
            # more than 2**22 tweets in one millisecond cannot happen at any sane rate
            tweet["id"] = ((ms - TWITTER_EPOCH_MS) << 22) | seq
        tweet.update(created_at=format_time(ms), user=user, text=_text(rng, m, lang, user), lang=lang)
        yield tweet


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m node.gen.synth", description="print N synthetic tweets as JSON lines"
    )
    p.add_argument("n", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--start", default=format_time(START_MS), help="ISO time of the first tweet (default 2020-01-01)"
    )
    p.add_argument(
        "--rate", type=float, default=50.0, help="tweets per second of simulated time (default 50)"
    )
    p.add_argument("--with-ids", action="store_true", help="give every tweet an increasing unique id")
    args = p.parse_args(argv)
    enc = msgspec.json.Encoder()
    out = sys.stdout.buffer
    buf = bytearray()
    for t in generate(args.n, args.seed, parse_time(args.start, "--start"), args.rate, args.with_ids):
        enc.encode_into(t, buf, -1)
        buf += b"\n"
        if len(buf) > 1 << 16:
            out.write(buf)
            buf.clear()
    out.write(buf)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
