"""`murmur up` / `murmur down`: start and stop the nodes of a config as detached processes on this machine.

Each node keeps `node.pid` and `node.log` in `data_dir/<name>/`. Every wait is bounded. Never signal a pid
unless /proc says it is still that node (pids are reused), and never start anything when a port is taken.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import node
from node.client import Call, Client, Unreachable
from node.config import Config, NodeConfig

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.2
PROGRESS_EVERY_S = 5.0  # how often `up` prints what a recovering node is doing
LOG_TAIL_LINES = 30
_REPO_ROOT = str(Path(node.__file__).resolve().parent.parent)


def port_taken(host: str, port: int, kind: int) -> str | None:
    """None if (host, port) can be bound now, else why not. SO_REUSEADDR as the node uses it (TIME_WAIT is fine)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            return "in use" if e.errno == errno.EADDRINUSE else e.strerror or str(e)
    return None


def taken_ports(n: NodeConfig) -> list[str]:
    """Messages for each port of `n` that is not free. Gossip may be TCP or UDP: both must be free."""
    out = []
    checks = [
        ("http_port", n.http_port, socket.SOCK_STREAM),
        ("gossip_port", n.gossip_port, socket.SOCK_STREAM),
    ]
    checks.append(("gossip_port", n.gossip_port, socket.SOCK_DGRAM))
    for key, port, kind in checks:
        why = port_taken(n.host, port, kind)
        if why is not None:
            proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
            out.append(f"node {n.name}: {key} {n.host}:{port}/{proto} is {why}")
    return out


def _pid_file(cfg: Config, name: str) -> Path:
    return cfg.node_dir(name) / "node.pid"


def _log_file(cfg: Config, name: str) -> Path:
    return cfg.node_dir(name) / "node.log"


def is_our_node(pid: int, name: str) -> bool:
    """The process `pid` is alive (not a zombie) and is `murmur node ... --name <name>`."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    args = [a.decode(errors="replace") for a in argv]
    named = any(a == "--name" and b == name for a, b in itertools.pairwise(args))
    return any("node.cli.main" in a for a in args) and named


def read_pid(cfg: Config, name: str) -> int | None:
    try:
        return int(_pid_file(cfg, name).read_text().strip())
    except (OSError, ValueError):
        return None


def healthy(url: str) -> bool:
    with Client(url, timeout=1.0, retries=0) as c:
        return c.ping()


def health_state(url: str) -> tuple[str, str]:
    """("ok" | "starting" | "down", what a starting node says it is doing: its phase and progress)."""
    with Client(url, timeout=1.0, retries=0) as c:
        try:
            r = c.send(Call("GET", "/health"))
        except Unreachable:
            return "down", ""
    if r.status_code == 200:
        return "ok", ""
    try:
        body = r.json()
    except ValueError:
        return "down", ""
    if r.status_code == 503 and isinstance(body, dict) and body.get("status") == "starting":
        done, total = body.get("done", 0), body.get("total", 0)
        return "starting", f"{body.get('phase', '?')}" + (f" {done:,}/{total:,}" if total else "")
    return "down", ""


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
    except OSError:
        return "(no log)"


def _spawn(cfg: Config, name: str) -> subprocess.Popen[bytes]:
    d = cfg.node_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # the node must import this very checkout, whatever the caller's working directory
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO_ROOT, env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "node.cli.main", "node", "--config", cfg.path, "--name", name]
    with _log_file(cfg, name).open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _pid_file(cfg, name).write_text(f"{proc.pid}\n")
    return proc


def up(cfg: Config, timeout_s: float = START_TIMEOUT_S) -> int:
    running: list[str] = []
    problems: list[str] = []
    # node.cluster.rebalance.LEFT_FILE (not imported: the CLI stays light): a node that left the ring
    left = [n.name for n in cfg.nodes if (cfg.node_dir(n.name) / "DECOMMISSIONED").exists()]
    for n in cfg.nodes:
        if n.name in left:
            print(f"{n.name}: decommissioned, not started (remove it from {cfg.path})")
            continue
        pid = read_pid(cfg, n.name)
        if pid is not None and is_our_node(pid, n.name):
            running.append(n.name)
            continue
        problems += taken_ports(n)
    if problems:
        print("murmur up: cannot start, nothing was started:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    started: dict[str, subprocess.Popen[bytes]] = {}
    for n in cfg.nodes:
        if n.name in left:
            continue
        if n.name in running:
            print(f"{n.name}: already running (pid {read_pid(cfg, n.name)})")
        else:
            started[n.name] = _spawn(cfg, n.name)
    waiting = set(cfg.names()) - set(left)
    # A node that is recovering says so (503 "starting" with its phase and progress): it is waited for as long
    # as that keeps moving; only a node that exited, or that showed no progress for timeout_s, fails `up`.
    now = time.monotonic()
    moved = dict.fromkeys(waiting, now)  # when each node last showed progress
    seen: dict[str, str] = {}
    told = dict.fromkeys(waiting, now)
    while waiting:
        for name in sorted(waiting):
            proc = started.get(name)
            if proc is not None and proc.poll() is not None:
                print(
                    f"murmur up: node {name} exited with status {proc.returncode}; last lines of "
                    f"{_log_file(cfg, name)}:\n{_tail(_log_file(cfg, name))}",
                    file=sys.stderr,
                )
                _abort(cfg, started)
                return 1
            state, progress = health_state(cfg.url(name))
            now = time.monotonic()
            if state == "ok":
                waiting.discard(name)
                continue
            if state == "starting" and progress != seen.get(name):
                seen[name] = progress
                moved[name] = now
            if state == "starting" and now - told[name] >= PROGRESS_EVERY_S:
                told[name] = now
                print(f"{name}: starting ({progress})", flush=True)
        stalled = sorted(n for n in waiting if time.monotonic() - moved[n] > timeout_s)
        if stalled:
            what = "; ".join(f"{n}: {seen.get(n) or 'no answer'}" for n in stalled)
            print(
                f"murmur up: {', '.join(stalled)} showed no progress within {timeout_s:.0f} s ({what}); "
                f"see {cfg.data_dir()}/<name>/node.log",
                file=sys.stderr,
            )
            _abort(cfg, started)
            return 1
        if waiting:
            time.sleep(POLL_S)
    for n in cfg.nodes:
        if n.name in left:
            continue
        print(f"{n.name}: {cfg.url(n.name)}  (pid {read_pid(cfg, n.name)}, log {_log_file(cfg, n.name)})")
    for proc in started.values():
        proc.returncode = 0  # detached on purpose: keep Popen.__del__ from warning about a running child
    return 0


def _abort(cfg: Config, started: dict[str, subprocess.Popen[bytes]]) -> None:
    for name, proc in started.items():
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _pid_file(cfg, name).unlink(missing_ok=True)


def down(cfg: Config, timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM every node of ours at once, wait for all (one deadline), SIGKILL the rest."""
    stopping: dict[str, int] = {}
    for n in cfg.nodes:
        pid = read_pid(cfg, n.name)
        if pid is None:
            print(f"{n.name}: not running (no pid file)")
        elif not is_our_node(pid, n.name):
            print(f"{n.name}: not running (stale pid file, pid {pid})")
            _pid_file(cfg, n.name).unlink(missing_ok=True)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            stopping[n.name] = pid
    deadline = time.monotonic() + timeout_s
    while stopping and time.monotonic() < deadline:
        for name, pid in list(stopping.items()):
            if not is_our_node(pid, name):
                print(f"{name}: stopped (pid {pid})")
                del stopping[name]
                _pid_file(cfg, name).unlink(missing_ok=True)
        time.sleep(0.1)
    for name, pid in stopping.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        print(f"{name}: killed (no exit within {timeout_s:.0f} s of SIGTERM) (pid {pid})")
        _pid_file(cfg, name).unlink(missing_ok=True)
    return 0
