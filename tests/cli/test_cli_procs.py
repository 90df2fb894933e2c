"""`murmur up` refuses taken ports before starting anything; `down` and config errors behave."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli.main import main
from node.cli.procs import is_our_node, port_taken
from tests.support.procs import free_port


def _config(tmp_path: Path, ports: list[tuple[int, int]]) -> Path:
    lines = ["[cluster]", 'name = "t"', "replication_factor = 1", "write_quorum = 1", "read_quorum = 1"]
    for i, (http, gossip) in enumerate(ports, 1):
        lines += [
            "[[nodes]]",
            f'name = "n{i}"',
            'host = "127.0.0.1"',
            f"http_port = {http}",
            f"gossip_port = {gossip}",
        ]
    p = tmp_path / "cluster.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize("which", ["http", "gossip"])
def test_up_refuses_a_taken_port_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        free = free_port()
        n2 = (port, free) if which == "http" else (free, port)
        cfg = _config(tmp_path, [(free_port(), free_port()), n2])
        rc = main(["up", "--config", str(cfg), "--timeout", "5"])
    err = capsys.readouterr().err
    assert rc != 0
    assert f"node n2: {which}_port 127.0.0.1:{port}" in err and "in use" in err
    assert "n1" not in err.replace("nothing was started", "")  # only the culprit is named
    assert not list(tmp_path.glob("data/*/node.pid"))  # n1 was not started either


def test_port_taken_sees_udp_and_tcp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        assert port_taken("127.0.0.1", port, socket.SOCK_DGRAM) == "in use"
    assert port_taken("127.0.0.1", free_port(), socket.SOCK_STREAM) is None


def test_down_without_pid_files_and_with_a_stale_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, [(free_port(), free_port()), (free_port(), free_port())])
    pid_file = tmp_path / "data" / "n2" / "node.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{os.getpid()}\n")  # a live process that is not node n2: must not be signalled
    assert main(["down", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "n1: not running (no pid file)" in out
    assert "n2: not running (stale pid file" in out
    assert not pid_file.exists()


def test_is_our_node() -> None:
    assert not is_our_node(os.getpid(), "n1")
    assert not is_our_node(2**22 + 12345, "n1")  # beyond pid_max: no such process


def test_config_errors_exit_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[cluster]\nbogus = 1\n[[nodes]]\nname = "n1"\n')
    assert main(["up", "--config", str(p)]) == 2
    assert capsys.readouterr().err.strip() == "murmur: config error: cluster.bogus: unknown key"
    # `node` configures process-wide logging: run it in its own process
    node = subprocess.run(
        [
            sys.executable,
            "-m",
            "node.cli.main",
            "node",
            "--config",
            str(tmp_path / "missing.toml"),
            "--name",
            "n1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert node.returncode == 2
    assert "murmur: config error: --config: no such file" in node.stderr
    good = _config(tmp_path, [(free_port(), free_port())])
    node = subprocess.run(
        [sys.executable, "-m", "node.cli.main", "node", "--config", str(good), "--name", "n9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert node.returncode == 2
    assert "murmur: config error: nodes: no node named 'n9'" in node.stderr
    assert main(["search", "x", "--config", str(p)]) == 2
