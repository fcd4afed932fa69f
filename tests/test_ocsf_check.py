"""
Our OCSF 1.8.0 checker (L{aisoc_inboxd.normalizer.ocsf}): schema lookups and L{validate_event},
also against the workspace's reference examples when C{../shared} is present.
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from aisoc_inboxd.normalizer.ocsf import (
    enum_captions,
    find_class,
    ocsf_schema,
    path_exists,
    validate_event,
)
from tests.support.shared import SHARED, require_shared

EXAMPLES = SHARED / "ocsf" / "examples"


def _minimal_2004() -> dict[str, Any]:
    return {
        "class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401,
        "severity_id": 4, "time": 1732658400123,
        "finding_info": {"uid": "alert-1"},
        "metadata": {"version": "1.8.0", "product": {"name": "aisoc-inboxd"}},
    }


def test_class_lookup_gives_names_category_and_activities() -> None:
    """A class uid resolves to its caption, category and activity captions."""
    cls = find_class(2004)
    assert cls is not None
    assert (cls.name, cls.caption, cls.category_uid, cls.category_name) == (
        "detection_finding", "Detection Finding", 2, "Findings")
    assert cls.activities == {0: "Unknown", 1: "Create", 2: "Update", 3: "Close", 99: "Other"}
    assert find_class(9999) is None
    assert ocsf_schema().find_class(2001).deprecated


@pytest.mark.parametrize(("class_uid", "path", "profiles", "expected"), [
    (2004, "finding_info.src_url", (), True),
    (2004, "evidences.email.files.name", (), True),
    (2004, "evidences[0].email.files[].name", (), True),
    (2004, "unmapped.anything.at.all", (), True),
    (2001, "evidence.file.name", (), True),
    (2001, "finding.src_url", (), True),
    (2001, "url", (), False),
    (2004, "url", (), False),
    (2001, "finding.evidence.file", (), False),
    (2004, "finding_info.no_such", (), False),
    (2004, "finding_info.uid.deeper", (), False),
    (2004, "action_id", (), False),
    (2004, "action_id", ("security_control",), True),
    (9999, "message", (), False),
    (2004, "finding_info..uid", (), False),
])
def test_path_exists(class_uid: int, path: str, profiles: tuple[str, ...], expected: bool) -> None:
    """Attribute paths resolve through objects and arrays; free-form and profile rules apply."""
    assert path_exists(class_uid, path, profiles) is expected


def test_enum_captions_for_id_attributes() -> None:
    """Enumerated *_id attributes give their captions; other attributes give none."""
    assert enum_captions(2004, "severity_id")[4] == "High"
    assert enum_captions(2001, "state_id")[1] == "New"
    assert enum_captions(2004, "finding_info.analytic.type_id")[1] == "Rule"
    assert dict(enum_captions(2004, "message")) == {}


def test_minimal_detection_finding_is_valid() -> None:
    """An event with exactly the required attributes of 2004 passes."""
    assert validate_event(_minimal_2004()) == []


@pytest.mark.parametrize(("change", "path"), [
    (lambda e: e.update(severity_id=4.0), "severity_id"),
    (lambda e: e.update(severity_id=True), "severity_id"),
    (lambda e: e.update(time=1732658400), "time"),
    (lambda e: e.update(time=1732658400123456), "time"),
    (lambda e: e["finding_info"].update(created_time=1732658400), "finding_info.created_time"),
    (lambda e: e["metadata"].update(version="1.1.0"), "metadata.version"),
    (lambda e: e.update(type_uid=200402), "type_uid"),
    (lambda e: e.update(category_uid=4), "category_uid"),
    (lambda e: e.update(message=None), "message"),
    (lambda e: e.update(url="https://x.example"), "url"),
    (lambda e: e.pop("finding_info"), "finding_info"),
    (lambda e: e.update(evidences=[{"src_endpoint": {"port": "443"}}]), "evidences[0].src_endpoint.port"),
    (lambda e: e.update(observables=[{"name": "src_ip", "type_id": 2}]), "observables[0].name"),
    (lambda e: e["metadata"].update(profiles=["no_such_profile"]), "metadata.profiles[0]"),
    (lambda e: e.update(class_uid=9999), "class_uid"),
])
def test_each_broken_rule_is_reported_at_its_path(change: Any, path: str) -> None:
    """Breaking one rule makes the event invalid with an error at the broken attribute's path."""
    event = _minimal_2004()
    change(event)
    errors = validate_event(event)
    assert any(error.startswith(f"{path}:") for error in errors), errors


def test_non_object_event_is_rejected() -> None:
    """A JSON value that is not an object is not an event."""
    assert validate_event("not an event") != []
    assert validate_event({"time": 1}) == ["class_uid: required attribute missing"]


def test_reference_valid_examples_pass() -> None:
    """Every event in the workspace's valid.ndjson passes our checker."""
    path = require_shared(EXAMPLES / "valid.ndjson")
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(events) == 8
    for event in events:
        assert validate_event(event) == [], event


def _expected_paths() -> dict[int, set[str]]:
    """
    The attribute paths the reference validator reports per line of invalid.ndjson.
    """
    expected: dict[int, set[str]] = {}
    text = (EXAMPLES / "invalid.expected.txt").read_text()
    for match in re.finditer(r"^event (\d+) \(invalid\.ndjson:\d+\).*?INVALID: (.*)$", text, re.M):
        pieces = match.group(2).split("; ")
        paths = {m.group(1) for m in (re.match(r"^([\w.\[\]()]+): ", p) for p in pieces) if m}
        expected[int(match.group(1))] = paths
    return expected


def test_reference_invalid_examples_fail_at_the_same_paths() -> None:
    """Each failure family of invalid.ndjson is rejected, at every path the reference names."""
    path = require_shared(EXAMPLES / "invalid.ndjson")
    expected = _expected_paths()
    lines = path.read_text().splitlines()
    assert len(lines) == len(expected) == 17
    for number, line in enumerate(lines, start=1):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # the "not valid JSON" family is the reader's job, not the checker's
        errors = validate_event(event)
        assert errors, f"line {number} passed"
        for where in expected[number]:
            assert any(e.startswith(f"{where}:") for e in errors), (number, where, errors)


def test_invalid_examples_are_one_family_each() -> None:
    """Repairing the single broken attribute of an invalid example makes it valid again."""
    path = require_shared(EXAMPLES / "invalid.ndjson")
    event = json.loads(path.read_text().splitlines()[1])  # family: type_uid inconsistent
    repaired = copy.deepcopy(event)
    repaired["type_uid"] = repaired["class_uid"] * 100 + repaired["activity_id"]
    assert validate_event(event) != []
    assert validate_event(repaired) == []
