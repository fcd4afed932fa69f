"""
Syslog listeners: the protocols driven directly (StringTransport, datagrams, a Clock) for batching,
oversized frames, idle timeouts and back-pressure, then real senders against the real daemon —
util-linux logger (TCP octet counting RFC 5424, UDP RFC 3164), Python's SysLogHandler with its
defaults (UDP, TCP with NUL trailers, short and long-lived), mutual TLS, hostile and idle sockets, a
private syslog-ng forwarding a file of CEF lines over TCP and over TLS, and a private rsyslogd
forwarding one with omfwd over TCP octet-counted, TCP LF and UDP; each line arrives once as valid OCSF.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import re
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
import treq
from prometheus_client import CollectorRegistry
from twisted.internet import ssl
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs, formatEvent, globalLogPublisher
from zope.interface import implementer

from aisoc_inboxd.config import ConfigError, SyslogListenerSettings, SyslogSettings, load_settings
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake.refusals import sink_unavailable
from aisoc_inboxd.metrics import SYSLOG_DROP_REASONS, SyslogMetrics
from aisoc_inboxd.syslog.framing import MAX_SKIPPED_FRAME
from aisoc_inboxd.syslog.protocol import SyslogDatagramProtocol, SyslogIntake, SyslogStreamFactory, SyslogStreamProtocol
from aisoc_inboxd.deliveries import FrameSamples
from aisoc_inboxd.sinks import ISaturating
from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon, wait_for
from tests.support.ocsf import assert_valid_ocsf
from tests.support.rsyslog import Forward, start_rsyslog
from tests.support.syslog_ng import start_syslog_ng, syslog_destination
from tests.support.tls import TlsFiles, make_tls_files
from tests.test_status_page import read

CEF_LINE = "CEF:0|Vendor|Product|1.0|100|User login failed|3|src=10.0.0.1 suser=alice cs1=mfa"


# --- the protocols, driven directly ----------------------------------------------------------------

class FakeIntake:
    """
    What a SyslogIntake uses of the Intake: bind, deliver (held until the test fires it) and now.
    """

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, list[Any], Deferred[int]]] = []

    def now(self) -> float:
        return 1778230800.0

    def bind(self, tenant: str, template_id: str) -> Any:
        return template_id

    def deliver(self, binding: Any, route: str, records: list[Any], received_at: float) -> Deferred[int]:
        d: Deferred[int] = Deferred()
        self.deliveries.append((binding, records, d))
        return d


@implementer(ISaturating)
class FakeSink:
    """
    What a SyslogIntake uses of the Kafka sink: whether it is saturated or stopped, and a wait for room.
    """

    def __init__(self) -> None:
        self.saturated = False
        self.running = True
        self.waiters: list[Deferred[None]] = []

    def unsaturated(self) -> Deferred[None]:
        if not self.saturated:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self.waiters.append(waiter)
        return waiter

    def make_room(self) -> None:
        self.saturated = False
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.callback(None)


def make_listener(max_in_flight: int = 100, sink: FakeSink | None = None, max_frame_bytes: int = 1024,
                  idle_timeout: float | None = None, samples: FrameSamples | None = None
                  ) -> tuple[SyslogIntake, FakeIntake, SyslogMetrics]:
    intake = FakeIntake()
    metrics = SyslogMetrics(CollectorRegistry())
    settings = SyslogListenerSettings(name="t", endpoint="tcp:0", tenant="acme", max_frame_bytes=max_frame_bytes)
    listener = SyslogIntake(settings, intake, metrics, InFlight(Clock()), max_in_flight, sink,  # type: ignore[arg-type]
                            idle_timeout, samples)
    return listener, intake, metrics


def value(metrics: SyslogMetrics, name: str, *labels: str) -> float:
    return getattr(metrics, name).labels("t", *labels)._value.get()


def accounting(metrics: SyslogMetrics) -> tuple[float, float, float, dict[str, float]]:
    """
    Listener "t"'s frames read, durable and in flight, and its non-zero drops by reason, as /metrics
    renders them; the frames must equal the sum of the rest.
    """
    def sample(collector: Any, name: str, reason: str | None = None) -> float:
        wanted = {"listener": "t", **({"reason": reason} if reason else {})}
        return next(s.value for family in collector.collect() for s in family.samples
                    if s.name == name and s.labels == wanted)

    frames = sample(metrics.frames, "aisoc_ingest_syslog_frames_total")
    durable = sample(metrics.durable, "aisoc_ingest_syslog_durable_total")
    in_flight = sample(metrics.in_flight, "aisoc_ingest_syslog_in_flight")
    dropped = {reason: sample(metrics.dropped, "aisoc_ingest_syslog_dropped_total", reason)
               for reason in SYSLOG_DROP_REASONS}
    assert frames == durable + in_flight + sum(dropped.values())
    return frames, durable, in_flight, {reason: n for reason, n in dropped.items() if n}


def connect(listener: SyslogIntake, factory: SyslogStreamFactory | None = None
            ) -> tuple[SyslogStreamProtocol, StringTransport]:
    """
    A connection from 192.0.2.7 through the listener's factory (a new one on a fresh Clock unless given).
    """
    factory = factory or SyslogStreamFactory(listener, Clock())
    peer = IPv4Address("TCP", "192.0.2.7", 40000)
    protocol = factory.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    protocol.makeConnection(transport)
    return protocol, transport


def warnings(logged: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(event) for event in logged if event["log_level"].name in ("warn", "error", "critical")]


def octets(message: str) -> bytes:
    data = message.encode()
    return b"%d " % len(data) + data


def test_frames_of_one_segment_are_one_batch_per_template() -> None:
    """Frames completed by one dataReceived go out as one delivery per template, split frames waiting for their rest."""
    listener, intake, metrics = make_listener()
    protocol, _ = connect(listener)
    cef = octets(f"<13>1 2026-05-08T09:00:00Z fw01 app - - - {CEF_LINE}")
    protocol.dataReceived(b"<13>May  8 09:00:00 h app: one\n<13>May  8 09:00:00 h app: two\n" + cef + b"<13>May")
    assert [(binding, len(records)) for binding, records, _ in intake.deliveries] == [("cef-syslog", 1), ("syslog", 2)]
    protocol.dataReceived(b"  8 09:00:00 h app: three\n")
    assert intake.deliveries[-1][0] == "syslog" and intake.deliveries[-1][1][0].data["message"] == "three"
    assert (value(metrics, "frames"), value(metrics, "connections")) == (4, 1)
    for _, _, d in intake.deliveries:
        d.callback(1)
    assert value(metrics, "events") == 3
    assert accounting(metrics) == (4, 4, 0, {})


def test_oversized_frame_is_dropped_and_counted_and_the_connection_kept() -> None:
    """A frame over max_frame_bytes is counted as oversized, the connection stays, the next frame is delivered."""
    listener, intake, metrics = make_listener(max_frame_bytes=64)
    protocol, transport = connect(listener)
    protocol.dataReceived(octets("<13>" + "x" * 100) + b"<13>May  8 09:00:00 h app: fine\n")
    assert value(metrics, "dropped", "oversized") == 1
    assert not transport.disconnecting
    assert [records[0].data["message"] for _, records, _ in intake.deliveries] == ["fine"]


def test_oversized_frames_are_logged_once_per_connection_with_the_peer() -> None:
    """Every oversized frame is counted; the log names the peer once per connection, not once per frame."""
    listener, intake, metrics = make_listener(max_frame_bytes=64)
    with capturedLogs() as logged:
        protocol, _ = connect(listener)
        protocol.dataReceived(octets("<13>" + "x" * 100) + b"<13>" + b"y" * 100 + b"\n")
        protocol.dataReceived(b"<13>" + b"z" * 100 + b"\x00<13>May  8 09:00:00 h app: fine\x00")
        connect(listener)[0].dataReceived(octets("<13>" + "x" * 100))
    assert accounting(metrics) == (5, 0, 1, {"oversized": 4})
    assert [records[0].data["message"] for _, records, _ in intake.deliveries] == ["fine"]
    lines = warnings(logged)
    assert len(lines) == 2 and all("over 64 octets from 192.0.2.7" in line for line in lines)


@pytest.mark.parametrize("claim", [MAX_SKIPPED_FRAME + 1, 999_999_999])
def test_a_frame_claiming_too_many_octets_closes_the_connection(claim: int) -> None:
    """A count too large to skip is counted as oversized, logged once with the peer, and closes the
    connection (counted by reason) instead of discarding the rest of it; the frames before it are delivered."""
    listener, intake, metrics = make_listener()
    with capturedLogs() as logged:
        protocol, transport = connect(listener)
        protocol.dataReceived(octets("<13>1 - h app - - - before") + b"%d <13>1 - h app - - - huge" % claim)
        protocol.dataReceived(b"x" * 5000)
        protocol.connectionLost(None)
    assert transport.disconnecting
    assert [records[0].data["message"] for _, records, _ in intake.deliveries] == ["before"]
    assert (value(metrics, "dropped", "oversized"), value(metrics, "closed", "oversized")) == (1, 1)
    assert value(metrics, "dropped", "truncated") == 0
    (line,) = warnings(logged)
    assert f"192.0.2.7 sent a frame claiming {claim} octets" in line and "connection closed" in line


def test_a_connection_ending_inside_a_frame_is_logged_with_the_peer() -> None:
    """A stream cut inside an octet-counted frame is counted as truncated and logged naming the peer."""
    listener, _, metrics = make_listener()
    with capturedLogs() as logged:
        protocol, _ = connect(listener)
        protocol.dataReceived(b"50 <13>cut short")
        protocol.connectionLost(None)
    assert value(metrics, "dropped", "truncated") == 1
    (line,) = warnings(logged)
    assert "192.0.2.7" in line and "octet-counted frame" in line


def test_an_idle_connection_is_closed_and_counted() -> None:
    """A connection that sends nothing for idle_timeout seconds is closed and counted; data restarts the wait."""
    listener, _, metrics = make_listener(idle_timeout=300)
    clock = Clock()
    protocol, transport = connect(listener, SyslogStreamFactory(listener, clock))
    clock.advance(299)
    protocol.dataReceived(b"<13>May  8 09:00:00 h a: 1\n")
    clock.advance(299)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting
    assert value(metrics, "closed", "idle") == 1
    protocol.connectionLost(None)
    clock.advance(1000)
    assert value(metrics, "closed", "idle") == 1


def test_a_closed_connection_is_never_counted_idle() -> None:
    """A connection the sender closes stops its idle timer: no idle close is counted for it later."""
    listener, _, metrics = make_listener(idle_timeout=10)
    clock = Clock()
    protocol, _ = connect(listener, SyslogStreamFactory(listener, clock))
    protocol.connectionLost(None)
    clock.advance(60)
    assert value(metrics, "closed", "idle") == 0
    assert clock.getDelayedCalls() == []


def test_a_paused_connection_is_not_idle() -> None:
    """While back-pressure keeps the daemon from reading, the idle clock stops; it restarts on resume."""
    listener, intake, metrics = make_listener(max_in_flight=1, idle_timeout=10)
    clock = Clock()
    protocol, transport = connect(listener, SyslogStreamFactory(listener, clock))
    protocol.dataReceived(b"<13>May  8 09:00:00 h a: 1\n")
    assert transport.producerState == "paused"
    clock.advance(100)
    assert not transport.disconnecting
    intake.deliveries[0][2].callback(1)
    assert transport.producerState == "producing"
    clock.advance(10)
    assert transport.disconnecting and value(metrics, "closed", "idle") == 1


def test_a_connection_lost_while_paused_gets_no_idle_timer_on_resume() -> None:
    """A sender gone while its connection was paused is not timed (nor counted idle) when the listener drains."""
    listener, intake, metrics = make_listener(max_in_flight=1, idle_timeout=10)
    clock = Clock()
    protocol, transport = connect(listener, SyslogStreamFactory(listener, clock))
    protocol.dataReceived(b"<13>May  8 09:00:00 h a: 1\n")
    protocol.connectionLost(None)
    intake.deliveries[0][2].callback(1)
    assert clock.getDelayedCalls() == []
    clock.advance(60)
    assert value(metrics, "closed", "idle") == 0


def test_no_idle_timeout_keeps_connections() -> None:
    """With the idle timeout off (None: idle_timeout 0 in the config) a silent connection stays open."""
    listener, _, _ = make_listener(idle_timeout=None)
    clock = Clock()
    _, transport = connect(listener, SyslogStreamFactory(listener, clock))
    clock.advance(86400)
    assert not transport.disconnecting and clock.getDelayedCalls() == []


def test_idle_closes_are_logged_without_flooding() -> None:
    """Closing 500 idle connections logs the first at once and the rest in one line a minute later."""
    listener, _, metrics = make_listener(idle_timeout=30)
    clock = Clock()
    factory = SyslogStreamFactory(listener, clock)
    with capturedLogs() as logged:
        connections = [connect(listener, factory) for _ in range(500)]
        clock.advance(30)
        assert all(transport.disconnecting for _, transport in connections)
        for protocol, _ in connections:
            protocol.connectionLost(None)
        clock.advance(60)
        clock.advance(600)
    lines = [formatEvent(event) for event in logged if "sent nothing" in formatEvent(event)]
    assert value(metrics, "closed", "idle") == 500
    assert len(lines) == 2
    assert lines[0].startswith("t: closed 1 connection(s) that sent nothing for 30 s")
    assert lines[1].startswith("t: closed 499 connection(s)") and lines[1].endswith("from 192.0.2.7")


def test_malformed_cef_frame_is_dropped_and_counted() -> None:
    """A frame whose CEF is malformed is counted and not delivered; the frames beside it are."""
    listener, intake, metrics = make_listener()
    protocol, _ = connect(listener)
    protocol.dataReceived(b"<13>May  8 09:00:00 h CEF:0|broken\n<13>May  8 09:00:00 h app: ok\n")
    assert accounting(metrics) == (2, 0, 1, {"malformed": 1})
    assert [binding for binding, _, _ in intake.deliveries] == ["syslog"]


def test_stream_ending_inside_an_octet_counted_frame_is_counted() -> None:
    """A connection lost in the middle of an octet-counted frame counts it as dropped (truncated)."""
    listener, intake, metrics = make_listener()
    protocol, _ = connect(listener)
    protocol.dataReceived(b"50 <13>cut short")
    protocol.connectionLost(None)
    assert value(metrics, "dropped", "truncated") == 1
    assert intake.deliveries == []


def test_tcp_pauses_while_saturated_and_resumes_when_drained() -> None:
    """Past max_in_flight events the transport stops reading, and reads again once the sink made them durable."""
    listener, intake, metrics = make_listener(max_in_flight=2)
    protocol, transport = connect(listener)
    protocol.dataReceived(b"<13>May  8 09:00:00 h a: 1\n<13>May  8 09:00:00 h a: 2\n")
    assert transport.producerState == "paused"
    assert value(metrics, "paused") == 1
    intake.deliveries[0][2].callback(2)
    assert transport.producerState == "producing"
    assert listener.in_flight == 0


def test_tcp_pauses_while_the_kafka_sink_is_saturated() -> None:
    """A saturated sink pauses reading until the sink says it has room."""
    sink = FakeSink()
    listener, intake, _ = make_listener(sink=sink)
    protocol, transport = connect(listener)
    sink.saturated = True
    protocol.dataReceived(b"<13>May  8 09:00:00 h a: 1\n")
    assert transport.producerState == "paused"
    assert sink.waiters
    sink.make_room()
    assert transport.producerState == "producing"


def test_a_batch_that_finds_the_sink_full_waits_for_room() -> None:
    """Frames read while the Kafka sink is saturated are neither refused nor dropped: they stay in flight,
    the connection paused, and are published once the sink has room."""
    sink = FakeSink()
    listener, intake, metrics = make_listener(sink=sink)
    protocol, transport = connect(listener)
    sink.saturated = True
    protocol.dataReceived(b"<13>May  8 09:00:00 h a: 1\n<13>May  8 09:00:00 h a: 2\n")
    assert (intake.deliveries, transport.producerState) == ([], "paused")
    assert accounting(metrics) == (2, 0, 2, {})
    sink.make_room()
    assert [len(records) for _, records, _ in intake.deliveries] == [2]
    intake.deliveries[0][2].callback(2)
    assert accounting(metrics) == (2, 2, 0, {})
    assert transport.producerState == "producing"


def test_udp_drops_and_counts_while_saturated() -> None:
    """UDP cannot push back: datagrams are dropped and counted while saturated, delivered otherwise."""
    listener, intake, metrics = make_listener(max_in_flight=1)
    clock = Clock()
    protocol = SyslogDatagramProtocol(listener, clock)
    protocol.datagramReceived(b"<13>May  8 09:00:00 h a: 1\n", ("127.0.0.1", 1))
    protocol.datagramReceived(b"<13>May  8 09:00:00 h a: 2\n", ("127.0.0.1", 1))
    clock.advance(0)
    assert len(intake.deliveries) == 1
    assert value(metrics, "dropped", "saturated") == 1
    protocol.datagramReceived(b"x" * 2000, ("127.0.0.1", 1))
    assert accounting(metrics) == (3, 0, 1, {"saturated": 1, "oversized": 1})


def test_udp_datagrams_of_one_reactor_turn_are_one_batch() -> None:
    """Datagrams read in one reactor turn are submitted together: one delivery for the burst, and a
    full batch goes at once."""
    listener, intake, _ = make_listener(max_in_flight=10_000)
    clock = Clock()
    protocol = SyslogDatagramProtocol(listener, clock)
    for n in range(5):
        protocol.datagramReceived(b"<13>May  8 09:00:00 h a: %d" % n, ("127.0.0.1", 1))
    assert intake.deliveries == []
    clock.advance(0)
    assert [len(records) for _, records, _ in intake.deliveries] == [5]
    for n in range(SyslogDatagramProtocol.MAX_BATCH):
        protocol.datagramReceived(b"<13>May  8 09:00:00 h a: %d" % n, ("127.0.0.1", 1))
    assert [len(records) for _, records, _ in intake.deliveries] == [5, SyslogDatagramProtocol.MAX_BATCH]
    clock.advance(0)
    assert len(intake.deliveries) == 2


def test_sink_refusal_is_counted_as_dropped() -> None:
    """When the sink cannot make a batch durable its events are counted as dropped (unavailable)."""
    listener, intake, metrics = make_listener()
    clock = Clock()
    protocol = SyslogDatagramProtocol(listener, clock)
    protocol.datagramReceived(b"<13>May  8 09:00:00 h a: 1", ("127.0.0.1", 1))
    clock.advance(0)
    intake.deliveries[0][2].errback(sink_unavailable("spool full"))
    assert accounting(metrics) == (1, 0, 0, {"unavailable": 1})
    assert listener.in_flight == 0


def test_a_refusal_by_a_stopped_sink_is_counted_as_shutdown() -> None:
    """A batch still waiting for the Kafka sink when it stops is refused; that loss is counted as shutdown."""
    sink = FakeSink()
    listener, intake, metrics = make_listener(sink=sink)
    with capturedLogs() as logged:
        listener.submit([b"<13>May  8 09:00:00 h a: 1"])
        sink.running = False
        intake.deliveries[0][2].errback(sink_unavailable("the Kafka sink is stopped"))
    assert accounting(metrics) == (1, 0, 0, {"shutdown": 1})
    (line,) = warnings(logged)
    assert "1 events dropped (shutdown)" in line


def test_an_unexpected_failure_is_counted_as_error() -> None:
    """A publish that fails in an unexpected way is counted (error) and logged, never left uncounted."""
    listener, intake, metrics = make_listener()
    with capturedLogs() as logged:
        listener.submit([b"<13>May  8 09:00:00 h a: 1", b"<13>May  8 09:00:00 h a: 2"])
        intake.deliveries[0][2].errback(RuntimeError("boom"))
    assert accounting(metrics) == (2, 0, 0, {"error": 2})
    assert any("publishing failed; 2 events dropped" in line for line in warnings(logged))


def test_listener_settings_are_checked(tmp_path: Path) -> None:
    """A listener without a tenant, or with both an endpoint and a UDP port, stops start-up naming the key."""
    config = tmp_path / "c.yaml"
    config.write_text("syslog:\n  listeners:\n    - {name: x, endpoint: 'tcp:1', udp_port: 2, tenant: t}\n")
    with pytest.raises(ConfigError, match=r"syslog\.listeners\[0\]\.endpoint: give either"):
        load_settings(config, {})


def test_idle_timeout_is_global_with_a_per_listener_override(tmp_path: Path) -> None:
    """syslog.idle_timeout (default 300 s) applies to every listener unless it sets its own; 0 means never."""
    config = tmp_path / "c.yaml"
    config.write_text("syslog:\n  idle_timeout: 120\n  listeners:\n"
                      "    - {name: a, endpoint: 'tcp:1', tenant: t}\n"
                      "    - {name: b, endpoint: 'tcp:2', tenant: t, idle_timeout: 0}\n"
                      "    - {name: c, endpoint: 'tcp:3', tenant: t, idle_timeout: 7.5}\n")
    syslog = load_settings(config, {}).syslog
    assert [syslog.idle_timeout_of(entry) for entry in syslog.listeners] == [120, None, 7.5]
    default = load_settings(None, {}).syslog
    assert [default.idle_timeout_of(entry) for entry in default.listeners] == [300, 300]
    config.write_text("syslog:\n  listeners:\n    - {name: a, endpoint: 'tcp:1', tenant: t, idle_timeout: -1}\n")
    with pytest.raises(ConfigError, match=r"syslog\.listeners\[0\]\.idle_timeout: must be 0 \(never\) or more"):
        load_settings(config, {})
    config.write_text("syslog:\n  idle_timeout: -5\n")
    with pytest.raises(ConfigError, match=r"syslog\.idle_timeout: must be 0 \(never\) or more seconds, got -5"):
        load_settings(config, {})


def test_embedded_default_listens_on_5514_for_tenant_default() -> None:
    """With no config, TCP and UDP listeners on 127.0.0.1:5514 feed the tenant default."""
    listeners = load_settings(None, {}).syslog.listeners
    assert [(entry.endpoint, entry.udp_port, entry.udp_interface, entry.tenant) for entry in listeners] == [
        ("tcp:5514:interface=127.0.0.1", None, "127.0.0.1", "default"), (None, 5514, "127.0.0.1", "default")]


# --- real senders against the real daemon -----------------------------------------------------------

def listeners(*entries: SyslogListenerSettings) -> SyslogSettings:
    return SyslogSettings(listeners=list(entries))


@pytest_twisted.async_yield_fixture
async def inboxd(reactor: Any, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    settings = daemon_settings(tmp_path / "state", syslog=listeners(
        SyslogListenerSettings(name="tcp", endpoint="tcp:0:interface=127.0.0.1", tenant="acme"),
        SyslogListenerSettings(name="udp", udp_port=0, tenant="acme")))
    running = await start_daemon(reactor, settings)
    yield running
    await running.stop()


def messages(daemon: RunningDaemon, marker: str, tenant: str | None = "acme") -> list[dict[str, Any]]:
    """
    The events in the log whose raw data holds C{marker} (of C{tenant}, checked, unless None), read
    while the sink may be mid-write (a last line without its newline is not complete yet).
    """
    settings = daemon.settings
    path = Path(settings.state_dir) / settings.sink.file.directory / "events.ndjson"
    lines = path.read_text().split("\n")[:-1] if path.exists() else []
    found = [e for e in map(json.loads, lines) if marker in e["raw_data"]]
    for event in found:
        assert_valid_ocsf(event)
        assert tenant is None or event["metadata"]["tenant_uid"] == tenant
    return found


def logger(*args: str) -> None:
    path = shutil.which("logger")
    assert path, "util-linux logger is missing (package bsdutils)"
    subprocess.run([path, *args], check=True, timeout=30)


@pytest_twisted.ensureDeferred
async def test_logger_tcp_octet_counting_rfc5424(inboxd: RunningDaemon, reactor: Any) -> None:
    """logger --tcp --octet-count --rfc5424 delivers a plain message and a CEF message, once each."""
    port = inboxd.daemon.address("syslog-tcp").port
    marker = uuid.uuid4().hex
    await deferToThread(logger, "--tcp", "--octet-count", "--rfc5424", "-n", "127.0.0.1", "-P", str(port),
                        "-t", "appx", f"plain {marker}")
    await deferToThread(logger, "--tcp", "--octet-count", "--rfc5424", "-n", "127.0.0.1", "-P", str(port),
                        f"{CEF_LINE} cs2={marker}")
    await wait_for(lambda: len(messages(inboxd, marker)) == 2, reactor)
    plain, cef = sorted(messages(inboxd, marker), key=lambda e: e["class_uid"])
    assert (plain["class_uid"], plain["message"], plain["metadata"]["product"]["name"]) == (0, f"plain {marker}", "appx")
    assert (cef["class_uid"], cef["user"]["name"], cef["unmapped"]["cef"]["cs2"]) == (3002, "alice", marker)
    events_counted = 'aisoc_ingest_syslog_events_total{listener="tcp"} 2.0'
    for _ in range(50):  # the counter moves when the sink confirms, just after the line is in the file
        metrics = await inboxd.metrics()
        if events_counted in metrics:
            break
        await deferLater(reactor, 0.1)
    assert 'aisoc_ingest_syslog_connections_total{listener="tcp"} 2.0' in metrics
    assert events_counted in metrics


@pytest_twisted.ensureDeferred
async def test_logger_udp_rfc3164(inboxd: RunningDaemon, reactor: Any) -> None:
    """logger --udp --rfc3164 delivers one event with the sender's host and severity."""
    port = inboxd.daemon.address("syslog-udp").port
    marker = uuid.uuid4().hex
    await deferToThread(logger, "--udp", "--rfc3164", "-n", "127.0.0.1", "-P", str(port), "-p", "auth.err",
                        "-t", "sshd", f"Failed password {marker}")
    await wait_for(lambda: len(messages(inboxd, marker)) == 1, reactor)
    (event,) = messages(inboxd, marker)
    assert event["severity_id"] == 4 and event["unmapped"]["syslog"]["facility"] == 4
    assert event["metadata"]["product"]["name"] == "sshd"
    assert event["message"] == f"Failed password {marker}"


def send_with_handler(handler: logging.handlers.SysLogHandler, lines: list[str]) -> None:
    log = logging.getLogger(f"syslog-test-{uuid.uuid4().hex}")
    log.propagate = False
    log.addHandler(handler)
    try:
        for line in lines:
            log.warning(line)
    finally:
        handler.close()


@pytest_twisted.ensureDeferred
async def test_python_syslog_handler_udp_and_tcp(inboxd: RunningDaemon, reactor: Any) -> None:
    """logging.handlers.SysLogHandler with its defaults (NUL after each record, no LF), over UDP and over
    a short TCP connection, delivers each record once as its own event."""
    marker = uuid.uuid4().hex
    udp = logging.handlers.SysLogHandler(("127.0.0.1", inboxd.daemon.address("syslog-udp").port),
                                         socktype=socket.SOCK_DGRAM)
    tcp = logging.handlers.SysLogHandler(("127.0.0.1", inboxd.daemon.address("syslog-tcp").port),
                                         socktype=socket.SOCK_STREAM)
    assert tcp.append_nul and udp.append_nul
    await deferToThread(send_with_handler, udp, [f"udp {i} {marker}" for i in range(5)])
    await deferToThread(send_with_handler, tcp, [f"tcp {i} {marker}" for i in range(5)] + [f"{CEF_LINE} cs2={marker}"])
    await wait_for(lambda: len(messages(inboxd, marker)) >= 11, reactor)
    await deferLater(reactor, 0.5)  # anything sent twice would have arrived by now
    events = messages(inboxd, marker)
    texts = sorted(e["message"] for e in events if e["class_uid"] == 0)
    assert texts == sorted([f"udp {i} {marker}" for i in range(5)] + [f"tcp {i} {marker}" for i in range(5)])
    (cef,) = [e for e in events if e["class_uid"] == 3002]
    assert cef["unmapped"]["cef"]["cs2"] == marker and "\x00" not in cef["raw_data"]


@pytest_twisted.ensureDeferred
async def test_python_syslog_handler_long_lived_tcp_connection(inboxd: RunningDaemon, reactor: Any) -> None:
    """700 records over one SysLogHandler TCP connection with its defaults (over 64 KiB, no LF anywhere)
    arrive once each as their own events, with nothing counted oversized."""
    marker = uuid.uuid4().hex
    tcp = logging.handlers.SysLogHandler(("127.0.0.1", inboxd.daemon.address("syslog-tcp").port),
                                         socktype=socket.SOCK_STREAM)
    lines = [f"record {i:03d} of a long-lived connection {marker} " + "x" * 60 for i in range(700)]
    await deferToThread(send_with_handler, tcp, lines)
    await wait_for(lambda: len(messages(inboxd, marker)) >= 700, reactor)
    await deferLater(reactor, 0.5)
    assert sorted(e["message"] for e in messages(inboxd, marker)) == lines
    assert await inboxd.metric("aisoc_ingest_syslog_dropped_total", listener="tcp", reason="oversized") == 0
    assert await inboxd.metric("aisoc_ingest_syslog_connections_total", listener="tcp") == 1


def held_until_closed(port: int, send: bytes) -> bytes:
    """
    Connect, send C{send}, and read until the daemon closes the connection (fails if it never does).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(send)
        received = b""
        try:
            while chunk := connection.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
        return received


@pytest_twisted.ensureDeferred
async def test_idle_and_overclaiming_connections_are_closed_and_shown(reactor: Any, tmp_path: Path) -> None:
    """Over real sockets: the daemon closes a silent connection after the listener's idle_timeout, and one
    that claims a 999,999,999-octet frame at once (its earlier frame delivered); /metrics and the status page
    count both by reason."""
    entry = SyslogListenerSettings(name="tcp", endpoint="tcp:0:interface=127.0.0.1", tenant="acme", idle_timeout=0.5)
    daemon = await start_daemon(reactor, daemon_settings(tmp_path / "state", syslog=listeners(entry)))
    try:
        port = daemon.daemon.address("syslog-tcp").port
        marker = uuid.uuid4().hex
        hostile = octets(f"<13>1 - h app - - - before {marker}") + b"999999999 <13>1 - h app - - - " + b"x" * 10_000
        assert await deferToThread(held_until_closed, port, hostile) == b""
        assert await deferToThread(held_until_closed, port, b"") == b""
        await wait_for(lambda: len(messages(daemon, marker)) == 1, reactor)
        assert [e["message"] for e in messages(daemon, marker)] == [f"before {marker}"]
        closed = "aisoc_ingest_syslog_connections_closed_total"
        assert await daemon.metric(closed, listener="tcp", reason="idle") == 1
        assert await daemon.metric(closed, listener="tcp", reason="oversized") == 1
        assert await daemon.metric("aisoc_ingest_syslog_dropped_total", listener="tcp", reason="oversized") == 1
        response = await treq.get(f"{daemon.admin_url}/status", headers={"Authorization": [f"Bearer {daemon.admin_key}"]})
        rows = read(await response.text()).rows
        assert "tcp | 2 | 1 | 0 | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 1 | 2 | 1 | 1" in rows
    finally:
        await daemon.stop()


def send_over_one_connection(port: int, parts: list[bytes]) -> None:
    """
    Send C{parts} one C{sendall} after another over one connection, then close it.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        for part in parts:
            connection.sendall(part)


@pytest.mark.parametrize("trailer", [b"\n", b"\x00"], ids=["lf", "nul"])
@pytest_twisted.ensureDeferred
async def test_a_trailer_framed_frame_that_does_not_end_is_counted_once_logged_once_and_skipped(
        reactor: Any, tmp_path: Path, trailer: bytes) -> None:
    """Over a real socket: an LF- or NUL-framed frame that runs on past max_frame_bytes over many
    segments (100 times the limit) is counted oversized once, logged once with the peer, and
    discarded up to its trailer without closing the connection; the frames before it and after its
    trailer on the same connection are delivered, and every frame read is accounted for."""
    entry = SyslogListenerSettings(name="tcp", endpoint="tcp:0:interface=127.0.0.1", tenant="acme",
                                   max_frame_bytes=1024)
    daemon = await start_daemon(reactor, daemon_settings(tmp_path / "state", syslog=listeners(entry)))
    logged: list[str] = []
    observer = lambda event: logged.append(formatEvent(event))  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        port = daemon.daemon.address("syslog-tcp").port
        marker = uuid.uuid4().hex
        parts = [b"<13>May  8 09:00:00 h app: before " + marker.encode() + trailer,
                 b"<13>May  8 09:00:00 h app: endless " + b"x" * 1000,
                 *[b"y" * 1024] * 100,
                 trailer + b"<13>May  8 09:00:00 h app: after " + marker.encode() + trailer]
        await deferToThread(send_over_one_connection, port, parts)
        await wait_for(lambda: len(messages(daemon, marker)) == 2, reactor)
        assert [e["message"] for e in messages(daemon, marker)] == [f"before {marker}", f"after {marker}"]
        dropped = "aisoc_ingest_syslog_dropped_total"
        assert await daemon.metric(dropped, listener="tcp", reason="oversized") == 1
        assert await daemon.metric("aisoc_ingest_syslog_frames_total", listener="tcp") == 3
        assert await daemon.metric("aisoc_ingest_syslog_durable_total", listener="tcp") == 2
        assert await daemon.metric(dropped, listener="tcp", reason="truncated") == 0
        closed = "aisoc_ingest_syslog_connections_closed_total"
        assert await daemon.metric(closed, listener="tcp", reason="oversized") == 0
    finally:
        globalLogPublisher.removeObserver(observer)
        await daemon.stop()
    warned = [line for line in logged if "over 1024 octets" in line]
    assert warned == ["tcp: dropped a frame over 1024 octets from 127.0.0.1; the connection stays open "
                      "(later ones from it are only counted)"], logged


@pytest_twisted.async_yield_fixture
async def inboxd_mtls(reactor: Any, tmp_path: Path) -> AsyncIterator[tuple[RunningDaemon, TlsFiles]]:
    tls = make_tls_files(tmp_path / "tls")
    endpoint = f"ssl:0:interface=127.0.0.1:privateKey={tls.server_key}:certKey={tls.server_cert}"
    settings = daemon_settings(tmp_path / "state", syslog=listeners(
        SyslogListenerSettings(name="tls", endpoint=endpoint, tenant="acme", client_ca_file=str(tls.ca_cert),
                               verify_client=True)))
    running = await start_daemon(reactor, settings)
    yield running, tls
    await running.stop()


async def send_tls(reactor: Any, port: int, tls: TlsFiles, data: bytes, client_certificate: bool) -> None:
    trust = ssl.Certificate.loadPEM(tls.ca_cert.read_bytes())
    client = None
    if client_certificate:
        assert tls.client_cert and tls.client_key
        client = ssl.PrivateCertificate.loadPEM(tls.client_cert.read_bytes() + tls.client_key.read_bytes())
    options = ssl.optionsForClientTLS("localhost", trust, client)
    protocol = await connectProtocol(SSL4ClientEndpoint(reactor, "127.0.0.1", port, options), Protocol())
    lost: Deferred[None] = Deferred()
    protocol.connectionLost = lambda reason: lost.callback(None)  # type: ignore[method-assign]
    protocol.transport.write(data)
    protocol.transport.loseConnection()
    await lost


@pytest_twisted.ensureDeferred
async def test_mutual_tls_requires_a_client_certificate(inboxd_mtls: tuple[RunningDaemon, TlsFiles],
                                                       reactor: Any) -> None:
    """With verify_client a sender with the CA's client certificate is heard, one without is not."""
    daemon, tls = inboxd_mtls
    port = daemon.daemon.address("syslog-tls").port
    marker = uuid.uuid4().hex
    await send_tls(reactor, port, tls, octets(f"<13>1 - h app - - - with {marker}"), client_certificate=True)
    await send_tls(reactor, port, tls, octets(f"<13>1 - h app - - - without {marker}"), client_certificate=False)
    await wait_for(lambda: len(messages(daemon, marker)) >= 1, reactor)
    await deferLater(reactor, 0.5)
    assert [e["message"] for e in messages(daemon, marker)] == [f"with {marker}"]


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp-octet-counted", "tls"])
@pytest_twisted.ensureDeferred
async def test_syslog_ng_forwards_a_file_of_cef_lines(reactor: Any, tmp_path: Path, use_tls: bool) -> None:
    """A private syslog-ng following a file of CEF lines forwards each once, octet-counted over TCP or mutual TLS, as valid OCSF."""
    tls = make_tls_files(tmp_path / "tls") if use_tls else None
    endpoint = (f"ssl:0:interface=127.0.0.1:privateKey={tls.server_key}:certKey={tls.server_cert}" if tls
                else "tcp:0:interface=127.0.0.1")
    entry = SyslogListenerSettings(name="relay", endpoint=endpoint, tenant="acme",
                                   client_ca_file=str(tls.ca_cert) if tls else None, verify_client=bool(tls))
    daemon = await start_daemon(reactor, daemon_settings(tmp_path / "state", syslog=listeners(entry)))
    relay = None
    try:
        relay = await deferToThread(start_syslog_ng, tmp_path / "syslog-ng",
                                    syslog_destination(daemon.daemon.address("syslog-relay").port, tls))
        marker = uuid.uuid4().hex
        lines = [f"CEF:0|Acme|FW|2.1|deny|Connection denied|{i % 11}|src=10.0.{i}.1 dst=10.1.0.{i} spt={1000 + i} "
                 f"dpt=443 act=deny cs1={marker}-{i} cs1Label=Rule Name" for i in range(200)]
        with relay.source.open("a") as source:
            source.write("\n".join(lines) + "\n")
        await wait_for(lambda: len(messages(daemon, marker)) >= 200, reactor, timeout=60)
        await deferLater(reactor, 1.0)  # anything sent twice would have arrived by now
        events = messages(daemon, marker)
        assert sorted(e["unmapped"]["cef"]["cs1"] for e in events) == sorted(f"{marker}-{i}" for i in range(200))
        for event in events:
            assert (event["class_uid"], event["dst_endpoint"]["port"], event["action_id"]) == (4001, 443, 2)
            assert event["metadata"]["log_source"] == "syslog"
            assert event["metadata"]["product"] == {"vendor_name": "Acme", "name": "FW", "version": "2.1"}
    finally:
        if relay is not None:
            await deferToThread(relay.stop)
        await daemon.stop()


def relayed_line(marker: str, number: int) -> tuple[str, int]:
    """
    Line C{number} of a relay test and the OCSF class it must become: a CEF logon, CEF firewall
    traffic or a plain message, in turn; C{marker-number} identifies it in the event.
    """
    kind = number % 3
    if kind == 0:
        return f"{CEF_LINE} cs2={marker}-{number}", 3002
    if kind == 1:
        return (f"CEF:0|Acme|FW|2.1|deny|Connection denied|5|src=10.0.{number}.1 dst=10.1.0.9 spt={1000 + number} "
                f"dpt=443 act=deny cs1={marker}-{number}", 4001)
    return f"sshd[42]: plain message {marker}-{number}", 0


@pytest_twisted.ensureDeferred
async def test_rsyslog_omfwd_tcp_octet_counted_tcp_lf_and_udp(reactor: Any, tmp_path: Path) -> None:
    """A private rsyslogd following a file forwards it with omfwd over TCP octet-counted (RFC 5424), TCP
    LF-framed and UDP (omfwd's default format), one listener (and tenant) each: every line arrives once per
    path as its OCSF class, also after the TCP connections sat idle and the daemon closed them."""
    tcp = "tcp:0:interface=127.0.0.1"
    entries = [SyslogListenerSettings(name="octet", endpoint=tcp, tenant="octet", idle_timeout=1.0),
               SyslogListenerSettings(name="lf", endpoint=tcp, tenant="lf", idle_timeout=1.0),
               SyslogListenerSettings(name="udp", udp_port=0, tenant="udp")]
    daemon = await start_daemon(reactor, daemon_settings(tmp_path / "state", syslog=listeners(*entries)))
    relay = None
    try:
        port = {entry.name: daemon.daemon.address(f"syslog-{entry.name}").port for entry in entries}
        forwards = [Forward(port["octet"], "tcp", "octet-counted", "RSYSLOG_SyslogProtocol23Format"),
                    Forward(port["lf"], "tcp"), Forward(port["udp"], "udp")]
        relay = await deferToThread(start_rsyslog, tmp_path / "rsyslog", forwards)
        marker = uuid.uuid4().hex
        lines = dict(relayed_line(marker, number) for number in range(60))

        def per_tenant() -> dict[str, list[dict[str, Any]]]:
            events = messages(daemon, marker, tenant=None)
            return {tenant: [e for e in events if e["metadata"]["tenant_uid"] == tenant] for tenant in port}

        def arrived(count: int) -> bool:
            return all(len(events) >= count for events in per_tenant().values())

        def append(numbers: range) -> None:
            with relay.source.open("a") as source:
                source.write("".join(f"{line}\n" for line in list(lines)[numbers.start:numbers.stop]))

        append(range(0, 30))
        await wait_for(lambda: arrived(30), reactor)
        for name in ("octet", "lf"):  # rsyslog keeps its connections open: the daemon closes them idle
            for _ in range(100):
                if await daemon.metric("aisoc_ingest_syslog_connections_closed_total", listener=name,
                                       reason="idle") >= 1:
                    break
                await deferLater(reactor, 0.1)
        append(range(30, 60))
        await wait_for(lambda: arrived(60), reactor)
        await deferLater(reactor, 1.0)  # anything sent twice would have arrived by now
        for tenant, events in per_tenant().items():
            got = sorted((re.search(rf"{marker}-(\d+)", e["raw_data"]).group(0), e["class_uid"])  # type: ignore[union-attr]
                         for e in events)
            assert got == sorted((re.search(rf"{marker}-(\d+)", line).group(0), cls)  # type: ignore[union-attr]
                                 for line, cls in lines.items()), tenant
            for event in events:
                assert event["metadata"]["log_source"] == "syslog"
        for name in ("octet", "lf"):
            assert await daemon.metric("aisoc_ingest_syslog_connections_closed_total", listener=name, reason="idle") >= 1
            assert await daemon.metric("aisoc_ingest_syslog_connections_total", listener=name) >= 2
    finally:
        if relay is not None:
            print(await deferToThread(relay.stop))
        await daemon.stop()


def test_a_batch_counts_in_the_daemons_work_until_it_is_durable_or_dropped() -> None:
    """
    Each batch a listener publishes is in the daemon's in-flight work (what shutdown drains) from
    its submission until its delivery ends, durable or refused, and no longer after.
    """
    intake = FakeIntake()
    inflight = InFlight(Clock())
    settings = SyslogListenerSettings(name="t", endpoint="tcp:0", tenant="acme")
    listener = SyslogIntake(settings, intake, SyslogMetrics(CollectorRegistry()), inflight, 100)  # type: ignore[arg-type]
    listener.submit([b"<13>May  8 09:00:00 h a: 1"])
    listener.submit([b"<13>May  8 09:00:00 h a: 2", b"<13>May  8 09:00:00 h a: 3"])
    assert (len(inflight), listener.in_flight) == (2, 3)
    intake.deliveries[0][2].callback(1)
    assert (len(inflight), listener.in_flight) == (1, 2)
    intake.deliveries[1][2].errback(sink_unavailable("down"))
    assert (len(inflight), listener.in_flight) == (0, 0)
