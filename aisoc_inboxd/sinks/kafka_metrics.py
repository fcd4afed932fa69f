"""
Prometheus collectors of the Kafka sink and its outage spool, on the registry the daemon passes in.

Counters are bumped on the reactor thread as delivery reports arrive; the gauges are read at scrape
time (the metrics endpoint may render on its own thread), from plain attributes.
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.internet.interfaces import IReactorTime

from aisoc_inboxd.sinks.spool import Spool


class KafkaSinkMetrics:
    """
    The sink's collectors, registered once on C{registry}.

    @param queue_length: messages librdkafka holds, waiting to be sent or acknowledged.
    """

    def __init__(self, registry: CollectorRegistry, spool: Spool,
                 queue_length: Callable[[], int], clock: IReactorTime) -> None:
        self.events_produced = Counter(
            "aisoc_ingest_kafka_events_produced", "Events acknowledged by Kafka (acks=all).",
            registry=registry)
        self.delivery_errors = Counter(
            "aisoc_ingest_kafka_delivery_errors",
            "Events Kafka did not acknowledge (they went to the outage spool).",
            registry=registry)
        self.queue_full = Counter(
            "aisoc_ingest_kafka_queue_full",
            "Times a write found the producer's queue full (queue.buffering.max.messages or .kbytes) and "
            "waited for delivery reports to make room; no outage, the broker is slower than the intake.",
            registry=registry)
        Gauge("aisoc_ingest_spool_bytes", "Bytes in the outage spool.",
              registry=registry).set_function(lambda: spool.bytes)
        Gauge("aisoc_ingest_spool_segments", "Segment files in the outage spool.",
              registry=registry).set_function(lambda: spool.segments)

        def oldest_age() -> float:
            oldest = spool.oldest_received_at
            return 0.0 if oldest is None else max(0.0, clock.seconds() - oldest)

        Gauge("aisoc_ingest_spool_oldest_age_seconds",
              "Age of the oldest event waiting in the outage spool; 0 when it is empty.",
              registry=registry).set_function(oldest_age)
        Gauge("aisoc_ingest_kafka_queue_length",
              "Messages in the producer's queue, not yet acknowledged.",
              registry=registry).set_function(queue_length)
