"""
The bundled vendor templates on real payloads: one test per fixture, asserting the key OCSF fields
(class, activity, severity, time, title/uid, product, actors and endpoints where the payload has
them), and every emitted event valid OCSF 1.8.0.

Fixtures whose licence allows it live in C{tests/fixtures/webhooks/}; the Elastic License 2.0 and
CC-BY-SA ones (Cloudflare Logpush records, AWS samples) are read from C{../shared/corpus/} and their
tests skip when it is absent.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aisoc_inboxd.normalizer import IngestContext, Template, load_template_file, normalize_record
from tests.support.ocsf import assert_valid_ocsf
from tests.support.shared import CORPUS, FIXTURES, PROJECT, require_shared

RECEIVED_AT = 1778230900.25
TEMPLATES = PROJECT / "templates"


def template(template_id: str) -> Template:
    return load_template_file(TEMPLATES / f"{template_id}.yaml")


def events(template_id: str, record: dict[str, Any], headers: dict[str, str] | None = None
           ) -> list[dict[str, Any]]:
    """
    The events C{record} becomes, each checked to be valid OCSF.
    """
    context = IngestContext("tenant-1", "webhook", RECEIVED_AT, headers=headers or {})
    produced = normalize_record(template(template_id), record, context)
    for event in produced:
        assert_valid_ocsf(event)
    return produced


def one(template_id: str, record: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    [event] = events(template_id, record, headers)
    return event


def fixture(vendor: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "webhooks" / vendor / name).read_text())
    return data


def shared(vendor: str, name: str) -> Path:
    return require_shared(CORPUS / "webhooks" / vendor / name)


def ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------ PagerDuty


def test_pagerduty_v3_triggered_creates_with_agent_and_client() -> None:
    """incident.triggered is a Create with the acting user and client, P1 Critical, occurred_at time."""
    event = one("pagerduty", fixture("pagerduty", "v3-incident-triggered.json"))
    assert (event["class_uid"], event["activity_id"], event["is_alert"]) == (2004, 1, True)
    assert (event["finding_info"]["uid"], event["severity_id"]) == ("PGR0VU2", 5)
    assert event["time"] == 1601664322169
    assert event["metadata"]["product"] == {"vendor_name": "PagerDuty", "name": "PagerDuty"}
    assert event["evidences"][0]["actor"] == {"user": {"name": "Tenex Engineer", "uid": "PLH1HKV"},
                                              "app_name": "PagerDuty"}


def test_pagerduty_v3_priority_updated_is_an_update() -> None:
    """incident.priority_updated is an Update of the same incident, not a new alert."""
    event = one("pagerduty", fixture("pagerduty", "v3-incident-priority-updated.json"))
    assert (event["activity_id"], event["activity_name"], event["type_uid"]) == (2, "Update", 200402)
    assert "is_alert" not in event
    assert event["metadata"]["event_code"] == "incident.priority_updated"


def test_pagerduty_v3_annotated_is_the_incident_with_the_note() -> None:
    """incident.annotated is filed under the incident's id and carries the note as its message."""
    record = fixture("pagerduty", "v3-incident-annotated.json")
    event = one("pagerduty", record)
    assert event["finding_info"]["uid"] == record["event"]["data"]["incident"]["id"]
    assert event["message"] == record["event"]["data"]["content"]
    assert event["activity_id"] == 2


def test_pagerduty_v3_null_agent_and_client() -> None:
    """service.updated with agent and client null maps without an actor and without nulls."""
    event = one("pagerduty", fixture("pagerduty", "v3-service-updated.json"))
    assert "evidences" not in event
    assert event["time"] == 1614692111682
    assert "agent" not in event.get("unmapped", {}).get("event", {})


def test_pagerduty_events_api_v2_resolve_closes() -> None:
    """An Events API v2 resolve is a Close whose status is Resolved."""
    event = one("pagerduty", fixture("pagerduty", "events-v2-resolve.json"))
    assert (event["activity_id"], event["status_id"], event["status"]) == (3, 4, "Resolved")
    assert event["finding_info"]["uid"] == "dedupkeyhere"


def test_pagerduty_idempotency_key_prefers_the_webhook_id_header() -> None:
    """X-Webhook-Id is the delivery's key; without it the v3 event id is."""
    record = fixture("pagerduty", "v3-incident-triggered.json")
    assert template("pagerduty").idempotency_key(record, {"x-webhook-id": "w-1"}) == "w-1"
    assert template("pagerduty").idempotency_key(record, {}) == "5ac64822-4adc-4fda-ade0-410becf0de4f"


# ------------------------------------------------------------------ Opsgenie


def test_opsgenie_create_with_ms_created_and_ns_updated() -> None:
    """createdAt (ms) and updatedAt (ns, beyond 2^53) both become exact epoch milliseconds."""
    event = one("opsgenie", fixture("opsgenie", "alert-create.json"))
    info = event["finding_info"]
    assert (event["class_uid"], event["activity_id"]) == (2004, 1)
    assert (info["uid"], info["title"]) == ("052652ac-5d1c-464a-812a-7dd18bbfba8c", "test alert")
    assert (info["created_time"], info["modified_time"]) == (1420452191104, 1420452193166)
    assert event["time"] == 1420452193166
    assert event["metadata"]["original_time"] == "1420452193166002000"
    assert info["types"] == ["tag1", "tag2"]
    assert event["evidences"][0]["actor"]["user"]["name"] == "fili@ifountain.com"
    assert event["metadata"]["product"]["name"] == "Opsgenie"
    assert json.loads(event["raw_data"])["alert"]["updatedAt"] == 1420452193166002000


def test_opsgenie_acknowledge_is_an_update_keeping_the_action() -> None:
    """Acknowledge updates the alert; the vendor's action word stays in unmapped."""
    event = one("opsgenie", fixture("opsgenie", "alert-acknowledge.json"))
    assert (event["activity_id"], event["time"]) == (2, 1420452224764)
    assert event["unmapped"]["action"] == "Acknowledge"
    assert event["severity_id"] == 0


def test_opsgenie_minimal_callback_without_times_or_entity() -> None:
    """A minimal callback uses the receive time and drops the empty entity."""
    event = one("opsgenie", fixture("opsgenie", "alert-create-minimal-callback.json"))
    assert event["time"] == int(RECEIVED_AT * 1000)
    assert "resources" not in event
    assert event["finding_info"]["uid_alt"] == "webhooktest"


# ------------------------------------------------------------------ GitHub


GITHUB = "github-security-advisory"


def test_github_security_advisory_published() -> None:
    """A published advisory is a Create with the GHSA id and Medium severity; it is one vulnerability: the CVE among its identifiers (cve_id is null), its CWE and both affected django ranges."""
    event = one(GITHUB, fixture(GITHUB, "security-advisory-published.json"),
                {"x-github-event": "security_advisory"})
    assert (event["activity_id"], event["severity_id"]) == (1, 3)
    assert event["finding_info"]["uid"] == "GHSA-rf4j-j272-fj86"
    assert event["finding_info"]["title"] == "Moderate severity vulnerability that affects django"
    assert event["time"] == 1538601234000
    assert event["metadata"]["event_code"] == "security_advisory"
    assert event["unmapped"]["action"] == "published"
    [vulnerability] = event["vulnerabilities"]
    assert vulnerability["cve"] == {"uid": "CVE-2018-6188", "related_cwes": [{"uid": "CWE-0000"}]}
    assert vulnerability["related_vulnerabilities"] == ["GHSA-rf4j-j272-fj86"]
    assert (vulnerability["title"], vulnerability["severity"], vulnerability["vendor_name"]) == (
        "Moderate severity vulnerability that affects django", "moderate", "GitHub")
    assert vulnerability["affected_packages"] == [
        {"name": "django", "package_manager": "pip", "version": ">= 2.0.0, < 2.0.2", "fixed_in_version": "2.0.2"},
        {"name": "django", "package_manager": "pip", "version": ">= 1.11.8, < 1.11.10", "fixed_in_version": "1.11.10"},
    ]
    assert vulnerability["references"] == ["https://nvd.nist.gov/vuln/detail/CVE-2018-6188"]
    assert "package" not in json.dumps(event["unmapped"])


def test_github_security_advisory_updated_carries_its_cve() -> None:
    """An updated advisory is an Update at its updated_at; its one vulnerability is its CVE, with the package that has no fix."""
    event = one(GITHUB, fixture(GITHUB, "security-advisory-updated.json"))
    assert (event["activity_id"], event["time"]) == (2, 1610141248000)
    [vulnerability] = event["vulnerabilities"]
    assert vulnerability["cve"]["uid"] == "CVE-2019-5438"
    assert vulnerability["affected_packages"] == [{"name": "harp", "package_manager": "npm", "version": "<= 0.29.0"}]


def test_github_security_advisory_withdrawn_closes() -> None:
    """A withdrawn advisory is a Close (Resolved) at its withdrawal time, Critical."""
    event = one(GITHUB, fixture(GITHUB, "security-advisory-withdrawn.json"))
    assert (event["activity_id"], event["status_id"], event["severity_id"]) == (3, 4, 5)
    assert event["time"] == 1620317588000


def test_github_dependabot_alert() -> None:
    """A Dependabot alert is the repository's finding with one vulnerability: the advisory's CVE, its CWE with its name, the GHSA id, and the alert's vulnerable package."""
    event = one(GITHUB, fixture(GITHUB, "dependabot-alert-created.json"))
    assert event["finding_info"]["uid"].endswith("/dependabot/alerts/20")
    assert event["resources"][0]["name"] == "wolfy1339/pika-pack"
    assert event["severity_id"] == 3
    [vulnerability] = event["vulnerabilities"]
    assert vulnerability["cve"] == {"uid": "CVE-2022-25883", "related_cwes": [
        {"uid": "CWE-1333", "caption": "Inefficient Regular Expression Complexity"}]}
    assert vulnerability["related_vulnerabilities"] == ["GHSA-c2qf-rxjj-qqgw"]
    assert vulnerability["affected_packages"] == [
        {"name": "semver", "package_manager": "npm", "version": "< 7.5.2", "fixed_in_version": "7.5.2"}]
    assert "https://github.com/advisories/GHSA-c2qf-rxjj-qqgw" in vulnerability["references"]


def test_github_code_scanning_alert() -> None:
    """A code scanning alert keeps its rule, tool, link and the repository."""
    event = one(GITHUB, fixture(GITHUB, "code-scanning-alert-created.json"))
    assert event["finding_info"]["types"] == ["java/sql-injection"]
    assert event["finding_info"]["product"]["name"] == "CodeQL"
    assert event["finding_info"]["src_url"].startswith("https://github.com/Codertocat/Hello-World/")
    assert event["severity_id"] == 4


def test_github_secret_scanning_alert_reopened() -> None:
    """A reopened secret scanning alert is an Update naming the secret type and the sender."""
    event = one(GITHUB, fixture(GITHUB, "secret-scanning-alert-reopened.json"))
    assert event["activity_id"] == 2
    assert event["finding_info"]["types"] == ["adafruit_io_key"]
    assert event["evidences"][0]["actor"]["user"]["name"] == "Codertocat"


def test_github_repository_advisory() -> None:
    """A repository advisory (shape authored from GitHub's webhook docs) maps like a global one."""
    record = {"action": "published",
              "repository_advisory": {"ghsa_id": "GHSA-abcd-1234-5678", "cve_id": "CVE-2024-0001",
                                      "summary": "Path traversal in the uploader", "severity": "high",
                                      "html_url": "https://github.com/acme/app/security/advisories/GHSA-abcd-1234-5678",
                                      "published_at": "2024-03-01T10:00:00Z", "updated_at": "2024-03-01T10:00:00Z",
                                      "withdrawn_at": None, "cwes": [{"cwe_id": "CWE-22", "name": "Path Traversal"}]},
              "repository": {"full_name": "acme/app", "node_id": "R_1"}}
    event = one(GITHUB, record, {"x-github-event": "repository_advisory"})
    assert (event["finding_info"]["uid"], event["severity_id"], event["activity_id"]) == ("GHSA-abcd-1234-5678", 4, 1)
    assert event["finding_info"]["src_url"].endswith("GHSA-abcd-1234-5678")
    assert event["time"] == 1709287200000
    [vulnerability] = event["vulnerabilities"]
    assert vulnerability["cve"] == {"uid": "CVE-2024-0001", "related_cwes": [{"uid": "CWE-22", "caption": "Path Traversal"}]}
    assert vulnerability["related_vulnerabilities"] == ["GHSA-abcd-1234-5678"]


def test_github_repository_advisory_without_cve_is_the_advisory() -> None:
    """An advisory without a CVE is one vulnerability whose advisory is the GHSA (link, times, CWEs), with its packages and their patched versions."""
    record = {"action": "published",
              "repository_advisory": {"ghsa_id": "GHSA-wxyz-9876-5432", "cve_id": None,
                                      "summary": "Token leak in debug logs", "severity": "low",
                                      "html_url": "https://github.com/acme/app/security/advisories/GHSA-wxyz-9876-5432",
                                      "published_at": "2024-03-01T10:00:00Z", "updated_at": "2024-03-02T10:00:00Z",
                                      "withdrawn_at": None,
                                      "identifiers": [{"value": "GHSA-wxyz-9876-5432", "type": "GHSA"}],
                                      "cwes": [{"cwe_id": "CWE-532", "name": "Insertion of Sensitive Information into Log File"},
                                               {"cwe_id": "CWE-200", "name": "Exposure of Sensitive Information"}],
                                      "vulnerabilities": [{"package": {"ecosystem": "pip", "name": "acme-app"},
                                                           "vulnerable_version_range": "< 2.4.1", "patched_versions": "2.4.1",
                                                           "vulnerable_functions": []},
                                                          {"package": {"ecosystem": "npm", "name": "@acme/app"},
                                                           "vulnerable_version_range": "<= 1.9.0", "patched_versions": None}]},
              "repository": {"full_name": "acme/app", "node_id": "R_1"}}
    event = one(GITHUB, record, {"x-github-event": "repository_advisory"})
    assert (event["finding_info"]["uid"], event["severity_id"]) == ("GHSA-wxyz-9876-5432", 2)
    [vulnerability] = event["vulnerabilities"]
    assert "cve" not in vulnerability and "cwe" not in vulnerability
    assert vulnerability["advisory"] == {
        "uid": "GHSA-wxyz-9876-5432", "src_url": "https://github.com/acme/app/security/advisories/GHSA-wxyz-9876-5432",
        "created_time": 1709287200000, "modified_time": 1709373600000,
        "related_cwes": [{"uid": "CWE-532", "caption": "Insertion of Sensitive Information into Log File"},
                         {"uid": "CWE-200", "caption": "Exposure of Sensitive Information"}]}
    assert vulnerability["affected_packages"] == [
        {"name": "acme-app", "package_manager": "pip", "version": "< 2.4.1", "fixed_in_version": "2.4.1"},
        {"name": "@acme/app", "package_manager": "npm", "version": "<= 1.9.0"}]


def test_github_scanning_alerts_carry_no_vulnerability() -> None:
    """Code and secret scanning alerts name no advisory: no vulnerabilities at all."""
    for name in ("code-scanning-alert-created.json", "secret-scanning-alert-reopened.json"):
        assert "vulnerabilities" not in one(GITHUB, fixture(GITHUB, name))


def test_github_ping_is_acknowledged_and_delivery_is_the_key() -> None:
    """A ping becomes no event; X-GitHub-Delivery is the idempotency key."""
    ping = {"zen": "Design for failure.", "hook_id": 1}
    assert events(GITHUB, ping, {"x-github-event": "ping"}) == []
    assert template(GITHUB).acknowledges(ping, {"x-github-event": "ping"})
    assert template(GITHUB).idempotency_key(ping, {"x-github-delivery": "72d3162e"}) == "72d3162e"


# ------------------------------------------------------------------ Cloudflare Logpush


def test_cloudflare_firewall_events_same_time_in_three_formats() -> None:
    """RFC 3339, unix and unixnano Datetime give one time; block is disposition Blocked."""
    records = ndjson(shared("cloudflare-logpush", "firewall-events-batch.ndjson"))
    produced = [one("cloudflare-logpush", r) for r in records]
    assert {e["time"] for e in produced[:3]} == {1653974623000}
    first = produced[0]
    assert (first["class_uid"], first["activity_id"], first["activity_name"]) == (4002, 3, "Get")
    assert (first["disposition_id"], first["disposition"]) == (2, "Blocked")
    assert first["src_endpoint"]["ip"] == "175.16.199.0"
    assert first["src_endpoint"]["location"]["country"] == "US"
    assert first["metadata"]["original_event_uid"] == "713d477539b55c29"
    assert first["metadata"]["profiles"] == ["security_control"]
    assert produced[3]["time"] == 1726059430000


def test_cloudflare_http_requests() -> None:
    """http_requests records are HTTP Activity with method, URL, status, client and edge."""
    for record in ndjson(shared("cloudflare-logpush", "http-requests-batch.ndjson")):
        event = one("cloudflare-logpush", record)
        assert (event["activity_id"], event["http_request"]["http_method"]) == (6, "POST")
        assert event["http_request"]["url"]["hostname"] == "xyz.example.com"
        assert event["http_response"]["code"] == 200
        assert event["src_endpoint"]["location"]["country"] == "SA"
        assert event["dst_endpoint"]["ip"] == "1.128.0.0"
        assert event["time"] == 1653485126000
        assert event["metadata"]["product"]["vendor_name"] == "Cloudflare"


def test_cloudflare_single_record_and_validation_upload() -> None:
    """A single pretty-printed record maps; the {"content":"tests"} upload is acknowledged."""
    record = json.loads(shared("cloudflare-logpush", "http-requests-single.json").read_text())
    assert one("cloudflare-logpush", record)["metadata"]["original_event_uid"] == record["RayID"]
    assert events("cloudflare-logpush", {"content": "tests"}) == []


# ------------------------------------------------------------------ AWS EventBridge


@pytest.mark.parametrize("name, uid, severity_id, time", [
    ("guardduty-finding-dns-blackhole.json", "d6012345678912345678912349f831b8f", 3, 1669119740000),
    ("guardduty-finding-eks-anonymous.json", "250023a9abcdefabcdef12345678", 4, 1669119740000),
    ("securityhub-findings-imported-guardduty.json",
     "arn:aws::guardduty:us-east-1:193043430472:detector/d4b040365221be2b54a6264dc9a4bc64/finding/"
     "46ba0ac2845071e23ccdeb2ae03bfdea", 3, 1601468040000),
    ("securityhub-findings-imported-fsbp-control.json",
     "arn:aws:securityhub:us-east-2:123456789012:subscription/aws-foundational-security-best-practices/v/"
     "1.0.0/CloudTrail.2/finding/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111", 3, 1632845400000),
    ("securityhub-findings-custom-action.json",
     "arn:aws:securityhub:us-east-2:123456789012:subscription/cis-aws-foundations-benchmark/v/1.2.0/2.7/"
     "finding/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111", 3, 1555008228000),
    ("securityhub-insight-results.json", "ARN of the insight", 0, 1513968228000),
])
def test_eventbridge_envelopes(name: str, uid: str, severity_id: int, time: int) -> None:
    """Each EventBridge sample maps its finding id, severity, time, account/region and detail-type."""
    record = json.loads(shared("aws-eventbridge", name).read_text())
    event = one("aws-eventbridge", record)
    assert (event["class_uid"], event["finding_info"]["uid"]) == (2004, uid)
    assert (event["severity_id"], event["time"]) == (severity_id, time)
    assert event["cloud"] == {"provider": "AWS", "account": {"uid": record["account"]}, "region": record["region"]}
    assert event["metadata"]["event_code"] == record["detail-type"]
    assert event["metadata"]["original_event_uid"] == record["id"]
    assert template("aws-eventbridge").idempotency_key(record, {}) == record["id"]


def test_eventbridge_reshaped_by_an_input_transformer() -> None:
    """An event an input transformer reshaped still maps what it can and keeps the rest."""
    record = {"title": "GuardDuty: Recon:EC2/PortProbeUnprotectedPort", "severity": "HIGH",
              "account_id": "123456789012", "instance": "i-0abc"}
    event = one("aws-eventbridge", record)
    assert (event["finding_info"]["title"], event["severity_id"]) == (record["title"], 4)
    assert event["unmapped"] == {"account_id": "123456789012", "instance": "i-0abc"}
    assert event["time"] == int(RECEIVED_AT * 1000)
    assert template("aws-eventbridge").idempotency_key(record, {}) is None


# ------------------------------------------------------------------ AWS SNS


def test_sns_notification_text() -> None:
    """A text Notification has its subject as title, message, MessageId and the SNS timestamp."""
    record = json.loads(shared("aws-sns", "notification.json").read_text())
    event = one("aws-sns", record)
    assert (event["finding_info"]["title"], event["message"]) == ("My First Message", "Hello world!")
    assert event["finding_info"]["uid"] == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
    assert event["time"] == 1335920046655
    assert event["metadata"]["source"] == "arn:aws:sns:us-west-2:123456789012:MyTopic"
    assert template("aws-sns").idempotency_key(record, {}) == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"


def test_sns_notification_wrapping_an_eventbridge_event() -> None:
    """The Message JSON string is decoded: the GuardDuty finding inside is the finding."""
    record = json.loads(shared("aws-sns", "notification-eventbridge-guardduty.json").read_text())
    expected = json.loads(shared("aws-sns", "notification-eventbridge-guardduty.expected.json").read_text())["expect"]
    event = one("aws-sns", record)
    assert event["finding_info"]["types"] == [expected["inner_finding_type"]]
    assert event["metadata"]["event_code"] == expected["inner_detail_type"]
    assert event["finding_info"]["product"]["name"] == expected["inner_source"]
    assert (event["severity_id"], event["time"]) == (3, 1669119740000)
    assert event["raw_data"] == json.dumps(record, ensure_ascii=False)


def cloudwatch_alarm(state: str) -> dict[str, Any]:
    """
    An SNS Notification carrying a CloudWatch alarm state change, in the shape AWS documents for
    alarm actions (AUTHORED: values invented, keys as sent).
    """
    alarm = {"AlarmName": "api-5xx-rate", "AlarmDescription": "5xx above 5%", "AWSAccountId": "123456789012",
             "AlarmConfigurationUpdatedTimestamp": "2026-05-01T08:00:00.000+0000", "NewStateValue": state,
             "NewStateReason": "Threshold Crossed: 1 datapoint [7.5] was greater than the threshold (5.0).",
             "StateChangeTime": "2026-05-08T09:00:00.000+0000", "Region": "EU (Ireland)",
             "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:api-5xx-rate", "OldStateValue": "OK",
             "Trigger": {"MetricName": "5XXError", "Namespace": "AWS/ApiGateway", "Statistic": "Average",
                         "Period": 60, "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold",
                         "Threshold": 5.0}}
    return {"Type": "Notification", "MessageId": f"alarm-{state}", "TopicArn": "arn:aws:sns:eu-west-1:123456789012:alarms",
            "Subject": f'{state}: "api-5xx-rate" in EU (Ireland)', "Message": json.dumps(alarm),
            "Timestamp": "2026-05-08T09:00:01.000Z", "SignatureVersion": "1"}


@pytest.mark.parametrize(("state", "activity_id", "severity_id"), [
    ("ALARM", 1, 3), ("OK", 3, 1), ("INSUFFICIENT_DATA", 2, 2),
])
def test_sns_cloudwatch_alarm_state_gives_a_default_severity(state: str, activity_id: int, severity_id: int) -> None:
    """A CloudWatch alarm carries no severity: ALARM is Medium, OK Informational, INSUFFICIENT_DATA Low."""
    event = one("aws-sns", cloudwatch_alarm(state))
    assert (event["activity_id"], event["severity_id"]) == (activity_id, severity_id)
    assert event["finding_info"]["title"] == "api-5xx-rate"
    assert event["unmapped"]["Message"]["NewStateValue"] == state
    assert event["time"] == 1778230800000


@pytest.mark.parametrize("name", ["subscription-confirmation.json", "unsubscribe-confirmation.json"])
def test_sns_confirmations_are_acknowledged(name: str) -> None:
    """Subscription and unsubscribe confirmations become no event."""
    assert events("aws-sns", json.loads(shared("aws-sns", name).read_text())) == []


# ------------------------------------------------------------------ Splunk HEC


def test_splunk_hec_envelopes() -> None:
    """HEC envelopes: int/float/string times, text events as message, host as reporter."""
    lines = require_shared(CORPUS / "hec" / "authored-envelopes-ndjson.txt").read_text().splitlines()
    produced = [one("splunk-hec", json.loads(line)) for line in lines if line.strip()]
    assert [e["class_uid"] for e in produced] == [0] * len(produced)
    assert produced[0]["time"] == 1426279439000
    assert produced[0]["message"] == "Hello world!"
    assert produced[0]["metadata"]["reporter"] == {"hostname": "localhost"}
    assert produced[0]["metadata"]["log_name"] == "my_sample_data"
    assert produced[1]["time"] == produced[2]["time"] == 1433188255500
    assert produced[2]["unmapped"]["event"]["user"] == "alice"
    assert (produced[-1]["message"], produced[-1]["severity_id"]) == ("Something happened", 1)


@pytest.mark.parametrize(("event", "severity_id"), [
    ({"message": "disk almost full", "severity": "low"}, 2),
    ({"message": "disk almost full", "severity": "Medium"}, 3),
    ({"message": "retrying", "log_level": "WARN"}, 3),
    ({"message": "retrying", "loglevel": "error"}, 4),
    ({"message": "started", "level": "informational"}, 1),
])
def test_splunk_hec_severity_words_and_log_level(event: dict[str, Any], severity_id: int) -> None:
    """HEC events name their severity with the common words, in severity, level or log_level."""
    produced = one("splunk-hec", {"event": event, "sourcetype": "app"})
    assert produced["severity_id"] == severity_id


def test_splunk_hec_log_level_in_indexed_fields() -> None:
    """A log level sent as an indexed field counts too."""
    assert one("splunk-hec", {"event": "retrying", "fields": {"log_level": "critical"}})["severity_id"] == 5


def test_splunk_hec_spec_example() -> None:
    """The spec's HEC example keeps its event object and sourcetype."""
    event = one("splunk-hec", {"event": {"action": "login_failed", "user": "alice"}, "sourcetype": "auth"})
    assert event["unmapped"]["event"] == {"action": "login_failed", "user": "alice"}
    assert event["metadata"]["log_name"] == "auth"
