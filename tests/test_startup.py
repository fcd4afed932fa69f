"""
Starting the daemon as it ships: the systemd unit's own ExecStart line, every config file in etc/
(with local stand-ins for its hosts), and start-ups that fail, which must end at once with one line
saying why.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.support.kafka import free_port
from tests.support.shared import PROJECT
from tests.support.tls import make_tls_files

BIN = Path(sys.executable).parent
UNIT = PROJECT / "systemd" / "aisoc-inboxd.service"
#: a line of the default (text) log: time, [namespace#level], message
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[[^\]]+\] ")


class Daemon:
    """
    The daemon as a child process, its stdout and stderr in files, told to say READY=1 on a
    socket standing in for systemd's.
    """

    def __init__(self, argv: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.out, self.err = tmp_path / "stdout", tmp_path / "stderr"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp_path / "notify"))
        self.notify.settimeout(0.2)
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(argv, cwd=tmp_path, stdout=out, stderr=err,
                                            env=dict(os.environ, **(env or {}), NOTIFY_SOCKET=str(tmp_path / "notify")))

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def ready(self, timeout: float = 60) -> None:
        """
        Wait for READY=1: the store is upgraded, every listener bound and every worker serving.
        """
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"the daemon exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"no READY=1:\n{self.output()}"
            try:
                if "READY=1" in self.notify.recv(4096).decode().split("\n"):
                    return
            except TimeoutError:
                pass

    def get(self, port: int, path: str = "/healthz", tls_ca: Path | None = None, timeout: float = 60) -> int:
        """
        The status of C{GET path} once the port answers (over TLS verified against C{tls_ca}).
        """
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"the daemon exited:\n{self.output()}"
            try:
                with socket.create_connection(("127.0.0.1", port), 1) as raw:
                    context = ssl.create_default_context(cafile=str(tls_ca)) if tls_ca else None
                    with context.wrap_socket(raw, server_hostname="localhost") if context else raw as s:
                        s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
                        return int(s.recv(4096).split(b" ", 2)[1])
            except OSError:
                assert time.monotonic() < deadline, f"the daemon never answered on {port}:\n{self.output()}"
                time.sleep(0.2)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        self.notify.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def local(endpoint: str, files: dict[str, str]) -> str:
    """
    A production endpoint string made local: a free port on 127.0.0.1, stand-in files for paths.
    """
    kind, _, rest = endpoint.partition(":")
    options = [option for option in rest.split(":")[1:] if not option.startswith("interface=")]
    for index, option in enumerate(options):
        name, _, value = option.partition("=")
        options[index] = f"{name}={files.get(value, value)}"
    return ":".join([kind, str(free_port()), "interface=127.0.0.1", *options])


def local_config(source: Path, tmp_path: Path, stand_ins: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """
    C{source} with its hosts, ports and host files replaced by local ones, everything else as shipped.
    """
    config = yaml.safe_load(source.read_text())
    tls = make_tls_files(tmp_path / "tls")
    files = {"/etc/aisoc-inboxd/tls/key.pem": str(tls.server_key),
             "/etc/aisoc-inboxd/tls/fullchain.pem": str(tls.server_cert),
             "/etc/aisoc-inboxd/tls/syslog-clients-ca.pem": str(tls.ca_cert)}
    config["state_dir"] = str(tmp_path / "state")
    for section in ("http", "metrics", "admin"):
        config[section]["listen"] = [local(endpoint, files) for endpoint in config[section]["listen"]]
    for listener in config["syslog"]["listeners"]:
        if "udp_port" in listener:
            listener.update(udp_port=free_port(), udp_interface="127.0.0.1")
        else:
            listener["endpoint"] = local(listener["endpoint"], files)
        if "client_ca_file" in listener:
            listener["client_ca_file"] = files[listener["client_ca_file"]]
    templates = config["templates"]
    templates["directories"] = [str(tmp_path / "templates") for _ in templates["directories"]]
    (tmp_path / "templates").mkdir()
    if config["database"]["dsn"]:
        config["database"]["dsn"] = stand_ins["dsn"]
    if config["sink"]["type"] == "kafka":
        # the stand-in broker speaks plaintext without SASL: the cluster's address and credentials go
        kafka = config["sink"]["kafka"]["config"]
        for key in [key for key in kafka if key.startswith(("security.", "sasl.", "ssl."))]:
            del kafka[key]
        kafka["bootstrap.servers"] = stand_ins["bootstrap"]
    if config["cef"]["allow_cidrs"]:
        config["cef"]["allow_cidrs"] = ["127.0.0.0/8"]
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(config))
    return path, {"ca": tls.ca_cert, "config": config}


def port_of(endpoint: str) -> int:
    return int(endpoint.split(":")[1])


def test_unit_execstart_serves_and_stops_cleanly(tmp_path: Path, daemons: list[Daemon]) -> None:
    """The unit's ExecStart line, run as written (venv and config paths made local, the state
    directory given as systemd gives it), serves, logs one clean JSON object per line, and exits 0
    on SIGTERM."""
    [exec_start] = [line.partition("=")[2] for line in UNIT.read_text().splitlines()
                    if line.startswith("ExecStart=")]
    http, metrics, admin = free_port(), free_port(), free_port()
    config = tmp_path / "inboxd.yaml"
    config.write_text(f"http:\n  listen: ['tcp:{http}:interface=127.0.0.1']\n"
                      f"metrics:\n  listen: ['tcp:{metrics}:interface=127.0.0.1']\n"
                      f"admin:\n  listen: ['tcp:{admin}:interface=127.0.0.1']\nsyslog:\n  listeners: []\n")
    argv = [arg.replace("/opt/aisoc-inboxd/.venv/bin/", f"{BIN}/").replace("/etc/aisoc-inboxd/inboxd.yaml",
                                                                            str(config))
            for arg in shlex.split(exec_start)]
    environment = dict(line.split("=", 1) for line in (PROJECT / "etc" / "aisoc-inboxd.env").read_text().splitlines()
                       if line and not line.startswith("#"))
    daemon = Daemon(argv, tmp_path, {**environment, "STATE_DIRECTORY": str(tmp_path / "state")})
    daemons.append(daemon)
    daemon.ready()
    assert daemon.get(http) == 200
    assert daemon.get(admin, "/readyz") == 200
    assert daemon.stop() == 0, daemon.output()
    assert (tmp_path / "state" / "inboxd.sqlite3").exists()
    text = daemon.out.read_text()
    assert "\x1e" not in text and "unpersistable" not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert {"time", "level", "namespace", "message"} <= set(records[0])
    ready = [r for r in records if r["message"].startswith("store ready at schema version")]
    assert ready and ready[0]["version"] == int(ready[0]["message"].rsplit(" ", 1)[1])
    assert daemon.err.read_text() == ""


@pytest.mark.parametrize("name", sorted(p.name for p in (PROJECT / "etc").glob("*.yaml")))
def test_every_shipped_config_starts(name: str, tmp_path: Path, daemons: list[Daemon],
                                     request: pytest.FixtureRequest) -> None:
    """Each etc/*.yaml starts and serves as shipped, with local stand-ins for what names its hosts:
    free ports on 127.0.0.1, test certificates, a real PostgreSQL database and a tansu broker.
    The default log is readable text lines."""
    source = PROJECT / "etc" / name
    shipped = yaml.safe_load(source.read_text())
    stand_ins: dict[str, Any] = {}
    if shipped.get("database", {}).get("dsn"):
        stand_ins["dsn"] = request.getfixturevalue("pg_database").dsn
    if shipped.get("sink", {}).get("type") == "kafka":
        stand_ins["bootstrap"] = request.getfixturevalue("kafka").bootstrap
    path, made = local_config(source, tmp_path, stand_ins)
    config = made["config"]
    daemon = Daemon([str(BIN / "aisoc-inboxd"), "run", "--config", str(path)], tmp_path)
    daemons.append(daemon)
    daemon.ready()
    http = config["http"]["listen"][0]
    assert daemon.get(port_of(http), "/readyz", made["ca"] if http.startswith("ssl:") else None) == 200
    assert daemon.get(port_of(config["admin"]["listen"][0])) == 200
    assert daemon.stop() == 0, daemon.output()
    lines = daemon.out.read_text().splitlines()
    assert lines and all(TEXT_LINE.match(line) or line.startswith("\t") for line in lines), lines
    assert "Traceback" not in daemon.output()


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inboxd.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\nmetrics:\n  listen: []\nadmin:\n  listen: []\n"
                    "syslog:\n  listeners: []\n" + text)
    return path


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


KAFKA_TYPO = "sink:\n  type: kafka\n  kafka:\n    config:\n      bootstrap.servers: 127.0.0.1:9\n      linger.msx: 5\n"
LINGER = 'cannot start: sink.kafka.config: No such configuration property: "linger.msx"'


@pytest.mark.parametrize("runner, config_text, message", [
    ("run", KAFKA_TYPO, LINGER),
    ("twistd", KAFKA_TYPO, LINGER),
    ("run", "http:\n  listne: []\n", "cannot start: {config}: http.listne: unknown key"),
    ("run", "cef:\n  tenant: acme\ntemplates:\n  allowed: [generic-json]\n",
     "cannot start: cef.template: template 'cef-syslog' is not in templates.allowed"),
    ("run", "http:\n  listen: ['tcp:{busy}:interface=127.0.0.1']\n",
     "cannot start: Couldn't listen on 127.0.0.1:{busy}: [Errno 98] Address already in use."),
    ("twistd", "http:\n  listen: ['tcp:{busy}:interface=127.0.0.1']\n",
     "cannot start: Couldn't listen on 127.0.0.1:{busy}: [Errno 98] Address already in use."),
])
def test_a_failed_start_exits_with_one_line(runner: str, config_text: str, message: str, tmp_path: Path,
                                            busy_port: int) -> None:
    """A Kafka setting librdkafka refuses, a bad key, a template the config uses but does not allow,
    a port in use: the process exits non-zero at once, and says why in one line, with no traceback,
    usage text or "Unhandled error"."""
    config = write_config(tmp_path, config_text.format(busy=busy_port))
    argv = ([str(BIN / "aisoc-inboxd"), "run", "--config", str(config)] if runner == "run" else
            [str(BIN / "twistd"), "-n", "--pidfile", "", "aisoc-inboxd", "--config", str(config)])
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    [line] = [line for line in output.splitlines() if "cannot start" in line]
    assert message.format(config=config, busy=busy_port) in line, output
    for noise in ("Traceback", "Unhandled error", "Usage", "usage:"):
        assert noise not in output, output


#: a line of the JSON log (aisoc_inboxd.logs): the keys every record has
JSON_KEYS = {"time", "level", "namespace", "message"}

RUNNERS = {
    "twist": [str(BIN / "twist"), "aisoc-inboxd"],
    "twistd": [str(BIN / "twistd"), "-n", "--pidfile", "", "aisoc-inboxd"],
}


@pytest.mark.parametrize("log_format", [None, "json"])
@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_twist_and_twistd_log_like_run(runner: str, log_format: str | None, tmp_path: Path,
                                       daemons: list[Daemon]) -> None:
    """With stdout a file, not a terminal, twist and twistd -n write readable text lines by default
    (twist wrote Twisted's raw JSON records: record separators, "unpersistable" stand-ins, format
    strings), and with the plugin's --log-format json one clean JSON object per line, as run does."""
    http = free_port()
    config = write_config(tmp_path, f"http:\n  listen: ['tcp:{http}:interface=127.0.0.1']\n")
    daemon = Daemon([*RUNNERS[runner], "--config", str(config),
                     *(["--log-format", log_format] if log_format else [])], tmp_path)
    daemons.append(daemon)
    daemon.ready()
    assert daemon.get(http) == 200
    daemon.stop()
    text = daemon.out.read_text()
    assert "\x1e" not in text and "unpersistable" not in text and "log_format" not in text, text
    lines = text.splitlines()
    if log_format == "json":
        records = [json.loads(line) for line in lines]
        assert all(JSON_KEYS <= set(record) for record in records), records
        assert any(r["message"] == f"http listening on IPv4Address(type='TCP', host='127.0.0.1', port={http})"
                   for r in records), records
    else:
        assert all(TEXT_LINE.match(line) or line.startswith("\t") for line in lines), lines
        assert any(line.endswith(f"http listening on IPv4Address(type='TCP', host='127.0.0.1', port={http})")
                   for line in lines), lines


def test_a_worker_that_cannot_start_is_one_line_not_an_unhandled_error(tmp_path: Path) -> None:
    """A worker whose start fails (its store refuses the upgrade: a fault put into the worker
    process alone, through a sitecustomize that only workers act on) says so in one line, the daemon
    says in one line that it cannot start, and the process exits 1 — no "Unhandled error in
    Deferred" with a traceback from the worker."""
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(
        "import sys\n"
        "if '--index' in sys.argv:  # a worker process (aisoc_inboxd.workers.main), not the daemon\n"
        "    from aisoc_inboxd.store.sqlite import SqliteStore\n\n"
        "    async def upgrade(self):\n"
        "        raise OSError('disk I/O error (put into this worker by the test)')\n\n"
        "    SqliteStore.upgrade = upgrade\n")
    config = write_config(tmp_path, f"workers: 2\nhttp:\n  listen: ['tcp:{free_port()}:interface=127.0.0.1']\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(faults), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([str(BIN / "aisoc-inboxd"), "run", "--config", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Unhandled error" not in output and "Traceback" not in output, output
    worker = [line for line in output.splitlines() if "] cannot start: disk I/O error" in line]
    assert worker and all("[worker-" in line for line in worker), output
    [daemon] = [line for line in output.splitlines() if "[aisoc_inboxd.service#critical] cannot start:" in line]
    assert re.search(r"cannot start: worker-\d exited before serving \(exit status 1\); its own lines above say why",
                     daemon), output
    assert "a new one starts" not in output, output  # the daemon stops: no worker is respawned
