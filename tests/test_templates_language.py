"""
The template language extensions: envelope keys (decode_json, records, acknowledge_when,
idempotency_key), header sources, transforms, activity_field/activity_map, time_formats, lists
of targets, sources read through lists and aligned ([*]) targets; each checked at load with a
file: key message and applied as documented.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from aisoc_inboxd.normalizer import IngestContext, Template, TemplateError, load_template_file, normalize_record
from tests.support.ocsf import assert_valid_ocsf

HEADER = """\
    id: t
    vendor_name: Acme
    product_name: Acme Alerts
    class_uid: 2004
    class_name: Detection Finding
    activity_id: 1
"""
RECEIVED_AT = 1778230900.0


def load(tmp_path: Path, body: str) -> Template:
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent(HEADER) + textwrap.dedent(body))
    return load_template_file(path)


def run(template: Template, record: dict[str, Any], headers: dict[str, str] | None = None,
        raw: str | None = None) -> list[dict[str, Any]]:
    context = IngestContext("tenant", "webhook", RECEIVED_AT, raw=raw, headers=headers or {})
    events = normalize_record(template, record, context)
    for event in events:
        assert_valid_ocsf(event)
    return events


def test_records_path_splits_one_body_into_many_events(tmp_path: Path) -> None:
    """records: Records makes one event per item, each with its own raw_data."""
    template = load(tmp_path, "records: Records\nfield_map:\n  id: finding_info.uid\n")
    events = run(template, {"Records": [{"id": "a"}, {"id": "b"}, None, "text"]}, raw="{...}")
    assert len(events) == 3
    assert [e["finding_info"]["uid"] for e in events[:2]] == ["a", "b"]
    assert json.loads(events[0]["raw_data"]) == {"id": "a"}
    assert events[2]["unmapped"] == {"value": "text"}


def test_records_path_absent_keeps_the_record_whole(tmp_path: Path) -> None:
    """A body without the records list is one event, its raw text kept."""
    template = load(tmp_path, "records: Records\nfield_map:\n  id: finding_info.uid\n")
    [event] = run(template, {"id": "x"}, raw='{"id": "x"}')
    assert (event["finding_info"]["uid"], event["raw_data"]) == ("x", '{"id": "x"}')


def test_decode_json_then_map_inside_and_split(tmp_path: Path) -> None:
    """decode_json parses a JSON string field so paths inside it map, and records can split it."""
    template = load(tmp_path, "decode_json: Message\nrecords: Message.items\nfield_map:\n  id: finding_info.uid\n")
    record = {"Message": json.dumps({"items": [{"id": "1"}, {"id": "2"}]})}
    assert [e["finding_info"]["uid"] for e in run(template, record)] == ["1", "2"]
    assert isinstance(record["Message"], str), "the caller's record is not modified"
    text = load(tmp_path, "decode_json: Message\nfield_map:\n  Message: message\n")
    assert run(text, {"Message": "plain words"})[0]["message"] == "plain words"


def test_acknowledge_when_by_field_or_header(tmp_path: Path) -> None:
    """A record matching any acknowledge_when condition (all its pairs) becomes no event."""
    template = load(tmp_path, """\
        acknowledge_when:
          - {header:X-Event: ping}
          - {Type: [SubscriptionConfirmation, UnsubscribeConfirmation], Signed: true}
    """)
    assert run(template, {}, {"x-event": "ping"}) == []
    assert run(template, {"Type": "SubscriptionConfirmation", "Signed": True}) == []
    assert len(run(template, {"Type": "SubscriptionConfirmation"})) == 1
    assert len(run(template, {}, {"x-event": "push"})) == 1


def test_idempotency_key_candidates(tmp_path: Path) -> None:
    """idempotency_key takes the first present of headers and fields, as text; None when absent."""
    template = load(tmp_path, "decode_json: body\nidempotency_key: [header:X-Delivery, body.id, seq]\n")
    assert template.idempotency_key({"body": '{"id": 7}'}, {"x-delivery": "d-1"}) == "d-1"
    assert template.idempotency_key({"body": '{"id": 7}'}, {}) == "7"
    assert template.idempotency_key({"seq": 0}, {}) == "0"
    assert template.idempotency_key({"seq": "  "}, {}) is None


def test_header_sources_map_and_are_not_unmapped(tmp_path: Path) -> None:
    """header:Name reads a request header (any case) into the event."""
    template = load(tmp_path, "field_map:\n  header:X-GitHub-Event: metadata.event_code\n")
    [event] = run(template, {"a": 1}, {"x-github-event": "security_advisory"})
    assert event["metadata"]["event_code"] == "security_advisory"
    assert event["unmapped"] == {"a": 1}


@pytest.mark.parametrize("steps, value, expected", [
    ("[lowercase]", "HIGH", "high"),
    ("[uppercase]", "de", "DE"),
    ("[trim]", "  x ", "x"),
    ("[int]", 5.7, "5"),
    ("[int]", "8.2", "8"),
    ("[string]", True, "true"),
    ("[join]", ["a", "b", None], "a, b"),
    ("[{join: '|'}]", ["a", 1], "a|1"),
    ("[{split: ','}, {join: ';'}]", "a, b,,c", "a;b;c"),
    ("[{map: {block: Blocked}}]", "BLOCK", "Blocked"),
    ("[{map: {block: Blocked, '*': Other}}]", "challenge", "Other"),
])
def test_transforms(tmp_path: Path, steps: str, value: Any, expected: str) -> None:
    """Each transform turns the source value into what the target gets."""
    template = load(tmp_path, f"field_map:\n  v: message\ntransforms:\n  v: {steps}\n")
    assert run(template, {"v": value})[0]["message"] == expected


def test_a_transform_that_cannot_apply_leaves_the_value_unmapped(tmp_path: Path) -> None:
    """int on text, map on an unknown word or trim of blanks: the source counts as absent."""
    template = load(tmp_path, "field_map:\n  v: message\n  w: finding_info.desc\ntransforms:\n"
                              "  v: [int]\n  w: [trim]\n")
    [event] = run(template, {"v": "abc", "w": "   "})
    assert "message" not in event and "desc" not in event["finding_info"]
    assert event["unmapped"] == {"v": "abc", "w": "   "}


def test_map_otherwise_to_99_captions_the_value_as_sent(tmp_path: Path) -> None:
    """A "*" map key gives unlisted words 99 Other, whose caption sibling is the source value before transforms."""
    template = load(tmp_path, "field_map:\n  s: status_id\ntransforms:\n  s: [lowercase, {map: {new: 1, '*': 99}}]\n")
    [event] = run(template, {"s": "Snoozed"})
    assert (event["status_id"], event["status"]) == (99, "Snoozed")
    [event] = run(template, {"s": "NEW"})
    assert (event["status_id"], event["status"]) == (1, "New")


def test_transform_feeds_severity_and_time(tmp_path: Path) -> None:
    """Transforms apply wherever the source is read: int bands a float severity."""
    template = load(tmp_path, "severity_field: s\nseverity_map: {5: 3}\ntransforms:\n  s: [int]\n")
    assert run(template, {"s": 5.3})[0]["severity_id"] == 3


def test_activity_from_the_record(tmp_path: Path) -> None:
    """activity_map picks the activity (case-insensitively); else activity_id; Close resolves."""
    template = load(tmp_path, "activity_field: action\nactivity_map: {created: 1, resolved: 3, updated: 2}\n")
    closed, updated, other = (run(template, {"action": a})[0] for a in ("Resolved", "updated", "poked"))
    assert (closed["activity_id"], closed["type_uid"], closed["status_id"], closed["status"]) == (3, 200403, 4, "Resolved")
    assert "is_alert" not in closed
    assert (updated["activity_name"], updated["status_id"]) == ("Update", 1)
    assert (other["activity_id"], other["is_alert"]) == (1, True)
    assert closed["unmapped"] == {"action": "Resolved"}


def test_time_formats_are_tried_first(tmp_path: Path) -> None:
    """A strptime format reads vendor timestamps the automatic forms do not (CEF rt)."""
    template = load(tmp_path, "time_field: rt\ntime_formats: ['%b %d %Y %H:%M:%S', '%d/%m/%Y %H:%M']\n")
    assert run(template, {"rt": "May 08 2026 09:00:00"})[0]["time"] == 1778230800000
    assert run(template, {"rt": "08/05/2026 09:00"})[0]["time"] == 1778230800000
    assert run(template, {"rt": "2026-05-08T09:00:00Z"})[0]["time"] == 1778230800000


def test_one_source_to_several_targets(tmp_path: Path) -> None:
    """A list of targets writes the same value to each."""
    template = load(tmp_path, "field_map:\n  summary: [finding_info.title, message]\n")
    [event] = run(template, {"summary": "s"})
    assert (event["finding_info"]["title"], event["message"]) == ("s", "s")
    assert template.field_map["summary"] == ("finding_info.title", "message")


LISTS = """\
    field_map:
      items.name: "evidences[*].user.name"
      items.id: "evidences[*].user.uid"
      tags.label: finding_info.types
"""


def test_a_source_through_a_list_and_aligned_targets(tmp_path: Path) -> None:
    """items.name reads every item's name; [*] puts item N into element N, so two sources fill the same elements, and what was read leaves unmapped."""
    template = load(tmp_path, LISTS)
    record = {"items": [{"name": "alice", "id": "u1", "role": "x"}, {"name": "bob"}, {"id": "u3"}],
              "tags": [{"label": "one"}, {"label": "two"}]}
    [event] = run(template, record)
    assert event["evidences"] == [{"user": {"name": "alice", "uid": "u1"}}, {"user": {"name": "bob"}},
                                  {"user": {"uid": "u3"}}]
    assert event["finding_info"]["types"] == ["one", "two"]
    assert event["unmapped"] == {"items": [{"role": "x"}]}


def test_text_transforms_apply_to_each_item_of_a_list(tmp_path: Path) -> None:
    """trim and uppercase change each text of a list read through it; an emptied item maps nowhere."""
    template = load(tmp_path, """\
        field_map:
          tags.label: finding_info.types
        transforms:
          tags.label: [trim, uppercase]
        """)
    [event] = run(template, {"tags": [{"label": " one "}, {"label": ""}, {"label": "two"}]})
    assert event["finding_info"]["types"] == ["ONE", "TWO"]


def test_extract_searches_each_item_of_a_list(tmp_path: Path) -> None:
    """An extract source that is a list is searched item by item: the first match wins."""
    template = load(tmp_path, """\
        extract:
          cve: {from: identifiers.value, pattern: '^(?P<value>CVE-\\d{4}-\\d+)$'}
        field_map:
          extracted.cve: finding_info.uid
        """)
    record = {"identifiers": [{"value": "GHSA-aaaa-bbbb-cccc"}, {"value": "CVE-2024-0001"}]}
    assert run(template, record)[0]["finding_info"]["uid"] == "CVE-2024-0001"


@pytest.mark.parametrize("body, key, fragment", [
    ("field_map:\n  a: 'finding_info.types[*]'\n", "field_map.a", "to append to an array"),
    ("field_map:\n  a: 'finding_info[*].uid'\n", "field_map.a", "is not an array"),
    ("field_map:\n  a: 'evidences[*].email.files[*].name'\n", "field_map.a", "only one [] or [*]"),
    ("activity_field: a\n", "activity_map", "go together"),
    ("activity_field: a\nactivity_map: {x: 7}\n", "activity_map.x", "not an activity of class 2004"),
    ("time_formats: ['no percent']\n", "time_formats[0]", "not a strptime format"),
    ("transforms:\n  a: [shout]\n", "transforms.a", "unknown transform 'shout'"),
    ("transforms:\n  a: [{join: 5}]\n", "transforms.a", "join takes a separator"),
    ("transforms:\n  a: [{map: {}}]\n", "transforms.a", "non-empty mapping"),
    ("records: 'header:X-A'\n", "records", "not a header"),
    ("decode_json: ['a..b']\n", "decode_json[0]", "malformed source path"),
    ("acknowledge_when: {a: 1}\n", "acknowledge_when", "non-empty list"),
    ("acknowledge_when:\n  - {a: {b: 1}}\n", "acknowledge_when[0].a", "scalar or a list of scalars"),
    ("idempotency_key: 'header:bad name'\n", "idempotency_key", "malformed header source"),
    ("field_map:\n  a: [finding_info.uid, nope.x]\n", "field_map.a", "is not an attribute path"),
])
def test_extension_mistakes_name_the_key(tmp_path: Path, body: str, key: str, fragment: str) -> None:
    """Every extension is validated at load; the error names the file and the key."""
    with pytest.raises(TemplateError) as caught:
        load(tmp_path, body)
    assert caught.value.key == key, str(caught.value)
    assert fragment in caught.value.problem
    assert str(caught.value).startswith(str(tmp_path / "t.yaml"))
