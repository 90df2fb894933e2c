"""Searches have their own bounded lane (node/http/admission.py): beyond http.search_inflight_max running and
http.search_queue_max waiting (or search_queue_timeout_s of waiting) they get 429 overloaded with Retry-After;
writes never wait in it."""

from __future__ import annotations

import httpx
import trio
from httpkit import FakeCoordinator, serve

from node.config import HttpConfig


def test_searches_beyond_the_lane_get_429_and_writes_go_on() -> None:
    coord = FakeCoordinator()
    coord.delay_s = 1.5

    async def t(port: int) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            got: dict[int, httpx.Response] = {}

            async def search(i: int) -> None:
                got[i] = await c.get("/search", params={"q": "x"})

            async with trio.open_nursery() as n:
                n.start_soon(search, 0)  # runs for 1.5 s
                await trio.sleep(0.1)
                n.start_soon(search, 1)  # waits, then gives up after the 0.3 s queue timeout
                await trio.sleep(0.1)
                n.start_soon(search, 2)  # the queue is full: shed at once
                await trio.sleep(0.05)
                started = trio.current_time()
                w = await c.post("/tweets", json={"text": "a write", "user": "u"})
                assert w.status_code == 201 and trio.current_time() - started < 1.0
            assert got[0].status_code == 200
            for i in (1, 2):
                r = got[i]
                assert r.status_code == 429 and r.json()["error"]["code"] == "overloaded", r.text
                assert r.headers["retry-after"] == "1"
            assert (await c.get("/search", params={"q": "x"})).status_code == 200  # the lane is free again

    serve(t, cfg=HttpConfig(search_inflight_max=1, search_queue_max=1, search_queue_timeout_s=0.3), coord=coord)
