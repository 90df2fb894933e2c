"""The digest read's resolution (node/search/digest.py) against a brute-force statement of what the answer must
be: over the range both windows cover, an id matches when the newest of the two copies matches (two copies at
the same version are the same tweet, so they agree); whatever one copy has newer is fetched from it and the
other copy is repaired."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.model import Tweet
from node.records import PutTweet, Record
from node.search.digest import alone, peer_digest, resolve

IDS = range(1, 41)

# per id: (version on the coordinator, matches there, version on the peer, matches there); 0 = no copy
Copy = tuple[int, bool, int, bool]


@st.composite
def replicas(draw: st.DrawFn) -> dict[int, Copy]:
    out: dict[int, Copy] = {}
    for i in IDS:
        vc = draw(st.sampled_from([0, 0, 1, 2, 3]))
        vp = draw(st.sampled_from([vc, vc, vc, 0, 1, 2, 3]))
        mc = vc > 0 and draw(st.booleans())
        mp = mc if vp == vc else (vp > 0 and draw(st.booleans()))
        out[i] = (vc, mc, vp, mp)
    return out


def _window(matches: list[int], hi: int, limit: int) -> tuple[list[int], bool]:
    got = sorted((i for i in matches if i <= hi), reverse=True)
    return got[:limit], len(got) <= limit


def _record(i: int, version: int) -> Record:
    return PutTweet(Tweet(id=i, created_at_ms=0, user="u", text=f"t{i}", version=version))


@settings(max_examples=400, deadline=None)
@given(replicas(), st.integers(1, 45), st.integers(1, 12))
def test_the_newest_copy_decides_over_the_range_both_windows_cover(
    reps: dict[int, Copy], hi: int, limit: int
) -> None:
    c_ids, c_done = _window([i for i, (_, mc, _, _) in reps.items() if mc], hi, limit)
    p_ids, p_done = _window([i for i, (_, _, _, mp) in reps.items() if mp], hi, limit)
    mine = [(i, reps[i][0]) for i in c_ids]
    digest = peer_digest(
        mine,
        p_ids,
        [reps[i][2] for i in p_ids],
        p_done,
        lambda i: reps[i][2],
        lambda i: _record(i, reps[i][2]) if reps[i][2] else None,
    )
    res = resolve(mine, c_done, digest, lambda i: reps[i][0])

    def truth(i: int) -> bool:
        vc, mc, vp, mp = reps[i]
        return mp if vp > vc else mc

    want = sorted((i for i in IDS if res.floor <= i <= hi and truth(i)), reverse=True)
    assert res.ids == want
    assert res.exhausted == (c_done and p_done)
    if not res.exhausted:
        assert res.floor > 0  # something is left below: the next round starts there
    for i in res.ids:  # an id whose newer copy is the peer's comes with that copy
        vc, _, vp, _ = reps[i]
        if vp > vc:
            assert res.fetched[i].version == vp
        else:
            assert i not in res.fetched
    assert not res.check  # copies at the same version agree here
    for rec in res.repair_here:  # only ever a newer copy of the peer's
        assert isinstance(rec, PutTweet) and rec.tweet.version > reps[rec.tweet.id][0]
    for i in res.repair_peer:
        assert reps[i][0] > reps[i][2]


def test_copies_at_one_version_that_disagree_are_checked_against_the_tweet() -> None:
    # a posting streamed in a ring change may linger on one copy: same version, different answers
    mine = [(5, 2), (3, 1)]
    digest = peer_digest(mine, [5], [2], True, {5: 2, 3: 1}.__getitem__, lambda i: None)
    res = resolve(mine, True, digest, {5: 2, 3: 1}.__getitem__)
    assert res.ids == [5, 3] and res.check == {3}


def test_an_unsure_peer_makes_every_candidate_checked() -> None:
    mine = [(5, 2)]
    digest = peer_digest(mine, [5], [2], True, lambda i: 2, lambda i: None, unsure=True)
    res = resolve(mine, True, digest, lambda i: 2)
    assert res.ids == [5] and res.check == {5}


def test_alone_is_our_own_window() -> None:
    res = alone([(9, 1), (4, 1)], False)
    assert res.ids == [9, 4] and res.floor == 4 and not res.exhausted
    assert alone([], True).exhausted
