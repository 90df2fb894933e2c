"""Who may call what (CONTRACT §5): the role a request has, and the role each route needs. Pure: no I/O, no clock.

Rules (the only place they live):
  Roles are ordered none < read < write < admin. A route needs `public` (/health, the page and its static files:
  anyone), `admin` (/admin/*), `read` (any other GET or HEAD) or `write` (any other method: tweet writes).
  Without [[auth.keys]]: a loopback client has every role, any other client the `anonymous` role; a key it sends
  is ignored (none could be valid). With keys: `Authorization: Bearer <key>` has the role of the key whose SHA-256
  matches (compared in constant time against every key); no header has the `anonymous` role.
  Refusals: a malformed header or an unknown key -> 401 unauthorized; no key where anonymous is too low -> 401
  (a key would help); a known key, or a keyless cluster's anonymous, with too low a role -> 403 forbidden.
"""

from __future__ import annotations

import hashlib
import hmac

from node.config import AuthConfig, is_loopback
from node.errors import Forbidden, Unauthorized

PUBLIC = "public"
RANK = {"none": 0, "read": 1, "write": 2, "admin": 3}
PUBLIC_ROUTES = frozenset({"/health", "/"})  # and every route under /static/
KEY_CHARS_MAX = 256  # a longer Authorization value is refused unread


def route_role(route: str, method: str) -> str:
    """The role a route needs; `route` is the route label (e.g. "/tweets/{id}", "unknown")."""
    if route in PUBLIC_ROUTES or route.startswith("/static/"):
        return PUBLIC
    if route.startswith("/admin/"):
        return "admin"
    return "read" if method in ("GET", "HEAD") else "write"


class Access:
    def __init__(self, cfg: AuthConfig) -> None:
        self.anonymous = cfg.anonymous
        self.keys = [(bytes.fromhex(k.sha256), k.name, k.role) for k in cfg.keys]

    def check(self, need: str, authorization: bytes | None, remote: str) -> str | None:
        """The caller's key name (None without one) if it may do what needs role `need`; else raises
        Unauthorized or Forbidden. `remote` is the client's IP address."""
        if need == PUBLIC:
            return None
        if not self.keys:
            if is_loopback(remote) or RANK[self.anonymous] >= RANK[need]:
                return None
            raise Forbidden(
                f"this needs the {need} role; without [[auth.keys]] in cluster.toml only loopback clients have it "
                f"(auth.anonymous = {self.anonymous!r} for others)"
            )
        if authorization is None:
            if RANK[self.anonymous] >= RANK[need]:
                return None
            raise Unauthorized(f"this needs the {need} role: send Authorization: Bearer <API key>", "authorization")
        name, role = self._key(authorization)
        if RANK[role] < RANK[need]:
            raise Forbidden(f"the API key {name!r} has the {role} role; this needs {need}")
        return name

    def _key(self, authorization: bytes) -> tuple[str, str]:
        scheme, _, key = authorization.partition(b" ")
        key = key.strip()
        if scheme.lower() != b"bearer" or not key or len(key) > KEY_CHARS_MAX:
            raise Unauthorized("the Authorization header must be 'Bearer <API key>'", "authorization")
        digest = hashlib.sha256(key).digest()
        found: tuple[str, str] | None = None
        for want, name, role in self.keys:  # every key, no early exit: the time says nothing about which matched
            if hmac.compare_digest(want, digest):
                found = (name, role)
        if found is None:
            raise Unauthorized("unknown API key", "authorization")
        return found
