"""Ring properties: lookups equal a linear scan; shares are within ±25% of fair; a join or a leave moves only
about 1/n of the keys, and only to or from that node."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from node.ring.ring import RING_SIZE, Ring, allocate_tokens, term_token, tweet_token

names = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), min_size=1, max_size=8, unique=True)


def brute_preference(ring: Ring, token: int, n: int) -> tuple[str, ...]:
    pairs = sorted((t, node) for node in ring.nodes for t in ring.tokens_of(node))
    start = next((i for i, (t, _) in enumerate(pairs) if t >= token), 0)
    out: list[str] = []
    for k in range(len(pairs)):
        node = pairs[(start + k) % len(pairs)][1]
        if node not in out:
            out.append(node)
    return tuple(out[:n])


@given(names, st.integers(1, 16), st.lists(st.integers(0, RING_SIZE - 1), min_size=1, max_size=50), st.integers(1, 5))
@settings(max_examples=80, deadline=None)
def test_lookup_equals_linear_scan(nodes, vnodes, tokens, n):
    ring = Ring.build(nodes, vnodes)
    for t in tokens:
        assert ring.preference_list(t, n) == brute_preference(ring, t, n)
        assert ring.preference_list(t, n)[0] == ring._owners[ring.partition_index(t)]


@given(st.integers(3, 50), st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_shares_within_a_quarter_of_fair(count, salt):
    ring = Ring.build([f"node-{salt}-{i}" for i in range(count)], 64)
    shares = ring.shares()
    assert abs(sum(shares.values()) - 1.0) < 1e-9
    for node, s in shares.items():
        assert abs(s * count - 1) <= 0.25, (node, s * count)


@given(st.integers(3, 20), st.integers(0, 10_000), st.integers(1, 3))
@settings(max_examples=20, deadline=None)
def test_join_and_leave_move_only_their_share(count, salt, n):
    nodes = [f"m{salt}-{i}" for i in range(count)]
    ring = Ring.build(nodes, 64)
    newcomer = f"m{salt}-new"
    bigger = ring.with_node(newcomer, allocate_tokens(ring, newcomer, 64))
    rng = random.Random(salt)
    keys = [rng.randrange(RING_SIZE) for _ in range(3000)]
    moved = 0
    for k in keys:
        before, after = ring.preference_list(k, n), bigger.preference_list(k, n)
        if before != after:
            moved += 1
            # only the newcomer enters a preference list; every other member keeps its place order
            assert newcomer in after and [x for x in after if x != newcomer] == list(before[: len(after) - 1])
    frac = moved / len(keys)
    assert frac <= 1.6 * n / (count + 1), frac
    # leaving is the exact inverse: the old ring comes back
    back = bigger.without_node(newcomer)
    assert all(back.preference_list(k, n) == ring.preference_list(k, n) for k in keys[:500])


def test_keys_spread_over_partitions():
    ring = Ring.build(["a", "b", "c"], 64)
    owners = [ring.preference_list(term_token(f"w{i}"), 1)[0] for i in range(3000)]
    owners += [ring.preference_list(tweet_token(i), 1)[0] for i in range(3000)]
    for node in "abc":
        assert 0.25 < owners.count(node) / len(owners) < 0.42
    assert len(ring.partitions()) == 192
