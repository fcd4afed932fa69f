"""
One syslog frame into the record a template maps: a CEF record when the message is CEF (for the
C{cef-syslog} template, the header's stamp and host as fallbacks), else a plain syslog record (for
the C{syslog} template). Pure: the syslog listeners decode their frames with L{frame_records}.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any, Sequence

from aisoc_inboxd.formats.cef import CefError
from aisoc_inboxd.formats.cef_records import Split, read_cef, syslog_fields
from aisoc_inboxd.formats.json_body import Record
from aisoc_inboxd.formats.syslog import parse_syslog

#: a message is CEF when it holds a CEF version marker (anywhere: relays put tags before it)
_CEF_MARKER = re.compile(r"CEF:\d+\|")


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """
    A frame's record, and whether it is CEF (which template maps it).
    """

    record: Record
    is_cef: bool


def frame_record(frame: bytes, now: float, local_tz: tzinfo = UTC) -> FrameRecord:
    """
    The record of one frame; C{raw_data} is the whole frame as text.

    @raise CefError: the message is CEF but malformed (the caller drops and counts it).
    """
    # a trailer inside a datagram or a counted frame: SysLogHandler's NUL over UDP, rsyslog's LF
    text = frame.decode("utf-8", "replace").rstrip("\r\n\x00")
    message = parse_syslog(text, now, local_tz)
    if _CEF_MARKER.search(message.message):
        return FrameRecord(read_cef(message.message, now, text, syslog=message, local_tz=local_tz), True)
    data: dict[str, Any] = {"syslog": syslog_fields(message)}
    if message.message:
        data["message"] = message.message
    if message.timestamp is not None:
        data["time"], data["original_time"] = message.timestamp, message.timestamp_text
    return FrameRecord(Record(data, text), False)


def frame_records(frames: Sequence[bytes], now: float, local_tz: tzinfo = UTC) -> Split:
    """
    The records of some frames, CEF apart from the rest; a frame whose CEF is malformed is counted,
    not kept.
    """
    cef: list[Record] = []
    rest: list[Record] = []
    malformed = 0
    for frame in frames:
        try:
            parsed = frame_record(frame, now, local_tz)
        except CefError:
            malformed += 1
            continue
        (cef if parsed.is_cef else rest).append(parsed.record)
    return Split(tuple(cef), tuple(rest), malformed)
