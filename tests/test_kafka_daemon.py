"""
The whole daemon on the Kafka sink against a real Kafka-protocol broker (tansu): a 2xx means the event
reaches Kafka, through relay cuts, a full spool, kill -9 and SIGTERM.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from twisted.internet import defer, threads

from aisoc_inboxd.config import KafkaSettings, SinkSettings
from tests.support.daemon import daemon_settings, start_daemon
from tests.support.kafka import Consumed, KafkaEnv, free_port, wait_for_port
from tests.support.ocsf import assert_valid_ocsf
from tests.support.shared import PROJECT

#: short delivery timeout so a cut is noticed in seconds
FAST = {"message.timeout.ms": "3000"}


def kafka_sink(kafka: KafkaEnv, **overrides: Any) -> SinkSettings:
    return SinkSettings(type="kafka", kafka=KafkaSettings(topic=kafka.topic, config={
        "bootstrap.servers": kafka.bootstrap, **FAST}, **overrides))


def ids_of(messages: list[Consumed]) -> list[str]:
    return [json.loads(json.loads(m.value)["raw_data"])["id"] for m in messages]


async def consume_ids(kafka: KafkaEnv, expected: set[str], timeout: float = 60) -> list[str]:
    messages = await threads.deferToThread(kafka.consume, lambda got: expected <= set(ids_of(got)), timeout)
    return ids_of(messages)


@pytest_twisted.ensureDeferred
async def test_events_arrive_once_with_key_and_headers(reactor: Any, tmp_path: Path, kafka: KafkaEnv) -> None:
    """Each accepted event is one Kafka message: key = tenant, value = valid OCSF, headers set."""
    running = await start_daemon(reactor, daemon_settings(tmp_path / "state", sink=kafka_sink(kafka)))
    try:
        token = await running.mint("acme", "generic-json")
        body = "\n".join(json.dumps({"id": f"e{i}", "title": f"t{i}"}) for i in range(30)).encode()
        status, reply, _ = await running.post(f"/v1/inbox/{token}", body)
        assert (status, reply) == (200, {"accepted": 30, "template": "generic-json"})
        messages = await threads.deferToThread(kafka.consume, lambda got: len(got) >= 30, 30)
    finally:
        await running.stop()
    assert sorted(ids_of(messages)) == sorted(f"e{i}" for i in range(30))
    for message in messages:
        assert message.key == b"acme"
        assert message.headers["tenant"] == b"acme"
        assert message.headers["template"] == b"generic-json"
        assert message.headers["route"] == b"webhook"
        assert_valid_ocsf(json.loads(message.value))


@pytest_twisted.ensureDeferred
async def test_relay_cut_mid_load_loses_nothing(reactor: Any, tmp_path: Path, kafka: KafkaEnv) -> None:
    """With the path to Kafka cut mid-load every request still gets 200 (spooled); once it is back the
    spool drains and every accepted event arrives."""
    running = await start_daemon(reactor, daemon_settings(tmp_path / "state", sink=kafka_sink(kafka)))
    try:
        token = await running.mint("acme")
        sent: set[str] = set()

        async def batch(n: int) -> None:
            body = "\n".join(json.dumps({"id": f"b{n}-{i}"}) for i in range(10)).encode()
            status, reply, _ = await running.post(f"/v1/inbox/{token}", body)
            assert (status, reply) == (200, {"accepted": 10, "template": "generic-json"})
            sent.update(f"b{n}-{i}" for i in range(10))

        for n in range(5):
            await batch(n)
        kafka.relay.cut()
        await defer.gatherResults([defer.Deferred.fromCoroutine(batch(n)) for n in range(5, 25)])
        assert running.daemon.sink._spool.bytes > 0
        metrics = await running.metrics()
        assert "aisoc_ingest_spool_bytes" in metrics
        kafka.relay.reopen()
        arrived = await consume_ids(kafka, sent)
    finally:
        await running.stop()
    assert set(arrived) == sent


@pytest_twisted.ensureDeferred
async def test_full_spool_answers_503(reactor: Any, tmp_path: Path, kafka: KafkaEnv) -> None:
    """When Kafka is unreachable and the spool is full, senders get 503 + Retry-After, never a silent drop."""
    settings = daemon_settings(tmp_path / "state", sink=kafka_sink(kafka, spool_max_bytes=20_000))
    running = await start_daemon(reactor, settings)
    try:
        token = await running.mint("acme")
        kafka.relay.cut()
        statuses = []
        accepted: set[str] = set()
        for n in range(40):
            body = "\n".join(json.dumps({"id": f"f{n}-{i}", "pad": "x" * 100}) for i in range(10)).encode()
            status, reply, response = await running.post(f"/v1/inbox/{token}", body)
            statuses.append(status)
            if status == 200:
                accepted.update(f"f{n}-{i}" for i in range(10))
            else:
                assert status == 503
                assert response.headers.getRawHeaders("retry-after")
                assert "could not be made durable" in reply["error"]
        assert 200 in statuses and 503 in statuses
        assert (await running.post("/readyz", b"", method="GET"))[0] == 503
        kafka.relay.reopen()
        arrived = await consume_ids(kafka, accepted)
    finally:
        await running.stop()
    assert accepted <= set(arrived)


def write_config(tmp_path: Path, kafka: KafkaEnv, http_port: int) -> Path:
    config = tmp_path / "inboxd.yaml"
    config.write_text(json.dumps({
        "state_dir": str(tmp_path / "state"),
        "http": {"listen": [f"tcp:{http_port}:interface=127.0.0.1"]},
        "metrics": {"listen": []}, "admin": {"listen": []}, "syslog": {"listeners": []},
        "sink": {"type": "kafka", "kafka": {"topic": kafka.topic,
                                            "config": {"bootstrap.servers": kafka.bootstrap, **FAST}}},
    }))
    return config


def start_process(config: Path, http_port: int, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "aisoc_inboxd.cli", "--config", str(config), "run"],
                               cwd=PROJECT, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(http_port, timeout=60)
    except Exception:
        process.kill()
        raise AssertionError(f"the daemon never listened (exit {process.poll()}):\n{log.read_text()[-4000:]}") from None
    return process


def mint(config: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "aisoc_inboxd.cli", "--config", str(config), "token", "mint",
                           "--tenant", "acme", "--template", "generic-json", "--json"],
                          cwd=PROJECT, capture_output=True, text=True, timeout=60, check=True)
    return str(json.loads(done.stdout)["token"])


async def post_batches(port: int, token: str, prefix: str, batches: int) -> set[str]:
    sent: set[str] = set()
    for n in range(batches):
        ids = [f"{prefix}{n}-{i}" for i in range(10)]
        response = await treq.post(f"http://127.0.0.1:{port}/v1/inbox/{token}",
                                   data="\n".join(json.dumps({"id": x}) for x in ids).encode())
        assert response.code == 200, await response.text()
        sent.update(ids)
    return sent


@pytest_twisted.ensureDeferred
async def test_kill_9_while_spooled_then_restart_loses_nothing(tmp_path: Path, kafka: KafkaEnv) -> None:
    """Events acknowledged while Kafka was unreachable survive kill -9 of the daemon: the restarted
    daemon drains its spool into Kafka."""
    port = free_port()
    config = write_config(tmp_path, kafka, port)
    token = mint(config)
    log = tmp_path / "daemon.log"
    process = start_process(config, port, log)
    try:
        sent = await post_batches(port, token, "before", 3)
        kafka.relay.cut()
        sent |= await post_batches(port, token, "cut", 10)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert any((tmp_path / "state" / "spool").iterdir())
    kafka.relay.reopen()
    process = start_process(config, port, log)
    try:
        arrived = await consume_ids(kafka, sent)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert set(arrived) >= sent


@pytest_twisted.ensureDeferred
async def test_sigterm_drains_and_exits_0(tmp_path: Path, kafka: KafkaEnv) -> None:
    """SIGTERM stops accepting, finishes what is in flight, flushes to Kafka and exits 0."""
    port = free_port()
    config = write_config(tmp_path, kafka, port)
    token = mint(config)
    log = tmp_path / "daemon.log"
    process = start_process(config, port, log)
    sent = await post_batches(port, token, "t", 10)
    process.send_signal(signal.SIGTERM)
    code = await threads.deferToThread(process.wait, 60)
    assert code == 0, log.read_text()[-3000:]
    arrived = await consume_ids(kafka, sent)
    assert set(arrived) >= sent
    assert not os.path.exists(tmp_path / "state" / "spool") or not any(
        f.stat().st_size for f in (tmp_path / "state" / "spool").iterdir())
