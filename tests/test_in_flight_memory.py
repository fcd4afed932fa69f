"""
What an event in flight costs (issue 14.6): a sink that holds its events until they are durable
(Kafka: until acknowledged, up to its in-flight ceiling of 10,000 a process) holds each as its JSON
and little more. Measured with tracemalloc (allocated bytes, not time) while a L{FakeSink} holds the
writes: the pipeline hands the sink bytes objects of their own size (orjson's output keeps the 8 KiB
buffer it was written in), and a syslog listener lets its decoded records go once their events are
made (a CEF frame's record takes ~3.8 KB, twice its event).
"""
from __future__ import annotations

import gc
import tracemalloc
from typing import Callable, Iterator

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from aisoc_inboxd.config import CefSettings, SyslogListenerSettings
from aisoc_inboxd.formats.json_body import Record
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.pipeline import Pipeline
from aisoc_inboxd.syslog.protocol import SyslogIntake, SyslogStreamFactory
from aisoc_inboxd.testing import FakeSink, FakeStore, MemoryInbox, catalog

EVENTS = 500
#: what an event held by the sink may take beyond its JSON's length: the bytes object's header, its
#: SinkRecord and list slot (~160 B for a ~1.7 KB CEF event, 1.1x); a buffer or record kept with it
#: takes 3-5x
AT_MOST = 1.5
CEF = ("<134>1 2026-05-08T09:00:00.000Z fw-edge-01 CEF - - - CEF:0|Acme|EdgeFirewall|7.2.1|400|Policy violation|3|"
       "rt=1778230800000 src=10.192.77.{i} spt={i} dst=192.168.161.161 dpt=443 proto=TCP act=alerted suser=alice "
       "deviceExternalId=fw-edge-01 cs1Label=Rule Name cs1=inbound-400 msg=Policy violation matched on session {i}")


@pytest.fixture
def traced() -> Iterator[Callable[[], int]]:
    """
    The bytes allocated and still held since the fixture started (after a full collection).
    """
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]

    def held() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - start

    yield held
    tracemalloc.stop()


def held_json_bytes(sink: FakeSink) -> int:
    return sum(len(record.value) for records, _ in sink.held for record in records)


def test_events_held_by_the_sink_take_their_own_size(traced: Callable[[], int]) -> None:
    """The events of a publish the sink holds take about their JSON's length, not orjson's buffer."""
    sink = FakeSink()
    pipeline, template = Pipeline(sink, Metrics()), catalog().get("generic-json")
    assert template is not None
    pipeline.publish(template, "acme", "webhook", [Record({"n": 0}, None)], 0.0)  # first-use caches
    sink.holding = True
    before = traced()
    records = [Record({"alert": "policy violation", "n": i, "detail": "x" * 1500}, None) for i in range(EVENTS)]
    pipeline.publish(template, "acme", "webhook", records, 1778230800.0)
    del records
    assert traced() - before <= AT_MOST * held_json_bytes(sink)


def test_a_syslog_listener_holds_no_records_for_its_events_in_flight(traced: Callable[[], int]) -> None:
    """While the sink holds a read's CEF events, the listener keeps neither their frames' records nor more than
    their JSON: what the process holds per event in flight is the event."""
    inbox = MemoryInbox(FakeStore(), cef=CefSettings(tenant="acme"))
    settings = SyslogListenerSettings(name="t", endpoint="tcp:0", tenant="acme")
    listener = SyslogIntake(settings, inbox.intake, inbox.metrics.syslog, InFlight(Clock()), max_in_flight=10_000)
    protocol = SyslogStreamFactory(listener, Clock()).buildProtocol(None)  # type: ignore[arg-type]
    protocol.makeConnection(StringTransport())
    framed = [b"%d %s" % (len(frame), frame) for frame in (CEF.format(i=i).encode() for i in range(EVENTS + 1))]
    protocol.dataReceived(framed[0])
    assert len(inbox.sink.records) == 1  # a first frame, not held: first-use caches and counters made
    inbox.sink.holding = True
    rest = b"".join(framed[1:])
    del framed
    before = traced()
    protocol.dataReceived(rest)
    assert inbox.sink.writes[-1] == EVENTS and listener.in_flight == EVENTS
    assert traced() - before <= AT_MOST * held_json_bytes(inbox.sink)
