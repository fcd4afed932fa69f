"""
The daemon's JSON log lines: one clean object per event, whatever the event carries.
"""
from __future__ import annotations

import json

from twisted.logger import Logger, LogLevel

from aisoc_inboxd.logs import json_line


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
