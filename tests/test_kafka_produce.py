"""
The Kafka sink's positional C{produce()} call (L{_DeliveryProducer}'s loop) against its reference,
L{produce_message} (the same message by keyword), on the real tansu broker: the same records through
each, to a topic each, must arrive with the same key, value, headers and partition, and each with a
successful delivery report. Records: every fixture file under tests/ as a value, and
hypothesis-generated batches (tenants, templates, routes, intake times and values).
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Sequence

from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisoc_inboxd.sinks import SinkRecord
from aisoc_inboxd.sinks.kafka import _DeliveryProducer, _Send, message_headers, produce_message
from tests.support.kafka import Consumed, KafkaEnv, consume, create_topic, kafka, tansu_binary  # noqa: F401

FIXTURES = sorted(path for path in (Path(__file__).parent / "fixtures").rglob("*") if path.is_file())
FAST, REFERENCE = "produced-positionally", "produced-by-keyword"


def _producer(kafka: KafkaEnv) -> Producer:
    return Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": "5"})


def _arrived(kafka: KafkaEnv, topic: str, values: set[bytes]) -> dict[bytes, Consumed]:
    """
    The messages of C{topic} by value, once every one of C{values} arrived.
    """
    got = consume(kafka.bootstrap, topic, lambda got: values <= {c.value for c in got}, linger=0.0)
    return {c.value: c for c in got if c.value in values}


def assert_produced_alike(kafka: KafkaEnv, records: Sequence[SinkRecord]) -> None:
    """
    C{records} through the sink's loop to L{FAST} and one by one through L{produce_message} to
    L{REFERENCE}, keyed and with headers as the sink makes them: both arrive alike, all acknowledged.
    """
    for topic in (FAST, REFERENCE):
        create_topic(kafka.bootstrap, topic)
    delivery = _DeliveryProducer({}, FAST, None, None, lambda: None)  # type: ignore[arg-type]
    delivery._producer = fast = _producer(kafka)  # not started: this thread polls, by flush()
    send = _Send(records, [])
    assert delivery._produce(send, 0) is None
    reference, reports = _producer(kafka), []
    for record in records:
        produce_message(reference, REFERENCE, record.value, record.tenant_id.encode(), message_headers(record),
                        lambda error, message: reports.append(error))
    assert (fast.flush(30), reference.flush(30)) == (0, 0)
    assert (send.produced, send._acknowledged, send._failures) == (len(records), len(records), [])
    assert reports == [None] * len(records)

    values = {record.value for record in records}
    fast_got, reference_got = _arrived(kafka, FAST, values), _arrived(kafka, REFERENCE, values)
    assert fast_got == reference_got
    assert all(fast_got[record.value].key == record.tenant_id.encode() for record in records)


def test_every_fixture_is_produced_as_by_keyword(kafka: KafkaEnv) -> None:
    """Every fixture file, as the value of records of three tenants and two intake times, arrives alike."""
    records = [SinkRecord(f"tenant-{n % 3}", "generic-json", "webhook", 1778230800.0 + n % 2, path.read_bytes())
               for n, path in enumerate(FIXTURES)]
    assert len({r.value for r in records}) == len(records)
    assert_produced_alike(kafka, records)


_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_records = st.lists(st.tuples(_names, st.sampled_from(["generic-json", "splunk-hec"]),
                              st.sampled_from(["webhook", "hec"]),
                              st.floats(0, 4102444800, allow_nan=False), st.binary(max_size=300)),
                    min_size=1, max_size=40)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_records)
def test_generated_batches_are_produced_as_by_keyword(kafka: KafkaEnv, drawn: list[Any]) -> None:
    """Generated records (each value made unique, so it names its message) arrive alike."""
    batch = uuid.uuid4().bytes
    records = [SinkRecord(tenant, template, route, received_at, batch + n.to_bytes(2, "big") + value)
               for n, (tenant, template, route, received_at, value) in enumerate(drawn)]
    assert_produced_alike(kafka, records)
