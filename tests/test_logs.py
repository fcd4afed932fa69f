"""
The daemon's log lines: in JSON one clean object per event, whatever the event carries; in text the
line Twisted writes.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import threading

import enum
import math
import time
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, LogLevel, LogPublisher, formatEvent, textFileLogObserver
from twisted.python.failure import Failure

from aisoc_inboxd import logs
from aisoc_inboxd.fastjson import dumps_compact
from aisoc_inboxd.logs import (_LEGACY_KEYS, LineObserver, LogOutput, RequestLogger, _plain, _utc_second, json_line,
                               message)


def test_a_json_line_is_the_message_and_the_plain_structured_keys() -> None:
    """Time, level, namespace, the formatted message, the keys a reader can use, a traceback for a
    failure; no record separator, no Twisted internals, nothing unserialisable."""
    events: list[dict] = []
    log = Logger(namespace="aisoc_inboxd.test", observer=events.append)
    log.info("webhook {status} tenant={tenant}", status=200, tenant="acme", client=("127.0.0.1", 5), obj=object())
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("cannot flush {path}", path="/x", level=LogLevel.error)
    lines = [json_line(event) for event in events]
    assert all(line.endswith("}\n") and line.count("\n") == 1 and "\x1e" not in line for line in lines)
    request, failure = (json.loads(line) for line in lines)
    assert request.pop("time").endswith("Z")
    assert request == {"level": "info", "namespace": "aisoc_inboxd.test", "message": "webhook 200 tenant=acme",
                       "status": 200, "tenant": "acme", "client": ["127.0.0.1", 5]}
    assert (failure["level"], failure["message"], failure["path"]) == ("error", "cannot flush /x", "/x")
    assert "ZeroDivisionError" in failure["traceback"]


def test_a_text_line_is_the_line_twisted_writes() -> None:
    """The text observer writes what Twisted's textFileLogObserver writes for every kind of event:
    format specs and conversions, a {call()}, a line break, a missing key, an empty message, a
    system, no time, a failure with its traceback."""
    events: list[dict] = []
    log = Logger(namespace="aisoc_inboxd.test", observer=events.append)
    log.info("webhook {status} tenant={tenant} ms={ms:.1f} r={r!r} first={l[0]}", status=200, tenant="acme",
             ms=1.25, r="x", l=[5])
    log.info("two\nlines {x}", x="and\na third")
    log.info("call {f()}", f=lambda: "called")
    log.info("missing {nope}")
    log.warn("")
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("cannot flush {path}", path="/x")
    events.append({"log_format": "from a worker", "log_level": LogLevel.info, "log_system": "worker-1",
                   "log_time": 1.5})
    events.append({"log_format": "no time", "log_level": LogLevel.error})
    theirs = io.StringIO()
    observer = textFileLogObserver(theirs)
    for event in events:
        observer(event)
    ours = io.StringIO()
    line_observer = LineObserver(LogOutput(ours, "text", "debug"))
    for event in events:
        line_observer(event)
    assert ours.getvalue() == theirs.getvalue()


def test_lines_below_the_level_or_without_one_are_dropped() -> None:
    """Events below the least level, and events without a level, are not written."""
    out = io.StringIO()
    observer = LineObserver(LogOutput(out, "json", "warn"))
    log = Logger(namespace="aisoc_inboxd.test", observer=observer)
    log.info("quiet")
    log.warn("loud {n}", n=1)
    observer({"log_format": "no level", "log_time": 1.0})
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == ["loud 1"]


def test_lines_are_flushed_once_per_reactor_turn_in_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """While a reactor runs, lines are held until the end of the turn, then all reach the file in
    the order logged; a line at error or above is written before its call returns, with those
    before it; a line logged from another thread is written, never scheduled from that thread."""
    path = tmp_path / "log"
    reactor = MemoryReactorClock()
    with path.open("w") as out:
        output = LogOutput(out, "text", "info")
        output.flush_per_turn(reactor)
        log = Logger(namespace="aisoc_inboxd.test", observer=LineObserver(output))
        for n in range(5):
            log.info("line {n}", n=n)
        assert path.read_text() == ""
        reactor.advance(0)
        output.wait_written()
        assert [line.split("] ")[1] for line in path.read_text().splitlines()] == [f"line {n}" for n in range(5)]
        log.info("before the error")
        log.error("the error")
        assert path.read_text().splitlines()[-2:][0].endswith("before the error")
        assert path.read_text().endswith("the error\n")
        reactor.advance(0)
        from_thread = threading.Thread(target=log.info, args=("from another thread",))
        from_thread.start()
        from_thread.join()
        output.wait_written()
        assert path.read_text().endswith("from another thread\n") and not reactor.getDelayedCalls()


class SlowOut(io.StringIO):
    """A log file whose writes wait until the test lets them through, noting the thread of each."""

    def __init__(self) -> None:
        super().__init__()
        self.go_on = threading.Event()
        self.writers: set[str] = set()

    def write(self, text: str) -> int:
        self.writers.add(threading.current_thread().name)
        self.go_on.wait(timeout=10)
        return super().write(text)


def test_a_write_waiting_on_the_disk_does_not_hold_the_reactor() -> None:
    """While the reactor runs, lines are written by a thread of their own: the reactor's turn ends
    while their write waits, and they are written in order once it goes on."""
    out, reactor = SlowOut(), MemoryReactorClock()
    output = LogOutput(out, "text", "info")
    output.flush_per_turn(reactor)
    log = Logger(namespace="aisoc_inboxd.test", observer=LineObserver(output))
    for turn in range(3):
        log.info("line {n}", n=turn)
        reactor.advance(0)
    assert not out.go_on.is_set() and threading.current_thread().name not in out.writers
    out.go_on.set()
    output.flush_each_line()
    assert [line.split("] ")[1] for line in out.getvalue().splitlines()] == [f"line {n}" for n in range(3)]
    log.info("after the reactor")
    assert out.getvalue().endswith("after the reactor\n") and threading.current_thread().name in out.writers


def test_buffered_lines_are_all_written_at_shutdown_in_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Lines logged in the reactor's last turns, and while and after it shuts down, all reach the
    log in order, without the interpreter's own flush at exit (the process leaves by os._exit)."""
    script = textwrap.dedent("""
        import os
        import sys
        from twisted.internet import reactor
        from twisted.logger import Logger
        from aisoc_inboxd import logs

        logs.begin(sys.stdout, "json", "info").flush_per_turn(reactor)
        log = Logger(namespace="test")

        def many():
            for n in range(3000):
                log.info("line {n}", n=n)
            reactor.stop()
        reactor.addSystemEventTrigger("during", "shutdown", lambda: log.info("line 3000"))
        reactor.callWhenRunning(many)
        reactor.run()
        log.info("line 3001")
        os._exit(0)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, check=True)
    messages = [json.loads(line)["message"] for line in done.stdout.decode().splitlines()]
    assert [m for m in messages if m.startswith("line ")] == [f"line {n}" for n in range(3002)]


@pytest.mark.parametrize("level", list(LogLevel.iterconstants()), ids=lambda level: level.name)
def test_the_request_logger_emits_twisteds_event(level: LogLevel) -> None:
    """RequestLogger emits the event Twisted's Logger emits, key for key (the time and the logger
    object aside), at every level; an invalid level is refused as Twisted refuses it."""
    class Route:
        twisteds = Logger()
        ours = RequestLogger()
    route = Route()
    theirs: list[dict] = []
    mine: list[dict] = []
    Logger(route.twisteds.namespace, route, observer=theirs.append).emit(level, "{a} {b}", a=1, b="x")
    RequestLogger(route.ours.namespace, route, observer=mine.append).emit(level, "{a} {b}", a=1, b="x")
    [theirs_event], [mine_event] = theirs, mine
    assert route.ours.namespace == route.twisteds.namespace and isinstance(route.ours, RequestLogger)
    assert type(mine_event["log_time"]) is float
    for event in (theirs_event, mine_event):
        del event["log_time"], event["log_logger"]
    assert mine_event == theirs_event
    refused: list[dict] = []
    RequestLogger(observer=refused.append).emit("not a level", "x")  # type: ignore[arg-type]
    [failure] = refused
    assert failure["log_level"] == LogLevel.critical and "invalid log level" in failure["log_format"]


# -- the message and the JSON line against their plain references -----------------------------------

def reference_message(event: dict[str, Any]) -> str:
    """
    L{message} as it was written first: the format parsed on every line by C{format_map}.
    """
    format = event.get("log_format")
    if type(format) is str and "log_flattened" not in event:
        try:
            return format.format_map(event)
        except Exception:
            pass
    return formatEvent(event)


def reference_json_line(event: dict[str, Any]) -> str:
    """
    L{json_line} as it was written first: every key judged and every value looked into per line.
    """
    stamp = event.get("log_time", time.time())
    record: dict[str, Any] = {
        "time": f"{_utc_second(math.floor(stamp))}.{int(stamp % 1 * 1000):03d}Z",
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", "-"),
        "message": reference_message(event),
    }
    if "log_system" in event:
        record["system"] = event["log_system"]
    for key, value in event.items():
        if not key.startswith("log_") and key not in _LEGACY_KEYS and key not in record and _plain(value):
            record[key] = value
    if "log_failure" in event:
        record["traceback"] = event["log_failure"].getTraceback()
    return dumps_compact(record).decode("utf-8") + "\n"


class _Colour(enum.IntEnum):
    red = 1


class _Shouting(str):
    def __format__(self, spec: str) -> str:
        return self.upper()


#: event keys: ours, Twisted's, the legacy log's, the JSON line's own, odd ones
_KEYS = st.sampled_from(["route", "status", "tenant", "a", "b", "é", "log_system", "log_flattened", "log_x",
                         "system", "message", "time", "level", "namespace", "traceback", "format", "isError",
                         "why", "printed", "failure", "class", "0"]) | st.text(max_size=6)
_SCALAR_VALUES = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
                  | st.floats(allow_nan=False) | st.text(max_size=8) | st.just(_Colour.red)
                  | st.builds(_Shouting, st.text(max_size=4)))
_VALUES = st.recursive(_SCALAR_VALUES | st.builds(object) | st.just(b"bytes"),
                       lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
                       | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3), max_leaves=6)
#: format strings: literal text, escaped braces, bare fields and every other kind of field
_FIELDS = st.sampled_from(["a", "b", "route", "status", "é", "class", "missing", "a.real", "a[0]", "a!r", "a!s",
                           "a:>5", "a:{b}", "", "0", "f()", "log_x"])
_FORMATS = st.lists(st.text(alphabet="ab '\"\\\n{}é", max_size=4) | st.sampled_from(["{{", "}}"])
                    | _FIELDS.map(lambda field: "{" + field + "}"), max_size=6).map("".join)


@st.composite
def _events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = draw(st.dictionaries(_KEYS, _VALUES, max_size=6))
    event.update(draw(st.fixed_dictionaries({}, optional={name: _VALUES for name in ["a", "b", "route", "é", "class"]})))
    event.update(log_format=draw(_FORMATS | st.none()), log_time=draw(st.floats(0, 4e9)),
                 log_namespace="aisoc_inboxd.test", log_level=draw(st.sampled_from(list(LogLevel.iterconstants()))))
    if draw(st.booleans()):
        event["f"] = lambda: "called"
    if draw(st.booleans()):
        event["log_failure"] = Failure(ZeroDivisionError("x"))
    return event


@settings(max_examples=1000)
@given(_events())
def test_message_and_json_line_are_the_references(event: dict[str, Any]) -> None:
    """The message made by a format's compiled f-string, and the JSON line whose keys are judged once
    per key, are byte for byte what the plain references make: every kind of field, escaped braces,
    quotes and backslashes, missing keys, values of every type (subclasses with a format of their
    own, values not plain JSON), keys Twisted's, the legacy log's or the line's own, a failure."""
    assert _outcome(message, event) == _outcome(reference_message, event)
    assert _outcome(json_line, event) == _outcome(reference_json_line, event)


def _outcome(line: Callable[[dict[str, Any]], str], event: dict[str, Any]) -> tuple[str, object]:
    """
    What C{line} makes of C{event}, or the type of what it raised (a value JSON cannot hold).
    """
    try:
        return "made", line(event)
    except Exception as e:
        return "raised", type(e)


def test_the_request_line_is_the_references() -> None:
    """The access-log line of a real request, in both formats, is what the references make."""
    events: list[dict[str, Any]] = []
    RequestLogger(namespace="aisoc_inboxd.web.webhook.WebhookRoute", observer=events.append).emit(
        LogLevel.info, "{route} {status} {outcome} template={template} tenant={tenant} token={token} "
        "events={events} bytes={bytes} duration_ms={duration_ms}", route="webhook", status=200, outcome="ok",
        template="generic-json", tenant="acme", token="86149f9d", events=1, bytes=71, duration_ms=0.7,
        client="192.0.2.7")
    [event] = events
    assert message(event) == reference_message(event) == ("webhook 200 ok template=generic-json tenant=acme "
                                                          "token=86149f9d events=1 bytes=71 duration_ms=0.7")
    assert json_line(event) == reference_json_line(event)


# -- a request line written without its event, against the event's line ----------------------------

#: the access-log line's format (L{aisoc_inboxd.web.routes.JsonRoute._log_request})
_REQUEST_FORMAT = ("{route} {status} {outcome} template={template} tenant={tenant} token={token} "
                   "events={events} bytes={bytes} duration_ms={duration_ms}")
_FIELD_NAMES = st.sampled_from(["route", "status", "outcome", "template", "tenant", "token", "events", "bytes",
                                "duration_ms", "client", "a", "b", "é", "log_system", "log_failure", "log_time",
                                "log_x", "system", "message"])


def _lines_of(format: str, fields: dict[str, Any], level: str, system: str | None, alone: bool,
              stamp: float) -> tuple[str, bool]:
    """
    The text C{RequestLogger.line} writes to a log begun on a publisher of its own, whether that log's
    observer is the publisher's only one (C{alone}: the line may go straight) or not; and whether it
    may go straight.
    """
    out = io.StringIO()
    publisher = LogPublisher()
    observer = LineObserver(LogOutput(out, "text", level, system))
    publisher.addObserver(observer)
    if not alone:
        publisher.addObserver(lambda event: None)
    before, now = logs._begun, time.time
    logs.write_lines_directly(publisher, observer)
    time.time = lambda: stamp  # type: ignore[assignment]
    try:
        direct = logs.direct_text_output(publisher) is not None
        RequestLogger(namespace="aisoc_inboxd.web.webhook.WebhookRoute", observer=publisher).line(format, **fields)
    finally:
        logs._begun, time.time = before, now  # type: ignore[assignment]
    return out.getvalue(), direct


@settings(max_examples=1000)
@given(format=st.just(_REQUEST_FORMAT) | _FORMATS, fields=st.dictionaries(_FIELD_NAMES, _VALUES, max_size=12),
       level=st.sampled_from(["debug", "info", "warn"]), system=st.none() | st.sampled_from(["worker-1", ""]),
       stamp=st.floats(0, 4e9))
def test_a_request_line_written_straight_is_the_events_line(format: str, fields: dict[str, Any], level: str,
                                                            system: str | None, stamp: float) -> None:
    """A request line the text log's observer alone would see is written without its event, and is
    byte for byte the line the event makes through Twisted's publisher and the observer: every kind
    of field and value, fields named like Twisted's event keys, a worker's system, info not logged."""
    straight, direct = _lines_of(format, fields, level, system, True, stamp)
    evented, through_event = _lines_of(format, fields, level, system, False, stamp)
    assert straight == evented
    assert direct == (level != "warn") and not through_event


def test_the_request_line_goes_straight_only_to_the_text_log_alone() -> None:
    """Straight to the log begun, with the real request line's fields; as an event once another
    observer is added (a test's capture) or the log is JSON."""
    fields = dict(route="webhook", status=200, outcome="ok", template="generic-json", tenant="acme",
                  token="86149f9d", events=1, bytes=71, duration_ms=0.7, client="192.0.2.7")
    line, direct = _lines_of(_REQUEST_FORMAT, fields, "info", None, True, 1.5e9)
    assert direct and line.endswith(" [aisoc_inboxd.web.webhook.WebhookRoute#info] webhook 200 ok "
                                    "template=generic-json tenant=acme token=86149f9d events=1 bytes=71 "
                                    "duration_ms=0.7\n")
    publisher = LogPublisher()
    observer = LineObserver(LogOutput(io.StringIO(), "json", "info"))
    publisher.addObserver(observer)
    before = logs._begun
    logs.write_lines_directly(publisher, observer)
    try:
        assert logs.direct_text_output(publisher) is None
        assert logs.direct_text_output(LogPublisher()) is None
    finally:
        logs._begun = before
