"""
The one-pass frame reader (L{aisoc_inboxd.formats.syslog_cef.read_frame}) against the reference
(L{aisoc_inboxd.formats.syslog_records.frame_record}): for every syslog and CEF fixture line, every
frame or CEF line the suite writes, each wrapped in RFC 5424 headers, and hypothesis-generated frames,
both give the same record (the same keys in the same order, the same C{raw_data}) or the same error.
"""
from __future__ import annotations

import ast
import json
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisoc_inboxd.formats.syslog_cef import read_frame
from aisoc_inboxd.formats.syslog_records import frame_record
from tests.support.shared import FIXTURES

NOW = 1778230800.0
TESTS = Path(__file__).parent
ZONES = (UTC, ZoneInfo("America/New_York"))
#: RFC 5424 headers put before a CEF line that has none, so the fast path reads the corpus too
HEADERS = (
    "<134>1 2026-05-08T09:00:00.000Z fw-edge-01 CEF - - - ",
    "<13>1 - - - - - - \ufeff",
    '<165>1 2003-10-11T22:14:15.003-07:00 h app 77 ID47 [a@1 k="v\\"q\\\\" k="w"][b x="\\]"] ',
)


def outcome(frame: bytes, read: Any, zone: Any = UTC) -> tuple[Any, ...]:
    """
    What reading C{frame} gives, comparable in full: the record as ordered JSON, or the error.
    """
    try:
        parsed = read(frame, NOW, zone)
    except Exception as error:  # noqa: BLE001 - any error must be the reference's too
        return (type(error).__name__, str(error))
    return (parsed.is_cef, json.dumps(parsed.record.data), parsed.record.raw)


def assert_same(frame: bytes) -> None:
    for zone in ZONES:
        assert outcome(frame, read_frame, zone) == outcome(frame, frame_record, zone), frame


def _fixture_lines() -> list[bytes]:
    lines = []
    for directory in (FIXTURES / "syslog", FIXTURES / "cef"):
        for path in sorted(directory.glob("*.txt")):
            lines.extend(line for line in path.read_bytes().split(b"\n") if line.strip())
    return lines


def _suite_strings() -> list[bytes]:
    """
    Every string or bytes constant in the test modules that looks like a syslog frame or CEF line.
    """
    found: set[bytes] = set()
    for module in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text("utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
                value = node.value.encode() if isinstance(node.value, str) else node.value
                if b"CEF:" in value or value.startswith(b"<"):
                    found.update(line for line in value.split(b"\n") if line.strip())
    return sorted(found)


CORPUS = _fixture_lines() + _suite_strings()


def _framed(line: bytes) -> list[bytes]:
    start = line.find(b"CEF:")
    return [line] + ([header.encode() + line[start:] for header in HEADERS] if start >= 0 else [])


@pytest.mark.parametrize("line", CORPUS, ids=range(len(CORPUS)))
def test_corpus(line: bytes) -> None:
    for frame in _framed(line):
        assert_same(frame)


def test_corpus_takes_the_fast_path() -> None:
    """
    The corpus exercises the one-pass reader itself, not only its fallback to the reference.
    """
    from aisoc_inboxd.formats.syslog_cef import _FRAME

    fast = [f for line in CORPUS for f in _framed(line) if _FRAME.match(f.decode("utf-8", "replace"))]
    assert len(fast) > 100


def test_offset_of_a_day_or_more_is_no_stamp() -> None:
    """
    An RFC 3339 offset of 24 hours or more is an unreadable stamp (no C{time}), not a crash of the
    listener's decoding (found by the generated frames below; both paths share the stamp reader).
    """
    frame = b"<134>1 2026-05-08T09:00:00-30:00 h - - - - CEF:0|Acme|Edge|1.0|100|Logon|5|src=10.0.0.1"
    parsed = frame_record(frame, NOW)
    assert "time" not in parsed.record.data
    assert parsed.record.data["syslog"]["timestamp"] == "2026-05-08T09:00:00-30:00"
    assert_same(frame)


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_TOKEN = st.one_of(st.just("-"), st.from_regex(r"[!-~]{1,50}", fullmatch=True), _TEXT)
_STAMP = st.one_of(
    st.just("-"), st.just("2026-05-08T09:00:00.123456789Z"), st.just("2026-02-30T09:00:00+02:00"),
    st.just("2026-05-08T09:00:60Z"), st.just("2026-05-08t23:59:59-23:59"), st.just("May  8 09:00:00"),
    st.from_regex(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)", fullmatch=True), _TEXT,
)
_SD_NAME = st.one_of(st.from_regex(r'[^ =\]"]{1,34}', fullmatch=True), st.sampled_from(["origin", "ip", "a@1"]))
_SD_VALUE = st.lists(st.one_of(st.sampled_from(['\\"', "\\\\", "\\]", "\\", "]", "=", " ", "\u00e9", "x"]), _TEXT),
                     max_size=5).map("".join)
_SD_PARAM = st.tuples(_SD_NAME, _SD_VALUE).map(lambda p: f' {p[0]}="{p[1]}"')
_SD_ELEMENT = st.tuples(_SD_NAME, st.lists(st.one_of(_SD_PARAM, st.just(' ip="1"')), max_size=4)).map(
    lambda e: f"[{e[0]}{''.join(e[1])}]")
_SD = st.one_of(st.just("-"), st.lists(_SD_ELEMENT, min_size=1, max_size=3).map("".join), _TEXT)
_FIELD = st.lists(st.one_of(st.sampled_from(["\\|", "\\\\", "\\", "|", "=", " ", "\u00fc", "Acme"]), _TEXT),
                  max_size=4).map("".join)
_EXT_VALUE = st.lists(st.one_of(st.sampled_from(["\\=", "\\\\", "\\n", "\\r", "\\|", "\\", "=", "|", " ", "\u2028"]),
                                _TEXT), max_size=4).map("".join)
_EXT_KEY = st.one_of(st.sampled_from(["rt", "end", "start", "src", "dst", "spt", "dpt", "suser", "duser", "fname",
                                      "filePath", "fileHash", "cat", "cs1", "cs1Label", "request", "act", "msg"]),
                     st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.,\[\]-]{0,8}", fullmatch=True))
_EXT_TIME = st.sampled_from(["1778230800000", "1778230800", "May 08 2026 09:00:00", "May  8 09:00:00.123 UTC",
                             "2026-05-08T09:00:00Z", "Feb 29 09:00:00", "garbage"])
_EXTENSION = st.one_of(
    st.lists(st.tuples(_EXT_KEY, st.one_of(_EXT_VALUE, _EXT_TIME)), max_size=6).map(
        lambda pairs: " ".join(f"{k}={v}" for k, v in pairs)),
    _TEXT,
)
_CEF = st.one_of(
    st.tuples(st.sampled_from(["0", "1", "2", "x", "01", "\u0661"]), st.lists(_FIELD, min_size=4, max_size=8),
              st.booleans(), _EXTENSION).map(
        lambda c: f"CEF:{c[0]}|" + "|".join(c[1]) + ("|" + c[3] if c[2] else "")),
    st.tuples(st.sampled_from(["Logon", "DNS query", "HTTP request", "File deleted", "Trojan.Gen detected",
                               "API audit", "port scan attack", ""]),
              st.sampled_from(["Acme|Edge", "Trend Micro|Deep Security", "|"]), _EXTENSION).map(
        lambda c: f"CEF:0|{c[1]}|1.0|{'4000010' if 'Deep' in c[1] else '100'}|{c[0]}|5|{c[2]}"),
)
_FRAME = st.one_of(
    st.tuples(st.sampled_from(["<134>", "<0>", "<191>", "<192>", "<999>", "<13", "", "<\u0661\u0663>"]),
              st.sampled_from(["1 ", "2 ", "1", "", "1  "]), _STAMP, _TOKEN, _TOKEN, _TOKEN, _TOKEN, _SD,
              st.sampled_from([" ", " \ufeff", " \ufeff\ufeff", "", " x "]), _CEF,
              st.sampled_from(["", "\n", "\r\n", "\x00", " "])).map(
        lambda f: f"{f[0]}{f[1]}{f[2]} {f[3]} {f[4]} {f[5]} {f[6]} {f[7]}{f[8]}{f[9]}{f[10]}".encode()),
    st.binary(max_size=80),
    _TEXT.map(str.encode),
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_FRAME)
def test_generated_frames(frame: bytes) -> None:
    assert_same(frame)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_STAMP, _SD, _CEF)
def test_generated_well_formed_headers(stamp: str, sd: str, cef: str) -> None:
    """
    Frames whose syslog header is valid, so that the fast path's own reading is what is compared.
    """
    assert_same(f"<134>1 {stamp} host app 42 ID7 {sd} {cef}".encode())
