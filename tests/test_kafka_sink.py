"""
The Kafka sink against a real Kafka-protocol broker (tansu), with outages made by cutting a TCP relay
between the sink and the broker, and once by killing the broker itself.

Delivery is at-least-once: a message whose acknowledgement was cut off is spooled and sent again, so
the outage tests compare the set of C{metadata.uid}s that arrived (what a consumer dedupes on) and
check that nothing is missing, not that nothing is repeated.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import pytest_twisted
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs

from aisoc_inboxd.sinks import SinkRecord, SinkUnavailable
from aisoc_inboxd.sinks import kafka as kafka_sink_module
from aisoc_inboxd.sinks.kafka import KafkaSink, build_producer_config
from aisoc_inboxd.sinks.spool import Spool, decode_records
from tests.support.filesystem import FailingDisk, Filler, mount_small_tmpfs, named
from tests.support.kafka import Consumed, KafkaEnv, create_topic, kafka, tansu_binary  # noqa: F401

TENANTS = ("tenant-a", "tenant-b", "tenant-c")


def make_record(tenant: str, n: int) -> SinkRecord:
    event = {"class_uid": 2004, "message": f"event {n}",
             "metadata": {"uid": str(uuid.uuid4()), "version": "1.8.0"}}
    return SinkRecord(tenant_id=tenant, template_id="generic-webhook", route="webhook",
                      received_at=time.time(), value=json.dumps(event).encode())


def make_batch(size: int, start: int = 0) -> list[SinkRecord]:
    return [make_record(TENANTS[i % len(TENANTS)], i) for i in range(start, start + size)]


def uid(record: SinkRecord) -> str:
    return str(json.loads(record.value)["metadata"]["uid"])


class Harness:
    """
    A sink over a spool directory, tuned so an outage is noticed in a few seconds.
    """

    def __init__(self, kafka: KafkaEnv, spool_dir: Path, reactor: Any,
                 spool_bytes: int = 8 * 1024 * 1024, config: dict[str, str] | None = None,
                 **options: Any) -> None:
        """
        @param config: librdkafka settings added to the harness's own.
        """
        self.spool = Spool(spool_dir, spool_bytes, reactor, segment_bytes=4096)
        self.registry = CollectorRegistry()
        self.sink = KafkaSink(kafka.topic, {"bootstrap.servers": kafka.bootstrap,
                                            "message.timeout.ms": "3000", **(config or {})},
                              self.spool, reactor, **{"flush_timeout": 2.0,
                                                      "registry": self.registry,
                                                      "probe_timeout": 1.0, "retry_min": 0.2,
                                                      "retry_max": 1.0, **options})

    def metric(self, name: str) -> float | None:
        return self.registry.get_sample_value(name)


@pytest.fixture
def harnesses(kafka: KafkaEnv, tmp_path: Path, reactor: Any) -> Iterator[Callable[..., Harness]]:
    """
    Build started sinks over C{tmp_path/spool}; whatever is still running is stopped afterwards.
    """
    made: list[Harness] = []

    def build(**options: Any) -> Harness:
        harness = Harness(kafka, tmp_path / "spool", reactor, **options)
        harness.sink.startService()
        made.append(harness)
        return harness

    yield build
    for harness in made:
        if harness.sink.running:
            pytest_twisted.blockon(harness.sink.stopService().addTimeout(60, reactor))


async def wait_until(reactor: Any, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = reactor.seconds() + timeout
    while not condition():
        assert reactor.seconds() < deadline, "condition not reached in time"
        await deferLater(reactor, 0.1)


async def consume_uids(kafka: KafkaEnv, expected: set[str]) -> list[Consumed]:
    return await deferToThread(kafka.consume, lambda got: expected <= {c.uid for c in got})


@pytest_twisted.ensureDeferred
async def test_events_arrive_once_with_key_and_headers(reactor: Any, kafka: KafkaEnv,
                                                       harnesses: Callable[..., Harness]) -> None:
    """Each written event reaches the topic once, keyed by tenant, with routing headers, in order per tenant."""
    harness = harnesses()
    assert (harness.sink.topic, harness.sink.bootstrap_servers) == (kafka.topic, kafka.bootstrap)  # the status page's
    records = make_batch(30)
    await harness.sink.write(records[:15])
    await harness.sink.write(records[15:])

    got = await consume_uids(kafka, {uid(r) for r in records})

    assert sorted(c.uid for c in got) == sorted(uid(r) for r in records)
    by_uid = {uid(r): r for r in records}
    for message in got:
        record = by_uid[message.uid]
        assert message.key == record.tenant_id.encode()
        assert message.headers["tenant"] == record.tenant_id.encode()
        assert message.headers["template"] == b"generic-webhook"
        assert message.headers["route"] == b"webhook"
        assert message.headers["intake_time"].endswith(b"Z")
        assert message.value == record.value
    for tenant in TENANTS:
        assert ([c.uid for c in got if c.key == tenant.encode()]
                == [uid(r) for r in records if r.tenant_id == tenant])
    assert harness.spool.is_empty
    assert harness.metric("aisoc_ingest_kafka_events_produced_total") == 30


@pytest_twisted.ensureDeferred
async def test_relay_cut_mid_load_spools_then_drains(reactor: Any, kafka: KafkaEnv,
                                                     harnesses: Callable[..., Harness]) -> None:
    """With the path to Kafka cut mid-load every write still succeeds through the spool, and every event arrives once it is back."""
    harness = harnesses()
    batches = [make_batch(5, start=5 * i) for i in range(40)]
    writes: list[Deferred[None]] = []
    for i, batch in enumerate(batches):
        if i == 10:
            kafka.relay.cut()
        writes.append(harness.sink.write(batch))
        await deferLater(reactor, 0.02)
    await gatherResults(writes, consumeErrors=True)

    assert harness.spool.segments > 0
    assert (harness.metric("aisoc_ingest_spool_bytes") or 0) > 0
    assert (harness.metric("aisoc_ingest_spool_segments") or 0) > 0
    assert harness.metric("aisoc_ingest_spool_oldest_age_seconds") is not None
    assert harness.metric("aisoc_ingest_kafka_queue_length") is not None
    assert harness.sink.not_ready() is None

    kafka.relay.reopen()
    await wait_until(reactor, lambda: harness.spool.is_empty)
    expected = {uid(r) for batch in batches for r in batch}
    got = await consume_uids(kafka, expected)
    assert {c.uid for c in got} == expected
    assert harness.metric("aisoc_ingest_spool_segments") == 0
    assert not list((harness.spool.directory).iterdir())


@pytest_twisted.ensureDeferred
async def test_spool_full_refuses_and_keeps_what_it_accepted(
        reactor: Any, kafka: KafkaEnv, harnesses: Callable[..., Harness]) -> None:
    """Once the spool is full during an outage a write fails with SinkUnavailable, and every accepted event still arrives."""
    harness = harnesses(spool_bytes=4096)
    kafka.relay.cut()
    accepted: list[SinkRecord] = []
    with pytest.raises(SinkUnavailable):
        for i in range(200):
            batch = make_batch(3, start=3 * i)
            await harness.sink.write(batch)
            accepted += batch
    assert accepted
    assert re.fullmatch(r"Kafka is unreachable and the spool is full \(\d+ of 4096 bytes\)", harness.sink.not_ready() or "")

    kafka.relay.reopen()
    await wait_until(reactor, lambda: harness.spool.is_empty)
    assert harness.sink.not_ready() is None
    late = make_batch(3, start=10_000)
    await harness.sink.write(late)
    expected = {uid(r) for r in accepted + late}
    got = await consume_uids(kafka, expected)
    assert {c.uid for c in got} == expected


@pytest_twisted.ensureDeferred
async def test_stop_spools_in_flight_and_next_run_drains(
        reactor: Any, kafka: KafkaEnv, harnesses: Callable[..., Harness]) -> None:
    """Events in flight at a stop during an outage are spooled, and a new sink over the same spool delivers them."""
    first = harnesses(flush_timeout=1.0)
    kafka.relay.cut()
    produced = make_batch(10)
    in_flight = first.sink.write(produced)   # handed to the producer before the cut is noticed
    spooled = make_batch(10, start=10)
    await deferLater(reactor, 0.5)
    await first.sink.write(spooled)
    await first.sink.stopService()
    await in_flight
    assert first.spool.segments > 0
    assert (first.metric("aisoc_ingest_kafka_delivery_errors_total") or 0) >= len(produced)

    kafka.relay.reopen()
    second = harnesses()
    await wait_until(reactor, lambda: second.spool.is_empty)
    expected = {uid(r) for r in produced + spooled}
    got = await consume_uids(kafka, expected)
    assert expected <= {c.uid for c in got}


@pytest_twisted.ensureDeferred
async def test_a_send_that_times_out_is_spooled_record_for_record(
        reactor: Any, kafka: KafkaEnv, harnesses: Callable[..., Harness]) -> None:
    """
    The delivery reports of a send come back through one callback per send and are matched to
    their records by key and value: when they all fail, the spool gets every record once, in order,
    records equal in key and value (a sender repeating itself) and tenants spread over partitions
    included.
    """
    harness = harnesses()
    kafka.relay.cut()
    batch = make_batch(30)
    records = batch + batch[:5] + [make_record("tenant-a", 99)] * 3
    await harness.sink.write(records)
    await harness.sink.stopService()
    spooled = [record for segment in sorted(harness.spool.directory.glob("*.seg"))
               for record in decode_records(segment.read_bytes())[0]]
    assert spooled == records
    assert harness.metric("aisoc_ingest_kafka_delivery_errors_total") == len(records)
    assert not harness.metric("aisoc_ingest_kafka_events_produced_total")


@pytest_twisted.ensureDeferred
async def test_stop_flushes_what_is_in_flight(reactor: Any, kafka: KafkaEnv,
                                              harnesses: Callable[..., Harness]) -> None:
    """stopService waits for Kafka to acknowledge the events in flight, so they arrive and nothing is spooled."""
    harness = harnesses()
    records = make_batch(20)
    written = harness.sink.write(records)
    await harness.sink.stopService()
    await written
    assert not list(harness.spool.directory.iterdir())
    got = await consume_uids(kafka, {uid(r) for r in records})
    assert {c.uid for c in got} == {uid(r) for r in records}


@pytest_twisted.ensureDeferred
async def test_broker_killed_and_restarted_recovers(reactor: Any, kafka: KafkaEnv,
                                                    harnesses: Callable[..., Harness]) -> None:
    """After the broker process is killed and restarted the sink drains its spool and publishes again by itself."""
    harness = harnesses()
    await harness.sink.write(make_batch(5))
    kafka.broker.kill()
    during = make_batch(5, start=5)
    await harness.sink.write(during)
    await wait_until(reactor, lambda: not harness.spool.is_empty)

    kafka.broker.start()
    await deferToThread(create_topic, kafka.bootstrap, kafka.topic)
    after = make_batch(5, start=10)
    await harness.sink.write(after)
    await wait_until(reactor, lambda: harness.spool.is_empty)
    expected = {uid(r) for r in during + after}
    got = await consume_uids(kafka, expected)
    assert expected <= {c.uid for c in got}


@pytest_twisted.ensureDeferred
async def test_a_fatal_error_raised_by_poll_leaves_the_sink_working(reactor: Any, kafka: KafkaEnv,
                                                                   harnesses: Callable[..., Harness],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """librdkafka raises a fatal error from poll() (seen when a restarted broker no longer knows the
    idempotent producer); the poll thread must survive it, so writes settle and stop finishes
    instead of hanging for good. The raise is injected: a real fatal error cannot be had on demand."""
    raised: list[bool] = []

    class RaisesOnce(kafka_sink_module.Producer):  # type: ignore[misc,name-defined]
        def poll(self, timeout: float = -1) -> int:
            if not raised:
                raised.append(True)
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_PRODUCER_ID, "injected", fatal=True))
            return int(super().poll(timeout))

    monkeypatch.setattr(kafka_sink_module, "Producer", RaisesOnce)
    harness = harnesses()
    records = make_batch(5)
    await harness.sink.write(records).addTimeout(30, reactor)
    assert raised
    await harness.sink.stopService().addTimeout(30, reactor)
    got = await consume_uids(kafka, {uid(r) for r in records})
    assert {uid(r) for r in records} <= {c.uid for c in got}


@pytest_twisted.ensureDeferred
async def test_in_flight_ceiling(reactor: Any, harnesses: Callable[..., Harness]) -> None:
    """Past max_in_flight the sink reports saturation and refuses writes until events settle."""
    harness = harnesses(max_in_flight=5)
    first = harness.sink.write(make_batch(5))
    assert harness.sink.saturated
    with pytest.raises(SinkUnavailable):
        await harness.sink.write(make_batch(1))
    await first
    await harness.sink.unsaturated()
    assert not harness.sink.saturated


@pytest_twisted.ensureDeferred
async def test_the_in_flight_ceiling_is_shared_between_worker_processes(
        reactor: Any, harnesses: Callable[..., Harness]) -> None:
    """With workers: 2 each process's sink takes half the daemon's ceiling, so the daemon holds no
    more events in memory than one process would."""
    harness = harnesses(max_in_flight=10, processes=2)
    first = harness.sink.write(make_batch(4))
    assert not harness.sink.saturated
    second = harness.sink.write(make_batch(1))
    assert harness.sink.saturated
    await gatherResults([first, second])


@pytest_twisted.ensureDeferred
async def test_a_full_producer_queue_waits_for_room_and_is_no_outage(reactor: Any, kafka: KafkaEnv,
                                                                    harnesses: Callable[..., Harness]) -> None:
    """Writes that find librdkafka's queue full (queue.buffering.max.messages) wait for delivery reports to
    make room and are then produced: all arrive in order per tenant, nothing fails over to the spool, and
    Kafka is never taken for down."""
    harness = harnesses(config={"queue.buffering.max.messages": "50"})
    records = make_batch(1_000)
    with capturedLogs() as logged:
        await gatherResults([harness.sink.write(records[i:i + 100]) for i in range(0, len(records), 100)])
    got = await consume_uids(kafka, {uid(r) for r in records})
    assert sorted(c.uid for c in got) == sorted(uid(r) for r in records)
    for tenant in TENANTS:
        assert ([c.uid for c in got if c.key == tenant.encode()]
                == [uid(r) for r in records if r.tenant_id == tenant])
    assert harness.metric("aisoc_ingest_kafka_queue_full_total") > 0
    assert harness.metric("aisoc_ingest_kafka_delivery_errors_total") == 0
    assert harness.spool.is_empty
    assert not [e for e in logged if e["log_level"].name in ("warn", "error", "critical")]


@pytest_twisted.ensureDeferred
async def test_torn_last_record_is_skipped(reactor: Any, tmp_path: Path) -> None:
    """A record torn by a crash at the end of a segment is skipped; the records before it and later appends are read."""
    spool = Spool(tmp_path / "spool", 1024 * 1024, reactor)
    spool.open()
    records = make_batch(3)
    await spool.append(records)
    await spool.close()
    [segment] = list((tmp_path / "spool").iterdir())
    data = segment.read_bytes()
    segment.write_bytes(data[:-7])

    reopened = Spool(tmp_path / "spool", 1024 * 1024, reactor)
    reopened.open()
    later = make_batch(2, start=3)
    await reopened.append(later)
    first = await reopened.oldest()
    assert first is not None and first.records == records[:2]
    await reopened.delete(first.seq)
    second = await reopened.oldest()
    assert second is not None and second.records == later
    await reopened.delete(second.seq)
    assert reopened.is_empty and await reopened.oldest() is None
    await reopened.close()


def test_decode_stops_at_a_corrupt_frame() -> None:
    """A frame whose checksum fails ends the segment: it and what follows are reported as skipped."""
    from aisoc_inboxd.sinks.spool import encode_record

    records = make_batch(3)
    frames = [encode_record(r) for r in records]
    corrupt = frames[1][:-1] + bytes([frames[1][-1] ^ 0xFF])
    decoded, skipped = decode_records(frames[0] + corrupt + frames[2])
    assert decoded == records[:1]
    assert skipped == len(corrupt) + len(frames[2])


def test_producer_queue_bounds_are_shared_between_worker_processes() -> None:
    """With workers: N each producer's queue defaults to 1/N of the bounds, so the daemon's memory
    stays one process's; what the operator set is kept, and acks=all is not negotiable."""
    one = build_producer_config({"bootstrap.servers": "k:9092"})
    two = build_producer_config({"bootstrap.servers": "k:9092"}, processes=2)
    assert (one["queue.buffering.max.kbytes"], two["queue.buffering.max.kbytes"]) == ("65536", "32768")
    assert (one["queue.buffering.max.messages"], two["queue.buffering.max.messages"]) == ("100000", "50000")
    assert two["linger.ms"] == one["linger.ms"] == "5"
    assert build_producer_config({"queue.buffering.max.kbytes": "1024"}, processes=4)["queue.buffering.max.kbytes"] == "1024"
    with pytest.raises(ValueError, match="acks"):
        build_producer_config({"acks": "1"}, processes=2)


def read_segments(directory: Path) -> list[SinkRecord]:
    """Every record in the spool's segment files, in order, failing the test on a torn or corrupt frame."""
    records: list[SinkRecord] = []
    for segment in sorted(directory.glob("*.seg")):
        decoded, skipped = decode_records(segment.read_bytes())
        assert skipped == 0, f"{segment.name}: {skipped} bytes unreadable after {len(decoded)} records"
        records += decoded
    return records


@pytest.mark.parametrize("mode", ["short write, then ENOSPC", "EIO on fsync"])
@pytest_twisted.ensureDeferred
async def test_a_failed_spool_append_is_cut_back_out(reactor: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """An append the disk fails part-way is refused (SinkUnavailable, no path) and leaves nothing in its
    segment, so an append queued behind it into the same segment is readable, not lost behind a torn frame."""
    spool = Spool(tmp_path / "spool", 1024 * 1024, reactor)
    spool.open()
    try:
        first = make_batch(2)
        await spool.append(first)
        disk = FailingDisk(monkeypatch, named(".seg"), mode)
        failing = spool.append(make_batch(5, start=2))
        queued = make_batch(2, start=7)
        behind = spool.append(queued)
        with pytest.raises(SinkUnavailable) as refused:
            await failing
        assert disk.failed and str(tmp_path) not in str(refused.value)
        assert spool.not_writable() is not None
        disk.heal()
        await behind
        assert spool.not_writable() is None
    finally:
        await spool.close()
    assert read_segments(tmp_path / "spool") == first + queued
    assert spool.bytes == sum(f.stat().st_size for f in (tmp_path / "spool").glob("*.seg"))


@pytest.fixture
def small_spool_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs where the harness's spool lives."""
    yield from mount_small_tmpfs(tmp_path / "spool", 1024 * 1024)


@pytest_twisted.ensureDeferred
async def test_kafka_down_and_spool_disk_full_is_not_ready(reactor: Any, kafka: KafkaEnv, small_spool_disk: Path,
                                                           harnesses: Callable[..., Harness]) -> None:
    """With Kafka unreachable and the spool's real filesystem full, the sink says it is not ready (why, without
    a path) and refuses writes; once space is freed it is ready again without a write, and every event
    it acknowledged reaches Kafka."""
    harness = harnesses()
    kafka.relay.cut()
    accepted = make_batch(3)
    await harness.sink.write(accepted)  # spooled once its delivery times out: Kafka is down now
    assert harness.sink.not_ready() is None

    filler = Filler(small_spool_disk)
    filler.fill()
    problem = "Kafka is unreachable and the spool cannot be written: disk full"
    await wait_until(reactor, lambda: harness.sink.not_ready() == problem, timeout=20)
    with pytest.raises(SinkUnavailable) as refused:
        await harness.sink.write(make_batch(50, start=3))
    assert "disk full" in str(refused.value) and str(small_spool_disk) not in str(refused.value)
    assert harness.registry.get_sample_value("aisoc_ingest_sink_write_failures_total",
                                             {"sink": "spool", "reason": "disk_full"}) == 1
    assert read_segments(small_spool_disk) == accepted

    filler.free()
    await wait_until(reactor, lambda: harness.sink.not_ready() is None, timeout=20)
    late = make_batch(3, start=100)
    await harness.sink.write(late)
    kafka.relay.reopen()
    expected = {uid(r) for r in accepted + late}
    got = await consume_uids(kafka, expected)
    assert expected <= {c.uid for c in got}
