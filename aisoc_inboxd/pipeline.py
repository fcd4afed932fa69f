"""
The one publish step every intake ends in: records → OCSF events (through the token's template) →
the sink, and a Deferred that fires only when the sink has made them durable.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import orjson
from twisted.internet.defer import Deferred, succeed

from aisoc_inboxd.fastjson import dumps_compact
from aisoc_inboxd.formats.cef_events import fused_events
from aisoc_inboxd.formats.json_body import Record
from aisoc_inboxd.formats.syslog_cef import CefFrames, FrameParts
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.normalizer import IngestContext, Template, normalize_record
from aisoc_inboxd.normalizer.apply import NO_HEADERS
from aisoc_inboxd.sinks import EventSink, SinkRecord


class Pipeline:
    def __init__(self, sink: EventSink, metrics: Metrics,
                 on_published: Callable[[str, int], None] = lambda template_id, count: None) -> None:
        """
        @param on_published: told the template id and number of events of every durable publish
            (the status page's event rates).
        """
        self._sink = sink
        self._metrics = metrics
        self._on_published = on_published

    def not_ready(self) -> str | None:
        return self._sink.not_ready()

    def publish(self, template: Template, tenant_id: str, route: str, records: Sequence[Record],
                received_at: float, headers: Mapping[str, str] | None = None) -> Deferred[int]:
        """
        Normalize and hand to the sink; fires with the number of events once they are durable, or
        fails with the sink's L{SinkUnavailable}. A record may become no event (a control message
        the template acknowledges) or several (a batch envelope); C{headers} (lowercase names) feed
        the template's C{header:} sources.

        Each event's JSON is copied into a bytes object of its own size: orjson's output keeps the
        buffer it was written in (8 KiB for a 1.7 KB CEF event, 24 KiB for 3 KB), and a sink holds
        its events until they are durable (Kafka: until acknowledged, thousands at a time). The copy
        is C{b"".join((value, b""))}, which allocates the joined size and copies once: half the
        instructions of C{bytes(memoryview(value))} (a memoryview built and released per event).
        """
        template_id, new, join = template.id, tuple.__new__, b"".join  # named tuples without a Python frame each
        sink_records = [new(SinkRecord, (tenant_id, template_id, route, received_at, join((value, b""))))
                        for value in event_values(template, tenant_id, route, records, received_at,
                                                  headers or NO_HEADERS)]
        if not sink_records:
            return succeed(0)  # only control messages: nothing to make durable
        d = self._sink.write(sink_records)
        d.addCallback(self._published, template.id, len(sink_records))
        return d

    def _published(self, _: None, template_id: str, count: int) -> int:
        self._metrics.events_of(template_id).inc(count)
        self._on_published(template_id, count)
        return count


def event_values(template: Template, tenant_id: str, route: str, records: Sequence[Record],
                 received_at: float, headers: Mapping[str, str]) -> list[bytes]:
    """
    The events of C{records} as compact JSON, in order: what L{event_values_one_by_one} gives, in
    fewer Python calls per event where the template has no envelope: each record is one event, made
    by the generated function at once (which serialises a record without its own text for
    C{raw_data} as L{normalize_record} would) and serialised by orjson at once, so no event outlives
    its turn (a batch of live events would wake the garbage collector).
    """
    if type(records) is CefFrames:
        return cef_frame_values(template, tenant_id, route, records, received_at, headers)
    if not template.compiled.envelope.unwraps_nothing:
        return event_values_one_by_one(template, tenant_id, route, records, received_at, headers)
    to_event, dumps, new = template.to_event, orjson.dumps, tuple.__new__
    try:  # tuple.__new__(IngestContext, (…)) is what its generated __new__ does, without the frame
        return [dumps(to_event(data, new(IngestContext, (tenant_id, route, received_at, raw, headers))))
                for data, raw in records]
    except TypeError:  # orjson refused an event (an integer past 64 bits, a key that is not text)
        return event_values_one_by_one(template, tenant_id, route, records, received_at, headers)


def cef_frame_values(template: Template, tenant_id: str, route: str, frames: CefFrames, received_at: float,
                     headers: Mapping[str, str]) -> list[bytes]:
    """
    L{event_values} of a syslog listener's CEF frames: a frame kept as its L{FrameParts} made
    straight into its event by the template's fused function (L{fused_events}), without its record;
    the record path for the rest, and for every frame when the template has no fused functions.
    C{tests/test_cef_frame_events.py} holds both equal.
    """
    fused = fused_events(template)
    if fused is None or headers:
        return event_values(template, tenant_id, route, frames.records(), received_at, headers)
    event_of, to_event, dumps, new = fused.event, template.to_event, orjson.dumps, tuple.__new__
    values = []
    try:
        for item in frames:
            if type(item) is FrameParts:
                event = event_of(item, tenant_id, route, received_at)
                if event is not None:
                    values.append(dumps(event))
                    continue
                item = item.record()
            data, raw = item
            values.append(dumps(to_event(data, new(IngestContext, (tenant_id, route, received_at, raw, headers)))))
    except TypeError:  # orjson refused an event (an integer past 64 bits, a key that is not text)
        return event_values_one_by_one(template, tenant_id, route, frames, received_at, headers)
    return values


def event_values_one_by_one(template: Template, tenant_id: str, route: str, records: Sequence[Record],
                            received_at: float, headers: Mapping[str, str]) -> list[bytes]:
    """
    The reference for L{event_values}: each record through L{normalize_record}, each event through
    L{dumps_compact}.
    """
    if type(records) is CefFrames:
        records = records.records()
    return [dumps_compact(event)
            for data, raw in records
            for event in normalize_record(template, data, IngestContext(tenant_id, route, received_at, raw, headers))]
