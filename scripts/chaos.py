"""Jepsen-style chaos test: a real cluster of node processes, concurrent clients, a nemesis (kill -9, SIGSTOP,
kill -9 of every node, network isolation), then a checker that asks EVERY node for every tweet the run wrote, and
every replica for its OWN copy of every partition (digests over the authenticated node-to-node transport).
    .venv/bin/python scripts/chaos.py --duration 1800 --seed 7 --json chaos.json
Besides safety (nothing lost, resurrected, stale) it judges availability: a fault holds until gossip declares the
node dead (so survivors take over: elections are counted), every fault and every heal must see acknowledged writes,
the share of writes without an answer is bounded, and a write refused (503) while a quorum of every partition lived
is counted (CONTRACT §6) and, with --strict-availability (the default), fails the run.
Never signals a pid it did not start; always heals (SIGCONT, restart, network) and stops its nodes on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.config import load_config
from tests.support import replicas
from tests.support.procs import write_config

OK, FAIL, INFO = "ok", "fail", "info"  # acknowledged / certainly not applied / may or may not have applied
CATEGORIES = ("lost", "resurrected", "stale", "phantom", "duplicate")  # any of these fails the run
# Each observation allowed, but GET and search disagree about an unacknowledged write (e.g. an edit that reached one
# replica): reported, not failed, since R of N replicas need not have seen a write that never reached W.
DIVERGENT = "divergent"
EXAMPLES_MAX = 5  # examples printed per category
START_TIMEOUT_S = 60.0  # a (re)started node must answer /health by then
STOP_TIMEOUT_S = 15.0  # all nodes together, SIGTERM to SIGKILL
QUERY_TOKENS_MAX = 40  # tokens OR-ed into one check search (the parser allows 64 terms, 1000 characters)
QUERY_CHARS_MAX = 900
CHECK_RETRIES = 5  # a check request that errors is retried this often before the checker gives up
DETECT_TIMEOUT_S = 60.0  # --outlast-detection waits this long at most for every survivor to see the node dead
AFTER_HEAL_S = 3.0  # the window after a heal in which --ack-floor acknowledged writes must be answered
CONVERGE_POLL_S = 2.0  # replica digests are compared again this often until they agree (--converge-timeout)
# [membership] of --gossip fast: a crashed node is dead everywhere after ~1.1-1.4 s on 5 nodes (README, Faults)
FAST_GOSSIP = "[membership]\nprobe_interval_s = 0.2\nprobe_timeout_s = 0.1\ngossip_interval_s = 0.05\n"
SECRET = "chaos-secret-" + "0" * 24  # 37 characters: also valid for a cluster on non-loopback addresses

_T0 = time.monotonic()


def now() -> float:
    """Seconds since the start of the run: the time base of every write and fault record."""
    return time.monotonic() - _T0


def say(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:8.1f}s {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- the model (pure: no I/O, no clock)


class Write(msgspec.Struct):
    kind: str  # create | edit | delete
    token: str | None  # the unique word of the text this write sets (None for a delete)
    text: str | None
    outcome: str  # OK | FAIL | INFO
    node: str
    t0: float  # seconds since the start of the run
    t1: float
    status: int | None = None  # HTTP status; None for a transport error
    err: str = ""


class TweetLog(msgspec.Struct):
    """Every write to one tweet, in the order its (single) owning client issued them: ops on one tweet never overlap."""

    key: str  # the create's token: names the tweet even when its id is unknown (an unanswered create without id)
    id: int | None
    writes: list[Write]

    def text_of(self, token: str) -> str | None:
        return next((w.text for w in self.writes if w.token == token), None)

    def tokens(self) -> list[str]:
        return [w.token for w in self.writes if w.token is not None]


def allowed_states(log: TweetLog) -> set[str | None]:
    """The final texts the tweet may show (None = 404). Acknowledged writes took effect in order within their
    request; an indeterminate one may take effect at any moment after it was sent (even after later writes) or never;
    a failed one never. A delete is final: nothing brings a deleted tweet back (CONTRACT: no resurrection)."""
    create = log.writes[0]
    assert create.kind == "create"
    if create.outcome == FAIL:
        return {None}
    if any(w.kind == "delete" and w.outcome == OK for w in log.writes):
        return {None}
    states: set[str | None] = set()
    if create.outcome == INFO:
        states |= {None, create.text}
    last_ok = [w.text for w in log.writes if w.kind != "delete" and w.outcome == OK]
    if last_ok:
        states.add(last_ok[-1])
    states |= {w.text for w in log.writes if w.kind == "edit" and w.outcome == INFO}
    if any(w.kind == "delete" and w.outcome == INFO for w in log.writes):
        states.add(None)
    return states


MISSING = "<missing>"  # the observation was not made


def judge(log: TweetLog, got: str | None, found: set[str]) -> list[tuple[str, str]]:
    """Verdicts for one tweet on one node. `got`: GET's text (None = 404, MISSING = not asked); `found`: the tokens
    whose search returned this tweet. -> [(category, why)]; empty when the node is right."""
    allowed = allowed_states(log)
    failed = {w.text for w in log.writes if w.outcome == FAIL and w.text is not None}
    deleted = any(w.kind == "delete" and w.outcome == OK for w in log.writes)

    def wrong(text: str | None) -> str:
        if text is None:
            return "lost"
        if deleted:
            return "resurrected"
        return "phantom" if text in failed or log.writes[0].outcome == FAIL else "stale"

    out: list[tuple[str, str]] = []
    if got is not MISSING and got not in allowed:
        out.append((wrong(got), f"GET gave {got!r}"))
    texts = {log.text_of(t) for t in found}
    for t in sorted(found):
        if log.text_of(t) not in allowed:
            out.append((wrong(log.text_of(t)), f"search {t} found it"))
    if len(found) > 1:
        out.append(("stale", f"searches for several versions found it: {sorted(found)}"))
    if not found and None not in allowed:
        out.append(("lost", "no search for its text found it"))
    if got is not MISSING and len(texts) == 1 and got != next(iter(texts)) and not out:
        out.append((DIVERGENT, f"index and document disagree: GET {got!r}, search found {sorted(found)}"))
    if got not in (MISSING, None) and not found and not out:
        out.append((DIVERGENT, f"GET gave {got!r} but no search for its text found it"))
    return out


def judge_unknown_id(log: TweetLog, hits: int) -> list[tuple[str, str]]:
    """A create without id that got no answer: its token may be found once, never twice."""
    if hits > 1:
        return [("duplicate", f"one create, {hits} tweets carry its token")]
    if hits == 1 and log.writes[0].outcome == FAIL:
        return [("phantom", "a create that certainly failed is searchable")]
    return []


def query_batches(tokens: list[str]) -> list[list[str]]:
    """Tokens grouped into `a OR b OR ...` queries within the parser's limits."""
    out: list[list[str]] = []
    cur: list[str] = []
    chars = 0
    for t in tokens:
        if cur and (len(cur) >= QUERY_TOKENS_MAX or chars + len(t) + 4 > QUERY_CHARS_MAX):
            out.append(cur)
            cur, chars = [], 0
        cur.append(t)
        chars += len(t) + 4
    if cur:
        out.append(cur)
    return out


# ---------------------------------------------------------------- availability (pure: the record and the ring)


def unanswered(w: Write) -> bool:
    """No answer at all (a timeout, a broken connection) or a 5xx other than a refusal."""
    return w.outcome == INFO and w.status != 503


def quorum_everywhere(partitions: list[tuple[str, ...]], w: int) -> Callable[[set[str]], bool]:
    """down nodes -> whether every partition of the ring still had W replicas outside them. One fault at a time
    takes one node (or all), so this is exactly "a quorum of the partitions a write touches lived"."""

    def ok(down: set[str]) -> bool:
        return all(sum(1 for r in reps if r not in down) >= w for reps in partitions)

    return ok


def judge_availability(logs: list[TweetLog], windows: list[Any], quorum: Callable[[set[str]], bool],
                       floor: int, after_heal_s: float, outlast: bool,
                       floor_kinds: frozenset[str] = frozenset({"kill", "pause", "isolate", "link_cut"})
                       ) -> dict[str, Any]:
    """Per fault: acknowledged writes answered while it held and in the after_heal_s after it healed, takeover
    elections; overall: writes refused (503) while a quorum of every partition lived (CONTRACT §6: none may be),
    and the share of writes without an answer. -> figures and the list of `failures` (floors not met)."""
    writes = [w for lg in logs for w in lg.writes]
    faults = []
    failures: list[str] = []
    for win in windows:
        single = quorum(set(win.down))  # writes could still be acknowledged meanwhile
        one_down = len(win.down) == 1
        during = sum(1 for w in writes if w.outcome == OK and win.start <= w.t1 <= win.heal)
        after = sum(1 for w in writes if w.outcome == OK and win.healed <= w.t1 <= win.healed + after_heal_s)
        f = {"kind": win.kind, "nodes": win.nodes, "start": win.start, "held_s": round(win.heal - win.start, 2),
             "detected_after_s": None if win.detected is None else round(win.detected - win.start, 2),
             "takeovers": win.takeovers() if one_down and not win.cut_short else None, "acks_during": during,
             "acks_after_heal": after, "cut_short": win.cut_short}
        faults.append(f)
        what = f"{win.kind} of {','.join(win.nodes)} at {win.start:.1f}s"
        if single and win.kind in floor_kinds and not win.cut_short and during < floor:  # (none if all are down)
            failures.append(f"{what}: {during} writes acknowledged while it held, fewer than --ack-floor {floor}")
        if after < floor and win.healed + after_heal_s <= max((w.t1 for w in writes), default=0.0):
            failures.append(f"{what}: {after} writes acknowledged in the {after_heal_s}s after it healed, "
                            f"fewer than --ack-floor {floor}")
        if one_down and outlast and win.detected is None and not win.cut_short:
            failures.append(f"{what}: never seen dead by every survivor within {DETECT_TIMEOUT_S}s")
    singles = [f for f in faults if f["takeovers"] is not None]
    takeovers = sum(f["takeovers"] for f in singles)
    if outlast and singles and takeovers == 0:
        failures.append(f"{len(singles)} single-node faults outlasted detection, yet no survivor won an election")

    refused: list[dict[str, Any]] = []
    for lg in logs:
        for w in lg.writes:
            if w.status != 503:
                continue
            down = {n for win in windows if win.start <= w.t1 and w.t0 <= win.healed for n in win.down}
            # a 503 from the very node the client asked, while that node is down or restarting, is that node not
            # serving (like a refused connection: a client then asks another node), not a refused write
            if w.node in down:
                continue
            if quorum(down):
                refused.append({"id": lg.id, "kind": w.kind, "via": w.node, "t0": w.t0, "t1": w.t1,
                                "down": sorted(down), "err": w.err})
    n_unanswered = sum(1 for w in writes if unanswered(w))
    return {
        "faults": faults, "takeovers": takeovers,
        "faults_without_takeover": sum(1 for f in singles if f["takeovers"] == 0),
        "refused": sum(1 for w in writes if w.status == 503),
        "refused_while_quorum_lived": len(refused), "refused_examples": refused[:EXAMPLES_MAX],
        "unanswered": n_unanswered, "unanswered_share": round(n_unanswered / max(1, len(writes)), 4),
        "failures": failures,
    }


# ---------------------------------------------------------------- the cluster: processes we started, and only those


class Node:
    def __init__(self, config: Path, name: str, url: str, http_port: int, rpc_port: int, host: str = "127.0.0.1",
                 prefix: tuple[str, ...] = ()) -> None:
        self.config, self.name, self.url, self.host = config, name, url, host
        self.ports = (http_port, rpc_port)
        self.prefix = prefix  # e.g. ("ip", "netns", "exec", NS): how to start it (exec'd: the pid is the node's)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = config.parent / f"{name}.log"
        self.expect_dead = True  # False while it runs and nobody meant it to die
        self.paused = False
        self.starts = 0

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- chaos: start #{self.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            root = str(Path(__file__).resolve().parents[1])
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": root}
            # a session of its own: Ctrl-C at the terminal reaches chaos.py only, which then stops the nodes itself
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "node.cli.main", "node", "--config", str(self.config),
                 "--name", self.name],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        self.starts += 1
        self.expect_dead = False

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"node {self.name} exited with {self.rc()}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"node {self.name} did not answer /health in {timeout_s}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rc(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def send(self, sig: signal.Signals) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill9(self) -> None:
        self.expect_dead = True
        self.send(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(STOP_TIMEOUT_S)
        self.paused = False

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def stop_all(nodes: list[Node]) -> None:
    """SIGCONT + SIGTERM to every node we started, SIGKILL whatever is still up after STOP_TIMEOUT_S."""
    for nd in nodes:
        nd.expect_dead = True
        nd.send(signal.SIGCONT)
        nd.send(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for nd in nodes:
        if nd.proc is None:
            continue
        try:
            nd.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"node {nd.name} ignored SIGTERM for {STOP_TIMEOUT_S}s: SIGKILL")
            nd.send(signal.SIGKILL)
            nd.proc.wait(STOP_TIMEOUT_S)


class LoIsolation:
    """Isolates a node: a u32 filter on lo sends every packet to or from its HTTP and RPC ports into an HTB class of
    8 bit/s with a one-packet queue, a black hole (this kernel has no tc drop action; unmatched traffic bypasses HTB).
    Connections the node itself opens to peers leave from ephemeral ports and are not cut: it is cut off from clients
    and from every peer that calls it, not a perfect two-way partition. Heals by removing the root qdisc, so it refuses
    to run when lo already has one (someone else's, or ours left behind by a SIGKILL)."""

    def __init__(self) -> None:
        self.installed = False

    @staticmethod
    def _tc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tc", *args], capture_output=True, text=True, timeout=10)

    def probe(self, spare_port: int) -> str | None:
        """None when isolation works here, else why it is skipped."""
        if os.geteuid() != 0:
            return "not running as root"
        for tool in ("ip", "tc"):
            if shutil.which(tool) is None:
                return f"`{tool}` (iproute2) is not installed"
        if subprocess.run(["ip", "link", "show", "lo"], capture_output=True, timeout=10).returncode != 0:
            return "`ip link show lo` failed"
        shown = self._tc("qdisc", "show", "dev", "lo")
        if shown.returncode != 0:
            return f"`tc qdisc show dev lo` failed: {shown.stderr.strip()}"
        if not shown.stdout.strip().startswith("qdisc noqueue 0: root") or shown.stdout.count("qdisc") > 1:
            return (f"lo already has a root qdisc ({shown.stdout.strip()}); not touching it "
                    "(if a killed chaos run left it: `tc qdisc del dev lo root`)")
        why = self.isolate_ports((spare_port,))
        self.heal()
        return why

    def isolate(self, nd: Node) -> str | None:
        return self.isolate_ports(nd.ports)

    @staticmethod
    def describe(nd: Node) -> str:
        return f"ports {nd.ports} dropped on lo; /health now times out"

    def isolate_ports(self, ports: Iterable[int]) -> str | None:
        steps = [
            ["qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "0"],
            ["class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate", "8bit", "ceil", "8bit",
             "burst", "1", "cburst", "1", "quantum", "1500"],
            ["qdisc", "add", "dev", "lo", "parent", "1:1", "handle", "10:", "pfifo", "limit", "1"],
        ]
        for port in ports:
            for way in ("dport", "sport"):
                steps.append(["filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                              "match", "ip", way, str(port), "0xffff", "flowid", "1:1"])
        for i, step in enumerate(steps):
            r = self._tc(*step)
            if r.returncode != 0:
                return f"`tc {' '.join(step)}` failed: {r.stderr.strip()}"
            self.installed = self.installed or i == 0
        return None

    def heal(self) -> None:
        if self.installed:
            r = self._tc("qdisc", "del", "dev", "lo", "root")
            if r.returncode != 0:
                say(f"WARNING: could not remove the isolation qdisc: {r.stderr.strip()}; run `tc qdisc del dev lo root`")
            self.installed = False


class NetnsNet:
    """--netns: network faults at the lab's switch (tests/support/netns.py): a node cut off from everyone, the
    clients included, both ways (a real partition, unlike LoIsolation), or one link between two nodes cut."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab

    def isolate(self, nd: Node) -> str | None:
        self.lab.cut(nd.name, "*")
        return None

    def cut_link(self, a: Node, b: Node) -> None:
        self.lab.cut(a.name, b.name)

    @staticmethod
    def describe(nd: Node) -> str:
        return f"every link of {nd.name} cut at the switch, both ways"

    def heal(self) -> None:
        self.lab.heal()


# ---------------------------------------------------------------- the run's record, shared by the threads


class Record:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logs: list[TweetLog] = []
        self.ops: Counter[tuple[str, str]] = Counter()  # (kind, outcome)
        self.faults: Counter[str] = Counter()
        self.fault_events: list[dict[str, Any]] = []
        self.windows: list[Any] = []  # FaultWindow, in order
        self.anomalies: list[dict[str, Any]] = []  # wrong answers seen while running

    def op(self, kind: str, outcome: str) -> None:
        with self.lock:
            self.ops[(kind, outcome)] += 1

    def anomaly(self, kind: str, **detail: Any) -> None:
        with self.lock:
            self.anomalies.append({"kind": kind, **detail})
        say(f"ANOMALY {kind}: {detail}")

    def add_log(self, log: TweetLog) -> None:
        with self.lock:
            self.logs.append(log)

    def add_window(self, win: Any) -> None:
        with self.lock:
            self.windows.append(win)


def outcome_of(resp: httpx.Response | None, exc: Exception | None) -> str:
    """A refused connection never carried the request (FAIL); 2xx is acknowledged; 4xx is a definite refusal;
    5xx, a timeout or a broken connection may or may not have applied the write (INFO)."""
    if exc is not None:
        return FAIL if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) else INFO
    assert resp is not None
    if resp.status_code < 300:
        return OK
    return FAIL if resp.status_code < 500 else INFO


# ---------------------------------------------------------------- clients


def _error_text(resp: httpx.Response | None) -> str:
    try:
        return str(resp.json()["error"]["message"])[:160] if resp is not None else ""
    except (ValueError, KeyError, TypeError):
        return "" if resp is None else resp.text[:160]


def _brief(log: TweetLog) -> list[str]:
    return [f"{w.kind} {w.outcome}({w.status or w.err}) via {w.node} {w.t0}-{w.t1}s" for w in log.writes]


class Client:
    """One client thread: one operation at a time (so --clients bounds the operations in flight). It owns the tweets
    it creates; only it edits or deletes them, so the operations on one tweet never overlap."""

    def __init__(self, idx: int, seed: int, nonce: str, nodes: list[Node], rec: Record, timeout_s: float) -> None:
        self.idx, self.nodes, self.rec = idx, nodes, rec
        self.rng = random.Random(f"{seed}-client-{idx}")
        self.nonce = nonce
        self.seq = 0
        self.refused = False  # the last operation found a node refusing connections
        self.live: list[TweetLog] = []  # created OK, never sent a delete that may have applied
        self.http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(2.0, timeout_s)))

    def token(self) -> str:
        self.seq += 1
        return f"cx{self.nonce}c{self.idx}n{self.seq}"

    def call(self, method: str, node: Node, path: str, **kw: Any) -> tuple[httpx.Response | None, Exception | None, float, float]:
        t0 = time.monotonic() - _T0
        try:
            resp = self.http.request(method, node.url + path, **kw)
            return resp, None, t0, time.monotonic() - _T0
        except httpx.HTTPError as e:
            self.refused = self.refused or isinstance(e, httpx.ConnectError | httpx.ConnectTimeout)
            return None, e, t0, time.monotonic() - _T0

    def write(self, kind: str, token: str | None, text: str | None, node: Node,
              resp: httpx.Response | None, exc: Exception | None, t0: float, t1: float) -> Write:
        out = outcome_of(resp, exc)
        self.rec.op(kind, out)
        status = None if resp is None else resp.status_code
        if resp is not None and 400 <= resp.status_code < 500 and resp.status_code != 408:
            self.rec.anomaly("unexpected_4xx", op=kind, node=node.name, status=status, body=resp.text[:200])
        if resp is not None and resp.status_code == 500:  # an unhandled error in a node: never an answer
            self.rec.anomaly("internal_error", op=kind, node=node.name, body=resp.text[:200])
        err = type(exc).__name__ if exc is not None else _error_text(resp) if status and status >= 500 else ""
        return Write(kind, token, text, out, node.name, round(t0, 3), round(t1, 3), status, err)

    def run(self, stop: threading.Event) -> None:
        ops: list[tuple[Callable[[], None], int]] = [
            (lambda: self.create(True), 20), (lambda: self.create(False), 12), (self.bulk, 6),
            (self.edit, 22), (self.delete, 8), (self.search, 16), (self.get, 10),
        ]
        fns, weights = zip(*ops, strict=True)
        while not stop.is_set():
            try:
                self.refused = False
                self.rng.choices(fns, weights)[0]()
                if self.refused:  # a node is down: do not spin on it (a bounded, short pause)
                    stop.wait(self.rng.uniform(0.05, 0.25))
            except Exception:
                self.rec.anomaly("client_crash", client=self.idx, trace=traceback.format_exc()[-800:])
                stop.wait(0.5)
        self.http.close()

    def create(self, with_id: bool) -> None:
        node = self.rng.choice(self.nodes)
        tok = self.token()
        text = f"{tok} chaos tweet from c{self.idx} #chaos"
        body: dict[str, Any] = {"text": text, "user": f"c{self.idx}"}
        if with_id:
            body["id"] = self.rng.randrange(1, 2**63)
        resp, exc, t0, t1 = self.call("POST", node, "/tweets", json=body)
        w = self.write("create", tok, text, node, resp, exc, t0, t1)
        tid = body.get("id")
        if w.outcome == OK:
            assert resp is not None
            got = resp.json()
            if tid is not None and got.get("id") != tid:
                self.rec.anomaly("id_changed", sent=tid, got=got.get("id"))
            tid = got.get("id")
        log = TweetLog(tok, tid, [w])
        self.rec.add_log(log)
        if w.outcome == OK:
            self.live.append(log)

    def bulk(self) -> None:
        node = self.rng.choice(self.nodes)
        lines: list[tuple[str, str, int | None]] = []
        for _ in range(self.rng.randint(3, 12)):
            tok = self.token()
            tid = self.rng.randrange(1, 2**63) if self.rng.random() < 0.7 else None
            lines.append((tok, f"{tok} chaos bulk tweet from c{self.idx}", tid))
        body = "\n".join(
            json.dumps({"text": text, "user": f"c{self.idx}", **({"id": tid} if tid else {})}) for _, text, tid in lines
        )
        resp, exc, t0, t1 = self.call("POST", node, "/tweets/bulk", content=body,
                                      headers={"content-type": "application/x-ndjson"})
        items: dict[int, dict[str, Any]] = {}
        if resp is not None and resp.status_code == 200:
            items = {it["line"]: it for it in resp.json()["items"]}
        for line, (tok, text, tid) in enumerate(lines, 1):
            it = items.get(line)
            if resp is not None and resp.status_code == 200:
                status = int(it["status"]) if it else 599
                w = Write("create", tok, text, OK if status < 300 else FAIL if status < 500 else INFO,
                          node.name, round(t0, 3), round(t1, 3), status,
                          str((it or {}).get("error", {}).get("message", ""))[:160] if status >= 500 else "")
                self.rec.op("bulk_item", w.outcome)
                if it is None or 400 <= status < 500 or status == 500:
                    self.rec.anomaly("bulk_item", node=node.name, line=line, item=it)
                if w.outcome == OK:
                    assert it is not None
                    if tid is not None and it.get("id") != tid:
                        self.rec.anomaly("id_changed", sent=tid, got=it.get("id"))
                    tid = it.get("id")
            else:
                w = Write("create", tok, text, outcome_of(resp, exc), node.name, round(t0, 3), round(t1, 3),
                          None if resp is None else resp.status_code, "" if exc is None else type(exc).__name__)
                self.rec.op("bulk_item", w.outcome)
            log = TweetLog(tok, tid, [w])
            self.rec.add_log(log)
            if w.outcome == OK:
                self.live.append(log)
        self.rec.op("bulk", outcome_of(resp, exc))
        if resp is not None and resp.status_code != 200 and resp.status_code < 500 and resp.status_code != 408:
            self.rec.anomaly("unexpected_4xx", op="bulk", node=node.name, status=resp.status_code, body=resp.text[:200])
        if resp is not None and resp.status_code == 500:
            self.rec.anomaly("internal_error", op="bulk", node=node.name, body=resp.text[:200])

    def pick(self) -> TweetLog | None:
        return self.rng.choice(self.live[-200:]) if self.live else None  # recent ones: edits land on fresh tweets too

    def edit(self) -> None:
        log = self.pick()
        if log is None:
            return self.create(True)
        node = self.rng.choice(self.nodes)
        tok = self.token()
        text = f"{tok} edited by c{self.idx}"
        resp, exc, t0, t1 = self.call("PATCH", node, f"/tweets/{log.id}", json={"text": text})
        w = self.write("edit", tok, text, node, resp, exc, t0, t1)
        log.writes.append(w)
        if w.outcome == OK:
            assert resp is not None
            if resp.json().get("text") != text:
                self.rec.anomaly("patch_answer", id=log.id, sent=text, got=resp.json().get("text"))
        return None

    def delete(self) -> None:
        log = self.pick()
        if log is None:
            return self.create(True)
        node = self.rng.choice(self.nodes)
        resp, exc, t0, t1 = self.call("DELETE", node, f"/tweets/{log.id}")
        w = self.write("delete", None, None, node, resp, exc, t0, t1)
        if w.status == 404:  # an acknowledged create was not there: may be a loss; the checker decides
            w.outcome = INFO
        log.writes.append(w)
        if w.outcome != FAIL:
            self.live.remove(log)
        return None

    def _clean(self) -> TweetLog | None:
        """A live tweet whose every write was acknowledged: its current text is known exactly."""
        log = self.pick()
        return log if log is not None and all(w.outcome == OK for w in log.writes) else None

    def search(self) -> None:
        log = self._clean()
        if log is None:
            return None
        node = self.rng.choice(self.nodes)
        cur = log.writes[-1]
        resp, exc, *_ = self.call("GET", node, "/search", params={"q": cur.token, "count": 100})
        out = outcome_of(resp, exc)
        if out != OK:
            self.rec.op("search", out)
            return None
        assert resp is not None
        body = resp.json()
        partial = bool(body["search_metadata"].get("partial"))
        self.rec.op("search", "partial" if partial else OK)  # a partial answer may miss anything: not judged
        if partial:
            return None
        got = [(t["id"], t["text"]) for t in body["statuses"]]
        if got != [(log.id, cur.text)]:
            self.rec.anomaly("search_during_run", node=node.name, id=log.id, token=cur.token, want=cur.text, got=got,
                             at=round(time.monotonic() - _T0, 3), writes=_brief(log))
        return None

    def get(self) -> None:
        log = self._clean()
        if log is None:
            return None
        node = self.rng.choice(self.nodes)
        resp, exc, *_ = self.call("GET", node, f"/tweets/{log.id}")
        out = outcome_of(resp, exc)
        self.rec.op("get", out)
        if resp is not None and resp.status_code in (200, 404):
            got = resp.json().get("text") if resp.status_code == 200 else None
            if got != log.writes[-1].text:
                self.rec.anomaly("get_during_run", node=node.name, id=log.id, want=log.writes[-1].text, got=got,
                                 status=resp.status_code, at=round(time.monotonic() - _T0, 3), writes=_brief(log))
        return None


# ---------------------------------------------------------------- the nemesis


class FaultWindow(msgspec.Struct):
    """One fault, as the nemesis saw it; times are seconds since the start of the run."""

    kind: str
    nodes: list[str]  # the faulted nodes (every node for kill_all; the two ends of a cut link)
    start: float  # injected
    down: list[str] = []  # the nodes not alive and reachable meanwhile (none for a cut link: all nodes live)
    detected: float | None = None  # every survivor's /cluster showed it dead (None: not waited for, or never)
    heal: float = 0.0  # healing began
    healed: float = 0.0  # the node answers again (or all of them)
    elections_before: dict[str, float] = {}  # survivors' murmur_elections_won_total at injection
    elections_at_heal: dict[str, float] = {}  # ... just before healing
    cut_short: bool = False  # the workload ended while it held (before detection, maybe): not judged on it

    def takeovers(self) -> int:
        """Elections the survivors won while the node was down (a survivor that restarted meanwhile counts 0)."""
        return int(sum(max(0.0, v - self.elections_before.get(n, v)) for n, v in self.elections_at_heal.items()))


def metric(url: str, name: str, timeout_s: float = 2.0) -> float | None:
    try:
        text = httpx.get(url + "/metrics", timeout=timeout_s).text
    except httpx.HTTPError:
        return None
    for ln in text.splitlines():
        if ln.startswith(name + " ") or ln.startswith(name + "{"):
            return float(ln.split()[-1])
    return None


class Nemesis:
    """One fault at a time: inject, hold, heal, wait until the node answers again, stay quiet, repeat. Faults are
    dealt in shuffled rounds of every available kind, so a short run still sees each kind. With `outlast` a fault on
    one node is held until every survivor's gossip declares it dead (so its partitions are taken over), then for
    the random hold on top."""

    def __init__(self, nodes: list[Node], rec: Record, seed: int, interval_s: float, hold_s: float,
                 net: Any, outlast: bool = True) -> None:
        self.nodes, self.rec, self.net = nodes, rec, net
        self.rng = random.Random(f"{seed}-nemesis")
        self.interval_s, self.hold_s = interval_s, hold_s
        self.outlast = outlast
        self.kinds = ["kill", "pause", "kill_all"] + (["isolate"] if net is not None else [])
        self.kinds += ["link_cut"] if net is not None and hasattr(net, "cut_link") else []
        self.deck: list[str] = []
        self.error: str | None = None

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.wait(self.interval_s * self.rng.uniform(0.5, 1.5)):
                self.revive_crashed()
                if not self.deck:
                    self.deck = self.rng.sample(self.kinds, len(self.kinds))
                self.fault(self.deck.pop(), stop)
        except Exception:
            self.error = traceback.format_exc()
            say(f"NEMESIS FAILED:\n{self.error}")
            stop.set()
        finally:
            self.heal_all()

    def revive_crashed(self) -> None:
        for nd in self.nodes:
            if not nd.alive() and not nd.expect_dead:
                self.rec.anomaly("node_crashed", node=nd.name, rc=nd.rc(), log_tail=nd.log_tail(15))
                nd.spawn()
                nd.wait_healthy()

    def event(self, kind: str, what: str, **detail: Any) -> None:
        say(f"nemesis: {what}")
        with self.rec.lock:
            self.rec.fault_events.append({"t": round(now(), 3), "kind": kind, "what": what, **detail})

    def hold(self, stop: threading.Event) -> None:
        stop.wait(self.hold_s * self.rng.uniform(0.5, 1.5))

    def elections(self, nodes: Iterable[Node]) -> dict[str, float]:
        out = {}
        for nd in nodes:
            v = metric(nd.url, "murmur_elections_won_total")
            if v is not None:
                out[nd.name] = v
        return out

    def wait_dead(self, nd: Node, stop: threading.Event) -> float | None:
        """When every other node's /cluster shows `nd` dead (seconds since the start), or None after DETECT_TIMEOUT_S."""
        deadline = time.monotonic() + DETECT_TIMEOUT_S
        others = [o for o in self.nodes if o is not nd]
        while time.monotonic() < deadline and not stop.is_set():
            seen = []
            for o in others:
                try:
                    members = httpx.get(o.url + "/cluster", timeout=2.0).json()["members"]
                    seen.append(next((mb["state"] for mb in members if mb["name"] == nd.name), None))
                except (httpx.HTTPError, ValueError, KeyError):
                    seen.append(None)
            if all(st == "dead" for st in seen):
                return round(now(), 3)
            stop.wait(0.1)
        return None

    def fault(self, kind: str, stop: threading.Event) -> None:
        if kind == "kill_all":
            self.event(kind, "kill -9 ALL nodes")
            names = [nd.name for nd in self.nodes]
            win = FaultWindow(kind, names, round(now(), 3), down=names)
            for nd in self.nodes:
                nd.kill9()
            self.rec.faults[kind] += 1
            self.hold(stop)
            win.heal = round(now(), 3)
            for nd in self.nodes:
                nd.spawn()
            for nd in self.nodes:
                nd.wait_healthy()
            win.healed = round(now(), 3)
            self.rec.add_window(win)
            self.event(kind, "healed: all nodes restarted and answering")
            return
        if kind == "link_cut":
            a, b = self.rng.sample(self.nodes, 2)
            win = FaultWindow(kind, [a.name, b.name], round(now(), 3))
            self.net.cut_link(a, b)
            self.rec.faults[kind] += 1
            self.event(kind, f"cut the link {a.name} <-> {b.name} (both still reach everyone else)")
            self.hold(stop)
            win.cut_short = stop.is_set()
            win.heal = round(now(), 3)
            self.net.heal()
            win.healed = round(now(), 3)
            self.rec.add_window(win)
            self.event(kind, f"healed: link {a.name} <-> {b.name} restored")
            return
        nd = self.rng.choice(self.nodes)
        others = [o for o in self.nodes if o is not nd]
        win = FaultWindow(kind, [nd.name], 0.0, down=[nd.name], elections_before=self.elections(others))
        if kind == "kill":
            self.event(kind, f"kill -9 {nd.name} (pid {nd.proc.pid if nd.proc else '?'})", node=nd.name)
            win.start = round(now(), 3)
            nd.kill9()
        elif kind == "pause":
            self.event(kind, f"SIGSTOP {nd.name}", node=nd.name)
            win.start = round(now(), 3)
            nd.paused = True
            nd.send(signal.SIGSTOP)
        elif kind == "isolate":
            assert self.net is not None
            win.start = round(now(), 3)
            why = self.net.isolate(nd)
            if why is not None:
                self.net.heal()
                self.event("isolate_failed", f"could not isolate {nd.name}: {why}", node=nd.name)
                return
            if self._reachable(nd):
                self.net.heal()
                self.event("isolate_failed", f"isolation of {nd.name} installed but it still answers: not counted")
                return
            self.event(kind, f"isolated {nd.name} ({self.net.describe(nd)})", node=nd.name)
        self.rec.faults[kind] += 1
        if self.outlast:
            win.detected = self.wait_dead(nd, stop)
            win.cut_short = win.detected is None and stop.is_set()
            self.event(kind, f"{nd.name} dead on every survivor" if win.detected is not None
                       else "the run ended before detection" if win.cut_short
                       else f"{nd.name} NOT seen dead within {DETECT_TIMEOUT_S}s", node=nd.name)
        self.hold(stop)
        win.cut_short = win.cut_short or stop.is_set()  # the workload stopped while it held
        win.elections_at_heal = self.elections(others)
        win.heal = round(now(), 3)
        if kind == "kill":
            nd.spawn()
            nd.wait_healthy()
            self.event(kind, f"healed: {nd.name} restarted and answering", node=nd.name)
        elif kind == "pause":
            nd.send(signal.SIGCONT)
            nd.paused = False
            self.event(kind, f"healed: SIGCONT {nd.name}", node=nd.name)
        else:
            self.net.heal()
            self.event(kind, f"healed: network of {nd.name} restored", node=nd.name)
        win.healed = round(now(), 3)
        self.rec.add_window(win)

    @staticmethod
    def _reachable(nd: Node) -> bool:
        try:
            httpx.get(nd.url + "/health", timeout=0.7)
            return True
        except httpx.HTTPError:
            return False

    def heal_all(self) -> None:
        if self.net is not None:
            self.net.heal()
        for nd in self.nodes:
            if nd.paused:
                nd.send(signal.SIGCONT)
                nd.paused = False
                self.event("heal", f"SIGCONT {nd.name} (final heal)")


# ---------------------------------------------------------------- settle and check


SETTLE_STABLE_POLLS = 6  # outbox figures unchanged this many polls (0.5 s apart) count as settled


def settle(nodes: list[Node], rec: Record, timeout_s: float, settle_s: float) -> dict[str, Any]:
    """Every node up, /health ok everywhere and the index work pending (murmur_outbox_pending) zero or no longer
    moving, bounded by timeout_s. A replica keeps outbox entries that only a partition's master drives, so the sum
    need not reach zero; what is left is reported."""
    for nd in nodes:
        if not nd.alive():
            if not nd.expect_dead:
                rec.anomaly("node_crashed", node=nd.name, rc=nd.rc(), log_tail=nd.log_tail(15))
            nd.spawn()
    for nd in nodes:
        nd.wait_healthy()
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    history: list[tuple[float, ...]] = []
    while time.monotonic() < deadline:
        status = {}
        for nd in nodes:
            try:
                h = httpx.get(nd.url + "/health", timeout=2).json()
                metrics = httpx.get(nd.url + "/metrics", timeout=2).text
                pending = next((float(ln.split()[-1]) for ln in metrics.splitlines()
                                if ln.startswith("murmur_outbox_pending")), 0.0)
                status[nd.name] = {"health": h.get("status"), "outbox_pending": pending}
            except (httpx.HTTPError, ValueError) as e:
                status[nd.name] = {"error": repr(e)}
        history.append(tuple(float(s.get("outbox_pending", -1)) for s in status.values()))
        healthy = all(s.get("health") == "ok" for s in status.values())
        still = len(history) >= SETTLE_STABLE_POLLS and len(set(history[-SETTLE_STABLE_POLLS:])) == 1
        if healthy and (not any(history[-1]) or still):
            break
        time.sleep(0.5)
    else:
        say(f"WARNING: the cluster did not settle within {timeout_s}s: {status}")
        status["unsettled"] = True
    say(f"cluster settled: {status}; waiting --settle {settle_s}s more")
    time.sleep(settle_s)
    return status


class CheckError(Exception):
    pass


def anti_entropy_pass_s(topo: Any, n: int) -> float:
    """Seconds one node's anti-entropy round robin takes over every (partition, peer) pair it has (the busiest
    node's): a difference nothing else repairs is gone after one pass (README: Catching up)."""
    from node.cluster.limits import ANTI_ENTROPY_INTERVAL_S

    pairs: Counter[str] = Counter()
    for _s, _e, reps in replicas.partitions(topo, n):
        for r in reps:
            pairs[r] += len(reps) - 1
    return max(pairs.values(), default=0) * ANTI_ENTROPY_INTERVAL_S


def converge(nodes: list[Node], secret: str, n: int, timeout_s: float) -> dict[str, Any]:
    """Compare every replica's OWN copy of every tweet partition (bucket digests, then the keys of the buckets that
    differ) over the authenticated node-to-node transport, again every CONVERGE_POLL_S until they all agree or
    timeout_s has passed. Done before the checker's reads, which repair what they see."""
    seeds = [(nd.host, nd.ports[1]) for nd in nodes]
    t0 = time.monotonic()
    polls = 0
    last: list[replicas.Divergence] = []
    while True:
        polls += 1

        async def one(pool: replicas.PeerPool) -> list[replicas.Divergence]:
            t = await replicas.topology(pool, seeds)
            return await replicas.compare_replicas(pool, t, n)

        try:
            last = replicas.run(secret, one)
        except Exception as e:  # MurmurError from a replica that does not answer: the checker cannot judge
            raise CheckError(f"replica digests could not be read: {e!r}") from None
        if not last or time.monotonic() - t0 >= timeout_s:
            break
        time.sleep(CONVERGE_POLL_S)
    out = {"seconds": round(time.monotonic() - t0, 1), "polls": polls, "partitions_differing": len(last),
           "keys_differing": sum(len(d.keys) for d in last), "examples": [d.describe() for d in last[:EXAMPLES_MAX]],
           "divergent_keys": [{"id": i, "versions": vs} for d in last for i, vs in d.keys.items()][:EXAMPLES_MAX]}
    say(f"replicas: {'all partitions agree' if not last else f'{len(last)} partitions still differ'} "
        f"after {out['seconds']}s ({polls} comparisons)")
    return out




def _request(http: httpx.Client, url: str, params: dict[str, Any] | None = None) -> httpx.Response:
    last = ""
    for attempt in range(CHECK_RETRIES):
        try:
            resp = http.get(url, params=params)
            if resp.status_code in (200, 404):
                return resp
            last = f"{resp.status_code} {resp.text[:200]}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.2 * 2**attempt)
    raise CheckError(f"GET {url} {params or ''} failed {CHECK_RETRIES} times: {last}")


def check(nodes: list[Node], logs: list[TweetLog], threads: int, timeout_s: float) -> dict[str, Any]:
    """Ask every node about every tweet: searches first (a GET may repair a replica and hide a stale index), then GETs."""
    known = [lg for lg in logs if lg.id is not None]
    unknown = [lg for lg in logs if lg.id is None]
    by_id = {lg.id: lg for lg in known}
    by_token = {t: lg for lg in logs for t in lg.tokens()}
    found: dict[tuple[str, str], set[str]] = {}  # (node, key) -> tokens whose search returned the tweet
    unknown_hits: Counter[tuple[str, str]] = Counter()
    strays: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    local = threading.local()
    clients: list[httpx.Client] = []

    def client() -> httpx.Client:
        if not hasattr(local, "http"):
            local.http = httpx.Client(timeout=timeout_s)
            with lock:
                clients.append(local.http)
        return local.http  # type: ignore[no-any-return]

    def search(nd: Node, batch: list[str]) -> None:
        for attempt in range(CHECK_RETRIES):
            body = _request(client(), nd.url + "/search", {"q": " OR ".join(batch), "count": 100}).json()
            if not body["search_metadata"].get("partial"):
                break
            time.sleep(0.2 * 2**attempt)
        else:
            raise CheckError(f"search on {nd.name} stayed partial {CHECK_RETRIES} times")
        hits = body["statuses"]
        if len(hits) >= 100 and len(batch) > 1:  # maybe cut off at the top 100: ask in halves
            half = len(batch) // 2
            search(nd, batch[:half])
            search(nd, batch[half:])
            return
        with lock:
            counts["searches"] += 1
            for h in hits:
                lg = by_id.get(h["id"])
                if lg is not None:
                    toks = [t for t in batch if by_token[t] is lg]
                    if toks:
                        found.setdefault((nd.name, lg.key), set()).update(toks)
                        continue
                words = set(str(h["text"]).split())
                toks = [t for t in batch if t in words and by_token[t].id is None]
                for t in toks:
                    unknown_hits[(nd.name, by_token[t].key)] += 1
                if not toks:  # carries a token of a tweet with another id: a second copy; else unknown to this run
                    cat = "duplicate" if any(t in words for t in batch) else "phantom"
                    strays.append({"cat": cat, "node": nd.name, "id": h["id"], "text": h["text"], "query": batch[:3]})

    got: dict[tuple[str, str], str | None] = {}

    def get(nd: Node, lg: TweetLog) -> None:
        resp = _request(client(), f"{nd.url}/tweets/{lg.id}")
        with lock:
            counts["gets"] += 1
            got[(nd.name, lg.key)] = resp.json().get("text") if resp.status_code == 200 else None

    # one token per tweet per query, so a hit names the token that matched it
    rounds: list[list[str]] = []
    depth = max((len(lg.tokens()) for lg in logs), default=0)
    for i in range(depth):
        rounds.append([lg.tokens()[i] for lg in logs if len(lg.tokens()) > i])
    ex = ThreadPoolExecutor(threads)
    try:
        futs = [ex.submit(search, nd, b) for nd in nodes for r in rounds for b in query_batches(r)]
        for f in futs:
            f.result()
        futs = [ex.submit(get, nd, lg) for nd in nodes for lg in known]
        for f in futs:
            f.result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)  # on an error, do not run thousands of queued checks first
        for c in clients:
            c.close()

    verdicts: dict[str, list[dict[str, Any]]] = {c: [] for c in (*CATEGORIES, DIVERGENT)}
    for nd in nodes:
        for lg in known:
            counts["judged"] += 1
            for cat, why in judge(lg, got.get((nd.name, lg.key), MISSING), found.get((nd.name, lg.key), set())):
                verdicts[cat].append({"node": nd.name, "id": lg.id, "why": why,
                                      "allowed": sorted(map(str, allowed_states(lg))),
                                      "writes": [msgspec.to_builtins(w) for w in lg.writes]})
        for lg in unknown:
            counts["judged"] += 1
            for cat, why in judge_unknown_id(lg, unknown_hits[(nd.name, lg.key)]):
                verdicts[cat].append({"node": nd.name, "key": lg.key, "why": why,
                                      "writes": [msgspec.to_builtins(w) for w in lg.writes]})
    for s in strays:
        verdicts[s.pop("cat")].append({**s, "why": "a search returned a tweet under an id this run never saw for it"})
    return {"counts": dict(counts), "verdicts": verdicts}


def sabotage(nd: Node, logs: list[TweetLog]) -> None:
    """Writes the record does not know of: an edit and a delete of acknowledged tweets (see --sabotage)."""
    clean = [lg for lg in logs if lg.id is not None and all(w.outcome == OK and w.kind != "delete" for w in lg.writes)]
    if len(clean) < 2:
        raise CheckError("--sabotage needs two acknowledged tweets")
    a, b = clean[0], clean[-1]
    r1 = httpx.patch(f"{nd.url}/tweets/{a.id}", json={"text": "sabotaged behind the checker's back"}, timeout=10)
    r2 = httpx.delete(f"{nd.url}/tweets/{b.id}", timeout=10)
    say(f"sabotage: edited {a.id} ({r1.status_code}) and deleted {b.id} ({r2.status_code}) unrecorded")
    if r1.status_code != 200 or r2.status_code != 204:
        raise CheckError(f"sabotage writes failed: {r1.status_code} {r2.status_code}")


# ---------------------------------------------------------------- the run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("-n", type=int, default=3, help="replication factor N")
    p.add_argument("-w", type=int, default=2, help="write quorum W")
    p.add_argument("-r", type=int, default=2, help="read quorum R")
    p.add_argument("--vnodes", type=int, default=16, help="ring tokens per node (fewer: a shorter anti-entropy pass)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of workload under faults")
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument("--clients", type=int, default=4, help="client threads = operations in flight at most")
    p.add_argument("--fault-interval", type=float, default=7.0, help="mean quiet seconds between faults")
    p.add_argument("--fault-hold", type=float, default=4.0, help="mean seconds a fault lasts before it is healed")
    p.add_argument("--no-faults", action="store_true", help="run the workload and the checker without a nemesis")
    p.add_argument("--no-net-faults", action="store_true", help="never isolate a node on the network")
    p.add_argument("--op-timeout", type=float, default=10.0, help="seconds per client request")
    p.add_argument("--settle", type=float, default=5.0, help="seconds to wait after the cluster is healthy")
    p.add_argument("--settle-timeout", type=float, default=60.0, help="bound on waiting for health after the run")
    p.add_argument("--check-threads", type=int, default=8)
    p.add_argument("--dir", type=Path, default=None, help="cluster dir (must be empty or new; default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (always kept when something is wrong)")
    p.add_argument("--json", type=Path, default=None, help="also write the summary here")
    p.add_argument("--gossip", choices=("default", "fast"), default="default",
                   help="membership timings: the defaults (a crash is dead after ~4-5 s on 5 nodes) or 0.2 s probes "
                        "(~1.1-1.4 s)")
    p.add_argument("--outlast-detection", action=argparse.BooleanOptionalAction, default=True,
                   help="hold each single-node fault until every survivor's gossip declares the node dead (then "
                        "--fault-hold more): survivors must take its partitions over (elections are counted)")
    p.add_argument("--strict-availability", action=argparse.BooleanOptionalAction, default=True,
                   help="a write refused (503) while a quorum of every partition lived fails the run (CONTRACT §6); "
                        "without it they are only counted and reported")
    p.add_argument("--ack-floor", type=int, default=1,
                   help="acknowledged writes each fault (that leaves a quorum) and each heal must see")
    p.add_argument("--ack-floor-faults", default="kill,pause,isolate,link_cut",
                   help="comma-separated fault kinds whose holds must see --ack-floor acknowledged writes (every heal "
                        "must, whatever its kind)")
    p.add_argument("--after-heal-s", type=float, default=AFTER_HEAL_S, help="the window after a heal for --ack-floor")
    p.add_argument("--max-unanswered-share", type=float, default=0.10,
                   help="bound on the share of writes that got no answer (timeouts, broken connections, 5xx but 503)")
    p.add_argument("--converge-timeout", type=float, default=None,
                   help="after settling, seconds the replicas' own digests have to agree on every partition "
                        "(default: 1.25 full anti-entropy passes of the ring, printed)")
    p.add_argument("--netns", action="store_true",
                   help="each node in a network namespace of its own (root; tests/support/netns.py): real interfaces, "
                        "--net-delay-ms and --net-loss on every link, isolation and single-link cuts at the switch")
    p.add_argument("--net-delay-ms", type=float, default=20.0, help="--netns: one-way delay of every link")
    p.add_argument("--net-loss", type=float, default=0.01, help="--netns: share of frames lost on every link")
    p.add_argument("--sabotage", action="store_true",
                   help="self-test of the checker: behind its back, edit one acknowledged tweet and delete another "
                        "before checking; the run must then report them stale and lost on every node and fail")
    return p.parse_args(argv)


def summarise(args: argparse.Namespace, rec: Record, result: dict[str, Any] | None, error: str | None,
              net_skip: str | None, root: Path, elapsed_s: float, settled: dict[str, Any]) -> dict[str, Any]:
    by_outcome: Counter[str] = Counter()
    writes = ("create", "edit", "delete", "bulk_item")
    for (kind, out), n in rec.ops.items():
        if kind in writes:
            by_outcome[out] += n
    verdicts = (result or {}).get("verdicts", {c: [] for c in CATEGORIES})
    run_anoms = rec.anomalies
    return {
        "seed": args.seed, "dir": str(root), "nodes": args.nodes, "nwr": [args.n, args.w, args.r],
        "duration_s": args.duration, "elapsed_s": round(elapsed_s, 1), "clients": args.clients,
        "ops": {f"{k}:{o}": n for (k, o), n in sorted(rec.ops.items())},
        "writes_attempted": sum(by_outcome.values()), "acknowledged": by_outcome[OK],
        "failed": by_outcome[FAIL], "indeterminate": by_outcome[INFO],
        "tweets": len(rec.logs), "faults": dict(rec.faults), "faults_total": sum(rec.faults.values()),
        "network_faults": "ran" if net_skip is None else f"skipped: {net_skip}",
        "settled": settled, "checks": (result or {}).get("counts", {}),
        **{c: len(verdicts.get(c, [])) for c in (*CATEGORIES, DIVERGENT)},
        "examples": {c: verdicts.get(c, [])[:EXAMPLES_MAX] for c in (*CATEGORIES, DIVERGENT)},
        "run_anomalies": len(run_anoms), "run_anomaly_examples": run_anoms[:EXAMPLES_MAX],
        "checker_error": error,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**9)
    say(f"chaos: seed {args.seed} (rerun with --seed {args.seed})")
    if args.dir is not None:
        if args.dir.exists() and any(args.dir.iterdir()):
            print(f"chaos: --dir {args.dir} is not empty; give a new or empty directory", file=sys.stderr)
            return 2
        args.dir.mkdir(parents=True, exist_ok=True)
        root = args.dir.resolve()
    else:
        root = Path(tempfile.mkdtemp(prefix="murmur-chaos-"))
    names = [f"n{i + 1}" for i in range(args.nodes)]
    gossip = FAST_GOSSIP if args.gossip == "fast" else ""
    rec = Record()
    net: Any = None
    lab: Any = None
    net_skip: str | None = "--no-net-faults" if args.no_net_faults else "--no-faults" if args.no_faults else None
    if args.netns:
        from tests.support import netns

        why = netns.why_unavailable()
        if why is not None:
            print(f"chaos: --netns: {why}", file=sys.stderr)
            return 2
        lab = netns.Lab(names, seed=args.seed)
        try:  # from here on the lab is removed on every way out (the finally below, once it is reached)
            lab.open()
            lab.link("*", "*", delay_ms=args.net_delay_ms, loss=args.net_loss)
            cfg_path = netns.write_config(root, lab, names, n=args.n, w=args.w, r=args.r, secret=SECRET, extra=gossip,
                                          vnodes=args.vnodes)
            cfg = load_config(cfg_path)
            nodes = [Node(cfg_path, nc.name, cfg.url(nc.name), nc.http_port, nc.gossip_port, host=nc.host,
                          prefix=lab.exec_prefix(nc.name)) for nc in cfg.nodes]
        except BaseException:
            lab.close()
            raise
        if net_skip is None:
            net = NetnsNet(lab)
        say(f"network: namespaces {lab.tag}-n*, subnet {lab.subnet}, every link {args.net_delay_ms} ms one-way and "
            f"{args.net_loss:.1%} loss (userspace switch: this kernel has no netem)")
    else:
        cfg_path = write_config(root, names, n=args.n, w=args.w, r=args.r, secret=SECRET, extra=gossip,
                                vnodes=args.vnodes)
        cfg = load_config(cfg_path)
        nodes = [Node(cfg_path, nc.name, cfg.url(nc.name), nc.http_port, nc.gossip_port) for nc in cfg.nodes]
        if net_skip is None:
            probe = LoIsolation()
            net_skip = probe.probe(nodes[0].ports[0])
            net = probe if net_skip is None else None
    say(f"cluster: {args.nodes} nodes N={args.n} W={args.w} R={args.r} in {root} (logs: {root}/n*.log); "
        f"gossip {args.gossip}")
    say("network faults: " + (("switch cuts in the lab (a node from everyone; one link)" if args.netns else
                               "tc u32 drop on lo (isolates a node's HTTP and RPC ports)") if net_skip is None
                              else f"SKIPPED ({net_skip})"))

    stop = threading.Event()
    nemesis: Nemesis | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    settled: dict[str, Any] = {}

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    quorum = quorum_everywhere([], args.w)  # replaced by the ring's once the nodes run
    converged: dict[str, Any] = {}
    try:
        for nd in nodes:
            nd.spawn()
        for nd in nodes:
            nd.wait_healthy()
        topo = replicas.run(SECRET, lambda pool: replicas.topology(pool, [(nd.host, nd.ports[1]) for nd in nodes]))
        quorum = quorum_everywhere([reps for _s, _e, reps in replicas.partitions(topo, args.n)], args.w)
        say("all nodes answer /health; workload starts")
        nonce = format(args.seed % 36**4, "x")
        clients = [Client(i, args.seed, nonce, nodes, rec, args.op_timeout) for i in range(args.clients)]
        threads = [threading.Thread(target=c.run, args=(stop,), daemon=True, name=f"client{c.idx}") for c in clients]
        if not args.no_faults:
            nemesis = Nemesis(nodes, rec, args.seed, args.fault_interval, args.fault_hold, net,
                              outlast=args.outlast_detection)
            threads.append(threading.Thread(target=nemesis.run, args=(stop,), daemon=True, name="nemesis"))
        for t in threads:
            t.start()
        end = time.monotonic() + args.duration
        while time.monotonic() < end and not stop.wait(min(10.0, max(0.0, end - time.monotonic()))):
            with rec.lock:
                ok = sum(n for (k, o), n in rec.ops.items() if o == OK)
                total = sum(rec.ops.values())
            say(f"progress: {total} ops, {ok} ok, {sum(rec.faults.values())} faults, {len(rec.anomalies)} anomalies")
        say("workload stops; healing")
        stop.set()
        for t in threads:
            t.join(args.op_timeout + START_TIMEOUT_S * (args.nodes + 1))
            if t.is_alive():
                raise CheckError(f"thread {t.name} did not stop")
        if nemesis is not None and nemesis.error:
            raise CheckError(f"the nemesis failed:\n{nemesis.error}")
        settled = settle(nodes, rec, args.settle_timeout, args.settle)
        pass_s = anti_entropy_pass_s(topo, args.n)
        timeout = args.converge_timeout if args.converge_timeout is not None else round(1.25 * pass_s)
        say(f"a full anti-entropy pass takes {pass_s:.0f}s here; replicas get {timeout}s to agree")
        converged = converge(nodes, SECRET, args.n, timeout)
        converged["anti_entropy_pass_s"] = round(pass_s)
        for ex in converged["divergent_keys"]:
            lg = next((x for x in rec.logs if x.id == ex["id"]), None)
            ex["writes"] = _brief(lg) if lg is not None else "not written by this run's clients"
        if args.sabotage:
            sabotage(nodes[0], rec.logs)
        say(f"checking {len(rec.logs)} tweets on every node")
        result = check(nodes, rec.logs, args.check_threads, max(10.0, args.op_timeout))
    except (CheckError, RuntimeError) as e:
        error = str(e)
    except KeyboardInterrupt as e:
        error = f"interrupted ({e or 'Ctrl-C'})"
    except Exception:
        error = traceback.format_exc()
    finally:
        stop.set()
        if nemesis is not None:
            nemesis.heal_all()
        if net is not None:
            net.heal()
        stop_all(nodes)
        if lab is not None:
            lab.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    avail = judge_availability(rec.logs, rec.windows, quorum, args.ack_floor, args.after_heal_s,
                               args.outlast_detection and not args.no_faults,
                               frozenset(k for k in args.ack_floor_faults.split(",") if k))
    share = avail["unanswered_share"]
    if share > args.max_unanswered_share:
        avail["failures"].append(f"{share:.1%} of the writes got no answer, more than --max-unanswered-share "
                                 f"{args.max_unanswered_share:.1%}")
    if args.strict_availability and avail["refused_while_quorum_lived"]:
        avail["failures"].append(f"{avail['refused_while_quorum_lived']} writes refused (503) while a quorum of "
                                 "every partition lived (--strict-availability)")
    summary = summarise(args, rec, result, error, net_skip, root, time.monotonic() - _T0, settled)
    summary["availability"] = avail
    summary["replicas"] = converged
    summary["replicas_diverged"] = converged.get("partitions_differing", 0)
    summary["lab"] = None if lab is None else {"subnet": str(lab.subnet), "delay_ms": args.net_delay_ms,
                                               "loss": args.net_loss, "switch_error": lab.switch_error or None}
    print_summary(summary)
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    bad = (sum(summary[c] for c in CATEGORIES) + summary["run_anomalies"] + summary["replicas_diverged"]
           + len(avail["failures"]))
    if error is None and bad == 0 and not settled.get("unsettled") and not args.keep and args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    elif args.dir is None:
        say(f"kept {root} (node logs: {root}/n*.log)")
    if error is not None:
        return 2
    return 1 if bad else 0


def print_summary(s: dict[str, Any]) -> None:
    print("\n==== chaos summary ====")
    print(f"seed {s['seed']}  nodes {s['nodes']}  N/W/R {s['nwr']}  duration {s['duration_s']}s  "
          f"elapsed {s['elapsed_s']}s  clients {s['clients']}")
    print(f"operations: {sum(s['ops'].values())}  " + "  ".join(f"{k}={v}" for k, v in s["ops"].items()))
    print(f"writes attempted {s['writes_attempted']}: acknowledged {s['acknowledged']}, failed {s['failed']}, "
          f"indeterminate {s['indeterminate']}  ({s['tweets']} tweets)")
    print(f"faults injected {s['faults_total']}: {s['faults']}  network: {s['network_faults']}")
    print(f"checks: {s['checks']}")
    for c in (*CATEGORIES, DIVERGENT):
        print(f"{c}: {s[c]}" + ("  (not a failure: see DIVERGENT in chaos.py)" if c == DIVERGENT else ""))
        for ex in s["examples"][c]:
            writes = " ; ".join(f"{w['kind']} {w['outcome']}({w['status'] or w['err']}) via {w['node']} "
                                f"{w['t0']}-{w['t1']}s {w['token'] or ''}" for w in ex.get("writes", []))
            print(f"    {ex['node']} id={ex.get('id', ex.get('key'))}: {ex['why']}; allowed {ex.get('allowed', '?')}; "
                  f"history: {writes}")
    print(f"anomalies seen while running: {s['run_anomalies']}")
    for ex in s["run_anomaly_examples"]:
        print(f"    {json.dumps(ex, default=str)[:600]}")
    rep = s.get("replicas") or {}
    print(f"replicas' own copies: {rep.get('partitions_differing', '?')} partitions differ "
          f"({rep.get('keys_differing', '?')} keys) after {rep.get('seconds', '?')}s")
    for ex in rep.get("examples", []):
        print(f"    {ex}")
    for ex in rep.get("divergent_keys", []):
        print(f"    tweet {ex['id']} versions {ex['versions']}: {ex.get('writes')}")
    av = s.get("availability") or {}
    if av:
        print(f"availability: {av['takeovers']} takeover elections while a node was down "
              f"({av['faults_without_takeover']} single-node faults without one); refused {av['refused']}, "
              f"of which {av['refused_while_quorum_lived']} while a quorum of every partition lived; "
              f"no answer {av['unanswered']} ({av['unanswered_share']:.1%} of writes)")
        for f in av["faults"]:
            dead = "-" if f["detected_after_s"] is None else f"{f['detected_after_s']}s"
            took = "-" if f["takeovers"] is None else f["takeovers"]
            print(f"    {f['kind']} {','.join(f['nodes'])} at {f['start']}s held {f['held_s']}s: dead after {dead}, "
                  f"takeovers {took}, acked {f['acks_during']} during, {f['acks_after_heal']} after the heal")
        for ex in av["refused_examples"]:
            print(f"    refused while a quorum lived: {json.dumps(ex, default=str)[:300]}")
        for why in av["failures"]:
            print(f"AVAILABILITY: {why}")
    if s["checker_error"]:
        print(f"CHECKER COULD NOT RUN: {s['checker_error']}")
    bad = s["run_anomalies"] or any(s[c] for c in CATEGORIES) or s.get("replicas_diverged") or av.get("failures")
    verdict = "FAIL" if s["checker_error"] or bad else "PASS"
    print(f"verdict: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
