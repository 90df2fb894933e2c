"""The input formats of `murmur load`: each format written as a small fixture, read back as API bodies."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from node.cli.readers import Record, detect, from_twitter, read_records, s140_time
from node.model import parse_tweet_in


def _tweets(path: Path, **kw: object) -> list[Record]:
    return list(read_records(str(path), **kw))  # type: ignore[arg-type]


CORPUS_LINES = [
    {
        "id": 1,
        "created_at": "2012-02-02T15:40:00Z",
        "user": "iris0_o",
        "text": "Лавров @youtube",
        "lang": "ru",
        "is_retweet": False,
    },
    {
        "id": 125082707389718529,
        "created_at": "2011-10-15T05:36:56Z",
        "user": None,
        "text": "@Apple cheap",
        "topic": "apple",
        "sentiment": "irrelevant",
    },
    {
        "id": 1467810369,
        "created_at": "2009-04-07T05:19:45Z",
        "user": "_TheSpecialOne_",
        "text": "bummer",
        "polarity": 0,
    },
]


def test_corpus_jsonl_gz_drops_extras_and_defaults_user(tmp_path: Path) -> None:
    p = tmp_path / "corpus.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        for obj in CORPUS_LINES:
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        f.write("\n")  # blank lines are skipped
    recs = _tweets(p)
    assert [r.tweet for r in recs] == [
        {
            "id": 1,
            "created_at": "2012-02-02T15:40:00Z",
            "user": "iris0_o",
            "text": "Лавров @youtube",
            "lang": "ru",
        },
        {
            "id": 125082707389718529,
            "created_at": "2011-10-15T05:36:56Z",
            "user": "unknown",
            "text": "@Apple cheap",
        },
        {"id": 1467810369, "created_at": "2009-04-07T05:19:45Z", "user": "_TheSpecialOne_", "text": "bummer"},
    ]
    assert [r.user_defaulted for r in recs] == [False, True, False]
    assert recs[1].where == "corpus.jsonl.gz:2"
    for r in recs:
        parse_tweet_in(r.tweet)  # the API would accept every one


def test_jsonl_bad_lines_are_local_rejections_and_limit_applies(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"text": "a", "user": "u"}\nnot json\n[1, 2]\n{"text": "b", "user": "v"}\n{"text": "c"}\n')
    recs = _tweets(p)
    assert [r.error[0] if r.error else None for r in recs] == [
        None,
        "invalid_json",
        "not_an_object",
        None,
        None,
    ]
    assert recs[1].where == "x.jsonl:2"
    assert len(_tweets(p, limit=2)) == 2


TWITTER_STATUS = {
    "created_at": "Tue Oct 18 21:53:25 +0000 2011",
    "id": 126415614616154112,
    "id_str": "126415614616154112",
    "text": "Loving #Python &amp; @Bob",
    "user": {"id": 5, "screen_name": "bob", "name": "Bob B."},
    "lang": "en",
    "in_reply_to_status_id": 126415614616154000,
    "in_reply_to_status_id_str": "126415614616154000",
    "favorite_count": 3,
    "retweet_count": 7,
    "geo": None,
    "coordinates": {"type": "Point", "coordinates": [-122.4, 37.7]},
    "entities": {"hashtags": [{"text": "Python"}]},
    "truncated": False,
}


def test_twitter_status_mapping() -> None:
    tweet, defaulted = from_twitter(TWITTER_STATUS)
    assert not defaulted
    assert tweet == {
        "id": "126415614616154112",
        "created_at": "2011-10-18T21:53:25Z",
        "text": "Loving #Python &amp; @Bob",
        "user": "bob",
        "lang": "en",
        "reply_to": "126415614616154000",
        "likes": 3,
        "retweets": 7,
        "geo": {"lat": 37.7, "lon": -122.4},  # GeoJSON [lon, lat] turned around
    }
    t = parse_tweet_in(tweet)
    assert t.id == 126415614616154112 and t.reply_to == 126415614616154000 and t.geo is not None
    assert t.geo.lat == 37.7


def test_twitter_full_text_and_deprecated_geo_win() -> None:
    obj = {**TWITTER_STATUS, "full_text": "the long one", "geo": {"type": "Point", "coordinates": [1.5, 2.5]}}
    tweet, _ = from_twitter(obj)
    assert tweet["text"] == "the long one"
    assert tweet["geo"] == {"lat": 1.5, "lon": 2.5}
    no_user, defaulted = from_twitter({"id_str": "9", "text": "x", "user": None})
    assert defaulted and no_user["user"] == "unknown"


@pytest.mark.parametrize("shape", ["array", "statuses", "pretty", "lines"])
def test_twitter_json_files(tmp_path: Path, shape: str) -> None:
    second = {**TWITTER_STATUS, "id": 2, "id_str": "2", "user": {"screen_name": "alice"}}
    p = tmp_path / ("t.jsonl" if shape == "lines" else "t.json")
    if shape == "array":
        p.write_text(json.dumps([TWITTER_STATUS, second]))
    elif shape == "statuses":
        p.write_text(json.dumps({"statuses": [TWITTER_STATUS, second], "search_metadata": {}}))
    elif shape == "pretty":
        p.write_text(json.dumps({"statuses": [TWITTER_STATUS, second]}, indent=2))
    else:
        p.write_text(json.dumps(TWITTER_STATUS) + "\n" + json.dumps(second) + "\n")
    recs = _tweets(p)
    assert [r.tweet["user"] for r in recs if r.tweet] == ["bob", "alice"]
    assert [r.tweet["id"] for r in recs if r.tweet] == ["126415614616154112", "2"]


def test_sentiment140_csv_utf8_and_latin1(tmp_path: Path) -> None:
    rows = (
        '"0","1467810369","Mon Apr 06 22:19:45 PDT 2009","NO_QUERY","_TheSpecialOne_","@switchfoot http://x - Awww, that\'s a bummer"\n'
        '"4","2193601966","Tue Jun 16 08:40:49 PDT 2009","NO_QUERY","AmandaMarie1028","Just woke up, ""quoted"" café"\n'
    )
    utf = tmp_path / "s140.csv"
    utf.write_bytes(rows.encode("utf-8"))
    latin = tmp_path / "s140_latin.csv.gz"
    with gzip.open(latin, "wb") as f:
        f.write(rows.encode("latin-1"))
    for p in (utf, latin):
        recs = _tweets(p)
        assert [r.tweet for r in recs] == [
            {
                "id": "1467810369",
                "created_at": "2009-04-07T05:19:45Z",
                "user": "_TheSpecialOne_",
                "text": "@switchfoot http://x - Awww, that's a bummer",
            },
            {
                "id": "2193601966",
                "created_at": "2009-06-16T15:40:49Z",
                "user": "AmandaMarie1028",
                "text": 'Just woke up, "quoted" café',
            },
        ], p
        for r in recs:
            parse_tweet_in(r.tweet)


def test_sentiment140_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text('"0","1","Mon Apr 06 22:19:45 XYZ 2009","q","u","t"\n"0","1","only four"\n')
    assert [r.error[0] if r.error else None for r in _tweets(p)] == ["bad_date", "bad_csv_row"]


def test_s140_time_zones() -> None:
    assert s140_time("Mon Apr 06 22:19:45 PDT 2009") == "2009-04-07T05:19:45Z"
    assert s140_time("Mon Jan 05 22:19:45 PST 2009") == "2009-01-06T06:19:45Z"
    assert s140_time("garbage") is None


def test_detect() -> None:
    assert detect("a.csv.gz", b"{") == "csv"
    assert detect("a.gz", b'\n {"id": 1}\n{"id": 2}') == "jsonl"
    assert detect("a.json", b'{\n  "statuses": [') == "json"
    assert detect("data", b'[{"id": 1}]') == "json"
    assert detect("data", b'"0","1467810369","Mon Apr') == "csv"


def test_undecodable_lines_are_rejected_alone(tmp_path: Path) -> None:
    """Issue 12, finding 6: a line nested too deeply, malformed or not UTF-8 is one rejection, not an abort."""
    p = tmp_path / "mixed.jsonl"
    good = json.dumps({"text": "fine", "user": "u"}).encode()
    p.write_bytes(b"\n".join([good, b"[" * 5000 + b"]" * 5000, b"{broken", b'{"text": "\xff", "user": "u"}', good]))
    recs = _tweets(p)
    assert [r.error is None for r in recs] == [True, False, False, False, True]
    assert all(r.error is not None and r.error[0] == "invalid_json" for r in recs[1:4])
    deep_first = tmp_path / "deep.jsonl"
    deep_first.write_bytes(b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}\n" + good + b"\n")
    assert [r.error is None for r in _tweets(deep_first)] == [False, True]


def test_a_huge_csv_field_rejects_its_row_alone(tmp_path: Path) -> None:
    p = tmp_path / "s140.csv"
    row = '"0","1467810369","Mon Apr 06 22:19:45 PDT 2009","NO_QUERY","bob","{text}"\n'
    p.write_text(row.format(text="before") + row.format(text="x" * 200_000) + row.format(text="after"))
    recs = _tweets(p)
    assert [r.error is None for r in recs] == [True, False, True]
    assert recs[1].error is not None and recs[1].error[0] == "bad_csv_row"
    assert recs[2].tweet is not None and recs[2].tweet["text"] == "after"
