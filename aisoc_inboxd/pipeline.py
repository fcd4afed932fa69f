"""
The one publish step every intake ends in: records → OCSF events (through the token's template) →
the sink, and a Deferred that fires only when the sink has made them durable.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

from twisted.internet.defer import Deferred, succeed

from aisoc_inboxd.fastjson import dumps_compact
from aisoc_inboxd.formats.json_body import Record
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
        """
        headers = headers or NO_HEADERS
        template_id = template.id
        sink_records = [SinkRecord(tenant_id, template_id, route, received_at, dumps_compact(event))
                        for data, raw in records
                        for event in normalize_record(template, data,
                                                      IngestContext(tenant_id, route, received_at, raw, headers))]
        if not sink_records:
            return succeed(0)  # only control messages: nothing to make durable
        d = self._sink.write(sink_records)
        d.addCallback(self._published, template.id, len(sink_records))
        return d

    def _published(self, _: None, template_id: str, count: int) -> int:
        self._metrics.events_of(template_id).inc(count)
        self._on_published(template_id, count)
        return count
