"""cluster.toml, typed and validated once at start (CONTRACT §1). A bad value raises ConfigError naming the key.

One msgspec.Struct per subsystem; every field documents its unit, units last in names. Pure apart from
`load_config`, which reads the file.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from node.errors import ConfigError
from node.membership.config import MembershipConfig


class ClusterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str = "murmur"
    replication_factor: int = 3  # N: copies of each partition (its preference list)
    write_quorum: int = 2  # W: copies that must hold a write before it is acknowledged
    read_quorum: int = 2  # R: copies asked by every read
    vnodes: int = 64  # ring tokens per node
    data_dir: str = "data"  # each node keeps its files in data_dir/<node name>/ (relative: to the config file)
    secret: str = "change-me"  # authenticates gossip and internal RPC; with any non-loopback host: >= 32 chars


class StorageConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    fsync: Literal["always", "everysec", "never"] = "always"  # like Redis appendfsync: per group commit / 1 s / OS
    snapshot_interval_s: float = 300.0  # seconds between scheduled snapshots (0 = only at a graceful stop)
    snapshot_min_records: int = 10_000  # a scheduled snapshot is skipped when fewer WAL records are new
    # A snapshot also starts once this many WAL records were written since the last one (0 = never), so that
    # a restart replays at most about this many; each node's point is spread over 0.75x..1.25x of it (by its
    # name) and its schedule offset likewise, so that the nodes of a cluster do not all snapshot at once.
    snapshot_wal_records: int = 300_000
    wal_segment_bytes_max: int = 64 * 1024 * 1024  # a WAL segment file is rolled past this size
    group_commit_records_max: int = 4096  # records written by one group commit at most
    # Under this many bytes free on the storage's file system the node turns read-only (writes 503, reads
    # served, /health degraded) before the disk is full, as Elasticsearch's flood stage; it takes writes again
    # by itself once 1.25 times this is free. 0 = no floor (a full disk still only makes it read-only).
    free_bytes_min: int = 64 * 1024 * 1024
    # Seconds a delete's tombstone is kept at least (Cassandra's gc_grace_seconds; 864000 = 10 days). After it, a
    # tombstone is dropped once every replica holds it and no other member holds data of its partition
    # (node/replication/collection.py); hints older than a quarter of it are dropped. Keep it far above the time
    # a write can be in flight and the clocks' disagreement (seconds).
    tombstone_grace_s: float = 864_000.0
    tombstone_collect_interval_s: float = 3600.0  # seconds between two collection passes of a node (0 = never)


class HttpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    body_bytes_max: int = 8 * 1024 * 1024  # larger request bodies get 413
    header_bytes_max: int = 16 * 1024  # larger request heads get 431
    bulk_lines_max: int = 10_000  # lines in one POST /tweets/bulk (more: 413)
    # request bytes on the wire (chunk framing included) count against header_bytes_max + body_bytes_max
    request_timeout_s: float = 30.0  # a request that has not been read and answered by then gets 408 / is dropped
    header_timeout_s: float = 10.0  # a new connection's first byte, and each request head, must arrive within this
    idle_timeout_s: float = 60.0  # keep-alive connections idle this long are closed
    connections_max: int = 1024  # open client connections; when full, the longest-idle one is closed for a new one
    connections_per_address_max: int = 256  # open connections of one client address (the same rule within it)
    search_inflight_max: int = 16  # searches running at once on this node (as their coordinator)
    search_queue_max: int = 64  # searches waiting for a place; more are answered 429 overloaded at once
    search_queue_timeout_s: float = 2.0  # a search that waited this long for a place gets 429 overloaded
    tls_cert_file: str | None = None  # PEM certificate chain: serve HTTPS (relative: to the config file)
    tls_key_file: str | None = None  # PEM private key of tls_cert_file


Role = Literal["none", "read", "write", "admin"]


class AuthKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str  # shown in logs, never the key
    role: Literal["read", "write", "admin"]  # read: GET endpoints; write: also tweet writes; admin: also /admin/*
    sha256: str  # hex SHA-256 of the key (64 hex digits); the key itself is never stored


class AuthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    anonymous: Role = "read"  # role of a request without a key (from a non-loopback address when keys is empty)
    keys: tuple[AuthKey, ...] = ()  # [[auth.keys]]: none = loopback clients have every role (CONTRACT §5)


class NodeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    host: str = "127.0.0.1"
    http_port: int = 7001
    gossip_port: int = 7101
    machine_id: int | None = None  # Snowflake machine id (0..8191); default: position in [[nodes]] + 1


class Config(msgspec.Struct, frozen=True):
    cluster: ClusterConfig
    nodes: tuple[NodeConfig, ...]
    storage: StorageConfig
    http: HttpConfig
    path: str  # the config file, absolute
    # [membership]: gossip timings (node/membership/config.py documents each key, its unit and formula). The
    # defaults are memberlist's LAN ones (probe every 1 s, dead after ~4-5 s on 3 nodes); a local test cluster
    # may go faster, e.g. probe_interval_s = 0.2, probe_timeout_s = 0.1, gossip_interval_s = 0.05.
    membership: MembershipConfig = MembershipConfig()
    auth: AuthConfig = AuthConfig()  # [auth] and [[auth.keys]]: API keys and roles (node/http/auth.py)

    def node(self, name: str) -> NodeConfig:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ConfigError("nodes", f"no node named {name!r} in {self.path} (have: {', '.join(self.names())})")

    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def machine_id(self, name: str) -> int:
        for i, n in enumerate(self.nodes):
            if n.name == name:
                return n.machine_id if n.machine_id is not None else i + 1
        raise ConfigError("nodes", f"no node named {name!r}")

    def file(self, name: str) -> Path:
        """A file named in the config: relative to the config file's folder."""
        p = Path(name)
        return p if p.is_absolute() else Path(self.path).parent / p

    def data_dir(self) -> Path:
        p = Path(self.cluster.data_dir)
        return p if p.is_absolute() else Path(self.path).parent / p

    def node_dir(self, name: str) -> Path:
        return self.data_dir() / name

    def url(self, name: str) -> str:
        n = self.node(name)
        scheme = "https" if self.http.tls_cert_file else "http"
        return f"{scheme}://{n.host}:{n.http_port}"


_SECTIONS = {
    "cluster": ClusterConfig,
    "storage": StorageConfig,
    "http": HttpConfig,
    "membership": MembershipConfig,
    "auth": AuthConfig,
}
SECRET_CHARS_MIN = 32  # a cluster.secret on a non-loopback host is at least this long (murmur keygen: 43)
WEAK_SECRETS = frozenset({"change-me"})
_HEX = frozenset("0123456789abcdefABCDEF")


def is_loopback(host: str) -> bool:
    """An address only this machine reaches: 127.0.0.0/8, ::1 or `localhost`. Any other name is not (it is
    never resolved here: what it resolves to can change)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _convert(typ: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table")
    for k in raw:
        if k not in typ.__struct_fields__:  # type: ignore[attr-defined]
            raise ConfigError(f"{where}.{k}", "unknown key")
    try:
        return msgspec.convert(raw, typ)
    except msgspec.ValidationError as e:
        msg = str(e)
        key = where
        if "`$." in msg:
            key = where + "." + msg.split("`$.", 1)[1].rstrip("`").split("`")[0]
        raise ConfigError(key, msg.split(" - at ")[0]) from None


def parse_config(raw: dict[str, Any], path: str) -> Config:
    for k in raw:
        if k not in (*_SECTIONS, "nodes"):
            raise ConfigError(k, "unknown key")
    sections = {k: _convert(t, raw.get(k, {}), k) for k, t in _SECTIONS.items()}
    nodes_raw = raw.get("nodes")
    if not isinstance(nodes_raw, list) or not nodes_raw:
        raise ConfigError("nodes", "at least one [[nodes]] table is required")
    nodes = tuple(_convert(NodeConfig, n, f"nodes[{i}]") for i, n in enumerate(nodes_raw))
    cfg = Config(
        cluster=sections["cluster"],
        nodes=nodes,
        storage=sections["storage"],
        http=sections["http"],
        path=path,
        membership=sections["membership"],
        auth=sections["auth"],
    )
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    c = cfg.cluster
    if not c.name:
        raise ConfigError("cluster.name", "must not be empty")
    if c.replication_factor < 1:
        raise ConfigError("cluster.replication_factor", "must be at least 1")
    if c.replication_factor > len(cfg.nodes):
        raise ConfigError(
            "cluster.replication_factor", f"N={c.replication_factor} exceeds the {len(cfg.nodes)} nodes configured"
        )
    if not 1 <= c.write_quorum <= c.replication_factor:
        raise ConfigError("cluster.write_quorum", f"W must be between 1 and N={c.replication_factor}")
    if not 1 <= c.read_quorum <= c.replication_factor:
        raise ConfigError("cluster.read_quorum", f"R must be between 1 and N={c.replication_factor}")
    if not 1 <= c.vnodes <= 1024:
        raise ConfigError("cluster.vnodes", "must be between 1 and 1024")
    if not c.secret:
        raise ConfigError("cluster.secret", "must not be empty")
    exposed = [n.host for n in cfg.nodes if not is_loopback(n.host)]
    if exposed and (len(c.secret) < SECRET_CHARS_MIN or c.secret in WEAK_SECRETS):
        raise ConfigError(
            "cluster.secret",
            f"too weak for a cluster reachable from the network (host {exposed[0]!r}): it must be at least "
            f"{SECRET_CHARS_MIN} random characters and not the example's; make one with `murmur keygen`",
        )
    seen_names: set[str] = set()
    seen_ports: set[tuple[str, int]] = set()
    seen_ids: set[int] = set()
    for i, n in enumerate(cfg.nodes):
        where = f"nodes[{i}]"
        if not n.name or not all(ch.isalnum() or ch in "-_." for ch in n.name) or n.name.strip(".") == "":
            raise ConfigError(f"{where}.name", "must be letters, digits, '-', '_' or '.' (not only dots)")
        if n.name in seen_names:
            raise ConfigError(f"{where}.name", f"duplicate node name {n.name!r}")
        seen_names.add(n.name)
        for key in ("http_port", "gossip_port"):
            port = getattr(n, key)
            if not 1 <= port <= 65535:
                raise ConfigError(f"{where}.{key}", "must be between 1 and 65535")
            if (n.host, port) in seen_ports:
                raise ConfigError(f"{where}.{key}", f"duplicate port {port} on {n.host}")
            seen_ports.add((n.host, port))
        mid = cfg.machine_id(n.name)
        if not 0 <= mid < 8192:
            raise ConfigError(f"{where}.machine_id", "must be between 0 and 8191")
        if mid in seen_ids:
            raise ConfigError(f"{where}.machine_id", f"duplicate machine id {mid}")
        seen_ids.add(mid)
    s = cfg.storage
    if s.snapshot_interval_s < 0:
        raise ConfigError("storage.snapshot_interval_s", "must be >= 0")
    if s.snapshot_wal_records < 0:
        raise ConfigError("storage.snapshot_wal_records", "must be >= 0")
    if s.wal_segment_bytes_max < 4096:
        raise ConfigError("storage.wal_segment_bytes_max", "must be at least 4096")
    if s.group_commit_records_max < 1:
        raise ConfigError("storage.group_commit_records_max", "must be at least 1")
    if s.free_bytes_min < 0:
        raise ConfigError("storage.free_bytes_min", "must be >= 0 (0: no floor)")
    if not s.tombstone_grace_s >= 1:
        raise ConfigError("storage.tombstone_grace_s", "must be at least 1 (second)")
    if not s.tombstone_collect_interval_s >= 0:
        raise ConfigError("storage.tombstone_collect_interval_s", "must be >= 0 (0 = never)")
    cfg.membership.validate()  # raises ConfigError naming membership.<key>
    h = cfg.http
    for key in ("body_bytes_max", "header_bytes_max", "bulk_lines_max", "connections_max"):
        if getattr(h, key) < 1:
            raise ConfigError(f"http.{key}", "must be at least 1")
    for key in ("connections_per_address_max", "search_inflight_max"):
        if getattr(h, key) < 1:
            raise ConfigError(f"http.{key}", "must be at least 1")
    if h.search_queue_max < 0:
        raise ConfigError("http.search_queue_max", "must be >= 0")
    for key in ("request_timeout_s", "idle_timeout_s", "header_timeout_s", "search_queue_timeout_s"):
        if getattr(h, key) <= 0:
            raise ConfigError(f"http.{key}", "must be > 0")
    if (h.tls_cert_file is None) != (h.tls_key_file is None):
        key = "tls_key_file" if h.tls_key_file is None else "tls_cert_file"
        raise ConfigError(f"http.{key}", "tls_cert_file and tls_key_file go together")
    for key in ("tls_cert_file", "tls_key_file"):
        name = getattr(h, key)
        if name is not None and not cfg.file(name).is_file():
            raise ConfigError(f"http.{key}", f"no such file: {cfg.file(name)}")
    validate_auth(cfg.auth)


def validate_auth(a: AuthConfig) -> None:
    names: set[str] = set()
    digests: set[str] = set()
    for i, k in enumerate(a.keys):
        where = f"auth.keys[{i}]"
        if not k.name or len(k.name) > 64 or not all(ch.isalnum() or ch in "-_." for ch in k.name):
            raise ConfigError(f"{where}.name", "must be 1..64 letters, digits, '-', '_' or '.'")
        if k.name in names:
            raise ConfigError(f"{where}.name", f"duplicate key name {k.name!r}")
        names.add(k.name)
        if len(k.sha256) != 64 or not set(k.sha256) <= _HEX:
            raise ConfigError(f"{where}.sha256", "must be the 64 hex digits of the key's SHA-256 (murmur keygen)")
        if k.sha256.lower() in digests:
            raise ConfigError(f"{where}.sha256", "the same key is listed twice")
        digests.add(k.sha256.lower())


def load_config(path: str | Path) -> Config:
    p = Path(path).resolve()
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("--config", f"no such file: {p}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("--config", f"{p} is not valid TOML: {e}") from None
    return parse_config(raw, str(p))
