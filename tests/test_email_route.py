"""
POST /v1/inbox/email/{token} in memory (the real resource tree over fakes, through StubTreq; see
L{aisoc_inboxd.testing}): every relay's fixture answers exactly 200 and becomes valid OCSF; SNS
subscription confirmations are acknowledged, never events; types that carry no e-mail are 415.
"""
from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted

from aisoc_inboxd.testing import FakeStore, MemoryInbox
from tests.support.ocsf import assert_valid_ocsf
from tests.support.shared import CORPUS, FIXTURES, require_shared

EMAIL = FIXTURES / "email"
FORM = "multipart/form-data; boundary=xYzZY"

#: fixture, Content-Type, template, facts about the event (title, from, vendor, severity_id, files)
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("inbound-webhook-doc-example.json", "application/json", "email-forwarded",
     {"title": "Test subject", "from": "support@postmarkapp.com", "files": ["test.txt"]}),
    ("inbound-parse-default-data.txt", FORM, "email-forwarded",
     {"title": "Testing non-raw", "from": "test@example.com", "files": []}),
    ("inbound-parse-raw-data.txt", FORM, "email-forwarded",
     {"title": "Testing with Request.bin", "from": "test@example.com", "files": []}),
    ("inbound-parse-raw-data-with-attachments.txt", FORM, "email-forwarded",
     {"title": "Raw Payload", "from": "test@example.com", "files": ["SendGrid.jpg"]}),
    ("authored-ses-sns-base64.json", "text/plain; charset=UTF-8", "email-forwarded",
     {"title": "[Tenable] Critical vulnerability on web-01", "from": "no-reply@tenable.example",
      "vendor": "Tenable", "severity_id": 5, "files": []}),
    ("authored-mailgun-multipart.txt", "multipart/form-data; boundary=mgBoundary42", "email-forwarded",
     {"title": "[CrowdStrike] Critical detection on ws-7", "from": "falcon@crowdstrike.example",
      "vendor": "CrowdStrike", "severity_id": 5, "files": ["detection-7.json"]}),
    ("authored-mailgun-mime.form", "application/x-www-form-urlencoded", "email-forwarded",
     {"title": "[Tenable] Critical vulnerability on web-01", "from": "no-reply@tenable.example",
      "vendor": "Tenable", "files": []}),
    ("rfc2047-subject-bank-notice.eml", "message/rfc822", "email-forwarded",
     {"title": "Transferencia Interbancaria Banca en Línea", "from": "notificaccion-clientes@bbva.mx"}),
    ("email-address-as-display-name.eml", "message/rfc822", "email-forwarded",
     {"title": "Test email with email address as display name", "from": "bob@example.com"}),
    ("malformed-delivery-status-report.eml", "message/rfc822", "email-forwarded",
     {"title": "Delivery failure (abh@netpar.com.br)", "from": "postmaster@netpar.com.br"}),
    ("postmark-relay-malicious-url-click.json", "application/json", "microsoft-defender-email",
     {"title": "A potentially malicious URL click was detected", "from": "alerts@defender.example",
      "vendor": "Microsoft", "severity_id": 4, "time": 1741945267000,
      "src_url": "https://security.microsoft.com/alerts/fa4c1a2b-0000-4000-8000-000000000001"}),
    ("authored-defender-user-restricted.eml", "message/rfc822", "microsoft-defender-email",
     {"title": "User restricted from sending email", "from": "alerts@defender.example", "severity_id": 4,
      "user": "diego.siciliani@contoso.example"}),
    ("forwarded-text-malicious-url-removed.txt", "text/plain", "microsoft-defender-email",
     {"title": "Email messages containing malicious URL removed after delivery",
      "from": "alerts@defender.example", "severity_id": 1, "time": 1739887124000}),
]


@pytest.fixture
def inboxd() -> MemoryInbox:
    return MemoryInbox(FakeStore())


def check_event(event: dict[str, Any], facts: dict[str, Any]) -> None:
    assert_valid_ocsf(event)
    assert event["class_uid"] == 2004
    assert event["metadata"]["log_source"] == "email"
    assert event["finding_info"]["title"] == facts["title"]
    email = event["evidences"][0]["email"]
    assert email["from"] == facts["from"]
    if "files" in facts:
        assert [f["name"] for f in email.get("files", [])] == facts["files"]
    for f in email.get("files", []):
        assert f["hashes"][0]["algorithm_id"] == 3 and len(f["hashes"][0]["value"]) == 64
    if "vendor" in facts:
        assert event["metadata"]["product"]["vendor_name"] == facts["vendor"]
    if "severity_id" in facts:
        assert event["severity_id"] == facts["severity_id"]
    if "time" in facts:
        assert event["time"] == facts["time"]
    if "src_url" in facts:
        assert event["finding_info"]["src_url"] == facts["src_url"]
    if "user" in facts:
        assert event["evidences"][0]["user"]["name"] == facts["user"]


@pytest.mark.parametrize("fixture, content_type, template, facts", CASES, ids=[c[0] for c in CASES])
@pytest_twisted.ensureDeferred
async def test_relay_fixture_is_200_and_valid_ocsf(inboxd: MemoryInbox, fixture: str, content_type: str,
                                                   template: str, facts: dict[str, Any]) -> None:
    """Each relay's body answers exactly 200 {"accepted": 1} and its event is valid OCSF with the mail's facts."""
    token = await inboxd.mint("tenant-a", template)
    status, body, _ = await inboxd.post(f"/v1/inbox/email/{token}", (EMAIL / fixture).read_bytes(),
                                        {"Content-Type": content_type})
    assert (status, body) == (200, {"accepted": 1, "template": template})
    [event] = inboxd.events()
    check_event(event, facts)
    assert "VGhpcyBpcyBhdHRhY2htZW50" not in json.dumps(event)  # never attachment content


@pytest.mark.parametrize("corpus_file, title", [
    ("email/ses/sns-envelope-received.json", "Example subject"),
    ("email/ses/received-sns-action-with-content.json", "Example subject"),
    ("email/ses/received-alert-s3-action.json", "Example subject"),
])
@pytest_twisted.ensureDeferred
async def test_ses_corpus_files_from_shared(inboxd: MemoryInbox, corpus_file: str, title: str) -> None:
    """The AWS-documented SES notifications (kept in ../shared for their licence) become valid OCSF."""
    body = require_shared(CORPUS / corpus_file).read_bytes()
    token = await inboxd.mint("tenant-a", "email-forwarded")
    status, reply, _ = await inboxd.post(f"/v1/inbox/email/{token}", body, {"Content-Type": "text/plain"})
    assert (status, reply) == (200, {"accepted": 1, "template": "email-forwarded"})
    [event] = inboxd.events()
    check_event(event, {"title": title, "from": "sender@example.com"})


@pytest_twisted.ensureDeferred
async def test_sns_subscription_confirmation_is_acknowledged_never_an_event(inboxd: MemoryInbox) -> None:
    """An SNS SubscriptionConfirmation gets 200 with nothing accepted and publishes no event."""
    token = await inboxd.mint("tenant-a", "email-forwarded")
    body = (EMAIL / "authored-sns-subscription-confirmation.json").read_bytes()
    status, reply, _ = await inboxd.post(f"/v1/inbox/email/{token}", body, {"Content-Type": "text/plain"})
    assert (status, reply) == (200, {"accepted": 0, "template": "email-forwarded"})
    assert inboxd.events() == []


@pytest.mark.parametrize("content_type", ["image/png", "application/xml", "application/pdf"])
@pytest_twisted.ensureDeferred
async def test_types_that_carry_no_email_are_415(inboxd: MemoryInbox, content_type: str) -> None:
    """A Content-Type no relay sends is 415 naming it, and nothing is published."""
    token = await inboxd.mint("tenant-a", "email-forwarded")
    status, reply, _ = await inboxd.post(f"/v1/inbox/email/{token}", b"x", {"Content-Type": content_type})
    assert status == 415
    assert content_type in reply["error"]
    assert inboxd.events() == []


@pytest.mark.parametrize("body, content_type, message", [
    (b"just some words", "text/plain", "no sender or recipient"),
    (b"a=1&b=2", "application/x-www-form-urlencoded", "no known relay"),
    (b"--x\r\n\r\n", "multipart/form-data", "without a boundary"),
])
@pytest_twisted.ensureDeferred
async def test_bodies_that_are_no_email_are_400(inboxd: MemoryInbox, body: bytes, content_type: str,
                                               message: str) -> None:
    """A body of no relay's shape is 400 saying why, and nothing is published."""
    token = await inboxd.mint("tenant-a", "email-forwarded")
    status, reply, _ = await inboxd.post(f"/v1/inbox/email/{token}", body, {"Content-Type": content_type})
    assert status == 400
    assert message in reply["error"]
    assert inboxd.events() == []


@pytest_twisted.ensureDeferred
async def test_bad_token_on_the_email_route_is_401(inboxd: MemoryInbox) -> None:
    """The e-mail route resolves tokens like every token route: unknown is 401."""
    status, reply, _ = await inboxd.post("/v1/inbox/email/aisoc_inbox_" + "a" * 52, b"{}",
                                         {"Content-Type": "application/json"})
    assert (status, reply) == (401, {"error": "invalid token"})
