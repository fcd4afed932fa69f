"""
How the daemon is put together: the capabilities sinks declare (which the wiring and the status page
ask for instead of looking for attributes).
"""
from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from zope.interface.verify import verifyClass, verifyObject

from aisoc_inboxd.sinks import IEventLog, IKafkaDestination, ISaturating, ISpooling
from aisoc_inboxd.sinks.file import FileSink
from aisoc_inboxd.sinks.kafka import KafkaSink


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
