"""Real Murmur node processes on loopback for integration tests: write a cluster.toml with free ports, start
`python -m node.cli.main node`, wait for /health, stop with SIGTERM or SIGKILL. Only ever signals its own PIDs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free on both TCP and UDP (a gossip_port needs both), never one this process handed out
    before: the kernel may give a just-released ephemeral port again, and two nodes of one cluster.toml on the
    same port fail config validation (CI saw `nodes[4].http_port: duplicate port`)."""
    for _ in range(200):
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            if port in _HANDED_OUT:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no loopback port free on both TCP and UDP")


def write_config(
    root: Path,
    names: list[str],
    *,
    n: int = 1,
    w: int = 1,
    r: int = 1,
    extra: str = "",
    secret: str = "test-secret",
    vnodes: int = 16,
) -> Path:
    lines = [
        "[cluster]",
        'name = "test"',
        f"replication_factor = {n}",
        f"write_quorum = {w}",
        f"read_quorum = {r}",
        f"vnodes = {vnodes}",
        'data_dir = "data"',
        f'secret = "{secret}"',
        extra,
    ]
    for name in names:
        lines += [
            "[[nodes]]",
            f'name = "{name}"',
            'host = "127.0.0.1"',
            f"http_port = {free_port()}",
            f"gossip_port = {free_port()}",
        ]
    path = root / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def url_of(config: Path, name: str) -> str:
    from node.config import load_config

    return load_config(config).url(name)


class NodeProc:
    def __init__(self, config: Path, name: str, args: tuple[str, ...] = (), prefix: tuple[str, ...] = ()) -> None:
        self.config, self.name, self.args = config, name, args
        self.prefix = prefix  # e.g. `ip netns exec NS` (it execs the node: the pid is still the node's)
        self.url = url_of(config, name)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = config.parent / f"{name}.test.log"

    def start(self) -> NodeProc:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "node.cli.main", "node", "--config", str(self.config), "--name",
             self.name, *self.args],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"node {self.name} did not answer /health in {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: nothing acknowledged may be lost."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM: graceful; returns the exit code."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
                raise
        return self.proc.returncode if self.proc else 0


@contextmanager
def running_nodes(
    config: Path, names: list[str], prefixes: dict[str, tuple[str, ...]] | None = None
) -> Iterator[list[NodeProc]]:
    nodes: list[NodeProc] = []
    try:
        for name in names:
            nodes.append(NodeProc(config, name, prefix=(prefixes or {}).get(name, ())).start())
        yield nodes
    finally:
        for nd in nodes:
            try:
                nd.stop()
            except Exception:
                nd.kill()
