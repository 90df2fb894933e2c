"""The election core (node/replication/election.py) step by step, one rule per test: inputs are method calls,
outputs are the steps the shell carries out. The safety of many cores together is tests/replication/
test_election_stateful.py's."""

from __future__ import annotations

from node.model import Tweet
from node.replication import election as el
from node.replication.messages import PromiseResp
from node.shard import Promise, PutTweet, Shard, make_version

REPS = ("a", "b", "c")


def ok(epoch: int) -> PromiseResp:
    return PromiseResp(True, epoch)


def no(known: int) -> PromiseResp:
    return PromiseResp(False, known)


def core() -> el.ElectionCore:
    return el.ElectionCore("a", w=2, attempts_max=3)


def test_a_clean_election_promises_here_asks_the_others_catches_up_and_wins() -> None:
    c = core()
    assert c.campaign(7, REPS, {"b", "c"}, known=4, now=10.0) == el.PromiseHere(7, 5)
    assert c.on_promise(7, 5, "a", ok(5), 10.1) == el.AskPromises(7, 5, ("b", "c"))
    assert c.on_promise(7, 5, "c", ok(5), 10.2) == el.CatchUp(7, 5, ("c",))  # the quorum (2 of 3) is in
    assert c.on_promise(7, 5, "b", ok(5), 10.3) is None  # a late promise changes nothing
    assert c.on_caught_up(7, 5, "c", True, 10.5) == el.Won(7, 5, ("a", "c"), 0.5)
    assert c.elected == {7: 5} and c.won == 1 and not c.campaigning(7)


def test_too_few_replicas_up_loses_at_once() -> None:
    step = core().campaign(7, REPS, set(), known=0, now=0.0)
    assert isinstance(step, el.Lost) and "1 of its replicas are up, an election needs 2" in step.why


def test_a_refused_own_promise_tries_again_above_the_epoch_it_learnt() -> None:
    c = core()
    c.campaign(7, REPS, {"b", "c"}, known=0, now=0.0)
    assert c.on_promise(7, 1, "a", no(9), 0.0) == el.PromiseHere(7, 10)


def test_outbid_it_tries_again_above_the_highest_epoch_heard() -> None:
    c = core()
    c.campaign(7, REPS, {"b", "c"}, known=0, now=0.0)
    c.on_promise(7, 1, "a", ok(1), 0.0)
    assert c.on_promise(7, 1, "b", no(6), 0.0) is None  # c has not answered yet
    assert c.on_promise(7, 1, "c", no(3), 0.0) == el.PromiseHere(7, 7)
    assert c.on_promise(7, 1, "b", ok(1), 0.0) is None  # an answer of the earlier attempt is ignored


def test_too_few_answers_lose_rather_than_retry() -> None:
    c = core()
    c.campaign(7, REPS, {"b", "c"}, known=0, now=0.0)
    c.on_promise(7, 1, "a", ok(1), 0.0)
    c.on_promise(7, 1, "b", None, 0.0)
    step = c.on_promise(7, 1, "c", None, 0.0)
    assert isinstance(step, el.Lost) and "1 replicas answered the election, 2 needed" in step.why
    assert not c.campaigning(7)


def test_a_failed_catch_up_loses() -> None:
    c = core()
    c.campaign(7, REPS, {"b", "c"}, known=0, now=0.0)
    c.on_promise(7, 1, "a", ok(1), 0.0)
    c.on_promise(7, 1, "b", ok(1), 0.0)
    step = c.on_caught_up(7, 1, "b", False, 0.0)
    assert isinstance(step, el.Lost) and "could not catch up from b" in step.why and 7 not in c.elected


def test_a_newer_promise_here_during_the_catch_up_means_another_attempt() -> None:
    c = core()
    c.campaign(7, REPS, {"b", "c"}, known=0, now=0.0)
    c.on_promise(7, 1, "a", ok(1), 0.0)
    assert c.on_promised(7, 1) is False  # its own promise supersedes nothing
    c.on_promise(7, 1, "b", ok(1), 0.0)
    c.on_promised(7, 4)  # another candidate got a promise here meanwhile
    assert c.on_caught_up(7, 1, "b", True, 0.0) == el.PromiseHere(7, 2)


def test_a_ring_move_during_the_election_loses_it_and_clears_every_mastership() -> None:
    c = core()
    c.elected[3] = 2
    c.campaign(7, REPS, {"b", "c"}, known=0, now=0.0)
    c.on_promise(7, 1, "a", ok(1), 0.0)
    c.on_promise(7, 1, "b", ok(1), 0.0)
    c.on_topology(2)
    step = c.on_caught_up(7, 1, "b", True, 0.0)
    assert isinstance(step, el.Lost) and "ring moved" in step.why and c.elected == {}


def test_attempts_are_bounded() -> None:
    c = core()
    step = c.campaign(7, REPS, {"b", "c"}, known=0, now=0.0)
    for _ in range(3):
        assert isinstance(step, el.PromiseHere)
        step = c.on_promise(7, step.epoch, "a", no(step.epoch + 1), 0.0)
    assert isinstance(step, el.Lost) and "no election won in 3 attempts" in step.why


def test_a_single_replica_wins_on_its_own_promise() -> None:
    c = el.ElectionCore("a", w=1, attempts_max=3)
    c.campaign(7, ("a",), set(), known=0, now=0.0)
    assert c.on_promise(7, 1, "a", ok(1), 0.0) == el.Won(7, 1, ("a",), 0.0)


def test_stepping_down_only_from_an_epoch_as_old_or_older() -> None:
    c = core()
    c.elected[7] = 5
    assert not c.maybe_step_down(7, 4) and c.elected == {7: 5}
    assert c.on_promised(7, 6) and 7 not in c.elected  # promising 6 deposes the master of 5


def test_an_abandoned_campaign_leaves_no_trace() -> None:
    c = core()
    c.campaign(7, REPS, {"b", "c"}, known=0, now=0.0)
    c.abandon(7)
    assert not c.campaigning(7) and c.on_promise(7, 1, "a", ok(1), 0.0) is None
    assert c.campaign(7, REPS, {"b", "c"}, known=0, now=0.0) == el.PromiseHere(7, 1)


def test_a_replica_promises_only_above_its_promise_and_its_data() -> None:
    sh = Shard()
    sh.apply(PutTweet(Tweet(id=1, created_at_ms=1, user="u", text="t", version=make_version(3, 1))))
    assert el.known_epoch(sh, 7) == 3
    assert el.answer_promise(sh, 7, 3) == (PromiseResp(False, 3), None)
    assert el.answer_promise(sh, 7, 4) == (PromiseResp(True, 4), Promise(7, 4))
    sh.apply(Promise(7, 4))
    assert el.answer_promise(sh, 7, 4) == (PromiseResp(False, 4), None)


def test_a_fence_is_refused_below_the_promise_and_teaches_newer_epochs() -> None:
    sh = Shard()
    sh.apply(Promise(7, 4))
    assert el.check_fence(sh, [(7, 3)]) == ([], (7, 3, 4))
    assert el.check_fence(sh, [(7, 4), (9, 2)]) == ([Promise(9, 2)], None)
    assert el.check_fence(sh, [(7, 5)]) == ([Promise(7, 5)], None)
