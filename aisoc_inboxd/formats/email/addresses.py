"""
Address lists as relays and headers write them (display names, quotes, comments, RFC 2047 words)
turned into bare addresses and display names.
"""
from __future__ import annotations

import re
from email.header import decode_header, make_header
from typing import Any

from aisoc_inboxd.formats.email.values import unique


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
        name = decode_words(item[:bracket.start()].strip()).strip().strip('"').strip()
        name = name.replace('\\"', '"')
    else:
        decoded = decode_words(item).strip()
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


def addresses(value: Any) -> list[str]:
    return unique(address for _, address in _parsed(value))


def display_names(value: Any) -> list[str]:
    return [name for name, _ in _parsed(value) if name]


def full_list(value: Any) -> list[str]:
    """
    Postmark's C{ToFull}/C{CcFull}: the cleanest recipient lists it sends.
    """
    if not isinstance(value, list):
        return []
    return addresses([item.get("Email") for item in value if isinstance(item, dict)])


def decode_words(text: str) -> str:
    """
    RFC 2047 encoded words decoded (C{=?UTF-8?B?…?=}); text without them is returned unchanged.
    """
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return text
