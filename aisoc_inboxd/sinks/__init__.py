"""
Sinks make published events durable. The pipeline hands a sink a batch of serialized OCSF events and
waits on the Deferred it returns; no sender is acknowledged before it fires.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from twisted.internet.defer import Deferred


@dataclass(frozen=True)
class SinkRecord:
    """
    One OCSF event ready for a sink.

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
