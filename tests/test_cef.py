"""
The CEF parser (L{aisoc_inboxd.formats.cef}): table tests over the CEF corpus, the module's documented
decisions, and property tests for escaping.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aisoc_inboxd.formats.cef import CefError, CefEvent, CefSeverity, normalize_severity, parse_cef_line
from tests.support.cef import escape_extension_value, escape_header_field, parse_batch
from tests.support.shared import CORPUS, FIXTURES, require_shared

CEF_FIXTURES = FIXTURES / "cef"
SYSLOG_FIXTURES = FIXTURES / "syslog"


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8").split("\n")


def _cases(path: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(path.read_text("utf-8"))["cases"]
    return cases


def _header(event: CefEvent) -> dict[str, Any]:
    """The seven header fields under the names the Logstash-derived expectations use."""
    return {
        "version": event.version,
        "device_vendor": event.device_vendor,
        "device_product": event.device_product,
        "device_version": event.device_version,
        "device_event_class_id": event.device_event_class_id,
        "name": event.name,
        "severity": event.severity_raw,
    }


# --- corpus tables -------------------------------------------------------------------------------

ARCSIGHT = _cases(CEF_FIXTURES / "arcsight-spec-examples.expected.json")


@pytest.mark.parametrize("case", ARCSIGHT, ids=[c["source_file"] for c in ARCSIGHT])
def test_arcsight_spec_examples(case: dict[str, Any]) -> None:
    """Each ArcSight-standard example gives exactly the header and extensions cef-parser asserts."""
    line = _lines(CEF_FIXTURES / "arcsight-spec-examples.txt")[case["line"] - 1]
    assert line == case["input"]
    event = parse_cef_line(line)
    expected = case["expected"]
    assert {
        "cefVersion": event.version,
        "deviceVendor": event.device_vendor,
        "deviceProduct": event.device_product,
        "deviceVersion": event.device_version,
        "deviceEventClassId": event.device_event_class_id,
        "name": event.name,
        "severity": event.severity_raw,
        "extensions": event.extensions,
    } == expected


LOGSTASH = _cases(CEF_FIXTURES / "logstash-codec-cef-cases.expected.json")


@pytest.mark.parametrize("case", LOGSTASH, ids=[f"line{c['line']}" for c in LOGSTASH])
def test_logstash_codec_cases(case: dict[str, Any]) -> None:
    """Each Logstash codec decode case gives the header, extension values and prefix its spec asserts."""
    line = _lines(CEF_FIXTURES / "logstash-codec-cef-cases.txt")[case["line"] - 1]
    assert line == case["input"]
    event = parse_cef_line(line)
    assert _header(event) == case["header"]
    subset = case.get("extensions_subset", {})
    assert {key: event.extensions.get(key) for key in subset} == subset
    assert event.prefix == case.get("prefix", "")


def test_logstash_malformed_lines_are_counted_with_line_numbers() -> None:
    """The three non-CEF payloads Logstash rejects are dropped, counted and located, not raised."""
    batch = parse_batch((CEF_FIXTURES / "logstash-codec-cef-malformed.txt").read_bytes())
    expected = _cases(CEF_FIXTURES / "logstash-codec-cef-malformed.expected.json")
    assert batch.events == ()
    assert batch.malformed == len(expected) == 3
    assert [line for line, _ in batch.errors] == [c["line"] for c in expected]
    assert "CEF:" in batch.errors[0][1]
    assert "key=value" in batch.errors[2][1]


PYCEF_HEADER = {
    "CEFVersion": lambda e: str(e.version),
    "DeviceVendor": lambda e: e.device_vendor,
    "DeviceProduct": lambda e: e.device_product,
    "DeviceVersion": lambda e: e.device_version,
    "DeviceEventClassID": lambda e: e.device_event_class_id,
    "Name": lambda e: e.name,
    "Severity": lambda e: e.severity_raw,
}


def _as_pycef(event: CefEvent) -> dict[str, str]:
    return {**{key: get(event) for key, get in PYCEF_HEADER.items()}, **event.extensions}


@pytest.mark.parametrize("name", ["pycef-testdata", "pycef-pipes"])
def test_pycef_reference_results(name: str) -> None:
    """pycef's reference dictionaries (leading space, duplicate key, bare pipe in a value) are reproduced."""
    events = parse_batch((CEF_FIXTURES / f"{name}.txt").read_bytes()).events
    cases = _cases(CEF_FIXTURES / f"{name}.expected.json")
    assert len(events) == len(cases)
    for case in cases:
        assert _as_pycef(events[case["line"] - 1]) == case["expected"]


def test_pycef_bsd_prefix_is_kept_and_the_record_parsed() -> None:
    """A PRI-less BSD syslog prefix ends up in C{prefix} and the record matches pycef's result."""
    line = _lines(SYSLOG_FIXTURES / "pycef-cef-after-bsd-prefix.txt")[0]
    event = parse_cef_line(line)
    assert _as_pycef(event) == _cases(SYSLOG_FIXTURES / "pycef-cef-after-bsd-prefix.expected.json")[0]["expected"]
    assert event.prefix == "Nov 16 21:24:18 arcsightfwd.davidbianco.io"


def test_empty_header_fields_are_accepted_unlike_pycef() -> None:
    """Every pycef missing-header-value line parses (our documented choice), empty fields as C{""}."""
    path = CEF_FIXTURES / "pycef-missing-header-values.txt"
    batch = parse_batch(path.read_bytes())
    assert all(c["expected_by_pycef"] is None for c in _cases(path.with_suffix(".expected.json")))
    assert batch.malformed == 0 and len(batch.events) == 8
    assert batch.events[0].device_vendor == "" and batch.events[0].device_product == "python CEF tests"
    assert batch.events[5].severity_raw == "" and batch.events[5].severity is CefSeverity.UNKNOWN
    assert _header(batch.events[7]) == {
        "version": 0, "device_vendor": "", "device_product": "", "device_version": "",
        "device_event_class_id": "", "name": "", "severity": "",
    }
    assert batch.events[7].extensions == {"field9": "value9", "field8": "value8"}


def test_sc4s_arcsight_connector_and_incapsula_lines() -> None:
    """Heavily escaped ArcSight connector values, an empty device version and Incapsula's duplicates parse."""
    windows, system, incapsula = parse_batch((CEF_FIXTURES / "sc4s-vendor-cef-lines.txt").read_bytes()).events
    assert windows.device_version == "" and windows.severity is CefSeverity.LOW
    assert windows.extensions["rawEvent"].startswith("EventlogType=Security&&EventIndex=1031&&")
    assert "WindowsParserFamily=Windows 2012 R2|2012|8&&" in windows.extensions["rawEvent"]
    assert windows.extensions["categorySignificance"] == "/Informational"
    assert system.severity_raw == "Unknown" and system.severity is CefSeverity.UNKNOWN
    assert system.extensions["aid"] == "3o0OiZmYBABCACGN9CiyuGQ=="
    assert system.extensions["ad.Key[0]"] == "6.3.9600.16384"
    assert incapsula.extensions["qstr"] == "p=%2fetc%2fpasswd"
    assert incapsula.extensions["ccode"] == "IL"
    assert incapsula.extensions["cs5Label"] == "clappsigdproc=Browser"
    assert incapsula.extensions["ver"] == "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256"
    assert ("cs9", "Rule name", "Block Malicious User,High Risk Resources,") in incapsula.custom_fields()


def test_sc4s_vendor_frames_all_parse_behind_their_syslog_prefixes() -> None:
    """All twenty SC4S vendor frames parse, whatever syslog prefix precedes C{CEF:}."""
    batch = parse_batch((SYSLOG_FIXTURES / "sc4s-vendor-cef-frames.txt").read_bytes())
    assert batch.malformed == 0 and len(batch.events) == 20
    by_vendor = {e.device_vendor: e for e in batch.events}
    assert batch.events[0].prefix == "<134>"
    assert batch.events[1].extensions["act"] == '"CPM Verify Password"'
    assert batch.events[1].extensions["cn2"] == '"VerificationPeriod"'
    nios = next(e for e in batch.events if e.device_product == "NIOS")
    assert nios.prefix == "<30>Sep 18 10:46:16 10.1.1.2 named[23276]:"
    assert nios.extensions["msg"] == '"rpz QNAME NXDOMAIN rewrite www.aaaaa.com [AAAA] via www.aaaaa.com.local-rpz"'
    assert nios.extensions["CAT"] == "RPZ"
    assert by_vendor["XXX"].severity_raw == "25" and by_vendor["XXX"].severity is CefSeverity.UNKNOWN
    assert by_vendor["Trellix"].extensions["cs2"] == "DELETE FROM TESTUSER.XXXX WHERE XXXX.ALERT_REFERENCE_NO = :B1"
    assert by_vendor["ArcSight"].extensions["cs2"] == '<Resource ID="3MQ1+L2YBABCAApZ7fvr37A=="/>'


def test_fortiweb_empty_header_fields_and_severity_words() -> None:
    """FortiWeb Cloud's empty vendor/product/version and non-CEF severity words parse, raw kept."""
    events = parse_batch((SYSLOG_FIXTURES / "fortiweb-cloud-cef-bsd-prefix.txt").read_bytes()).events
    assert [e.severity_raw for e in events] == ["Substantial", "", "Critical", "Critical"]
    assert {e.severity for e in events} == {CefSeverity.UNKNOWN}
    assert all(e.device_vendor == e.device_product == e.device_version == "" for e in events)
    assert events[1].device_event_class_id == "" and events[1].name == "IP Protection was configured successfully"
    assert events[0].extensions["requestClientApplication"].startswith("Mozilla/5.0 (Windows NT 10.0; Win64; x64) ")
    assert events[0].prefix == "Jul 25 09:56:42 syslog.fortiweb-cloud.com syslogng[9]"


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_elastic_decode_cef_golden_output() -> None:
    """Beats decode_cef's golden header and extension values (keys renamed by Beats) match ours."""
    corpus = require_shared(CORPUS / "cef" / "elastic-decode-cef-samples.txt")
    events = parse_batch(corpus.read_bytes()).events
    golden = json.loads(corpus.with_name("elastic-decode-cef-samples.expected.json").read_text("utf-8"))
    assert len(events) == len(golden) == 15
    for event, expected in zip(events, golden):
        cef = expected["cef"]
        assert (event.version, event.name, event.severity_raw) == (cef["version"], cef["name"], cef["severity"])
        assert {
            "event_class_id": event.device_event_class_id, "product": event.device_product,
            "vendor": event.device_vendor, "version": event.device_version,
        } == cef["device"]
        golden_extensions = _flatten(cef["extensions"])
        assert sorted(golden_extensions.values()) == sorted(event.extensions.values())
        for key, value in golden_extensions.items():
            assert event.extensions.get(key, value) == value


def test_checkpoint_filebeat_expected_output() -> None:
    """The Filebeat module's Check Point header and un-renamed string extensions match ours.

    Beats rewrites C{deviceCustomDate*} values as ISO timestamps, so those are left out.
    """
    corpus = require_shared(CORPUS / "cef" / "checkpoint-firewall.txt")
    events = parse_batch(corpus.read_bytes()).events
    expected = json.loads(corpus.with_name("checkpoint-firewall.expected.json").read_text("utf-8"))
    assert len(events) == len(expected) == 3
    for event, doc in zip(events, expected):
        assert event.device_vendor == doc["cef.device.vendor"] and event.name == doc["cef.name"]
        assert event.severity_raw == doc["cef.severity"] and event.severity is CefSeverity.UNKNOWN
        same_name = {
            key[len("cef.extensions."):]: value for key, value in doc.items()
            if key.startswith("cef.extensions.") and isinstance(value, str) and key[15:] in event.extensions
            and not key[15:].startswith("deviceCustomDate")
        }
        assert same_name, "no extension key kept its name"
        assert {key: event.extensions[key] for key in same_name} == same_name
    assert events[0].extensions["originsicname"] == "CN=R80,O=R80_M..6u6bdo"


# --- batch framing and encoding ------------------------------------------------------------------

LINE = "CEF:0|V|P|1.0|100|name|5|src=10.0.0.1"


def test_crlf_and_blank_lines() -> None:
    """CRLF endings are stripped and blank lines skipped without counting as malformed."""
    batch = parse_batch(f"{LINE}\r\n\r\n   \r\n{LINE} dst=2.2.2.2\r\nnot cef\r\n".encode())
    assert [e.extensions for e in batch.events] == [{"src": "10.0.0.1"}, {"src": "10.0.0.1", "dst": "2.2.2.2"}]
    assert batch.errors == ((5, "no 'CEF:' marker"),)


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    """Invalid UTF-8 bytes become U+FFFD and the line still parses."""
    batch = parse_batch(LINE.encode() + b" msg=caf\xe9 \xff\n")
    assert batch.malformed == 0
    assert batch.events[0].extensions["msg"] == "caf\ufffd \ufffd"


def test_utf8_bom_at_batch_start_is_dropped() -> None:
    """A UTF-8 BOM before the first line does not end up in its prefix."""
    assert parse_batch(b"\xef\xbb\xbf" + LINE.encode()).events[0].prefix == ""


def test_str_batch_and_line_separators_inside_values() -> None:
    """A str batch splits on LF only, so U+2028 and form feeds inside values survive."""
    batch = parse_batch(f"{LINE} msg=a\u2028b\x0cc\n{LINE}")
    assert len(batch.events) == 2
    assert batch.events[0].extensions["msg"] == "a\u2028b\x0cc"


# --- header --------------------------------------------------------------------------------------

def test_cef_version_1_is_accepted() -> None:
    """CEF:1 records parse like CEF:0 ones."""
    assert parse_cef_line(LINE.replace("CEF:0", "CEF:1")).version == 1


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("CEF:2|V|P|1|2|n|3|a=b", "unsupported CEF version 2"),
        ("CEF:x|V|P|1|2|n|3|a=b", "'x' is not a number"),
        ("CEF:0|V|P|1|2", "5 of 7"),
        ("CEF:0|V|P|1|2|n\\|3", "6 of 7"),
        ("CEF:0|V|P|1|2|n|3\\", "lone backslash"),
        ("CEF:0|V|P|1|2|n|3|just words", "key=value"),
        ("CEF:0|V|P|1|2|n|3|words a=b", "key=value"),
        ("plain text", "'CEF:' marker"),
    ],
)
def test_malformed_lines_say_what_is_wrong(line: str, fragment: str) -> None:
    """Each kind of malformed line raises CefError with a message naming the problem."""
    with pytest.raises(CefError) as raised:
        parse_cef_line(line)
    assert fragment in str(raised.value)


def test_missing_final_pipe_means_no_extension() -> None:
    """Seven header fields without a trailing pipe, or with one and nothing after, give no extensions."""
    assert parse_cef_line("CEF:0|V|P|1|2|n|3").extensions == {}
    assert parse_cef_line("CEF:0|V|P|1|2|n|3|   ").extensions == {}
    assert parse_cef_line("CEF:0|V|P|1|2|n|3").severity_raw == "3"


def test_header_escapes_and_other_backslashes() -> None:
    """C{\\|} and C{\\\\} are unescaped in the header; any other backslash is kept."""
    event = parse_cef_line(r"CEF:0|a\|b|c\\d|e\nf|g\h|n|3|")
    assert (event.device_vendor, event.device_product, event.device_version, event.device_event_class_id) == (
        "a|b", "c\\d", "e\\nf", "g\\h"
    )


def test_prefix_is_whatever_precedes_the_marker() -> None:
    """Text before C{CEF:} is kept stripped in C{prefix}; the first marker starts the record."""
    event = parse_cef_line("<134>Oct 11 22:14:15 host app: CEF:0|V|P|1|2|n|3|msg=says CEF:0 inside")
    assert event.prefix == "<134>Oct 11 22:14:15 host app:"
    assert event.extensions == {"msg": "says CEF:0 inside"}


@pytest.mark.parametrize(
    ("raw", "band"),
    [
        ("0", CefSeverity.LOW), ("3", CefSeverity.LOW), ("4", CefSeverity.MEDIUM), ("6", CefSeverity.MEDIUM),
        ("7", CefSeverity.HIGH), ("8", CefSeverity.HIGH), ("9", CefSeverity.VERY_HIGH),
        ("10", CefSeverity.VERY_HIGH), ("11", CefSeverity.UNKNOWN), ("-1", CefSeverity.UNKNOWN),
        (" 5 ", CefSeverity.MEDIUM), ("Unknown", CefSeverity.UNKNOWN), ("low", CefSeverity.LOW),
        ("Medium", CefSeverity.MEDIUM), ("HIGH", CefSeverity.HIGH), ("Very-High", CefSeverity.VERY_HIGH),
        ("very-high", CefSeverity.VERY_HIGH), ("Critical", CefSeverity.UNKNOWN),
        ("Substantial", CefSeverity.UNKNOWN), ("", CefSeverity.UNKNOWN), ("\u0665", CefSeverity.UNKNOWN),
    ],
)
def test_severity_bands(raw: str, band: CefSeverity) -> None:
    """Numbers fall into the CEF standard's bands, words match in any case, anything else is Unknown."""
    assert normalize_severity(raw) is band
    event = parse_cef_line(f"CEF:0|V|P|1|2|n|{raw}|")
    assert (event.severity, event.severity_raw) == (band, raw)


# --- extension -----------------------------------------------------------------------------------

def test_extension_escapes() -> None:
    """C{\\=} C{\\\\} C{\\n} C{\\r} are unescaped in values; C{\\|} and lone backslashes stay."""
    event = parse_cef_line(r"CEF:0|V|P|1|2|n|3|a=x\=y\\z\nw\r b=p\|q c=C:\dir\ d=\\n")
    assert event.extensions == {"a": "x=y\\z\nw\r", "b": "p\\|q", "c": "C:\\dir\\", "d": "\\n"}


def test_values_keep_leading_spaces_and_lose_trailing_ones() -> None:
    """A value's leading spaces are kept (as Beats does) and its trailing spaces trimmed."""
    event = parse_cef_line("CEF:0|V|P|1|2|n|3|msg=  two spaces   next=x   ")
    assert event.extensions == {"msg": "  two spaces", "next": "x"}


def test_duplicate_keys_last_wins() -> None:
    """When a key repeats, the last value is kept, in the position of the first."""
    event = parse_cef_line("CEF:0|V|P|1|2|n|3|a=1 b=2 a=3")
    assert event.extensions == {"a": "3", "b": "2"}
    assert list(event.extensions) == ["a", "b"]


def test_key_names_seen_in_the_corpus() -> None:
    """Dotted, bracketed, comma, dash and underscore-led keys are keys; C{Guid:test=} is not."""
    event = parse_cef_line(
        "CEF:0|V|P|1|2|n|3|_cefVer=0.1 ad.x[0]=a ad.Error_,Code=b my-key=c app=Foo; Guid:test= d=e"
    )
    assert event.extensions == {
        "_cefVer": "0.1", "ad.x[0]": "a", "ad.Error_,Code": "b", "my-key": "c", "app": "Foo; Guid:test=", "d": "e",
    }


def test_custom_fields_pair_values_with_labels() -> None:
    """custom_fields() pairs every custom key with its label, None when unlabelled, and skips bare labels."""
    event = parse_cef_line(
        "CEF:0|V|P|1|2|n|3|cfp15=3.14 cfp15Label=pi c6a12=::1 cn7=8191 cn7Label=mersenne cs1Label=orphan "
        "flexString1=f flexString1Label=fl deviceCustomDate1=1436759065017 deviceCustomDate1Label=detected "
        "deviceCustomString2=long deviceCustomString2Label=full src=10.0.0.1 cs10=x"
    )
    assert event.custom_fields() == [
        ("cfp15", "pi", "3.14"),
        ("c6a12", None, "::1"),
        ("cn7", "mersenne", "8191"),
        ("flexString1", "fl", "f"),
        ("deviceCustomDate1", "detected", "1436759065017"),
        ("deviceCustomString2", "full", "long"),
        ("cs10", None, "x"),
    ]


def test_escape_header_field_refuses_line_breaks() -> None:
    """A header field with a line break cannot be written as CEF, so escaping it raises."""
    with pytest.raises(ValueError):
        escape_header_field("a\nb")


# --- properties ----------------------------------------------------------------------------------

HEADER_TEXT = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)))
VALUE_TEXT = st.text(st.characters(blacklist_categories=("Cs",)))
KEYS = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.,\[\]-]{0,15}", fullmatch=True)


@given(fields=st.lists(HEADER_TEXT, min_size=6, max_size=6))
def test_header_fields_round_trip(fields: list[str]) -> None:
    """Escaping any six header fields and parsing the line gives them back."""
    line = "CEF:0|" + "|".join(escape_header_field(f) for f in fields) + "|k=v"
    event = parse_cef_line(line)
    assert [
        event.device_vendor, event.device_product, event.device_version,
        event.device_event_class_id, event.name, event.severity_raw,
    ] == fields
    assert event.extensions == {"k": "v"}


@given(pairs=st.dictionaries(KEYS, VALUE_TEXT, min_size=1, max_size=6))
def test_extension_values_round_trip(pairs: dict[str, str]) -> None:
    """Escaping any values under valid keys and parsing gives them back, less trailing spaces."""
    extension = " ".join(f"{key}={escape_extension_value(value)}" for key, value in pairs.items())
    event = parse_cef_line(f"CEF:0|V|P|1|2|n|3|{extension}")
    assert event.extensions == {key: value.rstrip(" ") for key, value in pairs.items()}


@given(values=st.lists(VALUE_TEXT, min_size=1, max_size=5))
def test_batch_of_escaped_lines_round_trips(values: list[str]) -> None:
    """A batch of lines whose values hold escaped line breaks yields one event per line, in order."""
    body = "\r\n".join(f"CEF:0|V|P|1|2|n|3|msg={escape_extension_value(v)}" for v in values).encode()
    batch = parse_batch(body)
    assert batch.malformed == 0
    assert [e.extensions["msg"] for e in batch.events] == [v.rstrip(" ") for v in values]


@settings(max_examples=300)
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: ("CEF:0|" + t).encode()))
def test_any_bytes_never_raise(data: bytes) -> None:
    """Arbitrary bytes never make the batch parser raise; every non-blank line is an event or an error."""
    batch = parse_batch(data)
    lines = data.decode("utf-8", "replace").removeprefix("\ufeff").split("\n")
    assert len(batch.events) + batch.malformed == sum(1 for line in lines if line.rstrip("\r").strip())
