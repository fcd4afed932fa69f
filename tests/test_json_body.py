"""
Decoding webhook bodies (JSON object, array, NDJSON) and bounded gzip.
"""
from __future__ import annotations

import gzip

import pytest

from aisoc_inboxd.formats.json_body import BodyError, decode_json_records
from aisoc_inboxd.web.body import gunzip
from aisoc_inboxd.web.errors import HttpError


def test_single_object_keeps_its_text() -> None:
    """One JSON object is one record, and its raw text is kept for raw_data."""
    body = b'{"a": 1,\n "b": {"c": "x"}}\n'
    [record] = decode_json_records(body)
    assert record.data == {"a": 1, "b": {"c": "x"}}
    assert record.raw == '{"a": 1,\n "b": {"c": "x"}}'


def test_ndjson_batch_skips_blank_lines_and_crlf() -> None:
    """NDJSON lines become records in order; blank lines and CRLF are tolerated."""
    records = decode_json_records(b'{"n": 1}\r\n\r\n{"n": 2}\n{"n": 3}')
    assert [r.data["n"] for r in records] == [1, 2, 3]
    assert records[1].raw == '{"n": 2}'


def test_array_of_objects_is_a_batch() -> None:
    """A top-level array of objects is accepted as a batch (lenient)."""
    assert [r.data for r in decode_json_records(b'[{"a":1},{"b":2}]')] == [{"a": 1}, {"b": 2}]


def test_utf8_bom_is_ignored() -> None:
    """A UTF-8 byte-order mark before the JSON is not an error."""
    assert decode_json_records('\ufeff{"a": "é"}'.encode("utf-8"))[0].data == {"a": "é"}


@pytest.mark.parametrize("body, message", [
    (b"", "empty body"),
    (b"  \n ", "empty body"),
    (b'{"a": 1}\n{"b": }\n', "^invalid JSON at line 2 column 7: Expecting value$"),
    (b'{"a": 1}\n  {"b": }\n', "^invalid JSON at line 2 column 9: Expecting value$"),
    (b'{"a": 1}\n[1]\n', "line 2: expected a JSON object, got an array"),
    (b'{\n "a": 1,\n "b": \n}', "invalid JSON at line 4 column 1"),
    (b'"just a string"', "got a string"),
    (b"[1, 2]", "array item 0: expected a JSON object, got a number"),
    (b"[]", "empty JSON array"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (b"<xml/>", "invalid JSON at line 1 column 1"),
])
def test_bad_bodies_say_where(body: bytes, message: str) -> None:
    """A body that is not JSON records is refused with the line and reason."""
    with pytest.raises(BodyError, match=message):
        decode_json_records(body)


def test_gunzip_round_trip_and_concatenated_members() -> None:
    """gzip bodies decode, including several concatenated members."""
    assert gunzip(gzip.compress(b"one\n") + gzip.compress(b"two\n"), 100) == b"one\ntwo\n"


def test_gunzip_refuses_a_bomb_without_inflating_it() -> None:
    """A small body that inflates past the limit is 413, decided after at most limit+1 bytes."""
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    assert len(bomb) < 100_000
    with pytest.raises(HttpError) as error:
        gunzip(bomb, 1024 * 1024)
    assert error.value.status == 413


@pytest.mark.parametrize("data", [b"not gzip at all", gzip.compress(b"x" * 1000)[:-12]])
def test_gunzip_malformed_is_400(data: bytes) -> None:
    """Garbage or a truncated stream is a 400 naming gzip."""
    with pytest.raises(HttpError) as error:
        gunzip(data, 10_000)
    assert error.value.status == 400
    assert "malformed gzip" in error.value.message
