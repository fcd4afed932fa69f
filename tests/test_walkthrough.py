"""
The README's five-minute walkthrough, run verbatim: its daemon command in the background, its client
block in bash, and the promised output checked.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.ocsf import assert_valid_ocsf
from tests.support.ports import free_port
from tests.support.shared import PROJECT


def readme_block(marker: str) -> str:
    text = (PROJECT / "README.md").read_text()
    match = re.search(rf"<!-- walkthrough:{marker} -->\n```sh\n(.*?)```", text, re.S)
    assert match, f"README has no walkthrough:{marker} block"
    return match.group(1)


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the daemon exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listened on 127.0.0.1:{port} within {seconds}s")


def test_walkthrough_works_verbatim(tmp_path: Path) -> None:
    """scripts/run starts the daemon; minting, the curl and reading the log print what the README says.
    Every listener is on a free port, moved there by the environment variables the README documents
    (and INBOX_URL for the client block), so the test neither collides with nor talks to another daemon."""
    http, syslog, udp = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    local = "tcp:{}:interface=127.0.0.1"
    env = dict(os.environ, AISOC_INBOX_STATE_DIR=str(tmp_path / "state"),
               AISOC_INBOX_HTTP_LISTEN=local.format(http), INBOX_URL=f"http://127.0.0.1:{http}",
               AISOC_INBOX_METRICS_LISTEN=local.format(free_port()), AISOC_INBOX_ADMIN_LISTEN=local.format(free_port()),
               AISOC_INBOX_SYSLOG_LISTENERS=f'[{{name: tcp, endpoint: "{local.format(syslog)}", tenant: default}},'
                                            f' {{name: udp, udp_port: {udp}, tenant: default}}]')
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(["bash", "-c", readme_block("daemon")], cwd=PROJECT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(http, daemon)
        client = subprocess.run(["bash", "-c", readme_block("client")], cwd=PROJECT, env=env,
                                capture_output=True, timeout=60)
        assert client.returncode == 0, client.stderr.decode()
        out = client.stdout.decode()
        first, _, rest = out.partition("\n")
        assert json.loads(first) == {"accepted": 1, "template": "pagerduty"}
        event = json.loads(rest)
        assert_valid_ocsf(event)
        assert event["class_uid"] == 2004
        assert event["severity_id"] == 4
        assert event["metadata"]["tenant_uid"] == "acme"
        assert "Q1234ABCD" in rest and "Database CPU > 90%" in rest
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        code = daemon.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "daemon.log").read_text()
    assert "aisoc_inbox_" not in (tmp_path / "daemon.log").read_text().replace("aisoc_inbox_<redacted>", "")


def test_a_second_setup_leaves_the_install_alone() -> None:
    """scripts/run starts with scripts/setup: once the venv is installed, running it again (the checkout's
    packaging unchanged) returns without reinstalling, which took several seconds of every start."""
    import sysconfig

    subprocess.run(["scripts/setup", "--test"], cwd=PROJECT, check=True, timeout=600)
    installed = sorted(Path(sysconfig.get_paths()["purelib"]).glob("aisoc_inboxd-*.dist-info"))
    assert installed, "aisoc-inboxd is not installed in this venv"
    before = [(path, path.stat().st_mtime_ns) for path in installed]
    for args in (["scripts/setup", "--test"], ["scripts/setup"]):
        subprocess.run(args, cwd=PROJECT, check=True, timeout=600)
    assert [(path, path.stat().st_mtime_ns) for path in installed] == before
