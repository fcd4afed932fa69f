"""
RFC 822 messages (raw MIME from a relay, the IMAP poller's fetches) → e-mail records: the first
text body, every other leaf part listed as an attachment.
"""
from __future__ import annotations

import re
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import Any, Iterable

from aisoc_inboxd.formats.email.addresses import addresses, decode_words, display_names
from aisoc_inboxd.formats.email.record import (
    DEFAULT_LIMITS, EmailLimits, attachment, finish, headers_of_interest, originating_ips,
)
from aisoc_inboxd.formats.email.values import first

PARSER = BytesParser(policy=policy.default)


def parse_mime(raw: bytes, limits: EmailLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """
    The e-mail record of one RFC 822 message: the first text/plain body part (or the first
    text/html one as readable text), every other leaf part listed as an attachment.
    """
    message = PARSER.parsebytes(raw)
    record = header_fields(message)
    record["relay"] = "mime"
    text_part, html_part = _body_parts(message)
    attachments = [attachment(part.get_filename() or _default_name(part), part.get_content_type(),
                               part_bytes(part))
                   for part in _leaf_parts(message) if part is not text_part and part is not html_part]
    return finish(record, _part_text(text_part), _part_text(html_part), attachments, limits)


def header_fields(message: Message) -> dict[str, Any]:
    values = {name.lower(): value for name, value in reversed(_raw_headers(message))}
    headers = headers_of_interest(_raw_headers(message))
    record: dict[str, Any] = {
        "from": first(addresses(values.get("from"))),
        "from_name": first(display_names(values.get("from"))),
        "to": addresses(_all(message, "to")),
        "cc": addresses(_all(message, "cc")),
        "reply_to": addresses(values.get("reply-to")),
        "subject": decode_words(values["subject"]) if "subject" in values else None,
        "date": values.get("date"),
        "message_id": values.get("message-id", "").strip() or None,
        "headers": headers,
        "x_originating_ip": originating_ips(headers),
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


def part_bytes(part: Message) -> bytes:
    if part.get_content_maintype() == "message" or part.is_multipart():
        payload = part.get_payload()
        if isinstance(payload, list):
            return b"".join(p.as_bytes(policy=policy.default.clone(linesep="\r\n")) for p in payload)
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _part_text(part: Message | None) -> str | None:
    if part is None:
        return None
    data = part_bytes(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def _default_name(part: Message) -> str:
    extension = {"message/rfc822": "eml", "text/plain": "txt", "text/html": "html"}.get(
        part.get_content_type(), "bin")
    return f"part.{extension}"
