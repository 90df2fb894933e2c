"""scripts/chaos.py end to end: a short run against 5 real node processes under every fault kind available must
find nothing lost, resurrected or stale, and prove that failover happened: each fault held until gossip declared
the node dead, survivors winning elections while it was down, writes acknowledged during kills and after every heal,
few writes without an answer, and every replica's own copy of every partition equal afterwards. With --sabotage
the checker must catch writes made behind its back. Also the checker's pure model on hand-made histories.
Never leaves a node running (chaos.py stops its own)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "chaos.py"
# Issue 11 §1 (the lead's): a coordinator that cannot reach a partition's master moves to a live replica instead of
# answering 503, and a paused or cut-off replica no longer stalls its partitions' writes for the RPC timeout. Until
# that lands the 30 s run only REPORTS writes refused while a quorum lived (the summary's availability line), and
# asks for acknowledged writes during kills only (a SIGSTOP or an isolation stalls them today). With the fix, set
# this to True: the run then fails on any such refusal and wants writes acknowledged during every fault, as the
# long runs do by default (--strict-availability).
ISSUE_11_S1_FIXED = True
UNANSWERED_SHARE_MAX = 0.10  # writes that got no answer at all (timeouts, broken connections)


def _chaos_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chaos", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["chaos"] = mod  # msgspec Structs resolve their annotations through the module
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path: Path, *args: str, wall_s: float) -> tuple[int, dict, str]:
    out = tmp_path / "summary.json"
    cmd = [sys.executable, str(SCRIPT), "--dir", str(tmp_path / "cluster"), "--json", str(out), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        text, _ = proc.communicate(timeout=wall_s)
    except subprocess.TimeoutExpired:
        proc.terminate()  # chaos.py heals and stops its nodes on SIGTERM
        text, _ = proc.communicate(timeout=60)
        pytest.fail(f"chaos.py ran longer than {wall_s}s:\n{text[-4000:]}")
    assert out.exists(), text[-4000:]
    return proc.returncode, json.loads(out.read_text()), text


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_short_chaos_run_loses_nothing_and_fails_over(tmp_path: Path, record_property: Any) -> None:
    # Fast gossip (dead after ~1.3 s) and faults held until every survivor says dead, then 0.75-2.25 s more; 4
    # vnodes per node so that a full anti-entropy pass (the bound on replicas agreeing) takes ~60 s, not ~4 min.
    # 8 clients: each picks any node, the faulted one included, and waits out --op-timeout there; with 4, three
    # were once all waiting on a paused node and the fourth made no write during the 3 s pause (the floor failed
    # with nothing wrong in the cluster: the writes through the others were acknowledged after the heal).
    floor_kinds = "kill,pause,isolate" if ISSUE_11_S1_FIXED else "kill"
    rc, s, text = _run(
        tmp_path, "--duration", "30", "--seed", "11", "--fault-interval", "1.5", "--fault-hold", "1.5", "--clients", "8",
        "--op-timeout", "5", "--settle", "1", "--settle-timeout", "20", "--gossip", "fast", "--vnodes", "4",
        "--outlast-detection", "--ack-floor", "1", "--ack-floor-faults", floor_kinds,
        "--max-unanswered-share", str(UNANSWERED_SHARE_MAX),
        "--strict-availability" if ISSUE_11_S1_FIXED else "--no-strict-availability", wall_s=300,
    )
    tail = text[-6000:]
    av = s["availability"]
    record_property("refused_while_quorum_lived", av["refused_while_quorum_lived"])
    print(f"refused while a quorum lived: {av['refused_while_quorum_lived']} of {av['refused']} refusals")
    assert rc == 0, tail
    assert s["checker_error"] is None, tail
    assert s["acknowledged"] > 0 and s["faults_total"] > 0, tail
    assert (s["lost"], s["resurrected"], s["stale"], s["phantom"], s["duplicate"]) == (0, 0, 0, 0, 0), tail
    kinds = {"kill", "pause", "kill_all"} | ({"isolate"} if s["network_faults"] == "ran" else set())
    assert kinds <= set(s["faults"]), (s["faults"], tail)
    assert s["checks"]["gets"] > 0 and s["checks"]["searches"] > 0, tail
    assert not s["settled"].get("unsettled"), s["settled"]
    # failover happened: every single-node fault outlasted detection; every kill was taken over
    singles = [f for f in av["faults"] if f["kind"] != "kill_all" and not f["cut_short"]]  # (not ended by the run)
    assert singles and all(f["detected_after_s"] is not None for f in singles), av["faults"]
    kills = [f for f in singles if f["kind"] == "kill"]
    assert kills and all(f["takeovers"] >= 1 and f["acks_during"] >= 1 for f in kills), av["faults"]
    assert all(f["acks_after_heal"] >= 1 for f in av["faults"][:-1]), av["faults"]  # the last may end the run
    assert av["unanswered_share"] <= UNANSWERED_SHARE_MAX, av
    assert av["failures"] == [], av["failures"]
    # every replica's own copy, not answers through coordinators that repair as they read
    assert s["replicas"]["partitions_differing"] == 0 and s["replicas"]["polls"] >= 1, s["replicas"]
    if ISSUE_11_S1_FIXED:
        assert av["refused_while_quorum_lived"] == 0, av["refused_examples"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_checker_catches_writes_behind_its_back(tmp_path: Path) -> None:
    rc, s, text = _run(tmp_path, "--duration", "4", "--seed", "5", "--no-faults", "--sabotage", "--settle", "0",
                       wall_s=90)
    assert rc == 1, text[-4000:]
    assert s["stale"] >= 5 and s["lost"] >= 5, text[-4000:]  # one edited and one deleted tweet, on each of 5 nodes


def test_model_allowed_states_and_verdicts() -> None:
    c = _chaos_module()
    W, T = c.Write, c.TweetLog

    def w(kind: str, tok: str | None, outcome: str) -> object:
        return W(kind, tok, None if tok is None else f"{tok} text", outcome, "n1", 0.0, 1.0)

    acked = T("a", 1, [w("create", "a", c.OK), w("edit", "b", c.OK)])
    assert c.allowed_states(acked) == {"b text"}
    assert c.judge(acked, "b text", {"b"}) == []
    assert [v[0] for v in c.judge(acked, "a text", {"a"})] == ["stale", "stale"]
    assert [v[0] for v in c.judge(acked, None, set())] == ["lost", "lost"]
    assert [v[0] for v in c.judge(acked, "b text", {"a", "b"})] == ["stale", "stale"]
    assert [v[0] for v in c.judge(acked, "b text", set())] == ["lost"]  # document there, index lost it

    deleted = T("a", 2, [w("create", "a", c.OK), w("delete", None, c.OK)])
    assert c.allowed_states(deleted) == {None}
    assert [v[0] for v in c.judge(deleted, "a text", set())] == ["resurrected"]
    assert [v[0] for v in c.judge(deleted, None, {"a"})] == ["resurrected"]

    # an indeterminate edit may land (even late) or not; a failed one never; an indeterminate delete may land
    maybe = T("a", 3, [w("create", "a", c.OK), w("edit", "b", c.INFO), w("edit", "c", c.OK), w("edit", "d", c.FAIL)])
    assert c.allowed_states(maybe) == {"b text", "c text"}
    assert c.judge(maybe, "b text", {"b"}) == [] and c.judge(maybe, "c text", {"c"}) == []
    assert [v[0] for v in c.judge(maybe, "d text", {"c"})] == ["phantom"]
    assert [v[0] for v in c.judge(maybe, "b text", {"c"})] == ["divergent"]  # index and document disagree
    gone = T("a", 4, [w("create", "a", c.OK), w("delete", None, c.INFO)])
    assert c.allowed_states(gone) == {None, "a text"}
    assert c.judge(gone, None, set()) == [] and c.judge(gone, "a text", {"a"}) == []
    assert [v[0] for v in c.judge(gone, "a text", set())] == ["divergent"]

    unsure = T("a", 5, [w("create", "a", c.INFO)])
    assert c.allowed_states(unsure) == {None, "a text"}
    failed = T("a", 6, [w("create", "a", c.FAIL)])
    assert [v[0] for v in c.judge(failed, "a text", {"a"})] == ["phantom", "phantom"]
    assert [v[0] for v in c.judge_unknown_id(failed, 1)] == ["phantom"]
    assert [v[0] for v in c.judge_unknown_id(unsure, 2)] == ["duplicate"]
    assert c.judge_unknown_id(unsure, 1) == [] and c.judge_unknown_id(unsure, 0) == []

    batches = c.query_batches([f"cxtoken{i}" for i in range(100)])
    assert sum(map(len, batches)) == 100 and all(len(" OR ".join(b)) <= 1000 and len(b) <= 64 for b in batches)


def test_availability_judge_on_a_hand_made_record() -> None:
    c = _chaos_module()
    W, T, F = c.Write, c.TweetLog, c.FaultWindow

    def w(outcome: str, t0: float, t1: float, status: int | None) -> object:
        return W("create", "x", "x text", outcome, "n2", t0, t1, status)

    ring = [("n1", "n2", "n3"), ("n2", "n3", "n4"), ("n3", "n4", "n1"), ("n4", "n1", "n2")]
    quorum = c.quorum_everywhere(ring, 2)
    assert quorum({"n1"}) and not quorum({"n1", "n2"}) and not quorum({"n1", "n2", "n3", "n4"})
    kill = F("kill", ["n1"], 10.0, detected=11.0, heal=12.0, healed=13.0, down=["n1"],
             elections_before={"n2": 3.0, "n3": 1.0}, elections_at_heal={"n2": 5.0, "n3": 1.0, "n4": 7.0})
    pause = F("pause", ["n2"], 20.0, detected=21.0, heal=22.0, healed=22.1, down=["n2"])
    everyone = F("kill_all", ["n1", "n2", "n3", "n4"], 30.0, heal=31.0, healed=33.0, down=["n1", "n2", "n3", "n4"])
    ended = F("pause", ["n3"], 40.0, heal=40.1, healed=40.1, down=["n3"], cut_short=True)  # the run stopped first
    logs = [
        T("a", 1, [w(c.OK, 10.5, 11.0, 201)]),  # acknowledged during the kill
        T("b", 2, [w(c.OK, 13.0, 14.0, 201)]),  # ... after its heal
        T("c", 3, [w(c.INFO, 11.0, 11.5, 503)]),  # refused while n2, n3, n4 lived: counted
        T("d", 4, [w(c.INFO, 30.5, 30.6, 503)]),  # refused while every node was down: not counted
        T("e", 5, [w(c.INFO, 23.0, 28.0, None)]),  # no answer at all
        T("f", 6, [w(c.OK, 34.0, 34.5, 201)]),  # after the kill of every node (and after the pause's heal window)
    ]
    av = c.judge_availability(logs, [kill, pause, everyone, ended], quorum, 1, 3.0, True,
                              frozenset({"kill", "pause"}))
    assert kill.takeovers() == 2  # n2 won 2; n4 restarted meanwhile (no figure before): not counted
    assert [f["acks_during"] for f in av["faults"]] == [1, 0, 0, 0]
    assert [f["acks_after_heal"] for f in av["faults"]] == [1, 0, 1, 0]
    assert av["faults"][3]["takeovers"] is None  # cut short: neither detection nor takeovers are asked of it
    assert (av["refused"], av["refused_while_quorum_lived"]) == (2, 1) and av["refused_examples"][0]["id"] == 3
    assert av["unanswered"] == 1 and av["unanswered_share"] == round(1 / 6, 4)
    assert av["takeovers"] == 2 and av["faults_without_takeover"] == 1  # the pause saw none
    assert len(av["failures"]) == 2 and all("pause of n2" in f for f in av["failures"]), av["failures"]
    lenient = c.judge_availability(logs, [kill, pause, everyone], quorum, 1, 3.0, True, frozenset({"kill"}))
    assert len(lenient["failures"]) == 1 and "after it healed" in lenient["failures"][0], lenient["failures"]
