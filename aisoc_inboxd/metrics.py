"""
Prometheus metrics with the spec's names, on a registry of the daemon's own (not the process-global
default), served by L{MetricsResource} on the metrics listener.

With C{workers: N}, each worker writes a L{snapshot} of its registry and the daemon serves
L{MergedMetrics}: its own registry plus the workers' snapshots, as one set of families.
"""
from __future__ import annotations

import operator
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

_log = Logger()

#: C{template} label of a request whose token did not resolve, so no template is known
NO_TEMPLATE = "none"


class Children:
    """
    The children of a labelled metric, each label set looked up once: C{labels()} (validating and
    hashing the labels under a lock) costs several times the C{inc()} a batch then makes. Holds as
    many children as the metric itself (whose children are never removed).
    """

    def __init__(self, metric: Counter | Gauge) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*labels)
        return child


class Metrics:
    """
    The collectors every intake shares.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "aisoc_ingest_inbox_requests", "Inbox requests (and malformed CEF lines) by route, template and outcome",
            ["route", "template", "outcome"], registry=self.registry)
        self._requests = Children(self.requests)
        self.events = Counter(
            "aisoc_ingest_inbox_events", "Events made durable, by template", ["template"], registry=self.registry)
        #: C{events} by template, each child looked up once
        self.events_of = Children(self.events)
        self.http_refused = Counter(
            "aisoc_ingest_http_connections_closed", "HTTP connections closed with a refusal before a request was "
            "read whole (slow head or body, oversized head, malformed request), by reason", ["reason"],
            registry=self.registry)
        self.token_cache_size = Gauge(
            "aisoc_ingest_inbox_token_cache_size", "Valid tokens in the token cache", registry=self.registry)
        self.token_store = TokenStoreMetrics(self.registry)
        self.idempotency_skipped = Counter(
            "aisoc_ingest_idempotency_skipped", "Requests with a vendor delivery id published without "
            "de-duplication, by reason (store_unavailable: the token store could not claim the id)",
            ["reason"], registry=self.registry)
        self.imap_polls = Counter(
            "aisoc_ingest_imap_polls", "IMAP connector polls by connector and outcome (ok, auth_failed, "
            "tls_error, connection_error, rate_limited, error)", ["connector", "outcome"], registry=self.registry)
        self.imap_messages = Counter(
            "aisoc_ingest_imap_messages", "IMAP messages made durable and marked \\Seen, by connector",
            ["connector"], registry=self.registry)
        self.syslog = SyslogMetrics(self.registry)
        self.reloads = Counter(
            "aisoc_reload", "Reloads (SIGHUP) by result: applied, or rejected (nothing changed)", ["result"],
            registry=self.registry)

    def request(self, route: str, template: str | None, outcome: str, count: int = 1) -> None:
        self._requests(route, template or NO_TEMPLATE, outcome).inc(count)

    def http_refusal(self, reason: str) -> None:
        self.http_refused.labels(reason).inc()


#: the C{reason}s of C{aisoc_ingest_syslog_dropped_total} and of C{…_connections_closed_total}
SYSLOG_DROP_REASONS = ("oversized", "malformed", "truncated", "saturated", "unavailable", "shutdown", "error")
SYSLOG_CLOSE_REASONS = ("idle", "oversized")


class TokenStoreMetrics:
    """
    The token store as the request path sees it: lookups, failures, and unknown-token floods.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lookups = Counter(
            "aisoc_ingest_token_store_lookups", "Token lookups sent to the store (cache misses)", registry=registry)
        self.lookups_refused = Counter(
            "aisoc_ingest_token_unknown_lookups_refused",
            "Requests answered 429 because their client address spent its store lookups for unknown tokens "
            "(token_cache.unknown_lookups_per_ip_per_sec)", registry=registry)
        self.errors = Counter(
            "aisoc_ingest_token_store_errors", "Token store calls that failed, by reason: timeout (no answer "
            "within database.call_timeout), connection, statement_timeout, error", ["reason"], registry=registry)
        self.up = Gauge(
            "aisoc_ingest_token_store_up", "1 while the token store answers, 0 from a call it did not answer "
            "until one it does (with workers: the processes that reach it)", registry=registry)
        self.unknown_cached = Gauge(
            "aisoc_ingest_inbox_token_negative_cache_size", "Unknown tokens remembered as unknown",
            registry=registry)

    def errors_by_reason(self) -> dict[str, int]:
        return {sample.labels["reason"]: int(sample.value) for sample in _totals(self.errors)}


def count(counter: Counter) -> int:
    """
    What an unlabelled counter holds now (this process), for the status page.
    """
    return sum(int(sample.value) for sample in _totals(counter))


def _totals(counter: Counter) -> list[Any]:
    return [sample for family in counter.collect() for sample in family.samples if sample.name.endswith("_total")]


class SyslogMetrics:
    """
    Per syslog listener (label C{listener}, the configured name).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"aisoc_ingest_syslog_{name}", doc, ["listener", *labels], registry=registry)

        self.frames = counter("frames", "Syslog frames (TCP) and datagrams (UDP) read, whatever became of them")
        self.durable = counter("durable", "Syslog frames whose events are durable (a frame makes one event, or "
                                          "none or several by its template)")
        self.in_flight = Gauge(
            "aisoc_ingest_syslog_in_flight", "Syslog frames read and not yet durable nor dropped: parsed, on "
            "their way to the sink or waiting for room in it", ["listener"], registry=registry)
        self.events = counter("events", "Syslog events made durable")
        self.connections = counter("connections", "TCP/TLS connections accepted")
        self.closed = counter(
            "connections_closed", "TCP/TLS connections the daemon closed, by reason: idle (nothing received "
            "for idle_timeout), oversized (a frame claiming more octets than can be skipped)", "reason")
        self.dropped = counter(
            "dropped", "Syslog frames dropped, by reason: oversized (over max_frame_bytes), malformed (CEF that "
            "does not parse), truncated (a TCP stream ended inside an octet-counted frame), saturated (UDP "
            "while the pipeline is full), unavailable (the sink refused them: Kafka down and the spool full), "
            "shutdown (the sink had stopped), error (an unexpected failure, logged)", "reason")
        self.paused = counter("paused", "Times a TCP connection stopped reading because the pipeline was full")
        self._children: dict[str, Children] = {}

    def child(self, metric: str, *labels: str) -> Any:
        """
        The child of counter C{metric} (its attribute name: C{"frames"}, C{"dropped"}, ...) for
        C{labels} (the listener first), looked up once.
        """
        children = self._children.get(metric)
        if children is None:
            children = self._children[metric] = Children(getattr(self, metric))
        return children(*labels)

    def listener(self, name: str) -> None:
        """
        Start every series of listener C{name} at 0, so that /metrics and the status page show its
        losses (as 0) before the first one happens.
        """
        for counter in (self.frames, self.durable, self.events, self.connections, self.paused):
            counter.labels(name)
        for reason in SYSLOG_DROP_REASONS:
            self.dropped.labels(name, reason)
        for reason in SYSLOG_CLOSE_REASONS:
            self.closed.labels(name, reason)


class MetricsResource(Resource):
    """
    C{GET /metrics} in the Prometheus text format; cheap enough to render on the reactor thread.
    """

    isLeaf = True

    def __init__(self, collector: Collector) -> None:
        """
        @param collector: what to expose: a registry, or a L{MergedMetrics} over one.
        """
        super().__init__()
        self._collector = collector

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self._collector)


def snapshot(registry: Collector) -> list[dict[str, Any]]:
    """
    What C{registry} holds now, for another process's L{MergedMetrics}; C{json.dumps}-able.

    One dict per family, in collection order::

        {"name": "aisoc_ingest_inbox_events", "type": "counter", "help": "Events made durable, by template",
         "samples": [["aisoc_ingest_inbox_events_total", {"template": "pagerduty"}, 3.0],
                     ["aisoc_ingest_inbox_events_created", {"template": "pagerduty"}, 1700000000.5]]}

    C{name} and C{type} are prometheus_client's (a counter's family name has no C{_total}), each
    sample is C{[sample name, labels, value]}, plus C{"unit"} when the family has one. A value may be
    NaN or infinite, which C{json} writes as C{NaN} and C{Infinity} and reads back. Sample timestamps,
    exemplars and native histograms are not carried (the registry's collectors make none).
    """
    families = []
    for family in registry.collect():
        entry: dict[str, Any] = {
            "name": family.name, "type": family.type, "help": family.documentation,
            "samples": [[s.name, dict(s.labels), float(s.value)] for s in family.samples]}
        if family.unit:
            entry["unit"] = family.unit
        families.append(entry)
    return families


class MergedMetrics:
    """
    A collector over a registry and other processes' L{snapshot}s: one family per name, each sample
    combined over the processes that have it, by sample name and labels.

    Values are summed, except:
      - C{<family>_created} samples (a counter's, histogram's or summary's start time) take the
        earliest;
      - gauges named C{*_oldest_age_seconds} take the largest (the oldest event of any process);
      - C{info} and C{stateset} families take the largest (each process reports the same 1s).

    Families and label sets only some processes have are included as they are. Type, help and unit
    come from the first process with the family, the registry first; a family another process types
    differently, and any malformed snapshot entry, is left out and logged, so that one bad snapshot
    never breaks the endpoint.

    @param registry: the serving process's own metrics.
    @param others: the other processes' snapshots, called once per L{collect}.
    """

    def __init__(self, registry: Collector, others: Callable[[], Iterable[list[Any]]]) -> None:
        self._registry = registry
        self._others = others

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, _MergedFamily] = {}

        def add(family: Metric, samples: Iterable[tuple[str, dict[str, str], float]]) -> None:
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = _MergedFamily(family)
            elif into.family.type != family.type:
                _log.warn("Metrics snapshot: {name} is a {type} here but a {other} in a worker; left out",
                          name=family.name, type=into.family.type, other=family.type)
                return
            for sample in samples:
                into.add(*sample)

        for family in self._registry.collect():
            add(family, ((s.name, s.labels, s.value) for s in family.samples))
        for other in self._others():
            if not isinstance(other, list):
                _log.warn("Metrics snapshot: not a list of families, left out: {other!r}", other=other)
                continue
            for entry in other:
                try:
                    family, samples = _from_snapshot(entry)
                except (KeyError, TypeError, ValueError) as e:
                    _log.warn("Metrics snapshot: malformed family {entry!r} left out: {error}",
                              entry=entry, error=e)
                    continue
                add(family, samples)
        for m in merged.values():
            yield m.metric()


#: the label that tells a histogram's or summary's samples of one series apart
_SERIES_LABEL = {"histogram": "le", "gaugehistogram": "le", "summary": "quantile"}


class _MergedFamily:
    """
    One family being merged: its samples grouped by series (labels less C{le} or C{quantile}), so
    each series' lines stay together in the output, in the order they were first seen.
    """

    def __init__(self, family: Metric) -> None:
        self.family = family
        self._series: dict[tuple[tuple[str, str], ...], dict[tuple[str, tuple[tuple[str, str], ...]],
                                                              tuple[str, dict[str, str], float]]] = {}

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        key = tuple(sorted(labels.items()))
        apart = _SERIES_LABEL.get(self.family.type)
        samples = self._series.setdefault(tuple(kv for kv in key if kv[0] != apart), {})
        seen = samples.get((name, key))
        if seen is not None:
            value = self._combine(name)(seen[2], value)
        samples[(name, key)] = (name, labels, value)

    def _combine(self, sample: str) -> Callable[[float, float], float]:
        family = self.family
        if sample == family.name + "_created":
            return min
        if family.type in ("info", "stateset") or (
                family.type == "gauge" and family.name.endswith("_oldest_age_seconds")):
            return max
        return operator.add

    def metric(self) -> Metric:
        out = Metric(self.family.name, self.family.documentation, self.family.type, self.family.unit)
        for samples in self._series.values():
            for name, labels, value in samples.values():
                out.add_sample(name, labels, value)
        return out


def _from_snapshot(entry: Any) -> tuple[Metric, list[tuple[str, dict[str, str], float]]]:
    """
    A family of a L{snapshot} back as an (empty) L{Metric} and its samples, checked.

    @raise ValueError: (or C{KeyError}, C{TypeError}) if C{entry} is not what L{snapshot} writes.
    """
    if not isinstance(entry, dict):
        raise TypeError("a family must be a dict")
    name, typ, doc, unit = entry["name"], entry["type"], entry["help"], entry.get("unit", "")
    if not all(isinstance(v, str) for v in (name, typ, doc, unit)):
        raise TypeError("name, type, help and unit must be strings")
    family = Metric(name, doc, typ, unit)  # checks the name and the type
    samples = []
    for sample_name, labels, value in entry["samples"]:
        if not (isinstance(sample_name, str) and sample_name.startswith(family.name)):
            raise ValueError(f"sample {sample_name!r} is not of the family")
        if not (isinstance(labels, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
            raise TypeError("labels must map strings to strings")
        samples.append((sample_name, dict(labels), float(value)))
    return family, samples
