"""
The e-mail record every shape ends as (the fields are listed in L{aisoc_inboxd.formats.email}): its
limits, the shaping every shape shares (body text, URLs, attachments, headers of interest, dates),
and the pipeline record that carries it.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Iterable

from aisoc_inboxd.formats.email.addresses import decode_words
from aisoc_inboxd.formats.email.text import forwarded, html_to_text, urls
from aisoc_inboxd.formats.email.values import clean, unique
from aisoc_inboxd.formats.json_body import Record


@dataclass(frozen=True)
class EmailLimits:
    """
    Bounds on what one record carries, so a huge or hostile message makes a bounded event.
    """

    max_text_chars: int = 64 * 1024
    max_attachments: int = 100
    max_urls: int = 100


DEFAULT_LIMITS = EmailLimits()

#: headers kept in C{headers} (lower-case); the rest of the header block stays out of the event
HEADERS_OF_INTEREST = (
    "message-id", "return-path", "reply-to", "sender", "x-mailer", "user-agent",
    "x-spam-status", "x-spam-score", "x-spam-flag", "x-spam-tests", "authentication-results",
    "received-spf", "dkim-signature", "x-ms-exchange-organization-scl", "precedence", "list-id",
    "auto-submitted", "x-originating-ip", "x-sender-ip", "in-reply-to", "references",
)

_ORIGINATING_IP_HEADERS = ("x-originating-ip", "x-sender-ip")


def as_record(email_record: dict[str, Any]) -> Record:
    """
    The pipeline's record: C{raw_data} is the e-mail record itself, so attachment content (which
    relays inline) never reaches the event.
    """
    return Record(email_record, json.dumps(email_record, ensure_ascii=False, separators=(",", ":")))


def finish(record: dict[str, Any], text: Any, html: Any, attachments: list[dict[str, Any]],
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
        record["forwarded"] = forwarded(text)
    record["urls"] = unique([*urls(text or ""), *links])[:limits.max_urls]
    record["attachments"] = attachments[:limits.max_attachments]
    record["date_utc"] = date_utc(record.get("date"))
    return clean(record)


def attachment(name: Any, content_type: Any, data: bytes | None, size: Any = None) -> dict[str, Any]:
    """
    What the event says about an attachment: never its content.
    """
    listed: dict[str, Any] = {"name": decode_words(str(name)) if name else "unnamed",
                              "content_type": str(content_type or "application/octet-stream").lower()}
    if data is not None:
        listed["size"] = len(data)
        listed["sha256"] = hashlib.sha256(data).hexdigest()
    elif isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        listed["size"] = size
    return listed


def headers_of_interest(pairs: Iterable[tuple[Any, Any]]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for name, value in pairs:
        if not isinstance(name, str) or value is None:
            continue
        key = name.lower()
        if key in HEADERS_OF_INTEREST and key not in kept:
            kept[key] = decode_words(str(value)).strip()
    return kept


def originating_ips(headers: dict[str, str]) -> list[str]:
    return merge_ips([], *(headers.get(name) for name in _ORIGINATING_IP_HEADERS))


def merge_ips(known: list[str] | None, *candidates: str | None) -> list[str]:
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


def date_utc(date: Any) -> str | None:
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
