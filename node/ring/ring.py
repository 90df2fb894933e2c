"""The consistent-hash ring (pure): mmh3 tokens, `vnodes` per node, preference lists of N distinct nodes.

Keys are 64-bit mmh3 tokens: a term's postings live at `term_token(term)`, a tweet at `tweet_token(id)`.
A partition is the token range (previous token, token]; its preference list is the first N distinct nodes met
walking clockwise from it; the first is the partition's preferred node. Never reads a clock, a socket or random state:
the same inputs always give the same ring.

Token allocation: plain hashing of 64 tokens per node leaves some node ~35% off its fair share at 50 nodes.
So a node's tokens are chosen when it joins, against the ring it joins: for each vnode, 16 mmh3 candidates are
tried and the one that best evens out the shares (least squared error from fair) is kept. Tokens of nodes
already there never move, so a join moves keys only to the new node, and a leave only from the leaving one.
The tokens of a static cluster are those of joining its nodes one by one in config order.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence

import mmh3

RING_SIZE = 1 << 64
CANDIDATES_PER_VNODE = 16


def token_of(key: bytes) -> int:
    return mmh3.hash64(key, signed=False)[0]


def term_token(term: str) -> int:
    return token_of(b"t:" + term.encode("utf-8", "surrogatepass"))


def tweet_token(tweet_id: int) -> int:
    return token_of(b"i:" + tweet_id.to_bytes(8, "big"))


class Ring:
    def __init__(self, tokens: Mapping[str, Iterable[int]]) -> None:
        pairs: dict[int, str] = {}
        for node, toks in tokens.items():
            for t in toks:
                if not 0 <= t < RING_SIZE:
                    raise ValueError(f"token {t} of {node} is outside the ring")
                if t in pairs:
                    raise ValueError(f"token {t} is claimed by {pairs[t]} and {node}")
                pairs[t] = node
        self._tokens: list[int] = sorted(pairs)
        self._owners: list[str] = [pairs[t] for t in self._tokens]
        self.nodes: tuple[str, ...] = tuple(sorted(tokens))
        self._node_tokens = {n: sorted(t for t, o in pairs.items() if o == n) for n in tokens}
        self._pref_cache: dict[tuple[int, int], tuple[str, ...]] = {}

    @classmethod
    def build(cls, names: Sequence[str], vnodes: int) -> Ring:
        ring = cls({})
        for name in names:
            ring = ring.with_node(name, allocate_tokens(ring, name, vnodes))
        return ring

    def tokens_of(self, node: str) -> list[int]:
        return list(self._node_tokens.get(node, ()))

    def with_node(self, node: str, tokens: Iterable[int]) -> Ring:
        if node in self._node_tokens:
            raise ValueError(f"{node} is already on the ring")
        return Ring({**self._node_tokens, node: list(tokens)})

    def without_node(self, node: str) -> Ring:
        return Ring({n: t for n, t in self._node_tokens.items() if n != node})

    # ------------------------------------------------------------ lookups

    def partition_index(self, token: int) -> int:
        """Index of the partition holding `token`: the first ring token >= it, wrapping around."""
        if not self._tokens:
            raise LookupError("the ring is empty")
        i = bisect.bisect_left(self._tokens, token)
        return 0 if i == len(self._tokens) else i

    def partition_id(self, token: int) -> int:
        """A partition is named by the ring token that ends its range."""
        return self._tokens[self.partition_index(token)]

    def preference_list(self, token: int, n: int) -> tuple[str, ...]:
        """The first n distinct nodes clockwise from `token` (fewer when the ring has fewer nodes)."""
        i = self.partition_index(token)
        key = (i, n)
        hit = self._pref_cache.get(key)
        if hit is not None:
            return hit
        out: list[str] = []
        want = min(n, len(self.nodes))
        for k in range(len(self._tokens)):
            owner = self._owners[(i + k) % len(self._tokens)]
            if owner not in out:
                out.append(owner)
                if len(out) == want:
                    break
        res = tuple(out)
        self._pref_cache[key] = res
        return res

    def range_of(self, pid: int) -> tuple[int, int]:
        """(start exclusive, end inclusive) of the partition named by ring token `pid`."""
        i = self.partition_index(pid)
        return self._tokens[i - 1], self._tokens[i]

    def partitions(self) -> list[tuple[int, int]]:
        """(start exclusive, end inclusive) token ranges, in ring order; the first one wraps around."""
        t = self._tokens
        return [(t[i - 1], t[i]) for i in range(len(t))]

    def shares(self) -> dict[str, float]:
        """Each node's fraction of the ring it is the preferred node of."""
        out = dict.fromkeys(self.nodes, 0.0)
        t = self._tokens
        for i, owner in enumerate(self._owners):
            out[owner] += ((t[i] - t[i - 1]) % RING_SIZE or RING_SIZE) / RING_SIZE
        return out


def allocate_tokens(ring: Ring, node: str, vnodes: int, candidates: int = CANDIDATES_PER_VNODE) -> list[int]:
    """Tokens for `node` joining `ring` (see the module header). Deterministic in (ring, node, vnodes)."""
    if not ring.nodes:
        toks = sorted({token_of(f"{node}#{i}".encode()) for i in range(vnodes)})
        return toks
    keys = list(ring._tokens)
    owners = list(ring._owners)
    fair = RING_SIZE / (len(ring.nodes) + 1)
    share = {n: s * RING_SIZE for n, s in ring.shares().items()}
    share[node] = 0.0
    mine: list[int] = []
    for i in range(vnodes):
        goal_mine = fair * (i + 1) / vnodes
        best: tuple[float, int, str, int] | None = None
        for j in range(candidates):
            t = token_of(f"{node}#{i}#{j}".encode())
            k = bisect.bisect_left(keys, t)
            if k < len(keys) and keys[k] == t:
                continue
            owner = owners[k % len(keys)]
            if owner == node:
                continue
            gap = (t - keys[k - 1]) % RING_SIZE
            before = (share[owner] - fair) ** 2 + (share[node] - goal_mine) ** 2
            after = (share[owner] - gap - fair) ** 2 + (share[node] + gap - goal_mine) ** 2
            score = before - after
            if best is None or score > best[0]:
                best = (score, t, owner, gap)
        if best is None:  # every candidate collided: fall back to the plain hash, still deterministic
            t = token_of(f"{node}#{i}#fallback".encode())
            k = bisect.bisect_left(keys, t)
            if k < len(keys) and keys[k] == t:
                continue
            best = (0.0, t, owners[k % len(keys)], (t - keys[k - 1]) % RING_SIZE)
        _, t, owner, gap = best
        k = bisect.bisect_left(keys, t)
        keys.insert(k, t)
        owners.insert(k, node)
        share[owner] -= gap
        share[node] += gap
        mine.append(t)
    return sorted(mine)
