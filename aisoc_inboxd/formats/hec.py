"""
Splunk HTTP Event Collector bodies, and the status replies Splunk answers them with.

The event endpoint takes one or more JSON envelopes, concatenated with or without whitespace
(C{{"event": "a"}{"event": "b"}}); as a leniency a top-level JSON array of envelopes is read too. An
envelope holds C{event} (required: a string, a number or an object) and optionally C{time} (epoch
seconds as a number or a numeric string, fractions allowed), C{host}, C{source}, C{sourcetype},
C{index} and C{fields} (an object). Each valid envelope becomes one record, the envelope as sent.

Decisions, each pinned by a test:

  - B{The events before the first bad one are accepted}, as Splunk and Vector do: the parse stops at
    the first bad envelope and L{HecBatch} carries both the good records and the rejection, whose
    C{invalid-event-number} is the 0-based index of the bad envelope.
  - B{Blank}: C{""}, C{{}} and C{null} are "Event field cannot be blank" (13); an array or a boolean
    is "Invalid data format" (6), like a C{time} that is not a non-negative number.
  - B{The raw endpoint} splits the body on LF (a trailing CR is dropped, blank lines are skipped);
    each line is one event whose metadata comes from the query string. A line that parses as CEF
    becomes a CEF record instead (for the cef-syslog template); one that does not stays text.
  - B{Bytes that are not UTF-8} are refused, never replaced: on the event endpoint the envelope
    holding the first one is "Invalid data format" (6) by its number, those before it accepted; on
    the raw endpoint the request is refused whole (6), numbering the event whose line holds it.
  - B{CEF in an envelope}: an C{event} string that parses as CEF (optionally behind a syslog
    header: syslog-ng's C{http()} destination and many forwarders send the line as the event) is
    the same CEF record as on the raw endpoint (L{cef_envelope}), the rest of the envelope under
    C{hec}. Both are read by L{aisoc_inboxd.formats.cef_records}, as every CEF intake's are.
"""
from __future__ import annotations

import json
import math
import re
from itertools import islice
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from aisoc_inboxd import fastjson
from aisoc_inboxd.formats.cef import CefError, cef_lines
from aisoc_inboxd.formats.cef_records import Split, read_cef, split_cef_lines
from aisoc_inboxd.formats.json_body import Record, TooManyEvents, check_event_count, utf8_prefix, within_event_limit


@dataclass(frozen=True)
class HecStatus:
    """
    One row of Splunk's HEC status table: the HTTP status, the C{code} and C{text} of the JSON body.
    """

    http_status: int
    code: int
    text: str


# Splunk's documented HEC status codes ("Troubleshoot HTTP Event Collector"); the texts are Splunk's
# byte for byte, since clients match on them.
SUCCESS = HecStatus(200, 0, "Success")
TOKEN_DISABLED = HecStatus(403, 1, "Token disabled")
TOKEN_REQUIRED = HecStatus(401, 2, "Token is required")
INVALID_AUTHORIZATION = HecStatus(401, 3, "Invalid authorization")
INVALID_TOKEN = HecStatus(403, 4, "Invalid token")
NO_DATA = HecStatus(400, 5, "No data")
INVALID_DATA_FORMAT = HecStatus(400, 6, "Invalid data format")
INTERNAL_ERROR = HecStatus(500, 8, "Internal server error")
SERVER_BUSY = HecStatus(503, 9, "Server is busy")
DATA_CHANNEL_MISSING = HecStatus(400, 10, "Data channel is missing")
INVALID_DATA_CHANNEL = HecStatus(400, 11, "Invalid data channel")
EVENT_FIELD_REQUIRED = HecStatus(400, 12, "Event field is required")
EVENT_FIELD_BLANK = HecStatus(400, 13, "Event field cannot be blank")
ACK_DISABLED = HecStatus(400, 14, "ACK is disabled")
QUERY_STRING_AUTH_DISABLED = HecStatus(400, 16, "Query string authorization is not enabled")
HEALTHY = HecStatus(200, 17, "HEC is healthy")
UNHEALTHY = HecStatus(503, 18, "HEC is unhealthy, queues are full")

#: the envelope keys Splunk reads as metadata, and the raw endpoint's query parameters
METADATA_KEYS = ("host", "source", "sourcetype", "index")


class HecError(ValueError):
    """
    Splunk rejects the body: C{status} says how, C{event_number} which envelope (0-based), if any.
    """

    def __init__(self, status: HecStatus, event_number: int | None = None) -> None:
        super().__init__(status.text if event_number is None else f"{status.text} (event {event_number})")
        self.status = status
        self.event_number = event_number


def reply_body(status: HecStatus, **extra: Any) -> dict[str, Any]:
    """
    Splunk's JSON reply: C{{"text": …, "code": N}} and C{ackId} or C{invalid-event-number}, in that order.
    """
    return {"text": status.text, "code": status.code, **extra}


def error_body(error: HecError) -> dict[str, Any]:
    if error.event_number is None:
        return reply_body(error.status)
    return reply_body(error.status, **{"invalid-event-number": error.event_number})


@dataclass(frozen=True)
class HecBatch:
    """
    The records of the envelopes before the first bad one, and why that one was rejected (if any).
    """

    records: tuple[Record, ...]
    rejection: HecError | None = None


def parse_event_body(body: bytes, max_events: int | None = None) -> HecBatch:
    """
    The envelopes of an event-endpoint body; C{HecError} (5) when it holds none at all,
    L{TooManyEvents<aisoc_inboxd.formats.json_body.TooManyEvents>} past C{max_events} of them.
    """
    text, invalid_at = utf8_prefix(body)
    text = text.removeprefix("\ufeff")
    if invalid_at is None:
        batch = concatenated_objects(text, max_events)
        if batch is not None:
            return batch
    return read_event_body(text, invalid_at, max_events)


def read_event_body(text: str, invalid_at: int | None, max_events: int | None = None) -> HecBatch:
    """
    L{parse_event_body} envelope by envelope, the reference its fast path is held to: C{text} is
    the body's UTF-8 prefix without a BOM, C{invalid_at} the offset of its first byte that is not
    UTF-8 (C{None}: none).
    """
    records: list[Record] = []
    position = _skip_space(text, 0)
    if position == len(text) and invalid_at is None:
        raise HecError(NO_DATA)
    while position < len(text):
        number = len(records)
        if max_events is not None and fastjson.array_holds_more_than(text, position, max_events - number):
            raise TooManyEvents(max_events)  # its first events read, the rest is not: not worth building
        try:
            document, end = fastjson.raw_decode(text, position)
        except json.JSONDecodeError:
            return HecBatch(tuple(records), HecError(INVALID_DATA_FORMAT, number))
        is_array = isinstance(document, list)
        check_event_count(len(records) + (len(document) if is_array else 1), max_events)
        for item in document if is_array else [document]:
            problem = envelope_problem(item)
            if problem is not None:
                return HecBatch(tuple(records), HecError(problem, len(records)))
            raw = json.dumps(item, ensure_ascii=False) if is_array else text[position:end]
            records.append(Record(item, raw))
        position = _skip_space(text, end)
    if invalid_at is not None:  # the bytes from the envelope holding it on are not UTF-8 text
        return HecBatch(tuple(records), HecError(INVALID_DATA_FORMAT, len(records)))
    if not records:
        raise HecError(NO_DATA)  # e.g. a lone []
    return HecBatch(tuple(records))


#: where one envelope of a body of concatenated objects may end and the next begin; it may also
#: match inside a string, which L{concatenated_objects} finds out
_BETWEEN_OBJECTS = re.compile(r"\}[ \t\r\n]*\{")
#: the cut of a compact body (no whitespace between its envelopes)
_ADJACENT = "}{"


def concatenated_objects(text: str, max_events: int | None) -> HecBatch | None:
    """
    The batch of a body of concatenated JSON objects, read in one go (L{fastjson.loads_each}), or
    C{None} for any other body, which L{read_event_body} then reads envelope by envelope. The body
    is cut wherever a C{}} and a C{{} meet across JSON whitespace only: when every piece is a JSON
    object, the pieces are the envelopes a parser reading from the start finds (each piece is a
    whole object, so the parser ends it where the piece ends); when a cut fell inside a string, a
    piece is no JSON text and L{read_event_body} reads the body.

    That holds for any cuts whose pieces are all objects, so a compact body (its first cut a bare
    C{}{}}) is first cut at each C{}{}} by C{str.split}, half the instructions of the regular
    expression's matches; only when a piece is then no object (whitespace between some envelopes,
    a C{}{}} in a string) is it cut by L{_BETWEEN_OBJECTS}, as a body with whitespace is at once.
    """
    body = text.strip(_JSON_SPACE)
    if body.startswith("["):
        return None  # an array, no object: read whole here it would be built and walked to no end
    first = _BETWEEN_OBJECTS.search(body)
    envelopes = None
    if first is not None and first.group() == _ADJACENT:
        pieces = _adjacent_pieces(body, max_events)
        if pieces is None:
            return None
        envelopes = _objects(pieces)
    if envelopes is None:
        pieces = _pieces_between(body, len(body) if first is None else first.start(), max_events)
        envelopes = None if pieces is None else _objects(pieces)
        if envelopes is None:
            return None
    records: list[Record] = []
    new = tuple.__new__  # Record without its Python-level __new__ (see L{Record})
    for envelope, piece in zip(envelopes, pieces):
        # the common envelope (a non-empty object or text event, a non-negative number of seconds
        # or no time, no fields) is fine without L{envelope_problem}'s two calls; any other is asked
        # (L{fastjson.loads_each} reads no integer past 64 bits: a body holding one goes to the
        # reference, L{read_event_body}, which refuses a time past a float's range)
        event, time = envelope.get("event"), envelope.get("time", 0)
        if not ((type(event) is dict or type(event) is str) and event
                and (type(time) is int and 0 <= time or type(time) is float and 0 <= time < math.inf)
                and "fields" not in envelope):
            problem = envelope_problem(envelope)
            if problem is not None:
                return HecBatch(tuple(records), HecError(problem, len(records)))
        records.append(new(Record, (envelope, piece)))
    return HecBatch(tuple(records))


def _objects(pieces: list[str]) -> list[dict[str, Any]] | None:
    """
    Each piece's object, or C{None} when one of them is no JSON object (by L{fastjson}'s rules).
    """
    envelopes = fastjson.loads_each(pieces)
    if envelopes is None or not all(type(envelope) is dict for envelope in envelopes):
        return None
    return envelopes


def _pieces_between(body: str, first: int, max_events: int | None) -> list[str] | None:
    """
    C{body} cut at each match of L{_BETWEEN_OBJECTS} (the first at or after C{first}, where the
    caller found it), the whitespace between pieces left out; C{None} past C{max_events} pieces.
    """
    matches = _BETWEEN_OBJECTS.finditer(body, first)
    cuts = [(match.start() + 1, match.end() - 1) for match in islice(matches, max_events)]
    if max_events is not None and len(cuts) >= max_events:
        return None
    ends, starts = [*(end for end, _ in cuts), len(body)], [0, *(start for _, start in cuts)]
    return [body[start:end] for start, end in zip(starts, ends)]


def _adjacent_pieces(body: str, max_events: int | None) -> list[str] | None:
    """
    C{body} cut at each C{}{}}, each piece given back its braces; C{None} past C{max_events}
    pieces, as L{_pieces_between} (every C{}{}} is one of its matches).
    """
    parts = body.split(_ADJACENT, -1 if max_events is None else max_events)
    if max_events is not None and len(parts) > max_events:
        return None
    last = len(parts) - 1
    return [f"{parts[0]}}}", *[f"{{{part}}}" for part in parts[1:last]], f"{{{parts[last]}"]


def envelope_problem(envelope: Any) -> HecStatus | None:
    """
    Why Splunk would refuse this envelope, or C{None} when it is fine.
    """
    if not isinstance(envelope, dict):
        return INVALID_DATA_FORMAT
    if "event" not in envelope:
        return EVENT_FIELD_REQUIRED
    event = envelope["event"]
    if event is None or event == "" or event == {}:
        return EVENT_FIELD_BLANK
    if isinstance(event, (bool, list)):
        return INVALID_DATA_FORMAT
    if "time" in envelope and not _is_epoch_seconds(envelope["time"]):
        return INVALID_DATA_FORMAT
    if "fields" in envelope and not isinstance(envelope["fields"], dict):
        return INVALID_DATA_FORMAT
    return None


def _is_epoch_seconds(value: Any) -> bool:
    """
    Whether C{value} is a time Splunk reads: a finite non-negative number, or a text of one. An
    integer past a float's range (JSON allows any digits) is not: it has no float to be read as.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    if not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an integer of more digits than a float holds
        return False


#: the whitespace JSON allows between values
_JSON_SPACE = " \t\r\n"


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in _JSON_SPACE:
        position += 1
    return position


def parse_raw_body(body: bytes, metadata: Mapping[str, str], parse_cef: bool, now: float,
                   max_events: int | None = None) -> Split:
    """
    One event per non-blank line, with C{metadata} (host, source, sourcetype, index) attached: CEF
    lines become CEF records when C{parse_cef} (C{now}, the receive time, dates stamps without a
    year), the rest text events (C{rest}). C{HecError} (5) when there is no line at all, (6) naming
    the event whose line holds a byte that is not UTF-8, L{TooManyEvents
    <aisoc_inboxd.formats.json_body.TooManyEvents>} past C{max_events} lines.
    """
    envelope = {key: metadata[key] for key in METADATA_KEYS if metadata.get(key)}
    decoded, invalid_at = utf8_prefix(body)
    if invalid_at is not None:  # the last line holds it: refused by its event number, nothing published
        raise HecError(INVALID_DATA_FORMAT, sum(1 for line in decoded.removeprefix("\ufeff").split("\n")[:-1]
                                                if line.strip()))
    lines = within_event_limit((line for _, line in cef_lines(decoded, max_events)), max_events)

    def text(line: str) -> Record:
        return Record({"event": line, **envelope}, line)

    if parse_cef:
        batch = split_cef_lines(lines, now, text, envelope)
    else:
        batch = Split(rest=tuple(text(line) for line in lines))
    if not batch.cef and not batch.rest:
        raise HecError(NO_DATA)
    return batch


def is_cef(record: Record) -> bool:
    """
    Whether a record is a CEF record (text and envelope records always carry C{event}, CEF ones never).
    """
    return "event" not in record.data


def split(records: Iterable[Record]) -> Split:
    """
    A request's records told apart: CEF records for the CEF template, the rest for the token's.
    """
    records = list(records)
    return Split(cef=tuple(r for r in records if is_cef(r)), rest=tuple(r for r in records if not is_cef(r)))


def cef_envelope(record: Record, now: float) -> Record | None:
    """
    An event-endpoint record whose C{event} is a CEF line, as the CEF record of that line with the
    rest of the envelope (C{host}, C{source}, C{sourcetype}, C{index}, C{time}, C{fields}) under
    C{hec} and the envelope as C{raw_data}; C{None} when the event is not a CEF line.
    """
    event = record.data.get("event")
    if not isinstance(event, str):
        return None
    envelope = {key: value for key, value in record.data.items() if key != "event"}
    try:
        return read_cef(event, now, record.raw, envelope)
    except CefError:
        return None
