"""Request ids: one per HTTP request (X-Request-Id in and out), bound in structlog's context for every log line
of that request, and carried in the node-to-node calls it makes (node.transport.messages.Request.request_id) so
the callee's log lines carry it too.

Never trust a client's id further than its shape: a sane one is kept (so a caller can follow its own id), any
other is replaced by a fresh one.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import structlog

REQUEST_ID_CHARS_MAX = 64
_SANE = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,%d}" % REQUEST_ID_CHARS_MAX)

_current: ContextVar[str | None] = ContextVar("murmur_request_id", default=None)


def from_header(raw: bytes | None) -> str:
    """The client's X-Request-Id when it is sane (1..64 of letters, digits and ._:@/+=-), else a new id."""
    if raw is not None and _SANE.fullmatch(raw.strip()):
        return raw.strip().decode("ascii")
    return secrets.token_hex(8)


def sane(rid: str | None) -> str | None:
    """`rid` if it is a sane id (as from another node), else None."""
    if rid is None or not _SANE.fullmatch(rid.encode("ascii", "replace")):
        return None
    return rid


def current() -> str | None:
    """The id of the request this task works for, or None (background work)."""
    return _current.get()


@contextmanager
def bound(rid: str | None) -> Iterator[None]:
    """Within the block, `current()` is `rid` and every structlog line carries request_id=rid. Tasks started
    inside inherit it (trio copies the context into each new task). None binds nothing."""
    if rid is None:
        yield
        return
    token = _current.set(rid)
    try:
        with structlog.contextvars.bound_contextvars(request_id=rid):
            yield
    finally:
        _current.reset(token)
