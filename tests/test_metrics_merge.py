"""
Worker metrics: a registry's JSON snapshot, and the daemon's /metrics merging its own registry with
the workers' snapshots, on real prometheus_client registries rendered and parsed back.
"""
from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Histogram, Summary, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.web.test.requesthelper import DummyRequest

from aisoc_inboxd.metrics import MergedMetrics, Metrics, MetricsResource, snapshot
from aisoc_inboxd.sinks.kafka_metrics import KafkaSinkMetrics

NOW = 1_700_000_000.0
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def shipped(registry: CollectorRegistry) -> list[Any]:
    """
    C{registry}'s snapshot as the daemon reads it from a worker's file.
    """
    return json.loads(json.dumps(snapshot(registry)))


def render(registry: CollectorRegistry, *workers: list[Any]) -> str:
    """
    The daemon's /metrics text over C{registry} and the C{workers}' snapshots.
    """
    return generate_latest(MergedMetrics(registry, lambda: list(workers))).decode("utf-8")


def parse(text: str) -> Samples:
    """
    Every sample of an exposition text, by sample name and labels; fails on a family given twice.
    """
    families = [f.name for f in text_string_to_metric_families(text)]
    assert len(families) == len(set(families)), families
    types = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)), types
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def labels(**kv: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kv.items()))


def kafka_registry(oldest_age: float | None, queued: int, spooled: int) -> CollectorRegistry:
    """
    A registry with the Kafka sink's collectors, over a stand-in spool whose oldest event is
    C{oldest_age} seconds old (C{None}: empty).
    """
    registry = CollectorRegistry()
    clock = Clock()
    clock.advance(NOW)
    spool = SimpleNamespace(bytes=spooled, segments=1 if spooled else 0,
                            oldest_received_at=None if oldest_age is None else NOW - oldest_age)
    KafkaSinkMetrics(registry, spool, lambda: queued, clock)  # type: ignore[arg-type]
    return registry


def latency_registry(*observations: tuple[str, float]) -> CollectorRegistry:
    """
    A registry with a histogram and a summary by route (L{Metrics} has neither), observed once per
    C{(route, seconds)}.
    """
    registry = CollectorRegistry()
    histogram = Histogram("aisoc_test_latency_seconds", "Latency", ["route"], buckets=(0.1, 1.0),
                          registry=registry)
    summary = Summary("aisoc_test_size_bytes", "Size", ["route"], registry=registry)
    for route, seconds in observations:
        histogram.labels(route).observe(seconds)
        summary.labels(route).observe(seconds * 1000)
    return registry


def check_json(value: Any) -> None:
    """
    Fail unless C{value} is made only of lists, str-keyed dicts, strs and floats.
    """
    if isinstance(value, list):
        for item in value:
            check_json(item)
    elif isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), k
            check_json(v)
    else:
        assert isinstance(value, (str, float)), repr(value)


def test_snapshot_describes_each_family() -> None:
    """
    A snapshot lists every family with its name, type, help and samples, survives JSON as it is,
    and holds only lists, dicts, strings and floats.
    """
    metrics = Metrics()
    metrics.events.labels("pagerduty").inc(3)
    taken = snapshot(metrics.registry)

    assert json.loads(json.dumps(taken)) == taken
    check_json(taken)
    assert [f["name"] for f in taken] == [m.name for m in metrics.registry.collect()]
    [events] = [f for f in taken if f["name"] == "aisoc_ingest_inbox_events"]
    created = events["samples"][1][2]
    assert events == {
        "name": "aisoc_ingest_inbox_events", "type": "counter", "help": "Events made durable, by template",
        "samples": [["aisoc_ingest_inbox_events_total", {"template": "pagerduty"}, 3.0],
                    ["aisoc_ingest_inbox_events_created", {"template": "pagerduty"}, created]]}
    assert isinstance(created, float) and created > NOW


def test_counters_and_gauges_summed() -> None:
    """
    A counter's label set and a plain gauge that several processes have are the sum of them all.
    """
    master, one, two = Metrics(), Metrics(), Metrics()
    for process, times in ((master, 1), (one, 2), (two, 4)):
        for _ in range(times):
            process.request("hec", "pagerduty", "ok")
        process.token_cache_size.set(times * 10)
    one.syslog.frames.labels("tcp").inc(5)
    two.syslog.frames.labels("tcp").inc(6)

    got = parse(render(master.registry, shipped(one.registry), shipped(two.registry)))

    assert got[("aisoc_ingest_inbox_requests_total", labels(route="hec", template="pagerduty", outcome="ok"))] == 7.0
    assert got[("aisoc_ingest_inbox_token_cache_size", ())] == 70.0
    assert got[("aisoc_ingest_syslog_frames_total", labels(listener="tcp"))] == 11.0


def test_syslog_accounting_holds_after_the_merge() -> None:
    """
    Each process's syslog terms (frames read, durable, in flight, dropped by reason) hold on their own;
    summed over the workers they still do, the in-flight gauge included, so /metrics and the status
    page keep frames = durable + in flight + dropped with workers.
    """
    master, one, two = Metrics(), Metrics(), Metrics()
    for process, (durable, in_flight, oversized, saturated) in ((one, (50, 7, 1, 0)), (two, (30, 3, 0, 9))):
        process.syslog.listener("tcp")
        process.syslog.frames.labels("tcp").inc(durable + in_flight + oversized + saturated)
        process.syslog.durable.labels("tcp").inc(durable)
        process.syslog.in_flight.labels("tcp").set(in_flight)
        process.syslog.dropped.labels("tcp", "oversized").inc(oversized)
        process.syslog.dropped.labels("tcp", "saturated").inc(saturated)

    got = parse(render(master.registry, shipped(one.registry), shipped(two.registry)))

    tcp = labels(listener="tcp")
    dropped = {key[1]: value for key, value in got.items() if key[0] == "aisoc_ingest_syslog_dropped_total"}
    assert (got[("aisoc_ingest_syslog_frames_total", tcp)], got[("aisoc_ingest_syslog_durable_total", tcp)],
            got[("aisoc_ingest_syslog_in_flight", tcp)]) == (100.0, 80.0, 10.0)
    assert (dropped[labels(listener="tcp", reason="oversized")], dropped[labels(listener="tcp", reason="saturated")],
            sum(dropped.values())) == (1.0, 9.0, 10.0)


def test_worker_only_label_sets_and_families() -> None:
    """
    Label sets and whole families only a worker has are served as the worker has them, with their
    help and type.
    """
    master, one = Metrics(), Metrics()
    master.imap_polls.labels("box-a", "ok").inc()
    one.imap_polls.labels("box-b", "auth_failed").inc(2)
    worker_kafka = kafka_registry(oldest_age=12.0, queued=3, spooled=4096)

    text = render(master.registry, shipped(one.registry), shipped(worker_kafka))
    got = parse(text)

    assert got[("aisoc_ingest_imap_polls_total", labels(connector="box-a", outcome="ok"))] == 1.0
    assert got[("aisoc_ingest_imap_polls_total", labels(connector="box-b", outcome="auth_failed"))] == 2.0
    assert got[("aisoc_ingest_spool_bytes", ())] == 4096.0
    assert got[("aisoc_ingest_kafka_events_produced_total", ())] == 0.0
    assert "# HELP aisoc_ingest_kafka_queue_length Messages in the producer's queue, not yet acknowledged.\n" \
           "# TYPE aisoc_ingest_kafka_queue_length gauge\naisoc_ingest_kafka_queue_length 3.0\n" in text


def test_created_takes_the_earliest() -> None:
    """
    A C{_created} sample is the earliest process's start time, not a sum of timestamps.
    """
    master, one, two = Metrics(), Metrics(), Metrics()
    for process in (master, one, two):
        process.events.labels("opsgenie").inc()
    key = ("aisoc_ingest_inbox_events_created", labels(template="opsgenie"))
    created = parse(generate_latest(master.registry).decode())[key]
    earlier, later = shipped(one.registry), shipped(two.registry)
    for taken, shift in ((earlier, -3600.0), (later, 3600.0)):
        [events] = [f for f in taken if f["name"] == "aisoc_ingest_inbox_events"]
        events["samples"][1][2] = created + shift

    got = parse(render(master.registry, later, earlier))

    assert got[key] == created - 3600.0
    assert got[("aisoc_ingest_inbox_events_total", labels(template="opsgenie"))] == 3.0


def test_oldest_age_takes_the_largest() -> None:
    """
    The outage spool's oldest age is the oldest of any process (an empty spool's 0 included), while
    the other set_function gauges are summed.
    """
    master = kafka_registry(oldest_age=5.0, queued=1, spooled=100)
    one = kafka_registry(oldest_age=30.0, queued=2, spooled=200)
    two = kafka_registry(oldest_age=None, queued=3, spooled=0)

    got = parse(render(master, shipped(one), shipped(two)))

    assert got[("aisoc_ingest_spool_oldest_age_seconds", ())] == 30.0
    assert got[("aisoc_ingest_kafka_queue_length", ())] == 6.0
    assert got[("aisoc_ingest_spool_bytes", ())] == 300.0
    assert got[("aisoc_ingest_spool_segments", ())] == 2.0


def test_histograms_and_summaries_summed() -> None:
    """
    Each histogram bucket, count and sum, and each summary count and sum, is summed per label set.
    """
    master = latency_registry(("hec", 0.05), ("hec", 0.5))
    one = latency_registry(("hec", 0.05), ("hec", 5.0), ("email", 0.5))

    got = parse(render(master, shipped(one)))

    hec, email = labels(route="hec"), labels(route="email")
    assert {k[1]: v for k, v in got.items() if k[0] == "aisoc_test_latency_seconds_bucket"} == {
        labels(route="hec", le="0.1"): 2.0, labels(route="hec", le="1.0"): 3.0,
        labels(route="hec", le="+Inf"): 4.0,
        labels(route="email", le="0.1"): 0.0, labels(route="email", le="1.0"): 1.0,
        labels(route="email", le="+Inf"): 1.0}
    assert got[("aisoc_test_latency_seconds_count", hec)] == 4.0
    assert got[("aisoc_test_latency_seconds_sum", hec)] == 0.05 + 0.5 + 0.05 + 5.0
    assert got[("aisoc_test_latency_seconds_count", email)] == 1.0
    assert got[("aisoc_test_size_bytes_count", hec)] == 4.0
    assert got[("aisoc_test_size_bytes_sum", hec)] == 50.0 + 500.0 + 50.0 + 5000.0


def test_no_workers_is_the_registry() -> None:
    """
    With no snapshot (or only empty ones) the merged text is exactly the registry's own.
    """
    registry = latency_registry(("hec", 0.05), ("email", 3.0))
    metrics = Metrics(registry)
    metrics.request("email", None, "rejected")
    spool = SimpleNamespace(bytes=7, segments=1, oldest_received_at=NOW - 2)
    KafkaSinkMetrics(registry, spool, lambda: 9, Clock())  # type: ignore[arg-type]
    plain = generate_latest(registry)

    assert generate_latest(MergedMetrics(registry, lambda: [])) == plain
    assert generate_latest(MergedMetrics(registry, lambda: iter([[]]))) == plain


def test_others_called_once_per_collect() -> None:
    """
    Each collection reads the workers' snapshots once, and a later one sees newer snapshots.
    """
    master, one = Metrics(), Metrics()
    one.events.labels("generic-json").inc()
    calls = []

    def others() -> Iterable[list[Any]]:
        calls.append(None)
        return [shipped(one.registry)]

    merged = MergedMetrics(master.registry, others)
    key = ("aisoc_ingest_inbox_events_total", labels(template="generic-json"))
    assert parse(generate_latest(merged).decode())[key] == 1.0
    assert len(calls) == 1
    one.events.labels("generic-json").inc()
    assert parse(generate_latest(merged).decode())[key] == 2.0
    assert len(calls) == 2


def test_malformed_snapshots_left_out() -> None:
    """
    A malformed family, a family typed differently from the daemon's and a snapshot that is not a
    list are logged and left out; the rest of the snapshots still count.
    """
    master, one = Metrics(), Metrics()
    master.events.labels("pagerduty").inc()
    one.events.labels("pagerduty").inc(2)
    good = shipped(one.registry)
    bad: list[Any] = [
        {"name": "aisoc_ingest_inbox_events", "type": "gauge", "help": "wrong type",
         "samples": [["aisoc_ingest_inbox_events", {"template": "pagerduty"}, 100.0]]},
        {"name": "aisoc_ingest_stray", "type": "gauge", "help": "foreign sample",
         "samples": [["other_metric", {}, 1.0]]},
        {"name": "aisoc_ingest_bad_labels", "type": "gauge", "help": "",
         "samples": [["aisoc_ingest_bad_labels", ["x"], 1.0]]},
        {"name": "aisoc_ingest_no_samples", "type": "gauge", "help": ""},
        ["not", "a", "family"],
    ]

    with capturedLogs() as logs:
        got = parse(render(master.registry, bad, {"not": "a list"}, good))  # type: ignore[arg-type]

    assert got[("aisoc_ingest_inbox_events_total", labels(template="pagerduty"))] == 3.0
    assert not {name for name, _ in got} & {"aisoc_ingest_inbox_events", "other_metric", "aisoc_ingest_stray",
                                             "aisoc_ingest_bad_labels", "aisoc_ingest_no_samples"}
    assert len([e for e in logs if e["log_format"].startswith("Metrics snapshot:")]) == 6


def test_resource_serves_merged_metrics() -> None:
    """
    The metrics resource serves whatever collector it is given, a merge as well as a registry.
    """
    master, one = Metrics(), Metrics()
    master.request("hec", "pagerduty", "ok")
    one.request("hec", "pagerduty", "ok")
    key = ("aisoc_ingest_inbox_requests_total", labels(route="hec", template="pagerduty", outcome="ok"))

    for collector, value in ((master.registry, 1.0),
                             (MergedMetrics(master.registry, lambda: [shipped(one.registry)]), 2.0)):
        request = DummyRequest([b""])
        body = MetricsResource(collector).render_GET(request)
        assert parse(body.decode())[key] == value
        assert request.responseHeaders.getRawHeaders(b"Content-Type") == [CONTENT_TYPE_LATEST.encode()]
