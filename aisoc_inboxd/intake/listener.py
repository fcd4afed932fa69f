"""
What a listener does between the frames its protocol reads and intake, whatever the protocol (the
syslog listeners' TCP, TLS and UDP today): decode them into records, deliver one batch per template
(CEF records under the CEF template, the rest under the listener's), and hold back the protocol
while too much is in flight.

Such a protocol has no acknowledgement, so the daemon cannot answer "durable" as the HTTP routes do;
what it can do is not read faster than the sink writes, and account for every frame it read: durable,
in flight, or dropped under a named reason. Past C{max_in_flight} events (or while the Kafka sink
says it is saturated) L{ListenerIntake.saturated} is true: a stream protocol stops reading until
L{ListenerIntake.unsaturated} fires, a datagram protocol drops and counts (L{ListenerIntake.discard}).
A batch already read that finds the sink full waits for room instead of being refused: the sender
cannot be told to retry, so a refusal would be a loss.

Every frame read is accounted for: at any moment (between reactor turns) C{frames} = C{durable} +
C{in_flight} + the sum of C{dropped} over its reasons, per listener, which C{/metrics} and the
status page expose. Frames dropped before they are decoded (oversized, truncated, saturated) come
through L{ListenerIntake.discard}, the rest through L{ListenerIntake.submit}.
"""
from __future__ import annotations

from typing import Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from aisoc_inboxd.coroutines import drive
from aisoc_inboxd.formats.cef_records import Split
from aisoc_inboxd.formats.json_body import Record
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake.intake import Intake
from aisoc_inboxd.intake.refusals import Refused
from aisoc_inboxd.metrics import SyslogMetrics
from aisoc_inboxd.sinks import ISaturating
from aisoc_inboxd.deliveries import FrameSamples

#: frames and their receive time → their records, CEF apart from the rest, malformed ones counted
Decode = Callable[[Sequence[bytes], float], Split]


class ListenerIntake:
    """
    One listener's way from frames to the pipeline: its tenant, templates and decoder, its metrics
    and the in-flight count behind back-pressure.
    """

    _log = Logger()

    def __init__(self, name: str, route: str, tenant: str, template_id: str, cef_template_id: str,
                 decode: Decode, intake: Intake, metrics: SyslogMetrics, inflight: InFlight, max_in_flight: int,
                 sink: ISaturating | None = None, samples: FrameSamples | None = None) -> None:
        """
        @param route: what events are published under (C{metadata.log_source}).
        @param sink: the sink, when it can say it is full (a listener stops reading while it is, and a
            batch that finds it full waits for room rather than be refused).
        @param inflight: the daemon's count of work to finish before it stops.
        @param samples: keeps the last frames and malformed frames read (recent deliveries).
        """
        self._samples = samples
        self.name = name
        self._route = route
        self._tenant = tenant
        self._template_id = template_id
        self._cef_template_id = cef_template_id
        self._decode = decode
        self._intake = intake
        self._metrics = metrics
        metrics.listener(name)
        metrics.in_flight.labels(name).set_function(lambda: self._in_flight)
        self._inflight = inflight
        self._max_in_flight = max_in_flight
        self._sink = sink
        self._in_flight = 0
        self._waiting: list[Deferred[None]] = []

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def saturated(self) -> bool:
        return self.saturated_with(0)

    def saturated_with(self, pending: int) -> bool:
        """
        Whether C{pending} more events (received, not yet submitted) would be over the ceiling.
        """
        return (self._in_flight + pending >= self._max_in_flight
                or (self._sink is not None and self._sink.saturated))

    async def unsaturated(self) -> None:
        """
        Return once this listener and the sink can take events again.
        """
        while self.saturated:
            if self._in_flight >= self._max_in_flight:
                waiter: Deferred[None] = Deferred()
                self._waiting.append(waiter)
                await waiter
            else:
                assert self._sink is not None
                await self._sink.unsaturated()

    def count(self, metric: str, amount: int = 1, *labels: str) -> None:
        self._metrics.child(metric, self.name, *labels).inc(amount)

    def discard(self, reason: str, count: int = 1) -> None:
        """
        Account for C{count} frames read and dropped before they were decoded, for C{reason}
        (oversized, truncated, saturated).
        """
        self.count("frames", count)
        self.count("dropped", count, reason)

    def submit(self, frames: Sequence[bytes], peer: str | None = None) -> None:
        """
        Decode C{frames} (from C{peer}, when they came from one) and publish them, one batch per
        template; each batch is counted durable or dropped when it is (L{in_flight} until then). A
        frame whose CEF is malformed is dropped and counted.
        """
        received_at = self._intake.now()
        self.count("frames", len(frames))
        split = self._decode(frames, received_at)
        if self._samples is not None:
            self._samples.frames(frames, received_at, peer)
        if split.malformed:
            self.count("dropped", split.malformed, "malformed")
            self._log.debug("{listener}: {count} malformed CEF frame(s) dropped", listener=self.name,
                            count=split.malformed)
            if self._samples is not None:  # which ones: decoded again one by one, on this rare path only
                for frame in frames:
                    if (alone := self._decode([frame], received_at)).malformed:
                        self._samples.malformed(frame, received_at, peer, alone.problems[0])
        for template_id, records in split.batches(self._template_id, self._cef_template_id):
            self._publish(template_id, records, received_at)

    def _publish(self, template_id: str, records: Sequence[Record], received_at: float) -> None:
        """
        Deliver one batch, counted in flight (here and in the daemon's work to finish) until it is
        durable or dropped. Its coroutine is driven by L{drive}, without a Deferred of its own
        (C{Deferred.fromCoroutine}, C{InFlight.track} and two callbacks cost ~19 k instructions a
        batch more).
        """
        self._in_flight += len(records)
        self._inflight.started()
        drive(self._deliver(template_id, records, received_at), self._delivered, len(records))

    async def _deliver(self, template_id: str, records: Sequence[Record], received_at: float) -> None:
        """
        Publish one batch once the sink has room. A batch that finds the sink full waits (its
        connection is paused meanwhile, since this listener counts as saturated too) instead of
        being refused.

        The decoded records are let go once their events are made, not when Kafka acknowledges them:
        they take more memory than the events' JSON (~3.8 KB a CEF frame), and the sink may hold
        thousands of events in flight.
        """
        binding = self._intake.bind(self._tenant, template_id)
        await self._room_in_sink()
        count, delivery = len(records), self._intake.deliver(binding, self._route, records, received_at)
        del records
        try:
            published = await delivery
        except Refused as e:
            reason = "unavailable" if self._sink is None or self._sink.running else "shutdown"
            self.count("dropped", count, reason)
            self._log.warn("{listener}: {count} events dropped ({reason}), the sink refused them: {error}",
                           listener=self.name, count=count, reason=reason, error=str(e))
            return
        self.count("durable", count)
        self.count("events", published)

    async def _room_in_sink(self) -> None:
        """
        Return once the sink is below its in-flight ceiling (or stopped, when it refuses at once).
        Waking and writing happen in one reactor turn, so a batch that finds room keeps it.
        """
        while self._sink is not None and self._sink.running and self._sink.saturated:
            await self._sink.unsaturated()

    def _delivered(self, result: None | Failure, count: int) -> None:
        self._inflight.ended()
        self._in_flight -= count
        if isinstance(result, Failure):
            self.count("dropped", count, "error")
            self._log.failure("{listener}: publishing failed; {count} events dropped", result,
                              listener=self.name, count=count)
        if self._in_flight < self._max_in_flight:
            waiting, self._waiting = self._waiting, []
            for waiter in waiting:
                waiter.callback(None)
