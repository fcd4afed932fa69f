"""
Syslog header parsing (L{aisoc_inboxd.formats.syslog}): RFC 5424/3164 examples, relay and vendor
prefixes from the corpus, the documented decisions, and junk that must never raise.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aisoc_inboxd.formats.cef import parse_cef_line
from aisoc_inboxd.syslog.framing import FrameDecoder
from aisoc_inboxd.formats.syslog import SyslogMessage, parse_syslog
from tests.support.shared import CORPUS, FIXTURES, require_shared

SYSLOG_FIXTURES = FIXTURES / "syslog"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


NOW_2017 = _epoch("2017-06-01T00:00:00+00:00")


def _lines(name: str) -> list[bytes]:
    return (SYSLOG_FIXTURES / name).read_bytes().split(b"\n")


def _cases(name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((SYSLOG_FIXTURES / name).read_text("utf-8"))["cases"]
    return cases


# --- RFC examples --------------------------------------------------------------------------------

RFC5424 = _cases("rfc5424-examples.expected.json")


@pytest.mark.parametrize("case", RFC5424, ids=[f"example{c['line']}" for c in RFC5424])
def test_rfc5424_examples(case: dict[str, Any]) -> None:
    """Each RFC 5424 example gives the RFC's header fields, SD and MSG (BOM dropped; absent SD/MSG empty)."""
    parsed = parse_syslog(_lines("rfc5424-examples.txt")[case["line"] - 1], NOW_2017)
    assert parsed.format == "rfc5424"
    assert (parsed.facility * 8 + parsed.severity, parsed.facility, parsed.severity) == (
        case["pri"], case["facility"], case["severity"]
    )
    assert parsed.timestamp_text == case["timestamp"]
    assert parsed.timestamp == _millis(case.get("timestamp_utc", case["timestamp"]))
    assert (parsed.hostname, parsed.app_name, parsed.procid, parsed.msgid) == (
        case["hostname"], case["app_name"], case["procid"], case["msgid"]
    )
    assert parsed.structured_data == (case["structured_data"] or {})
    assert parsed.message == (case["msg"] or "")


RFC3164 = _cases("rfc3164-examples.expected.json")


@pytest.mark.parametrize("case", RFC3164, ids=[f"line{c['line']}" for c in RFC3164])
def test_rfc3164_examples_certain_facts(case: dict[str, Any]) -> None:
    """Each RFC 3164 example gives the facts the corpus calls certain (PRI, stamp text, host, tag, content)."""
    parsed = parse_syslog(_lines("rfc3164-examples.txt")[case["line"] - 1], NOW_2017)
    assert parsed.format == "rfc3164"
    assert (parsed.facility, parsed.severity) == (case["facility"], case["severity"])
    assert parsed.timestamp_text == case.get("timestamp_text")
    for key, attribute in (("hostname", "hostname"), ("tag", "app_name"), ("content", "message")):
        if key in case:
            assert getattr(parsed, attribute) == case[key]


def test_rfc3164_yearless_stamps_take_the_nearest_year() -> None:
    """RFC 3164 example 1 is October 2017 when read in June 2017 and also when read in January 2018."""
    line = _lines("rfc3164-examples.txt")[0]
    assert parse_syslog(line, NOW_2017).timestamp == _millis("2017-10-11T22:14:15+00:00")
    assert parse_syslog(line, _epoch("2018-01-05T00:00:00+00:00")).timestamp == _millis("2017-10-11T22:14:15+00:00")


def test_rfc3164_example3_is_read_strictly() -> None:
    """The ambiguous example 3 takes C{CST} as the hostname (RFC 3164 4.1.2) and keeps the rest as message."""
    parsed = parse_syslog(_lines("rfc3164-examples.txt")[2], NOW_2017)
    assert parsed.hostname == "CST"
    assert parsed.app_name is None
    assert parsed.message.startswith("1987 mymachine myproc[10]: %% It's time")


def test_rfc3164_example4_without_a_stamp_is_all_content() -> None:
    """Example 4 has a PRI but no RFC 3164 stamp, so everything after the PRI is the message."""
    parsed = parse_syslog(_lines("rfc3164-examples.txt")[3], NOW_2017)
    assert (parsed.timestamp, parsed.hostname) == (None, None)
    assert parsed.message == "1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All Folks!"


NONSTANDARD = _cases("nonstandard-rfc3339-no-version.expected.json")


@pytest.mark.parametrize("case", NONSTANDARD, ids=[f"line{c['line']}" for c in NONSTANDARD])
def test_rfc3339_frames_without_version(case: dict[str, Any]) -> None:
    """Flume's non-standard frames (RFC 3339 stamp, no version) are read as BSD-style frames."""
    parsed = parse_syslog(_lines("nonstandard-rfc3339-no-version.txt")[case["line"] - 1], NOW_2017)
    expected = case["expected"]
    assert parsed.format == "rfc3164"
    assert (parsed.facility, parsed.severity) == (expected["facility"], expected["severity"])
    assert parsed.timestamp_text == expected["timestamp"]
    assert parsed.timestamp == _millis(expected.get("timestamp_utc", expected["timestamp"]).replace("Z", "+00:00"))
    assert (parsed.hostname, parsed.message) == (expected["hostname"], expected["content"])


# --- relay prefixes before CEF -------------------------------------------------------------------

PREFIXES = _cases("cef-with-syslog-prefixes.expected.json")


@pytest.mark.parametrize("case", PREFIXES, ids=[c["source_file"] for c in PREFIXES])
def test_cef_relay_prefixes(case: dict[str, Any]) -> None:
    """Each of cef-parser's prefix styles gives its timestamp and host, and the message is the bare CEF record."""
    parsed = parse_syslog(_lines("cef-with-syslog-prefixes.txt")[case["line"] - 1], NOW_2017)
    expected = case["expected"]
    assert (parsed.timestamp, parsed.hostname) == (expected["timestamp"], expected["host"])
    assert parsed.facility is None and parsed.format == "rfc3164"
    event = parse_cef_line(parsed.message)
    assert event.prefix == ""
    assert (event.device_vendor, event.name, event.severity_raw, event.extensions) == (
        expected["deviceVendor"], expected["name"], expected["severity"], expected["extensions"]
    )


def test_pycef_bsd_prefix_without_pri() -> None:
    """A PRI-less BSD prefix gives the stamp (nearest year) and host, leaving the CEF record as message."""
    parsed = parse_syslog(_lines("pycef-cef-after-bsd-prefix.txt")[0], _epoch("2017-12-01T00:00:00+00:00"))
    assert (parsed.timestamp, parsed.hostname) == (_millis("2017-11-16T21:24:18+00:00"), "arcsightfwd.davidbianco.io")
    assert parsed.message.startswith("CEF:0|pycef|")


def test_sc4s_vendor_frames() -> None:
    """The SC4S vendor frames yield their hosts and tags, and every message is a bare CEF record."""
    frames = [parse_syslog(line, NOW_2017) for line in _lines("sc4s-vendor-cef-frames.txt") if line]
    assert len(frames) == 20
    assert all(parse_cef_line(f.message).prefix == "" for f in frames)
    citrix, cyberark, vault = frames[:3]
    assert (citrix.format, citrix.facility, citrix.severity, citrix.timestamp) == ("rfc3164", 16, 6, None)
    assert (cyberark.format, cyberark.hostname, cyberark.app_name) == ("rfc5424", "REDACTEDHOSTNAME", None)
    assert cyberark.timestamp == _millis("2020-01-24T22:53:03+00:00")
    assert vault.hostname == "VAULT"
    fireeye = frames[4]
    assert (fireeye.hostname, fireeye.timestamp) == (None, _millis("2021-03-03T20:14:22.226+00:00"))
    named = next(f for f in frames if f.app_name == "named")
    assert (named.hostname, named.procid, named.facility, named.severity) == ("10.1.1.2", "23276", 3, 6)
    tim = next(f for f in frames if f.hostname == "xxyy1234/xxyy1234")
    assert tim.timestamp_text == "Jul 6 00:00:02"


def test_fortiweb_tag_with_pid_and_no_colon() -> None:
    """FortiWeb's C{syslogng[9] CEF:...} gives app C{syslogng}, pid C{9} and the CEF record as message."""
    parsed = parse_syslog(_lines("fortiweb-cloud-cef-bsd-prefix.txt")[0], NOW_2017)
    assert (parsed.hostname, parsed.app_name, parsed.procid) == ("syslog.fortiweb-cloud.com", "syslogng", "9")
    assert parsed.message.startswith("CEF:0||||N/A|URL Access Violation|")


def test_cef_in_rfc5424_octet_counted_end_to_end() -> None:
    """Framing, syslog header and CEF parsing together reproduce every fact of the shared stream's expectations."""
    path = require_shared(CORPUS / "syslog" / "cef-in-rfc5424-octet-counted.txt")
    cases = json.loads(path.with_suffix(".expected.json").read_text("utf-8"))["cases"]
    decoder = FrameDecoder()
    frames = decoder.feed(path.read_bytes()) + decoder.end()
    assert len(frames) == len(cases)
    for frame, case in zip(frames, cases):
        parsed = parse_syslog(frame, NOW_2017)
        syslog = case["syslog"]
        assert (parsed.format, parsed.facility, parsed.severity) == ("rfc5424", syslog["facility"], syslog["severity"])
        assert parsed.timestamp_text == syslog["timestamp"]
        assert parsed.timestamp == _millis(syslog["timestamp"].replace("Z", "+00:00"))
        assert (parsed.hostname, parsed.app_name, parsed.procid, parsed.msgid) == (
            syslog["hostname"], syslog["app_name"], syslog["procid"], syslog["msgid"]
        )
        assert parsed.structured_data == (syslog["structured_data"] or {})
        event = parse_cef_line(parsed.message)
        assert {
            "version": event.version, "device_vendor": event.device_vendor,
            "device_product": event.device_product, "device_version": event.device_version,
            "device_event_class_id": event.device_event_class_id, "name": event.name,
            "severity": event.severity_raw,
        } == case["cef_header"]
        assert event.extensions == case["cef_extensions"]


# --- decisions -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("stamp", "now", "expected"),
    [
        ("Dec 31 23:59:00", "2018-01-01T00:01:00+00:00", "2017-12-31T23:59:00+00:00"),
        ("Jan  1 00:01:00", "2017-12-31T23:59:00+00:00", "2018-01-01T00:01:00+00:00"),
        ("Jun 15 12:00:00", "2018-03-01T00:00:00+00:00", "2018-06-15T12:00:00+00:00"),
        ("Sep 15 12:00:00", "2018-03-01T00:00:00+00:00", "2017-09-15T12:00:00+00:00"),
        ("Feb 29 12:00:00", "2025-01-10T00:00:00+00:00", "2024-02-29T12:00:00+00:00"),
    ],
)
def test_year_closest_to_now(stamp: str, now: str, expected: str) -> None:
    """A yearless stamp takes the year that puts it closest to C{now}, skipping impossible dates."""
    parsed = parse_syslog(f"<13>{stamp} host app: hi", _epoch(now))
    assert parsed.timestamp == _millis(expected)


def test_local_zone_applies_unless_the_stamp_says_utc() -> None:
    """Zone-less stamps are read in C{local_tz}; an explicit C{UTC} after the time overrides it."""
    plus_two = timezone(timedelta(hours=2))
    local = parse_syslog("<13>Jun  1 12:00:00 host app: hi", NOW_2017, local_tz=plus_two)
    utc = parse_syslog("May 02 15:27:43 UTC host CEF:0|a", NOW_2017, local_tz=plus_two)
    assert local.timestamp == _millis("2017-06-01T10:00:00+00:00")
    assert utc.timestamp == _millis("2017-05-02T15:27:43+00:00")


def test_structured_data_escapes() -> None:
    """SD-PARAM values unescape C{\\"} C{\\\\} C{\\]} and keep any other backslash."""
    parsed = parse_syslog(r'<13>1 - h a p m [id@1 a="x\"y\\z\]w" b="c:\q]"][two k=""] msg', NOW_2017)
    assert parsed.structured_data == {"id@1": {"a": 'x"y\\z]w', "b": "c:\\q]"}, "two": {"k": ""}}
    assert parsed.message == "msg"


def test_repeated_sd_params_keep_every_value_in_order() -> None:
    """RFC 5424 6.3.3 lets a PARAM-NAME repeat in one element: every value is kept, as a list in the order
    sent; a name given once stays a string, and the same SD-ID twice adds to one element."""
    parsed = parse_syslog('<13>1 - h a - - [origin ip="192.0.2.1" ip="192.0.2.129" software="x"]'
                          '[meta n="1" n="2" n="3"][origin ip="192.0.2.7"] msg', NOW_2017)
    assert parsed.structured_data == {
        "origin": {"ip": ["192.0.2.1", "192.0.2.129", "192.0.2.7"], "software": "x"},
        "meta": {"n": ["1", "2", "3"]}}
    assert parsed.message == "msg"


@pytest.mark.parametrize(
    "after_host",
    ["a p m [unclosed x=\"1\" rest", "a p m -garbage", "a p m [id x=unquoted]", "only-two tokens"],
)
def test_broken_rfc5424_remainder_becomes_the_message(after_host: str) -> None:
    """When APP-NAME PROCID MSGID SD cannot be read, everything after HOSTNAME is the message."""
    parsed = parse_syslog(f"<13>1 2020-01-24T22:53:03Z host {after_host}", NOW_2017)
    assert (parsed.format, parsed.hostname, parsed.app_name, parsed.structured_data) == ("rfc5424", "host", None, {})
    assert parsed.message == after_host


def test_invalid_rfc5424_date_keeps_the_text() -> None:
    """A leap second (or any impossible date) leaves the timestamp None but the header readable."""
    parsed = parse_syslog("<13>1 2016-12-31T23:59:60Z host app - - - hi", NOW_2017)
    assert (parsed.timestamp, parsed.timestamp_text, parsed.app_name, parsed.message) == (
        None, "2016-12-31T23:59:60Z", "app", "hi"
    )


def test_rfc5424_nil_timestamp_and_trailing_newline() -> None:
    """A NILVALUE stamp gives no timestamp, and a trailing CRLF is not part of the message."""
    parsed = parse_syslog(b"<14>1 - - - - - - text\r\n", NOW_2017)
    assert (parsed.timestamp, parsed.timestamp_text, parsed.hostname, parsed.message) == (None, None, None, "text")


@pytest.mark.parametrize(
    ("frame", "facility", "format", "message"),
    [
        (b"<192>Oct 11 22:14:15 host su: x", None, "unknown", "<192>Oct 11 22:14:15 host su: x"),
        (b"just some text", None, "unknown", "just some text"),
        (b"<999>junk", None, "unknown", "<999>junk"),
        (b"<13>", 1, "rfc3164", ""),
        (b"<13>  spaced", 1, "rfc3164", "spaced"),
        (b"", None, "unknown", ""),
    ],
)
def test_pri_range_and_junk(frame: bytes, facility: int | None, format: str, message: str) -> None:
    """A PRI above 191 is no PRI; a frame with neither PRI nor stamp is kept whole as an unknown message."""
    parsed = parse_syslog(frame, NOW_2017)
    assert (parsed.facility, parsed.format, parsed.message) == (facility, format, message)


def test_invalid_utf8_is_replaced() -> None:
    """Invalid UTF-8 in a frame becomes U+FFFD instead of failing."""
    parsed = parse_syslog(b"<13>Oct 11 22:14:15 host app: caf\xe9", NOW_2017)
    assert parsed.message == "caf\ufffd"


# --- properties ----------------------------------------------------------------------------------

JUNK = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.tuples(st.sampled_from(["<13>1 ", "<13>", "<134>Oct 11 22:14:15 ", "2021-03-03T20:14:22Z ", "<1>1 - - "]),
              st.text(alphabet='[]"\\= -abc@:|\n\ufeff', max_size=60)).map(lambda t: (t[0] + t[1]).encode()),
)


@given(frame=JUNK)
def test_junk_never_raises(frame: bytes) -> None:
    """Any bytes give a SyslogMessage; a frame of unknown format keeps its whole text as the message."""
    parsed = parse_syslog(frame, NOW_2017)
    assert isinstance(parsed, SyslogMessage)
    if parsed.format == "unknown":
        assert parsed.message == frame.decode("utf-8", "replace").rstrip("\r\n")
