"""Logging of a running node: structlog, one JSON object per line on stderr, each carrying the node's name.

Called once, first thing in `murmur node`. Never log to stdout (the CLI's output) and never buffer: a crash must
leave its last lines in node.log.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog


def configure_logging(node_name: str, level: str | None = None) -> None:
    """`level` (or $MURMUR_LOG_LEVEL, default info): debug, info, warning, error."""
    name = (level or os.environ.get("MURMUR_LOG_LEVEL") or "info").upper()
    lvl = logging.getLevelNamesMapping().get(name, logging.INFO)
    # libraries that use the stdlib logger end up on stderr too (plain text, warnings and worse)
    logging.basicConfig(
        stream=sys.stderr, level=max(lvl, logging.WARNING), format="%(name)s %(levelname)s %(message)s"
    )

    def add_node(_logger: object, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("node", node_name)  # a plain closure: also right in threads and foreign tasks
        return event

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_node,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
