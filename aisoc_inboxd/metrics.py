"""
Prometheus metrics with the spec's names, on a registry of the daemon's own (not the process-global
default), served by L{MetricsResource} on the metrics listener.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource
from twisted.web.server import Request

#: C{template} label of a request whose token did not resolve, so no template is known
NO_TEMPLATE = "none"


class Metrics:
    """
    The collectors every intake shares.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "aisoc_ingest_inbox_requests", "Inbox requests (and malformed CEF lines) by route, template and outcome",
            ["route", "template", "outcome"], registry=self.registry)
        self.events = Counter(
            "aisoc_ingest_inbox_events", "Events made durable, by template", ["template"], registry=self.registry)
        self.token_cache_size = Gauge(
            "aisoc_ingest_inbox_token_cache_size", "Entries in the token cache", registry=self.registry)
        self.imap_polls = Counter(
            "aisoc_ingest_imap_polls", "IMAP connector polls by connector and outcome (ok, auth_failed, "
            "tls_error, connection_error, error)", ["connector", "outcome"], registry=self.registry)
        self.imap_messages = Counter(
            "aisoc_ingest_imap_messages", "IMAP messages made durable and marked \\Seen, by connector",
            ["connector"], registry=self.registry)
        self.syslog = SyslogMetrics(self.registry)

    def request(self, route: str, template: str | None, outcome: str) -> None:
        self.requests.labels(route, template or NO_TEMPLATE, outcome).inc()


class SyslogMetrics:
    """
    Per syslog listener (label C{listener}, the configured name).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"aisoc_ingest_syslog_{name}", doc, ["listener", *labels], registry=registry)

        self.frames = counter("frames", "Syslog frames (TCP) and datagrams (UDP) received")
        self.events = counter("events", "Syslog events made durable")
        self.malformed = counter("malformed", "Frames dropped because their CEF message is malformed")
        self.oversized = counter("oversized", "Frames dropped for exceeding max_frame_bytes")
        self.connections = counter("connections", "TCP/TLS connections accepted")
        self.dropped = counter(
            "dropped", "Events dropped by reason: saturated (UDP while the pipeline is full), unavailable "
            "(the sink refused them), truncated (a TCP stream ended inside an octet-counted frame)", "reason")
        self.paused = counter("paused", "Times a TCP connection stopped reading because the pipeline was full")


class MetricsResource(Resource):
    """
    C{GET /metrics} in the Prometheus text format; cheap enough to render on the reactor thread.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self._registry)
