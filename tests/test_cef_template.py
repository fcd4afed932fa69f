"""
The cef-syslog and syslog templates (and the C{class_field}/C{classes} template extension they use):
corpus lines through the template, each output valid OCSF 1.8.0, and the MAPPING.md §2(c) mapping
pinned attribute by attribute.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aisoc_inboxd.formats.cef import parse_cef_line
from aisoc_inboxd.formats.cef_records import cef_record, cef_time
from aisoc_inboxd.normalizer import IngestContext, TemplateError, load_template_file, normalize_record
from aisoc_inboxd.formats.syslog_records import frame_record
from tests.support.cef import parse_batch
from tests.support.ocsf import assert_valid_ocsf
from tests.support.shared import CORPUS as SHARED_CORPUS
from tests.support.shared import FIXTURES, PROJECT, require_shared

NOW = datetime(2026, 5, 8, 9, 0, tzinfo=UTC).timestamp()
CEF = load_template_file(PROJECT / "templates" / "cef-syslog.yaml")
SYSLOG = load_template_file(PROJECT / "templates" / "syslog.yaml")
SPEC_LINE = "CEF:0|Vendor|Product|1.0|100|User login failed|3|src=10.0.0.1 suser=alice cs1=mfa"


def ocsf(line: str) -> dict[str, Any]:
    record = cef_record(parse_cef_line(line), line, NOW)
    (event,) = normalize_record(CEF, record.data, IngestContext("t", "cef", NOW, raw=record.raw))
    assert_valid_ocsf(event)
    return event


def test_spec_line_is_authentication_as_mapping_describes() -> None:
    """The spec's line becomes 3002 Logon, failed, alice from 10.0.0.1, Low, with cs1 kept under unmapped.cef."""
    event = ocsf(SPEC_LINE)
    assert (event["class_uid"], event["activity_id"], event["type_uid"]) == (3002, 1, 300201)
    assert (event["status_id"], event["status"]) == (2, "Failure")
    assert event["user"] == {"name": "alice"}
    assert event["src_endpoint"] == {"ip": "10.0.0.1"}
    assert (event["severity_id"], event["severity"]) == (2, "Low")
    product = event["metadata"]["product"]
    assert product == {"vendor_name": "Vendor", "name": "Product", "version": "1.0"}
    assert event["metadata"]["event_code"] == "100"
    assert event["message"] == "User login failed"
    assert event["service"] == {"name": "Product"}  # the at_least_one (service, dst_endpoint)
    assert event["unmapped"]["cef"] == {"version": 0, "severity": "3", "cs1": "mfa"}
    assert event["raw_data"] == SPEC_LINE


CORPUS = sorted((FIXTURES / "cef").glob("*.txt"))


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_every_corpus_line_maps_to_valid_ocsf(path: Path) -> None:
    """Every parseable line of the CEF fixtures becomes one valid OCSF event that keeps its product and raw line."""
    batch = parse_batch(path.read_bytes())
    for cef in batch.events:
        record = cef_record(cef, "raw", NOW)
        (event,) = normalize_record(CEF, record.data, IngestContext("t", "cef", NOW, raw="raw"))
        assert_valid_ocsf(event)
        if cef.device_product:
            assert event["metadata"]["product"]["name"] == cef.device_product
        assert event["metadata"]["log_format"] == "CEF"


@pytest.mark.parametrize(("line", "class_uid"), [
    ("CEF:0|Acme|FW|1|deny|Connection denied|5|src=10.0.0.1 dst=10.0.0.2 spt=1234 dpt=443 proto=TCP act=deny", 4001),
    ("CEF:0|Acme|Proxy|1|web|Web request|2|src=10.0.0.1 request=https://x.example/a requestMethod=get", 4002),
    ("CEF:0|Acme|Resolver|1|q|DNS query|1|src=10.0.0.1 destinationDnsDomain=x.example", 4003),
    ("CEF:0|Acme|Audit|1|a|API call audit|1|src=10.0.0.1 suser=bob", 6003),
    ("CEF:0|Acme|FIM|1|f|File modified|4|suser=bob fname=passwd filePath=/etc/passwd dvchost=host1", 1001),
    ("CEF:0|Acme|IDS|1|sig-7|Malware detected|9|src=10.0.0.1 dst=10.0.0.2 cat=trojan", 2004),
    ("CEF:0|Acme|Box|1|x|Fan speed changed|1|cs1=slow cs1Label=Fan", 0),
])
def test_class_per_event_kind(line: str, class_uid: int) -> None:
    """Each kind of CEF event lands in its MAPPING.md class and validates there."""
    assert ocsf(line)["class_uid"] == class_uid


AV_DETECTIONS = FIXTURES / "cef" / "authored-av-detections"
AV_LINES = AV_DETECTIONS.with_suffix(".txt").read_text().splitlines()
AV_CASES = json.loads(AV_DETECTIONS.with_suffix(".expected.json").read_text())["cases"]


@pytest.mark.parametrize("case", AV_CASES, ids=[case["vendor"].split(" (")[0] for case in AV_CASES])
def test_av_detections_are_detection_findings_with_the_file_as_evidence(case: dict[str, Any]) -> None:
    """Each AV vendor's detection is a 2004 Detection Finding titled by its name, with the file (name, path, hashes) as evidences[0].file, not left in unmapped."""
    event = ocsf(AV_LINES[case["line"] - 1])
    assert (event["class_uid"], event["finding_info"]["title"]) == (case["class_uid"], case["title"])
    evidence_file = event["evidences"][0]["file"]
    assert (evidence_file["name"], evidence_file["path"], evidence_file["type_id"]) == (
        case["file"]["name"], case["file"]["path"], 1)
    assert [h["algorithm"] for h in evidence_file.get("hashes", [])] == case["hashes"]
    assert not {"fname", "filePath", "fileHash", "TrendMicroDsFileSHA256"} & set(event["unmapped"]["cef"])
    assert event.get("disposition_id") == case["disposition_id"]
    assert event["is_alert"] is True


def test_deep_security_eicar_sample_from_trend_micro_documentation() -> None:
    """The Deep Security anti-malware sample Elastic's decoder tests with (Trend Micro's documented example) is a 2004 finding with the file."""
    corpus = require_shared(SHARED_CORPUS / "cef" / "elastic-decode-cef-samples.txt")
    [line] = [line for line in corpus.read_text().splitlines() if "|Eicar_test_file|" in line]
    event = ocsf(line)
    assert (event["class_uid"], event["finding_info"]["title"]) == (2004, "Eicar_test_file")
    assert event["finding_info"]["analytic"] == {"uid": "4000000", "name": "Eicar_test_file", "type_id": 1,
                                                 "type": "Rule"}
    assert event["evidences"][0]["file"]["name"] == "eicar.exe"
    assert event["evidences"][0]["file"]["path"] == "C:\\Users\\trend\\Desktop\\eicar.exe"


def test_file_event_with_only_a_path_names_the_file() -> None:
    """A file event with filePath and no fname gets the path's last part as file.name (OCSF requires one)."""
    event = ocsf("CEF:0|Acme|FIM|1|f|File modified|4|suser=bob filePath=/etc/shadow fileHash=" + "a" * 40 +
                 " dvchost=host1")
    assert event["class_uid"] == 1001
    assert event["file"] == {"name": "shadow", "path": "/etc/shadow", "type_id": 1,
                             "hashes": [{"algorithm_id": 2, "algorithm": "SHA-1", "value": "a" * 40}]}


def test_network_event_has_ports_protocol_and_security_control() -> None:
    """A firewall deny gives integer ports, the protocol, Refuse, and act as action Denied / disposition Blocked."""
    event = ocsf("CEF:0|Acme|FW|1|deny|Connection denied|5|src=10.0.0.1 dst=10.0.0.2 spt=1234 dpt=443 "
                 "proto=TCP act=deny suser=alice")
    assert event["src_endpoint"] == {"ip": "10.0.0.1", "port": 1234}
    assert event["dst_endpoint"] == {"ip": "10.0.0.2", "port": 443}
    assert event["connection_info"]["protocol_name"] == "tcp"
    assert event["activity_id"] == 5
    assert (event["action_id"], event["disposition_id"]) == (2, 2)
    assert event["actor"]["user"]["name"] == "alice"
    assert "security_control" in event["metadata"]["profiles"]
    assert event["unmapped"]["cef"]["act"] == "deny"


@pytest.mark.parametrize(("act", "action_id", "disposition_id"), [
    ("allow", 1, 1), ("Accept", 1, 1), ("drop", 2, 6), ("rejected", 2, 25), ("alert", 3, 15), ("quarantine", None, 3),
    ("Delete", None, 5), ("cleaned", None, 11), ("File quarantined", None, 3), ("File passed", 1, 1),
])
def test_act_words(act: str, action_id: int | None, disposition_id: int) -> None:
    """act maps to action_id and disposition_id as MAPPING.md says, case-insensitively."""
    event = ocsf(f"CEF:0|Acme|FW|1|x|Traffic|1|src=10.0.0.1 act={act}")
    assert event.get("action_id") == action_id
    assert event["disposition_id"] == disposition_id


@pytest.mark.parametrize("line", [
    "CEF:0|Acme|FW|1|x|Traffic|1|src=10.0.0.1 act=Challenge",
    "CEF:0|Acme|Box|1|x|Fan speed changed|1|act=Challenge",
])
def test_unknown_act_is_other_with_the_raw_word(line: str) -> None:
    """An act that is no known word gives action_id and disposition_id 99 captioned with the act as sent."""
    event = ocsf(line)
    assert (event["action_id"], event["action"]) == (99, "Challenge")
    assert (event["disposition_id"], event["disposition"]) == (99, "Challenge")
    assert "security_control" in event["metadata"]["profiles"]
    assert event["unmapped"]["cef"]["act"] == "Challenge"


def test_authentication_with_both_users_has_the_initiator_as_actor() -> None:
    """With duser and suser a logon's user is duser and its actor suser; suser alone is the user and no actor."""
    event = ocsf("CEF:0|Acme|VPN|1|x|User login failed|3|dst=10.0.0.9 duser=root suser=alice")
    assert (event["class_uid"], event["user"], event["actor"]) == (3002, {"name": "root"}, {"user": {"name": "alice"}})
    assert "suser" not in event["unmapped"]["cef"] and "initiator" not in event["unmapped"]
    alone = ocsf("CEF:0|Acme|VPN|1|x|User login failed|3|dst=10.0.0.9 suser=alice")
    assert alone["user"] == {"name": "alice"} and "actor" not in alone


def test_network_users_are_actor_and_destination_owner() -> None:
    """In the network classes suser is the actor and duser the destination's owner, kept unpaired without dst."""
    event = ocsf("CEF:0|Acme|FW|1|x|Traffic|1|src=10.0.0.1 dst=10.0.0.2 suser=alice duser=bob")
    assert (event["class_uid"], event["actor"]["user"]["name"]) == (4001, "alice")
    assert event["dst_endpoint"] == {"ip": "10.0.0.2", "owner": {"name": "bob"}}
    assert "duser" not in event["unmapped"]["cef"]
    web = ocsf("CEF:0|Acme|Proxy|1|web|Web request|2|src=10.0.0.1 request=https://x.example/a suser=a duser=b")
    assert (web["class_uid"], web["actor"]["user"]["name"]) == (4002, "a")
    assert "dst_endpoint" not in web and web["unmapped"]["unpaired"] == {"duser": "b"}


def test_finding_users_are_in_the_evidence() -> None:
    """In a 2004 alert suser is the evidence's actor and duser the evidence's user."""
    event = ocsf("CEF:0|Snort|IDS|3|1:2000|ET TROJAN beacon detected|8|src=10.0.0.5 suser=eve duser=bob")
    evidence = event["evidences"][0]
    assert (evidence["actor"]["user"]["name"], evidence["user"]["name"]) == ("eve", "bob")
    assert "suser" not in event["unmapped"]["cef"] and "duser" not in event["unmapped"]["cef"]


@pytest.mark.parametrize(("severity", "severity_id"), [
    ("0", 2), ("3", 2), ("4", 3), ("6", 3), ("7", 4), ("8", 4), ("9", 5), ("10", 5),
    ("Unknown", 0), ("low", 2), ("Medium", 3), ("HIGH", 4), ("Very-High", 5), ("Critical", 99),
])
def test_severity_bands_and_words(severity: str, severity_id: int) -> None:
    """Header severities 0-10 and the CEF words map to OCSF severity_id; anything else is 99 Other with the raw word."""
    event = ocsf(f"CEF:0|Acme|Box|1|x|Thing|{severity}|")
    assert event["severity_id"] == severity_id
    if severity_id == 99:
        assert event["severity"] == severity
    assert event["unmapped"]["cef"]["severity"] == severity


@pytest.mark.parametrize(("rt", "expected"), [
    ("1778230800000", 1778230800000),
    ("May 08 2026 09:00:00", 1778230800000),
    ("May 08 2026 09:00:00.250 UTC", 1778230800250),
    ("May 08 09:00:00", 1778230800000),
])
def test_rt_forms_give_time_and_keep_original(rt: str, expected: int) -> None:
    """rt in epoch ms or MMM dd [yyyy] HH:mm:ss[.SSS zzz] becomes time in ms, the text kept as original_time."""
    event = ocsf(f"CEF:0|Acme|Box|1|x|Thing|1|rt={rt}")
    assert event["time"] == expected
    assert event["metadata"]["original_time"] == rt


def test_time_falls_back_to_end_then_the_syslog_stamp() -> None:
    """Without rt, end gives the time; without either, the syslog header's stamp does."""
    assert ocsf("CEF:0|Acme|Box|1|x|Thing|1|end=1778230800000")["time"] == 1778230800000
    frame = b"<134>May  8 09:00:05 fw01 CEF:0|Acme|Box|1|x|Thing|1|cs2=a"
    parsed = frame_record(frame, NOW)
    (event,) = normalize_record(CEF, parsed.record.data, IngestContext("t", "syslog", NOW))
    assert_valid_ocsf(event)
    assert event["time"] == 1778230805000
    assert event["metadata"]["reporter"]["hostname"] == "fw01"


def test_custom_fields_are_lossless_with_labels_beside_them() -> None:
    """Custom fields stay under unmapped.cef with their labels as values, colliding labels included."""
    event = ocsf("CEF:0|Acme|Box|1|x|Thing|1|cs1=a cs1Label=Rule Name cs2=b cs2Label=Rule Name cn1=7 "
                 "flexString1=z flexString1Label=Zone")
    cef = event["unmapped"]["cef"]
    assert (cef["cs1"], cef["cs1Label"], cef["cs2"], cef["cs2Label"]) == ("a", "Rule Name", "b", "Rule Name")
    assert (cef["cn1"], cef["flexString1"], cef["flexString1Label"]) == ("7", "z", "Zone")
    assert "Rule Name" not in cef


def test_port_without_its_address_is_kept_but_not_mapped() -> None:
    """A dpt without dst or dhost cannot make a valid endpoint: it is kept under unmapped.unpaired."""
    event = ocsf("CEF:0|Acme|FW|1|x|Traffic|1|src=10.0.0.1 spt=1 dpt=443")
    assert "dst_endpoint" not in event
    assert event["unmapped"]["unpaired"] == {"dpt": "443"}


def test_name_is_message_only_without_msg() -> None:
    """With msg, msg is the message and the name stays under unmapped.cef.name (activity classes)."""
    event = ocsf("CEF:0|Acme|FW|1|x|Traffic seen|1|src=10.0.0.1 msg=details here")
    assert event["message"] == "details here"
    assert event["unmapped"]["cef"]["name"] == "Traffic seen"


def test_finding_has_title_analytic_and_evidences() -> None:
    """An IDS alert becomes 2004 with its name as title, its signature as the rule and the endpoints as evidence."""
    event = ocsf("CEF:0|Snort|IDS|3|1:2000|ET TROJAN beacon detected|8|src=10.0.0.5 spt=5555 dst=203.0.113.9 "
                 "dpt=80 suser=eve")
    info = event["finding_info"]
    assert info["title"] == "ET TROJAN beacon detected"
    assert info["analytic"] == {"uid": "1:2000", "name": "ET TROJAN beacon detected", "type_id": 1, "type": "Rule"}
    evidence = event["evidences"][0]
    assert evidence["src_endpoint"] == {"ip": "10.0.0.5", "port": 5555}
    assert evidence["actor"]["user"]["name"] == "eve"
    assert event["severity_id"] == 4


def test_logoff_is_activity_two() -> None:
    """A logoff is Authentication activity 2 Logoff."""
    assert ocsf("CEF:0|Acme|VPN|1|x|User logged off|1|suser=bob dst=10.0.0.9")["activity_id"] == 2


def test_event_kind_needs_what_the_class_requires() -> None:
    """A login without a user is not Authentication; an alert-like name is a finding."""
    for line, kind in (("CEF:0|A|B|1|x|Login failed|1|src=10.0.0.1", "network"),
                       ("CEF:0|A|B|1|x|Login failed|1|", "other")):
        assert cef_record(parse_cef_line(line), line, NOW).data["kind"] == kind


def test_cef_time_reads_no_year_stamps_closest_to_now() -> None:
    """A stamp without a year takes the year closest to the receive time."""
    assert cef_time("Dec 31 23:59:59", datetime(2026, 1, 1, tzinfo=UTC).timestamp()) == \
        int(datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() * 1000)
    assert cef_time("not a time", NOW) is None


SYSLOG_FIXTURES = sorted((FIXTURES / "syslog").glob("*.txt"))


@pytest.mark.parametrize("path", SYSLOG_FIXTURES, ids=[p.name for p in SYSLOG_FIXTURES])
def test_syslog_fixture_frames_map_to_valid_ocsf(path: Path) -> None:
    """Every frame of the syslog fixtures becomes valid OCSF through the syslog or cef-syslog template."""
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        parsed = frame_record(line, NOW)
        template = CEF if parsed.is_cef else SYSLOG
        for event in normalize_record(template, parsed.record.data, IngestContext("t", "syslog", NOW)):
            assert_valid_ocsf(event)


def test_syslog_template_maps_header() -> None:
    """A plain RFC 5424 message becomes a Base Event with host, app, msgid, severity and time."""
    parsed = frame_record(b"<34>1 2026-05-08T09:00:00.5Z mymachine su 77 ID47 - 'su root' failed", NOW)
    assert not parsed.is_cef
    (event,) = normalize_record(SYSLOG, parsed.record.data, IngestContext("t", "syslog", NOW))
    assert_valid_ocsf(event)
    assert (event["class_uid"], event["message"]) == (0, "'su root' failed")
    assert event["metadata"]["reporter"]["hostname"] == "mymachine"
    assert event["metadata"]["product"]["name"] == "su"
    assert event["metadata"]["event_code"] == "ID47"
    assert (event["severity_id"], event["time"]) == (5, 1778230800500)  # severity 2 Critical
    assert event["unmapped"]["syslog"]["facility"] == 4


@pytest.mark.parametrize("message", ["plain text", SPEC_LINE], ids=["syslog", "cef-syslog"])
def test_repeated_structured_data_values_reach_unmapped_as_lists(message: str) -> None:
    """Both templates keep a repeated SD-PARAM as a list under unmapped.syslog.structured_data, as valid OCSF."""
    frame = f'<13>1 2026-05-08T09:00:00Z fw01 app - - [origin ip="192.0.2.1" ip="192.0.2.129"] {message}'
    parsed = frame_record(frame.encode(), NOW)
    (event,) = normalize_record(CEF if parsed.is_cef else SYSLOG, parsed.record.data, IngestContext("t", "syslog", NOW))
    assert_valid_ocsf(event)
    assert event["class_uid"] == (3002 if parsed.is_cef else 0)
    assert event["unmapped"]["syslog"]["structured_data"] == {"origin": {"ip": ["192.0.2.1", "192.0.2.129"]}}


def test_malformed_cef_frame_raises() -> None:
    """A syslog frame whose CEF is malformed is reported, so the listener can drop and count it."""
    with pytest.raises(ValueError):
        frame_record(b"<13>May  8 09:00:00 h CEF:0|only|three", NOW)


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text("id: t\nvendor_name: V\nproduct_name: P\nclass_uid: 0\nclass_name: Base Event\n"
                    "activity_id: 0\n" + body)
    return path


@pytest.mark.parametrize(("body", "message"), [
    ("class_field: kind\n", "t.yaml: classes: class_field and classes go together"),
    ("class_field: kind\nclasses: {a: {class_uid: 3002, class_name: Authentication}}\n",
     "t.yaml: classes.a.activity_id: required key missing"),
    ("class_field: kind\nclasses: {a: {class_uid: 3002, class_name: Authentication, activity_id: 1, "
     "field_map: {x: finding_info.title}}}\n", "t.yaml: classes.a.field_map.x: "),
    ("class_field: kind\nclasses: {a: {class_uid: 3002, class_name: Authentication, activity_id: 1, bogus: 1}}\n",
     "t.yaml: classes.a.bogus: unknown key"),
    ("field_map: {x: src_endpoint.ip}\nclass_field: kind\nclasses: "
     "{a: {class_uid: 4001, class_name: Network Activity, activity_id: 6}}\n", "t.yaml: field_map.x: "),
])
def test_class_variants_are_checked_at_load(tmp_path: Path, body: str, message: str) -> None:
    """A wrong classes entry stops loading with a message naming the variant's key."""
    with pytest.raises(TemplateError) as caught:
        load_template_file(write(tmp_path, body))
    assert str(caught.value).endswith(message) or message in str(caught.value)


def test_class_variant_is_picked_per_record(tmp_path: Path) -> None:
    """class_field picks the variant (case-insensitively) and is consumed; an unlisted value keeps the template's class."""
    template = load_template_file(write(tmp_path, (
        "field_map: {text: message}\nclass_field: kind\nclasses:\n"
        "  Net: {class_uid: 4001, class_name: Network Activity, activity_id: 6, field_map: {ip: src_endpoint.ip}}\n")))
    context = IngestContext("t", "r", NOW)
    (net,) = normalize_record(template, {"kind": "net", "ip": "10.0.0.1", "text": "hi"}, context)
    (other,) = normalize_record(template, {"kind": "zzz", "ip": "10.0.0.1", "text": "hi"}, context)
    assert (net["class_uid"], net["src_endpoint"], net["message"]) == (4001, {"ip": "10.0.0.1"}, "hi")
    assert "unmapped" not in net
    assert (other["class_uid"], other["unmapped"]) == (0, {"kind": "zzz", "ip": "10.0.0.1"})
