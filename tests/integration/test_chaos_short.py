"""scripts/chaos.py end to end: a short run against 5 real node processes under every fault kind available must
find nothing lost, resurrected or stale; with --sabotage the checker must catch writes made behind its back.
Also the checker's pure model on hand-made histories. Never leaves a node running (chaos.py stops its own)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "chaos.py"


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
@pytest.mark.timeout(240)
def test_short_chaos_run_loses_nothing(tmp_path: Path) -> None:
    rc, s, text = _run(
        tmp_path, "--duration", "30", "--seed", "11", "--fault-interval", "1.5", "--fault-hold", "1.5",
        "--op-timeout", "5", "--settle", "1", "--settle-timeout", "20", wall_s=180,
    )
    tail = text[-6000:]
    assert rc == 0, tail
    assert s["checker_error"] is None, tail
    assert s["acknowledged"] > 0 and s["faults_total"] > 0, tail
    assert (s["lost"], s["resurrected"], s["stale"], s["phantom"], s["duplicate"]) == (0, 0, 0, 0, 0), tail
    kinds = {"kill", "pause", "kill_all"} | ({"isolate"} if s["network_faults"] == "ran" else set())
    assert kinds <= set(s["faults"]), (s["faults"], tail)
    assert s["checks"]["gets"] > 0 and s["checks"]["searches"] > 0, tail


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
