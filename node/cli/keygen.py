"""`murmur keygen`: a new random cluster secret, or with `--api-key NAME --role ROLE` a new API key and the
`[[auth.keys]]` table to paste into cluster.toml (CONTRACT §1, §5).

Pure apart from printing; it never reads or writes a config, and never stores a key: only its SHA-256 is pasted.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys

SECRET_BYTES = 32  # 256 random bits: 43 URL-safe characters (cluster.secret wants at least 32 characters)
API_KEY_PREFIX = "mk_"  # makes a leaked key easy to recognise (secret scanners, logs)
ROLES = ("read", "write", "admin")


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def key_sha256(key: str) -> str:
    """What [[auth.keys]] stores and node/http/auth.py compares: hex SHA-256 of the key's UTF-8 bytes."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_table(name: str, role: str, key: str) -> str:
    return f'[[auth.keys]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{key_sha256(key)}"\n'


def run_keygen(api_key: str | None, role: str | None) -> int:
    if api_key is None:
        if role is not None:
            print("murmur: --role goes with --api-key NAME", file=sys.stderr)
            return 2
        print(new_secret())
        return 0
    if not api_key or len(api_key) > 64 or not all(ch.isalnum() or ch in "-_." for ch in api_key):
        print("murmur: --api-key NAME: 1..64 letters, digits, '-', '_' or '.'", file=sys.stderr)
        return 2
    role = role or "read"
    key = new_api_key()
    print(f"# the API key of {api_key!r} (role {role}): hand it to its user; it is shown only this once")
    print(key)
    print("# paste into the cluster.toml of every node, then restart them:")
    print(key_table(api_key, role, key), end="")
    return 0


def add_keygen(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `murmur keygen` on the main parser's subcommands."""
    help = "print a new random cluster secret, or with --api-key NAME a new API key and its [[auth.keys]] table"
    sp = sub.add_parser("keygen", help=help, description=help)
    sp.add_argument("--api-key", dest="api_key", metavar="NAME", default=None, help="make an API key named NAME")
    sp.add_argument("--role", choices=ROLES, default=None, help="the key's role (default read)")
    sp.set_defaults(func=lambda args: run_keygen(args.api_key, args.role))
