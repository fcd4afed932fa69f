"""
Templates: load-time validation, applying them to records, and the bundled templates on real payloads.

Every event produced here must pass our OCSF checker and, when C{../shared} is present, the
workspace's reference validator too.
"""
from __future__ import annotations

import json
import runpy
import textwrap
from functools import cache
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aisoc_inboxd.normalizer import (
    IngestContext,
    Template,
    TemplateError,
    load_template_file,
    load_templates,
    normalize,
    validate_event,
)
from aisoc_inboxd.normalizer.apply import normalize_record
from aisoc_inboxd.normalizer.timeparse import to_epoch_ms
from tests.support.shared import FIXTURES, PROJECT, SHARED, require_shared

TEMPLATES = PROJECT / "templates"
WEBHOOKS = FIXTURES / "webhooks"
REFERENCE_VALIDATOR = SHARED / "ocsf" / "validate"
RECEIVED_AT = 1778230900.25  # 2026-05-08T09:01:40.250Z
CONTEXT = IngestContext(tenant_id="tenant-1", route="webhook", received_at=RECEIVED_AT)


@cache
def _reference() -> Any:
    """
    The workspace's reference validator, or C{None} outside the workspace.
    """
    if not REFERENCE_VALIDATOR.exists():
        return None
    return runpy.run_path(str(REFERENCE_VALIDATOR))["Validator"]()


def _assert_valid(event: dict[str, Any]) -> dict[str, Any]:
    assert validate_event(event) == [], json.dumps(event)[:2000]
    reference = _reference()
    if reference is not None:
        result = reference.validate(event)
        assert result.valid, result.errors
    _assert_no_nulls(event)
    return event


def _assert_no_nulls(value: Any, path: str = "") -> None:
    assert value is not None, f"null at {path}"
    if isinstance(value, dict):
        for key, item in value.items():
            _assert_no_nulls(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _assert_no_nulls(item, f"{path}[{index}]")


def _write(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def _template(tmp_path: Path, body: str, name: str = "t") -> Template:
    header = f"""\
        id: {name}
        vendor_name: Acme
        product_name: Acme Alerts
        class_uid: 2004
        class_name: Detection Finding
        activity_id: 1
        """
    return load_template_file(_write(tmp_path, name, textwrap.dedent(header) + textwrap.dedent(body)))


def _bundled(template_id: str) -> Template:
    return load_template_file(TEMPLATES / f"{template_id}.yaml")


def _fixture(vendor: str, name: str) -> dict[str, Any]:
    return json.loads((WEBHOOKS / vendor / name).read_text())


# ----------------------------------------------------------------- time parsing

@pytest.mark.parametrize(("value", "expected"), [
    ("2026-05-08T09:00:00Z", 1778230800000),
    ("2026-05-08T09:00:00+00:00", 1778230800000),
    ("2026-05-08T11:00:00+02:00", 1778230800000),
    ("2015-07-17T08:42:58.315+0000", 1437122578315),
    ("2026-05-08T09:00:00.123456789Z", 1778230800123),
    ("2026-05-08 09:00:00", 1778230800000),
    ("Fri, 08 May 2026 09:00:00 GMT", 1778230800000),
    ("Fri, 08 May 2026 11:00:00 +0200", 1778230800000),
    (1778230800, 1778230800000),
    (1778230800.5, 1778230800500),
    (1778230800123, 1778230800123),
    (1778230800123456, 1778230800123),
    (1778230800123456789, 1778230800123),
    ("1778230800", 1778230800000),
    ("1778230800123", 1778230800123),
    ("1778230800123456789", 1778230800123),
    ("1778230800.25", 1778230800250),
    ("garbage", None),
    ("", None),
    ("2026-13-45T00:00:00Z", None),
    (5, None),
    (True, None),
    (None, None),
    ({"at": 1}, None),
    (float("inf"), None),
])
def test_time_parsing(value: Any, expected: int | None) -> None:
    """ISO 8601, RFC 1123 and epoch s/ms/µs/ns (numbers or strings) become epoch ms; junk is None."""
    assert to_epoch_ms(value) == expected


def test_time_field_sets_time_and_keeps_the_raw_value(tmp_path: Path) -> None:
    """The parsed time field becomes time in ms and its raw text metadata.original_time."""
    template = _template(tmp_path, "time_field: alert.at\n")
    event = _assert_valid(normalize(template, {"alert": {"at": "2026-05-08T11:00:00+02:00"}}, CONTEXT))
    assert event["time"] == 1778230800000
    assert event["metadata"]["original_time"] == "2026-05-08T11:00:00+02:00"
    assert "unmapped" not in event


def test_unparseable_or_missing_time_falls_back_to_receive_time(tmp_path: Path) -> None:
    """Without a parseable time the event gets the receive time; a bad raw value is kept."""
    template = _template(tmp_path, "time_field: at\n")
    missing = _assert_valid(normalize(template, {}, CONTEXT))
    bad = _assert_valid(normalize(template, {"at": "yesterday-ish"}, CONTEXT))
    assert missing["time"] == bad["time"] == 1778230900250
    assert "original_time" not in missing["metadata"]
    assert bad["metadata"]["original_time"] == "yesterday-ish"
    assert bad["unmapped"] == {"at": "yesterday-ish"}


def test_time_field_list_takes_the_first_parseable_candidate(tmp_path: Path) -> None:
    """time_field may list candidates; the first one that parses wins and is consumed."""
    template = _template(tmp_path, "time_field: [missing, bad, good, later]\n")
    event = _assert_valid(normalize(
        template, {"bad": "soon", "good": 1778230800, "later": 1437122578315}, CONTEXT))
    assert event["time"] == 1778230800000
    assert event["unmapped"] == {"bad": "soon", "later": 1437122578315}


# --------------------------------------------------------------------- severity

SEVERITY_TEMPLATE = """\
    severity_field: [prio, level]
    severity_map:
      P1: 5
      high: 4
      3: 3
    """


@pytest.mark.parametrize(("record", "severity_id", "severity"), [
    ({"prio": "P1"}, 5, "Critical"),
    ({"prio": "p1"}, 5, "Critical"),
    ({"level": "HIGH"}, 4, "High"),
    ({"prio": 3}, 3, "Medium"),
    ({"prio": "SEV-9", "level": "high"}, 4, "High"),
    ({"prio": "SEV-9"}, 99, "SEV-9"),
    ({"prio": None}, 0, "Unknown"),
    ({}, 0, "Unknown"),
])
def test_severity_map(tmp_path: Path, record: dict[str, Any], severity_id: int, severity: str) -> None:
    """Mapped values give their severity_id and caption; unknown ones 99 Other with the raw value;
    none gives 0 Unknown."""
    event = _assert_valid(normalize(_template(tmp_path, SEVERITY_TEMPLATE), record, CONTEXT))
    assert (event["severity_id"], event["severity"]) == (severity_id, severity)


#: the words issue 16.7 names, as senders spell them, and the severity_id each must give
COMMON_SEVERITY_WORDS = [
    ("informational", 1), ("INFO", 1), ("debug", 1), ("Low", 2), ("medium", 3), ("Moderate", 3),
    ("warning", 3), ("WARN", 3), ("High", 4), ("error", 4), ("ERROR", 4), ("critical", 5), ("Fatal", 6),
]


@pytest.mark.parametrize(("word", "severity_id"), COMMON_SEVERITY_WORDS)
def test_common_severity_words_need_no_map(tmp_path: Path, word: str, severity_id: int) -> None:
    """A severity_field alone understands the common severity words, in any case."""
    event = _assert_valid(normalize(_template(tmp_path, "severity_field: log_level\n"), {"log_level": word}, CONTEXT))
    assert event["severity_id"] == severity_id
    assert "log_level" not in event.get("unmapped", {})


def test_the_template_map_wins_over_the_common_words(tmp_path: Path) -> None:
    """A word the template's severity_map lists means what the template says."""
    template = _template(tmp_path, "severity_field: s\nseverity_map: {low: 3, P1: 5}\n")
    assert normalize(template, {"s": "LOW"}, CONTEXT)["severity_id"] == 3
    assert normalize(template, {"s": "high"}, CONTEXT)["severity_id"] == 4


def test_a_star_key_makes_the_map_the_whole_table(tmp_path: Path) -> None:
    """With "*" in severity_map, every value it does not list gets that id: the common words do not apply."""
    template = _template(tmp_path, 'severity_field: s\nseverity_map: {P1: 5, "*": 99}\n')
    assert (normalize(template, {"s": "p1"}, CONTEXT)["severity_id"]) == 5
    event = _assert_valid(normalize(template, {"s": "High"}, CONTEXT))
    assert (event["severity_id"], event["severity"]) == (99, "High")


def test_every_bundled_template_that_reads_a_severity_maps_the_common_words() -> None:
    """Each bundled template with a severity_field (except CEF, whose standard fixes its words) maps them."""
    readers = [path.stem for path in sorted(TEMPLATES.glob("*.yaml")) if _bundled(path.stem).severity_field]
    assert len(readers) >= 10
    for template_id in readers:
        compiled = _bundled(template_id).compiled
        if compiled.severity_otherwise is not None:
            assert template_id == "cef-syslog"
            continue
        for word, severity_id in COMMON_SEVERITY_WORDS:
            assert compiled.severity_lookup.get(word.casefold()) == severity_id, (template_id, word)


def test_used_severity_field_is_consumed(tmp_path: Path) -> None:
    """The severity value used is not repeated in unmapped; an unused candidate stays there."""
    event = normalize(_template(tmp_path, SEVERITY_TEMPLATE), {"prio": "X", "level": "high"}, CONTEXT)
    assert event["unmapped"] == {"prio": "X"}


# ------------------------------------------------------------ field_map and stamping

def test_metadata_merge_never_clobbers_version_or_uid(tmp_path: Path) -> None:
    """metadata.* constants and mapped fields merge into metadata; version/uid/tenant stay ours."""
    template = _template(tmp_path, """\
        field_map:
          id: metadata.uid
          tenant: metadata.tenant_uid
        constants:
          metadata.version: "1.0.0"
          metadata.product.feature.name: alerts
          metadata.labels: [pushed]
        """)
    event = _assert_valid(normalize(template, {"id": "theirs", "tenant": "other"}, CONTEXT))
    metadata = event["metadata"]
    assert metadata["version"] == "1.8.0"
    assert metadata["uid"] != "theirs" and len(metadata["uid"]) == 36
    assert metadata["tenant_uid"] == "tenant-1"
    assert metadata["product"] == {"vendor_name": "Acme", "name": "Acme Alerts",
                                   "feature": {"name": "alerts"}}
    assert metadata["labels"] == ["pushed"]
    assert (metadata["log_provider"], metadata["log_name"], metadata["logged_time"]) == (
        "aisoc-inboxd", "t", 1778230900250)


def test_stamped_class_attributes(tmp_path: Path) -> None:
    """Class, category, activity and type come from the template and OCSF captions."""
    event = _assert_valid(normalize(_template(tmp_path, ""), {}, CONTEXT))
    assert {k: event[k] for k in ("class_uid", "class_name", "category_uid", "category_name",
                                  "activity_id", "activity_name", "type_uid", "type_name")} == {
        "class_uid": 2004, "class_name": "Detection Finding", "category_uid": 2,
        "category_name": "Findings", "activity_id": 1, "activity_name": "Create",
        "type_uid": 200401, "type_name": "Detection Finding: Create"}
    assert (event["status_id"], event["status"], event["is_alert"]) == (1, "New", True)
    assert event["finding_info"] == {"uid": event["metadata"]["uid"], "title": "Acme Alerts"}


def test_unmapped_keeps_nesting_of_what_was_not_consumed(tmp_path: Path) -> None:
    """Fields not consumed by field_map/severity/time stay under unmapped with their nesting."""
    template = _template(tmp_path, """\
        field_map:
          alert.id: finding_info.uid
          alert.host.name: unmapped.host_name
        """)
    record = {"alert": {"id": "a1", "host": {"name": "h1", "ip": "10.0.0.1"}, "tags": ["x", None]},
              "extra": None, "empty": {}}
    event = _assert_valid(normalize(template, record, CONTEXT))
    assert event["unmapped"] == {"host_name": "h1",
                                 "alert": {"host": {"ip": "10.0.0.1"}, "tags": ["x"]},
                                 "empty": {}}


def test_raw_data_is_the_given_text_or_the_record_as_json(tmp_path: Path) -> None:
    """raw_data is the intake's raw text when given, else the record re-serialised as JSON."""
    template = _template(tmp_path, "")
    record = {"a": 1, "b": "é"}
    given_raw = IngestContext("tenant-1", "webhook", RECEIVED_AT, raw='{"a":1, "b":"\\u00e9"}')
    assert normalize(template, record, given_raw)["raw_data"] == '{"a":1, "b":"\\u00e9"}'
    assert json.loads(normalize(template, record, CONTEXT)["raw_data"]) == record


def test_values_are_converted_to_the_target_type(tmp_path: Path) -> None:
    """Strings become integers/booleans/timestamps where OCSF wants them; misfits stay unmapped."""
    template = _template(tmp_path, """\
        field_map:
          port: evidences.src_endpoint.port
          ip: evidences.src_endpoint.ip
          bad_port: evidences.dst_endpoint.port
          dst: evidences.dst_endpoint.hostname
          alert: is_alert
          created: finding_info.created_time
          number: finding_info.uid
          tags: finding_info.types
          confidence: confidence_id
          score: confidence_score
        """)
    record = {"port": "443", "ip": "203.0.113.7", "bad_port": "https", "dst": "db1",
              "alert": "false", "created": "1778230800", "number": 23, "tags": "one",
              "confidence": "3", "score": "87"}
    event = _assert_valid(normalize(template, record, CONTEXT))
    assert event["evidences"] == [{"src_endpoint": {"port": 443, "ip": "203.0.113.7"},
                                   "dst_endpoint": {"hostname": "db1"}}]
    assert event["is_alert"] is False
    assert event["finding_info"]["created_time"] == 1778230800000
    assert event["finding_info"]["uid"] == "23"
    assert event["finding_info"]["types"] == ["one"]
    assert (event["confidence_id"], event["confidence"], event["confidence_score"]) == (3, "High", 87)
    assert event["unmapped"] == {"bad_port": "https"}


@pytest.mark.parametrize("interpret", [True, False], ids=["interpreted", "compiled"])
def test_a_number_attribute_takes_any_integer(tmp_path: Path, interpret: bool) -> None:
    """An integer too large for a float is still a number (JSON allows any digits): mapped as sent,
    as an integer attribute takes it, not an OverflowError out of the finite check."""
    template = _template(tmp_path, """\
        field_map:
          lat: device.location.lat
          long: device.location.long
        """)
    [event] = normalize_record(template, {"lat": 10 ** 400, "long": float("inf")}, CONTEXT, interpret=interpret)
    assert event["device"]["location"] == {"lat": 10 ** 400}
    assert event["unmapped"] == {"long": float("inf")}


def test_first_present_source_of_a_target_wins(tmp_path: Path) -> None:
    """Several sources may map to one target: the first present one in file order is used."""
    template = _template(tmp_path, """\
        field_map:
          title: finding_info.title
          name: finding_info.title
        """)
    assert normalize(template, {"name": "n"}, CONTEXT)["finding_info"]["title"] == "n"
    both = normalize(template, {"title": "t", "name": "n"}, CONTEXT)
    assert both["finding_info"]["title"] == "t"
    assert both["unmapped"] == {"name": "n"}


# ---------------------------------------------------------- spec-shape templates

def test_spec_example_template_loads_with_documented_rewrites() -> None:
    """The spec's example template loads; url and source_type are rewritten to OCSF 1.8.0 paths."""
    template = load_template_file(FIXTURES / "templates" / "my-vendor.yaml")
    assert template.field_map["alert.url"] == "finding.src_url"
    assert dict(template.rewritten) == {"url": "finding.src_url", "source_type": "metadata.source"}
    assert template.constants == {"metadata.source": "my-vendor", "metadata.product.feature.name": "alerts"}


def test_spec_example_template_emits_valid_ocsf() -> None:
    """A record in the spec example's shape becomes a valid 2001 event with state, title and uid."""
    template = load_template_file(FIXTURES / "templates" / "my-vendor.yaml")
    record = {"alert": {"id": "a-1", "message": "Impossible travel", "url": "https://v.example/a/1",
                        "priority": "P2", "created_at": 1732658400, "owner": "soc"}}
    event = _assert_valid(normalize(template, record, CONTEXT))
    assert event["finding"] == {"uid": "a-1", "src_url": "https://v.example/a/1",
                                "title": "Impossible travel"}
    assert (event["state_id"], event["state"]) == (1, "New")
    assert (event["severity_id"], event["severity"]) == (4, "High")
    assert event["time"] == 1732658400000
    assert event["metadata"]["source"] == "my-vendor"
    assert event["unmapped"] == {"alert": {"owner": "soc"}}


def test_spec_example_without_anything_still_validates() -> None:
    """An empty record under the spec's 2001 template still gets the required finding defaults."""
    template = load_template_file(FIXTURES / "templates" / "my-vendor.yaml")
    event = _assert_valid(normalize(template, {}, CONTEXT))
    assert event["finding"] == {"uid": event["metadata"]["uid"], "title": "My Vendor Cloud"}


ATTACHMENTS = [{"Name": "invoice.pdf", "ContentType": "application/pdf", "ContentLength": 4242},
               {"Name": "logo.png", "ContentType": "image/png"}]


def test_spec_evidence_file_in_2001_goes_to_json_evidence(tmp_path: Path) -> None:
    """finding.evidence.file in a 2001 template lands, verbatim, in the json_t evidence."""
    path = _write(tmp_path, "legacy", """\
        id: legacy
        vendor_name: Mail
        product_name: Relay
        class_uid: 2001
        class_name: Security Finding
        activity_id: 1
        field_map:
          Subject: finding.title
          Attachments: finding.evidence.file
        """)
    template = load_template_file(path)
    assert template.field_map["Attachments"] == "evidence.file"
    event = _assert_valid(normalize(template, {"Subject": "s", "Attachments": ATTACHMENTS}, CONTEXT))
    assert event["evidence"] == {"file": ATTACHMENTS}


def test_spec_evidence_file_in_2004_becomes_one_evidence_per_file(tmp_path: Path) -> None:
    """Without an e-mail, each attachment becomes an evidences[] entry holding an OCSF file."""
    template = _template(tmp_path, "field_map:\n  Attachments: finding.evidence.file\n")
    assert template.field_map["Attachments"] == "evidences[].file"
    event = _assert_valid(normalize(template, {"Attachments": ATTACHMENTS}, CONTEXT))
    assert event["evidences"] == [
        {"file": {"name": "invoice.pdf", "type_id": 1, "mime_type": "application/pdf", "size": 4242}},
        {"file": {"name": "logo.png", "type_id": 1, "mime_type": "image/png"}}]


def test_spec_evidence_file_in_2004_with_email_becomes_email_files(tmp_path: Path) -> None:
    """With the e-mail's sender mapped, attachments become evidences[0].email.files[]."""
    template = _template(tmp_path, """\
        field_map:
          From: evidences[0].email.from
          Attachments: finding.evidence.file
        """)
    assert template.field_map["Attachments"] == "evidences[0].email.files[]"
    record = {"From": "Alice <alice@example.com>", "Attachments": ["a.txt", "b.txt"]}
    event = _assert_valid(normalize(template, record, CONTEXT))
    assert event["evidences"] == [{"email": {"from": "alice@example.com", "files": [
        {"name": "a.txt", "type_id": 1}, {"name": "b.txt", "type_id": 1}]}}]


# ------------------------------------------------------------- load-time errors

BASE = {
    "id": "bad", "vendor_name": "Acme", "product_name": "Acme Alerts", "class_uid": 2004,
    "class_name": "Detection Finding", "activity_id": 1,
}


_DROP = object()


def _yaml(**changes: Any) -> str:
    document = {k: v for k, v in {**BASE, **changes}.items() if v is not _DROP}
    return json.dumps(document)  # JSON is YAML


@pytest.mark.parametrize(("text", "key", "fragment"), [
    ("id: bad\nfield_map: {a: b\n", "(yaml)", "line 3"),
    ("- just\n- a list\n", "(document)", "mapping"),
    (_yaml(colour="red"), "colour", "unknown key"),
    (_yaml(vendor_name=_DROP), "vendor_name", "required key missing"),
    (_yaml(id="other"), "id", "file name"),
    (_yaml(class_uid=9999), "class_uid", "unknown class 9999"),
    (_yaml(class_uid="2004"), "class_uid", "integer"),
    (_yaml(class_name="Security Finding"), "class_name", "Detection Finding"),
    (_yaml(activity_id=7), "activity_id", "not an activity"),
    (_yaml(field_map={"a..b": "message"}), "field_map.a..b", "malformed source path"),
    (_yaml(field_map={"a": "finding_info..uid"}), "field_map.a", "malformed target path"),
    (_yaml(field_map={"a": "finding_info.nope"}), "field_map.a", "not an attribute path"),
    (_yaml(field_map={"a": "action_id"}), "field_map.a", "not an attribute path"),
    (_yaml(field_map={"a": "finding_info"}), "field_map.a", "is an object"),
    (_yaml(field_map={"a": "severity_id"}), "field_map.a", "stamped"),
    (_yaml(field_map={"a": "message[]"}), "field_map.a", "not an array"),
    (_yaml(field_map={"a": "unmapped.x", "b": "unmapped.x.y"}), "field_map.a", "contains another"),
    (_yaml(field_map={"a": 5}), "field_map.a", "dotted path"),
    (_yaml(severity_map={"P1": 5}), "severity_field", "severity_map needs a severity_field"),
    (_yaml(severity_field="s", severity_map={"P1": 7}), "severity_map.P1", "not an OCSF severity_id"),
    (_yaml(severity_field="s", severity_map={"P1": "5"}), "severity_map.P1", "not an OCSF severity_id"),
    (_yaml(severity_field="s", severity_map={"hi": 4, "HI": 5}), "severity_map.HI", "case"),
    (_yaml(time_field=["ok", ""]), "time_field[1]", "non-empty"),
    (_yaml(time_field={"a": 1}), "time_field", "source path"),
    (_yaml(constants={"status_id": "new"}), "constants.status_id", "not a valid value"),
    (_yaml(constants={"nope": 1}), "constants.nope", "not an attribute path"),
    (_yaml(constants={"metadata.profiles": ["no_such"]}), "constants.metadata.profiles", "does not apply"),
    (_yaml(field_map={"m": "message"}, constants={"message": "x"}), "constants.message", "also a field_map"),
])
def test_load_errors_name_the_file_and_the_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    """Every kind of template mistake is a TemplateError naming the file and the offending key."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TemplateError) as caught:
        load_template_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert fragment in message, message


def test_profile_constants_unlock_profile_targets(tmp_path: Path) -> None:
    """Declaring a profile in constants makes its attributes valid targets and declares it."""
    template = _template(tmp_path, """\
        field_map:
          act: action_id
        constants:
          metadata.profiles: [security_control]
          disposition_id: 2
        """)
    event = _assert_valid(normalize(template, {"act": "2"}, CONTEXT))
    assert (event["action_id"], event["action"]) == (2, "Denied")
    assert (event["disposition_id"], event["disposition"]) == (2, "Blocked")
    assert event["metadata"]["profiles"] == ["security_control"]


def test_later_directories_override_earlier_ones_by_id(tmp_path: Path) -> None:
    """A template in a later directory replaces the one with the same id from an earlier one."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    for directory, product in ((first, "One"), (second, "Two")):
        (directory / "acme.yaml").write_text(_yaml(id="acme", product_name=product))
    (first / "README.md").write_text("not a template")
    templates = load_templates([first, second])
    assert list(templates) == ["acme"]
    assert templates["acme"].product_name == "Two"


def test_duplicate_ids_in_one_directory_are_an_error(tmp_path: Path) -> None:
    """Two files with the same id in one directory block loading, naming the file and id."""
    (tmp_path / "acme.yaml").write_text(_yaml(id="acme"))
    (tmp_path / "acme.yml").write_text(_yaml(id="acme"))
    with pytest.raises(TemplateError, match=r"acme\.yml: id: duplicate template id"):
        load_templates([tmp_path])


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    """A configured template directory that does not exist is reported, not skipped."""
    with pytest.raises(TemplateError, match="does not exist"):
        load_templates([tmp_path / "nowhere"])


# ------------------------------------------------------------ bundled templates

def test_bundled_templates_load() -> None:
    """Every bundled template loads and its file name equals its id."""
    templates = load_templates([TEMPLATES])
    assert {"generic-json", "pagerduty"} <= set(templates)
    for template_id, template in templates.items():
        assert template.source is not None and template.source.stem == template_id


def test_pagerduty_spec_example() -> None:
    """The spec's example body comes out with its title, uid, High severity and occurred_at time."""
    record = _fixture("generic-json", "aisoc-spec-incident-triggered.json")
    event = _assert_valid(normalize(_bundled("pagerduty"), record, CONTEXT))
    assert event["finding_info"]["title"] == "Database CPU > 90%"
    assert event["finding_info"]["uid"] == "Q1234ABCD"
    assert (event["severity_id"], event["severity"]) == (4, "High")
    assert event["time"] == 1778230800000
    assert event["metadata"]["original_time"] == "2026-05-08T09:00:00Z"
    assert event["metadata"]["event_code"] == "incident.triggered"
    assert event["resources"] == [{"name": "prod-postgres"}]
    assert "unmapped" not in event


def test_pagerduty_v3_incident_uses_priority_then_urgency() -> None:
    """A v3 incident with priority P1 is Critical, with its link, creation time and incident key."""
    event = _assert_valid(normalize(_bundled("pagerduty"),
                                    _fixture("pagerduty", "v3-incident-triggered.json"), CONTEXT))
    info = event["finding_info"]
    assert (info["uid"], info["title"]) == ("PGR0VU2", "A little bump in the road")
    assert info["src_url"] == "https://acme.pagerduty.com/incidents/PGR0VU2"
    assert info["created_time"] == 1586445387000
    assert (event["severity_id"], event["severity"]) == (5, "Critical")
    assert event["time"] == 1601664322169
    assert event["metadata"]["original_event_uid"] == "5ac64822-4adc-4fda-ade0-410becf0de4f"
    assert event["unmapped"]["event"]["data"]["urgency"] == "high"
    assert "resolve_reason" not in event["unmapped"]["event"]["data"]


def test_pagerduty_events_api_v2_body() -> None:
    """An Events API v2 trigger maps its summary, dedup key, severity and payload timestamp."""
    event = _assert_valid(normalize(_bundled("pagerduty"),
                                    _fixture("pagerduty", "events-v2-trigger.json"), CONTEXT))
    assert event["finding_info"]["title"] == "Example alert on host1.example.com"
    assert event["finding_info"]["uid"] == "samplekeyhere"
    assert (event["severity_id"], event["severity"]) == (1, "Informational")
    assert event["time"] == 1437122578315


def test_generic_json_picks_common_fields() -> None:
    """generic-json maps common id/title/severity/time fields and keeps the rest unmapped."""
    record = {"id": 42, "title": "Disk full", "severity": "Critical", "@timestamp": "2026-05-08T09:00:00Z",
              "host": {"name": "db1"}}
    event = _assert_valid(normalize(_bundled("generic-json"), record, CONTEXT))
    assert event["finding_info"] == {"uid": "42", "title": "Disk full"}
    assert (event["severity_id"], event["time"]) == (5, 1778230800000)
    assert event["unmapped"] == {"host": {"name": "db1"}}


def _batch() -> Iterator[dict[str, Any]]:
    text = (WEBHOOKS / "generic-json" / "ndjson-batch-mixed-vendors.ndjson").read_text()
    return (json.loads(line) for line in text.splitlines() if line.strip())


def test_generic_json_on_a_mixed_vendor_batch() -> None:
    """Every record of a mixed-vendor NDJSON batch becomes a valid event, big integers intact."""
    events = [_assert_valid(normalize(_bundled("generic-json"), r, CONTEXT)) for r in _batch()]
    assert len(events) == 4
    opsgenie = events[0]
    assert opsgenie["finding_info"]["uid"] == "052652ac-5d1c-464a-812a-7dd18bbfba8c"
    assert opsgenie["time"] == 1420452191104
    assert opsgenie["unmapped"]["alert"]["updatedAt"] == 1420452224764002246


def _every_fixture_event() -> Iterator[tuple[str, dict[str, Any]]]:
    for template_id in ("generic-json", "pagerduty"):
        template = _bundled(template_id)
        for path in sorted((WEBHOOKS / "pagerduty").glob("*.json")):
            yield f"{template_id}/{path.name}", normalize(template, json.loads(path.read_text()), CONTEXT)
        for index, record in enumerate(_batch()):
            yield f"{template_id}/batch[{index}]", normalize(template, record, CONTEXT)
    spec = load_template_file(FIXTURES / "templates" / "my-vendor.yaml")
    yield "my-vendor", normalize(spec, {"alert": {"id": "1", "url": "https://x.example/1"}}, CONTEXT)


def test_every_fixture_event_is_valid() -> None:
    """Both bundled templates turn every fixture payload into a valid OCSF event."""
    for name, event in _every_fixture_event():
        assert validate_event(event) == [], name


def test_reference_validator_accepts_every_fixture_event() -> None:
    """The workspace's reference validator agrees that every fixture event is valid."""
    require_shared(REFERENCE_VALIDATOR)
    reference = _reference()
    for name, event in _every_fixture_event():
        result = reference.validate(event)
        assert result.valid, (name, result.errors)


JSON_LEAVES = st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False) | st.text()
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12)
GENERIC_KEYS = st.sampled_from(["id", "title", "severity", "timestamp", "time", "url", "tags",
                                "message", "alert", "event", "description", "priority", "other"])


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(GENERIC_KEYS, JSON_VALUES, max_size=6))
def test_generic_json_always_emits_valid_ocsf(record: dict[str, Any]) -> None:
    """Whatever JSON object arrives, generic-json emits a valid, null-free OCSF event."""
    _assert_valid(normalize(_bundled("generic-json"), record, CONTEXT))
