"""
Batches all the way (issue 14): every intake that receives events in batches (an NDJSON webhook, a
HEC request, a CEF request, the frames of one syslog read) hands the sink one write per batch and
template, and counts the batch's events with one metrics update, the counter's child looked up
once, never per event. In memory (the real resource tree and pipeline over L{FakeSink}).
"""
from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from aisoc_inboxd.config import CefSettings, SyslogListenerSettings
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.syslog.protocol import SyslogIntake, SyslogStreamFactory
from aisoc_inboxd.testing import FakeStore, MemoryInbox

BATCH = 100
CEF = "CEF:0|Acme|FW|2.1|deny|Connection denied|5|src=10.0.{i}.1 dst=10.1.0.1 spt={i}"


class CountingChild:
    """
    A spy around a real counter child: counts its C{inc} calls and passes them on.
    """

    def __init__(self, child: Any) -> None:
        self.child = child
        self.incs = 0

    def inc(self, amount: float = 1) -> None:
        self.incs += 1
        self.child.inc(amount)


class CountingLabels:
    """
    A spy around a real counter's C{labels}: counts the look-ups, and the C{inc}s of the children.
    """

    def __init__(self, counter: Any) -> None:
        self.labels_of = counter.labels
        self.lookups = 0
        self.children: list[CountingChild] = []

    def __call__(self, *labels: str) -> CountingChild:
        self.lookups += 1
        self.children.append(CountingChild(self.labels_of(*labels)))
        return self.children[-1]

    @property
    def incs(self) -> int:
        return sum(child.incs for child in self.children)


@pytest.fixture
def inbox() -> MemoryInbox:
    return MemoryInbox(FakeStore(), cef=CefSettings(tenant="acme"))


def spy_on_events(inbox: MemoryInbox) -> CountingLabels:
    spy = CountingLabels(inbox.metrics.events)
    inbox.metrics.events.labels = spy  # type: ignore[method-assign]
    return spy


@pytest_twisted.ensureDeferred
async def test_http_batches_are_one_sink_write_and_one_metrics_update_each(inbox: MemoryInbox) -> None:
    """An NDJSON webhook, a HEC /event and /raw request and a CEF request of 100 events each are one sink write
    of 100 records and one increment of the events counter each; its child is looked up once per template."""
    spy = spy_on_events(inbox)
    webhook = await inbox.mint()
    hec = (await inbox.admin.mint("acme", "splunk-hec")).token
    requests = [
        (f"/v1/inbox/{webhook}", b"".join(json.dumps({"n": i}).encode() + b"\n" for i in range(BATCH)),
         {"Content-Type": "application/x-ndjson"}),
        ("/services/collector/event", b"".join(json.dumps({"event": {"n": i}}).encode() for i in range(BATCH)),
         {"Authorization": f"Splunk {hec}"}),
        ("/services/collector/raw", b"".join(b"line %d\n" % i for i in range(BATCH)),
         {"Authorization": f"Splunk {hec}"}),
        ("/v1/inbox/cef", "\n".join(CEF.format(i=i) for i in range(BATCH)).encode(), {}),
    ]
    for path, body, headers in requests:
        await inbox.post(path, body, headers)
        await inbox.post(path, body, headers)
    assert inbox.sink.writes == [BATCH] * 2 * len(requests)
    assert len(inbox.events()) == 2 * BATCH * len(requests)
    assert (spy.incs, spy.lookups) == (2 * len(requests), 3)  # generic-json, splunk-hec, cef-syslog


@pytest_twisted.ensureDeferred
async def test_the_frames_of_one_syslog_read_are_one_sink_write_per_template(inbox: MemoryInbox) -> None:
    """The frames one TCP read completes (CEF and plain syslog mixed) are one sink write per template, and each
    syslog counter is looked up once however many reads follow."""
    spy = spy_on_events(inbox)
    settings = SyslogListenerSettings(name="t", endpoint="tcp:0", tenant="acme")
    syslog = inbox.metrics.syslog
    lookups = 0

    def counted(labels: Any) -> Any:
        def counting(*values: str) -> Any:
            nonlocal lookups
            lookups += 1
            return labels(*values)
        return counting

    listener = SyslogIntake(settings, inbox.intake, syslog, InFlight(Clock()), max_in_flight=10_000)
    for counter in (syslog.frames, syslog.durable, syslog.events):
        counter.labels = counted(counter.labels)  # type: ignore[method-assign]
    protocol = SyslogStreamFactory(listener, Clock()).buildProtocol(None)  # type: ignore[arg-type]
    protocol.makeConnection(StringTransport())
    frames = [f"<134>1 2026-11-27T10:00:00Z fw app - - - {CEF.format(i=i)}" if i % 4 else
              f"<13>1 2026-11-27T10:00:00Z host app - - - plain message {i}" for i in range(BATCH)]
    data = b"".join(b"%d %s" % (len(frame), frame.encode()) for frame in frames)
    for _ in range(3):
        protocol.dataReceived(data)
    assert inbox.sink.writes == [BATCH * 3 // 4, BATCH // 4] * 3
    assert (spy.incs, spy.lookups) == (6, 2)
    assert lookups == 3  # frames, durable, events: once each for listener "t"
