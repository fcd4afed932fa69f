"""
The body's text: HTML made readable (and its links collected), the URLs in a text, and the header
block of a message forwarded inline.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from aisoc_inboxd.formats.email.addresses import addresses
from aisoc_inboxd.formats.email.values import clean, first

_URL = re.compile(r"https?://[^\s<>\"'`)\]}]+", re.IGNORECASE)

_URL_TRAILING = ".,;:!?"

_FORWARD_MARKERS = re.compile(
    r"^\s*(?:-{2,}\s*(?:Forwarded message|Original Message|Weitergeleitete Nachricht|Message transféré|"
    r"Mensaje reenviado)\s*-{2,}|Begin forwarded message:)\s*$", re.IGNORECASE | re.MULTILINE)

_FORWARD_HEADER = re.compile(r"^\s*\*?(From|To|Subject|Date|Sent|Cc)\s*:\*?\s*(.*?)\s*$", re.IGNORECASE)


def urls(text: str) -> list[str]:
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


def forwarded(text: str) -> dict[str, Any] | None:
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
    return clean({"from": first(addresses(found.get("from"))), "to": addresses(found.get("to")),
                   "cc": addresses(found.get("cc")), "subject": found.get("subject"),
                   "date": found.get("date")})
