"""Tweets as stored, as accepted and as returned, and the validation of client input.

Pure: no I/O, no clock (callers pass `now_ms`). Every rejection is an InvalidRequest subclass naming the field.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import msgspec

from node.errors import InvalidField, MissingField, UnknownField
from node.text.analyzer import Analysis

TEXT_CHARS_MAX = 280
USER_CHARS_MAX = 64
LANG_CHARS_MAX = 16
ID_MAX = 2**64 - 1
COUNT_MAX = 2**63 - 1  # likes / retweets

EMPTY: tuple[str, ...] = ()


class GeoPoint(msgspec.Struct, frozen=True, gc=False):
    lat: float
    lon: float


class Tweet(msgspec.Struct, frozen=True, gc=False):
    """A tweet as stored. `hashtags`/`mentions` are derived from `text` by the analyser at write time."""

    id: int
    created_at_ms: int
    user: str
    text: str
    hashtags: tuple[str, ...] = EMPTY
    mentions: tuple[str, ...] = EMPTY
    reply_to: int | None = None
    lang: str | None = None
    geo: GeoPoint | None = None
    likes: int = 0
    retweets: int = 0
    edited_at_ms: int | None = None
    version: int = 0  # storage metadata, never returned: the write that produced this state (see node/shard.py)


class TweetOut(msgspec.Struct):
    """A tweet as returned by the API (CONTRACT §2)."""

    id: int
    id_str: str
    created_at: str
    user: str
    text: str
    hashtags: list[str]
    mentions: list[str]
    reply_to: int | None
    lang: str | None
    geo: GeoPoint | None
    likes: int
    retweets: int
    edited_at: str | None


class TweetIn(msgspec.Struct, frozen=True):
    """A validated POST body. None means 'not supplied' (so idempotent retries compare only what was sent)."""

    text: str
    user: str
    id: int | None = None
    created_at_ms: int | None = None
    reply_to: int | None = None
    lang: str | None = None
    geo: GeoPoint | None = None
    likes: int | None = None
    retweets: int | None = None


class TweetPatch(msgspec.Struct, frozen=True):
    text: str | None = None
    likes: int | None = None
    retweets: int | None = None


# ---------------------------------------------------------------- time


_DAY_MS = 86_400_000
_days: dict[int, str] = {}  # day number -> "YYYY-MM-DD" (bounded: cleared when it grows past 100k days)


def format_time(ms: int) -> str:
    """ms since the Unix epoch -> ISO-8601 UTC with 'Z' (milliseconds only when not zero). On the hot path of
    every rendered tweet, hence the cached date part instead of datetime.strftime."""
    day, rest = divmod(ms, _DAY_MS)
    date = _days.get(day)
    if date is None:
        if len(_days) > 100_000:
            _days.clear()
        date = _days[day] = _dt.datetime.fromtimestamp(day * 86_400, tz=_dt.UTC).strftime("%Y-%m-%d")
    secs, frac = divmod(rest, 1000)
    h, rem = divmod(secs, 3600)
    m, sec = divmod(rem, 60)
    return f"{date}T{h:02d}:{m:02d}:{sec:02d}.{frac:03d}Z" if frac else f"{date}T{h:02d}:{m:02d}:{sec:02d}Z"


_TWITTER_FMT = "%a %b %d %H:%M:%S %z %Y"
_UNIX_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def parse_time(value: Any, field: str = "created_at") -> int:
    """ISO-8601 (with `Z` or an offset; a naive time is UTC) or Twitter's `Tue Oct 18 21:53:25 +0000 2011` -> ms."""
    if not isinstance(value, str) or not value or len(value) > 64:
        raise InvalidField(f"{field} must be an ISO-8601 date-time string", field)
    try:
        dt = _dt.datetime.fromisoformat(value)
    except ValueError:
        try:
            dt = _dt.datetime.strptime(value, _TWITTER_FMT)
        except ValueError:
            raise InvalidField(f"{field} is not a valid ISO-8601 date-time: {value!r}", field) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.UTC)
    try:
        delta = dt - _UNIX_EPOCH  # integer arithmetic: dt.timestamp() * 1000 rounds .001 s down to .000
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    except (OverflowError, OSError, ValueError):
        raise InvalidField(f"{field} is out of range", field) from None


# ---------------------------------------------------------------- field checks


def _int(obj: dict[str, Any], field: str, lo: int, hi: int) -> int | None:
    v = obj.get(field)
    if v is None:
        return None
    if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 20:
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidField(f"{field} must be an integer", field)
    if not lo <= v <= hi:
        raise InvalidField(f"{field} must be between {lo} and {hi}", field)
    return v


def _text(obj: dict[str, Any], field: str, lo: int, hi: int, required: bool) -> str | None:
    if field not in obj or obj[field] is None:
        if required:
            raise MissingField(f"{field} is required", field)
        return None
    v = obj[field]
    if not isinstance(v, str):
        raise InvalidField(f"{field} must be a string", field)
    if not lo <= len(v) <= hi:
        raise InvalidField(f"{field} must be {lo} to {hi} characters long (got {len(v)})", field)
    return v


def parse_geo(v: Any, field: str = "geo") -> GeoPoint | None:
    """Accepts {"lat","lon"}, {"latitude","longitude"}, [lat, lon] or Twitter's {"type":"Point","coordinates":[lat,lon]}."""
    if v is None:
        return None
    lat: Any
    lon: Any
    if isinstance(v, dict):
        if "coordinates" in v:
            v = v["coordinates"]
        elif "lat" in v and ("lon" in v or "lng" in v):
            lat, lon = v["lat"], v.get("lon", v.get("lng"))
            v = [lat, lon]
        elif "latitude" in v and "longitude" in v:
            v = [v["latitude"], v["longitude"]]
    if not isinstance(v, list | tuple) or len(v) != 2:
        raise InvalidField(f'{field} must be {{"lat": number, "lon": number}}', field)
    lat, lon = v
    for x in (lat, lon):
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
            raise InvalidField(f"{field} coordinates must be finite numbers", field)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidField(f"{field} must have -90<=lat<=90 and -180<=lon<=180", field)
    return GeoPoint(float(lat), float(lon))


def _lang(obj: dict[str, Any]) -> str | None:
    v = _text(obj, "lang", 1, LANG_CHARS_MAX, False)
    if v is not None and not all(c.isalnum() or c in "-_" for c in v):
        raise InvalidField("lang must be a language code such as 'en' or 'pt-BR'", "lang")
    return v


_TWEET_FIELDS = frozenset(
    {"text", "user", "id", "id_str", "created_at", "reply_to", "lang", "geo", "likes", "retweets"}
)
_PATCH_FIELDS = frozenset({"text", "likes", "retweets"})


def _check_object(obj: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidField("the body must be a JSON object", None)
    for k in obj:
        if k not in allowed:
            raise UnknownField(f"unknown field {k!r}", str(k))
    return obj


def parse_tweet_in(obj: Any) -> TweetIn:
    """Validate a decoded POST /tweets body (or one bulk line)."""
    d = _check_object(obj, _TWEET_FIELDS)
    text = _text(d, "text", 1, TEXT_CHARS_MAX, True)
    user = _text(d, "user", 1, USER_CHARS_MAX, True)
    ident = _int(d, "id", 1, ID_MAX)
    if "id_str" in d and d["id_str"] is not None:
        via_str = _int({"id_str": d["id_str"]}, "id_str", 1, ID_MAX)
        if ident is not None and via_str != ident:
            raise InvalidField("id and id_str disagree", "id_str")
        ident = via_str
    created = d.get("created_at")
    return TweetIn(
        text=text or "",
        user=user or "",
        id=ident,
        created_at_ms=None if created is None else parse_time(created),
        reply_to=_int(d, "reply_to", 1, ID_MAX),
        lang=_lang(d),
        geo=parse_geo(d.get("geo")),
        likes=_int(d, "likes", 0, COUNT_MAX),
        retweets=_int(d, "retweets", 0, COUNT_MAX),
    )


def parse_patch(obj: Any) -> TweetPatch:
    d = _check_object(obj, _PATCH_FIELDS)
    p = TweetPatch(
        text=_text(d, "text", 1, TEXT_CHARS_MAX, False),
        likes=_int(d, "likes", 0, COUNT_MAX),
        retweets=_int(d, "retweets", 0, COUNT_MAX),
    )
    if p.text is None and p.likes is None and p.retweets is None:
        raise MissingField("a patch must set at least one of text, likes, retweets", None)
    return p


def parse_id(raw: str, field: str = "id") -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20:
        raise InvalidField(f"{field} must be a positive integer", field)
    v = int(raw)
    if not 1 <= v <= ID_MAX:
        raise InvalidField(f"{field} must be between 1 and {ID_MAX}", field)
    return v


# ---------------------------------------------------------------- building and rendering


def same_content(stored: Tweet, incoming: TweetIn) -> bool:
    """An idempotent retry: every field the client sent equals what is stored."""
    if stored.text != incoming.text or stored.user != incoming.user:
        return False
    checks: list[tuple[Any, Any]] = [
        (incoming.created_at_ms, stored.created_at_ms),
        (incoming.reply_to, stored.reply_to),
        (incoming.lang, stored.lang),
        (incoming.geo, stored.geo),
        (incoming.likes, stored.likes),
        (incoming.retweets, stored.retweets),
    ]
    return all(sent is None or sent == have for sent, have in checks)


def build_tweet(t: TweetIn, tweet_id: int, created_at_ms: int, a: Analysis, version: int = 0) -> Tweet:
    """The stored tweet for an accepted create: `a` is the analysis of t.text (its hashtags and mentions)."""
    return Tweet(
        id=tweet_id,
        created_at_ms=created_at_ms,
        user=t.user,
        text=t.text,
        hashtags=a.hashtags,
        mentions=a.mentions,
        reply_to=t.reply_to,
        lang=t.lang,
        geo=t.geo,
        likes=t.likes or 0,
        retweets=t.retweets or 0,
        version=version,
    )


def render(t: Tweet) -> TweetOut:
    return TweetOut(
        id=t.id,
        id_str=str(t.id),
        created_at=format_time(t.created_at_ms),
        user=t.user,
        text=t.text,
        hashtags=list(t.hashtags),
        mentions=list(t.mentions),
        reply_to=t.reply_to,
        lang=t.lang,
        geo=t.geo,
        likes=t.likes,
        retweets=t.retweets,
        edited_at=None if t.edited_at_ms is None else format_time(t.edited_at_ms),
    )
