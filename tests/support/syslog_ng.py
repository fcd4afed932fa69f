"""
A private Debian syslog-ng relay for the tests: foreground (C{-F}), its own config, persist file,
control socket and pid file under the test's temporary directory, no system service. It follows a
file of lines and forwards each to a port of ours, either with the C{syslog()} driver — RFC 5424
with RFC 6587 octet counting, over plain TCP or TLS (RFC 5425; certificates from
L{tests.support.tls}, presenting the client certificate) — or with the C{http()} driver (package
C{syslog-ng-mod-http}) as Splunk HEC envelopes, the line as the event. Debian installs only one of
syslog-ng and rsyslog: syslog-ng is the installed one (the benchmarks use it too), rsyslog runs
unpacked (L{tests.support.rsyslog}).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.relay import Relay
from tests.support.tls import TlsFiles


def require_syslog_ng() -> str:
    path = shutil.which("syslog-ng") or "/usr/sbin/syslog-ng"
    if not Path(path).exists():
        pytest.fail("syslog-ng is not installed: scripts/test-services installs syslog-ng-core")
    return path


def syslog_destination(port: int, tls: TlsFiles | None = None) -> str:
    """
    The C{syslog()} driver to 127.0.0.1:C{port}: octet-counted RFC 5424 over TCP, or TLS with C{tls}.
    """
    transport = 'transport("tcp")'
    if tls is not None:
        transport = (f'transport("tls") tls(ca-file("{tls.ca_cert}") cert-file("{tls.client_cert}") '
                     f'key-file("{tls.client_key}") peer-verify(required-trusted))')
    return f'syslog("127.0.0.1" port({port}) {transport} time-reopen(1))'


def hec_destination(url: str, token: str) -> str:
    """
    The C{http()} driver posting batches of HEC envelopes to C{url} (LF between envelopes), each
    line as the C{event} string, the way syslog-ng is set up to feed Splunk's event endpoint.
    """
    return (f'http(url("{url}") method("POST") headers("Authorization: Splunk {token}", '
            '"Content-Type: application/json") '
            'body("$(format-json --scope none event=$MSG host=$HOST time=$R_UNIXTIME)") '
            'batch-lines(25) batch-timeout(200) time-reopen(1))')


def config(source: Path, destination: str) -> str:
    return f"""@version: 3.38
options {{ stats_freq(0); }};
source s_lines {{ file("{source}" flags(no-parse) follow-freq(0.1)); }};
destination d_inboxd {{ {destination}; }};
log {{ source(s_lines); destination(d_inboxd); }};
"""


def start_syslog_ng(directory: Path, destination: str) -> Relay:
    """
    Start syslog-ng forwarding the lines appended to C{directory/source.log} to C{destination} (a
    driver from L{syslog_destination} or L{hec_destination}).
    """
    syslog_ng = require_syslog_ng()
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "source.log"
    source.touch()
    config_file = directory / "syslog-ng.conf"
    config_file.write_text(config(source, destination))
    check = subprocess.run([syslog_ng, "--syntax-only", "-f", str(config_file)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, (check.stdout + check.stderr +
                                   "\n(scripts/test-services installs syslog-ng-core and syslog-ng-mod-http)")
    with (directory / "syslog-ng.log").open("wb") as log:
        process = subprocess.Popen(
            [syslog_ng, "-F", "--no-caps", "-f", str(config_file), "-R", str(directory / "syslog-ng.persist"),
             "-c", str(directory / "syslog-ng.ctl"), "-p", str(directory / "syslog-ng.pid"), "--stderr"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Relay(process, source, directory / "syslog-ng.log")
