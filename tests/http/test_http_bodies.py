"""Issue 12, finding 6: every undecodable body is the client's fault. A bulk line that is malformed, invalid UTF-8
or nested too deeply fails alone with 400; a single POST or PATCH body likewise gets 400, never 500."""

from __future__ import annotations

import httpx
from httpkit import FakeCoordinator, error_of, serve

DEEP = b"[" * 5000 + b"]" * 5000
DEEP_IN_FIELD = b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b', "user": "u"}'
BAD_UTF8 = b'{"text": "caf\xe9", "user": "u"}'
NDJSON = {"content-type": "application/x-ndjson"}


def run(test) -> None:  # type: ignore[no-untyped-def]
    async def with_client(port: int) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            await test(c)

    serve(with_client, coord=FakeCoordinator())


def test_each_undecodable_bulk_line_fails_alone() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        lines = [b"{not json", BAD_UTF8, DEEP, DEEP_IN_FIELD, b'{"text": "fine", "user": "u"}']
        r = await c.post("/tweets/bulk", content=b"\n".join(lines), headers=NDJSON)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert [it["status"] for it in doc["items"]] == [400, 400, 400, 400, 201]
        assert [it["line"] for it in doc["items"]] == [1, 2, 3, 4, 5]
        assert {it["error"]["code"] for it in doc["items"][:4]} == {"invalid_json"}
        assert doc["ingested"] == 1 and doc["failed"] == 4

    run(t)


def test_an_undecodable_single_body_is_400() -> None:
    async def t(c: httpx.AsyncClient) -> None:
        created = (await c.post("/tweets", json={"text": "x", "user": "u"})).json()
        for body in (DEEP, DEEP_IN_FIELD, BAD_UTF8, b"\xff\xfe", b"{"):
            for method, path in (("POST", "/tweets"), ("PATCH", f"/tweets/{created['id']}")):
                r = await c.request(method, path, content=body, headers={"content-type": "application/json"})
                assert r.status_code == 400, (method, body[:20], r.status_code, r.text)
                assert error_of(r.content)["code"] == "invalid_json"

    run(t)
