"""The OpenAPI 3.1 description of the public API (CONTRACT §2), served at GET /openapi.json.

Schemas are generated from the msgspec types the API actually encodes (node.model.TweetOut, node.http.schema);
the request-body types below exist only to describe what node.model.parse_tweet_in / parse_patch accept.
Pure: builds a dict, never serves it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from node.http.auth import PUBLIC, route_role
from node.http.schema import (
    BulkResponse,
    ClusterView,
    ErrorBody,
    Health,
    SearchResponse,
    StatsResponse,
    TrendsResponse,
)
from node.model import ID_MAX, LANG_CHARS_MAX, TEXT_CHARS_MAX, USER_CHARS_MAX, GeoPoint, TweetOut

# msgspec cannot express bounds past int64 in a schema, so the 2^64 limit is stated in words.
Id = Annotated[int, msgspec.Meta(ge=1, description="a positive integer below 2^64")]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=TEXT_CHARS_MAX, description="1..280 characters")]


class TweetInput(msgspec.Struct, forbid_unknown_fields=True):
    """POST /tweets body, and one line of POST /tweets/bulk. Unknown fields are refused (400 naming the field)."""

    text: Text
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=USER_CHARS_MAX)]
    id: Id | None = None
    id_str: Annotated[str, msgspec.Meta(pattern="^[0-9]{1,20}$")] | None = None
    created_at: (
        Annotated[
            str,
            msgspec.Meta(description="ISO-8601 (naive = UTC) or Twitter's 'Tue Oct 18 21:53:25 +0000 2011'"),
        ]
        | None
    ) = None
    reply_to: Id | None = None
    lang: Annotated[str, msgspec.Meta(min_length=1, max_length=LANG_CHARS_MAX)] | None = None
    geo: GeoPoint | None = None
    likes: Count | None = None
    retweets: Count | None = None


class TweetPatchInput(msgspec.Struct, forbid_unknown_fields=True):
    """PATCH /tweets/{id} body: at least one field. A text change re-indexes the tweet and sets edited_at."""

    text: Text | None = None
    likes: Count | None = None
    retweets: Count | None = None


_REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json_content(_ref("ErrorBody"))}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _json_content(schema)}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


_COMMON = {
    "400": _error("invalid input: `error.field` names the offending field or parameter"),
    "408": _error("the request was not received within http.header_timeout_s / http.request_timeout_s"),
    "431": _error("request head larger than http.header_bytes_max"),
    "500": _error("internal error (logged by the node)"),
}
_AUTH = {
    "401": _error("unauthorized: no API key (or an unknown one) where the route needs a role anonymous lacks"),
    "403": _error("forbidden: the key's role (or, without [[auth.keys]], a non-loopback client's) is too low"),
}
_OVERLOADED = {
    "429": {
        "description": "overloaded: shed before any work (the request changed nothing); retry after Retry-After",
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}},
        "content": _json_content(_ref("ErrorBody")),
    }
}


def _role(role: str) -> dict[str, Any]:
    """The operation's role (x-murmur-role) and its security: a bearer API key, or none where anonymous suffices."""
    return {"x-murmur-role": role, "security": [{}, {"apiKey": []}] if role != "admin" else [{"apiKey": []}, {}]}
_WRITE = {
    "413": _error("body larger than http.body_bytes_max"),
    "415": _error("unsupported Content-Type"),
    "503": _error("not acknowledged by W replicas; retrying with the same id is safe"),
}
_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": ID_MAX},
}


def build_openapi(version: str = "0.1.0") -> dict[str, Any]:
    types = [
        TweetOut,
        TweetInput,
        TweetPatchInput,
        ErrorBody,
        SearchResponse,
        TrendsResponse,
        BulkResponse,
        Health,
        StatsResponse,
        ClusterView,
    ]
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    tweet = _ref("TweetOut")
    admin_object = _ok("see the summary", {"type": "object"})
    paths: dict[str, Any] = {
        "/tweets": {
            "post": {
                "summary": "Create a tweet (idempotent when `id` is given)",
                "requestBody": {"required": True, "content": _json_content(_ref("TweetInput"))},
                "responses": {
                    "201": _ok("created and acknowledged by W replicas", tweet),
                    "200": _ok("idempotent retry: the same id with the same content", tweet),
                    "409": _error("the same id with other content, or a deleted id"),
                    **_COMMON,
                    **_WRITE,
                },
            }
        },
        "/tweets/bulk": {
            "post": {
                "summary": "Create many tweets from NDJSON, one tweet object per line; a bad line fails alone",
                "description": "Blank lines are skipped. At most http.bulk_lines_max lines and http.body_bytes_max "
                "bytes per request (413 beyond).",
                "requestBody": {
                    "required": True,
                    "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                },
                "responses": {"200": _ok("per-line results", _ref("BulkResponse")), **_COMMON, **_WRITE},
            }
        },
        "/tweets/{id}": {
            "parameters": [_ID_PARAM],
            "get": {
                "summary": "Get one tweet",
                "responses": {"200": _ok("the tweet", tweet), "404": _error("no such tweet"), **_COMMON},
            },
            "patch": {
                "summary": "Change text, likes or retweets",
                "requestBody": {"required": True, "content": _json_content(_ref("TweetPatchInput"))},
                "responses": {
                    "200": _ok("the updated tweet", tweet),
                    "404": _error("no such tweet"),
                    **_COMMON,
                    **_WRITE,
                },
            },
            "delete": {
                "summary": "Delete a tweet (never returned again, on any node)",
                "responses": {
                    "204": {"description": "deleted"},
                    "404": _error("no such tweet"),
                    "503": _WRITE["503"],
                    **_COMMON,
                },
            },
        },
        "/search": {
            "get": {
                "summary": "Search tweets (CONTRACT §3 query syntax)",
                "parameters": [
                    _query("q", {"type": "string"}, "the query; bad syntax gives 400 invalid_query", True),
                    _query(
                        "count", {"type": "integer", "minimum": 1, "maximum": 100, "default": 100}, "results"
                    ),
                    _query("max_id", {"type": "integer", "minimum": 1}, "only ids <= max_id (paging)"),
                    _query("since_id", {"type": "integer", "minimum": 1}, "only ids > since_id"),
                    _query(
                        "result_type",
                        {"type": "string", "enum": ["recent", "popular", "mixed"], "default": "recent"},
                        "recent: newest first by id",
                    ),
                    _query("explain", {"type": "boolean", "default": False}, "add per-stage timings"),
                ],
                "responses": {"200": _ok("matching tweets", _ref("SearchResponse")), **_COMMON},
            }
        },
        "/trends": {
            "get": {
                "summary": "Hashtags rising fastest in the window, cluster-wide",
                "parameters": [
                    _query(
                        "window", {"type": "string", "enum": ["5m", "1h", "24h"], "default": "1h"}, "window"
                    ),
                    _query(
                        "count", {"type": "integer", "minimum": 1, "maximum": 50, "default": 10}, "trends"
                    ),
                ],
                "responses": {"200": _ok("trends", _ref("TrendsResponse")), **_COMMON},
            }
        },
        "/cluster": {
            "get": {
                "summary": "Members, their states, ring ownership, N/W/R",
                "responses": {"200": _ok("the ring as this node sees it", _ref("ClusterView"))},
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness and degradation",
                "responses": {"200": _ok("ok or degraded", _ref("Health"))},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text format 0.0.4",
                        "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _ok("OpenAPI 3.1", {"type": "object"})}}
        },
        "/admin/snapshot": {
            "post": {
                "summary": "Write a snapshot now, in the background (like Redis BGSAVE); admin role",
                "responses": {"202": admin_object, **_COMMON},
            }
        },
        "/admin/cleanup": {
            "post": {
                "summary": "Drop the data of the ranges this node no longer replicates, after a join or leave "
                "(murmur cleanup, as nodetool cleanup): 200 with what was dropped, or 202 while it still runs; "
                "admin role",
                "responses": {
                    "200": admin_object,
                    "202": admin_object,
                    "409": _error("the ring is moving, a member has another ring or did not answer, or one runs"),
                    **_COMMON,
                },
            },
            "get": {
                "summary": "Whether a cleanup runs, and the last one's figures; admin role",
                "responses": {"200": admin_object, **_COMMON},
            },
        },
        "/admin/decommission": {
            "post": {
                "summary": "This node starts leaving the ring: its ranges stream to the nodes that take them over, "
                "then it stops (murmur decommission); admin role",
                "responses": {
                    "202": admin_object,
                    "409": _error("it cannot leave now: a ring change is in progress, or too few nodes would remain"),
                    **_COMMON,
                },
            }
        },
        "/admin/topology": {
            "get": {
                "summary": "The ring this node holds: members, their tokens, a change in progress; admin role",
                "responses": {"200": admin_object, **_COMMON},
            }
        },
        "/stats": {
            "get": {
                "summary": "This node's figures for the page: counters (rates from two polls), lag, hints, partitions",
                "responses": {"200": _ok("figures of this node", _ref("StatsResponse"))},
            }
        },
        "/": {
            "get": {
                "summary": "The search page (HTML); /?q=QUERY opens with the results of QUERY",
                "parameters": [_query("q", {"type": "string"}, "a query to run when the page opens")],
                "responses": {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}},
            }
        },
    }
    for path, item in paths.items():  # access (node/http/auth.py) and shedding, stated once for every operation
        for method, op in item.items():
            if method == "parameters":
                continue
            role = route_role(path, method.upper())
            if role != PUBLIC:
                op.update(_role(role))
                op["responses"].update(_AUTH)
            if path == "/search":
                op["responses"].update(_OVERLOADED)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Murmur",
            "version": version,
            "description": "Real-time tweet search on a cluster of identical peer nodes; any node coordinates. "
            'Errors are always {"error": {"code", "message", "field"}}; unknown paths give 404 not_found, '
            "wrong methods 405 with Allow, oversized heads 431. Access (CONTRACT §5): each operation's "
            "x-murmur-role is the role it needs (read, write or admin; /health and the page need none).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Authorization: Bearer <API key> (murmur keygen --api-key); without "
                    "[[auth.keys]] loopback clients need none",
                }
            },
        },
    }
