"""
The daemon's log output: readable text lines by default, or one JSON object per line for log
shippers (journald, Vector, Fluent Bit).

Twisted's own JSON observer writes its serialisation format (a record separator before each event,
C{"unpersistable"} stand-ins for objects, the format string rather than the message); the JSON here
is what a reader wants instead: the time, level, namespace and formatted message, plus the event's
structured keys that are plain JSON values.

Every request logs a line, so the observer is on the per-request path: it formats the text line
Twisted's C{textFileLogObserver} writes, byte for byte, without its general machinery (a filter
predicate per namespace, a L{string.Formatter} with call wrappers, a timezone computed per event),
and serialises JSON with orjson. Anything unusual (a failure's traceback, a format string with
C{{f()}} calls, one that does not format) goes through Twisted's own formatting.

While the reactor runs (L{LogOutput.flush_per_turn}), lines are flushed once per reactor turn
rather than one write per line: a turn that serves many requests writes their lines at once, in
order, and the write is made by a thread of its own (L{LineWriter}), so a write that waits on a busy
disk or a slow pipe holds that thread, not the reactor. A line at C{error} or above is written
before its call returns, with those before it. At shutdown every line held is written before the
reactor stops. A process killed outright loses at most the lines of its last turns, never events.
"""
from __future__ import annotations

import functools
import math
import queue
import string
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import (LogLevel, Logger, LogPublisher, formatEvent, formatEventAsClassicLogText, formatTime,
                            globalLogBeginner, globalLogPublisher)
from twisted.python.threadable import isInIOThread

from aisoc_inboxd.fastjson import dumps_compact

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warn", "error", "critical")

#: keys of the legacy twisted.python.log event dict, which the message already carries
_LEGACY_KEYS = frozenset({"message", "isError", "system", "time", "format", "why", "failure", "printed"})


def message(event: dict[str, Any]) -> str:
    """
    The event's formatted message, as L{twisted.logger.formatEvent} formats it.
    """
    format = event.get("log_format")
    if type(format) is str and "log_flattened" not in event:
        try:
            formatter = _formatter(format)
            return formatter(event) if formatter is not None else format.format_map(event)
        except Exception:  # a {call()}, a positional field, a missing key: Twisted says what failed
            pass
    return formatEvent(event)


@functools.lru_cache(maxsize=256)
def _formatter(format: str) -> Callable[[dict[str, Any]], str] | None:
    """
    C{format.format_map} as an f-string of the event's values, made once per format string (a
    daemon logs a few dozen): half the cost of parsing the format on every line. Only for a format
    whose fields are all bare names (no attribute, index, conversion or spec; each value goes
    through C{format(value, "")} as C{format_map} does); C{None} for any other, and for one that
    does not parse.
    """
    try:
        parsed = list(string.Formatter().parse(format))
    except ValueError:
        return None
    template, names = [], {}
    for literal, name, spec, conversion in parsed:
        template.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion is not None:
            return None
        names.setdefault(name, f"_{len(names)}")
        template.append(f"{{event[{names[name]}]}}")
    # the names are globals of the lambda, so no quote or backslash is ever inside an expression
    return eval("lambda event: f" + repr("".join(template)), {slot: name for name, slot in names.items()})


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    """
    A whole second in UTC, ISO 8601: computed once for every line of that second.
    """
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def json_line(event: dict[str, Any]) -> str:
    """
    One event as one line of JSON (with its newline).
    """
    stamp = event.get("log_time", time.time())
    record: dict[str, Any] = {
        "time": f"{_utc_second(math.floor(stamp))}.{int(stamp % 1 * 1000):03d}Z",
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", "-"),
        "message": message(event),
    }
    if "log_system" in event:
        record["system"] = event["log_system"]
    for key, value in event.items():
        if _field_key(key) and key not in record and (type(value) in _SCALARS or _plain(value)):
            record[key] = value
    if "log_failure" in event:
        record["traceback"] = event["log_failure"].getTraceback()
    return dumps_compact(record).decode("utf-8") + "\n"


@functools.lru_cache(maxsize=1024)
def _field_key(key: str) -> bool:
    """
    Whether an event's key may be one of its JSON line's own fields: not Twisted's (C{log_…}) nor
    the legacy log's. Decided once per key (every line of a kind repeats the same few).
    """
    return not key.startswith("log_") and key not in _LEGACY_KEYS


#: values written as they are, without a call to L{_plain}
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


#: L{twisted.logger.formatTime} of a whole second (local time, RFC 3339, as C{textFileLogObserver}
#: writes it), computed once per second rather than per line
_local_second = functools.lru_cache(maxsize=4)(formatTime)


def _local_time(stamp: float | None) -> str:
    return "-" if stamp is None else _local_second(math.floor(stamp))


def text_line(event: dict[str, Any]) -> str | None:
    """
    An event as Twisted's C{formatEventAsClassicLogText} formats it: C{"{time} [{system}]
    {message}\n"}, a message's line breaks followed by a tab.
    """
    if "log_failure" in event:  # rare: Twisted's own way, traceback and all
        return formatEventAsClassicLogText(event, _local_time)
    text = message(event)
    if not text:
        return None
    system = event.get("log_system")
    if system is None:
        level = event.get("log_level")
        system = f"{event.get('log_namespace', '-')}#{level.name if level is not None else '-'}"
    return _classic_line(event.get("log_time"), system, text)


def _classic_line(stamp: float | None, system: str, text: str) -> str:
    """
    C{"{time} [{system}] {text}\n"}, C{text}'s line breaks followed by a tab (L{text_line}).
    """
    return f"{_local_time(stamp)} [{system}] {text}".replace("\n", "\n\t") + "\n"


FORMATTERS: dict[str, Callable[[dict[str, Any]], str | None]] = {"text": text_line, "json": json_line}

_LEVELS = frozenset(LogLevel.iterconstants())


class RequestLogger(Logger):
    """
    Twisted's L{Logger}, for a line per request: it emits the same event, but checks the level
    against a set where Twisted's builds the list of every L{LogLevel} per event. An invalid level
    goes to Twisted's, which logs the failure.
    """

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if level not in _LEVELS:
            super().emit(level, format, **kwargs)
            return
        kwargs.update(log_logger=self, log_level=level, log_namespace=self.namespace, log_source=self.source,
                      log_format=format, log_time=time.time())
        if "log_trace" in kwargs:
            kwargs["log_trace"].append((self, self.observer))  # type: ignore[attr-defined]
        self.observer(kwargs)

    def line(self, format: str, /, **fields: object) -> None:
        """
        L{emit} at C{info} of C{format} and C{fields}; or, when the one who would see the event is
        the daemon's text log alone (L{direct_text_output}), the line it would write from it, written
        there straight: the event, Twisted's publisher and the observer's reading of the event are
        most of a request line's cost. A format or fields the event's line would read otherwise (a
        field named like Twisted's own, C{log_…}; one the format cannot take) go the event's way.
        """
        output = direct_text_output(self.observer)
        formatter = _formatter(format) if output is not None and _without_log_keys(tuple(fields)) else None
        if formatter is None:
            self.emit(LogLevel.info, format, **fields)
            return
        try:
            text = formatter(fields)
        except Exception:  # a field missing: Twisted's formatting says so, as it does for the event
            self.emit(LogLevel.info, format, **fields)
            return
        if text:
            system = output.system if output.system is not None else f"{self.namespace}#info"  # type: ignore[union-attr]
            output.write_through(_classic_line(time.time(), system, text))  # type: ignore[union-attr]


@functools.lru_cache(maxsize=256)
def _without_log_keys(keys: tuple[str, ...]) -> bool:
    """
    Whether none of C{keys} is one of Twisted's event keys (C{log_…}), which the event's line may
    read (C{log_system}, C{log_failure}) or its publishing replaces (C{log_time}).
    """
    return not any(key.startswith("log_") for key in keys)


class LineWriter:
    """
    Writes the text it is given to C{out}, in the order given, from a thread of its own; each batch
    of what is waiting is written in one write and flushed.
    """

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        #: text to write; an Event to set once what came before it is written; None to stop
        self._queue: queue.SimpleQueue[str | threading.Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def write(self, text: str) -> None:
        """
        Queue C{text} (from any thread).
        """
        self._queue.put(text)

    def wait(self) -> None:
        """
        Return once everything queued before this call is written.
        """
        written = threading.Event()
        self._queue.put(written)
        written.wait()

    def stop(self) -> None:
        """
        Write everything queued, then end the thread; what another thread queues meanwhile is written
        here.
        """
        self._queue.put(None)
        self._thread.join()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, str):
                self._write([item])
            elif item is not None:
                item.set()

    def _run(self) -> None:
        while True:
            batch, waiting, stopping = [], [], False
            item = self._queue.get()
            while True:
                if item is None:
                    stopping = True
                    break
                if isinstance(item, str):
                    batch.append(item)
                else:
                    waiting.append(item)
                if self._queue.empty():  # this thread alone takes from the queue: not empty stays so
                    break
                item = self._queue.get_nowait()
            self._write(batch)
            for written in waiting:
                written.set()
            if stopping:
                return

    def _write(self, batch: list[str]) -> None:
        try:
            if batch:
                self._out.write("".join(batch))
            self._out.flush()
        except (OSError, ValueError):  # stdout closed or gone: nowhere to say so, and the daemon goes on
            pass


@dataclass
class LogOutput:
    """
    The log being written: its file, format and least level. Worker processes write their lines in
    this format, and the daemon writes them through (L{write_through}).
    """

    out: IO[str]
    format: str
    level: str
    #: the C{log_system} of every line (a worker's C{worker-N}), else each event's own
    system: str | None = None
    #: while the reactor runs, the clock that hands the lines over at the end of the turn, and the
    #: thread that writes them (else each line is written and flushed as it comes)
    _clock: IReactorTime | None = field(default=None, init=False, repr=False)
    _writer: LineWriter | None = field(default=None, init=False, repr=False)
    #: the lines of this turn not written yet (held here, not in C{out}'s buffer, which
    #: C{PYTHONUNBUFFERED} turns off)
    _pending: list[str] = field(default_factory=list, init=False, repr=False)

    def write_through(self, lines: str, urgent: bool = False) -> None:
        """
        Write whole lines, already formatted, as they are: handed to the writer thread at the end
        of this reactor turn, or now when C{urgent} (and written before this returns), or from
        another thread (the turn's lines belong to the reactor's thread alone, and C{callLater} is
        not thread-safe); written at once when no reactor runs.
        """
        writer = self._writer
        if writer is None:
            self.out.write(lines)
            self.out.flush()
        elif not isInIOThread():
            writer.write(lines)
        else:
            self._pending.append(lines)
            if urgent:
                self.flush()
                self.wait_written()
            elif len(self._pending) == 1:
                self._clock.callLater(0, self.flush)  # type: ignore[union-attr]

    def flush(self) -> None:
        """
        Hand the lines held, in order, to the writer thread as one write.
        """
        pending, self._pending = self._pending, []
        if pending:
            self._writer.write("".join(pending))  # type: ignore[union-attr]

    def wait_written(self) -> None:
        """
        Return once every line handed to the writer thread is written.
        """
        if self._writer is not None:
            self._writer.wait()

    def flush_per_turn(self, reactor: IReactorCore) -> None:
        """
        Write once per turn of C{reactor}, from a thread of its own, from now on until it shuts
        down; then each line as it is logged again (whatever is logged during and after the
        shutdown), once every line before is written.
        """
        self._clock = reactor  # type: ignore[assignment]
        self._writer = LineWriter(self.out)
        reactor.addSystemEventTrigger("after", "shutdown", self.flush_each_line)

    def flush_each_line(self) -> None:
        writer = self._writer
        if writer is None:
            return
        self.flush()
        writer.stop()
        self._writer = self._clock = None


class LineObserver:
    """
    Writes each event at C{level} or above as one line (C{format}); an event without a level is
    dropped (as Twisted's level filter drops it).
    """

    def __init__(self, output: LogOutput) -> None:
        self._output = output
        self._system = output.system
        self._format_line = FORMATTERS[output.format]
        least = LogLevel.levelWithName(output.level)
        self._levels = frozenset(level for level in LogLevel.iterconstants() if level >= least)
        #: written before the call returns (a set: a level's C{>=} is a Python call)
        self._urgent = frozenset(level for level in LogLevel.iterconstants() if level >= LogLevel.error)
        #: its output, if it writes C{info} lines as text (L{direct_text_output})
        self.info_text: LogOutput | None = (
            output if output.format == "text" and LogLevel.info in self._levels else None)

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if level not in self._levels:
            return
        if self._system is not None:
            event["log_system"] = self._system
        line = self._format_line(event)
        if line:
            self._output.write_through(line, urgent=level in self._urgent)


def observer(out: IO[str], format: str = "text", level: str = "info") -> LineObserver:
    """
    Events at C{level} and above, written to C{out} in C{format}.
    """
    return LineObserver(LogOutput(out, format, level))


#: for twist's C{fileLogObserverFactory}, which filters by level itself: every event with a level
OBSERVERS: dict[str, Callable[[IO[str]], LineObserver]] = {
    format: functools.partial(observer, format=format, level="debug") for format in FORMATS}


def json_to_stdout() -> LineObserver:
    """
    twistd's C{--logger} for C{twistd -n aisoc-inboxd --log-format json}: JSON lines on stdout.
    """
    return observer(sys.stdout, "json")


#: the log L{begin} started, if it was
output: LogOutput | None = None
#: the publisher and the observer L{begin} put on it: lines for that publisher may go to the
#: observer's output straight (L{direct_text_output})
_begun: tuple[LogPublisher, LineObserver] | None = None


def direct_text_output(publisher: object) -> LogOutput | None:
    """
    The text log that an C{info} event published to C{publisher} would reach, and it alone: the
    observer L{begin} put on the global publisher is its only observer and writes C{info} lines
    as text. Else C{None} (JSON lines, C{info} not logged, log capture in tests, another observer
    added, Twisted's publisher not showing its observers): such lines go as events.
    """
    begun = _begun
    if begun is None or publisher is not begun[0]:
        return None
    observers = getattr(publisher, "_observers", None)
    if type(observers) is not list or len(observers) != 1 or observers[0] is not begun[1]:
        return None
    return begun[1].info_text


def write_lines_directly(publisher: LogPublisher, observer: LineObserver) -> None:
    """
    Let lines published to C{publisher} go to C{observer}'s output straight while it is the
    publisher's only observer (L{direct_text_output}).
    """
    global _begun
    _begun = (publisher, observer)


def begin(out: IO[str], format: str = "text", level: str = "info", system: str | None = None) -> LogOutput:
    """
    Start the global log: events at C{level} and above, written to C{out} in C{format} (tagged
    C{system} when given). Events logged before this (while the daemon was composed) are written
    first. A worker (C{system} given) leaves its standard output and error as they are: the daemon
    reads them.
    """
    global output
    output = LogOutput(out, format, level, system)
    observer = LineObserver(output)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=system is None)
    write_lines_directly(globalLogPublisher, observer)
    return output
