"""Write preparation on a partition's elected node (pure): check one write against this node's copy and make
the record to replicate, stamped with a version of the epoch the node was elected for. Never sends, logs,
sleeps or reads a clock (`now` is an argument); node/cluster/writes.py replicates what it returns.

Rules:
1. A version is (epoch << EPOCH_SHIFT | seq) (node/records.py). `Versions` stamps, within an epoch, a seq above
   every seq of that epoch already on the tweet and above every seq this node stamped before (so two writes of
   one epoch never share a version, even across tweets). A new epoch starts above nothing but its own seqs.
2. A tweet that already holds a version of a newer epoch is refused with StaleEpoch: a newer master wrote it,
   so this one was deposed without knowing (it steps down, is elected again with a catch-up, and retries).
3. Create: an id deleted before cannot be used again (Conflict; `id_taken` for a generated id, which the
   coordinator replaces). The same content again is a retry: the copy held is sent again, unchanged ("exists";
   for a generated id only with the same created_at, i.e. the coordinator's own retry). Other content under
   that id: Conflict, or id_taken for a generated id.
4. Patch and delete need a live tweet (NotFound, or Deleted for a tombstone). A patch that changes nothing sends
   the copy held again ("ok"), which heals a replica that missed it; it stamps no version. 4b. A delete of a
   tombstone sends the tombstone again and answers Deleted only with it on W copies: the tombstone may be the
   unacknowledged work of an earlier try of the same delete, which its coordinator then counts as done.
5. Index work: with local indexing the record carries none (every replica indexes from its own copies);
   otherwise it carries the terms of the new version to add and those of the old version to remove.
"""

from __future__ import annotations

from typing import Any

import msgspec

from node.errors import Conflict, Deleted, NotFound, StaleEpoch
from node.index.terms import analyse_fast
from node.model import build_tweet, same_content
from node.query.match import analysed_terms, index_terms
from node.replication import messages as m
from node.shard import EPOCH_SHIFT, SEQ_MASK, DeleteTweet, PutTweet, Record, Shard, make_version


class Versions:
    """The versions one node stamps as an elected master (rule 1)."""

    def __init__(self, max_version: int) -> None:
        self.seq = max_version & SEQ_MASK  # a restarted node continues above its newest version's seq

    def next(self, current: int, epoch: int) -> int:
        """The version of a new write in `epoch` over a tweet at version `current` (0: none)."""
        if current >> EPOCH_SHIFT > epoch:
            raise StaleEpoch("a newer master has written this tweet; retry")
        self.seq = max(self.seq, current & SEQ_MASK if current >> EPOCH_SHIFT == epoch else 0) + 1
        return make_version(epoch, self.seq)


def prepare_write(
    shard: Shard, op: m.WriteOp, now: int, epoch: int, versions: Versions, local_index: bool
) -> tuple[Record | None, m.WriteResult | None]:
    """Check one write against `shard`. -> (the record to apply and replicate, or None; its result, or None).
    Raises the MurmurError of a refused write."""
    sh = shard
    if isinstance(op, m.CreateOp):
        if op.id in sh.tombstones:
            if op.generated:
                return None, m.WriteResult("error", code="id_taken")
            raise Conflict(f"tweet {op.id} was deleted; its id cannot be used again", "id")
        old = sh.tweets.get(op.id)
        if old is not None:
            # the same content again: a retry (for a generated id, the coordinator's own retry of this very
            # op, which fixed the id and the time before its first try)
            if same_content(old, op.tweet) and (not op.generated or old.created_at_ms == op.created_at_ms):
                if local_index:
                    return PutTweet(old, local=True), m.WriteResult("exists", old)
                return PutTweet(old, tuple(sorted(index_terms(old)[0]))), m.WriteResult("exists", old)
            if op.generated:
                return None, m.WriteResult("error", code="id_taken")
            raise Conflict(f"tweet {op.id} exists with other content", "id")
        t = op.tweet
        a = analyse_fast(t.text)
        tweet = build_tweet(t, op.id, op.created_at_ms, a, versions.next(0, epoch))
        if local_index:
            return PutTweet(tweet, local=True, words=a.words), m.WriteResult("created", tweet)
        return PutTweet(tweet, tuple(sorted(analysed_terms(a, t.user, t.lang)))), m.WriteResult("created", tweet)
    old = sh.tweets.get(op.id)
    if old is None:
        if op.id in sh.tombstones:
            if isinstance(op, m.DeleteOp):
                # Rule 4b: the tombstone may be here only (an earlier try of this delete that did not reach W:
                # its coordinator retries, and takes `deleted` after such a try as done). Sent again, like a
                # create's retry, so that the answer holds only once W copies have it.
                (held,) = sh.records_for([op.id])
                return held, m.WriteResult("error", code=Deleted.code, message=f"tweet {op.id} was deleted", field="id")
            raise Deleted(f"no tweet with id {op.id}: it was deleted", "id")
        raise NotFound(f"no tweet with id {op.id}", "id")
    if isinstance(op, m.DeleteOp):
        version = versions.next(old.version, epoch)
        if local_index:
            return DeleteTweet(op.id, version, now, local=True), m.WriteResult("ok")
        rec = DeleteTweet(op.id, version, now, tuple(sorted(index_terms(old)[0])))
        return rec, m.WriteResult("ok")
    p = op.patch
    changes: dict[str, Any] = {}
    if p.text is not None and p.text != old.text:
        a = analyse_fast(p.text)
        changes.update(text=p.text, hashtags=a.hashtags, mentions=a.mentions, edited_at_ms=now)
    if p.likes is not None and p.likes != old.likes:
        changes["likes"] = p.likes
    if p.retweets is not None and p.retweets != old.retweets:
        changes["retweets"] = p.retweets
    if not changes:
        if local_index:
            return PutTweet(old, local=True), m.WriteResult("ok", old)
        return PutTweet(old, tuple(sorted(index_terms(old)[0]))), m.WriteResult("ok", old)
    new = msgspec.structs.replace(old, version=versions.next(old.version, epoch), **changes)
    if local_index:
        return PutTweet(new, local=True, words=a.words if "text" in changes else None), m.WriteResult("ok", new)
    new_terms = analysed_terms(a, new.user, new.lang) if "text" in changes else index_terms(new)[0]
    gone = index_terms(old)[0] - new_terms
    return PutTweet(new, tuple(sorted(new_terms)), tuple(sorted(gone))), m.WriteResult("ok", new)
