"""Shard.apply's main claim (node/shard.py's header): applying a set of records in any order, or twice, gives the
same state. State is compared as a canonical dump: tweets, tombstones, digests, every term's postings, posting
tombstones, the outbox, promises and the highest version. Records are made the way the cluster makes them: one
content per (tweet, version), whichever copy carries it (the master's write, a repair, a hint, a catch-up)."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from node.index.terms import analyse_fast, tweet_terms_words
from node.model import Tweet
from node.query.ast import Term
from node.shard import DeleteTweet, OutboxDone, PostingOps, Promise, PutTweet, Record, Shard, make_version

WORDS = ("red", "green", "blue", "gold")
IDS = (3, 7, 11)


def dump(sh: Shard) -> dict[str, Any]:
    ix = sh.index
    return {
        "tweets": sorted((i, msgspec.json.encode(t)) for i, t in sh.tweets.items()),
        "tombstones": sorted((d.id, d.version, d.at_ms) for d in sh.tombstones.values()),
        "digest": bytes(memoryview(sh._bucket_hash).cast("B")),
        "postings": {t: sorted(ix.iter_newest(Term(t))) for t in ix.terms() if ix.df(t)},
        "posting_tombstones": sorted({**sh._ptomb_old, **sh.posting_tombstones}.items()),
        "posting_adds": sorted({**sh._padd_old, **sh.posting_adds}.items()),
        "outbox": sorted((e.tweet_id, e.version, sorted(e.add), sorted(e.remove)) for e in sh.outbox.values()),
        "promised": sorted(sh.promised.items()),
        "max_version": sh.max_version,
    }


def shard_of(records: list[Record]) -> Shard:
    sh = Shard()
    for r in records:
        sh.apply(r)
    return sh


def terms(t: Tweet) -> set[str]:
    return tweet_terms_words(t.text, t.user, t.lang)[0]


@st.composite
def histories(draw: st.DrawFn) -> dict[tuple[int, int], Tweet | int]:
    """(tweet id, version) -> the tweet at that version, or the deletion time of its tombstone (its last version:
    a deleted tweet never comes back)."""
    out: dict[tuple[int, int], Tweet | int] = {}
    for i in IDS:
        epoch = 1
        for v in sorted(draw(st.sets(st.integers(1, 6), max_size=4))):
            epoch += draw(st.integers(0, 1))  # a newer master took over
            version = make_version(epoch, v)
            if draw(st.integers(0, 4)) == 0:
                out[(i, version)] = 1_000 + v
                break
            else:
                text = " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)))
                out[(i, version)] = Tweet(id=i, created_at_ms=i, user="u", text=text, version=version)
    return out


def local_records(hist: dict[tuple[int, int], Tweet | int]) -> list[Record]:
    """A node that indexes locally: every copy is a local record (node/cluster/replica.py _localized)."""
    return [PutTweet(x, local=True) if isinstance(x, Tweet) else DeleteTweet(i, v, x, local=True)
            for (i, v), x in hist.items()]


def outbox_records(hist: dict[tuple[int, int], Tweet | int], data: st.DataObject) -> list[Record]:
    """A tweet partition's replica in a ring larger than N: tweet records carry their index work (or none: a
    repair or catch-up copy), the master's OutboxDone may follow; and promises."""
    out: list[Record] = []
    prev: dict[int, set[str]] = {}
    for (i, v), x in sorted(hist.items()):
        new = terms(x) if isinstance(x, Tweet) else set()
        gone = tuple(sorted(prev.get(i, set()) - new))
        prev[i] = new
        if isinstance(x, Tweet):
            out.append(PutTweet(x, tuple(sorted(new)), gone))
            if data.draw(st.booleans()):
                out.append(PutTweet(x))  # a repair or catch-up copy: no work
        else:
            out.append(DeleteTweet(i, v, x, gone))
        if data.draw(st.booleans()):
            out.append(OutboxDone(i, v))
    out += [Promise(p, e) for p, e in data.draw(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4)), max_size=4))]
    return out


def posting_records(hist: dict[tuple[int, int], Tweet | int]) -> list[Record]:
    """A term partition's replica: the PostingOps of every version (its terms to add, its predecessor's to remove),
    marked as the outbox marks them: `edited` once a version changed the tweet's text (node/replication/outbox.py;
    a version that only changes counts, as a like does, keeps the text and the mark)."""
    out: list[Record] = []
    prev: dict[int, set[str]] = {}
    edited: set[int] = set()
    for (i, v), x in sorted(hist.items()):
        new = terms(x) if isinstance(x, Tweet) else set()
        if i in prev and new != prev[i]:
            edited.add(i)
        out.append(PostingOps(i, v, tuple(sorted(new)), tuple(sorted(prev.get(i, set()) - new)), i in edited))
        prev[i] = new
    return out


def settled(sh: Shard, records: list[Record]) -> dict[str, Any]:
    """dump(), with the outbox entries whose work an OutboxDone of the set covers left out: such an entry is
    redundant (its work is done; driving it again changes nothing), and whether it is still there depends on the
    order (a done that arrives before its record is not remembered; a record replayed after its done queues the
    work again). The removals of the other entries are compared apart (`check_removals`)."""
    done: dict[int, int] = {}
    for r in records:
        if isinstance(r, OutboxDone):
            done[r.tweet_id] = max(done.get(r.tweet_id, 0), r.version)
    out = dump(sh)
    out["outbox"] = [(i, v, add) for i, v, add, _rem in out["outbox"] if done.get(i, 0) < v]
    out["removals"] = {i: set(rem) for i, v, _add, rem in dump(sh)["outbox"] if done.get(i, 0) < v}
    return out


def check_any_order_and_twice(records: list[Record], data: st.DataObject) -> None:
    """Any order, then every record once more in another order, gives the state of the log's order. Pending
    removals are a union of the versions' work ("a union is always safe", node/shard.py): in any order they hold
    every removal of the log's order (no older version's term is forgotten) and none of the held version's terms."""
    want = settled(in_order := shard_of(records), records)
    removals = want.pop("removals")
    shuffled = data.draw(st.permutations(records), label="order")
    again = data.draw(st.permutations(records), label="order of the second application")
    for what, sh in (("another order", shard_of(shuffled)), ("every record twice", shard_of(shuffled + again))):
        got = settled(sh, records)
        got_removals = got.pop("removals")
        assert got == want, f"{what} gave another state"
        for i, rem in removals.items():
            assert rem <= got_removals[i], f"{what}: tweet {i}'s pending work forgot to remove {rem - got_removals[i]}"
            held = terms(t) if (t := sh.tweets.get(i)) is not None else set()
            assert not got_removals[i] & held, f"{what}: tweet {i}'s pending work removes its own terms"
    assert in_order.max_version == sh.max_version


@settings(max_examples=100, deadline=None)
@given(hist=histories(), data=st.data())
def test_local_records_in_any_order_or_twice_give_one_state(
    hist: dict[tuple[int, int], Tweet | int], data: st.DataObject
) -> None:
    check_any_order_and_twice(local_records(hist), data)


@settings(max_examples=100, deadline=None)
@given(hist=histories(), data=st.data())
def test_outbox_records_in_any_order_or_twice_give_one_state(
    hist: dict[tuple[int, int], Tweet | int], data: st.DataObject
) -> None:
    check_any_order_and_twice(outbox_records(hist, data), data)


@settings(max_examples=200, deadline=None)
@given(hist=histories(), data=st.data())
def test_posting_ops_in_any_order_or_twice_give_one_state(
    hist: dict[tuple[int, int], Tweet | int], data: st.DataObject
) -> None:
    check_any_order_and_twice(posting_records(hist), data)


def test_an_older_removal_arriving_after_a_newer_re_add_keeps_the_posting() -> None:
    """Found by the property above, fixed by keeping the version of an edited tweet's adds (node/shard.py,
    Postings): v2's removal of "red" that arrives after v3 added it back is older than v3's add, so it is ignored."""
    v1, v2, v3 = (make_version(1, s) for s in (1, 2, 3))
    in_order = [PostingOps(7, v1, ("red",), (), edited=False), PostingOps(7, v2, ("green",), ("red",)),
                PostingOps(7, v3, ("red",), ("green",))]
    late = [in_order[0], in_order[2], in_order[1]]  # v2's removal of "red" arrives after v3 added it back
    for order in (in_order, late, late[::-1], in_order + late):
        sh = shard_of(order)
        assert sorted(sh.index.iter_newest(Term("red"))) == [7], order
        assert not list(sh.index.iter_newest(Term("green"))), order


def test_posting_versions_survive_a_snapshot_and_one_rotation() -> None:
    """The kept add versions are state like the tombstones: in the snapshot, and rotated with them (rule 5)."""
    v1, v2, v3 = (make_version(1, s) for s in (1, 2, 3))
    sh = shard_of([PostingOps(7, v1, ("red",), (), edited=False), PostingOps(7, v3, ("red",), ())])
    back = Shard.load(sh.dump())
    assert back.posting_adds == {("red", 7): v3}
    back.rotate_posting_tombstones()
    back.apply(PostingOps(7, v2, (), ("red",)))  # a late removal within the grace: still older than the add
    assert sorted(back.index.iter_newest(Term("red"))) == [7]
    assert back.rotate_posting_tombstones() == 1 and not back.posting_adds and not back._padd_old


def test_an_older_edit_arriving_after_a_newer_one_keeps_its_terms_to_remove() -> None:
    """Found by the property above, fixed in Shard._merge_older_work: a replica that got a tweet's delete before
    the older edits whose index work never finished forgot that their terms must go too (a partial drive may
    have indexed them). In the log's order, that work merges into the delete's."""
    v1, v2, v3, v4 = (make_version(1, s) for s in (1, 2, 3, 4))
    red1, green2, red3 = (Tweet(id=7, created_at_ms=7, user="u", text=x, version=v)
                          for x, v in (("red", v1), ("green", v2), ("red", v3)))
    log = [PutTweet(red1, ("from:u", "red")), PutTweet(green2, ("from:u", "green"), ("red",)),
           PutTweet(red3, ("from:u", "red"), ("green",)), DeleteTweet(7, v4, 1_000, ("from:u", "red"))]
    assert set(shard_of(log).outbox[7].remove) == {"from:u", "green", "red"}
    late = [log[0], log[3], log[2], log[1]]  # the delete first, then the edits (a hint replayed late)
    assert set(shard_of(late).outbox[7].remove) == {"from:u", "green", "red"}


def test_a_write_arriving_after_its_repair_copy_keeps_its_work() -> None:
    """Found by the property above, fixed in Shard._merge_work: a read repair (a copy without work) that came
    before the master's record of the same version, while an older version with the same terms had work pending,
    left the entry at the older version; the new version's work was dropped, and a catch-up (records_for) then
    carried none of it."""
    v1, v2 = make_version(1, 1), make_version(1, 2)
    red1 = Tweet(id=7, created_at_ms=7, user="u", text="red", version=v1)
    red2 = msgspec.structs.replace(red1, likes=1, version=v2)
    sh = shard_of([PutTweet(red1, ("from:u", "red")), PutTweet(red2), PutTweet(red2, ("from:u", "red"))])
    e = sh.outbox[7]
    assert (e.version, set(e.add), set(e.remove)) == (v2, {"from:u", "red"}, set())
    assert sh.records_for([7]) == [PutTweet(red2, e.add, e.remove)]


@settings(max_examples=100, deadline=None)
@given(hist=histories(), data=st.data())
def test_records_with_the_masters_words_index_as_the_text_does(
    hist: dict[tuple[int, int], Tweet | int], data: st.DataObject
) -> None:
    """A replica indexes a local PutTweet from the words its master shipped (PutTweet.words) and the tweet's own
    hashtags and mentions, without analysing the text: the state must be the one the text gives, in any order,
    whichever copies carry words (a repair, a hint or a stream carries none)."""
    tags = data.draw(st.lists(st.sampled_from(["#Gold", "@Bob", "#ß", "red!", "İ"]), max_size=3))
    plain: list[Record] = []
    shipped: list[Record] = []
    for (i, v), x in hist.items():
        if isinstance(x, Tweet):
            text = " ".join([x.text, *tags])
            a = analyse_fast(text)
            t = msgspec.structs.replace(x, text=text, hashtags=a.hashtags, mentions=a.mentions)
            plain.append(PutTweet(t, local=True))
            shipped.append(PutTweet(t, local=True, words=a.words) if data.draw(st.booleans()) else PutTweet(t, local=True))
        else:
            plain.append(DeleteTweet(i, v, x, local=True))
            shipped.append(plain[-1])
    order = data.draw(st.permutations(range(len(plain))))
    assert dump(shard_of([shipped[j] for j in order])) == dump(shard_of([plain[j] for j in order]))
    assert dump(shard_of([shipped[j] for j in order])) == dump(shard_of(sorted(plain, key=_version_of)))


def _version_of(r: Record) -> int:
    return r.tweet.version if isinstance(r, PutTweet) else r.version if isinstance(r, DeleteTweet) else 0
