"""The CLI's node commands on node.client, against a scripted node on a real socket: --api-key (or
$MURMUR_API_KEY) becomes a Bearer token, `murmur snapshot` posts /admin/snapshot and prints the node's answer or
its error, `murmur search` and `murmur status` print what the node said."""

from __future__ import annotations

import msgspec
import pytest

from node.cli.main import main
from node.http.server import Request, Response
from tests.support.procs import free_port
from tests.support.stub import serving


class Node:
    def __init__(self, snapshot: Response) -> None:
        self.seen: list[Request] = []
        self.snapshot = snapshot

    async def __call__(self, req: Request) -> Response:
        self.seen.append(req)
        if req.path == "/admin/snapshot":
            return self.snapshot
        if req.path == "/cluster":
            members = [{"name": "n1", "state": "alive", "http": "http://x", "ring_share": 1.0, "tweets": 5}]
            return Response(200, msgspec.json.encode({"cluster": "c", "n": 1, "w": 1, "r": 1, "members": members}))
        if req.path == "/search":
            return Response(400, b'{"error":{"code":"invalid_query","message":"a lone OR","field":"q"}}')
        return Response(404, b'{"error":{"code":"not_found","message":"no such endpoint","field":null}}')


def test_snapshot_with_a_key_prints_the_answer(capsys: pytest.CaptureFixture[str]) -> None:
    node = Node(Response(202, b'{"status":"started","lsn":7}'))
    with serving(node) as url:
        assert main(["snapshot", "--url", url, "--api-key", "adm-1"]) == 0
    assert node.seen[0].method == "POST" and node.seen[0].header(b"authorization") == b"Bearer adm-1"
    assert f"{url}: snapshot started  status=started  lsn=7\n" in capsys.readouterr().out


def test_snapshot_prints_the_nodes_error_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    node = Node(Response(404, b'{"error":{"code":"not_found","message":"no such endpoint: /admin/snapshot","field":null}}'))
    with serving(node) as url:
        assert main(["snapshot", "--url", url]) == 1
    assert node.seen[0].header(b"authorization") is None
    assert "murmur: snapshot failed: not_found: no such endpoint: /admin/snapshot" in capsys.readouterr().err
    assert main(["snapshot", "--url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "cannot reach" in capsys.readouterr().err


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MURMUR_API_KEY", "env-key")
    node = Node(Response(202, b""))
    with serving(node) as url:
        assert main(["status", "--url", url]) == 0
        assert main(["search", "OR", "--url", url]) == 1
        assert main(["status", "--url", url, "--api-key", "flag-key"]) == 0
    assert [r.header(b"authorization") for r in node.seen] == [b"Bearer env-key", b"Bearer env-key", b"Bearer flag-key"]
    out = capsys.readouterr()
    assert "n1" in out.out and "100.0%" in out.out
    assert "murmur: search failed: invalid_query: a lone OR" in out.err
