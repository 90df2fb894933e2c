"""`murmur keygen`: a secret the config accepts on any host; an API key whose pasted table the config accepts and
whose SHA-256 (never the key) is what it stores."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tomllib

from node.config import SECRET_CHARS_MIN, parse_config


def keygen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli.main", "keygen", *args], capture_output=True, text=True, timeout=60
    )


def test_keygen_prints_a_fresh_strong_secret() -> None:
    a, b = keygen(), keygen()
    assert a.returncode == 0 and b.returncode == 0
    s = a.stdout.strip()
    assert len(s) >= SECRET_CHARS_MIN and s != b.stdout.strip() and "\n" not in s
    raw = {"cluster": {"replication_factor": 1, "write_quorum": 1, "read_quorum": 1, "secret": s},
           "nodes": [{"name": "n1", "host": "10.0.0.1"}]}
    assert parse_config(raw, "/tmp/c.toml").cluster.secret == s


def test_keygen_api_key_prints_the_key_and_a_table_with_its_sha256_only() -> None:
    p = keygen("--api-key", "ingest", "--role", "write")
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if not ln.startswith("#")]
    key = lines[0]
    table = tomllib.loads("\n".join(lines[1:]))
    (entry,) = table["auth"]["keys"]
    assert entry == {"name": "ingest", "role": "write", "sha256": hashlib.sha256(key.encode()).hexdigest()}
    assert key not in "\n".join(lines[1:])
    raw = {"cluster": {"replication_factor": 1, "write_quorum": 1, "read_quorum": 1}, "nodes": [{"name": "n1"}],
           "auth": table["auth"]}
    assert parse_config(raw, "/tmp/c.toml").auth.keys[0].name == "ingest"


def test_keygen_refuses_bad_usage() -> None:
    assert keygen("--role", "admin").returncode == 2
    assert keygen("--api-key", "no spaces").returncode == 2
    assert keygen("--api-key", "x", "--role", "root").returncode == 2
