"""
Operating the daemon as an appliance would: the systemd unit, the notify protocol (READY, watchdog,
RELOADING, STOPPING), a SIGHUP reload rejected whole and the next one applied whole (tests/test_reload.py
has every case of it), and twistd daemonizing with a pidfile.
"""
from __future__ import annotations

import html
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest_twisted

from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon
from tests.support.kafka import free_port, wait_for_port
from tests.support.notify import NotifySocket
from tests.support.shared import PROJECT
from tests.support.templates import detection_template
from tests.support.tls import make_tls_files

UNIT = PROJECT / "systemd" / "aisoc-inboxd.service"
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


def log_events(log: Path) -> list[dict[str, Any]]:
    """
    The daemon's log events, as it wrote them with --log-format=json: one object per line.
    """
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def wait_until(condition: Callable[[], Any], what: str, log: Path, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, f"waited {seconds}s for {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    return result


def served_certificate(port: int) -> bytes:
    """
    The certificate a TLS client is shown on C{port}, as DER.
    """
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port)))


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        return response.read().decode()


def status_page(admin_port: int, key_file: Path) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/status",
                                     headers={"Authorization": f"Bearer {key_file.read_text().strip()}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return html.unescape(response.read().decode())


def test_notify_reload_and_stop_under_a_service_manager(tmp_path: Path) -> None:
    """Started as the unit starts it, the daemon says READY=1 once listening, pings the watchdog, and counts
    push stats that the CLI and the admin API read. On SIGHUP with a key that does not match its
    certificate beside a new template, it rejects the whole reload: one error line (no traceback, no
    secret, nothing critical), the same process serving the same certificate and templates, RELOADING=1
    then READY=1, counted in /metrics and shown on the status page; the next SIGHUP applies both. On
    SIGTERM it says STOPPING=1 and exits 0."""
    port, tls_port, metrics_port, admin_port = free_port(), free_port(), free_port(), free_port()
    templates = tmp_path / "templates"
    templates.mkdir()
    tls = make_tls_files(tmp_path / "tls")
    config = tmp_path / "inboxd.yaml"
    secret = "cef-secret-5e2d"
    config.write_text(json.dumps({
        "state_dir": str(tmp_path / "state"),
        "http": {"listen": [f"tcp:{port}:interface=127.0.0.1", tls.endpoint(tls_port)]},
        "metrics": {"listen": [f"tcp:{metrics_port}:interface=127.0.0.1"]},
        "admin": {"listen": [f"tcp:{admin_port}:interface=127.0.0.1"]},
        "syslog": {"listeners": []},
        "cef": {"tenant": "acme", "shared_secret_header": "X-CEF-Secret", "shared_secret": secret},
        "templates": {"directories": [str(templates)]},
    }))
    key_file = tmp_path / "state" / "admin.key"
    token = json.loads(run_cli(config, "token", "mint", "--tenant", "acme", "--template", "generic-json",
                               "--json").stdout)["token"]
    log = tmp_path / "daemon.log"
    notify = NotifySocket(tmp_path / "notify.sock", log)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000")
    process = subprocess.Popen([sys.executable, "-m", "aisoc_inboxd.cli", "--config", str(config), "run",
                                "--log-format=json"],
                               cwd=PROJECT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def reload(expect: str) -> list[str]:
        """
        SIGHUP, then what the service manager heard (watchdog pings aside) once the log says C{expect}.
        """
        heard = len(notify.messages)
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: any(expect in e["message"] for e in log_events(log)), expect, log)
        wait_until(lambda: "READY=1" in (m.split("\n")[0] for m in notify.messages[heard:]), "READY=1", log)
        return [m for m in notify.messages[heard:] if not m.startswith("WATCHDOG=1")]

    try:
        notify.wait_for("READY=1")
        wait_for_port(port)
        env["WATCHDOG_PID"] = str(process.pid)
        notify.wait_for("WATCHDOG=1")
        assert post(port, token, b'{"a": 1}') == 200
        assert post(port, token, b"not json") == 400
        stats = wait_for_push_stats(config, admin_port, key_file, requests=2)
        assert (stats["requests_24h"], stats["errors_24h"]) == (2, 1)

        old_certificate = served_certificate(tls_port)
        assert old_certificate == ssl.PEM_cert_to_DER_cert(tls.server_cert.read_text())
        (templates / "acme-custom.yaml").write_text(detection_template("acme-custom"))
        custom = json.loads(run_cli(config, "token", "mint", "--tenant", "acme", "--template", "acme-custom",
                                    "--json").stdout)["token"]
        new = make_tls_files(tmp_path / "tls-new")
        shutil.copy(new.server_key, tls.server_key)  # the new key, still beside the old certificate
        heard = reload("reload rejected")
        assert [m.split("\n")[0] for m in heard] == ["RELOADING=1", "READY=1"]
        assert "STATUS=listening on http " in heard[1] and "; last reload rejected at " in heard[1]
        events = log_events(log)
        [rejected] = [e["message"] for e in events if e["level"] in ("error", "critical")]
        assert rejected.startswith("reload rejected, the previous configuration keeps serving: http-2 certificate: "
                                   f"cannot load TLS certificate {tls.server_cert} / key {tls.server_key}: ")
        assert not any("traceback" in e or e["level"] == "critical" for e in events)
        assert "Traceback" not in log.read_text() and secret not in log.read_text()
        assert process.poll() is None
        assert served_certificate(tls_port) == old_certificate
        assert post(port, custom, b'{"alert": {"id": "x1", "name": "n"}}') == 400  # not loaded
        assert post(port, token, b'{"a": 2}') == 200
        assert 'aisoc_reload_total{result="rejected"} 1.0' in scrape(metrics_port)
        assert '<th>result</th><td class="bad">rejected: ' in status_page(admin_port, key_file)

        shutil.copy(new.server_cert, tls.server_cert)
        assert [m.split("\n")[0] for m in reload("reload applied")] == ["RELOADING=1", "READY=1"]
        assert served_certificate(tls_port) == ssl.PEM_cert_to_DER_cert(new.server_cert.read_text())
        assert post(port, custom, b'{"alert": {"id": "x1", "name": "n"}}') == 200
        assert 'aisoc_reload_total{result="applied"} 1.0' in scrape(metrics_port)
        assert '<th>result</th><td class="ok">applied</td>' in status_page(admin_port, key_file)

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
