"""
An RFC 5424 frame carrying CEF into its record in one pass: one regex reads the PRI, the header,
the structured data and the CEF header; the extension is split once (L{parse_extension}); the
record is built straight from the groups (L{carried_cef_record}), with no L{SyslogMessage} between.

Every other frame (RFC 3164, a header vendors broke, a PRI above 191, a CEF header with escapes or
a version above 1, text or a second BOM before C{CEF:}, no CEF at all) is read by the reference,
L{frame_record}, so both give the same record or the same L{CefError} for every frame;
C{tests/test_one_pass_cef.py} holds them equal. The syslog listeners decode with L{frame_items}:
L{read_frame}'s parse, whose CEF frames stay parts until the pipeline makes their events.
"""
from __future__ import annotations

import re
from datetime import UTC, tzinfo
from functools import partial
from typing import Any, Callable, NamedTuple, Sequence

from aisoc_inboxd.formats.cef import HEADER_PATTERN, parse_extension
from aisoc_inboxd.formats.cef_records import CefHeader, Split, carried_cef_record, header_fields
from aisoc_inboxd.formats.json_body import Record
from aisoc_inboxd.formats.syslog import RFC3339_PATTERN, SD_ELEMENTS_PATTERN, parse_structured_data, rfc3339_millis
from aisoc_inboxd.formats.syslog_records import FrameRecord, frame_record, frame_records

#: C{<PRI>1 STAMP HOST APP PROCID MSGID SD [BOM]CEF:...}; groups: 1 PRI, 2 stamp (3-10 its parts),
#: 11 host, 12-14 app, procid, msgid, 15 SD, 16 CEF version, 17-22 CEF header, 23 extension
_FRAME = re.compile(
    r"<(\d{1,3})>1 (-|" + RFC3339_PATTERN + r") (\S+) (?!CEF:)(\S{1,48}) (\S{1,128}) (\S{1,32}) "
    r"(-|" + SD_ELEMENTS_PATTERN + r") \ufeff?" + HEADER_PATTERN,
    re.DOTALL,
)
_new = tuple.__new__  # (a named tuple without its generated __new__'s frame)


def read_frame(frame: bytes, now: float, local_tz: tzinfo = UTC) -> FrameRecord:
    """
    The record of one frame, as L{frame_record} makes it.

    @raise CefError: the message is CEF but malformed.
    """
    parts = frame_parts(frame, now, local_tz)
    if parts is None:
        return frame_record(frame, now, local_tz)
    return FrameRecord(parts.record(), True)


class FrameParts(NamedTuple):
    """
    What L{frame_parts} reads of a frame, L{carried_cef_record}'s arguments in its order.
    """

    header: CefHeader
    ext: dict[str, str]
    #: the frame as text
    text: str
    #: the receive time and the listener's time zone
    now: float
    local_tz: tzinfo
    #: the syslog header's fields, and whether it named the host
    syslog: dict[str, Any]
    has_host: bool
    #: the header's stamp (epoch ms, on demand) and its text
    stamp: Callable[[], int | None] | None
    stamp_text: str

    def record(self) -> Record:
        """
        The frame's record, as L{read_frame} gives it.
        """
        return carried_cef_record(*self)


class CefFrames(tuple[FrameParts | Record, ...]):
    """
    The CEF part of a syslog listener's batch (L{frame_items}): a frame the one-pass regex read
    kept as its L{FrameParts} until the template that maps it is known, so that the pipeline makes
    its event straight from them (L{aisoc_inboxd.formats.cef_events}); any other CEF frame as its
    record.
    """

    def records(self) -> tuple[Record, ...]:
        """
        Each frame's record, as L{read_frame} gives it (for a template without fused functions).
        """
        return tuple(item.record() if type(item) is FrameParts else item for item in self)


def frame_items(frames: Sequence[bytes], now: float, local_tz: tzinfo = UTC) -> Split:
    """
    What the syslog listeners decode a batch into: L{frame_records} with L{read_frame}, except that
    the CEF part is L{CefFrames}, its one-pass frames not yet made into records.
    """
    split = frame_records(frames, now, local_tz, _read_item)
    # (not dataclasses.replace, whose loop over the fields costs ~10 k instructions a batch)
    return Split(CefFrames(split.cef), split.rest, split.malformed, split.problems) if split.cef else split


def _read_item(frame: bytes, now: float, local_tz: tzinfo) -> FrameRecord:
    parts = frame_parts(frame, now, local_tz)
    if parts is None:
        return frame_record(frame, now, local_tz)
    return FrameRecord(parts, True)  # type: ignore[arg-type]  (a CefFrames item, see there)


def frame_parts(frame: bytes, now: float, local_tz: tzinfo = UTC) -> FrameParts | None:
    """
    What L{carried_cef_record} is given for a frame the one-pass regex reads (L{FrameParts}); None
    for every other frame, which L{frame_record} reads.

    @raise CefError: the extension is malformed.
    """
    text = frame.decode("utf-8", "replace").rstrip("\r\n\x00")
    match = _FRAME.match(text)
    if match is None:
        return None
    (pri, stamp_text, year, month, day, hour, minute, second, fraction, offset, host, app_name, procid, msgid,
     sd, version, vendor, product, device_version, class_id, name, severity, extension) = match.groups()
    # the reference reads these (and raises for a severity of thousands of digits, as CefEvent's
    # severity band is read); they are rare enough not to be worth a second copy here
    priority = int(pri)
    if (priority > 191 or int(version) > 1 or len(severity) > 64
            or "\\" in text and "\\" in text[match.start(16):match.end(22)]):
        return None
    facility, syslog_severity = divmod(priority, 8)
    stamp = None if stamp_text == "-" else partial(rfc3339_millis, year, month, day, hour, minute, second, fraction,
                                                   offset)
    structured_data = {} if sd == "-" else parse_structured_data(sd, 0)[0]
    hostname = None if host == "-" else host
    syslog = header_fields(facility, syslog_severity, hostname, None if app_name == "-" else app_name,
                           None if procid == "-" else procid, None if msgid == "-" else msgid,
                           None if stamp is None else stamp_text,
                           "rfc5424", structured_data)
    header = (int(version), vendor, product, device_version, class_id, name, severity)
    return _new(FrameParts, (header, parse_extension(extension) if extension else {}, text, now, local_tz, syslog,
                             hostname is not None, stamp, stamp_text))
