"""
Operating the daemon as an appliance would: the systemd unit, the notify protocol (READY, watchdog,
RELOADING, STOPPING), SIGHUP reloads that keep the old set serving when the new one is broken,
certificate reloads, and twistd daemonizing with a pidfile.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
from twisted.internet import ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from treq.client import HTTPClient

from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon
from tests.support.kafka import free_port, wait_for_port
from tests.support.shared import PROJECT
from tests.support.tls import make_tls_files

UNIT = PROJECT / "systemd" / "aisoc-inboxd.service"
GOOD_TEMPLATE = """id: acme-custom
vendor_name: Acme
product_name: Acme Alerts
class_uid: 2004
class_name: Detection Finding
activity_id: 1
field_map:
  alert.id: finding_info.uid
  alert.name: finding_info.title
"""


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The shipped unit verifies with systemd-analyze once its install prefix points at this checkout."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/test-services installs the systemd package"
    unit = tmp_path / "aisoc-inboxd.service"
    unit.write_text(UNIT.read_text().replace("/opt/aisoc-inboxd", str(PROJECT)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = UNIT.read_text()
    for line in ("Type=notify", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "Restart=on-failure",
                 "StateDirectory=aisoc-inboxd", "ConfigurationDirectory=aisoc-inboxd", "LogsDirectory=aisoc-inboxd",
                 "EnvironmentFile=-/etc/aisoc-inboxd/aisoc-inboxd.env", "ExecReload=/bin/kill -HUP $MAINPID",
                 "User=aisoc-inboxd"):
        assert line in text, line
    assert (PROJECT / "etc" / "aisoc-inboxd.env").exists()


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET, read all the time as systemd does."""

    def __init__(self, path: Path, log: Path | None = None, read: bool = True) -> None:
        self.path = path
        self.log = log
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []
        if read:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except OSError:
                return  # closed

    def wait_for(self, state: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not any(state in m.split("\n") for m in list(self.messages)):
            assert time.monotonic() < deadline, (
                f"no {state} among {self.messages[-20:]}; daemon log:\n"
                + (self.log.read_text()[-4000:] if self.log and self.log.exists() else ""))
            time.sleep(0.05)

    def close(self) -> None:
        self.sock.close()


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aisoc_inboxd.cli", "--config", str(config), *args],
                          cwd=PROJECT, capture_output=True, text=True, timeout=60)


def post(port: int, token: str, body: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.sendall(f"POST /v1/inbox/{token} HTTP/1.0\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        return int(s.recv(4096).split(b" ", 2)[1])


def wait_for_push_stats(config: Path, admin_port: int, key_file: Path, requests: int) -> dict[str, Any]:
    """
    The one token's push stats once the daemon flushed C{requests} of them (every 5 s), read through
    the admin API and checked against the CLI.
    """
    request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/v1/admin/tenants/acme/tokens/stats",
                                     headers={"Authorization": f"Bearer {key_file.read_text().strip()}"})
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(request, timeout=30) as response:
            [row] = json.loads(response.read())["tokens"]
        if row["requests_24h"] >= requests or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert json.loads(run_cli(config, "token", "stats", "--tenant", "acme", "--json").stdout) == [row]
    return row


def test_notify_reload_and_stop_under_a_service_manager(tmp_path: Path) -> None:
    """Started as the unit starts it, the daemon says READY=1 once listening, pings the watchdog, counts
    push stats that the CLI and the admin API read, reloads
    on SIGHUP (a broken template is rejected and the old set keeps serving; a good one is picked up),
    and on SIGTERM says STOPPING=1 and exits 0."""
    port, admin_port = free_port(), free_port()
    templates = tmp_path / "templates"
    templates.mkdir()
    config = tmp_path / "inboxd.yaml"
    config.write_text(json.dumps({
        "state_dir": str(tmp_path / "state"),
        "http": {"listen": [f"tcp:{port}:interface=127.0.0.1"]},
        "metrics": {"listen": []}, "admin": {"listen": [f"tcp:{admin_port}:interface=127.0.0.1"]},
        "syslog": {"listeners": []},
        "templates": {"directories": [str(templates)]},
    }))
    token = json.loads(run_cli(config, "token", "mint", "--tenant", "acme", "--template", "generic-json",
                               "--json").stdout)["token"]
    log = tmp_path / "daemon.log"
    notify = NotifySocket(tmp_path / "notify.sock", log)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000")
    process = subprocess.Popen([sys.executable, "-m", "aisoc_inboxd.cli", "--config", str(config), "run"],
                               cwd=PROJECT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        notify.wait_for("READY=1")
        wait_for_port(port)
        env["WATCHDOG_PID"] = str(process.pid)
        notify.wait_for("WATCHDOG=1")
        assert post(port, token, b'{"a": 1}') == 200
        assert post(port, token, b"not json") == 400
        stats = wait_for_push_stats(config, admin_port, tmp_path / "state" / "admin.key", requests=2)
        assert (stats["requests_24h"], stats["errors_24h"]) == (2, 1)

        (templates / "broken.yaml").write_text("id: broken\nclass_uid: 999999\n")
        count = len(notify.messages)
        process.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1")
        deadline = time.monotonic() + 30
        while "reload rejected" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        assert post(port, token, b'{"a": 2}') == 200
        assert len(notify.messages) > count

        (templates / "broken.yaml").unlink()
        (templates / "acme-custom.yaml").write_text(GOOD_TEMPLATE)
        custom = json.loads(run_cli(config, "token", "mint", "--tenant", "acme", "--template", "acme-custom",
                                    "--json").stdout)["token"]
        assert post(port, custom, b'{"alert": {"id": "x1", "name": "n"}}') == 400  # not loaded yet
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "reloaded templates" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        assert post(port, custom, b'{"alert": {"id": "x1", "name": "n"}}') == 200

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        notify.wait_for("STOPPING=1", seconds=5)
    finally:
        if process.poll() is None:
            process.kill()
        notify.close()
    events = [json.loads(line) for line in (tmp_path / "state" / "events" / "events.ndjson").read_text().splitlines()]
    assert [e["metadata"]["log_name"] for e in events] == ["generic-json", "generic-json", "acme-custom"]


@pytest_twisted.async_yield_fixture
async def tls_daemon(reactor: Any, tmp_path: Path) -> AsyncIterator[tuple[RunningDaemon, Any]]:
    tls = make_tls_files(tmp_path / "tls")
    running = await start_daemon(reactor, daemon_settings(tmp_path / "state", tls=tls), tls)
    yield running, tls
    await running.stop()


async def status_with_ca(reactor: Any, url: str, ca_pem: bytes) -> int:
    trust = ssl.Certificate.loadPEM(ca_pem)
    client = HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust)))
    response = await client.get(url)
    await response.content()
    return response.code


@pytest_twisted.ensureDeferred
async def test_certificate_reload_swaps_without_closing_the_port(reactor: Any, tmp_path: Path,
                                                                  tls_daemon: Any) -> None:
    """After new certificate files and a reload, new connections get the new certificate on the same port;
    broken files are rejected and the certificate in use keeps serving."""
    running, old = tls_daemon
    url = running.base_url + "/healthz"
    old_ca = old.ca_cert.read_bytes()
    assert await status_with_ca(reactor, url, old_ca) == 200
    new = make_tls_files(tmp_path / "tls-new")
    shutil.copy(new.server_cert, old.server_cert)
    shutil.copy(new.server_key, old.server_key)
    running.daemon.reload()
    assert await status_with_ca(reactor, url, new.ca_cert.read_bytes()) == 200
    with pytest.raises(Exception):
        await status_with_ca(reactor, url, old_ca)
    old.server_key.write_text("not a key")
    running.daemon.reload()
    assert await status_with_ca(reactor, url, new.ca_cert.read_bytes()) == 200


def test_twistd_daemonizes_with_pidfile_and_logfile(tmp_path: Path) -> None:
    """twistd aisoc-inboxd forks into the background, writes its pidfile and logfile, serves, and stops
    (removing the pidfile) on SIGTERM."""
    port = free_port()
    config = tmp_path / "inboxd.yaml"
    config.write_text(json.dumps({"state_dir": str(tmp_path / "state"),
                                  "http": {"listen": [f"tcp:{port}:interface=127.0.0.1"]},
                                  "metrics": {"listen": []}, "admin": {"listen": []},
                                  "syslog": {"listeners": []}}))
    pidfile, logfile = tmp_path / "inboxd.pid", tmp_path / "inboxd.log"
    twistd = str(Path(sys.executable).with_name("twistd"))
    done = subprocess.run([twistd, "--pidfile", str(pidfile), "--logfile", str(logfile), "aisoc-inboxd",
                           "--config", str(config)], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    wait_for_port(port, timeout=60)
    pid = int(pidfile.read_text())
    try:
        with socket.create_connection(("127.0.0.1", port), 10) as s:
            s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            assert s.recv(4096).split(b" ", 2)[1] == b"200"
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while pidfile.exists():
        assert time.monotonic() < deadline, "twistd did not stop"
        time.sleep(0.1)
    assert "store ready at schema version" in logfile.read_text()


@pytest_twisted.ensureDeferred
async def test_health_on_http_and_admin_listeners(tls_daemon: Any) -> None:
    """/healthz and /readyz answer on the admin listener as well as the HTTP one."""
    running, _ = tls_daemon
    import treq

    for path in ("/healthz", "/readyz"):
        response = await treq.get(running.admin_url + path)
        assert response.code == 200
        assert json.loads(await response.content()) == {"status": "ok"}



def test_notify_never_blocks_when_the_manager_does_not_read(tmp_path: Path) -> None:
    """With the manager's socket full (nobody reading), notify gives up at once instead of blocking the
    reactor that calls it."""
    from aisoc_inboxd.systemd import notify

    manager = NotifySocket(tmp_path / "full.sock", read=False)
    try:
        environ = {"NOTIFY_SOCKET": str(manager.path)}
        results = [notify("WATCHDOG=1", environ) for _ in range(2000)]
        assert results[0] is True
        assert results[-1] is False
    finally:
        manager.close()
