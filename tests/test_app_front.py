"""The HTTP front on the way out (node/app.py `_Front.drain`): new requests get 503 "stopping" at once, those under
way are answered whole, and the drain ends when they are (or at its bound), before the node's peer connections
close. Without it a node stopping after a decommission answered searches from a closed peer pool: 200 with
`partial: true` (tests/cluster/test_cluster_join_leave.py saw it)."""

from __future__ import annotations

import msgspec
import trio
import trio.testing

from node.app import _Front
from node.http.server import Request, Response


def _req(path: str) -> Request:
    return Request("GET", path, {}, [], b"")


def test_drain_refuses_new_requests_and_waits_for_those_under_way() -> None:
    async def main() -> None:
        front = _Front("n1")
        release = trio.Event()

        async def api(req: Request) -> Response:
            if req.path == "/slow":
                await release.wait()
            return Response(200, b"{}", "application/json")

        front.target = api
        got: dict[str, Response] = {}
        drained = trio.Event()

        async def call(path: str) -> None:
            got[path] = await front.handle(_req(path))

        async def drain() -> None:
            await front.drain(timeout_s=30)
            drained.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "/slow")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(drain)
            await trio.testing.wait_all_tasks_blocked()
            assert not drained.is_set()  # the slow request is still under way
            new = await front.handle(_req("/search"))
            assert new.status == 503 and b"is stopping" in new.body, new
            health = await front.handle(_req("/health"))
            assert health.status == 503 and msgspec.json.decode(health.body)["status"] == "stopping"
            release.set()
            await drained.wait()
        assert got["/slow"].status == 200  # answered whole

    trio.run(main)


def test_drain_is_bounded_when_a_request_never_ends() -> None:
    async def main() -> None:
        front = _Front("n1")

        async def api(req: Request) -> Response:
            await trio.sleep_forever()
            raise AssertionError

        front.target = api
        async with trio.open_nursery() as nursery:
            nursery.start_soon(front.handle, _req("/stuck"))
            await trio.testing.wait_all_tasks_blocked()
            t0 = trio.current_time()
            await front.drain(timeout_s=5.0)
            assert trio.current_time() - t0 == 5.0
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_an_idle_front_drains_at_once() -> None:
    async def main() -> None:
        front = _Front("n1")
        front.target = lambda req: None
        t0 = trio.current_time()
        await front.drain(timeout_s=5.0)
        assert trio.current_time() == t0 and front.stopping

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
