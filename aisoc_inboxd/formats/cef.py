"""
ArcSight Common Event Format (CEF) lines into events.

A batch is newline-delimited (LF or CRLF; L{cef_lines}). Blank lines are skipped; a line that is not
CEF raises L{CefError} with the reason, which the intakes count as malformed without failing the batch
(the spec's C{outcome="malformed"}, L{aisoc_inboxd.formats.cef_records.split_cef_lines}). Each line is::

    [prefix ]CEF:Version|Device Vendor|Device Product|Device Version|Device Event Class ID|Name|Severity|[Extension]

Decisions, each pinned by a test:

  - B{Empty header fields are accepted} (Logstash's behaviour, not pycef's). Real senders leave them
    empty: FortiWeb Cloud sends empty vendor, product and version (and an empty severity), the
    ArcSight Windows connector an empty device version. Rejecting those lines would drop security
    events over a cosmetic defect. Only the version must be there, and be C{0} or C{1}.
  - B{A missing final pipe} after the severity means an empty extension; fewer than seven header
    fields is malformed.
  - B{Escapes}: the header unescapes C{\\|} and C{\\\\}; the extension unescapes C{\\=}, C{\\\\},
    C{\\n} and C{\\r}. Any other backslash is kept as it is, so C{\\|} stays C{\\|} in an extension
    value (as Logstash does) and a lone backslash stays a backslash.
  - B{Extension values} run to the next C{ key=} token, so they may hold spaces, bare C{|} and bare
    C{=} (wherever no key name directly precedes it after a space); trailing spaces are trimmed,
    leading ones kept (Beats keeps them too). Text before the first C{key=} makes the line malformed:
    it cannot be attributed to a key.
  - B{Key names} are CEF names as real senders write them: letters, digits, C{_ . , [ ] -}, not
    starting with punctuation (C{ad.field[0]}, C{ad.Error_,Code}, C{_cefVer}).
  - B{Duplicate keys}: the last one wins, as in a dict (the Imperva Incapsula sample repeats C{ccode}).
  - B{Severity}: C{0}-C{10} and the words Unknown/Low/Medium/High/Very-High (any case) map onto
    L{CefSeverity} by the CEF standard's bands; anything else (C{Critical}, C{25}, empty) is
    C{UNKNOWN}. The raw text is always kept in C{severity_raw} for templates that know better.
  - B{Encoding}: UTF-8; invalid bytes become U+FFFD rather than failing the batch. Lines split on
    C{\\n} only (not C{str.splitlines}, which would also break on U+2028 or form feeds inside values).

Speed: one compiled regex matches the header; one C-level C{re.split} on C{ key=} tokens scans the
extension once (possessive quantifier, so no backtracking into key names). C{bench/cef_parser.py}
measures it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Iterator

from aisoc_inboxd.formats.json_body import lines_of


class CefError(ValueError):
    """
    A line is not CEF; the message says what is wrong with it.
    """


class CefSeverity(StrEnum):
    """
    The CEF standard's severity bands: 0-3 Low, 4-6 Medium, 7-8 High, 9-10 Very-High.
    """

    UNKNOWN = "Unknown"
    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"
    VERY_HIGH = "Very-High"


_SEVERITY_WORDS = {s.value.lower(): s for s in CefSeverity}
_SEVERITY_NUMBERS = (
    [CefSeverity.LOW] * 4 + [CefSeverity.MEDIUM] * 3 + [CefSeverity.HIGH] * 2 + [CefSeverity.VERY_HIGH] * 2
)

# One header field: anything but a backslash or a pipe, or a backslash and the character it escapes.
_FIELD = r"([^\\|]*+(?:\\.[^\\|]*+)*+)"
#: a CEF record from its marker to the end: version, the six header fields, the extension (DOTALL)
HEADER_PATTERN = r"CEF:(\d+)\|" + (_FIELD + r"\|") * 5 + _FIELD + r"(?:\|(.*))?\Z"
#: L{HEADER_PATTERN} compiled: matched from the marker on
HEADER = re.compile(HEADER_PATTERN, re.DOTALL)
_HEADER_ESCAPES = (("\\|", "|"),)
_HEADER_PIPE_OR_ESCAPE = re.compile(r"\\.|\|", re.DOTALL)

# A key follows a space (the parser puts one before the first) and is directly followed by '='.
_KEY = re.compile(r" ([A-Za-z0-9_][A-Za-z0-9_.,\[\]-]*+)=")
_EXTENSION_ESCAPES = (("\\=", "="), ("\\n", "\n"), ("\\r", "\r"))

_CUSTOM_KEY = re.compile(
    r"(?:cs|cn|cfp|c6a|flexString|flexNumber|flexDate|deviceCustomString|deviceCustomNumber"
    r"|deviceCustomFloatingPoint|deviceCustomIPv6Address|deviceCustomDate)\d+"
)


@dataclass(frozen=True, slots=True)
class CefEvent:
    """
    One CEF record, header fields and extension values unescaped.

    @ivar device_event_class_id: the Signature ID.
    @ivar severity: the normalized band; C{severity_raw} is the header text as sent.
    @ivar extensions: key to value in the order sent, raw CEF key names (C{src}, C{cs1Label}, ...).
    @ivar prefix: whatever preceded C{CEF:} (typically a syslog header), stripped; C{""} if none.
    """

    version: int
    device_vendor: str
    device_product: str
    device_version: str
    device_event_class_id: str
    name: str
    severity: CefSeverity
    severity_raw: str
    extensions: dict[str, str]
    prefix: str = ""

    def custom_fields(self) -> list[tuple[str, str | None, str]]:
        """
        The vendor-defined pairs (C{cs1}/C{cs1Label}, C{cn2}, C{flexString1}, C{c6a3}, ...) as
        C{(key, label, value)} in the order sent; C{label} is None when the sender gave none. Labels
        without a value are left out: they carry no data.
        """
        ext = self.extensions
        return [(key, ext.get(key + "Label"), value) for key, value in ext.items() if _CUSTOM_KEY.fullmatch(key)]


def normalize_severity(raw: str) -> CefSeverity:
    """
    The severity band of a header severity: a number 0-10 or a CEF severity word, else UNKNOWN.
    """
    text = raw.strip()
    if text.isascii() and text.isdigit():
        number = int(text)
        return _SEVERITY_NUMBERS[number] if number <= 10 else CefSeverity.UNKNOWN
    return _SEVERITY_WORDS.get(text.lower(), CefSeverity.UNKNOWN)


def parse_cef_line(line: str) -> CefEvent:
    """
    One CEF record from one line (without its line break).

    @raise CefError: the line has no C{CEF:} marker, an unsupported version, fewer than seven header
        fields, or an extension that does not start with C{key=value}.
    """
    start = line.find("CEF:")
    if start < 0:
        raise CefError("no 'CEF:' marker")
    match = HEADER.match(line, start)
    if match is None:
        raise CefError(_header_problem(line[start:]))
    version_text, *header, extension = match.groups()
    version = int(version_text)
    if version > 1:
        raise CefError(f"unsupported CEF version {version_text} (only 0 and 1)")
    if line.find("\\", start, match.end(7)) >= 0:
        header = [_unescape(field, _HEADER_ESCAPES) for field in header]
    vendor, product, device_version, class_id, name, severity_raw = header
    return CefEvent(
        version=version,
        device_vendor=vendor,
        device_product=product,
        device_version=device_version,
        device_event_class_id=class_id,
        name=name,
        severity=normalize_severity(severity_raw),
        severity_raw=severity_raw,
        extensions=parse_extension(extension) if extension else {},
        prefix=line[:start].strip(),
    )


def cef_lines(data: bytes | str, max_events: int | None = None) -> Iterator[tuple[int, str]]:
    """
    The non-blank lines of a batch with their 1-based numbers: UTF-8 (invalid bytes replaced), a
    leading BOM dropped, split on LF only, a CR before it removed; split as they are read when
    there are more than C{max_events} (L{lines_of}), for a caller that reads one past that.
    """
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    for number, line in enumerate(lines_of(text.removeprefix("\ufeff"), max_events), 1):
        line = line.removesuffix("\r")
        if line and not line.isspace():
            yield number, line


def _unescape(text: str, escapes: tuple[tuple[str, str], ...]) -> str:
    """
    C{text} with its backslash escapes resolved left to right: splitting on C{\\\\} first takes the
    escaped backslashes out, so each backslash left escapes the character after it (or stays, when
    that is not one of C{escapes}). C{str} methods only: C{re.sub} with a template runs Python code
    per match on 3.11, several times slower on escape-heavy ArcSight values.
    """
    pieces = text.split("\\\\")
    for index, piece in enumerate(pieces):
        if "\\" in piece:
            for escaped, plain in escapes:
                piece = piece.replace(escaped, plain)
            pieces[index] = piece
    return "\\".join(pieces)


def parse_extension(extension: str, strip_every_value: bool = False) -> dict[str, str]:
    """
    Key to unescaped value. One C-level split on C{ key=} tokens does the whole scan: the parts
    alternate keys and raw values, and the first part is whatever came before the first key.

    A value can end in a space only when two spaces precede the next key or the extension ends in
    one (the split takes the one space before each key), so without either no value is stripped:
    a Python step per value saved (~5 k instructions a frame, 11 % of the parse).

    @param strip_every_value: strip each value all the same (the reference,
        L{parse_extension_reference}; C{tests/test_cef_fast_paths.py} holds both equal).
    """
    text = extension.lstrip(" ")
    if not text:
        return {}
    parts = _KEY.split(" " + text)
    if len(parts) == 1 or parts[0]:
        raise CefError("extension does not start with key=value")
    if strip_every_value or "  " in text or text[-1] == " ":
        values = [value.rstrip(" ") for value in parts[2::2]]
    else:
        values = parts[2::2]
    if "\\" in text:
        values = [_unescape(value, _EXTENSION_ESCAPES) if "\\" in value else value for value in values]
    return dict(zip(parts[1::2], values))


def parse_extension_reference(extension: str) -> dict[str, str]:
    """
    The reference for L{parse_extension}: every value stripped of its trailing spaces.
    """
    return parse_extension(extension, strip_every_value=True)


def _header_problem(record: str) -> str:
    """
    Why C{record} (from C{CEF:} on) does not match the header pattern; off the fast path.
    """
    version = record[4:].split("|", 1)[0]
    if not version.isdigit():
        return f"CEF version {version[:20]!r} is not a number"
    fields = 1 + sum(1 for m in _HEADER_PIPE_OR_ESCAPE.finditer(record) if m.group() == "|")
    if fields < 7:
        return f"CEF header has {fields} of 7 '|'-separated fields"
    return "CEF header ends in a lone backslash"
