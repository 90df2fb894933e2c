"""`murmur up / load / search / status / down` end to end: real node processes on free loopback ports."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from node.cli.procs import is_our_node
from node.gen.synth import generate
from tests.support.procs import free_port

pytestmark = pytest.mark.slow


def murmur(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_load_without_a_node_exits_non_zero(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text('{"text": "hello", "user": "u"}\n')
    r = murmur("load", str(f), "--url", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1
    assert "cannot reach" in r.stderr


def test_up_load_search_status_down(tmp_path: Path) -> None:
    http = free_port()
    cfg = tmp_path / "cluster.toml"
    cfg.write_text(
        '[cluster]\nname = "e2e"\nreplication_factor = 1\nwrite_quorum = 1\nread_quorum = 1\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[[nodes]]\nname = "n1"\nhost = "127.0.0.1"\nhttp_port = {http}\ngossip_port = {free_port()}\n'
    )
    corpus = tmp_path / "corpus.jsonl.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as f:
        f.write(
            json.dumps(
                {
                    "id": 11,
                    "created_at": "2011-10-15T05:36:56Z",
                    "user": None,
                    "text": "zebracorn sighting at the @apple store",
                    "topic": "apple",
                }
            )
            + "\n"
        )
        f.write(
            json.dumps(
                {
                    "id": 12,
                    "created_at": "2011-10-15T05:37:56Z",
                    "user": "bob",
                    "text": "another zebracorn #unicorn",
                    "polarity": 4,
                }
            )
            + "\n"
        )
        f.write(json.dumps({"id": 13, "user": "carol", "text": "x" * 300}) + "\n")  # too long: 400
    s140 = tmp_path / "s140.csv"
    s140.write_text('"0","14","Mon Apr 06 22:19:45 PDT 2009","NO_QUERY","dave","zebracorn in 2009"\n')
    synth = tmp_path / "synth.jsonl"
    synth.write_text("".join(json.dumps(t) + "\n" for t in generate(500, seed=5)))
    c = ["--config", str(cfg)]
    try:
        up = murmur("up", *c, "--timeout", "60")
        assert up.returncode == 0, up.stderr
        assert f"n1: http://127.0.0.1:{http}" in up.stdout
        pid = int((tmp_path / "data" / "n1" / "node.pid").read_text())
        again = murmur("up", *c)
        assert again.returncode == 0 and "already running" in again.stdout

        load = murmur("load", *c, str(corpus), str(s140), "--batch", "2")
        assert load.returncode == 0, load.stderr
        assert "loaded 3 (new 3, already present 0), rejected 1" in load.stdout
        assert "user defaulted to 'unknown' 1" in load.stdout
        assert "invalid_field (text)" in load.stdout and "corpus.jsonl.gz:3" in load.stdout
        reload = murmur("load", *c, str(corpus), str(s140))
        assert "loaded 3 (new 0, already present 3), rejected 1" in reload.stdout
        big = murmur("load", *c, str(synth), "--batch", "64")
        assert "loaded 500 (new 500, already present 0), rejected 0" in big.stdout, big.stdout + big.stderr

        found = murmur("search", *c, "zebracorn", "--count", "2")
        assert found.returncode == 0, found.stderr
        lines = found.stdout.splitlines()
        assert lines[0].startswith("14  2009-04-07T05:19:45Z  @dave  zebracorn in 2009")
        assert lines[1].startswith("12  ") and "@bob" in lines[1]
        assert lines[2].startswith("-- 2 results in ") and "next_max_id=" in lines[2]
        nobody = murmur("search", *c, "@apple from:unknown")
        assert nobody.stdout.splitlines()[0].startswith("11  ")
        bad = murmur("search", *c, '"unbalanced')
        assert bad.returncode == 1 and "invalid_query" in bad.stderr

        status = murmur("status", *c)
        assert status.returncode == 0, status.stderr
        assert any(line.split()[:2] == ["UN", "n1"] for line in status.stdout.splitlines()), status.stdout
    finally:
        down = murmur("down", *c)
    assert down.returncode == 0, down.stderr
    assert "n1: stopped" in down.stdout
    assert not (tmp_path / "data" / "n1" / "node.pid").exists()
    assert not is_our_node(pid, "n1")  # gone, or a zombie waiting for a reaper that is not us


def test_load_without_url_spreads_the_bulks_over_every_node_that_answers(tmp_path: Path) -> None:
    """Any node coordinates: without --url, `murmur load` sends its bulks to every node of the config (so no one
    node coordinates the whole load), and leaves out one that does not answer, saying so."""
    from tests.support.procs import url_of, write_config

    cfg = write_config(tmp_path, ["n1", "n2", "n3"], n=3, w=2, r=2)
    c = ("--config", str(cfg))
    corpus = tmp_path / "synth.jsonl"
    with corpus.open("w", encoding="utf-8") as f:
        for t in generate(900, seed=5, with_ids=True):
            f.write(json.dumps(t) + "\n")
    up = murmur("up", *c)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        load = murmur("load", *c, str(corpus), "--batch", "50")
        assert load.returncode == 0, load.stderr
        assert "loaded 900 (new 900, already present 0), rejected 0" in load.stdout, load.stdout + load.stderr
        through = {}
        for name in ("n1", "n2", "n3"):
            with urllib.request.urlopen(url_of(cfg, name) + "/stats", timeout=10) as resp:
                through[name] = json.load(resp)["ingested_total"]
        assert sum(through.values()) == 900 and all(v > 0 for v in through.values()), through

        pid3 = int((tmp_path / "data" / "n3" / "node.pid").read_text())
        os.kill(pid3, signal.SIGKILL)
        more = tmp_path / "more.jsonl"
        with more.open("w", encoding="utf-8") as f:
            for t in generate(300, seed=6, with_ids=True):
                t["id"] = int(t["id"]) + 10**12  # other tweets than the first file's
                f.write(json.dumps(t) + "\n")
        again = murmur("load", *c, str(more), "--batch", "50")
        assert again.returncode == 0, again.stderr
        assert "loaded 300 (new 300, already present 0), rejected 0" in again.stdout, again.stdout + again.stderr
        assert "does not answer" in again.stderr and "not loading through it" in again.stderr, again.stderr
    finally:
        murmur("down", *c)
