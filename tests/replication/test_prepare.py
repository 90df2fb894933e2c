"""Write preparation (node/replication/prepare.py), rule 4b: a delete of a tweet this node holds as a tombstone
sends the tombstone again, so that the `deleted` answer (which the coordinator takes as done after an earlier try
of the same delete) holds only once W copies have it. Found by the replication simulation (seeds 2 and 7): a
delete acknowledged with its tombstone on the deposed master alone."""

from __future__ import annotations

from node.errors import Deleted
from node.model import Tweet, TweetPatch
from node.replication import messages as m
from node.replication.prepare import Versions, prepare_write
from node.shard import DeleteTweet, PutTweet, Shard, make_version


def test_a_delete_of_a_tombstone_sends_the_tombstone_again() -> None:
    sh = Shard()
    v1, v2 = make_version(1, 1), make_version(1, 2)
    sh.apply(PutTweet(Tweet(id=7, created_at_ms=7, user="u", text="red", version=v1), ("from:u", "red")))
    sh.apply(DeleteTweet(7, v2, 1_000, ("from:u", "red")))
    rec, res = prepare_write(sh, m.DeleteOp(7), 2_000, 1, Versions(sh.max_version), False)
    assert isinstance(rec, DeleteTweet) and (rec.id, rec.version, rec.at_ms) == (7, v2, 1_000)
    assert res.code == Deleted.code


def test_a_patch_of_a_tombstone_is_still_refused_outright() -> None:
    sh = Shard()
    v1, v2 = make_version(1, 1), make_version(1, 2)
    sh.apply(PutTweet(Tweet(id=7, created_at_ms=7, user="u", text="red", version=v1), ("from:u", "red")))
    sh.apply(DeleteTweet(7, v2, 1_000, ("from:u", "red")))
    try:
        prepare_write(sh, m.PatchOp(7, TweetPatch(text="x")), 2_000, 1, Versions(sh.max_version), False)
    except Deleted:
        return
    raise AssertionError("a patch of a deleted tweet was prepared")
