"""
What real vendor deliveries do: PagerDuty v3 with null agent/client, GitHub pings and form posts,
Opsgenie's ms + ns times, Cloudflare Logpush gzip batches and its validation upload and EventBridge
envelopes in memory (L{aisoc_inboxd.testing}); AWS SNS text/plain envelopes, confirmations and
signatures against the running daemon, which fetches from a local HTTPS server standing in for AWS
(with a key pair and a CA the test makes).
"""
from __future__ import annotations

import base64
import datetime
import gzip
import json
import re
from pathlib import Path
from typing import Any, AsyncIterator, Iterator
from urllib.parse import quote

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from treq.client import HTTPClient
from twisted.internet import ssl
from twisted.internet.endpoints import serverFromString
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from aisoc_inboxd.testing import FakeStore, MemoryInbox
from aisoc_inboxd.vendors import SnsGate, SnsOptions, UrlPolicy, VendorGate
from aisoc_inboxd.vendors.sns import canonical_text
from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon
from tests.support.ocsf import assert_valid_ocsf
from tests.support.shared import FIXTURES
from tests.support.tls import make_tls_files

TOPIC = "arn:aws:sns:us-west-2:123456789012:SecurityAlerts"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def logs() -> Iterator[list[str]]:
    """Every log line emitted while the test runs."""
    seen: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        seen.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


@pytest.fixture
def inboxd() -> MemoryInbox:
    return MemoryInbox(FakeStore())


def fixture(vendor: str, name: str) -> bytes:
    return (FIXTURES / "webhooks" / vendor / name).read_bytes()


# ------------------------------------------------------------------ PagerDuty, GitHub, Opsgenie


@pytest_twisted.ensureDeferred
async def test_pagerduty_v3_with_null_agent_and_client(inboxd: MemoryInbox) -> None:
    """A v3 delivery whose agent and client are null is accepted and maps without an actor."""
    token = await inboxd.mint(template="pagerduty")
    status, body, _ = await inboxd.post(f"/v1/inbox/{token}", fixture("pagerduty", "v3-service-updated.json"),
                                        {**JSON, "X-Webhook-Id": "d3f1b2c4"})
    assert (status, body) == (200, {"accepted": 1, "template": "pagerduty"})
    [event] = inboxd.events()
    assert_valid_ocsf(event)
    assert event["metadata"]["event_code"] == "service.updated"
    assert "evidences" not in event


@pytest_twisted.ensureDeferred
async def test_github_ping_is_200_without_publishing(inboxd: MemoryInbox) -> None:
    """GitHub's ping is answered 200 {"accepted": 0} and nothing is published."""
    token = await inboxd.mint(template="github-security-advisory")
    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 42, "hook": {"type": "Repository"}})
    status, body, _ = await inboxd.post(f"/v1/inbox/{token}", ping.encode(),
                                        {**JSON, "X-GitHub-Event": "ping", "X-GitHub-Delivery": "d-1"})
    assert (status, body) == (200, {"accepted": 0, "template": "github-security-advisory"})
    assert inboxd.events() == []


@pytest_twisted.ensureDeferred
async def test_github_event_header_and_action_are_recorded_from_a_form_post(inboxd: MemoryInbox) -> None:
    """A form-encoded payload= delivery publishes with X-GitHub-Event as event_code, the action kept, and the advisory as one vulnerability."""
    token = await inboxd.mint(template="github-security-advisory")
    payload = fixture("github-security-advisory", "security-advisory-withdrawn.json").decode()
    status, body, _ = await inboxd.post(f"/v1/inbox/{token}", f"payload={quote(payload)}".encode(),
                                        {"Content-Type": "application/x-www-form-urlencoded",
                                         "X-GitHub-Event": "security_advisory", "X-GitHub-Delivery": "d-2"})
    assert (status, body) == (200, {"accepted": 1, "template": "github-security-advisory"})
    [event] = inboxd.events()
    assert_valid_ocsf(event)
    assert event["metadata"]["event_code"] == "security_advisory"
    assert event["unmapped"]["action"] == "withdrawn"
    assert (event["activity_id"], event["finding_info"]["uid"]) == (3, "GHSA-8v27-2fg9-7h62")
    [vulnerability] = event["vulnerabilities"]  # one advisory, one vulnerability
    assert vulnerability["cve"]["uid"] == "CVE-2021-23334"
    assert vulnerability["cve"]["related_cwes"][0]["uid"] == "CWE-94"
    assert vulnerability["affected_packages"] == [{"name": "static-eval", "package_manager": "npm",
                                                   "version": "<= 2.1.0"}]


@pytest_twisted.ensureDeferred
async def test_opsgenie_ms_and_ns_times_in_one_payload(inboxd: MemoryInbox) -> None:
    """createdAt in ms and updatedAt in ns (beyond 2^53) come out exact, and raw_data keeps every digit."""
    token = await inboxd.mint(template="opsgenie")
    status, _, _ = await inboxd.post(f"/v1/inbox/{token}", fixture("opsgenie", "alert-acknowledge.json"), JSON)
    assert status == 200
    [event] = inboxd.events()
    assert_valid_ocsf(event)
    assert event["finding_info"]["created_time"] == 1420452191104
    assert event["time"] == event["finding_info"]["modified_time"] == 1420452224764
    assert "1420452224764002246" in event["raw_data"]


# ------------------------------------------------------------------ Cloudflare Logpush


def logpush_record(n: int) -> dict[str, Any]:
    """An http_requests record (field names from Cloudflare's dataset; values authored)."""
    return {"RayID": f"7{n:015x}", "EdgeStartTimestamp": 1653485126000000000 + n * 1_000_000,
            "ClientIP": f"198.51.100.{n % 250 + 1}", "ClientCountry": "de", "ClientRequestMethod": "GET",
            "ClientRequestHost": "www.example.com", "ClientRequestURI": f"/item/{n}",
            "EdgeResponseStatus": 200, "ClientRequestUserAgent": "curl/8.0"}


@pytest_twisted.ensureDeferred
async def test_logpush_gzip_batch_of_thousands_with_a_wrong_content_type(inboxd: MemoryInbox) -> None:
    """A gzip NDJSON batch of 3000 records sent as text/plain becomes 3000 HTTP Activity events in order."""
    token = await inboxd.mint(template="cloudflare-logpush")
    count = 3000
    body = gzip.compress("\n".join(json.dumps(logpush_record(n)) for n in range(count)).encode() + b"\n")
    status, reply, _ = await inboxd.post(f"/v1/inbox/{token}", body,
                                         {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip"})
    assert (status, reply) == (200, {"accepted": count, "template": "cloudflare-logpush"})
    events = inboxd.events()
    assert len(events) == count
    assert [e["metadata"]["original_event_uid"] for e in events] == [f"7{n:015x}" for n in range(count)]
    for event in (events[0], events[count // 2], events[-1]):
        assert_valid_ocsf(event)
        assert (event["class_uid"], event["activity_id"]) == (4002, 3)
    assert events[-1]["time"] == 1653485126000 + count - 1
    assert events[0]["src_endpoint"]["location"]["country"] == "DE"


@pytest_twisted.ensureDeferred
async def test_logpush_destination_validation_is_200_without_publishing(inboxd: MemoryInbox) -> None:
    """Logpush's gzipped {"content":"tests"} upload is answered 200 {"accepted": 0} and not published."""
    token = await inboxd.mint(template="cloudflare-logpush")
    status, body, _ = await inboxd.post(f"/v1/inbox/{token}", gzip.compress(b'{"content":"tests"}'),
                                        {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"})
    assert (status, body) == (200, {"accepted": 0, "template": "cloudflare-logpush"})
    assert inboxd.events() == []


# ------------------------------------------------------------------ AWS EventBridge


@pytest_twisted.ensureDeferred
async def test_eventbridge_envelope_and_a_reshaped_event(inboxd: MemoryInbox) -> None:
    """The envelope maps id, detail-type, source and detail; an input-transformed shape is still accepted."""
    token = await inboxd.mint(template="aws-eventbridge")
    envelope = {"version": "0", "id": "6f1c3e2a-0000-4000-8000-000000000001", "detail-type": "GuardDuty Finding",
                "source": "aws.guardduty", "account": "123456789012", "time": "2026-05-08T09:00:00Z",
                "region": "eu-west-1", "resources": [],
                "detail": {"id": "f-1", "type": "Recon:EC2/PortProbeUnprotectedPort", "severity": 2.0,
                           "title": "Unprotected port on EC2 instance i-0abc is being probed."}}
    reshaped = {"finding": "f-2", "title": "custom shape", "severity": "CRITICAL"}
    for record in (envelope, reshaped):
        status, body, _ = await inboxd.post(f"/v1/inbox/{token}", json.dumps(record).encode(), JSON)
        assert (status, body) == (200, {"accepted": 1, "template": "aws-eventbridge"})
    first, second = inboxd.events()
    for event in (first, second):
        assert_valid_ocsf(event)
    assert (first["finding_info"]["uid"], first["severity_id"], first["time"]) == ("f-1", 2, 1778230800000)
    assert first["metadata"]["original_event_uid"] == envelope["id"]
    assert (first["metadata"]["event_code"], first["metadata"]["source"]) == ("GuardDuty Finding", "aws.guardduty")
    assert (second["finding_info"]["title"], second["severity_id"]) == ("custom shape", 5)
    assert second["unmapped"] == {"finding": "f-2"}


# ------------------------------------------------------------------ AWS SNS


class Recorder(Resource):
    """A stand-in for AWS: serves the signing certificate and records confirmation GETs."""

    isLeaf = True

    def __init__(self, certificate_pem: bytes) -> None:
        super().__init__()
        self.certificate_pem = certificate_pem
        self.requests: list[str] = []

    def render_GET(self, request: Request) -> bytes:
        self.requests.append(request.uri.decode())
        if request.path == b"/cert.pem":
            return self.certificate_pem
        return b"<ConfirmSubscriptionResponse/>"


class FakeAws:
    """An RSA signing key and its certificate, served over HTTPS on 127.0.0.1 with a test CA."""

    def __init__(self, base_url: str, key: rsa.RSAPrivateKey, recorder: Recorder, client: HTTPClient) -> None:
        self.base_url = base_url
        self.key = key
        self.recorder = recorder
        self.client = client

    def gate(self, verify: bool, auto_confirm: frozenset[str] = frozenset(), reactor: Any = None) -> VendorGate:
        options = SnsOptions(verify_signatures=verify, auto_confirm_topics=auto_confirm)
        policy = UrlPolicy(scheme="https", host=re.compile(r"^127\.0\.0\.1$"))
        return VendorGate(SnsGate(options, self.client, reactor, policy, timeout=10), frozenset({"aws-sns"}))

    def message(self, kind: str, version: str = "1", **fields: str) -> dict[str, str]:
        """An SNS envelope signed with SignatureVersion C{version}."""
        message = {"Type": kind, "MessageId": f"m-{kind}", "TopicArn": TOPIC, "Timestamp": "2026-05-08T09:00:00.000Z",
                   "SignatureVersion": version, "SigningCertURL": f"{self.base_url}/cert.pem", **fields}
        if kind == "Notification":
            message.setdefault("Message", json.dumps({"severity": "high", "title": "S3 bucket made public"}))
        else:
            message.setdefault("Message", f"You have chosen to subscribe to the topic {TOPIC}.")
            message.setdefault("Token", "2336412f37fb687f")
            message.setdefault("SubscribeURL", f"{self.base_url}/?Action=ConfirmSubscription&Token=2336412f37fb687f")
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(canonical_text(message), padding.PKCS1v15(), digest)
        message["Signature"] = base64.b64encode(signature).decode()
        return message


@pytest_twisted.async_yield_fixture
async def aws(reactor: Any, tmp_path: Path) -> AsyncIterator[FakeAws]:
    tls = make_tls_files(tmp_path / "aws-tls")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com test signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    recorder = Recorder(certificate.public_bytes(serialization.Encoding.PEM))
    port = await serverFromString(reactor, tls.endpoint()).listen(Site(recorder))
    trust = ssl.Certificate.loadPEM(tls.ca_cert.read_bytes())
    client = HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust)))
    yield FakeAws(f"https://127.0.0.1:{port.getHost().port}", key, recorder, client)
    await port.stopListening()


async def sns_daemon(reactor: Any, tmp_path: Path, gate: VendorGate) -> RunningDaemon:
    return await start_daemon(reactor, daemon_settings(tmp_path / "state"), vendors=gate)


SNS_HEADERS = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}


@pytest_twisted.ensureDeferred
async def test_sns_text_plain_notification_decodes_its_message(reactor: Any, tmp_path: Path, aws: FakeAws) -> None:
    """A text/plain Notification is published with its JSON Message decoded and mapped."""
    running = await sns_daemon(reactor, tmp_path, aws.gate(verify=False, reactor=reactor))
    try:
        token = await running.mint(template="aws-sns")
        status, body, _ = await running.post(f"/v1/inbox/{token}", json.dumps(aws.message("Notification")).encode(),
                                             SNS_HEADERS)
        assert (status, body) == (200, {"accepted": 1, "template": "aws-sns"})
        [event] = running.events()
        assert_valid_ocsf(event)
        assert (event["finding_info"]["title"], event["severity_id"]) == ("S3 bucket made public", 4)
        assert event["metadata"]["original_event_uid"] == "m-Notification"
    finally:
        await running.stop()


@pytest_twisted.ensureDeferred
async def test_sns_subscription_confirmation_is_logged_and_confirmed_for_an_allowed_topic(
        reactor: Any, tmp_path: Path, aws: FakeAws, logs: list[str]) -> None:
    """A SubscriptionConfirmation is not published, is logged with topic and SubscribeURL, and is confirmed."""
    running = await sns_daemon(reactor, tmp_path, aws.gate(verify=True, auto_confirm=frozenset({TOPIC}),
                                                           reactor=reactor))
    try:
        token = await running.mint(template="aws-sns")
        confirmation = aws.message("SubscriptionConfirmation", version="2")
        status, body, _ = await running.post(f"/v1/inbox/{token}", json.dumps(confirmation).encode(),
                                             {**SNS_HEADERS, "x-amz-sns-message-type": "SubscriptionConfirmation"})
        assert (status, body) == (200, {"accepted": 0, "template": "aws-sns"})
        assert running.events() == []
        assert any(TOPIC in line and confirmation["SubscribeURL"] in line for line in logs)
        assert "/?Action=ConfirmSubscription&Token=2336412f37fb687f" in aws.recorder.requests
    finally:
        await running.stop()


@pytest_twisted.ensureDeferred
async def test_sns_confirmation_of_another_topic_is_not_confirmed(reactor: Any, tmp_path: Path, aws: FakeAws) -> None:
    """A topic not in auto_confirm_topics is only logged: no GET of its SubscribeURL."""
    running = await sns_daemon(reactor, tmp_path, aws.gate(verify=False, auto_confirm=frozenset({TOPIC + "-other"}),
                                                           reactor=reactor))
    try:
        token = await running.mint(template="aws-sns")
        status, body, _ = await running.post(f"/v1/inbox/{token}",
                                             json.dumps(aws.message("SubscriptionConfirmation")).encode(), SNS_HEADERS)
        assert (status, body) == (200, {"accepted": 0, "template": "aws-sns"})
        assert not any("ConfirmSubscription" in uri for uri in aws.recorder.requests)
    finally:
        await running.stop()


@pytest.mark.parametrize("version", ["1", "2"])
@pytest_twisted.ensureDeferred
async def test_sns_signatures_are_verified(reactor: Any, tmp_path: Path, aws: FakeAws, version: str) -> None:
    """With verification on, a correctly signed message is published and a tampered one is 401."""
    running = await sns_daemon(reactor, tmp_path, aws.gate(verify=True, reactor=reactor))
    try:
        token = await running.mint(template="aws-sns")
        good = aws.message("Notification", version=version)
        tampered = {**good, "Message": json.dumps({"title": "nothing to see"})}
        status, body, _ = await running.post(f"/v1/inbox/{token}", json.dumps(good).encode(), SNS_HEADERS)
        assert (status, body) == (200, {"accepted": 1, "template": "aws-sns"})
        status, body, _ = await running.post(f"/v1/inbox/{token}", json.dumps(tampered).encode(), SNS_HEADERS)
        assert status == 401
        assert body["error"] == "invalid SNS message: the signature does not match"
        assert len(running.events()) == 1
    finally:
        await running.stop()


@pytest.mark.parametrize("cert_url", [
    "https://sns.us-west-2.amazonaws.com.evil.example/cert.pem",
    "http://127.0.0.1/cert.pem",
    "https://attacker.example/cert.pem",
])
@pytest_twisted.ensureDeferred
async def test_sns_certificate_url_must_be_an_sns_host(reactor: Any, tmp_path: Path, aws: FakeAws,
                                                       cert_url: str) -> None:
    """A SigningCertURL off the allowed host or scheme is refused without fetching anything."""
    running = await sns_daemon(reactor, tmp_path, aws.gate(verify=True, reactor=reactor))
    try:
        token = await running.mint(template="aws-sns")
        message = aws.message("Notification", SigningCertURL=cert_url)
        status, body, _ = await running.post(f"/v1/inbox/{token}", json.dumps(message).encode(), SNS_HEADERS)
        assert status == 401
        assert "is not an SNS certificate URL" in body["error"]
        assert aws.recorder.requests == []
        assert running.events() == []
    finally:
        await running.stop()


def test_default_policy_allows_only_sns_hosts_over_https() -> None:
    """The production URL policy accepts sns.<region>.amazonaws.com(.cn) over https and nothing else."""
    policy = UrlPolicy()
    assert policy.allows("https://sns.us-west-2.amazonaws.com/SimpleNotificationService-abc.pem")
    assert policy.allows("https://sns.cn-north-1.amazonaws.com.cn/x.pem")
    for url in ("http://sns.us-west-2.amazonaws.com/x.pem", "https://sns.amazonaws.com.evil.example/x.pem",
                "https://s3.amazonaws.com/x.pem", "https://sns.us-west-2.amazonaws.com@evil.example/x.pem", None):
        assert not policy.allows(url)


@pytest_twisted.ensureDeferred
async def test_ses_through_sns_on_the_email_route_gets_the_sns_checks(reactor: Any, tmp_path: Path,
                                                                      aws: FakeAws) -> None:
    """On /v1/inbox/email the SNS envelope around an SES mail is verified like on aws-sns (a tampered one
    is 401), and a SubscriptionConfirmation for an allowed topic is confirmed and never published."""
    running = await sns_daemon(reactor, tmp_path, aws.gate(verify=True, auto_confirm=frozenset({TOPIC}),
                                                           reactor=reactor))
    try:
        token = await running.mint(template="email-forwarded")
        ses = {"notificationType": "Received", "receipt": {"action": {"type": "SNS", "encoding": "UTF8"}},
               "mail": {"messageId": "ses-1", "source": "alerts@acme.example"},
               "content": "From: alerts@acme.example\r\nTo: soc@example.com\r\nSubject: [Acme] Malware found\r\n"
                          "Message-ID: <m1@acme.example>\r\nDate: Fri, 08 May 2026 09:00:00 +0000\r\n\r\nDetails.\r\n"}
        good = aws.message("Notification", Message=json.dumps(ses))
        status, body, _ = await running.post(f"/v1/inbox/email/{token}", json.dumps(good).encode(), SNS_HEADERS)
        assert (status, body) == (200, {"accepted": 1, "template": "email-forwarded"})
        tampered = {**good, "Message": json.dumps({**ses, "content": ses["content"].replace("Malware", "Nothing")})}
        status, body, _ = await running.post(f"/v1/inbox/email/{token}", json.dumps(tampered).encode(), SNS_HEADERS)
        assert status == 401 and "signature does not match" in body["error"]
        confirmation = aws.message("SubscriptionConfirmation")
        status, body, _ = await running.post(f"/v1/inbox/email/{token}", json.dumps(confirmation).encode(),
                                             SNS_HEADERS)
        assert (status, body) == (200, {"accepted": 0, "template": "email-forwarded"})
        assert "/?Action=ConfirmSubscription&Token=2336412f37fb687f" in aws.recorder.requests
        [event] = running.events()
        assert_valid_ocsf(event)
        assert event["finding_info"]["title"] == "[Acme] Malware found"
    finally:
        await running.stop()
