"""What the benchmark programs share: the corpus reader, the machine line, percentiles, the query generator (per
kind, a seeded random mix, a fixed list) and a raw keep-alive HTTP/1.1 client on trio.

Not a benchmark itself and not part of the package: imported by scripts/bench_*.py (their own folder is on
sys.path when they run). Never starts a process; never reads a clock for anything but timing.
"""

from __future__ import annotations

import bisect
import gzip
import itertools
import os
import platform
import random
import re
import sys
from pathlib import Path
from typing import NamedTuple

import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.index.terms import text_terms_words

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_CORPUS = DATA / "ira_troll_tweets.jsonl.gz"
KINDS = ("term", "and", "or", "phrase", "hashtag", "not")
_PLAIN = re.compile(r"[a-z]{2,}")  # query words every engine tokenises alike (FTS5 splits on '_', folds accents)


class Rec(msgspec.Struct, gc=False, omit_defaults=True):
    id: int
    text: str
    created_at: str = "2020-01-01T00:00:00Z"
    user: str | None = None
    lang: str | None = None


def load_corpus(corpus: Path | None, limit: int | None, seed: int = 1) -> tuple[list[Rec], str]:
    """The first `limit` tweets of `corpus` (JSON lines, .gz ok), user defaulted to 'unknown'; without the file,
    `limit` (default 300,000) synthetic tweets from node.gen.synth. -> (records, where they came from)."""
    if corpus is not None and corpus.exists():
        dec = msgspec.json.Decoder(Rec)
        out: list[Rec] = []
        with gzip.open(corpus, "rb") if corpus.suffix == ".gz" else open(corpus, "rb") as f:
            for line in itertools.islice(f, limit):
                r = dec.decode(line)
                r.user = r.user or "unknown"
                out.append(r)
        return out, str(corpus)
    from node.gen.synth import generate

    recs = [
        Rec(t["id"], t["text"], t["created_at"], t["user"], t["lang"])
        for t in generate(limit or 300_000, seed, with_ids=True)
    ]
    return recs, f"synthetic (node.gen.synth, seed {seed})"


def machine() -> str:
    """One line: cpus and model, RAM, kernel, Python, trio."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(ln.split()[1] for ln in f if ln.startswith("MemTotal")))
        mem = f", {kb / 2**20:.1f} GiB RAM"
    except (OSError, StopIteration):
        pass
    return (
        f"{os.cpu_count()} cpus {model or platform.machine()}{mem}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, trio {trio.__version__}"
    )


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


# ---------------------------------------------------------------- queries


class Q(NamedTuple):
    """One query, in a form every engine can be given: kind and one or two words (a hashtag without its '#')."""

    kind: str
    a: str
    b: str = ""

    def murmur(self) -> str:
        k, a, b = self
        return {
            "term": a,
            "and": f"{a} {b}",
            "or": f"{a} OR {b}",
            "phrase": f'"{a} {b}"',
            "hashtag": f"#{a}",
            "not": f"{a} -{b}",
        }[k]

    def fts5(self) -> str:
        """FTS5 MATCH text for a table fts5(text, tags, ...) whose `tags` column holds the hashtags without '#'."""
        k, a, b = self
        return {
            "term": f'"{a}"',
            "and": f'"{a}" AND "{b}"',
            "or": f'"{a}" OR "{b}"',
            "phrase": f'"{a} {b}"',
            "hashtag": f'tags : "{a}"',
            "not": f'"{a}" NOT "{b}"',
        }[k]


# Typical queries of the IRA corpus, repeated: the mix a cache of repeated queries would love.
FIXED = [
    Q("term", "trump"),
    Q("term", "news"),
    Q("and", "police", "shooting"),
    Q("hashtag", "maga"),
    Q("or", "obama", "hillary"),
    Q("phrase", "breaking", "news"),
    Q("not", "love", "hate"),
    Q("hashtag", "news"),
    Q("and", "black", "lives"),
    Q("phrase", "hillary", "clinton"),
    Q("hashtag", "blacklivesmatter"),
    Q("phrase", "fake", "news"),
    Q("term", "america"),
    Q("or", "isis", "terror"),
    Q("not", "trump", "obama"),
    Q("term", "music"),
]


def hashtags_of(text: str) -> list[str]:
    """The hashtags of `text` without '#' (for an FTS5 `tags` column)."""
    return [t[1:] for t in text_terms_words(text)[0] if t[0] == "#"]


class _Vocab:
    """Words, co-occurring pairs, adjacent pairs and hashtags of a sample of tweets, by document frequency."""

    def __init__(self, recs: list[Rec], rng: random.Random, sample: int = 20_000) -> None:
        df: dict[str, int] = {}
        tags: dict[str, int] = {}
        self.docs: list[list[str]] = []  # each sampled tweet's distinct plain words
        self.bigrams: list[tuple[str, str]] = []
        for r in rng.sample(recs, min(len(recs), sample)):
            terms, ws = text_terms_words(r.text)
            plain = sorted({w for w in ws if _PLAIN.fullmatch(w)})
            for w in plain:
                df[w] = df.get(w, 0) + 1
            for t in terms:
                if t[0] == "#" and _PLAIN.fullmatch(t[1:]):
                    tags[t[1:]] = tags.get(t[1:], 0) + 1
            if len(plain) >= 2:
                self.docs.append(plain)
            self.bigrams += [(a, b) for a, b in itertools.pairwise(ws) if _PLAIN.fullmatch(a) and _PLAIN.fullmatch(b)]
        self.words = sorted(df, key=lambda w: (-df[w], w))
        self.tags = sorted(tags, key=lambda w: (-tags[w], w)) or self.words[:100]
        if not self.docs:
            self.docs = [self.words[:2] or ["a", "b"]]
        if not self.bigrams:
            self.bigrams = [(self.docs[0][0], self.docs[0][1])]
        self.df = df


def _zipf(n: int, s: float = 1.0) -> list[float]:
    """Cumulative weights of ranks 1..n under Zipf's law with exponent s."""
    return list(itertools.accumulate(1.0 / (r**s) for r in range(1, n + 1)))


def pick_queries(recs: list[Rec], n: int, seed: int) -> dict[str, list[Q]]:
    """`n` queries per kind; words by document frequency in a sample: 1/3 frequent, 1/3 medium, 1/3 rare
    (top 1 %, next 19 %, the rest); ANDs half of adjacent words (non-empty), half a word and a frequent one;
    NOTs of two words of one tweet; hashtags 1/2 of the 20 most frequent, 1/2 of the rest."""
    rng = random.Random(seed)
    v = _Vocab(recs, rng)
    k = len(v.words)
    buckets = (v.words[: max(1, k // 100)], v.words[k // 100 : k // 5] or v.words, v.words[k // 5 :] or v.words)
    hot_tags, other_tags = v.tags[:20], v.tags[20:] or v.tags
    out: dict[str, list[Q]] = {kind: [] for kind in KINDS}
    for i in range(n):
        w = rng.choice(buckets[i % 3])
        out["term"].append(Q("term", w))
        a, b = rng.choice(v.bigrams) if i % 2 else (w, rng.choice(buckets[0]))
        out["and"].append(Q("and", a, b))
        out["or"].append(Q("or", rng.choice(buckets[(i + 1) % 3]), rng.choice(buckets[(i + 2) % 3])))
        out["phrase"].append(Q("phrase", *rng.choice(v.bigrams)))
        out["hashtag"].append(Q("hashtag", rng.choice(hot_tags if i % 2 else other_tags)))
        a, b = rng.sample(rng.choice(v.docs), 2)
        out["not"].append(Q("not", a, b))
    return out


MIX_WEIGHTS = {"term": 40, "and": 20, "or": 10, "phrase": 10, "hashtag": 10, "not": 10}  # percent


def random_mix(recs: list[Rec], n: int, seed: int) -> list[Q]:
    """At least `n` distinct queries (fewer only if the corpus is too small to have them), drawn with `seed`:
    single words by Zipf's law over their document frequency rank, ANDs of two words of one tweet, ORs of two
    Zipf words, phrases of adjacent words, hashtags by Zipf, NOTs of two words of one tweet. MIX_WEIGHTS."""
    rng = random.Random(seed)
    v = _Vocab(recs, rng)
    cw_words, cw_tags = _zipf(len(v.words)), _zipf(len(v.tags))

    def zw() -> str:
        return v.words[bisect.bisect(cw_words, rng.random() * cw_words[-1])]

    kinds, weights = list(MIX_WEIGHTS), list(MIX_WEIGHTS.values())
    seen: dict[Q, None] = {}
    for _ in range(50 * n):
        if len(seen) >= n:
            break
        kind = rng.choices(kinds, weights)[0]
        if kind == "term":
            q = Q("term", zw())
        elif kind in ("and", "not"):
            a, b = rng.sample(rng.choice(v.docs), 2)
            q = Q(kind, a, b)
        elif kind == "or":
            q = Q("or", zw(), zw())
        elif kind == "phrase":
            q = Q("phrase", *rng.choice(v.bigrams))
        else:
            q = Q("hashtag", v.tags[bisect.bisect(cw_tags, rng.random() * cw_tags[-1])])
        if q.a != q.b:
            seen[q] = None
    out = list(seen)
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------- a minimal keep-alive HTTP/1.1 client


class Conn:
    """One keep-alive connection; request() sends raw bytes and reads one whole response (Content-Length).
    Raw trio sockets: an HTTP library costs more CPU per request than the node it measures."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.stream: trio.SocketStream | None = None
        self.buf = bytearray()

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream(self.host, self.port)
        await self.stream.send_all(data)
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[:end]).lower()
                i = head.find(b"content-length:")
                length = 0
                if i >= 0:
                    j = head.find(b"\r\n", i)
                    length = int(head[i + 15 : j if j > 0 else None])
                if len(self.buf) >= end + 4 + length:
                    status = int(head[9:12])
                    body = bytes(self.buf[end + 4 : end + 4 + length])
                    del self.buf[: end + 4 + length]
                    return status, body
            chunk = await self.stream.receive_some(262_144)
            if not chunk:
                raise ConnectionError("the node closed the connection")
            self.buf += chunk

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None
        self.buf.clear()


def side_share(urls: list[str]) -> str:
    """'side table x % of postings, y staged' per node: how much of the index came in out of id order."""
    import httpx

    keys = ("murmur_index_postings", "murmur_index_side_postings", "murmur_index_staged_tweets")
    parts = []
    for u in urls:
        m = prom_values(httpx.get(u + "/metrics", timeout=30).text)
        share = m.get(keys[1], 0) / max(1.0, m.get(keys[0], 0)) * 100
        parts.append(f"{share:.1f} % side, {m.get(keys[2], 0):,.0f} staged")
    return "; ".join(parts)


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n".encode()


def post(path: str, body: bytes, ctype: str = "application/json") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )


def addr_of(url: str) -> tuple[str, int]:
    """'http://127.0.0.1:7001' -> ('127.0.0.1', 7001)."""
    host_port = url.split("//", 1)[-1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    return host, int(port)


# ---------------------------------------------------------------- processes seen from /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (0.0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_with_children(pid: int) -> tuple[float, float]:
    """(utime + stime of `pid`, cutime + cstime: the CPU of its children it has waited for, e.g. a node's snapshot
    processes); (0.0, 0.0) if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tck = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tck, (int(fields[13]) + int(fields[14])) / tck
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


def rss_bytes(pid: int) -> int:
    """VmRSS of `pid` from /proc/<pid>/status (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def prom_values(text: str) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text page: {name: value} (labelled series are summed by name)."""
    out: dict[str, float] = {}
    for ln in text.splitlines():
        if not ln or ln[0] == "#":
            continue
        name_labels, _, value = ln.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out
