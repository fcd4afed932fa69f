"""
The fast paths of the HTTP batch path against what they stand in for: NDJSON read in one go
(C{decode_json_records}) against the whole-document-then-line-by-line reader (C{read_json_records}),
and concatenated HEC envelopes cut and read in one go (C{parse_event_body}) against the
envelope-by-envelope reader (C{read_event_body}), each giving the same records (data and raw text)
or the same refusal (type, words, event number); and C{normalize_record} skipping C{unwrap} for a
template without an envelope, where unwrap gives the record back whole; and the pipeline's events
of a batch made and serialised in one go (C{event_values}) against record by record
(C{event_values_one_by_one}). Over every fixture under tests/, batches made of them, and
hypothesis-generated bodies and records.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed

from aisoc_inboxd import fastjson
from aisoc_inboxd.fastjson import MAX_DEPTH
from aisoc_inboxd.formats.hec import (
    _BETWEEN_OBJECTS, HecError, _adjacent_pieces, _objects, _pieces_between, concatenated_objects, parse_event_body,
    read_event_body)
from aisoc_inboxd.formats.json_body import (
    BodyError, Record, TooManyEvents, _ndjson_objects, decode_json_records, decode_text, read_json_records, utf8_prefix)
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.normalizer import load_templates
from aisoc_inboxd.normalizer.envelope import Unwrapped
from aisoc_inboxd.pipeline import Pipeline, event_values, event_values_one_by_one
from aisoc_inboxd.sinks import SinkRecord
from tests.test_compiled_templates import FIXTURE_RECORDS, comparable, templates

FIXTURES = sorted(path for path in (Path(__file__).parent / "fixtures").rglob("*") if path.is_file())
JSON_FIXTURES = [path for path in FIXTURES if path.suffix == ".json"]
LIMITS = [None, 1, 2, 3, 100]


def outcome(decode: Callable[[], Any]) -> Any:
    """
    What a decoder gives, comparable: its records, or its refusal's type, words and numbers.
    """
    try:
        result = decode()
    except (BodyError, TooManyEvents) as e:
        return type(e).__name__, str(e)
    except HecError as e:
        return "HecError", e.status, e.event_number
    if isinstance(result, list):
        return [(type(record), *record) for record in result]
    rejection = result.rejection
    return ([(type(record), *record) for record in result.records],
            None if rejection is None else (rejection.status, rejection.event_number))


def json_reference(body: bytes, limit: int | None) -> Any:
    return read_json_records(decode_text(body), limit)


def hec_reference(body: bytes, limit: int | None) -> Any:
    text, invalid_at = utf8_prefix(body)
    return read_event_body(text.removeprefix("\ufeff"), invalid_at, limit)


def assert_same(body: bytes, limit: int | None = None) -> None:
    assert outcome(lambda: decode_json_records(body, limit)) == outcome(lambda: json_reference(body, limit))
    assert outcome(lambda: parse_event_body(body, limit)) == outcome(lambda: hec_reference(body, limit))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda path: str(path.relative_to(path.parents[2])))
def test_every_fixture_reads_alike(path: Path) -> None:
    """Every fixture file, as a body, gives the same records or refusal by both paths, at every limit."""
    body = path.read_bytes()
    for limit in LIMITS:
        assert_same(body, limit)


def _compact(path: Path) -> str:
    return json.dumps(json.loads(path.read_text()), ensure_ascii=False)


@pytest.mark.parametrize("separator", ["\n", "\r\n", "\n\n  \n", " ", "", "\t\n"])
def test_batches_of_the_json_fixtures_read_alike(separator: str) -> None:
    """The JSON fixtures as one batch (NDJSON, concatenated HEC envelopes, envelopes around each), cut
    by every separator, give the same records by both paths; the fast path is taken for these."""
    lines = [_compact(path) for path in JSON_FIXTURES]
    envelopes = [json.dumps({"time": 1778230800 + n, "event": json.loads(line)}) for n, line in enumerate(lines)]
    for parts in (lines, envelopes):
        body = separator.join(parts).encode()
        for limit in LIMITS:
            assert_same(body, limit)
        assert_same(body + b"\n" + body, None)


def test_fast_paths_are_taken_for_batches_of_objects() -> None:
    """Batches of the fixture objects take the fast paths, so the tests above compare them with the
    references (a fast path that always declined would pass them): NDJSON always, HEC envelopes
    unless a string holds a C{}} and a C{{} with only whitespace between (GitHub's URL templates
    do: C{{/owner}{/repo}}), where the body is read envelope by envelope."""
    lines = [line for line in map(_compact, JSON_FIXTURES) if line.startswith("{")]
    assert _ndjson_objects("\n".join(lines), None) is not None
    envelopes = [json.dumps({"event": json.loads(line)}) for line in lines]
    cut_in_a_string = [envelope for envelope in envelopes if _BETWEEN_OBJECTS.search(envelope)]
    assert concatenated_objects("".join(e for e in envelopes if e not in cut_in_a_string), None) is not None
    assert concatenated_objects("".join(envelopes), None) is None and cut_in_a_string


def test_compact_bodies_are_cut_at_each_adjacent_pair() -> None:
    """A compact batch of the fixture envelopes (no whitespace between them) is cut by C{str.split}
    into the pieces the regular expression cuts, and those are read (so the tests here compare the
    split with the reference: a split whose pieces were never objects would fall back unseen)."""
    envelopes = [json.dumps({"event": json.loads(line)}, ensure_ascii=False) for line in map(_compact, JSON_FIXTURES)]
    body = "".join(envelope for envelope in envelopes if not _BETWEEN_OBJECTS.search(envelope))
    pieces = _adjacent_pieces(body, None)
    assert pieces == _pieces_between(body, 0, None) and len(pieces) > 20
    assert _objects(pieces) is not None


# -- hypothesis ---------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
           | st.text(alphabet=st.sampled_from('ab}{"\\\n é\u2028'), max_size=6))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(alphabet="ek}{\"\n", max_size=4), inner, max_size=3), max_leaves=8)
envelope_like = st.fixed_dictionaries({}, optional={"event": values, "time": values, "fields": values, "host": values})
#: texts the parsers must refuse or read by their own rules
hostile = st.sampled_from(["NaN", "1e999", "9" * 25, "-" + "9" * 19, '"\\ud800"', '"\\ud83d\\ude00"', "{", "}", "[",
                           "]", "", "\ufeff", '{"a":1}{"b":', "null", '"}{"', "1,2", "[1", "2]", '{"event":"a\tb"}',
                           '{"event":"\x01"}', '{"event":01}', '{"event":1.}', '{"event":.5}', '{"event":+1}',
                           '{"event":-0.0}', '{"event":1E2}', '{"event":"\\x"}'])


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(envelope_like.map(json.dumps) | values.map(json.dumps) | hostile, max_size=8))
    separators = draw(st.lists(st.sampled_from(["\n", "", " ", "\r\n", "\n\n", "\x0b", "\u00a0", "\n \n"]),
                               min_size=len(parts), max_size=len(parts)))
    text = "".join(part + separator for part, separator in zip(parts, separators))
    return text.encode("utf-8") + draw(st.sampled_from([b"", b"\n", b"\xff", b" \xc3"]))


@settings(max_examples=1500, deadline=None)
@given(bodies(), st.sampled_from(LIMITS))
@example(b'{"event":"a"}xyz', None)
@example(b' [{"event":"a"}]', None)
@example(b'{"event":12345678901234567890123}\n{"event":-1234567890123456789}', None)
@example(b'{"event":"}{"}\n{"event":"x"}', None)
@example(b'{"a":1}\n{"a":2}\n{"a":3}', 2)
@example(b'{"event":1}{"event":2}{"event":3}', 2)
@example(b'{"event":1} {"event":[]} {"event":3}', None)
def test_generated_bodies_read_alike(body: bytes, limit: int | None) -> None:
    """Generated bodies (objects, envelopes, other JSON values, hostile texts, cut by whitespace JSON
    allows and whitespace it does not) give the same records or refusal by both paths."""
    assert_same(body, limit)


#: strings that hold what looks like a cut (and is text), and values around them
cut_like = st.sampled_from(["}{", "} {", "}\n{", "{", "}", "a}{b", "}}{{"])
compact_envelopes = st.fixed_dictionaries({"event": values | cut_like}, optional={"host": cut_like, "time": values})


@st.composite
def compact_bodies(draw: st.DrawFn) -> bytes:
    """Envelopes (and now and then another JSON value or a hostile text) mostly side by side, now and
    then with whitespace, before or after the first cut."""
    parts = draw(st.lists(compact_envelopes.map(json.dumps) | values.map(json.dumps) | hostile, min_size=1, max_size=8)
                 .filter(lambda parts: sum(part.startswith("{") for part in parts) >= len(parts) - 1))
    separators = draw(st.lists(st.sampled_from(["", "", "", "", "\n", " ", "\r\n"]),
                               min_size=len(parts), max_size=len(parts)))
    return "".join(part + separator for part, separator in zip(parts, separators)).encode()


@settings(max_examples=1000, deadline=None)
@given(compact_bodies(), st.sampled_from(LIMITS + [4, 5]))
@example(b'{"event":1}{"event":"}{"}{"event":3}', None)
@example(b'{"event":1}{"event":2}\n{"event":3}', None)
@example(b'{"event":1}{"event":2}{"event":3}', 3)
@example(b'{"event":1}{"event":2}{"event":3}{"event":4}', 3)
@example(b'{"event":1} {"event":2}{"event":3}', 2)
def test_generated_compact_bodies_read_alike(body: bytes, limit: int | None) -> None:
    """Compact bodies (the cut by C{str.split} first), with cut-like text in strings, whitespace
    between some envelopes, limits at and around their count: the same records or refusal as the
    envelope-by-envelope reader."""
    assert_same(body, limit)


#: what an envelope's own keys may hold: the times, events and fields Splunk takes and refuses, as
#: texts the fast path reads (no NaN, no integer of 19 digits: either sends the body to the reference)
hec_times = (st.sampled_from([-1, 0, 1, -0.0, 0.5, -0.5, 1778230800]) | st.integers(-2**62, 2**62) | st.floats(allow_nan=False, allow_infinity=False)
             | st.sampled_from(["1778230800", "1e3", "-1", "nan", "x", ""]) | st.booleans() | st.none()
             | st.lists(st.integers(0, 9), max_size=1))
small = st.none() | st.booleans() | st.integers(-9, 9) | st.text(alphabet="ab}{", max_size=2)
hec_events = (st.sampled_from(["x", {"a": 1}]) | st.sampled_from(["", {}, [], True, 0, None]) | small
              | st.dictionaries(st.text(alphabet="ab", max_size=2), small, max_size=2) | st.lists(small, max_size=2))
hec_envelopes = (st.fixed_dictionaries({"event": hec_events}, optional={"time": hec_times, "fields": hec_events,
                                                                        "host": st.just("h")})
                 | st.fixed_dictionaries({}, optional={"time": hec_times, "host": st.just("h")}))


@settings(max_examples=1500, deadline=None)
@given(st.lists(hec_envelopes, min_size=1, max_size=6), st.sampled_from(["", "\n"]))
@example([{"event": {"a": 1}, "time": -0.0}, {"event": "x", "time": 0}], "")
@example([{"event": {"a": 1}, "time": 2**64}, {"event": "x", "time": float("inf")}], "")
@example([{"event": {"a": 1}}, {"event": "x", "fields": {}}, {"event": "y", "time": True}], "")
def test_generated_envelope_keys_read_alike(envelopes: list[dict[str, Any]], separator: str) -> None:
    """Bodies of envelopes whose event, time and fields vary over what Splunk takes and refuses
    (the fast path tells the common envelope by its keys' types, the rest by C{envelope_problem}):
    the same records or refusal as the envelope-by-envelope reader."""
    assert_same(separator.join(json.dumps(envelope, allow_nan=True) for envelope in envelopes).encode(), None)


# -- loads_each: each text held to the depth limit as loads holds it ---------------------------

def loads_one_by_one(texts: list[str]) -> list[Any] | None:
    """The reference for L{fastjson.loads_each}: each text through L{fastjson.loads}, C{None} when
    one of them is refused."""
    try:
        return [fastjson.loads(text) for text in texts]
    except json.JSONDecodeError:
        return None


def fixture_texts(indent: int | None, ensure_ascii: bool = False) -> list[str]:
    return [json.dumps(json.loads(path.read_text()), ensure_ascii=ensure_ascii, indent=indent)
            for path in JSON_FIXTURES]


@pytest.mark.parametrize("ensure_ascii", [False, True], ids=["utf-8", "ascii"])
@pytest.mark.parametrize("indent", [None, 1], ids=["one-line", "indented"])
def test_loads_each_reads_every_fixture_as_loads_does(indent: int | None, ensure_ascii: bool) -> None:
    """The JSON fixtures as one batch, one line each (NDJSON lines) and indented (newlines inside
    texts, as between an envelope's tokens), non-ASCII characters as they are or escaped (so the
    batch is ASCII, counted at offsets), and each of them past the limit inside a batch of the
    others: read alike, and refused alike."""
    texts = fixture_texts(indent, ensure_ascii)
    assert ensure_ascii or any(not text.isascii() for text in texts)
    assert fastjson.loads_each(texts) == loads_one_by_one(texts) is not None
    for index, text in enumerate(texts):
        deep = [*texts[:index], "[" * MAX_DEPTH + text + "]" * MAX_DEPTH, *texts[index + 1:]]
        assert loads_one_by_one(deep) is None
        assert fastjson.loads_each(deep) is None, JSON_FIXTURES[index]


leaves = st.none() | st.integers(-1000, 1000) | st.text(alphabet='[]{}"\\aé\u2028\n', max_size=8)


@st.composite
def nested_texts(draw: st.DrawFn, indent: st.SearchStrategy[int | None]) -> str:
    """A JSON text nested up to a few levels past L{MAX_DEPTH} (arrays and objects mixed), its
    strings full of brackets (text, not structure) or not."""
    value = draw(st.recursive(leaves, lambda inner: st.lists(inner, max_size=2)
                              | st.dictionaries(st.text(alphabet="k[{", max_size=2), inner, max_size=2), max_leaves=4))
    for kind in draw(st.lists(st.sampled_from("[{"), min_size=MAX_DEPTH - 4, max_size=MAX_DEPTH + 2)):
        value = [value] if kind == "[" else {"k": value}
    return json.dumps(value, ensure_ascii=False, indent=draw(indent))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(nested_texts(st.none()), max_size=6),
                 st.lists(nested_texts(st.sampled_from([None, 0, 1])), max_size=6)))
def test_loads_each_reads_generated_batches_as_loads_does(texts: list[str]) -> None:
    """Batches of texts up to a few levels past the limit, one line each or some with newlines
    inside: each read, or the batch refused, as L{fastjson.loads} reads or refuses them one by one."""
    assert fastjson.loads_each(texts) == loads_one_by_one(texts)


# -- the normalizer's entry: a template that unwraps nothing ------------------------------------

TEMPLATES = load_templates([Path(__file__).parents[1] / "templates"])
PLAIN = [template for template in TEMPLATES.values() if template.compiled.envelope.unwraps_nothing]


def assert_unwrapped_whole(record: dict[str, Any]) -> None:
    for template in PLAIN:
        for headers in ({}, {"x-github-event": "ping", "content-type": "application/json"}):
            assert template.unwrap(record, headers) == [Unwrapped(record, True)], template.id


def test_templates_that_unwrap_nothing_are_the_plain_ones() -> None:
    """The shortcut is taken for the templates without an envelope (the bench's generic-json,
    splunk-hec and cef-syslog among them) and not for those with one."""
    assert {"generic-json", "splunk-hec", "cef-syslog"} <= {template.id for template in PLAIN}
    assert {"aws-sns", "cloudflare-logpush", "github-security-advisory"}.isdisjoint(
        template.id for template in PLAIN)


@pytest.mark.parametrize("path", JSON_FIXTURES, ids=lambda path: str(path.relative_to(path.parents[2])))
def test_unwrap_of_a_plain_template_gives_every_fixture_whole(path: Path) -> None:
    """normalize_record skips unwrap for a template that unwraps nothing: unwrap would have given
    each fixture record back whole and unchanged, under every such template."""
    document = json.loads(path.read_text())
    for record in document if isinstance(document, list) else [document]:
        if isinstance(record, dict):
            assert_unwrapped_whole(record)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["Message", "Records", "records", "zen", "hook", "event", "x"]), values,
                       max_size=5))
def test_unwrap_of_a_plain_template_gives_generated_records_whole(record: dict[str, Any]) -> None:
    """The same over generated records, with the keys envelopes read (SNS's Message, S3's Records,
    GitHub's ping) holding any JSON value."""
    assert_unwrapped_whole(record)


def batch_outcome(make: Callable[..., list[bytes]], template_id: str, records: list[tuple[Any, Any]],
                  headers: dict[str, str]) -> Any:
    """
    The events one way of making them gives, comparable (each event's uid as C{UID}), or its error.
    """
    try:
        values = make(templates()[template_id], "tenant", "webhook", records, 1778230800.0, headers)
    except Exception as e:  # noqa: BLE001 - the fast path must fail the same way
        return "raised", type(e).__name__, str(e)
    return [comparable(json.loads(value)) for value in values]


def assert_same_events(template_id: str, records: list[tuple[Any, Any]], headers: dict[str, str]) -> None:
    fast = batch_outcome(event_values, template_id, records, headers)
    assert fast == batch_outcome(event_values_one_by_one, template_id, records, headers), template_id


@pytest.mark.parametrize("template_id", sorted(templates()))
def test_events_of_every_fixture_batch_made_alike(template_id: str) -> None:
    """Every fixture record in one batch, with its text and (then) without, under every template of
    the compiled-templates test: the same events, in the same order, byte for byte but the uid."""
    records = [(data, raw) for _, data, raw in FIXTURE_RECORDS]
    assert len(records) > 100
    headers = {"x-github-event": "push", "content-type": "application/json"}
    assert_same_events(template_id, records, headers)
    assert_same_events(template_id, [(data, None) for data, _ in records], headers)
    assert_same_events(template_id, [(data, raw if n % 2 else None) for n, (data, raw) in enumerate(records)], {})


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(templates())),
       st.lists(st.tuples(st.dictionaries(st.sampled_from(["id", "title", "time", "event", "severity", "x", "big"]),
                                          values | st.integers(2**64, 2**70), max_size=5),
                          st.none() | st.text(max_size=8)), max_size=6))
def test_events_of_generated_batches_made_alike(template_id: str, records: list[tuple[Any, Any]]) -> None:
    """Generated records (any JSON value, integers past 64 bits that orjson refuses, records with
    and without their own text) under every template."""
    assert_same_events(template_id, records, {})


class RecordingSink:
    """A sink that keeps what it is handed, durable at once."""

    def __init__(self) -> None:
        self.records: list[SinkRecord] = []

    def write(self, records: Sequence[SinkRecord]) -> Deferred[None]:
        self.records.extend(records)
        return succeed(None)


@pytest.mark.parametrize("template_id", ["generic-json", "splunk-hec", "aws-sns"])
def test_published_records_are_the_sink_records_of_the_events(template_id: str) -> None:
    """What the pipeline hands the sink for every fixture record (plain templates and one with an
    envelope) is a L{SinkRecord} per event, its fields those a plain C{SinkRecord(…)} takes."""
    sink, template = RecordingSink(), templates()[template_id]
    records = [Record(data, raw) for _, data, raw in FIXTURE_RECORDS]
    headers = {"x-github-event": "push"}
    published = []
    Pipeline(sink, Metrics()).publish(template, "tenant", "webhook", records, 1778230800.0, headers) \
        .addCallback(published.append)
    values = event_values_one_by_one(template, "tenant", "webhook", records, 1778230800.0, headers)
    assert published == [len(values)]
    plain = [SinkRecord("tenant", template_id, "webhook", 1778230800.0, value) for value in values]
    assert [(type(record), *record[:4], comparable(json.loads(record.value))) for record in sink.records] == \
        [(SinkRecord, *record[:4], comparable(json.loads(record.value))) for record in plain]
