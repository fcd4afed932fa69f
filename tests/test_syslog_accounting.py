"""
Every syslog frame the daemon reads is accounted for, against the real broker: 60,000 octet-counted
frames over 4 TCP connections into the Kafka sink (tansu). The broker's link stalls at the start (no
acknowledgement, for less than the delivery timeout: a slow broker, no fault) until the sink fills
up, so the connections are paused by back-pressure and batches already read find the sink full. At
every scrape of /metrics, frames read = durable + in flight + dropped (by reason); at the end every
frame is durable and on the topic. The time from the last frame sent to the last one durable is
printed, not asserted.
"""
from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import threads
from twisted.internet.defer import gatherResults
from twisted.internet.task import deferLater

from aisoc_inboxd.config import KafkaSettings, SinkSettings, SyslogListenerSettings, SyslogSettings
from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon
from tests.support.kafka import KafkaEnv, kafka, tansu_binary  # noqa: F401

CONNECTIONS = 4
FRAMES_PER_CONNECTION = 15_000
#: the longest the broker's link is stalled: well within the sink's delivery timeout (10 s)
MAX_STALL = 5.0


def frames(connection: int, marker: str) -> bytes:
    """
    One connection's frames, octet-counted RFC 5424, each naming its connection and number.
    """
    out = bytearray()
    for n in range(FRAMES_PER_CONNECTION):
        message = f"<13>1 2026-05-08T09:00:00Z host app - - - acct {marker} {connection}-{n}".encode()
        out += b"%d %s" % (len(message), message)
    return bytes(out)


def send(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall(data)


async def accounting(daemon: RunningDaemon) -> dict[str, float]:
    """
    The tcp listener's terms as one /metrics scrape shows them: frames, durable, in_flight and each
    drop reason (dropped:<reason>).
    """
    terms: dict[str, float] = {}
    for family in text_string_to_metric_families(await daemon.metrics()):
        for sample in family.samples:
            if sample.labels.get("listener") != "tcp":
                continue
            if sample.name == "aisoc_ingest_syslog_dropped_total":
                terms[f"dropped:{sample.labels['reason']}"] = sample.value
            elif sample.name in ("aisoc_ingest_syslog_frames_total", "aisoc_ingest_syslog_durable_total",
                                 "aisoc_ingest_syslog_in_flight"):
                terms[sample.name.removeprefix("aisoc_ingest_syslog_").removesuffix("_total")] = sample.value
    return terms


def unaccounted(terms: dict[str, float]) -> float:
    dropped = sum(value for name, value in terms.items() if name.startswith("dropped:"))
    return terms["frames"] - terms["durable"] - terms["in_flight"] - dropped


@pytest_twisted.ensureDeferred
async def test_every_frame_is_durable_or_counted(reactor: Any, tmp_path: Path, kafka: KafkaEnv) -> None:
    """60,000 frames over 4 connections into Kafka: the accounting holds exactly at every scrape, nothing is
    dropped, and every frame reaches the topic once the senders are done."""
    listener = SyslogListenerSettings(name="tcp", endpoint="tcp:0:interface=127.0.0.1", tenant="acme")
    # the sink's own delivery timeout (10 s), longer than the stall
    sink = SinkSettings(type="kafka", kafka=KafkaSettings(topic=kafka.topic,
                                                          config={"bootstrap.servers": kafka.bootstrap}))
    settings = daemon_settings(tmp_path / "state", sink=sink, syslog=SyslogSettings(listeners=[listener]))
    daemon = await start_daemon(reactor, settings)
    total = CONNECTIONS * FRAMES_PER_CONNECTION
    marker = uuid.uuid4().hex
    try:
        port = daemon.daemon.address("syslog-tcp").port
        payloads = [frames(c, marker) for c in range(CONNECTIONS)]
        kafka.relay.stall()
        stalled_at: float | None = time.monotonic()
        sending = gatherResults([threads.deferToThread(send, port, payload) for payload in payloads])
        scrapes, paused = [], 0.0
        while not (sending.called and stalled_at is None):
            scrapes.append(await accounting(daemon))
            if stalled_at is not None:
                paused = await daemon.metric("aisoc_ingest_syslog_paused_total", listener="tcp")
                if paused or time.monotonic() - stalled_at > MAX_STALL:
                    kafka.relay.resume()
                    stalled_at = None
            await deferLater(reactor, 0.2)
        await sending
        sent_at = time.monotonic()
        terms = await accounting(daemon)
        while terms["durable"] < total and not any(v for k, v in terms.items() if k.startswith("dropped:")):
            assert time.monotonic() - sent_at < 120, f"not durable 120 s after the last frame: {terms}"
            scrapes.append(terms)
            await deferLater(reactor, 0.05)
            terms = await accounting(daemon)
        print(f"\n{total:,} frames durable {time.monotonic() - sent_at:.2f} s after the last was sent "
              f"({len(scrapes)} scrapes while in flight)")
        assert [s for s in scrapes if unaccounted(s)] == []
        assert terms == {"frames": total, "durable": total, "in_flight": 0,
                         **{name: 0 for name in terms if name.startswith("dropped:")}}
        assert paused > 0  # the stall filled the sink: back-pressure was hit
        on_topic = await threads.deferToThread(kafka.consume, lambda got: len(got) >= total, 120)
    finally:
        kafka.relay.resume()
        await daemon.stop()
    numbers = sorted(json.loads(m.value)["message"].removeprefix(f"acct {marker} ") for m in on_topic)
    assert numbers == sorted(f"{c}-{n}" for c in range(CONNECTIONS) for n in range(FRAMES_PER_CONNECTION))
