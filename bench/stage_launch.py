"""
Runs the daemon (C{aisoc-inboxd ARGS…}) with each stage of a request called through its own C
function of C{callgrind_stages} (bench/stages.c), so that a callgrind dump counts every stage
inclusively under that function's name. Used by C{bench/request_cost.py --stages}; the wrappers
themselves add a Python call per stage call, which the report counts apart.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

import callgrind_stages

#: stage → where its function is looked up when a request runs: (module, attribute path)
STAGES: dict[str, tuple[str, str]] = {
    "read": ("aisoc_inboxd.web.channel", "InboxChannel.dataReceived"),
    "head": ("aisoc_inboxd.web.channel", "InboxChannel.lineReceived"),
    "content": ("aisoc_inboxd.web.channel", "InboxChannel.allContentReceived"),
    "process": ("twisted.web.server", "Request.process"),
    "render": ("aisoc_inboxd.web.routes", "JsonRoute.render"),
    "looks_like_token": ("aisoc_inboxd.tokens", "looks_like_token"),
    "fingerprint": ("aisoc_inboxd.tokens", "fingerprint"),
    "cache": ("aisoc_inboxd.tokens", "TokenCache.get"),
    "raw_body": ("aisoc_inboxd.web.token_route", "raw_body"),
    "decode_content": ("aisoc_inboxd.web.token_route", "decode_content"),
    "decode": ("aisoc_inboxd.web.webhook", "WebhookRoute.decode"),
    "request_headers": ("aisoc_inboxd.web.token_route", "request_headers"),
    "natural_key": ("aisoc_inboxd.web.token_route", "natural_key"),
    "publish": ("aisoc_inboxd.pipeline", "Pipeline.publish"),
    "normalize": ("aisoc_inboxd.pipeline", "event_values"),
    "sink_write": ("aisoc_inboxd.sinks.file", "FileSink.write"),
    "flush": ("aisoc_inboxd.sinks.file", "FileSink._append"),
    "flushed": ("aisoc_inboxd.sinks.group_commit", "GroupCommitWriter._flushed"),
    "send": ("aisoc_inboxd.web.routes", "JsonRoute._send"),
    "metrics_request": ("aisoc_inboxd.metrics", "Metrics.request"),
    "log_request": ("aisoc_inboxd.web.routes", "JsonRoute._log_request"),
    "log_observer": ("aisoc_inboxd.logs", "LineObserver.__call__"),
    "log_thread_write": ("aisoc_inboxd.logs", "LineWriter._write"),
    "write_reply": ("aisoc_inboxd.web.routes", "JsonRoute.write_reply"),
    "request_write": ("twisted.web.server", "Request.write"),
    "finish": ("twisted.web.server", "Request.finish"),
    "site_log": ("aisoc_inboxd.web.site", "InboxSite.log"),
    "hold_body": ("aisoc_inboxd.web.recorder", "DeliveryRecorder.hold_body"),
    "record": ("aisoc_inboxd.web.recorder", "DeliveryRecorder.record"),
    "twisted_line": ("twisted.web.http", "HTTPChannel.lineReceived"),
    "header": ("twisted.web.http", "HTTPChannel.headerReceived"),
    "all_headers": ("aisoc_inboxd.web.channel", "InboxChannel.allHeadersReceived"),
    "new_request": ("twisted.web.server", "Request.__init__"),
    "date": ("twisted.web.server", "datetimeToString"),
    "resource": ("twisted.web.server", "Site.getResourceFor"),
    "check_key": ("aisoc_inboxd.web.token_route", "check_key"),
    "track": ("aisoc_inboxd.inflight", "InFlight.track"),
    "client_of": ("aisoc_inboxd.web.routes", "JsonRoute.client_of"),
    "group_write": ("aisoc_inboxd.sinks.group_commit", "GroupCommitWriter.write"),
    "group_next": ("aisoc_inboxd.sinks.group_commit", "GroupCommitWriter._next"),
    "published": ("aisoc_inboxd.pipeline", "Pipeline._published"),
    "written": ("aisoc_inboxd.sinks.file", "FileSink._written"),
    "emit": ("aisoc_inboxd.logs", "RequestLogger.emit"),
    "text_line": ("aisoc_inboxd.logs", "text_line"),
    "write_through": ("aisoc_inboxd.logs", "LogOutput.write_through"),
    "write_headers": ("twisted.web.http", "HTTPChannel.writeHeaders"),
    "http_finish": ("twisted.web.http", "Request.finish"),
    "redact": ("aisoc_inboxd.web.recorder", "redacted_header_pairs"),
    "first_event": ("aisoc_inboxd.web.recorder", "DeliveryRecorder._first_event"),
    "delivery_new": ("aisoc_inboxd.deliveries", "Delivery.__init__"),
    "log_add": ("aisoc_inboxd.deliveries", "DeliveryLog.add"),
    "do_read": ("twisted.internet.tcp", "Connection.doRead"),
    "do_write": ("twisted.internet.abstract", "FileDescriptor.doWrite"),
    "run_until_current": ("twisted.internet.base", "ReactorBase.runUntilCurrent"),
}


def through(stage: Callable[..., Any], f: Callable[..., Any]) -> Callable[..., Any]:
    def staged(*args: Any, **kwargs: Any) -> Any:
        return stage(f, *args, **kwargs)
    return staged


def patch() -> None:
    for name, (module_name, path) in STAGES.items():
        owner: Any = importlib.import_module(module_name)
        *outer, attribute = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        original = owner.__dict__[attribute] if isinstance(owner, type) else getattr(owner, attribute)
        stage = getattr(callgrind_stages, name)
        if isinstance(original, staticmethod):
            setattr(owner, attribute, staticmethod(through(stage, original.__func__)))
        else:
            setattr(owner, attribute, through(stage, original))
    logs = importlib.import_module("aisoc_inboxd.logs")  # looked up when the log starts
    logs.FORMATTERS["text"] = logs.text_line


if __name__ == "__main__":
    patch()
    from aisoc_inboxd.cli import main
    sys.argv[0] = "aisoc-inboxd"
    sys.exit(main())
