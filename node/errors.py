"""The one error tree of Murmur: every failure a user can see, each mapped once to an HTTP status and code.

Raise these from cores and shells alike; the HTTP layer renders them. Never raise a bare Exception for
something a client caused.
"""

from __future__ import annotations


class MurmurError(Exception):
    """Base of all errors a client can see. `status` and `code` are protocol: never change an existing one."""

    status = 500
    code = "internal"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class InvalidRequest(MurmurError):
    status = 400
    code = "invalid_request"


class InvalidJSON(InvalidRequest):
    code = "invalid_json"


class UnknownField(InvalidRequest):
    code = "unknown_field"


class MissingField(InvalidRequest):
    code = "missing_field"


class InvalidField(InvalidRequest):
    code = "invalid_field"


class InvalidQuery(InvalidRequest):
    code = "invalid_query"


class Unauthorized(MurmurError):
    """No API key, or one no [[auth.keys]] entry knows, where the route needs a role the anonymous one lacks."""

    status = 401
    code = "unauthorized"


class Forbidden(MurmurError):
    """The caller is known, but its role is below the route's."""

    status = 403
    code = "forbidden"


class NotFound(MurmurError):
    status = 404
    code = "not_found"


class Deleted(NotFound):
    """Internal to a write: the id holds a tombstone (it existed and was deleted). Clients see not_found; a
    coordinator whose earlier try of a delete may have landed knows from it that the delete is done."""

    code = "deleted"


class MethodNotAllowed(MurmurError):
    status = 405
    code = "method_not_allowed"


class Conflict(MurmurError):
    status = 409
    code = "conflict"


class PayloadTooLarge(MurmurError):
    status = 413
    code = "payload_too_large"


class HeadersTooLarge(MurmurError):
    status = 431
    code = "headers_too_large"


class UnsupportedMediaType(MurmurError):
    status = 415
    code = "unsupported_media_type"


class RequestTimeout(MurmurError):
    status = 408
    code = "request_timeout"


class Overloaded(MurmurError):
    """Shed before any work: the request changed nothing. Answered with a Retry-After header."""

    status = 429
    code = "overloaded"

    def __init__(self, message: str, field: str | None = None, *, retry_after_s: int = 1) -> None:
        super().__init__(message, field)
        self.retry_after_s = retry_after_s  # seconds, for the Retry-After header


class Unavailable(MurmurError):
    """Not acknowledged: fewer than W copies confirmed. Retrying with the same id is safe."""

    status = 503
    code = "unavailable"


class StaleEpoch(Unavailable):
    """Internal to a master: the tweet was written in a newer epoch than this node's mastership (another node won
    the partition meanwhile). The master steps down and tries again; a client only ever sees `unavailable`."""

    code = "stale_epoch"


class NotOwner(MurmurError):
    """Internal: this node does not own (or no longer masters) the partition asked for."""

    status = 421
    code = "not_owner"


class ConfigError(Exception):
    """A bad cluster.toml: raised at start, names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
