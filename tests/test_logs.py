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

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, LogLevel, textFileLogObserver

from aisoc_inboxd.logs import LineObserver, LogOutput, RequestLogger, json_line


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
