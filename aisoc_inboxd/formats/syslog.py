"""
One syslog frame into its header fields and message: RFC 5424, RFC 3164 and the BSD-style variants
real senders and relays produce. Never raises: what cannot be read stays in C{message}.

Formats (C{SyslogMessage.format}):

  - C{"rfc5424"}: C{<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]}. NILVALUE C{-} becomes
    None; SD-PARAM values unescape C{\\"} C{\\\\} C{\\]} (any other backslash stays, RFC 5424 6.3.3);
    a PARAM-NAME repeated in an element (6.3.3 allows it: C{[origin ip="…" ip="…"]}) keeps every
    value, as a list in the order sent; a UTF-8 BOM starting MSG is dropped. Vendors send broken
    headers such as C{<5>1 2020-01-24T22:53:03Z HOST CEF:0|...}: when what follows HOSTNAME is not
    a valid C{APP-NAME PROCID MSGID SD} (or starts with C{CEF:}), it is all kept as the message.
  - C{"rfc3164"}: the BSD family. C{[<PRI>]TIMESTAMP [HOSTNAME] [TAG[PID]:] MSG}, where TIMESTAMP is
    C{Mmm dd hh:mm:ss} (RFC 3164), optionally with a year before the time, a fraction and a C{UTC}/C{GMT}
    zone (relay prefixes in the corpus), or an RFC 3339 stamp without the 5424 version (Flume's
    "non-standard but common" frames), or epoch milliseconds. A frame with a valid PRI but no
    readable stamp is RFC 3164 too, its whole text after the PRI being the message (RFC 3164 4.3.2).
  - C{"unknown"}: neither a PRI nor a stamp; the whole frame is the message.

Decisions:

  - B{Year of RFC 3164 stamps}: the year that puts the stamp closest to C{now} (so a December stamp
    read on 1 January lands in the past year), in C{local_tz} (UTC unless the operator says which zone
    the senders' clocks use). An explicit C{UTC}/C{GMT} after the time wins.
  - B{Hostname}: optional. The token after the stamp is the hostname unless it reads as a tag
    (C{su:}, C{named[23276]:}) or cannot be one (it holds C{|}, as a CEF record does). RFC 3164
    example 3 (C{Aug 24 05:34:00 CST 1987 mymachine myproc[10]: ...}) is read strictly, as RFC 3164
    section 4.1.2 says: hostname C{CST}, the rest message. Guessing zone names would misread the
    many hosts with short upper-case names.
  - B{Tag}: C{name:} or C{name[pid]:} followed by a space; C{name[pid]} without the colon is
    accepted too (FortiWeb Cloud's C{syslogng[9] CEF:...}). It fills C{app_name} and C{procid}.
  - B{PRI}: C{<0>} to C{<191>}; without one, C{facility} and C{severity} are None (the caller may
    apply RFC 3164's default of 13, user.notice).
  - A trailing CR/LF is removed (UDP senders often add one); invalid UTF-8 becomes U+FFFD.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Literal

SyslogFormat = Literal["rfc5424", "rfc3164", "unknown"]
#: SD-ID to PARAM-NAME to value, or to the list of values of a repeated PARAM-NAME
StructuredData = dict[str, dict[str, str | list[str]]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_MONTHS = {
    name: number
    for number, name in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)
}

_PRI = re.compile(r"<(\d{1,3})>")
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)"
)
_BSD_STAMP = re.compile(
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(\d{1,2}) (?:(\d{4}) )?"
    r"(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?: (UTC|GMT))?(?= |\Z)"
)
_EPOCH_MS = re.compile(r"\d{13}(?= |\Z)")
_RFC5424 = re.compile(r"1 (\S+) (\S+)(?: |\Z)")
_RFC5424_IDS = re.compile(r"(\S{1,48}) (\S{1,128}) (\S{1,32}) (?=[-\[])")
_SD_ELEMENT = re.compile(r'\[([^ =\]"]{1,32})')
_SD_PARAM = re.compile(r' ([^ =\]"]{1,32})="((?:[^"\\]|\\.)*)"', re.DOTALL)
_SD_ESCAPE = re.compile(r'\\(["\\\]])')
_TAG = re.compile(r"([^\s\[\]:]{1,48})(?:\[([^\]\s]{0,128})\]:?|:)(?: |\Z)")
_HOSTNAME = re.compile(r"[^\s|\[\]]{1,255}")


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    """
    One parsed frame. Absent fields are None.

    @ivar timestamp: epoch milliseconds (UTC), or None when there was no readable stamp.
    @ivar timestamp_text: the stamp as sent (keeps sub-millisecond digits and the original offset).
    @ivar structured_data: SD-ID to parameter to value (a list of values when the parameter is
        repeated); empty when there is none.
    @ivar message: MSG (RFC 5424, without BOM), CONTENT after the tag (RFC 3164), else the frame.
    """

    facility: int | None
    severity: int | None
    timestamp: int | None
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    message: str
    format: SyslogFormat
    structured_data: StructuredData = field(default_factory=dict)
    timestamp_text: str | None = None


def parse_syslog(frame: bytes | str, now: float, local_tz: tzinfo = UTC) -> SyslogMessage:
    """
    The header fields and message of one syslog frame.

    @param now: the receive time, epoch seconds; picks the year of RFC 3164 stamps.
    @param local_tz: the zone of stamps that carry none.
    """
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    text = text.rstrip("\r\n")
    facility = severity = None
    rest = text
    pri = _PRI.match(text)
    if pri is not None and int(pri.group(1)) <= 191:
        facility, severity = divmod(int(pri.group(1)), 8)
        rest = text[pri.end():]
        parsed = _parse_rfc5424(rest, facility, severity)
        if parsed is not None:
            return parsed
    parsed = _parse_bsd(rest, facility, severity, now, local_tz)
    if parsed is not None:
        return parsed
    if facility is not None:
        return SyslogMessage(facility, severity, None, None, None, None, None, rest.lstrip(" "), "rfc3164")
    return SyslogMessage(None, None, None, None, None, None, None, text, "unknown")


def bsd_timestamp(text: str, now: float, local_tz: tzinfo = UTC) -> int | None:
    """
    Epoch milliseconds of a whole BSD-style stamp (C{Mmm dd [yyyy ]hh:mm:ss[.fff][ UTC|GMT]}, the
    year chosen as for RFC 3164 headers), or None. CEF's C{rt}/C{start}/C{end} use this form; a
    trailing zone name other than UTC/GMT is ignored (the stamp is read in C{local_tz}).
    """
    stamp = _BSD_STAMP.match(text.strip())
    return None if stamp is None else _bsd_millis(stamp, now, local_tz)


def _nil(token: str) -> str | None:
    return None if token == "-" else token


def _parse_rfc5424(rest: str, facility: int, severity: int) -> SyslogMessage | None:
    header = _RFC5424.match(rest)
    if header is None:
        return None
    stamp_text, hostname = header.groups()
    if stamp_text == "-":
        timestamp = None
    else:
        stamp = _RFC3339.fullmatch(stamp_text)
        if stamp is None:
            return None
        timestamp = _rfc3339_millis(stamp)

    def message(app_name: str | None = None, procid: str | None = None, msgid: str | None = None,
                text: str = "", structured_data: StructuredData | None = None) -> SyslogMessage:
        return SyslogMessage(
            facility, severity, timestamp, _nil(hostname), app_name, procid, msgid,
            text.removeprefix("\ufeff"), "rfc5424", structured_data or {}, _nil(stamp_text),
        )

    after_host = rest[header.end():]
    ids = _RFC5424_IDS.match(after_host)
    if ids is None or after_host.startswith("CEF:"):
        return message(text=after_host)
    structured_data, end = _parse_structured_data(after_host, ids.end())
    if structured_data is None or (end < len(after_host) and after_host[end] != " "):
        return message(text=after_host)
    app_name, procid, msgid = (_nil(token) for token in ids.groups())
    return message(app_name, procid, msgid, after_host[end + 1:], structured_data)


def _parse_structured_data(text: str, pos: int) -> tuple[StructuredData | None, int]:
    """
    The SD elements starting at C{pos} and the index after them, or C{(None, pos)} if malformed.
    """
    if text.startswith("-", pos):
        return {}, pos + 1
    elements: StructuredData = {}
    while text.startswith("[", pos):
        element = _SD_ELEMENT.match(text, pos)
        if element is None:
            return None, pos
        params = elements.setdefault(element.group(1), {})
        pos = element.end()
        while (param := _SD_PARAM.match(text, pos)) is not None:
            name, value = param.group(1), _SD_ESCAPE.sub(r"\1", param.group(2))
            seen = params.get(name)
            if seen is None:
                params[name] = value
            elif isinstance(seen, list):
                seen.append(value)
            else:
                params[name] = [seen, value]
            pos = param.end()
        if not text.startswith("]", pos):
            return None, pos
        pos += 1
    return elements, pos


def _parse_bsd(rest: str, facility: int | None, severity: int | None, now: float,
               local_tz: tzinfo) -> SyslogMessage | None:
    stamp_text, timestamp, after = _bsd_stamp(rest, now, local_tz)
    if stamp_text is None:
        return None
    hostname = None
    tag = _TAG.match(after)
    if tag is None:
        token, _, remainder = after.partition(" ")
        if _HOSTNAME.fullmatch(token):
            hostname, after = token, remainder
            tag = _TAG.match(after)
    app_name = procid = None
    if tag is not None:
        app_name, procid = tag.group(1), tag.group(2)
        after = after[tag.end():]
    return SyslogMessage(facility, severity, timestamp, hostname, app_name, procid, None, after, "rfc3164",
                         timestamp_text=stamp_text)


def _bsd_stamp(rest: str, now: float, local_tz: tzinfo) -> tuple[str | None, int | None, str]:
    """
    C{(stamp as sent, epoch ms, text after it)} for the stamp styles of the BSD family at the start
    of C{rest}; C{(None, None, rest)} when there is none.
    """
    if (stamp := _BSD_STAMP.match(rest)) is not None:
        timestamp = _bsd_millis(stamp, now, local_tz)
    elif (stamp := _RFC3339.match(rest)) is not None and rest[stamp.end():stamp.end() + 1] in (" ", ""):
        timestamp = _rfc3339_millis(stamp)
    elif (stamp := _EPOCH_MS.match(rest)) is not None:
        timestamp = int(stamp.group())
    else:
        return None, None, rest
    return stamp.group(), timestamp, rest[stamp.end() + 1:]


def _millis(moment: datetime) -> int:
    return (moment - _EPOCH) // _MILLISECOND


def _microseconds(fraction: str | None) -> int:
    return int(fraction[:6].ljust(6, "0")) if fraction else 0


def _rfc3339_millis(stamp: re.Match[str]) -> int | None:
    year, month, day, hour, minute, second, fraction, offset = stamp.groups()
    if offset in ("Z", "z"):
        zone = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                          _microseconds(fraction), tzinfo=zone)
    except ValueError:  # leap second, 31 April, offset beyond 24h
        return None
    return _millis(moment)


def _bsd_millis(stamp: re.Match[str], now: float, local_tz: tzinfo) -> int | None:
    month_name, day, year, hour, minute, second, fraction, zone_name = stamp.groups()
    zone = UTC if zone_name else local_tz
    received = datetime.fromtimestamp(now, zone)
    years = [int(year)] if year else [received.year - 1, received.year, received.year + 1]
    candidates = []
    for candidate in years:
        try:
            candidates.append(datetime(candidate, _MONTHS[month_name], int(day), int(hour), int(minute),
                                       int(second), _microseconds(fraction), tzinfo=zone))
        except ValueError:  # 29 February outside leap years, day 31 of a short month
            continue
    if not candidates:
        return None
    return _millis(min(candidates, key=lambda moment: abs(moment - received)))
