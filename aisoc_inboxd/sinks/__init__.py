"""
Sinks make published events durable. The pipeline hands a sink a batch of serialized OCSF events and
waits on the Deferred it returns; no sender is acknowledged before it fires.

What a sink can do beyond L{EventSink} it declares with C{@implementer} (L{ISaturating},
L{ISpooling}, L{IEventLog}, L{IKafkaDestination}); callers ask C{ISaturating(sink, None)} or
C{ISpooling.providedBy(sink)} rather than look for attributes.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface


class SinkRecord(NamedTuple):
    """
    One OCSF event ready for a sink: a named tuple, which costs a third of a frozen dataclass to
    make, and one is made per event. Its first four fields are what the records of one batch share
    (C{record[:4]}): a sink makes what depends on them alone (Kafka headers, the spool's header
    line) once per run of records with equal ones.

    @ivar value: the event as compact UTF-8 JSON, without a trailing newline.
    @ivar received_at: intake time, epoch seconds.
    """

    tenant_id: str
    template_id: str
    route: str
    received_at: float
    value: bytes


class SinkUnavailable(Exception):
    """
    The sink cannot make these events durable now; the sender gets a 503 and retries.
    """


class EventSink(Protocol):
    """
    Sinks are Services: started before the listeners bind, stopped after they close.
    """

    #: the service's name, which the status page shows as the sink's type
    name: str

    def startService(self) -> None: ...

    def stopService(self) -> Deferred[None] | None: ...

    def write(self, records: Sequence[SinkRecord]) -> Deferred[None]:
        """
        Fire once every record is durable (fsynced, or acknowledged by Kafka with C{acks=all}); fail
        with L{SinkUnavailable} when they cannot be made durable.
        """

    def not_ready(self) -> str | None:
        """
        Why the sink would refuse a write now (for C{/readyz} and the status page: no path, no
        secret), or None when it can accept events.
        """


class ISaturating(Interface):
    """
    A sink with a ceiling of events in flight (the Kafka sink): intakes that can stop reading (TCP
    syslog) wait for room instead of reading events the sink would refuse; those that cannot (UDP
    syslog) drop and count what arrives meanwhile (C{reason="saturated"}).
    """

    saturated = Attribute("bool: whether a write would be refused now for being over the ceiling")
    running = Attribute("bool: whether the sink is started (a stopped one will not make room)")

    def unsaturated() -> Deferred[None]:
        """
        Fire once the sink is below its ceiling (at once when it is already).
        """


class ISpooling(Interface):
    """
    A sink keeping what its destination cannot take now in an outage spool on disk (the Kafka sink).
    """

    spool = Attribute("the spool, read by the status page: its bytes, segments, oldest_received_at "
                      "and disk (a DiskHealth)")


class IEventLog(Interface):
    """
    A sink appending events to a file in a directory of its own (the file sink).
    """

    path = Attribute("the live file's Path")
    disk = Attribute("the directory's DiskHealth")


class IKafkaDestination(Interface):
    """
    A sink producing to Kafka: the status page names the topic and the brokers it starts from.
    """

    topic = Attribute("str: the topic events are produced to")
    bootstrap_servers = Attribute("str: the configured bootstrap servers (never the rest of the config)")
