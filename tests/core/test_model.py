"""Tweet model helpers: time formatting and parsing, geo forms, and input validation naming the field."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.errors import InvalidField, MissingField, UnknownField
from node.model import format_time, parse_geo, parse_time, parse_tweet_in


@given(st.integers(0, 4_102_444_800_000))
def test_format_time_equals_datetime_and_parses_back(ms):
    d = dt.datetime.fromtimestamp(ms // 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    want = f"{d}.{ms % 1000:03d}Z" if ms % 1000 else f"{d}Z"
    assert format_time(ms) == want
    assert parse_time(want) == ms


def test_time_forms():
    assert parse_time("2011-10-18T21:53:25Z") == parse_time("Tue Oct 18 21:53:25 +0000 2011")
    assert parse_time("2011-10-18T23:53:25+02:00") == parse_time("2011-10-18T21:53:25")
    with pytest.raises(InvalidField):
        parse_time("yesterday")


def test_geo_forms():
    p = parse_geo({"lat": 48.85, "lon": 2.35})
    assert p == parse_geo([48.85, 2.35]) == parse_geo({"type": "Point", "coordinates": [48.85, 2.35]})
    for bad in ([91, 0], {"lat": "x", "lon": 1}, [float("nan"), 0], "here", [1, 2, 3], [True, 1]):
        with pytest.raises(InvalidField):
            parse_geo(bad)


def test_validation_names_the_field():
    with pytest.raises(UnknownField) as e:
        parse_tweet_in({"text": "a", "user": "u", "colour": 1})
    assert e.value.field == "colour"
    with pytest.raises(MissingField) as m:
        parse_tweet_in({"text": "a"})
    assert m.value.field == "user"
    for field, value in [("likes", -1), ("likes", True), ("id", 0), ("id", 2**64), ("reply_to", "x"), ("lang", "e n")]:
        with pytest.raises(InvalidField) as f:
            parse_tweet_in({"text": "a", "user": "u", field: value})
        assert f.value.field == field
    assert parse_tweet_in({"text": "a", "user": "u", "id_str": "123"}).id == 123
