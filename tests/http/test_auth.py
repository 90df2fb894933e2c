"""API keys and roles (node/http/auth.py, CONTRACT §5): the pure rules, then the API's one check, in process."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from httpkit import FakeCoordinator, serve

from node.config import AuthConfig, AuthKey, HttpConfig
from node.errors import Forbidden, Unauthorized
from node.http.api import make_handler
from node.http.auth import PUBLIC, Access, route_role
from node.http.server import Request, Response
from node.metrics import HttpMetrics

KEYS = {"reader": ("r-key", "read"), "ingest": ("w-key", "write"), "ops": ("a-key", "admin")}
AUTH = AuthConfig(
    anonymous="read",
    keys=tuple(AuthKey(n, role, hashlib.sha256(k.encode()).hexdigest()) for n, (k, role) in KEYS.items()),  # type: ignore[arg-type]
)


def bearer(name: str) -> bytes:
    return b"Bearer " + KEYS[name][0].encode()


def test_route_roles() -> None:
    assert route_role("/health", "GET") == PUBLIC and route_role("/", "GET") == PUBLIC
    assert route_role("/static/app.js", "GET") == PUBLIC
    assert route_role("/search", "GET") == "read" and route_role("/tweets/{id}", "HEAD") == "read"
    for route, method in (("/tweets", "POST"), ("/tweets/bulk", "POST"), ("/tweets/{id}", "PATCH"),
                          ("/tweets/{id}", "DELETE")):
        assert route_role(route, method) == "write"
    assert route_role("/admin/decommission", "POST") == "admin" and route_role("/admin/topology", "GET") == "admin"


def test_without_keys_loopback_has_every_role_and_others_the_anonymous_one() -> None:
    a = Access(AuthConfig())
    for remote in ("127.0.0.1", "::1", "127.8.9.10"):
        assert a.check("admin", None, remote) is None
        assert a.check("admin", b"Bearer whatever", remote) is None  # no key could be valid: ignored
    assert a.check("read", None, "192.0.2.1") is None
    for need in ("write", "admin"):
        with pytest.raises(Forbidden):
            a.check(need, None, "192.0.2.1")
    with pytest.raises(Forbidden):
        Access(AuthConfig(anonymous="none")).check("read", None, "192.0.2.1")
    assert Access(AuthConfig(anonymous="write")).check("write", None, "") is None  # unknown address: not loopback


def test_with_keys_every_request_has_its_keys_role() -> None:
    a = Access(AUTH)
    assert a.check("read", None, "127.0.0.1") is None  # anonymous = read, loopback or not
    with pytest.raises(Unauthorized):
        a.check("write", None, "127.0.0.1")  # keys exist: loopback is no longer special
    assert a.check("write", bearer("ingest"), "192.0.2.1") == "ingest"
    assert a.check("admin", bearer("ops"), "192.0.2.1") == "ops"
    assert a.check("read", b"bearer   a-key ", "192.0.2.1") == "ops"
    with pytest.raises(Forbidden):
        a.check("write", bearer("reader"), "127.0.0.1")
    with pytest.raises(Forbidden):
        a.check("admin", bearer("ingest"), "127.0.0.1")
    for bad in (b"Bearer nope", b"Basic dXNlcjpwdw==", b"Bearer", b"a-key", b"Bearer " + b"k" * 300):
        with pytest.raises(Unauthorized):
            a.check("read", bad, "127.0.0.1")  # a bad key is refused even where anonymous would do
    assert a.check(PUBLIC, b"Bearer nope", "192.0.2.1") is None


def test_the_api_checks_roles_before_anything_else() -> None:
    async def t(port: int) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            def h(name: str | None) -> dict[str, str]:
                return {} if name is None else {"authorization": bearer(name).decode()}

            body = {"text": "hello", "user": "u"}
            assert (await c.get("/health", headers={"authorization": "Bearer nope"})).status_code == 200
            assert (await c.get("/search", params={"q": "hello"})).status_code == 200  # anonymous = read
            r = await c.post("/tweets", json=body)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
            r = await c.post("/tweets", json=body, headers=h("reader"))
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
            r = await c.post("/tweets", json=body, headers=h("ingest"))
            assert r.status_code == 201
            tid = r.json()["id"]
            assert (await c.delete(f"/tweets/{tid}", headers=h("reader"))).status_code == 403
            assert (await c.patch(f"/tweets/{tid}", json={"likes": 1}, headers={"authorization": "Bearer x"})).status_code == 401
            assert (await c.delete(f"/tweets/{tid}", headers=h("ingest"))).status_code == 204
            assert (await c.post("/admin/snapshot", headers=h("ingest"))).status_code == 403
            assert (await c.post("/admin/snapshot")).status_code == 401
            assert (await c.post("/admin/snapshot", headers=h("ops"))).status_code == 202
            assert (await c.post("/nowhere")).status_code == 401  # no route is revealed before the role

    async def snapshot(req: Request) -> Response:
        return Response(202, b"{}")

    cfg = HttpConfig()
    handler = make_handler(FakeCoordinator(), HttpMetrics(), cfg, "n1", auth=AUTH,
                           admin_routes={"/admin/snapshot": {"POST": snapshot}})
    serve(t, cfg=cfg, handler=handler)


def test_a_keyless_node_gives_remote_clients_the_anonymous_role() -> None:
    """The handler with a request as the server builds it from a non-loopback client (no such interface here)."""
    import trio

    handler = make_handler(FakeCoordinator(), HttpMetrics(), HttpConfig(), "n1")

    def req(method: str, path: str, remote: str, body: bytes = b"") -> Request:
        return Request(method, path, {"q": ["x"]} if path == "/search" else {}, [], body, remote)

    async def main() -> None:
        tweet = b'{"text": "x", "user": "u"}'
        assert (await handler(req("GET", "/search", "192.0.2.1"))).status == 200
        assert (await handler(req("POST", "/tweets", "192.0.2.1", tweet))).status == 403
        assert (await handler(req("POST", "/tweets", "127.0.0.1", tweet))).status == 201
        assert (await handler(req("GET", "/health", "192.0.2.1"))).status == 200

    trio.run(main)
