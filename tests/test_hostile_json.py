"""
Hostile JSON at every decoder: nesting past the limit, lone surrogates, numbers no reader can hold,
NaN and Infinity, duplicate keys, a BOM, whitespace, 100k keys. Each ends as records that serialise
to valid JSON, or as a body error naming the problem (a 400, never a 500); a hypothesis run throws
generated JSON-ish bytes at the decoders to hold that for everything else.
"""
from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from aisoc_inboxd import fastjson
from aisoc_inboxd.fastjson import MAX_DEPTH
from aisoc_inboxd.formats import hec
from aisoc_inboxd.formats.email.relays import decode_email_body
from aisoc_inboxd.formats.hec import HecError, parse_event_body, parse_raw_body
from aisoc_inboxd.formats.json_body import BodyError, Record, decode_json_records
from aisoc_inboxd.normalizer.envelope import Envelope, decoded
from tests.support.daemon import daemon_settings, start_daemon
from tests.support.ocsf import assert_valid_ocsf


def nested(depth: int, leaf: str = "1") -> bytes:
    """An object C{depth} levels deep: C{{"a":{"a":…1…}}}."""
    return ('{"a":' * depth + leaf + "}" * depth).encode()


def nested_arrays(depth: int) -> bytes:
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def strict_json(text: str | bytes) -> Any:
    """What a strict downstream reader does: no NaN or Infinity, no lone surrogate."""
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")
    value = json.loads(text, parse_constant=refuse)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return value


def assert_serialisable(records: list[Record]) -> None:
    """Every record reaches the sink as JSON a strict reader takes, its raw text too."""
    for record in records:
        strict_json(fastjson.dumps_compact(record.data))
        record.raw.encode("utf-8")


# -- nesting ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [nested(MAX_DEPTH), nested_arrays(MAX_DEPTH),
                                  b"\n".join([nested(MAX_DEPTH)] * 3), b"[" + nested(MAX_DEPTH - 1) + b"]"],
                         ids=["object", "arrays", "ndjson", "array-of-objects"])
def test_nesting_up_to_the_limit_is_read(body: bytes) -> None:
    """A document exactly MAX_DEPTH levels deep is records, as any shape the webhook takes."""
    records = decode_json_records(body)
    assert records
    assert_serialisable(records)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 1100, 100_000])
@pytest.mark.parametrize("shape", ["object", "arrays"])
def test_nesting_past_the_limit_is_a_body_error(depth: int, shape: str) -> None:
    """One level past the limit, past the normalizer's old breaking point (~450), past orjson's
    1024 and far past the interpreter's recursion limit: each is refused by name, never a
    RecursionError."""
    body = nested(depth) if shape == "object" else nested_arrays(depth)
    with pytest.raises(BodyError, match=f"nested deeper than {MAX_DEPTH} levels"):
        decode_json_records(body)


def test_nesting_position_is_where_the_limit_is_crossed() -> None:
    """The message points at the first bracket past the limit."""
    with pytest.raises(BodyError, match=f"line 1 column {5 * MAX_DEPTH + 1}:"):
        decode_json_records(nested(MAX_DEPTH + 1))


@pytest.mark.parametrize("body, where", [
    (b'{"a":1}\n' + nested(2000) + b"\n", "at line 2 "),
    (b"[" + nested(MAX_DEPTH) + b"]", "line 1 column"),
    (b"payload-free " + nested(3000), "invalid JSON"),
], ids=["ndjson-line", "array-item", "garbage-then-deep"])
def test_nesting_in_every_webhook_shape(body: bytes, where: str) -> None:
    """NDJSON lines and array items are held to the same limit (an array adds its own level)."""
    with pytest.raises(BodyError, match=where):
        decode_json_records(body)


def test_brackets_inside_strings_do_not_count() -> None:
    """Depth is structure, not characters: a string full of brackets is an ordinary value."""
    [record] = decode_json_records(json.dumps({"a": "[{" * 5000}).encode())
    assert record.data == {"a": "[{" * 5000}


# -- lone surrogates -------------------------------------------------------------------------

@pytest.mark.parametrize("body, where", [
    (rb'{"a":"\ud800"}', r"invalid JSON at line 1 column 7: string contains a lone surrogate \(\\ud800\)"),
    (rb'{"\udc00":"x"}', r"line 1 column 3: string contains a lone surrogate \(\\udc00\)"),
    (rb'{"a":"x\ud83d"}', r"lone surrogate \(\\ud83d\)"),
    (rb'{"a":"\ud83d\ud83d\ude00"}', r"column 7: string contains a lone surrogate \(\\ud83d\)"),
    (rb'[{"a":1},{"b":"\uDFFF"}]', r"lone surrogate \(\\uDFFF\)"),
    (b'{"a":1}\n{"a":"\\ud800"}\n', r"invalid JSON at line 2 column 7: string contains a lone surrogate \(\\ud800\)"),
    (b'{"a": NaN, "b": "\\ud800"}', r"lone surrogate"),
], ids=["value", "key", "trailing-high", "high-then-pair", "array-item", "ndjson-line", "with-nan"])
def test_lone_surrogates_are_refused_where_they_are(body: bytes, where: str) -> None:
    """A \\uD800-\\uDFFF escape without its pair is not text: refused at decode with its place, not
    rewritten (and not a UnicodeEncodeError when the event is written)."""
    with pytest.raises(BodyError, match=where):
        decode_json_records(body)


@pytest.mark.parametrize("body, value", [
    (rb'{"a":"\ud83d\ude00"}', "\U0001F600"),
    (rb'{"a":"\\ud800"}', "\\ud800"),
    (rb'{"a":"\\\ud83d\ude00"}', "\\\U0001F600"),
], ids=["pair", "escaped-backslash", "backslash-then-pair"])
def test_surrogate_pairs_and_escaped_backslashes_are_text(body: bytes, value: str) -> None:
    """A pair is one character (how ensure_ascii senders write emoji); \\\\ud800 is six characters."""
    assert decode_json_records(body)[0].data == {"a": value}


# -- numbers, constants, keys ----------------------------------------------------------------

def test_integer_past_the_interpreters_digit_limit_is_a_body_error() -> None:
    """10**5000 is not a ValueError from int() (a 500): it is a body error naming the limit."""
    digits = sys.get_int_max_str_digits()
    for body in (b'{"a":' + b"1" * (digits + 1) + b"}", b'[{"a":-' + b"9" * 5000 + b"}]"):
        with pytest.raises(BodyError, match=f"a number with more than {digits} digits"):
            decode_json_records(body)


@pytest.mark.parametrize("literal", ["18446744073709551617", "-9223372036854775809", str(2**70 + 3), "9" * 4000])
def test_integers_beyond_64_bits_keep_every_digit(literal: str) -> None:
    """orjson reads integers past 64 bits as floats (1.18e21): the value must stay exact, as the
    stdlib reads it, on every route that decodes JSON."""
    body = f'{{"id": {literal}}}'.encode()
    assert decode_json_records(body)[0].data == {"id": int(literal)}
    assert decode_json_records(b"[" + body + b"]")[0].data == {"id": int(literal)}
    assert parse_event_body(f'{{"event": {{"id": {literal}}}}}'.encode()).records[0].data["event"]["id"] \
        == int(literal)
    assert json.loads(fastjson.dumps_compact({"id": int(literal)})) == {"id": int(literal)}


def _reference_may_hold_integers_past_64_bits(scan: bytes) -> bool:
    """The check as first written, with C{in} (which raises and clears a TypeError per search)."""
    if b"0000000000000000000" not in scan:
        return False
    return b"00000000000000000000" in scan or b"-0000000000000000000" in scan


#: runs of digits around the thresholds (18 to 21, with and without a minus), among other text
_RUNS = st.lists(st.one_of(st.integers(min_value=10 ** 17, max_value=10 ** 21).map(str),
                           st.integers(min_value=-10 ** 21, max_value=-10 ** 17).map(str),
                           st.sampled_from(["-", " ", "[", "{", '"', "0" * 19, "-" + "0" * 19, "9" * 20]),
                           st.text(max_size=8)), max_size=8).map("".join)


@settings(max_examples=1000, deadline=None)
@given(_RUNS)
def test_the_long_integer_check_equals_its_reference(text: str) -> None:
    """The check L{fastjson.loads} makes before orjson, by C{find}, equals its reference by C{in}."""
    scan = text.encode("utf-8", "surrogatepass").translate(fastjson._DIGITS_AND_BRACKETS)
    assert fastjson._may_hold_integers_past_64_bits(scan) == _reference_may_hold_integers_past_64_bits(scan)


@pytest.mark.parametrize("body", [b'{"a":NaN,"b":Infinity,"c":-Infinity,"d":1e999999,"e":-1e400,"f":1.5}',
                                  b'{"a":NaN,"b":Infinity,"c":-Infinity,"d":1e999999,"e":-1e400,"f":1.5,'
                                  b'"big":123456789012345678901234567890}'],
                         ids=["alone", "with-a-big-int"])
def test_non_finite_numbers_read_as_null(body: bytes) -> None:
    """NaN, Infinity and numbers past a double's range are not JSON values any reader downstream
    takes; both parsers read them as null (the body's text stays in raw_data), whichever path the
    event is written by."""
    [record] = decode_json_records(body)
    assert {k: record.data[k] for k in "abcdef"} == {"a": None, "b": None, "c": None, "d": None, "e": None,
                                                     "f": 1.5}
    assert_serialisable([record])


@pytest.mark.parametrize("body, data", [
    (b'{"a":1,"a":2}', {"a": 2}),
    (b'\xef\xbb\xbf{"a":1}', {"a": 1}),
    (b'\xef\xbb\xbf{"a":1}\n{"a":2}', {"a": 1}),
    (b'  \n\t{"a":1}\n\n', {"a": 1}),
])
def test_duplicate_keys_bom_and_whitespace(body: bytes, data: dict[str, Any]) -> None:
    """The last of duplicate keys wins on both parsers; a BOM and surrounding whitespace are ignored."""
    assert decode_json_records(body)[0].data == data


def test_whitespace_only_is_an_empty_body() -> None:
    with pytest.raises(BodyError, match="empty body"):
        decode_json_records(b" \r\n\t \n")


def test_an_object_with_100k_keys_is_one_record() -> None:
    body = json.dumps({f"k{i}": i for i in range(100_000)}).encode()
    [record] = decode_json_records(body)
    assert len(record.data) == 100_000


# -- HEC -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [nested(MAX_DEPTH), nested(3000), rb'"\ud800"', rb'{"x":"\udc00"}',
                                 b"1" * 5000],
                         ids=["one-past", "deep", "surrogate", "surrogate-in-object", "huge-int"])
def test_hec_envelope_with_hostile_json_is_invalid_data_format(bad: bytes) -> None:
    """The envelopes before the bad one are kept; the bad one is Splunk's code 6 with its number
    (the event's own nesting plus the envelope's level passes the limit)."""
    body = b'{"event":"ok"}' + b'{"event":' + bad + b"}" + b'{"event":"after"}'
    batch = parse_event_body(body)
    assert [r.data["event"] for r in batch.records] == ["ok"]
    assert batch.rejection is not None
    assert (batch.rejection.status, batch.rejection.event_number) == (hec.INVALID_DATA_FORMAT, 1)


def test_hec_hostile_first_envelope_is_rejected_whole() -> None:
    batch = parse_event_body(b'{"event":' + nested(100_000) + b"}")
    assert batch.records == ()
    assert batch.rejection is not None and batch.rejection.event_number == 0


def test_hec_non_finite_numbers_read_as_null() -> None:
    [record] = parse_event_body(b'{"event":{"a":NaN,"b":1e999}}').records
    assert record.data["event"] == {"a": None, "b": None}
    assert_serialisable([record])


def test_hec_raw_lines_stay_text() -> None:
    """The raw endpoint decodes no JSON: a line holding hostile JSON is an event of that text."""
    body = nested(5000) + b"\n" + rb'{"a":"\ud800"}'
    batch = parse_raw_body(body, {}, False, 0.0)
    assert [r.data["event"] for r in batch.rest] == [nested(5000).decode(), r'{"a":"\ud800"}']
    assert_serialisable(list(batch.rest))


# -- e-mail ----------------------------------------------------------------------------------

def sns(message: str) -> bytes:
    return json.dumps({"Type": "Notification", "TopicArn": "arn:aws:sns:eu-west-1:1:t",
                       "MessageId": str(uuid.uuid4()), "Message": message}).encode()


@pytest.mark.parametrize("kind, body, problem", [
    ("application/json", rb'{"from":"a@example.com","subject":"\ud800"}', "lone surrogate"),
    ("application/json", nested(3000), "nested deeper than"),
    ("application/json", b'{"from":"a@example.com","size":' + b"7" * 5000 + b"}", "more than"),
    ("text/plain", sns('{"mail":{"commonHeaders":{"subject":"\\ud800"}}}'), "SNS Message: .*lone surrogate"),
    ("text/plain", sns('{"mail":' + nested(3000).decode() + "}"), "SNS Message: .*nested deeper than"),
    ("text/plain", sns('{"mail":' + nested(MAX_DEPTH).decode() + "}"), "SNS Message: .*nested deeper than"),
], ids=["relay-surrogate", "relay-deep", "relay-huge-int", "sns-surrogate", "sns-deep", "sns-one-past"])
def test_email_relay_json_and_sns_message(kind: str, body: bytes, problem: str) -> None:
    """Relay JSON and the SNS envelope's Message (JSON inside a string) get the same checks, and the
    error says which of the two is bad."""
    with pytest.raises(BodyError, match=problem):
        decode_email_body(kind, kind, body)


def test_email_sns_message_at_the_limit_is_read() -> None:
    """The Message's own nesting counts from the Message: an SES notification as deep as the limit
    allows is one e-mail."""
    deep_subject = '{"mail":{"commonHeaders":{"subject":"deep","x":' + nested(MAX_DEPTH - 3).decode() + "}}}"
    decoded_body = decode_email_body("text/plain", "text/plain", sns(deep_subject))
    assert [r.data.get("subject") for r in decoded_body.records] == ["deep"]


@pytest.mark.parametrize("field, value", [
    ("envelope", '{"from":"a@example.com","to":["\\ud800@example.com"]}'),
    ("envelope", nested(3000).decode()),
    ("charsets", nested(3000).decode()),
])
def test_email_form_json_fields_with_hostile_json_are_ignored_like_bad_json(field: str, value: str) -> None:
    """SendGrid's JSON form fields are read leniently (a bad one is ignored, as malformed JSON there
    always was); hostile JSON there is ignored too, never a 500."""
    body = (f"--b\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n"
            "--b\r\nContent-Disposition: form-data; name=\"from\"\r\n\r\na@example.com\r\n"
            "--b\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nhi\r\n--b--\r\n").encode()
    [record] = decode_email_body("multipart/form-data", "multipart/form-data; boundary=b", body).records
    assert record.data["subject"] == "hi"
    assert_serialisable([record])


# -- the SNS envelope on the webhook (aws-sns template) ----------------------------------------

SNS_ENVELOPE = Envelope(decode_json=(("Message",),))


@pytest.mark.parametrize("message", ['{"a":"\\ud800"}', nested(3000).decode(), nested(MAX_DEPTH + 1).decode()])
def test_sns_message_that_is_hostile_json_stays_text(message: str) -> None:
    """decode_json reads a Message only when it is JSON the daemon takes; otherwise the Message
    stays the text it was sent as (as a plain-text Message always has), never a 500."""
    assert decoded(SNS_ENVELOPE, {"Message": message}) == {"Message": message}


def test_sns_message_at_the_limit_is_decoded() -> None:
    """The Message's nesting counts from the Message (one more level in the record is still safe)."""
    assert decoded(SNS_ENVELOPE, {"Message": nested(MAX_DEPTH).decode()})["Message"]["a"]["a"]


# -- generated hostile bodies ----------------------------------------------------------------

TOKENS = st.sampled_from([
    "{", "}", "[", "]", ":", ",", " ", "\n", "\r\n", '"a"', '"k"', "1", "-0", "1.5e3", "1e999999", "-1e400",
    "NaN", "Infinity", "-Infinity", "true", "null", "9" * 25, "-" + "9" * 19, "7" * 4400,
    '"\\ud800"', '"\\udc00x"', '"\\ud83d\\ude00"', '"\\\\ud800"', '"\\\\\\ud800"', '"\\u0000"', '"\\"', "\\",
    "\ufeff", "é", '"\\uD83D"', '"event"', "\u2028",
])


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    prefix = "".join(draw(st.lists(TOKENS, max_size=30)))
    depth = draw(st.sampled_from([0, 0, 1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 1030, 5000]))
    opener = draw(st.sampled_from(['{"a":', "[", '{"event":']))
    closer = {'{"a":': "}", "[": "]", '{"event":': "}"}[opener]
    middle = "".join(draw(st.lists(TOKENS, max_size=10)))
    body = prefix + opener * depth + middle + closer * draw(st.sampled_from([depth, 0, max(depth - 1, 0)]))
    return body.encode("utf-8") + draw(st.binary(max_size=4))


def nothing_unexpected(decode: Any) -> list[Record]:
    try:
        return decode()
    except (BodyError, HecError):
        return []


@settings(max_examples=400, deadline=None)
@given(hostile_bodies())
def test_generated_hostile_bodies_are_records_or_body_errors(body: bytes) -> None:
    """Whatever the bytes, each decoder returns records that serialise to strict JSON, or refuses the
    body with its own error; nothing else escapes."""
    assert_serialisable(nothing_unexpected(lambda: decode_json_records(body)))
    batch = nothing_unexpected(lambda: list(parse_event_body(body).records))
    assert_serialisable(batch)
    for kind in ("application/json", "text/plain"):
        assert_serialisable(nothing_unexpected(lambda: decode_email_body(kind, kind, body).records))
    assert_serialisable(nothing_unexpected(lambda: [Record(decoded(
        SNS_ENVELOPE, {"Message": body.decode("utf-8", "replace")}), "")]))


# -- every route, through the daemon ---------------------------------------------------------

CHANNEL = "a6f1c1b4-3c59-4a36-9a1d-1f0e1e6c7a10"
SURROGATE = rb'{"a":"\ud800"}'
SURROGATE_REFUSED = r"bad body: invalid JSON at line 1 column 7: string contains a lone surrogate (\ud800)"
DEEP_REFUSED = f"nested deeper than {MAX_DEPTH} levels"
SPLUNK_CODE_6 = {"text": "Invalid data format", "code": 6, "invalid-event-number": 0}
JSON = {"Content-Type": "application/json"}

#: route (webhook, email, sns, hec, ack), content type, body, expected status, text the reply holds
ROUTE_CASES: list[tuple[str, str, bytes, int, str]] = [
    ("webhook", "application/json", SURROGATE, 400, SURROGATE_REFUSED),
    ("webhook", "application/json", nested(100_000), 400, DEEP_REFUSED),
    ("webhook", "application/json", nested(500), 400, DEEP_REFUSED),
    ("webhook", "application/json", b'{"n":' + b"9" * 5000 + b"}", 400, "a number with more than"),
    ("webhook", "application/x-ndjson", b'{"a":1}\n' + SURROGATE, 400, "invalid JSON at line 2 column 7"),
    ("webhook", "application/json", b"[" + nested(MAX_DEPTH) + b"]", 400, DEEP_REFUSED),
    ("webhook", "application/x-www-form-urlencoded", b"payload=" + quote(SURROGATE).encode(), 400,
     SURROGATE_REFUSED),
    ("webhook", "application/json", nested(MAX_DEPTH), 200, '"accepted": 1'),
    ("webhook", "application/json", b'{"a":NaN,"b":1e999999,"c":' + str(2**70 + 3).encode() + b"}", 200,
     '"accepted": 1'),
    ("email", "application/json", rb'{"from":"a@example.com","subject":"\ud800"}', 400, "lone surrogate"),
    ("email", "application/json", nested(2000), 400, DEEP_REFUSED),
    ("email", "text/plain", sns('{"mail":{"commonHeaders":{"subject":"\\ud800"}}}'), 400,
     "bad body: SNS Message: invalid JSON at line 1 column 38: string contains a lone surrogate"),
    ("email", "text/plain", sns('{"mail":' + nested(2000).decode() + "}"), 400, "SNS Message: " + "invalid JSON"),
    ("sns", "text/plain", sns(nested(2000).decode()), 200, '"accepted": 1'),
    ("sns", "text/plain", sns('{"detail":{"title":"\\ud800"}}'), 200, '"accepted": 1'),
    ("hec", "application/json", b'{"event":' + SURROGATE + b"}", 400, json.dumps(SPLUNK_CODE_6)),
    ("hec", "application/json", b'{"event":' + nested(100_000) + b"}", 400, json.dumps(SPLUNK_CODE_6)),
    ("hec", "application/json", b'{"event":' + nested(MAX_DEPTH - 1) + b"}", 200, '"code": 0'),
    ("hec-raw", "text/plain", nested(5000) + b"\n" + SURROGATE, 200, '"code": 0'),
    ("ack", "application/json", nested(100_000), 400, '"code": 6'),
]


@pytest_twisted.ensureDeferred
async def test_every_route_answers_hostile_json_with_400_never_500(reactor: Any, tmp_path: Path) -> None:
    """Through the real daemon: each route that decodes JSON refuses hostile JSON with a 400 naming
    it (Splunk's code 6 on HEC) and publishes nothing for it; what is accepted is valid OCSF in the
    log; no request is counted as an internal error."""
    inboxd = await start_daemon(reactor, daemon_settings(tmp_path / "state"))
    try:
        tokens = {"webhook": await inboxd.mint("t", "generic-json"),
                  "email": await inboxd.mint("t", "email-forwarded"),
                  "sns": await inboxd.mint("t", "aws-sns"),
                  "hec": await inboxd.mint("t", "splunk-hec"),
                  "ack": (await inboxd.admin.mint("t", "splunk-hec", hec_acks=True)).token}
        paths = {"webhook": f"/v1/inbox/{tokens['webhook']}", "email": f"/v1/inbox/email/{tokens['email']}",
                 "sns": f"/v1/inbox/{tokens['sns']}", "hec": "/v1/inbox/hec",
                 "hec-raw": "/services/collector/raw", "ack": "/services/collector/ack"}
        outcomes = []
        for route, kind, body, _, _ in ROUTE_CASES:
            token = tokens["ack" if route == "ack" else "hec"]
            headers = {"Content-Type": kind, "Authorization": f"Splunk {token}", "X-Splunk-Request-Channel": CHANNEL}
            status, reply, _ = await inboxd.post(paths[route], body, headers)
            outcomes.append((route, status, reply.get("error") or json.dumps(reply)))
        assert [(route, status) for route, status, _ in outcomes] == [(c[0], c[3]) for c in ROUTE_CASES]
        for (route, _, reply), case in zip(outcomes, ROUTE_CASES):
            assert case[4] in reply, (route, reply)
        events = inboxd.events()
        assert len(events) == sum(1 for case in ROUTE_CASES if case[3] == 200 and case[0] != "hec-raw") + 2
        for event in events:
            assert_valid_ocsf(event)
        sns_messages = [e["message"] for e in events if e["metadata"]["product"]["name"] == "Amazon SNS"]
        assert sns_messages == [nested(2000).decode(), '{"detail":{"title":"\\ud800"}}']
        admin = await inboxd.http.request("POST", inboxd.admin_url + "/v1/admin/invalidate", data=nested(3000),
                                          headers={"Authorization": [f"Bearer {inboxd.admin_key}"]})
        assert (admin.code, json.loads(await admin.content())["error"]) == (
            400, f"bad body: not JSON: nested deeper than {MAX_DEPTH} levels: line 1 column 321 (char 320)")
        assert 'outcome="error"' not in await inboxd.metrics()
    finally:
        await inboxd.stop()
