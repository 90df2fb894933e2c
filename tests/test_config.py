"""cluster.toml validation of what faces the network: weak secrets on non-loopback hosts, node names that are
not directory names, and the [auth] tables (each refusal names its key)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from node.config import is_loopback, parse_config
from node.errors import ConfigError

STRONG = "x" * 32


def cfg(host: str = "127.0.0.1", secret: str = "change-me", **extra: Any) -> dict[str, Any]:
    return {
        "cluster": {"replication_factor": 1, "write_quorum": 1, "read_quorum": 1, "secret": secret},
        "nodes": [{"name": "n1", "host": host}],
        **extra,
    }


def refused(raw: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        parse_config(raw, "/tmp/cluster.toml")
    return e.value


@pytest.mark.parametrize("host", ["10.1.2.3", "0.0.0.0", "node1.example.com", "2001:db8::1", "::"])
@pytest.mark.parametrize("secret", ["change-me", "short", "y" * 31])
def test_a_weak_secret_is_refused_on_a_non_loopback_host(host: str, secret: str) -> None:
    e = refused(cfg(host, secret))
    assert e.key == "cluster.secret" and "murmur keygen" in str(e)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.9", "localhost", "::1", "::ffff:127.0.0.1"])
def test_loopback_clusters_keep_the_example_secret(host: str) -> None:
    assert parse_config(cfg(host), "/tmp/cluster.toml").cluster.secret == "change-me"


def test_a_strong_secret_is_accepted_anywhere() -> None:
    assert parse_config(cfg("10.1.2.3", STRONG), "/tmp/c.toml").nodes[0].host == "10.1.2.3"
    assert not is_loopback("10.1.2.3") and is_loopback("127.1.2.3")


def test_one_exposed_node_is_enough() -> None:
    raw = cfg()
    raw["nodes"].append({"name": "n2", "host": "192.0.2.7"})
    assert refused(raw).key == "cluster.secret"


@pytest.mark.parametrize("name", [".", "..", "...", "", "a/b"])
def test_node_names_that_are_not_directory_names_are_refused(name: str) -> None:
    raw = cfg()
    raw["nodes"][0]["name"] = name
    assert refused(raw).key == "nodes[0].name"


def key(name: str = "ingest", role: str = "write", sha: str = "ab" * 32) -> dict[str, str]:
    return {"name": name, "role": role, "sha256": sha}


def test_auth_keys_are_parsed() -> None:
    c = parse_config(cfg(auth={"anonymous": "none", "keys": [key(), key("ops", "admin", "CD" * 32)]}), "/x.toml")
    assert c.auth.anonymous == "none" and [k.role for k in c.auth.keys] == ["write", "admin"]
    assert parse_config(cfg(), "/x.toml").auth.keys == ()


@pytest.mark.parametrize(
    ("auth", "where"),
    [
        ({"keys": [key(), key()]}, "auth.keys[1].name"),
        ({"keys": [key(role="boss")]}, "auth.keys[0].role"),
        ({"keys": [key(sha="xyz")]}, "auth.keys[0].sha256"),
        ({"keys": [key(sha="g" * 64)]}, "auth.keys[0].sha256"),
        ({"keys": [key(), key("b", sha="AB" * 32)]}, "auth.keys[1].sha256"),
        ({"keys": [{**key(), "key": "plain"}]}, "auth.keys[0]"),
        ({"anonymous": "root"}, "auth.anonymous"),
        ({"users": []}, "auth.users"),
    ],
)
def test_bad_auth_tables_name_the_key(auth: dict[str, Any], where: str) -> None:
    e = refused(cfg(auth=auth))
    assert e.key == where, str(e)


def test_tls_files_go_together_and_must_exist(tmp_path: Path) -> None:
    assert refused(cfg(http={"tls_cert_file": "c.pem"})).key == "http.tls_key_file"
    e = refused(cfg(http={"tls_cert_file": "c.pem", "tls_key_file": "k.pem"}))
    assert e.key == "http.tls_cert_file" and "no such file" in str(e)


def test_the_node_refuses_to_start_with_a_weak_secret(tmp_path: Path) -> None:
    """The real command: it stops at the config, before opening any port (192.0.2.1 is never contacted)."""
    conf = tmp_path / "cluster.toml"
    conf.write_text(
        '[cluster]\nreplication_factor = 1\nwrite_quorum = 1\nread_quorum = 1\nsecret = "change-me"\n'
        '[[nodes]]\nname = "n1"\nhost = "192.0.2.1"\nhttp_port = 7001\ngossip_port = 7101\n'
    )
    p = subprocess.run(
        [sys.executable, "-m", "node.cli.main", "node", "--config", str(conf), "--name", "n1"],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 2 and "cluster.secret" in p.stderr and "murmur keygen" in p.stderr, p.stderr


def test_the_free_space_floor_defaults_on_and_may_be_turned_off() -> None:
    assert parse_config(cfg(), "/x.toml").storage.free_bytes_min == 64 * 1024 * 1024
    assert parse_config(cfg(storage={"free_bytes_min": 0}), "/x.toml").storage.free_bytes_min == 0
    assert refused(cfg(storage={"free_bytes_min": -1})).key == "storage.free_bytes_min"
