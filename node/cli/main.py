"""The `murmur` command (CONTRACT §1): parses arguments and hands each subcommand to its module.

Holds no logic of its own. Exit codes: 0 ok, 1 the command failed, 2 bad usage or a bad config.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import trio

from node.cli.keygen import add_keygen
from node.config import Config, load_config
from node.errors import ConfigError

DEFAULT_CONFIG = "cluster.toml"


class _ConfigExit(Exception):
    pass


def _config(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except ConfigError as e:
        print(f"murmur: config error: {e}", file=sys.stderr)
        raise _ConfigExit from None


def _url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    cfg = _config(args)
    return cfg.url(cfg.nodes[0].name)


def _key(args: argparse.Namespace) -> str | None:
    """--api-key, else $MURMUR_API_KEY, else none."""
    return args.api_key or os.environ.get("MURMUR_API_KEY") or None


def _cmd_node(args: argparse.Namespace) -> int:
    from node.cli.logging import configure_logging

    configure_logging(args.name)
    cfg = _config(args)
    try:
        cfg.node(args.name)
    except ConfigError as e:
        print(f"murmur: config error: {e}", file=sys.stderr)
        return 2
    from node.app import run_node  # imported late: the other subcommands must not pay for the whole node
    from node.loopwatch import from_env
    from node.memory import tune_malloc

    tune_malloc()  # before the node allocates its state (node/memory.py says why)
    try:
        trio.run(run_node, cfg, args.name, args.join, instruments=from_env())  # MURMUR_SLOW_STEP_MS: loopwatch.py
    except KeyboardInterrupt:
        return 130
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from node.cli.procs import up

    return up(_config(args), args.timeout)


def _cmd_down(args: argparse.Namespace) -> int:
    from node.cli.procs import down

    return down(_config(args), args.timeout)


def _cmd_load(args: argparse.Namespace) -> int:
    from node.cli.load import run_load

    if args.batch < 1 or (args.concurrency is not None and args.concurrency < 1):
        print("murmur: --batch and --concurrency must be at least 1", file=sys.stderr)
        return 2
    if args.url:
        urls = [str(args.url).rstrip("/")]
    else:  # any node coordinates: spread the bulks over all of them
        cfg = _config(args)
        urls = [cfg.url(n.name) for n in cfg.nodes]
    return run_load(urls, args.files, args.batch, args.concurrency, args.limit, _key(args))


def _cmd_search(args: argparse.Namespace) -> int:
    from node.cli.query import run_search

    return run_search(_url(args), args.query, args.count, args.max_id, args.result_type, args.json, _key(args))


def _cmd_status(args: argparse.Namespace) -> int:
    from node.cli.query import run_status

    return run_status(_url(args), _key(args))


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from node.cli.query import run_snapshot

    return run_snapshot(_url(args), _key(args))


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from node.cli.query import run_cleanup

    return run_cleanup(_url(args), _key(args))


def _cmd_decommission(args: argparse.Namespace) -> int:
    from node.cli.ring import run_decommission

    return run_decommission(_config(args), _url(args), args.name, args.timeout, api_key=_key(args))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="murmur", description="Murmur: real-time tweet search on a cluster of peers"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help: str, url: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("--config", default=DEFAULT_CONFIG, help="cluster config (default: ./cluster.toml)")
        if url:  # the commands that talk to a node
            sp.add_argument("--url", help="a node's base URL (default: the config's first node)")
            sp.add_argument("--api-key", dest="api_key", metavar="KEY", help="API key (default: $MURMUR_API_KEY)")
        return sp

    sp = cmd("node", "run one node in the foreground (JSON logs on stderr)")
    sp.add_argument("--name", required=True, help="this node's name in the config")
    sp.add_argument(
        "--join",
        metavar="SEED",
        default=None,
        help="join a running cluster through SEED (a node name of the config, or HOST:PORT of its gossip port)",
    )
    sp.set_defaults(func=_cmd_node)

    sp = cmd("up", "start every node of the config in the background and wait until each answers /health")
    sp.add_argument(
        "--timeout", type=float, default=60.0,
        help="seconds a node may show no progress before `up` gives up (default 60); a node that reports its "
        "recovery moving is waited for however long it takes",
    )
    sp.set_defaults(func=_cmd_up)

    sp = cmd("down", "stop the nodes that `up` started (SIGTERM, then SIGKILL after --timeout)")
    sp.add_argument("--timeout", type=float, default=20.0, help="seconds before SIGKILL (default 20)")
    sp.set_defaults(func=_cmd_down)

    sp = cmd("load", "bulk-load tweets: JSON lines (.gz ok), Twitter API JSON, Sentiment140 CSV", url=True)
    sp.add_argument("files", nargs="+", metavar="FILE", help="input files ('-' = stdin)")
    sp.add_argument("--batch", type=int, default=1000, help="lines per POST /tweets/bulk (default 1000)")
    sp.add_argument(
        "--concurrency", type=int, default=None, help="batches in flight (default 2 per node it loads through, at least 4)"
    )
    sp.add_argument("--limit", type=int, default=None, help="read at most this many records of each file")
    sp.set_defaults(func=_cmd_load)

    sp = cmd("search", "search tweets and print the results", url=True)
    sp.add_argument("query", metavar="QUERY")
    sp.add_argument("--count", type=int, default=None, help="1..100 (server default 100)")
    sp.add_argument("--max-id", dest="max_id", default=None, help="only ids <= this (paging: next_max_id)")
    sp.add_argument("--result-type", dest="result_type", choices=["recent", "popular", "mixed"], default=None)
    sp.add_argument("--json", action="store_true", help="print the raw JSON answer")
    sp.set_defaults(func=_cmd_search)

    sp = cmd("status", "the ring as one node sees it (like nodetool status)", url=True)
    sp.set_defaults(func=_cmd_status)

    sp = cmd("snapshot", "ask the node to write a snapshot now (returns at once; it keeps serving)", url=True)
    sp.set_defaults(func=_cmd_snapshot)

    sp = cmd(
        "cleanup",
        "drop the data of the ranges the node no longer replicates, after a join or leave (as nodetool cleanup)",
        url=True,
    )
    sp.set_defaults(func=_cmd_cleanup)

    sp = cmd("decommission", "stream a node's data to the others and take it off the ring; it then stops", url=True)
    sp.add_argument("name", metavar="NAME", help="the node that leaves")
    sp.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for it to leave (default 600)")
    sp.set_defaults(func=_cmd_decommission)
    add_keygen(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except _ConfigExit:
        return 2


if __name__ == "__main__":
    sys.exit(main())
