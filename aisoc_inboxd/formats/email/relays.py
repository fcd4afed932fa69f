"""
What relays POST (Postmark, SES through SNS, SendGrid Inbound Parse, Mailgun routes, a generic JSON
shape, form fields, raw MIME, an analyst's pasted forward) → e-mail records: the route's entry point.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs

from aisoc_inboxd import fastjson
from aisoc_inboxd.formats.email.addresses import addresses, display_names, full_list
from aisoc_inboxd.formats.email.mime import PARSER, header_fields, parse_mime, part_bytes
from aisoc_inboxd.formats.email.record import (
    DEFAULT_LIMITS, EmailLimits, as_record, attachment, date_utc, finish, headers_of_interest, merge_ips,
    originating_ips,
)
from aisoc_inboxd.formats.email.values import clean, first
from aisoc_inboxd.formats.json_body import BodyError, Record, TooManyEvents, check_event_count, invalid_json

Fields = dict[str, str]


@dataclass(frozen=True)
class EmailBody:
    """
    What one POST carried: e-mail records; for an SNS delivery also its envelope, which the route
    has checked like any SNS delivery (signature, subscription confirmation). A control message
    (SubscriptionConfirmation, UnsubscribeConfirmation) carries no records: it is never an event.
    """

    records: list[Record]
    relay: str
    sns_envelope: dict[str, Any] | None = None


@dataclass(frozen=True)
class FormFile:
    field: str
    filename: str | None
    content_type: str
    data: bytes


_SNS_TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})

_MAILGUN_KEYS = frozenset({"body-plain", "body-mime", "message-headers", "recipient", "stripped-text",
                           "attachment-count", "body-html"})


def decode_email_body(media_type: str, content_type: str, body: bytes,
                      limits: EmailLimits = DEFAULT_LIMITS, max_events: int | None = None) -> EmailBody:
    """
    The e-mail records of one relay POST, recognised from C{media_type} (lower-case, no
    parameters) and the content; C{content_type} is the full header (its boundary is needed).

    @raise BodyError: when the body is none of the shapes a relay sends.
    @raise TooManyEvents: when a JSON array holds more than C{max_events} e-mails.
    """
    if media_type == "multipart/form-data":
        fields, files = parse_form_data(content_type, body)
        return _from_fields(fields, files, limits)
    if media_type == "application/x-www-form-urlencoded":
        text = body.decode("utf-8", "replace")
        fields = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
        return _from_fields(fields, [], limits)
    if media_type == "message/rfc822":
        return EmailBody([as_record(parse_mime(body, limits))], "mime")
    stripped = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"["):
        return _from_json(_json(stripped, max_events), limits)
    if not stripped:
        raise BodyError("empty body: expected an e-mail (relay JSON, form fields or a MIME message)")
    if _looks_like_headers(stripped):
        return EmailBody([as_record(parse_mime(body, limits))], "mime")
    return EmailBody([as_record(_from_plain_text(stripped.decode("utf-8", "replace"), limits))], "text")


def _json(body: bytes, max_events: int | None) -> Any:
    """
    The JSON document of C{body}; L{TooManyEvents} for an array of more than C{max_events} items,
    found before building them all when its first ones are JSON.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BodyError(f"body is not valid UTF-8 (byte {e.start})") from None
    if max_events is not None and fastjson.array_holds_more_than(text, 0, max_events):
        raise TooManyEvents(max_events)
    try:
        document = fastjson.loads(text)
    except json.JSONDecodeError as e:
        raise BodyError(invalid_json(e)) from None
    if isinstance(document, list):
        check_event_count(len(document), max_events)
    return document


def _looks_like_headers(body: bytes) -> bool:
    first = body.split(b"\n", 1)[0]
    return re.match(rb"^[!-9;-~]+:", first) is not None


def _from_json(document: Any, limits: EmailLimits) -> EmailBody:
    if isinstance(document, list):
        if not document or not all(isinstance(item, dict) for item in document):
            raise BodyError("expected a JSON object (or an array of objects) describing e-mails")
        return EmailBody([as_record(_generic_json(item, limits)) for item in document], "json")
    if not isinstance(document, dict):
        raise BodyError("expected a JSON object describing an e-mail")
    if document.get("Type") in _SNS_TYPES and "TopicArn" in document:
        return _from_sns(document, limits)
    if "notificationType" in document or "eventType" in document and "mail" in document:
        return EmailBody([as_record(_from_ses(document, limits))], "ses")
    if "FromFull" in document or "TextBody" in document or "HtmlBody" in document:
        return EmailBody([as_record(_from_postmark(document, limits))], "postmark")
    if _MAILGUN_KEYS & document.keys():
        return EmailBody([as_record(_from_mailgun({k: str(v) for k, v in document.items()}, [], limits))],
                         "mailgun")
    return EmailBody([as_record(_generic_json(document, limits))], "json")


def _from_sns(envelope: dict[str, Any], limits: EmailLimits) -> EmailBody:
    if envelope["Type"] != "Notification":
        return EmailBody([], "ses", envelope)
    message = envelope.get("Message")
    if not isinstance(message, str):
        raise BodyError("SNS Notification without a Message string")
    try:
        notification = fastjson.loads(message)
    except fastjson.RefusedJson as e:
        raise BodyError(f"SNS Message: {invalid_json(e)}") from None
    except json.JSONDecodeError:
        notification = None
    if not isinstance(notification, dict) or "mail" not in notification:
        raise BodyError("SNS Notification whose Message is not an SES e-mail notification")
    return EmailBody([as_record(_from_ses(notification, limits))], "ses", envelope)


def _from_ses(notification: dict[str, Any], limits: EmailLimits) -> dict[str, Any]:
    """
    An SES receipt notification: the raw MIME in C{content} when the SNS action carried it (UTF-8
    or Base64), else what C{mail.commonHeaders} says (S3 and other actions carry no content).
    """
    receipt = notification.get("receipt") or {}
    mail = notification.get("mail") or {}
    content = notification.get("content")
    if isinstance(content, str):
        encoding = str((receipt.get("action") or {}).get("encoding", "UTF8")).upper()
        raw = _b64(content) if encoding == "BASE64" else content.encode("utf-8", "surrogateescape")
        if raw is None:
            raise BodyError("SES notification content is not valid Base64")
        record = parse_mime(raw, limits)
    else:
        common = mail.get("commonHeaders") or {}
        record = {"from": first(addresses(common.get("from"))), "to": addresses(common.get("to")),
                  "cc": addresses(common.get("cc")), "reply_to": addresses(common.get("replyTo")),
                  "subject": common.get("subject"), "date": common.get("date"),
                  "message_id": common.get("messageId") or mail.get("messageId"),
                  "headers": headers_of_interest((h.get("name"), h.get("value"))
                                                  for h in mail.get("headers") or [] if isinstance(h, dict))}
        record["date_utc"] = date_utc(record.get("date"))
        record["x_originating_ip"] = originating_ips(record["headers"])
    record["relay"] = "ses"
    record["envelope"] = clean({"from": mail.get("source"),
                                 "to": addresses(receipt.get("recipients") or mail.get("destination"))})
    record["verdicts"] = clean({name[:-len("Verdict")]: (receipt.get(name) or {}).get("status")
                                 for name in ("spamVerdict", "virusVerdict", "spfVerdict", "dkimVerdict",
                                              "dmarcVerdict")})
    return clean(record)


def _from_postmark(doc: dict[str, Any], limits: EmailLimits) -> dict[str, Any]:
    headers = headers_of_interest((h.get("Name"), h.get("Value"))
                                   for h in doc.get("Headers") or [] if isinstance(h, dict))
    sender = doc.get("FromFull") if isinstance(doc.get("FromFull"), dict) else {}
    attachments = [attachment(a.get("Name"), a.get("ContentType"), _b64(a.get("Content")),
                               a.get("ContentLength"))
                   for a in doc.get("Attachments") or [] if isinstance(a, dict)]
    record = {
        "relay": "postmark",
        "from": first(addresses(sender.get("Email"))) or first(addresses(doc.get("From"))),
        "from_name": sender.get("Name") or doc.get("FromName"),
        "to": full_list(doc.get("ToFull")) or addresses(doc.get("To")),
        "cc": full_list(doc.get("CcFull")) or addresses(doc.get("Cc")),
        "reply_to": addresses(doc.get("ReplyTo")),
        "subject": doc.get("Subject"),
        "date": doc.get("Date"),
        "message_id": doc.get("MessageID") or headers.get("message-id"),
        "headers": headers,
        "envelope": clean({"to": addresses(doc.get("OriginalRecipient"))}),
    }
    return finish(record, doc.get("TextBody"), doc.get("HtmlBody"), attachments, limits)


def _generic_json(doc: dict[str, Any], limits: EmailLimits) -> dict[str, Any]:
    attachments = []
    for item in doc.get("attachments") or []:
        if isinstance(item, dict):
            content = item.get("content")
            attachments.append(attachment(item.get("name") or item.get("filename"),
                                           item.get("content_type") or item.get("type"),
                                           _b64(content) if isinstance(content, str) else None,
                                           item.get("size")))
    raw_headers = doc.get("headers")
    headers = headers_of_interest(raw_headers.items() if isinstance(raw_headers, dict) else ())
    record = {
        "relay": "json",
        "from": first(addresses(doc.get("from"))),
        "from_name": first(display_names(doc.get("from"))),
        "to": addresses(doc.get("to")),
        "cc": addresses(doc.get("cc")),
        "reply_to": addresses(doc.get("reply_to")),
        "subject": doc.get("subject"),
        "date": doc.get("date"),
        "message_id": doc.get("message_id") or headers.get("message-id"),
        "headers": headers,
    }
    return finish(record, doc.get("text"), doc.get("html"), attachments, limits)


def parse_form_data(content_type: str, body: bytes) -> tuple[Fields, list[FormFile]]:
    """
    The fields and file parts of a multipart/form-data body (CRLF or bare LF line breaks).

    @raise BodyError: without a boundary, or when no part could be read.
    """
    if "boundary=" not in content_type.lower():
        raise BodyError("multipart/form-data without a boundary parameter")
    form = PARSER.parsebytes(b"Content-Type: " + content_type.encode("latin-1", "replace")
                              + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    parts = form.get_payload() if form.is_multipart() else []
    if not isinstance(parts, list) or not parts:
        raise BodyError("multipart/form-data body without any readable part (wrong boundary?)")
    raw_fields: dict[str, bytes] = {}
    files: list[FormFile] = []
    for part in parts:
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        data = part_bytes(part)
        filename = part.get_filename()
        if filename is not None:
            files.append(FormFile(name, filename, part.get_content_type(), data))
        else:
            raw_fields.setdefault(name, data)
    charsets = _charsets(raw_fields.get("charsets"))
    fields = {name: data.decode(charsets.get(name, "utf-8"), "replace") for name, data in raw_fields.items()}
    return fields, files


def _charsets(raw: bytes | None) -> dict[str, str]:
    """
    SendGrid's C{charsets} field: the character set of each other field.
    """
    try:
        mapping = fastjson.loads((raw or b"{}").decode("utf-8"))
    except ValueError:  # not UTF-8, not JSON
        return {}
    known = {}
    for field, charset in (mapping.items() if isinstance(mapping, dict) else ()):
        try:
            "".encode(str(charset))
        except LookupError:
            continue
        known[str(field)] = str(charset)
    return known


def _from_fields(fields: Fields, files: list[FormFile], limits: EmailLimits) -> EmailBody:
    if "email" in fields or "envelope" in fields or "charsets" in fields or "headers" in fields:
        return EmailBody([as_record(_from_sendgrid(fields, files, limits))], "sendgrid")
    if _MAILGUN_KEYS & fields.keys():
        return EmailBody([as_record(_from_mailgun(fields, files, limits))], "mailgun")
    if {"from", "subject"} & fields.keys():
        generic: dict[str, Any] = dict(fields)
        generic["attachments"] = [{"name": f.filename, "content_type": f.content_type,
                                   "content": base64.b64encode(f.data).decode("ascii")} for f in files]
        return EmailBody([as_record(_generic_json(generic, limits))], "json")
    raise BodyError("form fields of no known relay (expected SendGrid Inbound Parse or Mailgun fields)")


def _from_sendgrid(fields: Fields, files: list[FormFile], limits: EmailLimits) -> dict[str, Any]:
    """
    Inbound Parse: parsed mode (from/to/subject/text/html/headers + attachment files) or raw mode
    (the whole MIME message in C{email}). The C{subject} field wins over the header's, as
    SendGrid's own parsing does.
    """
    envelope = _json_object(fields.get("envelope"))
    if "email" in fields:
        record = parse_mime(fields["email"].encode("utf-8", "surrogateescape"), limits)
    else:
        head = PARSER.parsebytes((fields.get("headers", "").strip() + "\n\n").encode("utf-8", "replace"))
        attachments = [attachment(f.filename, f.content_type, f.data) for f in files]
        record = header_fields(head)
        record["from"] = first(addresses(fields.get("from"))) or record.get("from")
        record["from_name"] = first(display_names(fields.get("from"))) or record.get("from_name")
        record["to"] = addresses(fields.get("to")) or record.get("to")
        record["cc"] = addresses(fields.get("cc")) or record.get("cc")
        record = finish(record, fields.get("text"), fields.get("html"), attachments, limits)
    record["relay"] = "sendgrid"
    if fields.get("subject") and fields["subject"] != record.get("subject"):
        record["subject_header"] = record.get("subject")
        record["subject"] = fields["subject"]
    record["envelope"] = clean({"from": envelope.get("from"), "to": addresses(envelope.get("to"))})
    record["verdicts"] = clean({"spf": fields.get("SPF"), "dkim": fields.get("dkim"),
                                 "spam_score": fields.get("spam_score")})
    record["x_originating_ip"] = merge_ips(record.get("x_originating_ip"), fields.get("sender_ip"))
    return clean(record)


def _from_mailgun(fields: Fields, files: list[FormFile], limits: EmailLimits) -> dict[str, Any]:
    """
    A route's forward(): parsed fields (body-plain, body-html, message-headers, attachment-N) or,
    for a URL ending in C{mime}, the raw message in C{body-mime}.
    """
    if "body-mime" in fields:
        record = parse_mime(fields["body-mime"].encode("utf-8", "surrogateescape"), limits)
    else:
        pairs = _json_list(fields.get("message-headers"))
        head = EmailMessage()
        for pair in pairs:
            if isinstance(pair, list) and len(pair) == 2:
                try:
                    head[str(pair[0])] = str(pair[1])
                except (ValueError, TypeError):
                    continue
        record = header_fields(head)
        record["from"] = first(addresses(fields.get("from"))) or record.get("from")
        record["from_name"] = first(display_names(fields.get("from"))) or record.get("from_name")
        record["to"] = record.get("to") or addresses(fields.get("To") or fields.get("recipient"))
        record["message_id"] = record.get("message_id") or fields.get("Message-Id")
        attachments = [attachment(f.filename, f.content_type, f.data) for f in files]
        record = finish(record, fields.get("body-plain"), fields.get("body-html"), attachments, limits)
    record["relay"] = "mailgun"
    record["subject"] = record.get("subject") or fields.get("subject")
    record["envelope"] = clean({"from": fields.get("sender"), "to": addresses(fields.get("recipient"))})
    return clean(record)


def _from_plain_text(text: str, limits: EmailLimits) -> dict[str, Any]:
    record = finish({"relay": "text"}, text, None, [], limits)
    forwarded = record.get("forwarded") or {}
    if not forwarded.get("from") and not forwarded.get("to"):
        raise BodyError("plain text with no sender or recipient: send the e-mail itself (message/rfc822) "
                        "or a forwarded alert with its From:/To: block")
    record.setdefault("subject", forwarded.get("subject"))
    return clean(record)


def _b64(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return None


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = fastjson.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _json_list(text: str | None) -> list[Any]:
    try:
        value = fastjson.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []
