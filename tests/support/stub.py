"""A real HTTP server (node.http.server) around any handler, in a background thread with its own trio.run: for
tests that need a scripted node (the client's retries, the page's key dialog) on a real socket."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import trio

from node.config import HttpConfig
from node.http.server import Handler, serve_http


@contextmanager
def serving(handler: Handler, cfg: HttpConfig | None = None) -> Iterator[str]:
    """Serve `handler` on 127.0.0.1:<free port> until the block ends; yields the base URL."""
    ready: queue.Queue[tuple[int, trio.lowlevel.TrioToken, trio.CancelScope]] = queue.Queue()

    def run() -> None:
        async def main() -> None:
            async with trio.open_nursery() as n:
                port = await n.start(partial(serve_http, handler, "127.0.0.1", 0, cfg or HttpConfig()))
                ready.put((port, trio.lowlevel.current_trio_token(), n.cancel_scope))

        trio.run(main)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    port, token, scope = ready.get(timeout=10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        trio.from_thread.run_sync(scope.cancel, trio_token=token)
        t.join(10)
