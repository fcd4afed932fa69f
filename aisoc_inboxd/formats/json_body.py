"""
Decoding a webhook body into records: one JSON object, a JSON array of objects, or NDJSON.

Vendors are sloppy about framing, so the shape is decided by content, not by Content-Type. Errors
name the line (and column) so the sender can find what is wrong. JSON is read by L{fastjson}'s rules
(nesting, lone surrogates, numbers), so what decodes here is safe for every later stage.
"""
from __future__ import annotations

import json
from itertools import islice, repeat
from typing import Any, Iterable, Iterator, NamedTuple, TypeVar

from aisoc_inboxd.fastjson import array_holds_more_than, dumps_compact, loads, loads_each

_Event = TypeVar("_Event")


class BodyError(ValueError):
    """
    The body cannot be read as JSON records; the message says where and why.
    """


class TooManyEvents(ValueError):
    """
    The body holds more events than one request may carry (C{http.max_events_per_request}): found
    while counting, before any record is built, so a body of millions of tiny events costs a scan,
    not minutes of normalizing.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} events in one request")
        self.limit = limit


def check_event_count(count: int, limit: int | None) -> None:
    """
    Raise L{TooManyEvents} once C{count} events is past C{limit} (C{None}: no limit).
    """
    if limit is not None and count > limit:
        raise TooManyEvents(limit)


def within_event_limit(events: Iterable[_Event], limit: int | None) -> list[_Event]:
    """
    C{events} as a list, or L{TooManyEvents} past C{limit} of them, found having taken only one
    more than the limit (a body of millions of lines is not split whole to be refused).
    """
    taken = list(events if limit is None else islice(events, limit + 1))
    check_event_count(len(taken), limit)
    return taken


class Record(NamedTuple):
    """
    One decoded record and the exact text it came from (kept as the OCSF C{raw_data}). A named
    tuple: one is made per event, at half the cost of a frozen dataclass; the batch paths make it
    as C{tuple.__new__(Record, (data, raw))}, which is what its generated C{__new__} does, without
    that Python function's frame.
    """

    data: dict[str, Any]
    raw: str


def invalid_json(error: json.JSONDecodeError) -> str:
    """
    What is wrong with a JSON text and where, for a body error.
    """
    return f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"


def decode_text(body: bytes, what: str = "body") -> str:
    """
    C{body} as text (a UTF-8 BOM dropped); a L{BodyError} naming the offset of the first byte that
    is not UTF-8, so nothing the sender sent is silently replaced.
    """
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BodyError(f"{what} is not valid UTF-8 (byte {e.start})") from None


def utf8_prefix(body: bytes) -> tuple[str, int | None]:
    """
    The text of C{body} up to its first byte that is not UTF-8, and that byte's offset (C{None}
    when the whole body is UTF-8): for batches whose events before a bad byte are told apart.
    """
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return body[:e.start].decode("utf-8"), e.start


def decode_json_records(body: bytes, max_events: int | None = None) -> list[Record]:
    """
    The records of a body holding one JSON document (object or array of objects) or NDJSON;
    L{TooManyEvents} past C{max_events} of them.
    """
    text = decode_text(body)
    records = _ndjson_objects(text, max_events)
    return read_json_records(text, max_events) if records is None else records


def read_json_records(text: str, max_events: int | None = None) -> list[Record]:
    """
    L{decode_json_records} of a body decoded to C{text}, a whole document first, else line by line:
    the reference its NDJSON fast path is held to, and what names the error in a bad body.
    """
    stripped = text.strip()
    if not stripped:
        raise BodyError("empty body: expected a JSON object or NDJSON lines")
    if max_events is not None and array_holds_more_than(stripped, 0, max_events):
        raise TooManyEvents(max_events)  # its first events read, the rest is not: not worth building
    try:
        document = loads(stripped)
    except json.JSONDecodeError as whole:
        if not _first_line_is_object(stripped):
            raise BodyError(invalid_json(whole)) from None
        return _ndjson(text, max_events)
    if isinstance(document, dict):
        return [Record(document, stripped)]
    if isinstance(document, list):
        check_event_count(len(document), max_events)
        records = []
        for index, item in enumerate(document):
            if not isinstance(item, dict):
                raise BodyError(f"array item {index}: expected a JSON object, got {_kind(item)}")
            records.append(Record(item, dumps_compact(item).decode("utf-8")))
        if not records:
            raise BodyError("empty JSON array: no records")
        return records
    raise BodyError(f"expected a JSON object, an array of objects or NDJSON, got {_kind(document)}")


def _first_line_is_object(text: str) -> bool:
    first = text.split("\n", 1)[0].strip()
    try:
        return isinstance(loads(first), dict)
    except json.JSONDecodeError:
        return False


def _ndjson_objects(text: str, max_events: int | None) -> list[Record] | None:
    """
    The records of an NDJSON body of two or more lines, all of them JSON objects, read in one go
    (L{loads_each}), or L{TooManyEvents} when its first C{max_events} lines are such and more
    follow; C{None} for any other body, which L{read_json_records} then reads and, when it is bad,
    names what is wrong. Two or more objects, one per line, are never one JSON document, so both
    read such a body alike; the lines past the limit are not stripped, as the reference reads none.
    """
    non_blank = filter(None, map(str.strip, lines_of(text, max_events)))  # no generator frame per line
    lines = list(non_blank if max_events is None else islice(non_blank, max_events + 1))
    if len(lines) < 2:
        return None
    past_limit = max_events is not None and len(lines) > max_events
    if past_limit:
        del lines[max_events:]
    items = loads_each(lines)
    if items is None or not all(type(item) is dict for item in items):
        return None
    if past_limit:
        raise TooManyEvents(max_events)
    return list(map(tuple.__new__, repeat(Record), zip(items, lines)))  # no Python frame per record


def lines_of(text: str, max_events: int | None) -> Iterable[str]:
    """
    C{text.split("\\n")}; one line at a time for a body of more lines than C{max_events}, whose
    events are read only up to one past the limit (splitting millions of lines first would cost
    more than refusing them). Which of the two is known from a split of at most C{max_events}
    cuts, not from a count of the body's newlines first.
    """
    if max_events is None:
        return text.split("\n")
    lines = text.split("\n", max_events)
    return lines if len(lines) <= max_events else _each_line(text)


def _each_line(text: str) -> Iterator[str]:
    start = 0
    while (end := text.find("\n", start)) >= 0:
        yield text[start:end]
        start = end + 1
    yield text[start:]


def _ndjson(text: str, max_events: int | None) -> list[Record]:
    records: list[Record] = []
    for number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.strip()
        if not line:
            continue
        check_event_count(len(records) + 1, max_events)
        try:
            item = loads(line)
        except json.JSONDecodeError as e:
            # the same words as for a whole document, the column counted in the line as sent
            column = e.colno + len(raw_line) - len(raw_line.lstrip())
            raise BodyError(f"invalid JSON at line {number} column {column}: {e.msg}") from None
        if not isinstance(item, dict):
            raise BodyError(f"line {number}: expected a JSON object, got {_kind(item)}")
        records.append(Record(item, line))
    return records


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")
