"""
A private rsyslogd for the interop tests. Debian's rsyslog conflicts with syslog-ng-core (which the
other syslog tests use), so scripts/test-services unpacks the package and the libraries it needs
under C{.venv/rsyslog} instead of installing it. The daemon runs in the foreground (C{-n}) with its
own config, work directory and pid file under the test's temporary directory, no system service, no
C{/dev/log} (no imuxsock): it follows one file with imfile and forwards each line with omfwd to ports
of ours, in the framings and header formats the C{Forward}s name.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import pytest

from tests.support.relay import Relay
from tests.support.shared import PROJECT

#: where scripts/test-services unpacks the rsyslog package
UNPACKED = PROJECT / ".venv" / "rsyslog"


@dataclass(frozen=True)
class Forward:
    """
    One omfwd action: where to, over what, and with which header format (an rsyslog built-in
    template: C{RSYSLOG_ForwardFormat}, omfwd's default, is RFC 3164 with an RFC 3339 stamp;
    C{RSYSLOG_SyslogProtocol23Format} is RFC 5424).
    """

    port: int
    protocol: Literal["tcp", "udp"]
    framing: Literal["traditional", "octet-counted"] = "traditional"
    template: str = "RSYSLOG_ForwardFormat"

    def action(self) -> str:
        framing = f' tcp_framing="{self.framing}"' if self.protocol == "tcp" else ""
        return (f'action(type="omfwd" target="127.0.0.1" port="{self.port}" protocol="{self.protocol}"{framing} '
                f'template="{self.template}" queue.type="LinkedList" action.resumeRetryCount="-1" '
                f'action.resumeInterval="1")')


@dataclass(frozen=True)
class Rsyslogd:
    """
    An rsyslogd and where its modules (C{-M}) and, when unpacked, its libraries are.
    """

    executable: Path
    modules: Path
    libraries: Path | None

    def command(self, *args: str) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        if self.libraries is not None:
            env["LD_LIBRARY_PATH"] = str(self.libraries)
        return [str(self.executable), "-M", str(self.modules), *args], env


def require_rsyslogd() -> Rsyslogd:
    """
    The unpacked rsyslogd (or an installed one, where the machine has rsyslog instead of syslog-ng).
    """
    for executable in (UNPACKED / "usr" / "sbin" / "rsyslogd", Path(shutil.which("rsyslogd") or "/usr/sbin/rsyslogd")):
        root = executable.parent.parent.parent
        modules = next(root.glob("usr/lib/*/rsyslog"), None)
        if executable.exists() and modules is not None:
            return Rsyslogd(executable, modules, modules.parent if root == UNPACKED else None)
    pytest.fail("rsyslogd is missing: scripts/test-services unpacks Debian's rsyslog under .venv/rsyslog")


def config(directory: Path, source: Path, forwards: Sequence[Forward]) -> str:
    actions = "\n  ".join(forward.action() for forward in forwards)
    # rsyslogd's own messages go to the default ruleset, which has no action: only the file's lines leave
    return f"""global(workDirectory="{directory / 'work'}")
module(load="imfile")
input(type="imfile" file="{source}" tag="relay:" ruleset="forward")
ruleset(name="forward") {{
  {actions}
}}
"""


def start_rsyslog(directory: Path, forwards: Sequence[Forward]) -> Relay:
    """
    Start rsyslogd forwarding each line appended to C{directory/source.log} through every forward.
    """
    rsyslogd = require_rsyslogd()
    (directory / "work").mkdir(parents=True, exist_ok=True)
    source = directory / "source.log"
    source.touch()
    config_file = directory / "rsyslog.conf"
    config_file.write_text(config(directory, source, forwards))
    command, env = rsyslogd.command("-N1", "-f", str(config_file))
    check = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    command, env = rsyslogd.command("-n", "-f", str(config_file), "-i", str(directory / "rsyslogd.pid"))
    with (directory / "rsyslogd.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=directory)
    return Relay(process, source, directory / "rsyslogd.log")
