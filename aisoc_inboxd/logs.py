"""
The daemon's log output: readable text lines by default, or one JSON object per line for log
shippers (journald, Vector, Fluent Bit).

Twisted's own JSON observer writes its serialisation format (a record separator before each event,
C{"unpersistable"} stand-ins for objects, the format string rather than the message); the JSON here
is what a reader wants instead: the time, level, namespace and formatted message, plus the event's
structured keys that are plain JSON values.
"""
from __future__ import annotations

import json
import sys
import time
from typing import IO, Any, Callable

from twisted.logger import (FileLogObserver, FilteringLogObserver, ILogObserver, LogLevel, LogLevelFilterPredicate,
                            formatEvent, globalLogBeginner, textFileLogObserver)

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warn", "error", "critical")

#: keys of the legacy twisted.python.log event dict, which the message already carries
_LEGACY_KEYS = frozenset({"message", "isError", "system", "time", "format", "why", "failure", "printed"})


def json_line(event: dict[str, Any]) -> str:
    """
    One event as one line of JSON (with its newline).
    """
    stamp = event.get("log_time", time.time())
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z",
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", "-"),
        "message": formatEvent(event),
    }
    if "log_system" in event:
        record["system"] = event["log_system"]
    for key, value in event.items():
        if not key.startswith("log_") and key not in _LEGACY_KEYS and key not in record and _plain(value):
            record[key] = value
    if "log_failure" in event:
        record["traceback"] = event["log_failure"].getTraceback()
    return json.dumps(record, ensure_ascii=False) + "\n"


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def json_observer(out: IO[str]) -> FileLogObserver:
    return FileLogObserver(out, json_line)


OBSERVERS: dict[str, Callable[[IO[str]], FileLogObserver]] = {"text": textFileLogObserver, "json": json_observer}


def observer(out: IO[str], format: str = "text", level: str = "info") -> ILogObserver:
    """
    Events at C{level} and above, written to C{out} in C{format}.
    """
    return FilteringLogObserver(OBSERVERS[format](out), [LogLevelFilterPredicate(LogLevel.levelWithName(level))])


def begin(out: IO[str], format: str = "text", level: str = "info") -> None:
    """
    Start the global log: events at C{level} and above, written to C{out} in C{format}.
    Events logged before this (while the daemon was composed) are written first.
    """
    globalLogBeginner.beginLoggingTo([observer(out, format, level)])


def json_to_stdout() -> ILogObserver:
    """
    twistd's C{--logger} for C{twistd -n aisoc-inboxd --log-format json}: JSON lines on stdout.
    """
    return observer(sys.stdout, "json")
