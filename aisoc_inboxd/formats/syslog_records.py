"""
One syslog frame into the record a template maps: a CEF record when the message is CEF (for the
C{cef-syslog} template, the header's stamp and host as fallbacks), else a plain syslog record (for
the C{syslog} template). Pure. L{frame_record} is the reference reading; the syslog listeners decode
their frames with L{frame_records} and the one-pass L{aisoc_inboxd.formats.syslog_cef.read_frame},
which tests/test_one_pass_cef.py holds equal to it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any, Callable, Sequence

from aisoc_inboxd.formats.cef import HEADER as CEF_HEADER, CefError
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


def frame_records(frames: Sequence[bytes], now: float, local_tz: tzinfo = UTC,
                  read: Callable[[bytes, float, tzinfo], FrameRecord] = frame_record) -> Split:
    """
    The records of some frames, CEF apart from the rest; a frame whose CEF is malformed is counted
    and its problem named (L{cef_problem}), not kept.

    @param read: reads one frame: L{frame_record} (the reference) or a reader that gives the same
        records, such as the listeners' one-pass L{aisoc_inboxd.formats.syslog_cef.read_frame}.
    """
    cef: list[Record] = []
    rest: list[Record] = []
    problems: list[str] = []
    for frame in frames:
        try:
            parsed = read(frame, now, local_tz)
        except CefError as e:
            problems.append(cef_problem(frame, e))
            continue
        (cef if parsed.is_cef else rest).append(parsed.record)
    return Split(tuple(cef), tuple(rest), len(problems), tuple(problems))


def cef_problem(frame: bytes, error: CefError) -> str:
    """
    What is wrong with a frame's CEF, for its delivery record: the parser's reason and the column
    (1-based, in the frame as text) of the part it is about: the extension when the header was
    read, else the CEF header.
    """
    text = frame.decode("utf-8", "replace").rstrip("\r\n\x00")
    marker = _CEF_MARKER.search(text)
    if marker is None:
        return f"malformed CEF: {error}"
    header = CEF_HEADER.match(text, marker.start())
    if header is not None and int(header.group(1)) <= 1 and header.group(8) is not None:
        return f"malformed CEF: {error} (extension at column {header.start(8) + 1})"
    return f"malformed CEF: {error} (CEF header at column {marker.start() + 1})"
