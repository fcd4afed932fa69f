"""
The Splunk HEC body parsers (envelopes, raw lines, CEF lines), without a reactor: tables over the
corpus and over each rejection Splunk documents.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aisoc_inboxd.formats import hec
from aisoc_inboxd.formats.hec import HecError, HecStatus, parse_event_body, parse_raw_body

FIXTURES = Path(__file__).parent / "fixtures" / "hec"
#: a receive time (epoch seconds) for CEF stamps without a year
NOW = 1_767_225_600.0


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def expected(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())["expect"]


# -- event endpoint -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["aisoc-spec-example", "authored-envelopes-ndjson", "fluentbit-batch-concatenated"])
def test_corpus_bodies_give_one_record_per_envelope(name: str) -> None:
    """Each corpus body yields as many records as its expectation lists, each holding the envelope's event."""
    batch = parse_event_body(fixture(f"{name}.txt"))
    facts = expected(f"{name}.expected.json")
    assert batch.rejection is None
    assert len(batch.records) == facts["event_count"]
    for record, fact in zip(batch.records, facts["events"]):
        if "event" in fact:
            assert record.data["event"] == fact["event"]
        for key in ("host", "sourcetype", "index", "fields"):
            if key in fact:
                assert record.data[key] == fact[key]


def test_concatenated_envelopes_keep_their_exact_text_as_raw() -> None:
    """Envelopes concatenated without separators each keep their own bytes as the record's raw text."""
    batch = parse_event_body(fixture("fluentbit-batch-concatenated.txt"))
    assert [r.raw for r in batch.records] == [
        '{"event": "Pony 1 has left the barn"}', '{"event": "Pony 2 has left the barn"}',
        '{"event": "Pony 3 has left the barn", "nested": {"key1": "value1"}}']


def test_top_level_array_is_read_as_envelopes() -> None:
    """A JSON array of envelopes (a leniency; Splunk wants them concatenated) gives one record each."""
    batch = parse_event_body(b' [{"event": "a"}, {"event": {"b": 1}, "time": 1.5}]\n{"event": 3}')
    assert [r.data["event"] for r in batch.records] == ["a", {"b": 1}, 3]
    assert batch.records[1].raw == '{"event": {"b": 1}, "time": 1.5}'


@pytest.mark.parametrize("body, status, number, accepted", [
    (b"", hec.NO_DATA, None, 0),
    (b" \r\n\t", hec.NO_DATA, None, 0),
    (b"[]", hec.NO_DATA, None, 0),
    (b'{"event": "a"} {"event": ', hec.INVALID_DATA_FORMAT, 1, 1),
    (b"not json", hec.INVALID_DATA_FORMAT, 0, 0),
    (b'"just a string"', hec.INVALID_DATA_FORMAT, 0, 0),
    (b'{"event": "a"}{"time": 1}', hec.EVENT_FIELD_REQUIRED, 1, 1),
    (b'{"event": ""}', hec.EVENT_FIELD_BLANK, 0, 0),
    (b'{"event": {}}', hec.EVENT_FIELD_BLANK, 0, 0),
    (b'{"event": null}', hec.EVENT_FIELD_BLANK, 0, 0),
    (b'{"event": [1]}', hec.INVALID_DATA_FORMAT, 0, 0),
    (b'{"event": true}', hec.INVALID_DATA_FORMAT, 0, 0),
    (b'{"event": "a", "time": "yesterday"}', hec.INVALID_DATA_FORMAT, 0, 0),
    (b'{"event": "a", "time": -1}', hec.INVALID_DATA_FORMAT, 0, 0),
    (b'{"event": "a", "time": 1' + b"0" * 400 + b'}', hec.INVALID_DATA_FORMAT, 0, 0),  # past a float
    (b'{"event": "a"}{"event": "b", "time": -1' + b"0" * 400 + b'}', hec.INVALID_DATA_FORMAT, 1, 1),
    (b'{"event": "a", "time": "1' + b"0" * 400 + b'"}', hec.INVALID_DATA_FORMAT, 0, 0),
    (b'{"event": "a", "fields": [1]}', hec.INVALID_DATA_FORMAT, 0, 0),
    (b'{"event": "a"}{"event": "b"}[{"event": "c"}, 7]', hec.INVALID_DATA_FORMAT, 3, 3),
])
def test_rejections_name_splunks_code_and_the_first_bad_event(body: bytes, status: HecStatus, number: int | None,
                                                              accepted: int) -> None:
    """Each bad body gets Splunk's status for it, the 0-based number of the first bad envelope, and keeps the good ones before it."""
    try:
        batch = parse_event_body(body)
    except HecError as e:
        error, records = e, ()
    else:
        assert batch.rejection is not None
        error, records = batch.rejection, batch.records
    assert (error.status, error.event_number, len(records)) == (status, number, accepted)


@pytest.mark.parametrize("time", [1426279439, 1433188255.5, "1433188255.500", "0"])
def test_time_may_be_epoch_seconds_as_number_or_numeric_string(time: Any) -> None:
    """Epoch seconds are accepted as integers, fractions and numeric strings, and kept as sent."""
    [record] = parse_event_body(json.dumps({"event": "x", "time": time}).encode()).records
    assert record.data["time"] == time


@pytest.mark.parametrize("status, extra, body", [
    (hec.SUCCESS, {}, '{"text":"Success","code":0}'),
    (hec.SUCCESS, {"ackId": 7}, '{"text":"Success","code":0,"ackId":7}'),
    (hec.INVALID_DATA_FORMAT, {"invalid-event-number": 2}, '{"text":"Invalid data format","code":6,"invalid-event-number":2}'),
    (hec.HEALTHY, {}, '{"text":"HEC is healthy","code":17}'),
])
def test_reply_body_key_order_matches_splunk(status: HecStatus, extra: dict[str, Any], body: str) -> None:
    """Replies list text, code, then ackId or invalid-event-number, the order splunkd writes them."""
    assert json.dumps(hec.reply_body(status, **extra), separators=(",", ":")) == body


# -- raw endpoint ---------------------------------------------------------------------------------

def test_raw_lines_become_events_with_query_metadata() -> None:
    """Each LF-terminated corpus line is one event carrying the query string's host, source, sourcetype and index."""
    metadata = {"host": "web01", "source": "access.log", "sourcetype": "access_combined", "index": "web", "x": "y"}
    batch = parse_raw_body(fixture("fluentbit-raw-access-log-lines.txt"), metadata, parse_cef=True, now=NOW)
    facts = expected("fluentbit-raw-access-log-lines.expected.json")
    assert len(batch.rest) == facts["event_count"] and batch.cef == ()
    assert batch.rest[0].data == {"event": facts["first_event_raw"], "host": "web01", "source": "access.log",
                                  "sourcetype": "access_combined", "index": "web"}
    assert batch.rest[0].raw == facts["first_event_raw"]


@pytest.mark.parametrize("name, count", [("fluentbit-raw-access-log-unseparated.txt", 1), ("fluentbit-raw-hello.txt", 1)])
def test_raw_body_without_line_breaks_is_one_event(name: str, count: int) -> None:
    """A raw body with no line break is one event, whatever it holds."""
    assert len(parse_raw_body(fixture(name), {}, parse_cef=True, now=NOW).rest) == count


def test_raw_crlf_and_blank_lines_and_empty_body() -> None:
    """CR before LF is dropped, blank lines are skipped, and a body of only blank lines is No data (5)."""
    batch = parse_raw_body(b"one\r\n\r\n  \ntwo", {}, parse_cef=False, now=NOW)
    assert [r.data["event"] for r in batch.rest] == ["one", "two"]
    with pytest.raises(HecError) as caught:
        parse_raw_body(b"\r\n \n", {}, parse_cef=False, now=NOW)
    assert caught.value.status is hec.NO_DATA


def test_raw_cef_lines_become_cef_records_and_malformed_cef_stays_text() -> None:
    """A raw line that parses as CEF becomes the record CEF intakes share (HEC metadata under hec); a broken CEF line stays a text event."""
    body = (b"<13>Jan 1 host CEF:0|Security|threatmanager|1.0|100|worm stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232\n"
            b"CEF:0|only|three fields\n"
            b"plain text\n")
    batch = parse_raw_body(body, {"sourcetype": "cef"}, parse_cef=True, now=NOW)
    [cef] = batch.cef
    assert hec.is_cef(cef) and not any(hec.is_cef(r) for r in batch.rest)
    fields = cef.data["cef"]
    assert (fields["deviceVendor"], fields["name"], fields["severity"]) == ("Security", "worm stopped", "10")
    assert (fields["src"], fields["dst"], fields["spt"]) == ("10.0.0.1", "2.1.2.2", "1232")
    assert cef.data["hec"] == {"sourcetype": "cef"} and cef.raw == body.decode().split("\n")[0]
    assert [r.data["event"] for r in batch.rest] == ["CEF:0|only|three fields", "plain text"]


# -- CEF lines as envelope events ----------------------------------------------------------------

def test_envelope_whose_event_is_a_cef_line_becomes_the_cef_record() -> None:
    """The corpus envelope carrying a CEF line is the CEF record raw lines give, the rest of the envelope under hec, the envelope as raw data."""
    records = parse_event_body(fixture("authored-envelopes-ndjson.txt")).records
    cef = hec.cef_envelope(records[1], NOW)
    assert cef is not None and hec.is_cef(cef)
    assert expected("authored-envelopes-ndjson.expected.json")["events"][1]["event_is_cef_line"]
    fields = cef.data["cef"]
    assert (fields["deviceProduct"], fields["name"], fields["src"]) == ("threatmanager", "worm successfully stopped", "10.0.0.1")
    assert cef.data["hec"] == {"time": 1433188255.500, "host": "fw01.example.com", "source": "cef:514",
                               "sourcetype": "cef", "index": "netfw"}
    assert cef.raw == records[1].raw
    assert [hec.cef_envelope(record, NOW) for record in (records[0], records[2], records[3])] == [None, None, None]


def test_envelope_cef_line_behind_a_syslog_header_and_with_fields() -> None:
    """A CEF event behind a syslog header reads the header (host, stamp) as raw lines do; fields are kept under hec."""
    line = "<134>May  8 09:00:00 fw01 CEF:0|Acme|FW|2.1|deny|Connection denied|5|src=10.0.0.1 dst=10.1.0.1 act=deny"
    [record] = parse_event_body(json.dumps({"event": line, "fields": {"dc": "fra"}}).encode()).records
    cef = hec.cef_envelope(record, NOW)
    assert cef is not None
    assert (cef.data["syslog"]["hostname"], cef.data["cef"]["act"], cef.data["hec"]) == ("fw01", "deny", {"fields": {"dc": "fra"}})
    assert "time" in cef.data


@pytest.mark.parametrize("event", ["CEF:0|only|three fields", "plain text mentioning CEF: nothing", 42])
def test_envelope_events_that_are_not_cef_lines_stay_envelopes(event: Any) -> None:
    """A broken CEF line, text and a number are not CEF: the envelope stays as sent."""
    [record] = parse_event_body(json.dumps({"event": event}).encode()).records
    assert hec.cef_envelope(record, NOW) is None


def test_raw_cef_lines_stay_text_without_a_cef_template() -> None:
    """Without the cef-syslog template a CEF line is an ordinary text event, never dropped."""
    batch = parse_raw_body(b"CEF:0|V|P|1|100|n|5|src=1.2.3.4\n", {}, parse_cef=False, now=NOW)
    assert batch.cef == () and batch.rest[0].data == {"event": "CEF:0|V|P|1|100|n|5|src=1.2.3.4"}
