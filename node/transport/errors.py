"""Errors of the RPC transport. The public ones derive from node.errors so the HTTP layer renders them as usual;
the internal ones (protocol, handshake) never leave the transport: they only close a connection.

Never raise these for something a remote handler decided: that comes back as an RpcError carrying its code.
"""

from __future__ import annotations

from node import errors as _errors
from node.errors import MurmurError, Unavailable


class PeerUnavailable(Unavailable):
    """The peer cannot be reached now (connect refused or timed out, connection lost, backing off)."""


class RpcTimeout(Unavailable):
    """The call was not answered within its deadline (slot wait, connect and answer included)."""


class UnknownMethod(MurmurError):
    """Raised by `route` for a method nobody registered; the caller gets it as an RpcError."""

    status = 501
    code = "unknown_method"


class RpcError(MurmurError):
    """A remote handler failed. `code`/`message`/`field` are the remote ones. Built by `remote_error`, which, for a
    code of node.errors, returns a subclass of both RpcError and that error (so `except NotFound` still works)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message, field)
        self.code = code  # the instance's code shadows the class's: it is the remote one

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class ProtocolError(Exception):
    """Internal: the peer sent bytes that are not our protocol (garbage, oversized frame, wrong message)."""


class FrameTooLarge(ProtocolError):
    pass


class HandshakeFailed(ProtocolError):
    """Internal: the peer did not prove it holds the cluster secret (or broke the handshake's order)."""


class ConnectionClosed(Exception):
    """Internal: the peer closed the stream (EOF)."""


def _known_codes() -> dict[str, type[MurmurError]]:
    """Code -> the most general MurmurError class of node.errors with that code (breadth first from the root)."""
    out: dict[str, type[MurmurError]] = {}
    queue: list[type[MurmurError]] = [MurmurError]
    while queue:
        cls = queue.pop(0)
        if cls.__module__ == _errors.__name__:
            out.setdefault(cls.code, cls)
        queue.extend(cls.__subclasses__())
    return out


_KNOWN = _known_codes()
_REMOTE_CLASSES: dict[str, type[RpcError]] = {}


def remote_error(code: str, message: str, field: str | None = None) -> RpcError:
    known = _KNOWN.get(code)
    if known is None:
        return RpcError(code, message, field)
    cls = _REMOTE_CLASSES.get(code)
    if cls is None:
        cls = type(f"Remote{known.__name__}", (RpcError, known), {})
        _REMOTE_CLASSES[code] = cls
    return cls(code, message, field)
