"""
E-mail bodies → e-mail records: the relays' POST shapes (Postmark, SES through SNS, SendGrid Inbound
Parse, Mailgun routes, a generic JSON shape) and raw RFC 822 messages (also what the IMAP poller
fetches), all turned into one normalized record that templates map.

A record (a plain dict; absent values are left out):

  relay            postmark | ses | sendgrid | mailgun | json | mime | text
  from, from_name  the sender's bare address and display name
  to, cc, reply_to lists of bare addresses (display names stripped: OCSF email_t is a bare address)
  subject, date    the subject; the Date header as sent; date_utc is it in ISO 8601 UTC
  subject_header   the Subject header, when a relay's subject field disagrees with it (SendGrid)
  message_id       the Message-ID (or the relay's message id)
  text             the plain-text body, or the HTML body as readable text when there is no text part
  attachments      [{name, content_type, size, sha256}] — never their content
  urls             links found in the body (text and HTML hrefs)
  x_originating_ip sender IPs from X-Originating-IP / X-Sender-IP / the relay
  headers          headers of interest, lower-case name → value
  envelope         {from, to[]} of the SMTP envelope, when the relay reports it
  verdicts         the relay's spam/virus/SPF/DKIM/DMARC verdicts, when it reports them
  forwarded        {from, to, subject, date} of a forwarded message quoted in the body
  truncated        true when the text was cut to the size limit

Everything is parsed with the standard C{email} package (policy C{default}); multipart/form-data is
parsed by the same parser on a synthesized header, since twisted.web does not parse forms for us.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import timezone
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any, Iterable
from urllib.parse import parse_qs

from aisoc_inboxd import fastjson
from aisoc_inboxd.formats.json_body import BodyError, Record, invalid_json

Fields = dict[str, str]


@dataclass(frozen=True)
class EmailLimits:
    """
    Bounds on what one record carries, so a huge or hostile message makes a bounded event.
    """

    max_text_chars: int = 64 * 1024
    max_attachments: int = 100
    max_urls: int = 100


DEFAULT_LIMITS = EmailLimits()


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


#: headers kept in C{headers} (lower-case); the rest of the header block stays out of the event
HEADERS_OF_INTEREST = (
    "message-id", "return-path", "reply-to", "sender", "x-mailer", "user-agent",
    "x-spam-status", "x-spam-score", "x-spam-flag", "x-spam-tests", "authentication-results",
    "received-spf", "dkim-signature", "x-ms-exchange-organization-scl", "precedence", "list-id",
    "auto-submitted", "x-originating-ip", "x-sender-ip", "in-reply-to", "references",
)
_ORIGINATING_IP_HEADERS = ("x-originating-ip", "x-sender-ip")
_URL = re.compile(r"https?://[^\s<>\"'`)\]}]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?"
_SNS_TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})
_SENDGRID_KEYS = frozenset({"email", "headers", "envelope", "charsets", "attachment-info", "SPF", "sender_ip"})
_MAILGUN_KEYS = frozenset({"body-plain", "body-mime", "message-headers", "recipient", "stripped-text",
                           "attachment-count", "body-html"})
_FORWARD_MARKERS = re.compile(
    r"^\s*(?:-{2,}\s*(?:Forwarded message|Original Message|Weitergeleitete Nachricht|Message transféré|"
    r"Mensaje reenviado)\s*-{2,}|Begin forwarded message:)\s*$", re.IGNORECASE | re.MULTILINE)
_FORWARD_HEADER = re.compile(r"^\s*\*?(From|To|Subject|Date|Sent|Cc)\s*:\*?\s*(.*?)\s*$", re.IGNORECASE)
_PARSER = BytesParser(policy=policy.default)


# -- entry point -----------------------------------------------------------------------------

def decode_email_body(media_type: str, content_type: str, body: bytes,
                      limits: EmailLimits = DEFAULT_LIMITS) -> EmailBody:
    """
    The e-mail records of one relay POST, recognised from C{media_type} (lower-case, no
    parameters) and the content; C{content_type} is the full header (its boundary is needed).

    @raise BodyError: when the body is none of the shapes a relay sends.
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
        return _from_json(_json(stripped), limits)
    if not stripped:
        raise BodyError("empty body: expected an e-mail (relay JSON, form fields or a MIME message)")
    if _looks_like_headers(stripped):
        return EmailBody([as_record(parse_mime(body, limits))], "mime")
    return EmailBody([as_record(_from_plain_text(stripped.decode("utf-8", "replace"), limits))], "text")


def as_record(email_record: dict[str, Any]) -> Record:
    """
    The pipeline's record: C{raw_data} is the e-mail record itself, so attachment content (which
    relays inline) never reaches the event.
    """
    return Record(email_record, json.dumps(email_record, ensure_ascii=False, separators=(",", ":")))


def _json(body: bytes) -> Any:
    try:
        return fastjson.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BodyError(f"body is not valid UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise BodyError(invalid_json(e)) from None


def _looks_like_headers(body: bytes) -> bool:
    first = body.split(b"\n", 1)[0]
    return re.match(rb"^[!-9;-~]+:", first) is not None


# -- JSON relays -----------------------------------------------------------------------------

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
        record = {"from": _first(_addresses(common.get("from"))), "to": _addresses(common.get("to")),
                  "cc": _addresses(common.get("cc")), "reply_to": _addresses(common.get("replyTo")),
                  "subject": common.get("subject"), "date": common.get("date"),
                  "message_id": common.get("messageId") or mail.get("messageId"),
                  "headers": _headers_of_interest((h.get("name"), h.get("value"))
                                                  for h in mail.get("headers") or [] if isinstance(h, dict))}
        record["date_utc"] = _date_utc(record.get("date"))
        record["x_originating_ip"] = _originating_ips(record["headers"])
    record["relay"] = "ses"
    record["envelope"] = _clean({"from": mail.get("source"),
                                 "to": _addresses(receipt.get("recipients") or mail.get("destination"))})
    record["verdicts"] = _clean({name[:-len("Verdict")]: (receipt.get(name) or {}).get("status")
                                 for name in ("spamVerdict", "virusVerdict", "spfVerdict", "dkimVerdict",
                                              "dmarcVerdict")})
    return _clean(record)


def _from_postmark(doc: dict[str, Any], limits: EmailLimits) -> dict[str, Any]:
    headers = _headers_of_interest((h.get("Name"), h.get("Value"))
                                   for h in doc.get("Headers") or [] if isinstance(h, dict))
    sender = doc.get("FromFull") if isinstance(doc.get("FromFull"), dict) else {}
    attachments = [_attachment(a.get("Name"), a.get("ContentType"), _b64(a.get("Content")),
                               a.get("ContentLength"))
                   for a in doc.get("Attachments") or [] if isinstance(a, dict)]
    record = {
        "relay": "postmark",
        "from": _first(_addresses(sender.get("Email"))) or _first(_addresses(doc.get("From"))),
        "from_name": sender.get("Name") or doc.get("FromName"),
        "to": _full_list(doc.get("ToFull")) or _addresses(doc.get("To")),
        "cc": _full_list(doc.get("CcFull")) or _addresses(doc.get("Cc")),
        "reply_to": _addresses(doc.get("ReplyTo")),
        "subject": doc.get("Subject"),
        "date": doc.get("Date"),
        "message_id": doc.get("MessageID") or headers.get("message-id"),
        "headers": headers,
        "envelope": _clean({"to": _addresses(doc.get("OriginalRecipient"))}),
    }
    return _finish(record, doc.get("TextBody"), doc.get("HtmlBody"), attachments, limits)


def _generic_json(doc: dict[str, Any], limits: EmailLimits) -> dict[str, Any]:
    attachments = []
    for item in doc.get("attachments") or []:
        if isinstance(item, dict):
            content = item.get("content")
            attachments.append(_attachment(item.get("name") or item.get("filename"),
                                           item.get("content_type") or item.get("type"),
                                           _b64(content) if isinstance(content, str) else None,
                                           item.get("size")))
    raw_headers = doc.get("headers")
    headers = _headers_of_interest(raw_headers.items() if isinstance(raw_headers, dict) else ())
    record = {
        "relay": "json",
        "from": _first(_addresses(doc.get("from"))),
        "from_name": _first(_display_names(doc.get("from"))),
        "to": _addresses(doc.get("to")),
        "cc": _addresses(doc.get("cc")),
        "reply_to": _addresses(doc.get("reply_to")),
        "subject": doc.get("subject"),
        "date": doc.get("date"),
        "message_id": doc.get("message_id") or headers.get("message-id"),
        "headers": headers,
    }
    return _finish(record, doc.get("text"), doc.get("html"), attachments, limits)


# -- form relays -----------------------------------------------------------------------------

def parse_form_data(content_type: str, body: bytes) -> tuple[Fields, list[FormFile]]:
    """
    The fields and file parts of a multipart/form-data body (CRLF or bare LF line breaks).

    @raise BodyError: without a boundary, or when no part could be read.
    """
    if "boundary=" not in content_type.lower():
        raise BodyError("multipart/form-data without a boundary parameter")
    form = _PARSER.parsebytes(b"Content-Type: " + content_type.encode("latin-1", "replace")
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
        data = _part_bytes(part)
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
        head = _PARSER.parsebytes((fields.get("headers", "").strip() + "\n\n").encode("utf-8", "replace"))
        attachments = [_attachment(f.filename, f.content_type, f.data) for f in files]
        record = _header_fields(head)
        record["from"] = _first(_addresses(fields.get("from"))) or record.get("from")
        record["from_name"] = _first(_display_names(fields.get("from"))) or record.get("from_name")
        record["to"] = _addresses(fields.get("to")) or record.get("to")
        record["cc"] = _addresses(fields.get("cc")) or record.get("cc")
        record = _finish(record, fields.get("text"), fields.get("html"), attachments, limits)
    record["relay"] = "sendgrid"
    if fields.get("subject") and fields["subject"] != record.get("subject"):
        record["subject_header"] = record.get("subject")
        record["subject"] = fields["subject"]
    record["envelope"] = _clean({"from": envelope.get("from"), "to": _addresses(envelope.get("to"))})
    record["verdicts"] = _clean({"spf": fields.get("SPF"), "dkim": fields.get("dkim"),
                                 "spam_score": fields.get("spam_score")})
    record["x_originating_ip"] = _merge_ips(record.get("x_originating_ip"), fields.get("sender_ip"))
    return _clean(record)


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
        record = _header_fields(head)
        record["from"] = _first(_addresses(fields.get("from"))) or record.get("from")
        record["from_name"] = _first(_display_names(fields.get("from"))) or record.get("from_name")
        record["to"] = record.get("to") or _addresses(fields.get("To") or fields.get("recipient"))
        record["message_id"] = record.get("message_id") or fields.get("Message-Id")
        attachments = [_attachment(f.filename, f.content_type, f.data) for f in files]
        record = _finish(record, fields.get("body-plain"), fields.get("body-html"), attachments, limits)
    record["relay"] = "mailgun"
    record["subject"] = record.get("subject") or fields.get("subject")
    record["envelope"] = _clean({"from": fields.get("sender"), "to": _addresses(fields.get("recipient"))})
    return _clean(record)


# -- MIME ------------------------------------------------------------------------------------

def parse_mime(raw: bytes, limits: EmailLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """
    The e-mail record of one RFC 822 message: the first text/plain body part (or the first
    text/html one as readable text), every other leaf part listed as an attachment.
    """
    message = _PARSER.parsebytes(raw)
    record = _header_fields(message)
    record["relay"] = "mime"
    text_part, html_part = _body_parts(message)
    attachments = [_attachment(part.get_filename() or _default_name(part), part.get_content_type(),
                               _part_bytes(part))
                   for part in _leaf_parts(message) if part is not text_part and part is not html_part]
    return _finish(record, _part_text(text_part), _part_text(html_part), attachments, limits)


def _header_fields(message: Message) -> dict[str, Any]:
    values = {name.lower(): value for name, value in reversed(_raw_headers(message))}
    headers = _headers_of_interest(_raw_headers(message))
    record: dict[str, Any] = {
        "from": _first(_addresses(values.get("from"))),
        "from_name": _first(_display_names(values.get("from"))),
        "to": _addresses(_all(message, "to")),
        "cc": _addresses(_all(message, "cc")),
        "reply_to": _addresses(values.get("reply-to")),
        "subject": _decode_words(values["subject"]) if "subject" in values else None,
        "date": values.get("date"),
        "message_id": values.get("message-id", "").strip() or None,
        "headers": headers,
        "x_originating_ip": _originating_ips(headers),
    }
    return record


def _raw_headers(message: Message) -> list[tuple[str, str]]:
    """
    The header fields as sent (unfolded), before the policy parses them: address parsing is ours.
    """
    return [(name, _unsurrogate(re.sub(r"\r?\n([ \t])", r"\1", str(value))).strip())
            for name, value in message.raw_items()]


def _unsurrogate(text: str) -> str:
    """
    Raw 8-bit header bytes (read as surrogate escapes) as UTF-8, so the record is valid text.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _all(message: Message, name: str) -> str | None:
    found = [value for key, value in _raw_headers(message) if key.lower() == name]
    return ", ".join(found) if found else None


def _body_parts(message: Message) -> tuple[Message | None, Message | None]:
    text_part = html_part = None
    for part in _leaf_parts(message):
        if part.get_content_disposition() == "attachment" or part.get_filename():
            continue
        if part.get_content_type() == "text/plain" and text_part is None:
            text_part = part
        elif part.get_content_type() == "text/html" and html_part is None:
            html_part = part
    return text_part, html_part


def _leaf_parts(message: Message) -> Iterable[Message]:
    """
    Every part that is not a container; an attached message (message/*) is one leaf, not opened.
    """
    if message.get_content_maintype() == "message" and message is not None:
        yield message
        return
    if not message.is_multipart():
        yield message
        return
    payload = message.get_payload()
    for part in payload if isinstance(payload, list) else []:
        yield from _leaf_parts(part)


def _part_bytes(part: Message) -> bytes:
    if part.get_content_maintype() == "message" or part.is_multipart():
        payload = part.get_payload()
        if isinstance(payload, list):
            return b"".join(p.as_bytes(policy=policy.default.clone(linesep="\r\n")) for p in payload)
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _part_text(part: Message | None) -> str | None:
    if part is None:
        return None
    data = _part_bytes(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def _default_name(part: Message) -> str:
    extension = {"message/rfc822": "eml", "text/plain": "txt", "text/html": "html"}.get(
        part.get_content_type(), "bin")
    return f"part.{extension}"


def _b64(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return None


# -- plain text (an analyst's paste or forward) ------------------------------------------------

def _from_plain_text(text: str, limits: EmailLimits) -> dict[str, Any]:
    record = _finish({"relay": "text"}, text, None, [], limits)
    forwarded = record.get("forwarded") or {}
    if not forwarded.get("from") and not forwarded.get("to"):
        raise BodyError("plain text with no sender or recipient: send the e-mail itself (message/rfc822) "
                        "or a forwarded alert with its From:/To: block")
    record.setdefault("subject", forwarded.get("subject"))
    return _clean(record)


def _forwarded(text: str) -> dict[str, Any] | None:
    """
    The header block of a message forwarded inline (Gmail, Outlook, Apple Mail markers).
    """
    marker = _FORWARD_MARKERS.search(text)
    if marker is None:
        return None
    found: dict[str, Any] = {}
    for line in text[marker.end():].lstrip("\r\n").splitlines():
        match = _FORWARD_HEADER.match(line)
        if match is None:
            break
        key = {"sent": "date"}.get(match[1].lower(), match[1].lower())
        found.setdefault(key, match[2])
    if not found:
        return None
    return _clean({"from": _first(_addresses(found.get("from"))), "to": _addresses(found.get("to")),
                   "cc": _addresses(found.get("cc")), "subject": found.get("subject"),
                   "date": found.get("date")})


# -- shared shaping --------------------------------------------------------------------------

def _finish(record: dict[str, Any], text: Any, html: Any, attachments: list[dict[str, Any]],
            limits: EmailLimits) -> dict[str, Any]:
    """
    Body text (HTML made readable when there is no text part), URLs, attachments and limits.
    """
    text = text if isinstance(text, str) and text.strip() else None
    html = html if isinstance(html, str) and html.strip() else None
    links: list[str] = []
    if html is not None:
        readable, links = html_to_text(html)
        text = text if text is not None else readable
    if text is not None:
        if len(text) > limits.max_text_chars:
            text = text[:limits.max_text_chars]
            record["truncated"] = True
        record["text"] = text
        record["forwarded"] = _forwarded(text)
    record["urls"] = _unique([*_urls(text or ""), *links])[:limits.max_urls]
    record["attachments"] = attachments[:limits.max_attachments]
    record["date_utc"] = _date_utc(record.get("date"))
    return _clean(record)


def _attachment(name: Any, content_type: Any, data: bytes | None, size: Any = None) -> dict[str, Any]:
    """
    What the event says about an attachment: never its content.
    """
    listed: dict[str, Any] = {"name": _decode_words(str(name)) if name else "unnamed",
                              "content_type": str(content_type or "application/octet-stream").lower()}
    if data is not None:
        listed["size"] = len(data)
        listed["sha256"] = hashlib.sha256(data).hexdigest()
    elif isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        listed["size"] = size
    return listed


def _headers_of_interest(pairs: Iterable[tuple[Any, Any]]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for name, value in pairs:
        if not isinstance(name, str) or value is None:
            continue
        key = name.lower()
        if key in HEADERS_OF_INTEREST and key not in kept:
            kept[key] = _decode_words(str(value)).strip()
    return kept


def _originating_ips(headers: dict[str, str]) -> list[str]:
    return _merge_ips([], *(headers.get(name) for name in _ORIGINATING_IP_HEADERS))


def _merge_ips(known: list[str] | None, *candidates: str | None) -> list[str]:
    ips = list(known or [])
    for candidate in candidates:
        text = (candidate or "").strip().strip("[]").strip()
        try:
            ip = str(ipaddress.ip_address(text))
        except ValueError:
            continue
        if ip not in ips:
            ips.append(ip)
    return ips


def _date_utc(date: Any) -> str | None:
    """
    An RFC 5322 date as ISO 8601 UTC; also reads the C{-04:00} offsets some relays write.
    """
    if not isinstance(date, str) or not date.strip():
        return None
    text = re.sub(r"([+-]\d\d):(\d\d)\s*$", r"\1\2", date.strip())
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _urls(text: str) -> list[str]:
    return [match.rstrip(_URL_TRAILING) for match in _URL.findall(text)]


class _Readable(HTMLParser):
    """
    HTML → text a human (and a template) can read: block elements break lines, scripts and styles
    vanish, entities are decoded; hrefs are collected.
    """

    _BLOCKS = frozenset({"p", "div", "br", "tr", "li", "table", "h1", "h2", "h3", "h4", "h5", "h6",
                         "blockquote", "pre", "hr", "ul", "ol", "section", "article", "header", "footer"})
    _HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.links: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCKS:
            self.chunks.append("\n")
        elif tag == "td" or tag == "th":
            self.chunks.append(" ")
        if tag == "a":
            href = dict(attrs).get("href")
            if href and href.lower().startswith(("http://", "https://")):
                self.links.append(href.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCKS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.chunks.append(data)


def html_to_text(html: str) -> tuple[str, list[str]]:
    """
    The readable text of an HTML body, and the links in it.
    """
    reader = _Readable()
    reader.feed(html)
    reader.close()
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in "".join(reader.chunks).splitlines())
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, reader.links


# -- addresses -------------------------------------------------------------------------------

def _split_addresses(value: str) -> list[str]:
    """
    An address list split on the commas that are outside quotes, angle brackets and comments.
    """
    items, current, quoted, angle, comment = [], "", False, 0, 0
    escaped = False
    for char in value:
        if escaped:
            current += char
            escaped = False
            continue
        if char == "\\" and quoted:
            escaped = True
        elif char == '"' and not comment:
            quoted = not quoted
        elif not quoted:
            angle += {"<": 1, ">": -1}.get(char, 0) if not comment else 0
            comment += {"(": 1, ")": -1}.get(char, 0)
            angle, comment = max(angle, 0), max(comment, 0)
            if char in ",;" and not angle and not comment:
                items.append(current)
                current = ""
                continue
        current += char
    items.append(current)
    return [item.strip() for item in items if item.strip()]


def _parse_address(item: str) -> tuple[str, str] | None:
    """
    (display name, bare address) of one list item. The address is what is inside the last
    C{<…>}: a display name that looks like an address (C{alice@x <bob@y>}) is only a name.
    """
    item = re.sub(r"\([^()]*\)", " ", item).strip()
    bracket = re.search(r"<([^<>]*)>\s*$", item)
    if bracket is not None:
        address = bracket[1].strip()
        name = _decode_words(item[:bracket.start()].strip()).strip().strip('"').strip()
        name = name.replace('\\"', '"')
    else:
        decoded = _decode_words(item).strip()
        address = decoded.rsplit(":", 1)[-1] if "@" in decoded.rsplit(":", 1)[-1] else decoded
        address = address.strip().strip("<>;\"' ")
        name = ""
    if address.lower().startswith("mailto:"):
        address = address[7:]
    if "@" not in address or any(c.isspace() for c in address):
        return None
    return name, address


def _parsed(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    found: list[tuple[str, str]] = []
    for one in values:
        if isinstance(one, dict):
            one = one.get("email") or one.get("Email") or one.get("address") or ""
        if not isinstance(one, str):
            continue
        for item in _split_addresses(one):
            parsed = _parse_address(item)
            if parsed is not None:
                found.append(parsed)
    return found


def _addresses(value: Any) -> list[str]:
    return _unique(address for _, address in _parsed(value))


def _display_names(value: Any) -> list[str]:
    return [name for name, _ in _parsed(value) if name]


def _full_list(value: Any) -> list[str]:
    """
    Postmark's C{ToFull}/C{CcFull}: the cleanest recipient lists it sends.
    """
    if not isinstance(value, list):
        return []
    return _addresses([item.get("Email") for item in value if isinstance(item, dict)])


def _decode_words(text: str) -> str:
    """
    RFC 2047 encoded words decoded (C{=?UTF-8?B?…?=}); text without them is returned unchanged.
    """
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return text


# -- small helpers ---------------------------------------------------------------------------

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


def _first(items: list[str]) -> str | None:
    return items[0] if items else None


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """
    Absent values left out: no C{None}, no empty strings, lists or objects.
    """
    return {key: value for key, value in record.items() if value not in (None, "", [], {})}
