"""
The generated template functions (L{aisoc_inboxd.normalizer.codegen}) against the reference
interpreter (L{aisoc_inboxd.normalizer.apply.normalize}): every bundled template, the plugin
templates the suite uses and templates written here for each feature of the language, over every
fixture record (webhooks, CEF, syslog, HEC, e-mail; the shared corpus too when present) and over
hypothesis-generated records shaped after each template's own source paths and words (missing
fields, nulls, wrong types, unicode, nested junk, lists where scalars are expected). The events
must be equal field for field and in the same key order; only the event uid (C{metadata.uid}, and
the finding uid defaulted from it) may differ.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
import textwrap
from functools import cache
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisoc_inboxd.formats.cef import CefError, cef_lines
from aisoc_inboxd.formats.cef_records import split_cef_lines
from aisoc_inboxd.formats.email.mime import parse_mime
from aisoc_inboxd.formats.email.relays import decode_email_body
from aisoc_inboxd.formats.hec import HecError, parse_event_body, parse_raw_body
from aisoc_inboxd.formats.json_body import BodyError, decode_json_records
from aisoc_inboxd.normalizer import IngestContext, Template, load_template_file, load_templates, normalize_record
from aisoc_inboxd.normalizer.severity import COMMON_WORDS
from aisoc_inboxd.formats.syslog_records import frame_record
from tests.support.shared import CORPUS, FIXTURES, PROJECT
from tests.support.templates import detection_template

NOW = 1778230800.0
HEADER = """\
id: {id}
vendor_name: Acme
product_name: Acme Alerts
class_uid: {class_uid}
class_name: {class_name}
activity_id: {activity_id}
"""
#: templates for the language's features that no bundled template uses in this combination
FEATURES = {
    "aligned-and-append": (2004, "Detection Finding", 1, """
        field_map:
          items.name: "evidences[*].user.name"
          items.id: "evidences[*].user.uid"
          tags: "finding_info.types[]"
          hosts.name: "resources[].name"
          first.ip: "evidences[0].src_endpoint.ip"
          score: finding_info.title
          alt_score: finding_info.title
          level: [risk_level_id, finding_info.desc]
          state: status_id
          extra: unmapped.extra
          blob: enrichments[].data
        constants:
          confidence_id: 2
          finding_info.analytic.type_id: 1
          metadata.labels: [a, b]
        severity_field: [sev, alt.sev]
        severity_map: {crit: 5, "3": 3, "*": 99}
        time_field: [ts, alt.ts]
        time_formats: ["%d/%m/%Y %H:%M"]
        """),
    "headers-transforms-activity": (2004, "Detection Finding", 1, """
        field_map:
          header:X-Event: metadata.event_code
          id: finding_info.uid
          name: finding_info.title
          country: "finding_info.src_url"
          list.text: message
          num: count
        transforms:
          name: [trim, uppercase]
          country: [lowercase, {map: {de: "https://de.example", "*": "https://other.example"}}]
          list.text: {join: " | "}
          num: int
          state: [trim, {map: {open: 1, closed: 4}}]
        activity_field: [action, header:X-Action]
        activity_map: {create: 1, update: 2, close: 3}
        severity_field: level
        time_field: when
        """),
    "variants": (0, "Base Event", 0, """
        extract:
          word: {from: [text, "header:X-Event", other.text], pattern: '(?i)kind=(?P<value>\\w+)'}
        class_field: [extracted.word, kind]
        classes:
          logon: {class_uid: 3002, class_name: Authentication, activity_id: 1,
                  field_map: {user: user.name, ip: src_endpoint.ip, outcome: status_id}}
          finding: {class_uid: 2004, class_name: Detection Finding, activity_id: 1,
                    field_map: {title: finding_info.title}, activity_field: act,
                    activity_map: {close: 3, new: 1}}
          "7": {class_uid: 2001, class_name: Security Finding, activity_id: 3}
        field_map:
          message: message
          extracted.word: metadata.event_code
        severity_field: severity
        time_field: time
        """),
}
#: source keys that would be code if the generator pasted template text into its source
HOSTILE_KEYS = ("it's \"quoted\"\\\n\\", "'); import os; ('", "ünï\u2028cödé", '"""sev', "a'''b")
QUOTED_KEYS = yaml.safe_dump({
    "field_map": {HOSTILE_KEYS[0]: "message", f"{HOSTILE_KEYS[1]}.x": "finding_info.title",
                  f"{HOSTILE_KEYS[2]}.{{k}}": "finding_info.uid"},
    "transforms": {f"{HOSTILE_KEYS[1]}.x": ["trim"]},
    "severity_field": HOSTILE_KEYS[3],
    "time_field": HOSTILE_KEYS[4],
})
WORDS = ("", " ", "0", "1", "3", "7", "99", "1e3", "-1", "true", "null", "crit", "High", "CLOSE", "new",
         "logon", "finding", "Finding", "kind=logon", "kind=finding now", "443", "10.0.0.1", "a@b.example",
         "2026-05-08T09:00:00Z", "08/05/2026 09:00", "1778230800", "ⓤnicode ☃", "\x00", "de", " open ")


@cache
def templates() -> dict[str, Template]:
    """
    The bundled templates, the plugin templates of the suite and the feature templates above.
    """
    loaded = dict(load_templates([PROJECT / "templates"]))
    loaded["my-vendor"] = load_template_file(FIXTURES / "templates" / "my-vendor.yaml")
    written = {"detection": detection_template("detection")}
    for name, (class_uid, class_name, activity_id, body) in FEATURES.items():
        written[name] = HEADER.format(id=name, class_uid=class_uid, class_name=class_name,
                                      activity_id=activity_id) + textwrap.dedent(body)
    written["quoted-keys"] = HEADER.format(id="quoted-keys", class_uid=2004, class_name="Detection Finding",
                                           activity_id=1) + QUOTED_KEYS
    with tempfile.TemporaryDirectory() as directory:
        for name, text in written.items():
            path = Path(directory) / f"{name}.yaml"
            path.write_text(text)
            loaded[name] = load_template_file(path)
    return loaded


def fixture_records() -> Iterator[tuple[str, dict[str, Any], str | None]]:
    """
    (name, record, raw text) of every fixture and shared corpus file, decoded the way its intake
    decodes it.
    """
    for root in (FIXTURES, CORPUS):
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.name.endswith(".expected.json") or path.suffix == ".md":
                continue
            name = str(path.relative_to(root.parent))
            for number, (data, raw) in enumerate(_decoded(path)):
                yield f"{name}#{number}", data, raw


def _decoded(path: Path) -> Iterator[tuple[dict[str, Any], str | None]]:
    body = path.read_bytes()
    kind = path.relative_to(FIXTURES if path.is_relative_to(FIXTURES) else CORPUS).parts[0]
    if path.suffix == ".json":
        try:
            yield from ((record.data, record.raw) for record in decode_json_records(body))
        except BodyError:
            pass
        if kind == "email":
            try:
                decoded = decode_email_body("application/json", "application/json", body)
            except BodyError:
                return
            yield from ((record.data, record.raw) for record in decoded.records)
    elif path.suffix == ".eml":
        yield parse_mime(body), None
    elif kind == "cef":
        for record in split_cef_lines((line for _, line in cef_lines(body)), NOW).cef:
            yield record.data, record.raw
    elif kind == "syslog":
        for line in body.splitlines():
            try:
                record = frame_record(line, NOW)
            except CefError:
                continue
            yield record.record.data, record.record.raw
    elif kind == "hec":
        try:
            yield from ((record.data, record.raw) for record in parse_event_body(body).records)
        except HecError:
            pass
        try:
            batch = parse_raw_body(body, {"host": "h", "source": "s"}, True, NOW)
        except HecError:
            return
        yield from ((record.data, record.raw) for record in (*batch.rest, *batch.cef))


FIXTURE_RECORDS = list(fixture_records())


def comparable(event: dict[str, Any]) -> str:
    """
    The event as JSON text (so key order counts too) with its uid, wherever it was copied, as C{UID}.
    """
    uid = event["metadata"]["uid"]

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: scrub(item) for key, item in value.items()}
        if isinstance(value, list):
            return [scrub(item) for item in value]
        return "UID" if value == uid and isinstance(value, str) else value

    return json.dumps(scrub(event), ensure_ascii=False)


def outcome(template: Template, record: dict[str, Any], context: IngestContext, interpret: bool) -> Any:
    try:
        return [comparable(event) for event in normalize_record(template, record, context, interpret=interpret)]
    except Exception as exc:  # noqa: BLE001 - the compiled form must fail the same way
        return ("raised", type(exc).__name__, str(exc))


def assert_same(template: Template, record: dict[str, Any], raw: str | None = None,
                headers: dict[str, str] | None = None) -> None:
    context = IngestContext("tenant", "route", NOW, raw=raw, headers=headers or {})
    compiled = outcome(template, record, context, interpret=False)
    reference = outcome(template, record, context, interpret=True)
    assert compiled == reference, f"{template.id}: {record!r}"


def test_template_text_is_never_code() -> None:
    """Source keys with quotes, backslashes and line breaks are read as the keys they are."""
    template = templates()["quoted-keys"]
    record = {HOSTILE_KEYS[0]: "m", HOSTILE_KEYS[1]: {"x": " t "}, HOSTILE_KEYS[2]: {"{k}": "u"},
              HOSTILE_KEYS[3]: "high", HOSTILE_KEYS[4]: "2026-05-08T09:00:00Z"}
    [event] = normalize_record(template, record, IngestContext("t", "r", NOW))
    assert (event["message"], event["finding_info"]["title"], event["finding_info"]["uid"]) == ("m", "t", "u")
    assert (event["severity_id"], event["time"], event.get("unmapped")) == (4, 1778230800000, None)
    assert_same(template, record)


def test_fixtures_are_read() -> None:
    """The fixture decoding finds records of every kind (so the differential tests below have work)."""
    kinds = {name.split("/")[1] for name, _, _ in FIXTURE_RECORDS}
    assert {"cef", "syslog", "hec", "email", "webhooks"} <= kinds
    assert len(FIXTURE_RECORDS) > 100


@pytest.mark.parametrize("template_id", sorted(templates()))
def test_every_fixture_under_every_template(template_id: str) -> None:
    """Each fixture record gives the same events compiled as interpreted, under every template."""
    template = templates()[template_id]
    for _, record, raw in FIXTURE_RECORDS:
        assert_same(template, record, raw)
        assert_same(template, record, None, {"x-event": "kind=logon", "x-action": "close", "x-github-event": "push"})


# -- generated records ----------------------------------------------------------------------------

def _source_paths(template: Template) -> list[tuple[str, ...]]:
    compiled = template.compiled
    sources = [rule.source.keys for rule in compiled.field_rules]
    sources += [source.keys for source in (*compiled.severity_sources, *compiled.time_sources,
                                           *compiled.activity_sources, *compiled.class_sources)]
    sources += list(compiled.reader.transforms)
    for variant in compiled.variants.values():
        sources += _source_paths(variant)
    return [keys for keys in dict.fromkeys(sources) if keys[0] != ""]


def test_nested_candidates_under_every_top_level_key() -> None:
    """
    The nested candidates under a top-level key (C{alert.id}, C{event.time}, read through the
    hoisted key's local in the generated body) give the same events as interpreted whether the key
    is absent, null, text, an empty object, or an object or a list of objects holding the
    candidate, alone or beside every top-level source of the template.
    """
    for template in templates().values():
        paths = _source_paths(template)
        top_level = [keys[0] for keys in paths if len(keys) == 1]
        for keys in (keys for keys in paths if len(keys) > 1):
            for value in ("high", "2026-05-08T09:00:00Z", 7):
                holding: Any = value
                for key in reversed(keys[1:]):
                    holding = {key: holding}
                for under in (None, "x", {}, holding, [None, holding]):
                    assert_same(template, {keys[0]: under})
                    assert_same(template, {**{key: value for key in top_level}, keys[0]: under})


def _words(template: Template) -> list[str]:
    compiled = template.compiled
    words = [*WORDS, *compiled.severity_lookup, *compiled.activity_lookup, *compiled.variants, *COMMON_WORDS]
    for variant in compiled.variants.values():
        words += _words(variant)
    return sorted(set(words))


def _scalars(words: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                     st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(words), st.text(max_size=12))


@st.composite
def records(draw: st.DrawFn, template: Template) -> dict[str, Any]:
    """
    A record with values at (some of) the template's own source paths, as scalars of every type,
    lists, nested junk or lists of objects on the way; plus keys it does not read.
    """
    words = _words(template)
    scalar = _scalars(words)
    junk = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.sampled_from(["a", "b", "0", "x y"]),
                                                                        inner, max_size=3)), max_leaves=6)
    record: dict[str, Any] = draw(st.dictionaries(st.text(max_size=5), junk, max_size=3))
    for keys in draw(st.lists(st.sampled_from(_source_paths(template)), max_size=12)):
        _place(draw, record, keys, draw(st.one_of(scalar, junk, st.lists(scalar, max_size=3))))
    return record


def _place(draw: st.DrawFn, node: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    """
    Put C{value} at C{keys}, crossing a list of objects on the way now and then (C{a.b} over C{a: [{b}]}).
    """
    for position, key in enumerate(keys[:-1]):
        child = node.get(key)
        if isinstance(child, list) and child and isinstance(child[-1], dict):
            node = child[-1]
            continue
        if not isinstance(child, dict):
            if draw(st.booleans()) and not keys[position + 1].isdigit():
                item: dict[str, Any] = {}
                node[key] = [draw(st.sampled_from([None, {}, "x"])), item]
                node = item
                continue
            node[key] = child = {}
        node = child
    node[keys[-1]] = value


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_generated_records_under_every_template(data: st.DataObject) -> None:
    """Records shaped after the template's own paths and words give the same events compiled as interpreted."""
    template = templates()[data.draw(st.sampled_from(sorted(templates())))]
    record = data.draw(records(template))
    headers = data.draw(st.dictionaries(st.sampled_from(["x-event", "x-action", "x-github-event",
                                                         "x-webhook-id"]), st.sampled_from(WORDS), max_size=2))
    assert_same(template, record, data.draw(st.none() | st.text(max_size=5)), headers)


def test_a_wrong_generator_is_caught() -> None:
    """The comparison sees a difference: an event the generated function altered does not pass."""
    compiled = templates()["aligned-and-append"]

    def altered(record: dict[str, Any], context: IngestContext) -> dict[str, Any]:
        event = compiled.to_event(record, context)
        event.get("unmapped", {}).pop("zzz", None)
        return event

    template = dataclasses.replace(compiled, to_event=altered)
    assert_same(template, {"items": [{"name": "n"}]})
    with pytest.raises(AssertionError):
        assert_same(template, {"zzz": 1})
