"""
Syslog listeners: the protocols driven directly (StringTransport, datagrams) for batching, oversized
frames and back-pressure, then real senders against the real daemon — util-linux logger (TCP octet
counting RFC 5424, UDP RFC 3164), Python's SysLogHandler (UDP and TCP), mutual TLS, and a private
syslog-ng forwarding a file of CEF lines over TCP and over TLS; each line arrives once as valid OCSF.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet import ssl
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread

from aisoc_inboxd.config import ConfigError, SyslogListenerSettings, SyslogSettings, load_settings
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.metrics import SyslogMetrics
from aisoc_inboxd.syslog.protocol import SyslogDatagramProtocol, SyslogIntake, SyslogStreamProtocol
from aisoc_inboxd.web.errors import unavailable
from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon, wait_for
from tests.support.ocsf import assert_valid_ocsf
from tests.support.syslog_ng import start_syslog_ng, syslog_destination
from tests.support.tls import TlsFiles, make_tls_files

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


class FakeSink:
    def __init__(self) -> None:
        self.saturated = False
        self.waiter: Deferred[None] | None = None

    def unsaturated(self) -> Deferred[None]:
        if not self.saturated:
            return succeed(None)
        self.waiter = Deferred()
        return self.waiter


def make_listener(max_in_flight: int = 100, sink: FakeSink | None = None, max_frame_bytes: int = 1024
                  ) -> tuple[SyslogIntake, FakeIntake, SyslogMetrics]:
    intake = FakeIntake()
    metrics = SyslogMetrics(CollectorRegistry())
    settings = SyslogListenerSettings(name="t", endpoint="tcp:0", tenant="acme", max_frame_bytes=max_frame_bytes)
    listener = SyslogIntake(settings, intake, metrics, InFlight(Clock()), max_in_flight, sink)  # type: ignore[arg-type]
    return listener, intake, metrics


def value(metrics: SyslogMetrics, name: str, *labels: str) -> float:
    return getattr(metrics, name).labels("t", *labels)._value.get()


def connect(listener: SyslogIntake) -> tuple[SyslogStreamProtocol, StringTransport]:
    protocol = SyslogStreamProtocol(listener)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


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


def test_oversized_frame_is_dropped_and_counted_and_the_connection_kept() -> None:
    """A frame over max_frame_bytes is counted as oversized, the connection stays, the next frame is delivered."""
    listener, intake, metrics = make_listener(max_frame_bytes=64)
    protocol, transport = connect(listener)
    protocol.dataReceived(octets("<13>" + "x" * 100) + b"<13>May  8 09:00:00 h app: fine\n")
    assert value(metrics, "oversized") == 1
    assert not transport.disconnecting
    assert [records[0].data["message"] for _, records, _ in intake.deliveries] == ["fine"]


def test_malformed_cef_frame_is_dropped_and_counted() -> None:
    """A frame whose CEF is malformed is counted and not delivered; the frames beside it are."""
    listener, intake, metrics = make_listener()
    protocol, _ = connect(listener)
    protocol.dataReceived(b"<13>May  8 09:00:00 h CEF:0|broken\n<13>May  8 09:00:00 h app: ok\n")
    assert value(metrics, "malformed") == 1
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
    sink.saturated = False
    assert sink.waiter is not None
    sink.waiter.callback(None)
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
    assert value(metrics, "oversized") == 1


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
    intake.deliveries[0][2].errback(unavailable("spool full"))
    assert value(metrics, "dropped", "unavailable") == 1
    assert listener.in_flight == 0


def test_listener_settings_are_checked(tmp_path: Path) -> None:
    """A listener without a tenant, or with both an endpoint and a UDP port, stops start-up naming the key."""
    config = tmp_path / "c.yaml"
    config.write_text("syslog:\n  listeners:\n    - {name: x, endpoint: 'tcp:1', udp_port: 2, tenant: t}\n")
    with pytest.raises(ConfigError, match=r"syslog\.listeners\[0\]\.endpoint: give either"):
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


def messages(daemon: RunningDaemon, marker: str) -> list[dict[str, Any]]:
    """
    The events in the log whose raw data holds C{marker}, read while the sink may be mid-write (a
    last line without its newline is not complete yet).
    """
    settings = daemon.settings
    path = Path(settings.state_dir) / settings.sink.file.directory / "events.ndjson"
    lines = path.read_text().split("\n")[:-1] if path.exists() else []
    found = [e for e in map(json.loads, lines) if marker in e["raw_data"]]
    for event in found:
        assert_valid_ocsf(event)
        assert event["metadata"]["tenant_uid"] == "acme"
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
    metrics = await inboxd.metrics()
    assert 'aisoc_ingest_syslog_connections_total{listener="tcp"} 2.0' in metrics
    assert 'aisoc_ingest_syslog_events_total{listener="tcp"} 2.0' in metrics


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
    """logging.handlers.SysLogHandler over UDP and over TCP (LF-framed) delivers each record once."""
    marker = uuid.uuid4().hex
    udp = logging.handlers.SysLogHandler(("127.0.0.1", inboxd.daemon.address("syslog-udp").port),
                                         socktype=socket.SOCK_DGRAM)
    tcp = logging.handlers.SysLogHandler(("127.0.0.1", inboxd.daemon.address("syslog-tcp").port),
                                         socktype=socket.SOCK_STREAM)
    tcp.append_nul = False  # the default NUL terminator is no RFC 6587 framing: end records with LF
    tcp.setFormatter(logging.Formatter("%(message)s\n"))
    await deferToThread(send_with_handler, udp, [f"udp {i} {marker}" for i in range(5)])
    await deferToThread(send_with_handler, tcp, [f"tcp {i} {marker}" for i in range(5)] + [f"{CEF_LINE} cs2={marker}"])
    await wait_for(lambda: len(messages(inboxd, marker)) == 11, reactor)
    texts = sorted(e["message"] for e in messages(inboxd, marker) if e["class_uid"] == 0)
    assert texts == sorted([f"udp {i} {marker}" for i in range(5)] + [f"tcp {i} {marker}" for i in range(5)])
    assert sum(e["class_uid"] == 3002 for e in messages(inboxd, marker)) == 1


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
