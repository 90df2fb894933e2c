"""Input formats of `murmur load`: JSON lines (our corpora, our own API objects), Twitter API JSON, Sentiment140 CSV.

Each source record becomes a POST /tweets body (only fields the API accepts) or a local rejection. The mapping
functions are pure; `read_records` only reads the file. Never send a field the API does not know (it answers 400).
"""

from __future__ import annotations

import csv
import datetime as _dt
import gzip
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import msgspec

from node.model import format_time

Format = Literal["jsonl", "json", "csv"]
DEFAULT_USER = "unknown"
# A whole-document JSON file (array / {"statuses": [...]}) is parsed in one piece: refuse absurd sizes.
JSON_DOC_BYTES_MAX = 1 << 30
PEEK_BYTES = 64 * 1024

_API_FIELDS = ("id", "created_at", "user", "text", "lang", "reply_to", "geo", "likes", "retweets")
# A JSON object carrying any of these is a Twitter API tweet, not one of our flat records.
_TWITTER_MARKERS = (
    "id_str",
    "full_text",
    "favorite_count",
    "retweet_count",
    "in_reply_to_status_id",
    "entities",
)


class Record(msgspec.Struct):
    """One source record: `tweet` to send, or `error` (code, message) when it cannot even be sent."""

    where: str  # "file:line" for messages
    tweet: dict[str, Any] | None = None
    error: tuple[str, str] | None = None
    user_defaulted: bool = False


# ---------------------------------------------------------------- pure mappings


def _user(value: Any) -> tuple[Any, bool]:
    if value is None or value == "":
        return DEFAULT_USER, True
    return value, False


def from_flat(obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """One of our corpus lines or an API body: keep the API fields, drop extras (is_retweet, topic, polarity...)."""
    out = {k: obj[k] for k in _API_FIELDS if k in obj and obj[k] is not None}
    if "id" not in out and obj.get("id_str") is not None:
        out["id"] = obj["id_str"]
    out["user"], defaulted = _user(obj.get("user"))
    return out, defaulted


def twitter_time(value: Any) -> Any:
    """'Tue Oct 18 21:53:25 +0000 2011' -> ISO; anything else is passed on for the server to judge."""
    if isinstance(value, str):
        try:
            dt = _dt.datetime.strptime(value, "%a %b %d %H:%M:%S %z %Y")
        except ValueError:
            return value
        return format_time(int(dt.timestamp() * 1000))
    return value


def _twitter_geo(obj: dict[str, Any]) -> dict[str, float] | None:
    geo = obj.get("geo")
    if isinstance(geo, dict) and isinstance(geo.get("coordinates"), list) and len(geo["coordinates"]) == 2:
        lat, lon = geo["coordinates"]  # the deprecated `geo` field is [lat, lon]
        return {"lat": lat, "lon": lon}
    coords = obj.get("coordinates")
    if (
        isinstance(coords, dict)
        and isinstance(coords.get("coordinates"), list)
        and len(coords["coordinates"]) == 2
    ):
        lon, lat = coords["coordinates"]  # GeoJSON order is [lon, lat]
        return {"lat": lat, "lon": lon}
    return None


def is_twitter(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("user"), dict) or any(k in obj for k in _TWITTER_MARKERS)


def from_twitter(obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A Twitter API v1.1 status object -> an API body."""
    out: dict[str, Any] = {}
    ident = obj.get("id_str") if obj.get("id_str") is not None else obj.get("id")
    if ident is not None:
        out["id"] = ident
    if obj.get("created_at") is not None:
        out["created_at"] = twitter_time(obj["created_at"])
    ext = obj.get("extended_tweet")
    text = (
        obj.get("full_text") or (ext.get("full_text") if isinstance(ext, dict) else None) or obj.get("text")
    )
    if text is not None:
        out["text"] = text
    user = obj.get("user")
    name = user.get("screen_name") if isinstance(user, dict) else user
    out["user"], defaulted = _user(name)
    if obj.get("lang") is not None:
        out["lang"] = obj["lang"]
    reply = obj.get("in_reply_to_status_id_str") or obj.get("in_reply_to_status_id")
    if reply is not None:
        out["reply_to"] = reply
    for src, dst in (("favorite_count", "likes"), ("retweet_count", "retweets")):
        if obj.get(src) is not None:
            out[dst] = obj[src]
    geo = _twitter_geo(obj)
    if geo is not None:
        out["geo"] = geo
    return out, defaulted


def from_object(obj: Any, where: str) -> Record:
    if not isinstance(obj, dict):
        return Record(where, error=("not_an_object", "a record must be a JSON object"))
    tweet, defaulted = from_twitter(obj) if is_twitter(obj) else from_flat(obj)
    return Record(where, tweet=tweet, user_defaulted=defaulted)


# US zone abbreviations found in Sentiment140-style dates; the whole corpus says PDT.
_ZONES = {
    "UTC": 0,
    "GMT": 0,
    "PDT": -7,
    "PST": -8,
    "MDT": -6,
    "MST": -7,
    "CDT": -5,
    "CST": -6,
    "EDT": -4,
    "EST": -5,
}


def s140_time(value: str) -> str | None:
    """'Mon Apr 06 22:19:45 PDT 2009' -> '2009-04-07T05:19:45Z' (None if unreadable)."""
    parts = value.split()
    if len(parts) != 6 or parts[4] not in _ZONES:
        return None
    try:
        dt = _dt.datetime.strptime(" ".join(parts[:4] + parts[5:]), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None
    dt = dt.replace(tzinfo=_dt.timezone(_dt.timedelta(hours=_ZONES[parts[4]])))
    return format_time(int(dt.timestamp() * 1000))


def from_s140_row(row: list[str], where: str) -> Record:
    """polarity, id, date, query, user, text (headerless)."""
    if len(row) != 6:
        return Record(where, error=("bad_csv_row", f"expected 6 columns, got {len(row)}"))
    _polarity, ident, date, _query, user, text = row
    created = s140_time(date)
    if created is None:
        return Record(where, error=("bad_date", f"unreadable date {date!r}"))
    out: dict[str, Any] = {"id": ident.strip(), "created_at": created, "text": text}
    out["user"], defaulted = _user(user)
    return Record(where, tweet=out, user_defaulted=defaulted)


# ---------------------------------------------------------------- detection


def detect(name: str, head: bytes) -> Format:
    """By extension first, then by the first bytes of the (decompressed) content."""
    base = name.lower().removesuffix(".gz")
    if base.endswith(".csv"):
        return "csv"
    s = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if s.startswith(b"["):
        return "json"
    if s.startswith(b"{"):
        first = s.split(b"\n", 1)[0]
        try:
            json.loads(first)
            return "jsonl"
        except RecursionError:
            return "jsonl"  # one object per line, just too deep: that line is rejected alone
        except ValueError:
            # not one object per line: a pretty-printed document such as {"statuses": [...]}
            return "json"
    if base.endswith((".json", ".jsonl", ".ndjson")) or not s:
        return "jsonl" if not base.endswith(".json") else "json"
    return "csv"


# ---------------------------------------------------------------- reading


def _open(path: str) -> tuple[Any, BinaryIO]:
    """(decompressed stream with peek(), raw stream whose tell() measures progress)."""
    raw: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, raw))
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered), raw  # GzipFile is buffered: it has peek() too
    return buffered, raw


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")  # old CSV exports: every byte string decodes as latin-1


_decoder = msgspec.json.Decoder()


def _jsonl(stream: BinaryIO, label: str) -> Iterator[Record]:
    for n, line in enumerate(stream, 1):
        if not line.strip():
            continue
        where = f"{label}:{n}"
        try:
            obj = _decoder.decode(line)
        except msgspec.DecodeError as e:
            yield Record(where, error=("invalid_json", str(e)))
            continue
        except RecursionError:
            yield Record(where, error=("invalid_json", "nested too deeply"))
            continue
        if isinstance(obj, dict) and isinstance(obj.get("statuses"), list):
            # a whole search answer on one line (also what a one-line {"statuses": [...]} file looks like)
            for i, status in enumerate(obj["statuses"], 1):
                yield from_object(status, f"{where}[{i}]")
            continue
        yield from_object(obj, where)


def _json_doc(stream: BinaryIO, label: str) -> Iterator[Record]:
    data = stream.read(JSON_DOC_BYTES_MAX + 1)
    if len(data) > JSON_DOC_BYTES_MAX:
        yield Record(
            label, error=("too_large", f"a JSON document over {JSON_DOC_BYTES_MAX} bytes: use JSON lines")
        )
        return
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        yield Record(label, error=("invalid_json", str(e) or "nested too deeply"))
        return
    if isinstance(doc, dict) and isinstance(doc.get("statuses"), list):
        doc = doc["statuses"]
    if not isinstance(doc, list):
        doc = [doc]
    for i, obj in enumerate(doc, 1):
        yield from_object(obj, f"{label}[{i}]")


def _csv(stream: BinaryIO, label: str) -> Iterator[Record]:
    lines = (_decode(b) for b in stream)
    reader = csv.reader(lines)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # e.g. a field over csv.field_size_limit(): that row alone is rejected
            yield Record(f"{label}:{reader.line_num}", error=("bad_csv_row", str(e)))
            continue
        if not row:
            continue
        yield from_s140_row(row, f"{label}:{reader.line_num}")


def read_records(
    path: str, limit: int | None = None, on_bytes: Callable[[int], None] | None = None
) -> Iterator[Record]:
    """Every record of a file ('-' = stdin), at most `limit`. `on_bytes(n)` reports raw bytes consumed so far."""
    stream, raw = _open(path)
    label = "stdin" if path == "-" else Path(path).name
    try:
        fmt = detect(path, stream.peek(PEEK_BYTES)[:PEEK_BYTES])
        gen = {"jsonl": _jsonl, "json": _json_doc, "csv": _csv}[fmt](stream, label)
        for count, rec in enumerate(gen, 1):
            if on_bytes is not None and raw is not sys.stdin.buffer:
                on_bytes(raw.tell())
            yield rec
            if limit is not None and count >= limit:
                return
    finally:
        if raw is not sys.stdin.buffer:
            stream.close()
            raw.close()
