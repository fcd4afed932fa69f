"""
The production sink: OCSF events to Kafka with C{acks=all}, and to a local spool while Kafka is away.

A write's Deferred fires once each of its events is either acknowledged by Kafka or fsynced in the
L{Spool}; it fails with L{SinkUnavailable} only when neither can take them (the spool is full, or
its disk is), so the sender gets a 503 and never a silent drop. While the spool holds anything, new
events are spooled behind it, and the forwarder drains the spool oldest segment first, deleting a
segment only once Kafka acknowledged all of it; so a tenant's events keep their intake order (the
message key is the tenant id) except for the events in flight when an outage starts, which are
spooled when their delivery times out, behind events spooled meanwhile. When the spool is full (or
its disk is) but Kafka is reachable, events go straight to Kafka rather than be refused. A full
producer queue (C{BufferError}) is no outage: the write waits for delivery reports to make room.

Delivery is at-least-once. A duplicate can reach Kafka when (1) a delivery report is lost or times
out although the broker stored the message (it is then spooled and sent again), (2) the daemon stops
or crashes while a spool segment is partly drained (the whole segment is sent again on the next
run), or (3) messages already sent are purged, at C{stopService} or when a stuck producer is
replaced. Every event carries C{metadata.uid}, so consumers dedupe on it.

Threads: librdkafka's C{produce()} does not block and is called on the reactor thread; one dedicated
thread, C{kafka-poll}, owns C{poll()} and C{flush()}, so delivery callbacks run there (one callback
per send, which counts); the reports one C{poll()} served hop to the reactor together, per send, in
one C{callFromThread} (not one per event).
The reachability probe (a metadata request, which blocks) runs on
the reactor's thread pool; spool I/O runs on the spool's writer thread.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from confluent_kafka import KafkaError, KafkaException, Producer
from prometheus_client import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogLevel
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from aisoc_inboxd.config import per_process, redact_secrets
from aisoc_inboxd.sinks import IKafkaDestination, ISaturating, ISpooling, SinkRecord, SinkUnavailable
from aisoc_inboxd.sinks.kafka_metrics import KafkaSinkMetrics
from aisoc_inboxd.sinks.spool import SpooledSegment, Spool, SpoolFull

#: Settings the durability promise depends on; a config that contradicts them is refused.
REQUIRED_CONFIG: Mapping[str, str] = {"acks": "all", "enable.idempotence": "true"}

#: Defaults for settings the operator may override through C{kafka.config}. Each entry lists the
#: librdkafka aliases of one setting, so an operator's alias replaces our default instead of
#: racing it.
DEFAULT_CONFIG: Sequence[tuple[tuple[str, ...], str]] = (
    # An unacknowledged message fails (and is spooled) after this long: an outage costs senders
    # seconds of latency, not minutes (librdkafka's default is 300 s).
    (("message.timeout.ms", "delivery.timeout.ms"), "10000"),
    # librdkafka's own queue stays bounded in count and memory (64 MiB instead of 1 GiB), shared
    # out between the processes of one daemon (see build_producer_config).
    (("queue.buffering.max.messages",), "100000"),
    (("queue.buffering.max.kbytes",), "65536"),
    (("linger.ms", "queue.buffering.max.ms"), "5"),
    # Reconnect within 2 s of the broker coming back, so the probe sees it soon.
    (("reconnect.backoff.max.ms",), "2000"),
)


class SinkReactor(Protocol):
    """
    What the sink needs of the reactor: time, thread hand-off, and its thread pool for the probe.
    """

    def seconds(self) -> float: ...

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None: ...

    def getThreadPool(self) -> ThreadPool: ...


#: defaults that bound the daemon's memory: with several processes each gets its share
_SHARED_BOUNDS = ("queue.buffering.max.messages", "queue.buffering.max.kbytes")


def build_producer_config(config: Mapping[str, str], processes: int = 1) -> dict[str, str]:
    """
    C{config} (passed through to librdkafka: C{bootstrap.servers}, TLS, SASL, ...) with our
    defaults for what it leaves out and the settings durability requires. TLS takes
    C{security.protocol: SSL} and C{ssl.ca.location} (plus C{ssl.certificate.location} and
    C{ssl.key.location} for mutual TLS); SASL takes C{security.protocol: SASL_SSL},
    C{sasl.mechanisms} (e.g. C{SCRAM-SHA-512}), C{sasl.username} and C{sasl.password}.

    With C{processes} > 1 (C{workers:}), each producer's queue bounds default to a share of the
    one-process figures, so the daemon's memory stays what one process would use.

    @raise ValueError: when C{config} contradicts L{REQUIRED_CONFIG}.
    """
    merged = dict(config)
    for key, value in REQUIRED_CONFIG.items():
        if str(merged.get(key, value)).lower() != value:
            raise ValueError(f"kafka.config {key}={merged[key]!r}: the sink needs {key}={value}")
        merged[key] = value
    for aliases, value in DEFAULT_CONFIG:
        if not any(alias in merged for alias in aliases):
            merged[aliases[0]] = str(per_process(int(value), processes)) if aliases[0] in _SHARED_BOUNDS else value
    return merged


def check_producer_config(config: Mapping[str, str]) -> None:
    """
    Build, and drop at once, a producer from C{config} without its C{bootstrap.servers}, so what
    librdkafka would refuse when the sink starts (an unknown or misspelled property, a bad value, a
    SASL mechanism or TLS file it cannot use) stops start-up before anything runs. It connects
    nowhere; its log lines (no brokers configured) are never served, so never printed.

    @raise ValueError: naming the problem, never the value of a secret.
    """
    probe = {key: value for key, value in build_producer_config(config).items() if key != "bootstrap.servers"}
    try:
        Producer({**probe, "logger": logging.getLogger(__name__)})
    except KafkaException as e:
        error = e.args[0] if e.args else None
        text = error.str() if isinstance(error, KafkaError) else str(e)
        raise ValueError(redact_secrets(text, config)) from None


def message_headers(record: SinkRecord) -> list[tuple[str, bytes]]:
    """
    Kafka headers that let a consumer route an event without parsing it: the same for every record
    of a batch, so the producer makes them once per run of records that share them.
    """
    intake = datetime.fromtimestamp(record.received_at, timezone.utc)
    return [("tenant", record.tenant_id.encode()),
            ("template", record.template_id.encode()),
            ("route", record.route.encode()),
            ("intake_time", intake.isoformat(timespec="milliseconds").replace("+00:00", "Z").encode())]


#: C{produce()}'s partition for "let the partitioner choose by key" (librdkafka's
#: C{RD_KAFKA_PARTITION_UA}), and its timestamp for "now"
_ANY_PARTITION, _NOW = -1, 0


def produce_message(producer: Producer, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]],
                    on_delivery: Callable[[KafkaError | None, Any], None]) -> None:
    """
    The reference for L{_DeliveryProducer}'s C{produce()} call: one message by keyword, as
    confluent-kafka documents it. The sink passes the same arguments by position, in the order of
    the C signature (topic, value, key, partition, callback, on_delivery, timestamp, headers),
    which spares C{PyArg_ParseTupleAndKeywords} matching keywords per event.
    """
    producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)


class _LibrdkafkaLog:
    """
    Routes librdkafka's log lines (served by C{poll()} on the poll thread) to C{twisted.logger}
    instead of stderr, so they land in the daemon's log with its structure.
    """

    _log = Logger(namespace="aisoc_inboxd.sinks.kafka.librdkafka")

    def __init__(self, reactor: SinkReactor) -> None:
        self._reactor = reactor

    def log(self, level: int, fmt: str, *args: object) -> None:
        """
        The C{logging.Logger.log} signature confluent-kafka calls.
        """
        self._reactor.callFromThread(self._log.emit, _log_level(level), "librdkafka: {line}",
                                     line=fmt % args)


def _log_level(level: int) -> LogLevel:
    if level >= logging.ERROR:
        return LogLevel.error
    if level >= logging.WARNING:
        return LogLevel.warn
    return LogLevel.info if level >= logging.INFO else LogLevel.debug


class _Send:
    """
    The delivery reports of one L{_DeliveryProducer.send}: fires with the records not acknowledged.

    Its L{report} is the one C{on_delivery} callback of all its records (not one closure per
    event): on the poll thread it only counts acknowledgements and keeps the failed messages,
    which L{_DeliveryProducer} hands to the reactor per send, once per C{poll()}. A failed message
    is matched back to its record by key and value: records equal in both are the same message,
    so whichever of them is taken for it, the records spooled again are the right ones.
    """

    def __init__(self, records: Sequence[SinkRecord], reported: list[_Send]) -> None:
        self.records = records
        #: reactor thread: records not yet settled, records handed to librdkafka, indexes failed
        self.pending = len(records)
        self.produced = 0
        self.failed: set[int] = set()
        self.done: Deferred[list[SinkRecord]] = Deferred()
        self._by_message: dict[tuple[bytes, bytes], list[int]] | None = None
        #: poll thread: the producer's sends with reports since its last hand-over, and this one's
        self._reported = reported
        self._acknowledged = 0
        self._failures: list[tuple[KafkaError, bytes, bytes]] = []

    def report(self, error: KafkaError | None, message: Any) -> None:
        """
        librdkafka's delivery report of one of the records (on the poll thread).
        """
        if not self._acknowledged and not self._failures:
            self._reported.append(self)
        if error is None:
            self._acknowledged += 1
        else:
            self._failures.append((error, message.key(), message.value()))

    def take_reports(self) -> _Reports:
        """
        The acknowledgements counted and the failures kept since the last call (on the poll thread).
        """
        taken = (self, self._acknowledged, self._failures)
        self._acknowledged, self._failures = 0, []
        return taken

    def fail(self, indexes: Iterable[int]) -> None:
        """
        Count the records at C{indexes} as not acknowledged (reactor thread).
        """
        self.failed.update(indexes)

    def fail_message(self, key: bytes, value: bytes) -> None:
        """
        Count as not acknowledged a record handed to librdkafka with this key and value, one not
        counted yet (reactor thread).
        """
        if self._by_message is None:
            self._by_message = {}
            for index, record in enumerate(self.records):
                self._by_message.setdefault((record.tenant_id.encode(), record.value), []).append(index)
        self.failed.add(next(i for i in self._by_message[key, value] if i < self.produced and i not in self.failed))

    def settle(self, acknowledged: int, failed: int) -> None:
        """
        C{acknowledged} and C{failed} more records have their report; fire once all have.
        """
        self.pending -= acknowledged + failed
        if self.pending == 0:
            self.done.callback([self.records[i] for i in sorted(self.failed)])


#: the reports of one send since the last hand-over: the send, its acknowledgements, its failures
#: (the error, the message's key and value)
_Reports = tuple[_Send, int, list[tuple[KafkaError, bytes, bytes]]]


class _DeliveryProducer:
    """
    A confluent-kafka Producer with its poll thread, seen from the reactor as Deferreds.

    @param on_unreachable: called on the reactor thread when librdkafka reports every broker down.
    """

    _log = Logger()

    def __init__(self, config: Mapping[str, str], topic: str, reactor: SinkReactor,
                 metrics: KafkaSinkMetrics, on_unreachable: Callable[[], None]) -> None:
        self._config = config
        self._topic = topic
        self._reactor = reactor
        self._metrics = metrics
        self._on_unreachable = on_unreachable
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped: Deferred[int] = Deferred()
        self._flush_timeout = 0.0
        #: sends with delivery reports served by the current poll(), kept on the poll thread until
        #: handed over
        self._reported: list[_Send] = []
        #: poll() or flush() raised (on the poll thread)
        self._raised = False
        #: sends (and the index to resume at) that found librdkafka's queue full, oldest first
        self._waiting_for_room: list[tuple[_Send, int]] = []

    def __len__(self) -> int:
        return 0 if self._producer is None else len(self._producer)

    def start(self) -> None:
        self._producer = Producer({**self._config, "error_cb": self._error_in_thread,
                                   "logger": _LibrdkafkaLog(self._reactor)})
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._thread.start()

    def stop(self, flush_timeout: float) -> Deferred[int]:
        """
        Stop taking sends, flush for at most C{flush_timeout} seconds, then purge what is left so
        every pending send fires (the purged records among its failures). Fires with how many
        messages were purged.
        """
        if self._thread is None:
            return succeed(0)
        self._flush_timeout = flush_timeout
        self._stopping.set()
        self._room_made()  # what waits for room fails now, so its caller spools it
        return self._stopped

    def send(self, records: Sequence[SinkRecord]) -> Deferred[list[SinkRecord]]:
        """
        Produce C{records} in order; fires, never fails, with those Kafka did not acknowledge.

        librdkafka's queue being full (C{BufferError}) is no outage, only a producer behind its
        broker: the rest of the send waits for the next delivery reports to make room and is then
        produced, behind any send already waiting, so events keep their order.
        """
        send = _Send(records, self._reported)
        if not records:
            send.done.callback([])
        elif self._waiting_for_room:
            self._waiting_for_room.append((send, 0))
        else:
            full_at = self._produce(send, 0)
            if full_at is not None:
                self._waiting_for_room.append((send, full_at))
        return send.done

    def _produce(self, send: _Send, start: int) -> int | None:
        """
        Hand C{send}'s records from C{start} on to librdkafka; returns the index of the first one
        its full queue had no room for, or None when none is left to hand over. The records of one
        batch share their key and headers, made once per run of records with equal ones.
        """
        records = send.records
        if self._producer is None or self._stopping.is_set():
            self._fail_rest(send, start, "the producer is stopping")
            return None
        producer, topic, report = self._producer, self._topic, send.report
        produce = producer.produce  # positionally: see produce_message
        batch: tuple[str, str, str, float] | None = None
        for index in range(start, len(records)):
            record = records[index]
            if record[:4] != batch:
                batch, key, headers = record[:4], record.tenant_id.encode(), message_headers(record)
            try:
                produce(topic, record.value, key, _ANY_PARTITION, report, None, _NOW, headers)
            except BufferError as e:
                send.produced = index
                if not len(producer):  # nothing queued whose report would make room
                    self._fail_rest(send, index, str(e))
                    return None
                self._metrics.queue_full.inc()
                return index
            except KafkaException as e:
                # Whatever was not handed over is failed now, so the caller spools it.
                send.produced = index
                self._fail_rest(send, index, str(e))
                return None
        send.produced = len(records)
        return None

    def _room_made(self) -> None:
        """
        Delivery reports freed room in librdkafka's queue (or the producer stops): resume the sends
        waiting for it, oldest first, until one finds the queue full again.
        """
        while self._waiting_for_room:
            send, index = self._waiting_for_room[0]
            full_at = self._produce(send, index)
            if full_at is not None:
                self._waiting_for_room[0] = (send, full_at)
                return
            self._waiting_for_room.pop(0)

    def probe(self, timeout: float) -> Deferred[bool]:
        """
        Whether a broker answers a metadata request for the topic within C{timeout} seconds.
        """
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                 self._probe_in_thread, timeout)

    def _fail_rest(self, send: _Send, start: int, reason: str) -> None:
        count = len(send.records) - start
        self._log.warn("Kafka producer refused {count} events: {reason}", count=count, reason=reason)
        self._metrics.delivery_errors.inc(count)
        send.fail(range(start, len(send.records)))
        send.settle(0, count)

    def _delivered(self, reports: list[_Reports]) -> None:
        """
        The delivery reports one C{poll()} served, per send: settle each send.
        """
        acknowledged = sum(count for _, count, _ in reports)
        self._metrics.events_produced.inc(acknowledged)
        for send, count, failures in reports:
            if failures:
                self._metrics.delivery_errors.inc(len(failures))
                if not send.failed:
                    self._log.debug("Kafka delivery failed: {error}", error=failures[0][0].str())
                for _, key, value in failures:
                    send.fail_message(key, value)
            send.settle(count, len(failures))
        self._room_made()

    # The methods below run on the kafka-poll thread (or, for the probe, a pool thread).

    def _hand_over(self) -> None:
        """
        Pass the reports the last C{poll()} or C{flush()} served to the reactor, in one hop.
        """
        if self._reported:
            reports = [send.take_reports() for send in self._reported]
            self._reported.clear()
            self._reactor.callFromThread(self._delivered, reports)

    def _error_in_thread(self, error: KafkaError) -> None:
        self._reactor.callFromThread(self._client_error, error)

    def _client_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._log.critical("Kafka producer failed for good: {error}; events go to the spool "
                               "until a new producer replaces it", error=error.str())
        if error.code() == KafkaError._ALL_BROKERS_DOWN or error.fatal():
            self._on_unreachable()

    def _probe_in_thread(self, timeout: float) -> bool:
        assert self._producer is not None
        try:
            topic = self._producer.list_topics(self._topic, timeout=timeout).topics.get(self._topic)
        except (KafkaException, RuntimeError):   # RuntimeError: the producer was closed meanwhile
            return False
        return topic is not None and topic.error is None and bool(topic.partitions)

    def _poll_loop(self) -> None:
        assert self._producer is not None
        producer = self._producer
        while not self._stopping.is_set():
            self._serve(producer, producer.poll, 0.1)
        left = self._serve(producer, producer.flush, self._flush_timeout)
        if left:
            producer.purge(in_queue=True, in_flight=True)
            self._serve(producer, producer.flush, 1.0)
        producer.close()
        self._reactor.callFromThread(self._stopped.callback, left)

    def _serve(self, producer: Producer, call: Callable[[float], int], timeout: float) -> int:
        """
        C{poll()} or C{flush()}, then hand the delivery reports over; returns what is left in the
        queue. librdkafka raises a fatal error (say, a broker that lost its state no longer knows
        this idempotent producer) from these calls too: it goes to the reactor as a client error,
        so the sink replaces the producer, and this thread lives on to purge and close it.
        """
        try:
            left = call(timeout)
        except KafkaException as e:
            if not self._raised:  # a fatal producer raises at once on every call: say it once
                self._raised = True
                self._error_in_thread(e.args[0])
            self._stopping.wait(timeout)
            left = len(producer)
        self._hand_over()
        return left


@implementer(ISaturating, ISpooling, IKafkaDestination)
class KafkaSink(Service):
    """
    L{EventSink} publishing to C{topic}, spooling to C{spool} while Kafka cannot take events.

    Back-pressure: at most C{max_in_flight} events are between L{write} and their Deferred (waiting
    for Kafka or the spool's fsync); past it L{write} fails at once with L{SinkUnavailable}.
    Intakes that can stop reading (TCP syslog) check L{saturated} and wait on L{unsaturated}
    before reading on; HTTP answers 503 with Retry-After.

    The sink owns C{spool}: it opens it in C{startService} and closes it in C{stopService}.

    @param producer_config: librdkafka settings, passed through (see L{build_producer_config}).
    @param flush_timeout: seconds C{stopService} waits for Kafka before spooling the rest.
    @param registry: where the sink's metrics are registered (the daemon's, never the global one).
    @param max_in_flight: the in-flight event ceiling described above, of the daemon: each of its
        C{processes} gets its share.
    @param drain_batch: events the forwarder hands to the producer at a time.
    @param probe_timeout: seconds a reachability probe waits for a broker.
    @param retry_min: first pause after a failed probe or drain; it doubles up to C{retry_max}.
    @param processes: the daemon's processes (C{workers:}), each with its own sink.
    """

    name = "kafka-sink"
    _log = Logger()

    def __init__(self, topic: str, producer_config: Mapping[str, str], spool: Spool,
                 reactor: SinkReactor, flush_timeout: float = 10.0, *,
                 registry: CollectorRegistry, max_in_flight: int = 10_000,
                 drain_batch: int = 1_000, probe_timeout: float = 2.0, retry_min: float = 0.5,
                 retry_max: float = 10.0, processes: int = 1) -> None:
        self._topic = topic
        self._spool = spool
        self._reactor = reactor
        self._flush_timeout = flush_timeout
        self._max_in_flight = per_process(max_in_flight, processes)
        self._drain_batch = drain_batch
        self._probe_timeout = probe_timeout
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._producer_config = build_producer_config(producer_config, processes)
        self._metrics = KafkaSinkMetrics(registry, spool, lambda: len(self._producer), reactor)
        spool.disk.register(registry)
        self._producer = self._new_producer()
        self._in_flight = 0
        self._waiting_room: list[Deferred[None]] = []
        self._idle: list[Deferred[None]] = []
        self._down = False
        self._forwarding: Deferred[None] | None = None
        self._pause: Deferred[None] | None = None

    @property
    def spool(self) -> Spool:
        """
        The outage spool, read by the status page.
        """
        return self._spool

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def bootstrap_servers(self) -> str:
        """
        The brokers the producer starts from, as configured (the status page names them; the rest of
        the config may hold a password and is never shown).
        """
        config = self._producer_config
        return config.get("bootstrap.servers") or config.get("metadata.broker.list") or ""

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def saturated(self) -> bool:
        """
        Whether L{write} would refuse now because C{max_in_flight} events are in flight.
        """
        return self._in_flight >= self._max_in_flight

    def unsaturated(self) -> Deferred[None]:
        """
        Fire once the sink is below its in-flight ceiling (at once when it is already).
        """
        if not self.saturated:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting_room.append(d)
        return d

    def not_ready(self) -> str | None:
        """
        Why the sink can take nothing at all: stopped, or Kafka unreachable with the spool refusing
        appends (full, or its disk full or failing); None when it can take events.
        """
        if not self.running:
            return "the Kafka sink is stopped"
        problem = self._spool.not_writable() if self._down else None
        return None if problem is None else f"Kafka is unreachable and {problem}"

    def startService(self) -> None:
        self._spool.open()
        self._producer.start()
        super().startService()
        config = self._producer_config
        self._log.info("Kafka sink: at most {in_flight} events in flight, librdkafka queue of {kbytes} KiB and "
                       "{messages} messages in this process", in_flight=self._max_in_flight,
                       kbytes=config["queue.buffering.max.kbytes"], messages=config["queue.buffering.max.messages"])
        self._kick()

    def stopService(self) -> Deferred[None]:
        """
        Refuse new writes, give Kafka C{flush_timeout} seconds for what is in flight, spool the
        rest, then close the spool.
        """
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    def write(self, records: Sequence[SinkRecord]) -> Deferred[None]:
        if not self.running:
            return fail(SinkUnavailable("the Kafka sink is stopped"))
        if self.saturated:
            return fail(SinkUnavailable(f"{self._in_flight} events already in flight"))
        if not records:
            return succeed(None)
        self._in_flight += len(records)
        d = Deferred.fromCoroutine(self._write(list(records)))
        d.addBoth(self._written, len(records))
        return d

    async def _write(self, records: list[SinkRecord]) -> None:
        if self._down or not self._spool.is_empty:
            try:
                await self._to_spool(records)
                return
            except SinkUnavailable:
                if self._down:
                    raise
                # The spool is full but Kafka is up: durability over order.
        failed = await self._producer.send(records)
        if failed:
            self._unreachable()
            await self._to_spool(failed)

    async def _to_spool(self, records: Sequence[SinkRecord]) -> None:
        """
        Append to the spool; L{SinkUnavailable} when it is full or its disk refuses (the spool's
        L{DiskHealth} logs that, without flooding).
        """
        try:
            appended = self._spool.append(records)
        except SpoolFull as e:
            raise SinkUnavailable(str(e)) from e
        self._kick()
        await appended

    def _written(self, result: object, count: int) -> object:
        self._in_flight -= count
        if not self.saturated:
            waiting, self._waiting_room = self._waiting_room, []
            for d in waiting:
                d.callback(None)
        if self._in_flight == 0:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)
        return result

    def _unreachable(self) -> None:
        if not self._down:
            self._log.warn("Kafka is unreachable; spooling events to {directory}",
                           directory=str(self._spool.directory))
        self._down = True
        self._kick()

    def _new_producer(self) -> _DeliveryProducer:
        return _DeliveryProducer(self._producer_config, self._topic, self._reactor, self._metrics,
                                 self._unreachable)

    async def _renew_producer(self) -> None:
        """
        Replace a producer that cannot deliver although the broker answers: after a fatal error,
        or when the broker lost its state and no longer knows the producer's idempotence id. The
        old one's unacknowledged events fail over to the spool.
        """
        if not self.running:
            return
        self._log.warn("Kafka answers but does not acknowledge events; starting a new producer")
        old, self._producer = self._producer, self._new_producer()
        self._producer.start()
        await old.stop(0.0)

    def _kick(self) -> None:
        """
        Start the forwarder unless it runs: it drains the spool and probes Kafka while it is down.
        """
        if self._forwarding is None and self.running:
            self._forwarding = d = Deferred.fromCoroutine(self._forward_until_done())
            d.addBoth(self._forwarder_exited)

    def _forwarder_exited(self, result: object) -> None:
        self._forwarding = None

    async def _forward_until_done(self) -> None:
        """
        Run the forwarder until it has nothing to do; an unexpected error is logged and retried,
        because a forwarder that died would leave the spool growing until senders get 503.
        """
        delay = self._retry_min
        while self.running:
            try:
                await self._forward()
                return
            except CancelledError:
                return
            except Exception:
                self._log.failure("spool forwarder failed; retrying in {delay}s", delay=delay)
            try:
                await self._sleep(delay)
            except CancelledError:
                return
            delay = min(delay * 2, self._retry_max)

    async def _forward(self) -> None:
        delay = self._retry_min
        segment: SpooledSegment | None = None
        pending: list[SinkRecord] = []
        while self.running:
            if self._down:
                if not await self._producer.probe(self._probe_timeout):
                    await self._sleep(delay)
                    delay = min(delay * 2, self._retry_max)
                    continue
                self._down = False
                self._log.info("Kafka is reachable; {segments} spool segments to drain",
                               segments=self._spool.segments)
            if segment is None:
                segment = await self._spool.oldest()
                if segment is None:
                    return
                pending = segment.records
            chunk, rest = pending[:self._drain_batch], pending[self._drain_batch:]
            failed = await self._producer.send(chunk)
            pending = failed + rest
            if failed:
                # Keep what was acknowledged out of the retry, and pause before the next try.
                self._unreachable()
                if self.running and await self._producer.probe(self._probe_timeout):
                    await self._renew_producer()
                await self._sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            delay = self._retry_min
            if not pending:
                await self._spool.delete(segment.seq)
                segment = None

    async def _sleep(self, delay: float) -> None:
        if not self.running:
            return
        self._pause = deferLater(self._reactor, delay)
        try:
            await self._pause
        finally:
            self._pause = None

    async def _stop(self) -> None:
        if self._pause is not None:
            self._pause.cancel()
        purged = await self._producer.stop(self._flush_timeout)
        if purged:
            self._log.warn("Kafka did not acknowledge {count} events within {timeout}s of "
                           "shutdown; they are spooled", count=purged, timeout=self._flush_timeout)
        if self._in_flight:
            idle: Deferred[None] = Deferred()
            self._idle.append(idle)
            await idle
        if self._forwarding is not None:
            await self._forwarding
        await self._spool.close()
