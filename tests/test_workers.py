"""
C{workers: N}: the daemon and N - 1 worker processes serve the same HTTP and syslog sockets. The
daemon runs as the systemd unit runs it (C{aisoc-inboxd run}, a real process tree); the tests check
that every process serves and makes events durable, that the rate limit, HEC indexer acks and
/metrics count across processes, that a dead worker is replaced, and that stopping drains every process.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import task, threads
from twisted.logger import capturedLogs, formatEvent

from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.config import load_settings
from aisoc_inboxd.deliveries import WORKER_NUMBERS
from aisoc_inboxd.hec_acks import AckChannels
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.intake.ratelimit import RateLimiter
from aisoc_inboxd.reload import Reloader, Reloads, Replaceable
from aisoc_inboxd.sinks import SinkRecord
from aisoc_inboxd.sinks.spool import Spool, absorb
from aisoc_inboxd.workers.supervisor import WorkerSupervisor
from tests.support.kafka import KafkaEnv, free_port
from tests.support.templates import detection_template

PROJECT = Path(__file__).resolve().parents[1]


class Tree:
    """
    A daemon started with C{workers: 2} and its config, ports and log.
    """

    def __init__(self, tmp_path: Path, rate_limit_per_min: int = 1_000_000, sink: dict[str, Any] | None = None) -> None:
        self.tmp_path = tmp_path
        self.state = tmp_path / "state"
        self.templates = tmp_path / "templates"
        self.templates.mkdir()
        self.http_port, self.metrics_port, self.tcp_port, self.udp_port, self.admin_port = (
            free_port() for _ in range(5))
        self.config = tmp_path / "inboxd.yaml"
        self.config.write_text(json.dumps({
            "state_dir": str(self.state),
            "workers": 2,
            "http": {"listen": [f"tcp:{self.http_port}:interface=127.0.0.1"], "rate_limit_per_min": rate_limit_per_min},
            "metrics": {"listen": [f"tcp:{self.metrics_port}:interface=127.0.0.1"]},
            "admin": {"listen": [f"tcp:{self.admin_port}:interface=127.0.0.1"]},
            "sink": sink or {"type": "file"},
            "templates": {"directories": [str(self.templates)]},
            "syslog": {"listeners": [
                {"name": "tcp", "endpoint": f"tcp:{self.tcp_port}:interface=127.0.0.1", "tenant": "acme"},
                {"name": "udp", "udp_port": self.udp_port, "udp_interface": "127.0.0.1", "tenant": "acme"}]},
        }))
        self.token = self.mint("generic-json")
        self.log = tmp_path / "daemon.log"
        self.process = subprocess.Popen([sys.executable, "-m", "aisoc_inboxd.cli", "--config", str(self.config), "run",
                                         "--log-format=text"],
                                        cwd=PROJECT, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        self.wait_until(lambda: "worker processes serving" in self.log_text(), "the workers to serve")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "aisoc_inboxd.cli", "--config", str(self.config), *args],
                              cwd=PROJECT, capture_output=True, text=True, timeout=60, check=True)

    def mint(self, template: str, *options: str) -> str:
        return json.loads(self.cli("token", "mint", "--tenant", "acme", "--template", template, "--json",
                                   *options).stdout)["token"]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, condition: Callable[[], Any], what: str, seconds: float = 60.0) -> Any:
        deadline = time.monotonic() + seconds
        while not (result := condition()):
            assert self.process.poll() is None or what.startswith("exit"), \
                f"daemon exited ({self.process.returncode}):\n{self.log_text()[-3000:]}"
            assert time.monotonic() < deadline, f"waited {seconds}s for {what}:\n{self.log_text()[-3000:]}"
            time.sleep(0.1)
        return result

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def post(self, body: bytes, connection: http.client.HTTPConnection | None = None, token: str | None = None) -> int:
        """
        POST on a new connection (the kernel hands each to one process), or on C{connection}.
        """
        conn = connection or http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            conn.request("POST", f"/v1/inbox/{token or self.token}", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            if connection is None:
                conn.close()

    def events_by_process(self) -> dict[str, list[dict[str, Any]]]:
        files = {"daemon": self.state / "events" / "events.ndjson",
                 "worker-1": self.state / "events" / "worker-1" / "events.ndjson"}
        return {name: [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
                for name, path in files.items()}

    def metric(self, name: str, **labels: str) -> float:
        """
        The sum of C{name}'s samples whose labels include C{labels}, from the daemon's /metrics.
        """
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == name and labels.items() <= sample.labels.items())

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    started = Tree(tmp_path)
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_every_process_serves_http_and_syslog_and_metrics_add_up(tree: Tree) -> None:
    """Connections spread over the daemon and its worker; every accepted event is durable in one
    process's log exactly once, and the daemon's /metrics counts both processes' events."""
    assert len(tree.workers()) == 1
    sent = 0
    for i in range(300):
        assert tree.post(json.dumps({"seq": i}).encode()) == 200
        sent += 1
    for i in range(60):
        with socket.create_connection(("127.0.0.1", tree.tcp_port), 10) as s:
            line = f"<134>1 2026-11-27T10:00:00Z fw app - - - CEF:0|Acme|FW|1|100|tcp {i}|5|src=10.0.0.{i}"
            s.sendall(f"{len(line)} {line}".encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for i in range(20):
            udp.sendto(f"<134>1 2026-11-27T10:00:00Z fw app - - - CEF:0|Acme|FW|1|100|udp {i}|5|".encode(),
                       ("127.0.0.1", tree.udp_port))
    expected = sent + 60 + 20

    def all_durable() -> dict[str, list[dict[str, Any]]] | None:
        events = tree.events_by_process()
        return events if sum(len(v) for v in events.values()) >= expected else None

    events = tree.wait_until(all_durable, f"{expected} events")
    assert all(events.values()), {name: len(v) for name, v in events.items()}  # both processes served
    everything = [e for v in events.values() for e in v]
    assert len(everything) == expected
    assert sorted(e["unmapped"]["seq"] for e in everything if "seq" in e.get("unmapped", {})) == list(range(300))
    assert len({e["metadata"]["uid"] for e in everything}) == expected
    tree.wait_until(lambda: tree.metric("aisoc_ingest_inbox_events_total") == expected,
                    f"/metrics to count {expected} events across processes", seconds=20)
    assert tree.metric("aisoc_ingest_inbox_requests_total", route="webhook", outcome="ok") == sent
    assert "[worker-1]" in tree.log_text()  # the worker's log lines come out of the daemon's log
    assert tree.token not in tree.log_text()
    assert tree.stop() == 0


class Firehose:
    """
    A HEC client with indexer acks, as Kinesis Data Firehose uses one: batches posted on a channel,
    ackIds polled on C{/services/collector/ack}; every request on a new connection, which the kernel
    hands to either process. Each request's body has a length of its own, so the process that
    answered it is told by the C{bytes=N} of its log line (a worker's line is tagged C{[worker-1]}).
    """

    CHANNEL = "7a2b2c4e-5f60-4d1e-8a9b-0c1d2e3f4a5b"

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.token = tree.mint("splunk-hec", "--hec-acks")
        self.requests = 0

    def send(self, path: str, body: bytes) -> tuple[dict[str, Any], str]:
        """
        The reply to C{body} (padded to a length no other request has) and which process sent it.
        """
        self.requests += 1
        body = body.ljust(1000 + self.requests)
        conn = http.client.HTTPConnection("127.0.0.1", self.tree.http_port, timeout=30)
        try:
            conn.request("POST", path, body, {"Authorization": f"Splunk {self.token}",
                                              "X-Splunk-Request-Channel": self.CHANNEL,
                                              "User-Agent": "Amazon Kinesis Data Firehose Agent/1.0"})
            response = conn.getresponse()
            assert response.status == 200, (response.status, response.read())
            reply = json.loads(response.read())
        finally:
            conn.close()
        return reply, self.tree.wait_until(lambda: self._answerer(len(body)),
                                           f"the log line of request {self.requests}")

    def _answerer(self, length: int) -> str | None:
        for line in self.tree.log_text().splitlines():
            if " hec 200 ok " in line and f" bytes={length} " in line:
                return "worker-1" if "[worker-1]" in line else "daemon"
        return None

    def post(self, batch: int) -> tuple[int, str]:
        """
        A batch of records; its ackId and the process that issued it.
        """
        body = "".join(json.dumps({"event": f"batch {batch} record {i}", "sourcetype": "aws:firehose"})
                       for i in range(3))
        reply, issuer = self.send("/services/collector/event", body.encode())
        assert (reply["text"], reply["code"]) == ("Success", 0)
        return reply["ackId"], issuer

    def poll(self, ack_ids: list[int]) -> tuple[dict[str, bool], str]:
        reply, answerer = self.send("/services/collector/ack", json.dumps({"acks": ack_ids}).encode())
        return reply["acks"], answerer


def test_recent_deliveries_of_every_process_are_read_and_redelivered_through_the_daemon(tree: Tree) -> None:
    """Each process keeps the deliveries it served, numbered in its own range; the admin API (here
    through the CLI) reads every process's, and one a worker kept is redelivered by the daemon."""
    bodies = {json.dumps({"seq": i}) for i in range(40)}
    for body in bodies:
        assert tree.post(body.encode()) == 200
    served = {name for name, events in tree.events_by_process().items() if events}
    listed = json.loads(tree.cli("token", "deliveries", "--tenant", "acme", tree.token, "--json").stdout)
    assert {d["request"]["body"]["text"] for d in listed} == bodies
    assert len({d["n"] for d in listed}) == 40
    ranges = {"daemon" if d["n"] < WORKER_NUMBERS else f"worker-{d['n'] // WORKER_NUMBERS}" for d in listed}
    assert ranges == served
    chosen = max(listed, key=lambda d: d["n"])
    conn = http.client.HTTPConnection("127.0.0.1", tree.admin_port, timeout=30)
    key = (tree.state / "admin.key").read_text().strip()
    conn.request("POST", f"/v1/admin/tenants/acme/tokens/{chosen['key']}/deliveries/{chosen['n']}/redeliver",
                 headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    reply = json.loads(response.read())
    conn.close()
    assert response.status == 200 and reply["accepted"] == 1 and reply["redelivered"] == chosen["n"]
    again = json.loads(tree.cli("token", "deliveries", "--tenant", "acme", tree.token, "--json").stdout)
    assert len(again) == 41 and reply["n"] in {d["n"] for d in again}


def test_hec_acks_issued_by_one_process_are_answered_by_the_other(tree: Tree) -> None:
    """Firehose's sequence spread over both processes: every ackId reads true at its first poll (the
    post was answered once durable), whichever process issued it and whichever answers the poll,
    until each process has answered an ack the other issued; ids count 0, 1, 2, … across both. Acks a
    killed worker issued still read true: they live in the daemon."""
    firehose = Firehose(tree)
    crossed: set[tuple[str, str]] = set()
    issued: list[int] = []
    while len(crossed) < 2:
        assert len(issued) < 400, f"in {len(issued)} rounds no ack crossed both ways: {crossed}"
        time.sleep(0.05)  # both processes idle when the connection comes, so either may accept it
        ack_id, issuer = firehose.post(len(issued))
        issued.append(ack_id)
        acks, answerer = firehose.poll([ack_id])
        assert acks == {str(ack_id): True}, (issuer, answerer)
        if issuer != answerer:
            crossed.add((issuer, answerer))
    assert issued == list(range(len(issued)))

    by_worker: list[int] = []
    while not by_worker:
        assert len(issued) < 400, "the worker issued no ack"
        ack_id, issuer = firehose.post(len(issued))
        issued.append(ack_id)
        if issuer == "worker-1":
            by_worker.append(ack_id)
    (worker,) = tree.workers()
    os.kill(worker, signal.SIGKILL)
    assert firehose.poll(by_worker)[0] == {str(by_worker[0]): True}
    assert firehose.poll(by_worker)[0] == {str(by_worker[0]): False}  # true once, then forgotten
    assert tree.stop() == 0
    events = [e for v in tree.events_by_process().values() for e in v]
    assert len(events) == 3 * len(issued)


def test_rate_limit_holds_across_processes(tmp_path: Path) -> None:
    """The tenant's limit is one bucket in the daemon that workers lease from: spread over both
    processes the tenant gets its limit, not twice it; on one connection (one process) it still
    gets (nearly) all of it."""
    tree = Tree(tmp_path, rate_limit_per_min=60)
    try:
        started, statuses = time.monotonic(), []
        for _ in range(150):
            time.sleep(0.05)  # both processes idle when the connection comes, so either may accept it
            statuses.append(tree.post(b'{"a": 1}'))
        refilled = int(time.monotonic() - started)  # the bucket refills at 60/min: one a second
        assert set(statuses) <= {200, 429}
        assert 60 <= statuses.count(200) <= 62 + refilled, (statuses.count(200), refilled)
        assert tree.stop() == 0
    finally:
        if tree.process.poll() is None:
            tree.process.kill()
    events = tree.events_by_process()
    assert all(events.values()), {name: len(v) for name, v in events.items()}


def test_one_connection_gets_the_whole_limit(tmp_path: Path) -> None:
    tree = Tree(tmp_path, rate_limit_per_min=60)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", tree.http_port, timeout=30)
        statuses = [tree.post(b'{"a": 1}', conn) for _ in range(100)]
        conn.close()
        assert 59 <= statuses.count(200) <= 61, statuses.count(200)
        assert tree.stop() == 0
    finally:
        if tree.process.poll() is None:
            tree.process.kill()


def test_a_killed_worker_is_replaced_and_the_daemon_keeps_serving(tree: Tree) -> None:
    (first,) = tree.workers()
    os.kill(first, signal.SIGKILL)
    assert [tree.post(b'{"during": 1}') for _ in range(20)] == [200] * 20  # the daemon still serves
    tree.wait_until(lambda: "worker-1 exited (signal 9); a new one starts" in tree.log_text(), "the crash log line")
    second = tree.wait_until(lambda: [pid for pid in tree.workers() if pid != first], "a new worker")[0]
    tree.wait_until(lambda: tree.log_text().count("worker-1 serving") == 2, "the new worker to serve")
    assert _alive(second)
    for i in range(100):
        assert tree.post(json.dumps({"after": i}).encode()) == 200
    tree.wait_until(lambda: tree.events_by_process()["worker-1"], "the new worker to take connections")
    assert tree.stop() == 0
    assert not _alive(second)


def test_sigterm_drains_every_process(tree: Tree) -> None:
    (worker,) = tree.workers()
    for i in range(50):
        assert tree.post(json.dumps({"seq": i}).encode()) == 200
    assert tree.stop() == 0
    assert not _alive(worker)
    assert sum(len(v) for v in tree.events_by_process().values()) == 50
    assert "Traceback" not in tree.log_text()


def test_a_worker_stops_when_the_daemon_is_killed(tree: Tree) -> None:
    (worker,) = tree.workers()
    tree.process.kill()
    tree.process.wait()
    deadline = time.monotonic() + 30
    while _alive(worker):
        assert time.monotonic() < deadline, "the worker outlived its daemon"
        time.sleep(0.1)


def test_every_process_freezes_its_startup_heap_and_again_after_a_reload(tree: Tree) -> None:
    """The daemon and its worker each freeze what start-up built out of the garbage collector's full
    walks once they serve (gen-2 pauses of 50-150 ms made the webhook's p99), and again after a
    reload, so the catalog it replaced can be collected; serving is unchanged."""
    frozen = tree.wait_until(lambda: [line for line in tree.log_text().splitlines() if "start-up heap frozen" in line]
                             if tree.log_text().count("start-up heap frozen") == 2 else None, "both processes to freeze")
    assert sorted("[worker-1]" in line for line in frozen) == [False, True]
    assert all(int(line.split("frozen: ")[1].split()[0]) > 10_000 for line in frozen), frozen
    assert [tree.post(b'{"alert": {"id": "x1", "name": "n"}}') for _ in range(20)] == [200] * 20
    tree.process.send_signal(signal.SIGHUP)
    tree.wait_until(lambda: tree.log_text().count("reload applied") == 2, "both processes to apply the reload")
    tree.wait_until(lambda: tree.log_text().count("start-up heap frozen") == 4, "both processes to freeze again")
    assert [tree.post(b'{"alert": {"id": "x1", "name": "n"}}') for _ in range(20)] == [200] * 20
    assert tree.stop() == 0


def test_a_reload_is_applied_by_every_process_or_by_none(tree: Tree) -> None:
    """SIGHUP with a broken template beside a new one: the daemon rejects it and no process takes the new
    one; without the broken one, both do. A worker replaced while the files differ from what the daemon
    serves does not serve them, until a reload applies them to every process."""
    (worker,) = tree.workers()
    alert = b'{"alert": {"id": "x1", "name": "n"}}'
    (tree.templates / "acme-new.yaml").write_text(detection_template("acme-new"))
    fresh = tree.mint("acme-new")
    (tree.templates / "broken.yaml").write_text("id: broken\nclass_uid: 999999\n")
    tree.process.send_signal(signal.SIGHUP)
    tree.wait_until(lambda: "reload rejected" in tree.log_text(), "the daemon to reject the reload")
    [rejected] = [line for line in tree.log_text().splitlines() if "reload rejected" in line]
    assert "[worker-1]" not in rejected and "keeps serving: templates: " in rejected
    assert "reload applied" not in tree.log_text()
    assert [tree.post(alert, token=fresh) for _ in range(40)] == [400] * 40  # no process took acme-new

    (tree.templates / "broken.yaml").unlink()
    tree.process.send_signal(signal.SIGHUP)
    tree.wait_until(lambda: tree.log_text().count("reload applied") == 2, "both processes to apply the reload")
    applied = [line for line in tree.log_text().splitlines() if "reload applied" in line]
    assert sorted("[worker-1]" in line for line in applied) == [False, True]
    assert [tree.post(alert, token=fresh) for _ in range(100)] == [200] * 100
    served = [line for line in tree.log_text().splitlines() if "webhook 200 ok template=acme-new" in line]
    assert any("[worker-1]" in line for line in served) and not all("[worker-1]" in line for line in served)
    assert tree.workers() == [worker]

    (tree.templates / "acme-new.yaml").write_text(detection_template("acme-new", "Acme Alerts v2"))
    os.kill(worker, signal.SIGKILL)
    tree.wait_until(lambda: "worker-1 loaded another configuration than the daemon serves (templates)"
                    in tree.log_text(), "the replacement worker to be refused")
    tree.process.send_signal(signal.SIGHUP)
    tree.wait_until(lambda: tree.log_text().count("worker-1 serving") == 2, "a worker on the reloaded files")
    assert tree.log_text().count("reload applied") == 3  # the daemon's; no worker had joined
    assert tree.stop() == 0


def test_each_process_produces_to_kafka(tmp_path: Path, kafka: KafkaEnv) -> None:
    """With the Kafka sink every process has its own producer (and spool under worker-N/), holding half
    of the daemon's memory bounds (in-flight events, librdkafka's queue), as each says in its log; every
    accepted event arrives once, and the daemon's /metrics counts what both had acknowledged."""
    tree = Tree(tmp_path, sink={"type": "kafka", "kafka": {
        "topic": kafka.topic, "config": {"bootstrap.servers": kafka.bootstrap}}})
    try:
        bounds = [line for line in tree.log_text().splitlines() if "Kafka sink: at most" in line]
        assert len(bounds) == 2 and sum("[worker-1]" in line for line in bounds) == 1, bounds
        assert all(line.endswith("Kafka sink: at most 5000 events in flight, librdkafka queue of 32768 KiB and "
                                 "50000 messages in this process") for line in bounds), bounds
        for i in range(200):
            assert tree.post(json.dumps({"seq": i}).encode()) == 200
        messages = kafka.consume(lambda got: len(got) >= 200, timeout=60)
        assert sorted(json.loads(m.value)["unmapped"]["seq"] for m in messages) == list(range(200))
        tree.wait_until(lambda: tree.metric("aisoc_ingest_kafka_events_produced_total") == 200,
                        "/metrics to count both producers", seconds=20)
        requests = [line for line in tree.log_text().splitlines() if "webhook 200 ok" in line]
        assert any("[worker-1]" in line for line in requests) and not all("[worker-1]" in line for line in requests)
        assert (tree.state / "spool" / "worker-1").is_dir()
        assert tree.stop() == 0
    finally:
        if tree.process.poll() is None:
            tree.process.kill()


def _records(tag: str, count: int) -> list[SinkRecord]:
    return [SinkRecord("acme", "generic-json", "webhook", 1_700_000_000.0 + i, f"{tag}-{i}".encode())
            for i in range(count)]


@pytest_twisted.ensureDeferred
async def test_a_retired_workers_spool_is_taken_over_in_order(reactor: Any, tmp_path: Path) -> None:
    """Lowering C{workers} leaves a worker's spool behind; the daemon moves its segments after its
    own so the forwarder drains them, and nothing it held is lost."""
    own, orphan = tmp_path / "spool", tmp_path / "spool" / "worker-3"
    for directory, tag in ((own, "own"), (orphan, "orphan")):
        spool = Spool(directory, 1 << 20, reactor, segment_bytes=64)
        spool.open()
        for record in _records(tag, 3):
            await spool.append([record])
        await spool.close()
    assert absorb(own, orphan) == 3
    assert not orphan.exists()
    merged = Spool(own, 1 << 20, reactor)
    merged.open()
    drained = []
    while (segment := await merged.oldest()) is not None:
        drained += [record.value for record in segment.records]
        await merged.delete(segment.seq)
    await merged.close()
    assert drained == [f"{tag}-{i}".encode() for tag in ("own", "orphan") for i in range(3)]


@pytest_twisted.ensureDeferred
async def test_a_reload_one_worker_cannot_load_is_applied_by_no_process(reactor: Any, tmp_path: Path) -> None:
    """The daemon's side of a real worker process that reads its own copy of the config: when only that
    copy is broken, the daemon loads the reload but rejects it, naming the worker and why, and neither
    process applies it; once the copy is mended, the next reload is applied by both."""
    templates = tmp_path / "templates"
    templates.mkdir()
    config = {"state_dir": str(tmp_path / "state"), "workers": 2, "http": {"listen": []}, "metrics": {"listen": []},
              "admin": {"listen": []}, "syslog": {"listeners": []}, "templates": {"directories": [str(templates)]}}
    ours, theirs = tmp_path / "daemon.yaml", tmp_path / "worker.yaml"
    for path in (ours, theirs):
        path.write_text(json.dumps(config))
    settings = load_settings(ours)
    catalog = TemplateCatalog.load(settings.templates.directories, settings.templates.allowed)
    limiter = RateLimiter(reactor, settings.http.rate_limit_per_min)
    reloader = Reloader(settings, lambda: load_settings(ours), catalog, {}, Replaceable(settings.cef), limiter,
                        threads.deferToThread)
    supervisor = WorkerSupervisor(1, [], limiter, AckChannels.build(settings.hec, reactor), tmp_path / "state",
                                  theirs, reactor)
    reloads = Reloads(reloader, reactor, Metrics().reloads, lambda: "listening", supervisor)
    await supervisor.spawn_all(reloader.fingerprint)
    try:
        (templates / "acme-new.yaml").write_text(detection_template("acme-new"))
        theirs.write_text("http: [unclosed\n")
        with capturedLogs() as events:
            outcome = await reloads.reload()
        assert outcome.rejection is not None and outcome.rejection.startswith(f"worker-1: config: {theirs}: not valid YAML")
        assert any(formatEvent(e).startswith("reload rejected, the previous configuration keeps serving: worker-1: config: ")
                   for e in events)
        assert not any("reload applied" in formatEvent(e) for e in events)
        assert "acme-new" not in catalog.ids()

        theirs.write_text(json.dumps(config))
        with capturedLogs() as events:
            assert (await reloads.reload()).applied
            for _ in range(100):  # the worker confirmed; its log line may still be in the pipe
                applied = sorted(e.get("log_system", "daemon") for e in events if "reload applied" in formatEvent(e))
                if len(applied) == 2:
                    break
                await task.deferLater(reactor, 0.1)
        assert applied == ["daemon", "worker-1"]
        assert "acme-new" in catalog.ids()
    finally:
        await supervisor.stopService()

