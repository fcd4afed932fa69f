"""
How the daemon is put together: one composition whose worker variant differs by the role it is
given (built, not started), and the capabilities sinks declare (which the wiring and the status page
ask for instead of looking for attributes).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from aisoc_inboxd.sinks import IEventLog, IKafkaDestination, ISaturating, ISpooling
from aisoc_inboxd.sinks.file import FileSink
from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.config import Settings, load_settings
from aisoc_inboxd.deliveries import DeliveryLog
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.service import InboxDaemon
from aisoc_inboxd.sinks.kafka import KafkaSink
from aisoc_inboxd.wiring import build_daemon, build_syslog
from aisoc_inboxd.workers.role import WorkerRole
from tests.support.daemon import daemon_settings
from tests.test_syslog_listeners import FakeIntake

SYSLOG = {"name": "tcp", "endpoint": "tcp:0:interface=127.0.0.1", "tenant": "acme"}


def settings_with_syslog(state_dir: Path, workers: int = 1) -> Settings:
    base = daemon_settings(state_dir)
    syslog = load_settings(None, {"AISOC_INBOX_SYSLOG_LISTENERS": json.dumps([SYSLOG])}).syslog
    return dataclasses.replace(base, syslog=syslog, workers=workers)


def build(settings: Settings, role: WorkerRole | None = None) -> InboxDaemon:
    catalog = TemplateCatalog.load(settings.templates.directories, settings.templates.allowed)
    return build_daemon(settings, catalog, reactor, role=role, read_settings=lambda: settings)


def no_lease(tenant_id: str, want: int) -> Deferred[tuple[int, float]]:
    raise AssertionError("nothing is admitted in a daemon that is only built")


def services(daemon: InboxDaemon) -> set[str]:
    return {service.name for service in daemon}


def test_the_daemon_serves_every_listener_and_runs_the_reloads_and_the_daemon_only_services(tmp_path: Path) -> None:
    """Without a role the daemon has the HTTP, syslog, metrics and admin listeners, a worker
    supervisor once there are workers, the reloads SIGHUP asks for, the sweeper and the IMAP poller."""
    daemon = build(settings_with_syslog(tmp_path, workers=2))
    assert [listener.name for listener in daemon.listeners] == ["http", "syslog-tcp", "metrics", "admin"]
    assert daemon.supervisor is not None and daemon.reloads is not None
    assert {"idempotency-sweeper", "imap-poller", "workers"} <= services(daemon)
    assert "metrics-snapshot" not in services(daemon)


def test_a_worker_is_the_same_composition_given_its_role(tmp_path: Path) -> None:
    """With a role the process serves the daemon's HTTP and syslog sockets only, keeps its event log
    in worker-N/, snapshots its metrics, and has no supervisor, reloads, sweeper or IMAP poller."""
    settings = settings_with_syslog(tmp_path, workers=2)
    worker = build(settings, WorkerRole(1, {"http": 7, "syslog-tcp": 8}, no_lease, acks=None,  # type: ignore[arg-type]
                                        deliveries=DeliveryLog(settings.deliveries, 1)))
    assert [listener.name for listener in worker.listeners] == ["http", "syslog-tcp"]
    assert worker.supervisor is None and worker.reloads is None
    assert "metrics-snapshot" in services(worker)
    assert not {"idempotency-sweeper", "imap-poller", "workers"} & services(worker)
    assert IEventLog(worker.sink).path.parent.name == "worker-1"


def test_the_kafka_sink_declares_saturation_a_spool_and_its_destination() -> None:
    """The Kafka sink declares that it can be saturated, spools outages and produces to Kafka."""
    for interface in (ISaturating, ISpooling, IKafkaDestination):
        assert verifyClass(interface, KafkaSink)
    assert not IEventLog.implementedBy(KafkaSink)


def test_the_file_sink_declares_an_event_log_only(tmp_path: Path) -> None:
    """The file sink provides an event log (a path and its disk) and neither saturation nor a spool."""
    sink = FileSink(tmp_path, Clock(), registry=CollectorRegistry())
    assert verifyObject(IEventLog, sink)
    assert not ISaturating.providedBy(sink) and not ISpooling.providedBy(sink)
    assert not IKafkaDestination.providedBy(sink)


class FullSink:
    """
    A sink that is full and says so, declaring it or not.
    """

    saturated = True
    running = True

    def unsaturated(self) -> Deferred[None]:
        return Deferred()


@implementer(ISaturating)
class DeclaredFullSink(FullSink):
    pass


def tcp_syslog_reading(sink: Any, tmp_path: Path) -> str:
    """
    Send one frame to the TCP syslog listener built for C{sink}; whether its connection then reads on.
    """
    reactor = MemoryReactorClock()
    intake: Any = FakeIntake()
    [listener] = build_syslog(settings_with_syslog(tmp_path), intake, Metrics(), InFlight(reactor), sink, reactor, None)
    listener.listen()
    [(_, factory, _, _)] = reactor.tcpServers
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
    protocol = factory.buildProtocol(transport.getPeer())
    protocol.makeConnection(transport)
    protocol.dataReceived(b"<13>May  8 09:00:00 h a: 1\n")
    return transport.producerState


def test_a_sink_declaring_saturation_pauses_tcp_syslog(tmp_path: Path) -> None:
    """TCP syslog stops reading while a sink that provides ISaturating is full; a sink that only has the
    attributes, without declaring them, is not asked."""
    assert tcp_syslog_reading(DeclaredFullSink(), tmp_path) == "paused"
    assert tcp_syslog_reading(FullSink(), tmp_path) == "producing"
