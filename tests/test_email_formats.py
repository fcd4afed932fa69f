"""
The e-mail parser as pure functions: relay shapes, MIME (alternative, base64/QP, charsets, RFC 2047,
HTML-only), addresses reduced to bare ones, attachments listed by hash and never by content, limits.
"""
from __future__ import annotations

import base64
import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from aisoc_inboxd.formats.email.mime import parse_mime
from aisoc_inboxd.formats.email.record import EmailLimits
from aisoc_inboxd.formats.email.relays import decode_email_body, parse_form_data
from aisoc_inboxd.formats.email.text import html_to_text
from aisoc_inboxd.formats.json_body import BodyError
from tests.support.shared import FIXTURES

EMAIL = FIXTURES / "email"


def expected(name: str) -> dict[str, Any]:
    return json.loads((EMAIL / name).read_text())["expect"]


def bare(pairs: list[list[str]]) -> list[str]:
    return [address for _, address in pairs]


@pytest.mark.parametrize("name", sorted(p.name for p in EMAIL.glob("*.eml")))
def test_raw_messages_match_the_corpus_facts(name: str) -> None:
    """Subject, sender and recipients of each corpus message are what its source asserted, as bare addresses."""
    facts = expected(name.replace(".eml", ".expected.json"))
    record = parse_mime((EMAIL / name).read_bytes())
    assert record["subject"] == facts["subject"]
    assert [record["from"]] == bare(facts["from"])
    for key in ("to", "cc", "reply_to"):
        if key in facts:
            assert record[key] == bare(facts[key])
    if "attachments" in facts and facts["attachments"] == []:
        assert "attachments" not in record
    if "text_contains" in facts:
        assert facts["text_contains"] in record["text"]


def test_display_name_that_looks_like_an_address_is_not_the_sender() -> None:
    """"alice@example.com <bob@example.com>" is from bob: the spoofing trap a naive parser falls into."""
    record = parse_mime((EMAIL / "email-address-as-display-name.eml").read_bytes())
    assert (record["from"], record["from_name"]) == ("bob@example.com", "alice@example.com")


def test_attachments_are_listed_with_size_and_sha256_never_content() -> None:
    """A base64 attachment is listed by name, type, decoded size and SHA-256; its bytes are nowhere in the record."""
    content = b"\x89PNG fake image bytes" * 10
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@x.example", "b@y.example", "with file"
    message.set_content("see attached")
    message.add_attachment(content, maintype="image", subtype="png", filename="shot.png")
    record = parse_mime(message.as_bytes())
    import hashlib

    assert record["attachments"] == [{"name": "shot.png", "content_type": "image/png", "size": len(content),
                                      "sha256": hashlib.sha256(content).hexdigest()}]
    assert base64.b64encode(content).decode()[:40] not in json.dumps(record)
    assert record["text"].strip() == "see attached"


def test_html_only_mail_becomes_readable_text_with_its_links() -> None:
    """Without a text part, the HTML body becomes text (blocks on lines, scripts gone, entities decoded) and its hrefs are URLs."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@x.example", "b@y.example", "html"
    message.set_content("<html><head><style>p{}</style></head><body><h1>Alert</h1><p>CPU &gt; 90%&nbsp;now</p>"
                        "<script>evil()</script><a href='https://portal.example/a/1'>open</a></body></html>",
                        subtype="html")
    record = parse_mime(message.as_bytes())
    assert record["text"].splitlines()[0] == "Alert"
    assert "CPU > 90% now" in record["text"] and "evil" not in record["text"]
    assert record["urls"] == ["https://portal.example/a/1"]
    assert html_to_text("<p>a</p><p>b</p>")[0] == "a\n\nb"


def test_charsets_and_encoded_words_are_decoded() -> None:
    """An ISO-8859-1 quoted-printable body and an RFC 2047 subject come out as Unicode text."""
    raw = ("From: =?utf-8?q?J=C3=BCrgen?= <j@x.example>\r\nTo: b@y.example\r\n"
           "Subject: =?iso-8859-1?q?Gr=FC=DFe_aus_M=FCnchen?=\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
           "Sch=F6ne Gr=FC=DFe\r\n").encode("ascii")
    record = parse_mime(raw)
    assert (record["subject"], record["from"], record["from_name"]) == ("Grüße aus München", "j@x.example", "Jürgen")
    assert record["text"].strip() == "Schöne Grüße"


def test_text_is_cut_to_the_limit_and_marked() -> None:
    """A body over max_text_chars is truncated and the record says so."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@x.example", "b@y.example", "long"
    message.set_content("x" * 5000)
    record = parse_mime(message.as_bytes(), EmailLimits(max_text_chars=100))
    assert len(record["text"]) == 100 and record["truncated"] is True


def test_postmark_uses_the_full_address_lists() -> None:
    """Postmark's stray '>' in Cc is avoided by reading CcFull; the Date with a -04:00 offset is read correctly."""
    facts = expected("inbound-webhook-doc-example.expected.json")
    body = decode_email_body("application/json", "application/json", (EMAIL / "inbound-webhook-doc-example.json").read_bytes())
    [record] = [r.data for r in body.records]
    assert (body.relay, record["cc"], record["to"]) == ("postmark", facts["cc"], facts["to"])
    assert record["date_utc"] == facts["date_utc"]
    assert record["attachments"][0]["size"] == facts["attachments"][0]["size"]
    assert record["text"] == facts["text_body"]


def test_sendgrid_lf_only_form_is_parsed_and_the_subject_field_wins() -> None:
    """SendGrid's LF-only multipart parses; the subject field is kept and the disagreeing header subject too."""
    fields, files = parse_form_data("multipart/form-data; boundary=xYzZY",
                                    (EMAIL / "inbound-parse-default-data.txt").read_bytes())
    facts = expected("inbound-parse-default-data.expected.json")
    assert sorted(fields) == sorted(facts["form_fields"]) and files == []
    [record] = [r.data for r in decode_email_body("multipart/form-data", "multipart/form-data; boundary=xYzZY",
                                                  (EMAIL / "inbound-parse-default-data.txt").read_bytes()).records]
    assert (record["subject"], record["subject_header"]) == (facts["subject_field"], facts["subject_header"])
    assert record["text"] == facts["text"] and record["envelope"]["to"] == facts["envelope"]["to"]


def test_ses_base64_content_and_sns_confirmation() -> None:
    """An SES notification with Base64 content is parsed as MIME; a SubscriptionConfirmation yields no record, only its envelope."""
    body = decode_email_body("text/plain", "text/plain", (EMAIL / "authored-ses-sns-base64.json").read_bytes())
    [record] = [r.data for r in body.records]
    assert (body.relay, record["subject"]) == ("ses", "[Tenable] Critical vulnerability on web-01")
    assert "OpenSSL" in record["text"] and record["verdicts"]["spam"] == "PASS"
    control = decode_email_body("text/plain", "text/plain",
                                (EMAIL / "authored-sns-subscription-confirmation.json").read_bytes())
    assert control.records == []
    assert control.sns_envelope is not None and control.sns_envelope["SubscribeURL"].startswith("https://sns.")
    assert body.sns_envelope is not None and body.sns_envelope["Type"] == "Notification"


def test_mailgun_parsed_and_raw_forms() -> None:
    """Mailgun's parsed multipart (message-headers, attachment-1) and raw body-mime forms give the same kind of record."""
    parsed = decode_email_body("multipart/form-data", "multipart/form-data; boundary=mgBoundary42",
                               (EMAIL / "authored-mailgun-multipart.txt").read_bytes()).records[0].data
    assert (parsed["relay"], parsed["from"], parsed["message_id"]) == ("mailgun", "falcon@crowdstrike.example",
                                                                       "<det-7@crowdstrike.example>")
    assert parsed["x_originating_ip"] == ["198.51.100.7"]
    assert [a["name"] for a in parsed["attachments"]] == ["detection-7.json"]
    raw = decode_email_body("application/x-www-form-urlencoded", "application/x-www-form-urlencoded",
                            (EMAIL / "authored-mailgun-mime.form").read_bytes()).records[0].data
    assert (raw["relay"], raw["from"], raw["envelope"]["from"]) == ("mailgun", "no-reply@tenable.example",
                                                                    "bounce@tenable.example")


def test_generic_json_shape_and_lists() -> None:
    """The generic shape takes from/to/subject/text/attachments, one object or an array of them."""
    doc = {"from": "Ops <ops@x.example>", "to": "a@y.example, B <b@y.example>", "subject": "s", "text": "t",
           "attachments": [{"name": "r.txt", "content_type": "text/plain", "content": base64.b64encode(b"hi").decode()}]}
    body = decode_email_body("application/json", "application/json", json.dumps([doc, doc]).encode())
    assert len(body.records) == 2
    record = body.records[0].data
    assert (record["from"], record["to"]) == ("ops@x.example", ["a@y.example", "b@y.example"])
    assert record["attachments"][0]["size"] == 2


@pytest.mark.parametrize("media, body", [
    ("application/json", b"{not json"),
    ("application/json", b"42"),
    ("text/plain", b""),
    ("multipart/form-data", b"--x--"),
])
def test_shapes_of_no_relay_are_body_errors(media: str, body: bytes) -> None:
    """Bodies that are not an e-mail of any relay raise BodyError (the route answers 400)."""
    with pytest.raises(BodyError):
        decode_email_body(media, media, body)


@pytest.mark.parametrize("subject, vendor", [
    ("[CrowdStrike] Detection on ws-1", "CrowdStrike"),
    ("Fwd: RE: [Tenable] Scan finished", "Tenable"),
    ("[EXTERNAL] [SentinelOne] Threat mitigated", "Unknown"),
    ("No prefix here", "Unknown"),
])
def test_subject_prefix_names_the_vendor(subject: str, vendor: str) -> None:
    """email-forwarded takes the vendor from a leading [Vendor] tag (after Re:/Fwd:), never from a gateway tag."""
    from aisoc_inboxd.catalog import bundled_templates_dir
    from aisoc_inboxd.normalizer import IngestContext, load_template_file, normalize

    template = load_template_file(bundled_templates_dir() / "email-forwarded.yaml")
    event = normalize(template, {"from": "a@x.example", "subject": subject}, IngestContext("t", "email", 1.7e9))
    assert event["metadata"]["product"]["vendor_name"] == vendor


def test_extract_patterns_are_checked_when_the_template_loads(tmp_path: Path) -> None:
    """An extract pattern without a (?P<value>…) group stops the template loading, naming the key."""
    from aisoc_inboxd.normalizer import TemplateError, load_template_file

    path = tmp_path / "bad.yaml"
    path.write_text("id: bad\nvendor_name: V\nproduct_name: P\nclass_uid: 2004\nclass_name: Detection Finding\n"
                    "activity_id: 1\nextract:\n  vendor:\n    from: subject\n    pattern: '\\[(.+)\\]'\n")
    with pytest.raises(TemplateError, match="extract.vendor.pattern"):
        load_template_file(path)
